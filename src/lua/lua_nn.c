/* lua_nn.c — sfwb.nn: the fused model ops (core/nn.h) from Lua, for experiments and gradient tests:
 * layer_norm, rms_norm, modulate, gated_add, rope3d, attention (with frame-wise visible key ranges). */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/nn.h"
#include "lua/lua_tensor.h"

static sf_tensor *opt_t(lua_State *L, int i) { return lua_isnoneornil(L, i) ? NULL : sf_lua_check_tensor(L, i); }

/* layer_norm(x, w|nil, b|nil, eps=1e-5) */
static int l_layer_norm(lua_State *L) {
  sf_lua_push_tensor(L, sf_layer_norm(sf_lua_check_tensor(L, 1), opt_t(L, 2), opt_t(L, 3), luaL_optnumber(L, 4, 1e-5)));
  return 1;
}

/* rms_norm(x, w|nil, eps=1e-6) */
static int l_rms_norm(lua_State *L) {
  sf_lua_push_tensor(L, sf_rms_norm(sf_lua_check_tensor(L, 1), opt_t(L, 2), luaL_optnumber(L, 3, 1e-6)));
  return 1;
}

/* modulate(x [B, F*S, D], shift [B, F, D], scale [B, F, D]) */
static int l_modulate(lua_State *L) {
  sf_lua_push_tensor(L, sf_modulate(sf_lua_check_tensor(L, 1), sf_lua_check_tensor(L, 2), sf_lua_check_tensor(L, 3)));
  return 1;
}

/* gated_add(x, y, gate [B, F, D]) */
static int l_gated_add(lua_State *L) {
  sf_lua_push_tensor(L, sf_gated_add(sf_lua_check_tensor(L, 1), sf_lua_check_tensor(L, 2), sf_lua_check_tensor(L, 3)));
  return 1;
}

/* rope3d(x [B, F*H*W, heads, d], {F, H, W}, start_frame=0) */
static int l_rope3d(lua_State *L) {
  sf_tensor *x = sf_lua_check_tensor(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int64_t g[3];
  for (int i = 0; i < 3; i++) {
    lua_geti(L, 2, i + 1);
    g[i] = luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  sf_lua_push_tensor(L, sf_rope3d(x, g[0], g[1], g[2], luaL_optinteger(L, 3, 0)));
  return 1;
}

/* attention(q, k, v, {scale=, q_group=, visible={{lo, hi}, ...}}) -> out, lse
 * visible: per query group, the 0-based half-open key range [lo, hi) */
static int l_attention(lua_State *L) {
  sf_tensor *q = sf_lua_check_tensor(L, 1), *k = sf_lua_check_tensor(L, 2), *v = sf_lua_check_tensor(L, 3);
  sf_attn_desc d;
  memset(&d, 0, sizeof d);
  int64_t *lo = NULL, *hi = NULL;
  if (lua_type(L, 4) == LUA_TTABLE) {
    if (lua_getfield(L, 4, "scale") != LUA_TNIL) d.scale = luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, 4, "q_group") != LUA_TNIL) d.q_group = luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, 4, "visible") == LUA_TTABLE) {
      const int n = (int)luaL_len(L, -1);
      const int64_t ng = d.q_group > 0 ? q->shape[1] / d.q_group : 1;
      if (n != ng) {
        lua_pop(L, 1);
        return luaL_error(L, "attention: visible has %d ranges but there are %d query groups", n, (int)ng);
      }
      lo = malloc(sizeof(int64_t) * (size_t)(n + 1));
      hi = malloc(sizeof(int64_t) * (size_t)(n + 1));
      for (int i = 1; i <= n; i++) {
        lua_geti(L, -1, i);
        lua_geti(L, -1, 1), lo[i - 1] = lua_tointeger(L, -1), lua_pop(L, 1);
        lua_geti(L, -1, 2), hi[i - 1] = lua_tointeger(L, -1), lua_pop(L, 1);
        lua_pop(L, 1);
      }
      d.kv_lo = lo, d.kv_hi = hi;
    }
    lua_pop(L, 1);
  }
  sf_tensor *lse = NULL;
  sf_tensor *out = sf_attention(q, k, v, &d, &lse);
  free(lo), free(hi);
  sf_lua_push_tensor(L, out);
  sf_lua_push_tensor(L, lse);
  return 2;
}

void sf_lua_register_nn(lua_State *L) {
  static const luaL_Reg F[] = {{"layer_norm", l_layer_norm}, {"rms_norm", l_rms_norm}, {"modulate", l_modulate},
                               {"gated_add", l_gated_add}, {"rope3d", l_rope3d}, {"attention", l_attention}, {NULL, NULL}};
  luaL_newlib(L, F);
  lua_setfield(L, -2, "nn");
}
