/* lua_dist.c — sfwb.dist: rank/world and collectives on tensors (dist/dist.h), plus run_emu(n, fn): an
 * in-process world of n ranks, one thread and one fresh Lua state per rank, rank r bound to emu:r. */
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "dist/dist.h"
#include "dist/dist_guard.h"
#include "lua/lua_tensor.h"

int luaopen_sfwb_core(lua_State *L);

static sf_dist_op opt_op(lua_State *L, int idx) {
  sf_dist_op op;
  if (sf_dist_op_parse(luaL_optstring(L, idx, "sum"), &op)) sf_lua_raise(L);
  return op;
}

static int l_init(lua_State *L) {
  if (sf_dist_init()) sf_lua_raise(L);
  lua_pushinteger(L, sf_dist_rank());
  lua_pushinteger(L, sf_dist_world_size());
  return 2;
}
static int l_rank(lua_State *L) { lua_pushinteger(L, sf_dist_rank()); return 1; }
static int l_world(lua_State *L) { lua_pushinteger(L, sf_dist_world_size()); return 1; }
static int l_using_mpi(lua_State *L) { lua_pushboolean(L, sf_dist_using_mpi()); return 1; }

/* ---- process groups: sfwb.dist.split(color [, key]) -> group (g:rank(), g:size(), g:world_rank(i)),
 * passed as the last argument of all_reduce / all_gather / reduce_scatter ---- */
#define GROUP_MT "sfwb.dist.Group"
typedef struct { sf_dist_group *g; } group_ud;

static sf_dist_group *check_group(lua_State *L, int idx) {
  sf_dist_group *g = ((group_ud *)luaL_checkudata(L, idx, GROUP_MT))->g;
  if (!g) luaL_error(L, "sfwb.dist: the group was freed");
  return g;
}

static sf_dist_group *opt_group(lua_State *L, int idx) {
  return lua_isnoneornil(L, idx) ? NULL : check_group(L, idx);
}

static int l_split(lua_State *L) {
  lua_Integer color = luaL_checkinteger(L, 1), key = luaL_optinteger(L, 2, sf_dist_rank());
  group_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->g = NULL;
  luaL_setmetatable(L, GROUP_MT);
  if (!(u->g = sf_dist_split((int)color, (int)key))) sf_lua_raise(L);
  return 1;
}
static int l_group_gc(lua_State *L) {
  group_ud *u = luaL_checkudata(L, 1, GROUP_MT);
  sf_dist_group_free(u->g);
  u->g = NULL;
  return 0;
}
static int l_group_rank(lua_State *L) { lua_pushinteger(L, sf_dist_group_rank(check_group(L, 1))); return 1; }
static int l_group_size(lua_State *L) { lua_pushinteger(L, sf_dist_group_size(check_group(L, 1))); return 1; }
static int l_group_world_rank(lua_State *L) {
  sf_dist_group *g = check_group(L, 1);
  lua_Integer r = luaL_checkinteger(L, 2);
  int w = sf_dist_group_world_rank(g, (int)r);
  if (w < 0) return luaL_error(L, "group:world_rank: rank %d outside the group's [0, %d)", (int)r, sf_dist_group_size(g));
  lua_pushinteger(L, w);
  return 1;
}
static int l_group_tostring(lua_State *L) {
  sf_dist_group *g = check_group(L, 1);
  lua_pushfstring(L, "sfwb.dist.Group(rank %d of %d)", sf_dist_group_rank(g), sf_dist_group_size(g));
  return 1;
}

static int l_all_reduce(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  if (sf_dist_all_reduce_in(opt_group(L, 3), t, opt_op(L, 2))) sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int l_broadcast(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  if (sf_dist_broadcast(t, (int)luaL_optinteger(L, 2, 0))) sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int l_all_gather(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_lua_push_tensor(L, sf_dist_all_gather_in(opt_group(L, 2), t));
  return 1;
}

static int l_reduce_scatter(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_lua_push_tensor(L, sf_dist_reduce_scatter_in(opt_group(L, 3), t, opt_op(L, 2)));
  return 1;
}

static int l_barrier(lua_State *L) {
  if (sf_dist_barrier()) sf_lua_raise(L);
  return 0;
}

/* sfwb.dist.timeout([seconds]) -> seconds: how long a collective waits for the other ranks before it
 * fails naming them (default SFWB_DIST_TIMEOUT or 600) */
static int l_timeout(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    double s = luaL_checknumber(L, 1);
    if (!(s > 0)) return luaL_argerror(L, 1, "a timeout in seconds > 0");
    sf_dist_set_timeout(s);
  }
  lua_pushnumber(L, sf_dist_timeout());
  return 1;
}

/* sfwb.dist.simulate_failure("hang" | "die"): this rank stops (SIGSTOP) or is killed (SIGKILL), as a rank
 * whose GPU hangs or whose process dies; for testing that the others fail cleanly */
static int l_simulate_failure(lua_State *L) {
  static const char *const kinds[] = {"hang", "die", NULL};
  int k = luaL_checkoption(L, 1, NULL, kinds);
  fflush(NULL);
  raise(k == 0 ? SIGSTOP : SIGKILL);
  return 0;
}

/* ---- storage rebinding for sharded parameters (lua/sfwb/dist/fsdp.lua) ----
 * A model looks its parameters up as tensor objects at every forward; FSDP swaps what memory those
 * objects view, in place, without the model knowing: */

/* sfwb.dist.rebind(t, flat, offset): t (keeping its shape) becomes a contiguous view of the contiguous
 * tensor flat's memory from element `offset` on */
static int l_rebind(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1), *f = sf_lua_check_tensor(L, 2);
  lua_Integer off = luaL_checkinteger(L, 3);
  int64_t n = sf_numel(t);
  if (t->dtype != f->dtype) return luaL_error(L, "sfwb.dist.rebind: dtype %s onto %s", sf_dtype_name(t->dtype), sf_dtype_name(f->dtype));
  if (!sf_device_eq(sf_device_of(t), sf_device_of(f))) return luaL_error(L, "sfwb.dist.rebind: tensors on different devices");
  if (!sf_is_contiguous(f)) return luaL_error(L, "sfwb.dist.rebind: the flat buffer must be contiguous");
  if (off < 0 || off + n > sf_numel(f)) return luaL_error(L, "sfwb.dist.rebind: [%lld, +%lld) outside the flat buffer of %lld elements", (long long)off, (long long)n, (long long)sf_numel(f));
  sf_storage_retain(f->storage);
  sf_storage_release(t->storage);
  t->storage = f->storage;
  t->offset = f->offset + off;
  int64_t st = 1;
  for (int d = t->ndim - 1; d >= 0; d--) { t->stride[d] = st; st *= t->shape[d]; }
  return 0;
}

/* sfwb.dist.unbind(t): t keeps its shape but views one zero element (all strides 0): its memory is
 * released, and a stray read sees zeros instead of freed memory */
static int l_unbind(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  int64_t one = 1;
  sf_tensor *z = sf_zeros(1, &one, t->dtype, sf_device_of(t));
  if (!z) return sf_lua_raise(L);
  sf_storage_retain(z->storage);
  sf_storage_release(t->storage);
  t->storage = z->storage;
  t->offset = 0;
  for (int d = 0; d < t->ndim; d++) t->stride[d] = 0;
  sf_release(z);
  return 0;
}

/* sfwb.dist.bound(t) -> false when t views no memory of its own (after unbind) */
static int l_bound(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  int bound = t->ndim == 0 || sf_numel(t) <= 1;
  for (int d = 0; d < t->ndim && !bound; d++) bound = t->stride[d] != 0;
  lua_pushboolean(L, bound);
  return 1;
}

/* ---- run_emu ---- */
typedef struct {
  const char *code;
  size_t code_len;
  const char *path;
  char **results; /* per rank: tostring of the first result, or the error */
  int *failed;
} run_ctx;

static int rank_fn(int rank, void *p) {
  run_ctx *c = p;
  lua_State *L = luaL_newstate();
  if (!L) return sf_error("run_emu: cannot create a Lua state");
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, c->path);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_sfwb_core);
  lua_setfield(L, -2, "sfwb.core");
  lua_pop(L, 2);
  int rc = 0;
  lua_getglobal(L, "require");
  lua_pushstring(L, "sfwb");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    lua_setglobal(L, "sfwb");
    if (luaL_loadbuffer(L, c->code, c->code_len, "=run_emu") == LUA_OK) {
      lua_pushinteger(L, rank);
      lua_pushinteger(L, sf_dist_world_size());
      if (lua_pcall(L, 2, 1, 0) != LUA_OK) rc = -1;
    } else {
      rc = -1;
    }
  } else {
    rc = -1;
  }
  const char *s = luaL_tolstring(L, -1, NULL);
  c->results[rank] = strdup(s ? s : "nil");
  c->failed[rank] = rc != 0;
  lua_close(L);
  if (rc) return sf_error("%s", c->results[rank]);
  return 0;
}

/* sfwb.dist.run_emu(n, fn) -> {result of rank 0, result of rank 1, ...}: fn(rank, world) runs on its own
 * thread and Lua state (fn travels as bytecode: no upvalues), with tensors on emu:<rank> */
static int l_run_emu(lua_State *L) {
  int n = (int)luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_getglobal(L, "string");
  lua_getfield(L, -1, "dump");
  lua_pushvalue(L, 2);
  lua_call(L, 1, 1);
  size_t len;
  const char *code = lua_tolstring(L, -1, &len);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  run_ctx c = {code, len, lua_tostring(L, -1), NULL, NULL};
  if (n < 1 || n > 64) return luaL_argerror(L, 1, "between 1 and 64 ranks");
  c.results = calloc((size_t)n, sizeof(char *));
  c.failed = calloc((size_t)n, sizeof(int));
  int rc = sf_dist_run_threads(n, rank_fn, &c);
  lua_createtable(L, n, 0);
  for (int r = 0; r < n; r++) {
    lua_pushstring(L, c.results[r] ? c.results[r] : "nil");
    lua_rawseti(L, -2, r + 1);
    free(c.results[r]);
  }
  free(c.results);
  free(c.failed);
  if (rc) sf_lua_raise(L);
  return 1;
}

void sf_lua_register_dist(lua_State *L) {
  static const luaL_Reg fns[] = {{"init", l_init},
                                 {"rank", l_rank},
                                 {"world_size", l_world},
                                 {"using_mpi", l_using_mpi},
                                 {"all_reduce", l_all_reduce},
                                 {"broadcast", l_broadcast},
                                 {"all_gather", l_all_gather},
                                 {"reduce_scatter", l_reduce_scatter},
                                 {"barrier", l_barrier},
                                 {"run_emu", l_run_emu},
                                 {"timeout", l_timeout},
                                 {"simulate_failure", l_simulate_failure},
                                 {"rebind", l_rebind},
                                 {"unbind", l_unbind},
                                 {"bound", l_bound},
                                 {"split", l_split},
                                 {NULL, NULL}};
  if (luaL_newmetatable(L, GROUP_MT)) {
    static const luaL_Reg gm[] = {{"rank", l_group_rank}, {"size", l_group_size}, {"world_rank", l_group_world_rank}, {NULL, NULL}};
    luaL_newlib(L, gm);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_group_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_group_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "dist");
}
