/* lua_train.c — Lua part "train": sfwb.clip_grad_norm(params, max_norm) and the fused kernels behind
 * sfwb.optim.adamw / sfwb.ema (lua/sfwb/optim.lua, lua/sfwb/ema.lua) as sfwb._train.*. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>

#include "autograd/autograd.h"
#include "autograd/optim.h"
#include "core/error.h"
#include "lua/lua_tensor.h"

/* the tensors of a parameter collection: an array {t1, t2, ...}, a map {name = t}, or a model with
 * :parameters(); pushed onto a new array table at the top of the stack, returns the count */
static int collect_params(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  int src = idx;
  if (!sf_lua_to_tensor(L, idx) && (lua_istable(L, idx) || lua_isuserdata(L, idx))) {
    lua_getfield(L, idx, "parameters");
    if (lua_isfunction(L, -1)) {
      lua_pushvalue(L, idx);
      lua_call(L, 1, 1);
      src = lua_gettop(L);
    } else {
      lua_pop(L, 1);
    }
  }
  luaL_checktype(L, src, LUA_TTABLE);
  lua_newtable(L);
  int out = lua_gettop(L), n = 0;
  lua_pushnil(L);
  while (lua_next(L, src)) {
    if (sf_lua_to_tensor(L, -1)) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, out, ++n);
    }
    lua_pop(L, 1);
  }
  if (src != idx) lua_remove(L, src);
  return n;
}

/* sfwb.clip_grad_norm(params, max_norm) -> total norm (before clipping), as torch.nn.utils.clip_grad_norm_ */
static int l_clip_grad_norm(lua_State *L) {
  double max_norm = luaL_checknumber(L, 2);
  int n = collect_params(L, 1), arr = lua_gettop(L);
  sf_tensor **ps = malloc(sizeof *ps * (n ? n : 1));
  if (!ps) return luaL_error(L, "clip_grad_norm: out of memory");
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, arr, i + 1);
    ps[i] = sf_lua_to_tensor(L, -1);
    lua_pop(L, 1);
  }
  double norm = sf_clip_grad_norm(ps, n, max_norm);
  free(ps);
  if (norm < 0) return sf_lua_raise(L);
  lua_pushnumber(L, norm);
  return 1;
}

/* _train.adamw(param, grad, exp_avg, exp_avg_sq, master|nil, lr, beta1, beta2, eps, weight_decay, step) */
static int l_adamw(lua_State *L) {
  sf_tensor *p = sf_lua_check_tensor(L, 1), *g = sf_lua_check_tensor(L, 2), *m = sf_lua_check_tensor(L, 3),
            *v = sf_lua_check_tensor(L, 4);
  sf_tensor *master = lua_isnil(L, 5) ? NULL : sf_lua_check_tensor(L, 5);
  if (sf_adamw_update(p, master, g, m, v, luaL_checknumber(L, 6), luaL_checknumber(L, 7), luaL_checknumber(L, 8),
                      luaL_checknumber(L, 9), luaL_checknumber(L, 10), luaL_checkinteger(L, 11)))
    return sf_lua_raise(L);
  return 0;
}

static int l_sum_sq(lua_State *L) {
  double s;
  if (sf_sum_sq(sf_lua_check_tensor(L, 1), &s)) return sf_lua_raise(L);
  lua_pushnumber(L, s);
  return 1;
}

/* _train.ema(shadow, param, decay) */
static int l_ema(lua_State *L) {
  if (sf_ema_update(sf_lua_check_tensor(L, 1), sf_lua_check_tensor(L, 2), luaL_checknumber(L, 3))) return sf_lua_raise(L);
  return 0;
}

/* _train.params(collection) -> array of its tensors (map order is unspecified) */
static int l_params(lua_State *L) {
  collect_params(L, 1);
  return 1;
}

/* sfwb.cpu_memory() -> {allocated = bytes live, peak = bytes}; sfwb.cpu_memory(true) also resets the peak */
static int l_cpu_memory(lua_State *L) {
  size_t live, peak;
  sf_cpu_memory_stats(&live, &peak);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)live);
  lua_setfield(L, -2, "allocated");
  lua_pushinteger(L, (lua_Integer)peak);
  lua_setfield(L, -2, "peak");
  if (lua_toboolean(L, 1)) sf_cpu_reset_peak_memory();
  return 1;
}

void sf_lua_register_train(lua_State *L) {
  int sfwb = lua_gettop(L);
  lua_pushcfunction(L, l_clip_grad_norm);
  lua_setfield(L, sfwb, "clip_grad_norm");
  lua_pushcfunction(L, l_cpu_memory);
  lua_setfield(L, sfwb, "cpu_memory");
  static const luaL_Reg funcs[] = {
    {"adamw", l_adamw}, {"sum_sq", l_sum_sq}, {"ema", l_ema}, {"params", l_params}, {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  lua_setfield(L, sfwb, "_train");
  lua_settop(L, sfwb);
}
