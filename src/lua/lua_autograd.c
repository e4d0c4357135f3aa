/* lua_autograd.c — Lua part "autograd": t:requires_grad_(), t:backward(), t.grad, t:detach(), t.requires_grad,
 * t.is_leaf, t.grad_fn, sfwb.no_grad(fn, ...), sfwb.enable_grad(fn, ...), sfwb.checkpoint(fn, ...). */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>

#include "autograd/autograd.h"
#include "core/error.h"
#include "lua/lua_tensor.h"

/* the Lua state running the current backward: checkpoint recomputations call back into it */
static _Thread_local lua_State *backward_L;

static int t_requires_grad_(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  bool on = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
  if (sf_requires_grad_(t, on)) return sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

/* loss:backward([grad], [{retain_graph=}]) */
static int t_backward(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_tensor *g = NULL;
  int opts = 0;
  if (lua_istable(L, 2) && !sf_lua_to_tensor(L, 2)) opts = 2;
  else if (!lua_isnoneornil(L, 2)) {
    g = sf_lua_to_tensor(L, 2);
    if (!g) return luaL_error(L, "backward: argument 1 must be a gradient Tensor or an options table, got %s", luaL_typename(L, 2));
    if (lua_istable(L, 3)) opts = 3;
  }
  bool retain = false;
  if (opts) {
    lua_getfield(L, opts, "retain_graph");
    retain = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_State *prev = backward_L;
  backward_L = L;
  int rc = sf_backward(t, g, retain);
  backward_L = prev;
  if (rc) return sf_lua_raise(L);
  return 0;
}

static int t_detach(lua_State *L) {
  sf_lua_push_tensor(L, sf_detach(sf_lua_check_tensor(L, 1)));
  return 1;
}

static int t_detach_(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_node_release(t->grad_fn);
  t->grad_fn = NULL;
  t->requires_grad = false;
  sf_release(t->base); /* no longer a view: its base's later history is not its own */
  t->base = NULL;
  lua_settop(L, 1);
  return 1;
}

static int get_grad(lua_State *L) {
  sf_tensor *g = sf_grad_of(sf_lua_check_tensor(L, 1));
  if (g) sf_lua_push_tensor(L, g);
  else lua_pushnil(L);
  return 1;
}

static int set_grad(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_tensor *g = lua_isnil(L, 2) ? NULL : sf_lua_check_tensor(L, 2);
  if (sf_set_grad(t, g)) return sf_lua_raise(L);
  return 0;
}

static int get_requires_grad(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_ag_sync_view(t);
  lua_pushboolean(L, t->requires_grad);
  return 1;
}

static int set_requires_grad(lua_State *L) {
  if (sf_requires_grad_(sf_lua_check_tensor(L, 1), lua_toboolean(L, 2))) return sf_lua_raise(L);
  return 0;
}

static int get_is_leaf(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_ag_sync_view(t);
  lua_pushboolean(L, t->grad_fn == NULL);
  return 1;
}

static int get_grad_fn(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_ag_sync_view(t);
  if (t->grad_fn) lua_pushstring(L, t->grad_fn->name);
  else lua_pushnil(L);
  return 1;
}

/* run fn(...) with grad mode set to `on`, restoring the mode even when fn raises */
static int with_grad_mode(lua_State *L, bool on) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int n = lua_gettop(L);
  bool prev = sf_set_grad_enabled(on);
  int rc = lua_pcall(L, n - 1, LUA_MULTRET, 0);
  sf_set_grad_enabled(prev);
  if (rc != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

static int l_no_grad(lua_State *L) { return with_grad_mode(L, false); }
static int l_enable_grad(lua_State *L) { return with_grad_mode(L, true); }

static int l_is_grad_enabled(lua_State *L) {
  lua_pushboolean(L, sf_grad_enabled());
  return 1;
}

static int l_set_grad_enabled(lua_State *L) {
  lua_pushboolean(L, sf_set_grad_enabled(lua_toboolean(L, 1)));
  return 1;
}

/* ---- sfwb.checkpoint(fn, ...): fn's ops are recorded without saved tensors; backward re-runs fn(...) ---- */

typedef struct {
  lua_State *main; /* the main thread: alive as long as the state */
  int ref;         /* registry ref to {fn, n = nargs, args...} */
} lua_ckpt;

static void lua_ckpt_free(void *p) {
  lua_ckpt *c = p;
  if (c->ref != LUA_NOREF) luaL_unref(c->main, LUA_REGISTRYINDEX, c->ref);
  free(c);
}

static int lua_ckpt_recompute(void *p) {
  lua_ckpt *c = p;
  lua_State *L = backward_L ? backward_L : c->main;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 64)) return sf_error("checkpoint: Lua stack overflow");
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  int tbl = lua_gettop(L);
  lua_getfield(L, tbl, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (!lua_checkstack(L, n + 4)) { lua_settop(L, top); return sf_error("checkpoint: too many arguments"); }
  for (int i = 1; i <= n + 1; i++) lua_rawgeti(L, tbl, i); /* fn, args */
  int rc = lua_pcall(L, n, 0, 0);
  if (rc != LUA_OK) {
    sf_error("%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object is not a string)");
    lua_settop(L, top);
    return -1;
  }
  lua_settop(L, top);
  return 0;
}

static int l_checkpoint(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int n = lua_gettop(L);
  lua_ckpt *c = malloc(sizeof *c);
  if (!c) return luaL_error(L, "checkpoint: out of memory");
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  c->main = lua_tothread(L, -1);
  lua_pop(L, 1);
  lua_createtable(L, n, 1);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, n - 1);
  lua_setfield(L, -2, "n");
  c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sf_ckpt_region *r = sf_checkpoint_begin(lua_ckpt_recompute, c, lua_ckpt_free);
  if (!r) { lua_ckpt_free(c); return sf_lua_raise(L); }
  int rc = lua_pcall(L, n - 1, LUA_MULTRET, 0);
  sf_checkpoint_end(r);
  if (rc != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

void sf_lua_register_autograd(lua_State *L) {
  int sfwb = lua_gettop(L);
  sf_lua_tensor_add_method(L, "requires_grad_", t_requires_grad_);
  sf_lua_tensor_add_method(L, "backward", t_backward);
  sf_lua_tensor_add_method(L, "detach", t_detach);
  sf_lua_tensor_add_method(L, "detach_", t_detach_);
  sf_lua_tensor_add_getter(L, "grad", get_grad);
  sf_lua_tensor_add_setter(L, "grad", set_grad);
  sf_lua_tensor_add_getter(L, "requires_grad", get_requires_grad);
  sf_lua_tensor_add_setter(L, "requires_grad", set_requires_grad);
  sf_lua_tensor_add_getter(L, "is_leaf", get_is_leaf);
  sf_lua_tensor_add_getter(L, "grad_fn", get_grad_fn);
  static const luaL_Reg funcs[] = {
    {"no_grad", l_no_grad},
    {"enable_grad", l_enable_grad},
    {"is_grad_enabled", l_is_grad_enabled},
    {"set_grad_enabled", l_set_grad_enabled},
    {"checkpoint", l_checkpoint},
    {NULL, NULL},
  };
  lua_pushvalue(L, sfwb);
  luaL_setfuncs(L, funcs, 0);
  lua_settop(L, sfwb);
}
