/* lua_clip.c — sfwb._clip: the C CLIP visual tower behind lua/sfwb/clip.lua. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "lua/lua_enc_util.h"
#include "lua/lua_tensor.h"
#include "models/clip_vision.h"

#define CLIP_MT "sfwb.CLIPCore"

typedef struct { sf_clip *m; } lua_clip;

static sf_clip *check_clip(lua_State *L, int idx) {
  lua_clip *u = luaL_checkudata(L, idx, CLIP_MT);
  if (!u->m) luaL_error(L, "CLIP model is freed");
  return u->m;
}

static int clip_gc(lua_State *L) {
  lua_clip *u = luaL_checkudata(L, 1, CLIP_MT);
  sf_clip_free(u->m);
  u->m = NULL;
  return 0;
}

/* sfwb._clip.new(state_dict, {num_heads=16, num_layers=<all but the last>}) */
static int clip_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int heads = 16, run = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "num_heads");
    heads = (int)luaL_optinteger(L, -1, 16);
    lua_getfield(L, 2, "num_layers");
    run = (int)luaL_optinteger(L, -1, 0);
    lua_pop(L, 2);
  }
  lua_clip *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->m = NULL;
  luaL_setmetatable(L, CLIP_MT);
  sf_lua_weights w = {L, 1};
  u->m = sf_clip_new(sf_lua_weights_get, &w, heads, run);
  if (!u->m) return sf_lua_raise(L);
  return 1;
}

/* images (arg 2: [B, 3, H, W] or [3, H, W] in [-1, 1]) through the tower on dev -> f32 [B, 1 + grid^2, dim] */
static int encode_on(lua_State *L, sf_clip *m, sf_device dev) {
  sf_tensor *x = sf_lua_check_cpu(L, 2, SF_F32);
  char buf[64];
  if (x->ndim == 3) {
    sf_tensor *u = sf_unsqueeze(x, 0);
    sf_release(x);
    if (!(x = u)) return sf_lua_raise(L);
  }
  if (x->ndim != 4 || x->shape[1] != 3) {
    sf_shape_str(x, buf, sizeof buf);
    sf_release(x);
    return luaL_error(L, "clip:encode_image expects images [B, 3, H, W], got %s", buf);
  }
  sf_tensor *out = sf_clip_forward(m, sf_data_ptr(x), x->shape[0], (int)x->shape[2], (int)x->shape[3], dev);
  sf_release(x);
  if (!out) return sf_lua_raise(L);
  sf_lua_push_tensor(L, out);
  return 1;
}

/* clip:encode_image(img) on the cpu */
static int clip_encode_image(lua_State *L) { return encode_on(L, check_clip(L, 1), sf_cpu()); }

/* clip:encode_image_on(img, device): the same forward on another device */
static int clip_encode_image_on(lua_State *L) {
  sf_clip *m = check_clip(L, 1);
  sf_device dev;
  if (sf_device_parse(luaL_checkstring(L, 3), &dev)) return sf_lua_raise(L);
  return encode_on(L, m, dev);
}

/* sfwb._clip.resize(img [C, H, W], oh, ow): torch's bicubic resize (tests, preprocessing) */
static int clip_resize(lua_State *L) {
  sf_tensor *x = sf_lua_check_cpu(L, 1, SF_F32);
  int oh = (int)luaL_checkinteger(L, 2), ow = (int)luaL_checkinteger(L, 3);
  if (x->ndim != 3 || oh < 1 || ow < 1) { sf_release(x); return luaL_error(L, "resize expects [C, H, W] and sizes >= 1"); }
  int64_t shape[3] = {x->shape[0], oh, ow};
  sf_tensor *out = sf_empty(3, shape, SF_F32, sf_cpu());
  if (out) sf_bicubic_resize(sf_data_ptr(x), (int)x->shape[0], (int)x->shape[1], (int)x->shape[2], sf_data_ptr(out), oh, ow);
  sf_release(x);
  if (!out) return sf_lua_raise(L);
  sf_lua_push_tensor(L, out);
  return 1;
}

static int clip_config(lua_State *L) {
  const sf_clip_config *c = sf_clip_config_of(check_clip(L, 1));
  lua_newtable(L);
#define F(k) lua_pushinteger(L, c->k), lua_setfield(L, -2, #k)
  F(dim), F(patch), F(image_size), F(grid), F(num_layers), F(num_heads), F(mlp_dim), F(run_layers);
#undef F
  lua_pushboolean(L, c->pre_norm), lua_setfield(L, -2, "pre_norm");
  return 1;
}

/* m:dtype() -> "f32"|"bf16"|"f16";  m:set_dtype(name) */
static int clip_dtype(lua_State *L) {
  lua_pushstring(L, sf_clip_dtype(check_clip(L, 1)));
  return 1;
}

static int clip_set_dtype(lua_State *L) {
  if (sf_clip_set_dtype(check_clip(L, 1), luaL_checkstring(L, 2))) return sf_lua_raise(L);
  return 0;
}

void sf_lua_register_clip(lua_State *L) {
  static const luaL_Reg methods[] = {{"encode_image", clip_encode_image}, {"encode_image_on", clip_encode_image_on},
                                     {"config", clip_config}, {"dtype", clip_dtype}, {"set_dtype", clip_set_dtype},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, CLIP_MT)) {
    lua_pushcfunction(L, clip_gc), lua_setfield(L, -2, "__gc");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, clip_new), lua_setfield(L, -2, "new");
  lua_pushcfunction(L, clip_resize), lua_setfield(L, -2, "resize");
  lua_setfield(L, -2, "_clip");
}
