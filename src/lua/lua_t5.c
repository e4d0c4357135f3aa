/* lua_t5.c — sfwb._t5: the C umT5 encoder object behind lua/sfwb/t5.lua (which adds the tokenizer,
 * prompt cache and Self-Forcing's zeroing of padded rows). */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "lua/lua_enc_util.h"
#include "lua/lua_tensor.h"
#include "models/t5_encoder.h"
#include "models/t5_internal.h"

#define T5_MT "sfwb.T5Core"

typedef struct { sf_t5 *m; } lua_t5;

static sf_t5 *check_t5(lua_State *L, int idx) {
  lua_t5 *u = luaL_checkudata(L, idx, T5_MT);
  if (!u->m) luaL_error(L, "T5 model is freed");
  return u->m;
}

static int t5_gc(lua_State *L) {
  lua_t5 *u = luaL_checkudata(L, 1, T5_MT);
  sf_t5_free(u->m);
  u->m = NULL;
  return 0;
}

/* sfwb._t5.new(state_dict_table) */
static int t5_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_t5 *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->m = NULL;
  luaL_setmetatable(L, T5_MT);
  sf_lua_weights w = {L, 1};
  u->m = sf_t5_new(sf_lua_weights_get, &w);
  if (!u->m) return sf_lua_raise(L);
  return 1;
}

static void check_ids_mask(lua_State *L, sf_tensor *ids, sf_tensor *mask) {
  char a[64], b[64];
  if (ids->ndim != 2) luaL_error(L, "T5: ids must be [B, L], got %s", sf_shape_str(ids, a, sizeof a));
  if (mask && !sf_same_shape(ids, mask))
    luaL_error(L, "T5: mask %s does not match ids %s", sf_shape_str(mask, a, sizeof a), sf_shape_str(ids, b, sizeof b));
}

/* ids, mask (cpu i64 tensors, mask optional) and a device -> f32 [B, L, dim] on the device */
static int encode_on(lua_State *L, sf_t5 *m, sf_device dev) {
  sf_tensor *ids = sf_lua_check_cpu(L, 2, SF_I64);
  sf_tensor *mask = lua_isnoneornil(L, 3) ? NULL : sf_lua_to_tensor(L, 3) ? sf_lua_check_cpu(L, 3, SF_I64) : NULL;
  if (!lua_isnoneornil(L, 3) && !mask) { sf_release(ids); return luaL_error(L, "T5: mask must be a tensor"); }
  check_ids_mask(L, ids, mask);
  sf_tensor *out = sf_t5_forward(m, sf_data_ptr(ids), mask ? sf_data_ptr(mask) : NULL, ids->shape[0], ids->shape[1], dev);
  sf_release(ids), sf_release(mask);
  if (!out) return sf_lua_raise(L);
  sf_lua_push_tensor(L, out);
  return 1;
}

/* m:encode_ids(ids [B, L], mask [B, L] or nil) -> f32 [B, L, dim] on the cpu */
static int t5_encode_ids(lua_State *L) { return encode_on(L, check_t5(L, 1), sf_cpu()); }

/* m:encode_ids_on(ids, mask or nil, device) -> f32 [B, L, dim] on device (the same forward) */
static int t5_encode_ids_on(lua_State *L) {
  sf_t5 *m = check_t5(L, 1);
  sf_device dev;
  if (sf_device_parse(luaL_checkstring(L, 4), &dev)) return sf_lua_raise(L);
  return encode_on(L, m, dev);
}

/* m:run_blocks(x [B, L, dim] on any device (as f32), mask or nil, first (0-based), count) -> new f32 tensor on x's device */
static int t5_run_blocks(lua_State *L) {
  sf_t5 *m = check_t5(L, 1);
  sf_tensor *x = sf_lua_check_tensor(L, 2);
  sf_tensor *mask = lua_isnoneornil(L, 3) ? NULL : sf_lua_check_cpu(L, 3, SF_I64);
  int first = (int)luaL_optinteger(L, 4, 0);
  int count = (int)luaL_optinteger(L, 5, sf_t5_config_of(m)->num_layers - first);
  char a[64], b[64];
  if (mask && (mask->ndim != 2 || x->ndim != 3 || mask->shape[0] != x->shape[0] || mask->shape[1] != x->shape[1])) {
    sf_shape_str(mask, a, sizeof a), sf_shape_str(x, b, sizeof b);
    sf_release(mask);
    return luaL_error(L, "T5: mask %s does not match x %s", a, b);
  }
  sf_tensor *xf = sf_cast(x, SF_F32);
  sf_tensor *y = xf ? sf_t5_blocks(m, first, count, xf, mask ? sf_data_ptr(mask) : NULL) : NULL;
  sf_release(xf), sf_release(mask);
  if (!y) return sf_lua_raise(L);
  sf_lua_push_tensor(L, y);
  return 1;
}

/* m:dtype() -> "f32"|"bf16"|"f16";  m:set_dtype(name) */
static int t5_dtype(lua_State *L) {
  lua_pushstring(L, sf_t5_dtype(check_t5(L, 1)));
  return 1;
}

static int t5_set_dtype(lua_State *L) {
  if (sf_t5_set_dtype(check_t5(L, 1), luaL_checkstring(L, 2))) return sf_lua_raise(L);
  return 0;
}

static int t5_config(lua_State *L) {
  const sf_t5_config *c = sf_t5_config_of(check_t5(L, 1));
  lua_newtable(L);
#define F(k) lua_pushinteger(L, c->k), lua_setfield(L, -2, #k)
  F(vocab), F(dim), F(dim_attn), F(dim_ffn), F(num_heads), F(num_layers), F(num_buckets), F(max_dist);
#undef F
  lua_pushboolean(L, c->shared_pos), lua_setfield(L, -2, "shared_pos");
  lua_pushnumber(L, c->eps), lua_setfield(L, -2, "eps");
  return 1;
}

/* sfwb._t5.bucket(rel, num_buckets, max_dist): the relative-position bucket the encoder uses (0-based),
 * so Lua that builds a position table (sfwb.tiny) places its entries where the forward reads them */
static int t5_bucket(lua_State *L) {
  const lua_Integer rel = luaL_checkinteger(L, 1), nb = luaL_checkinteger(L, 2), md = luaL_optinteger(L, 3, 128);
  if (nb < 4 || nb % 2) return luaL_error(L, "t5 bucket: num_buckets must be even and >= 4 (got %d)", (int)nb);
  if (md <= nb / 4) return luaL_error(L, "t5 bucket: max_dist must exceed num_buckets/4 (got %d)", (int)md);
  lua_pushinteger(L, sf_t5_bucket(rel, nb, md));
  return 1;
}

void sf_lua_register_t5(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"encode_ids", t5_encode_ids}, {"encode_ids_on", t5_encode_ids_on}, {"run_blocks", t5_run_blocks}, {"config", t5_config},
      {"dtype", t5_dtype}, {"set_dtype", t5_set_dtype}, {NULL, NULL}};
  if (luaL_newmetatable(L, T5_MT)) {
    lua_pushcfunction(L, t5_gc), lua_setfield(L, -2, "__gc");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, t5_new);
  lua_setfield(L, -2, "new");
  lua_pushcfunction(L, t5_bucket);
  lua_setfield(L, -2, "bucket");
  lua_setfield(L, -2, "_t5");
}
