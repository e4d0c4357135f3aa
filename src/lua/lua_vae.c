/* lua_vae.c — sfwb._vae: the C Wan VAE behind lua/sfwb/vae.lua, on any device. Tensors cross in Self-Forcing's
 * layouts: video [B, 3, T, H, W] in, latents [B, F, z, h, w], decoded video [B, T, 3, H, W] out. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "lua/lua_enc_util.h"
#include "lua/lua_tensor.h"
#include "backend/conv_ops.h"
#include "models/vae_model.h"

#define VAE_MT "sfwb.VAECore"

typedef struct { sf_vae *m; } lua_vae;

static sf_vae *check_vae(lua_State *L, int idx) {
  lua_vae *u = luaL_checkudata(L, idx, VAE_MT);
  if (!u->m) luaL_error(L, "VAE is freed");
  return u->m;
}

static int vae_gc(lua_State *L) {
  lua_vae *u = luaL_checkudata(L, 1, VAE_MT);
  sf_vae_free(u->m);
  u->m = NULL;
  return 0;
}

static int read_floats(lua_State *L, int idx, const char *field, float *out, int max) {
  lua_getfield(L, idx, field);
  int n = 0;
  if (lua_istable(L, -1)) {
    n = (int)luaL_len(L, -1);
    if (n > max) n = max;
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, -1, i + 1);
      out[i] = (float)lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return n;
}

/* sfwb._vae.new(state_dict, {mean={..}, std={..}, dtype="f32"|"bf16", device="cpu"|"emu:0"|"cuda:N"}) */
static int vae_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  float mean[64], std[64];
  int nm = 0, ns = 0;
  sf_device dev = sf_cpu();
  if (lua_istable(L, 2)) {
    nm = read_floats(L, 2, "mean", mean, 64);
    ns = read_floats(L, 2, "std", std, 64);
    lua_getfield(L, 2, "device");
    if (!lua_isnil(L, -1) && sf_device_parse(luaL_checkstring(L, -1), &dev)) return sf_lua_raise(L);
    lua_pop(L, 1);
  }
  lua_vae *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->m = NULL;
  luaL_setmetatable(L, VAE_MT);
  sf_lua_weights w = {L, 1};
  u->m = sf_vae_new(sf_lua_weights_get, &w, NULL, NULL, dev);
  if (!u->m) return sf_lua_raise(L);
  int z = sf_vae_config_of(u->m)->z_dim;
  if ((nm && nm != z) || (ns && ns != z)) return luaL_error(L, "VAE: mean/std need %d values (got %d and %d)", z, nm, ns);
  if (nm || ns) {
    sf_vae_config *c = (sf_vae_config *)sf_vae_config_of(u->m);
    for (int i = 0; i < z; i++) {
      if (nm) c->mean[i] = mean[i];
      if (ns) c->std[i] = std[i];
    }
  }
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "dtype");
    if (!lua_isnil(L, -1) && sf_vae_set_dtype(u->m, luaL_checkstring(L, -1))) return sf_lua_raise(L);
    lua_pop(L, 1);
  }
  return 1;
}

/* vae:dtype() -> "f32"|"bf16";  vae:set_dtype(name) */
static int vae_dtype(lua_State *L) {
  lua_pushstring(L, sf_vae_dtype(check_vae(L, 1)));
  return 1;
}

static int vae_set_dtype(lua_State *L) {
  if (sf_vae_set_dtype(check_vae(L, 1), luaL_checkstring(L, 2))) return sf_lua_raise(L);
  return 0;
}

/* vae:encode(video [B, 3, T, H, W]) -> [B, F, z, H/8, W/8] f32 on the VAE's device */
static int vae_encode(lua_State *L) {
  sf_vae *m = check_vae(L, 1);
  sf_tensor *out = sf_vae_encode(m, sf_lua_check_tensor(L, 2));
  if (!out) return sf_lua_raise(L);
  sf_lua_push_tensor(L, out);
  return 1;
}

/* shared by decode and decode_chunk: latents [B, F, z, h, w] -> [B, T, 3, H, W] clamped to [-1, 1] */
static int decode_impl(lua_State *L, int streaming) {
  sf_vae *m = check_vae(L, 1);
  sf_tensor *out = sf_vae_decode(m, sf_lua_check_tensor(L, 2), streaming);
  if (!out) return sf_lua_raise(L);
  sf_lua_push_tensor(L, out);
  return 1;
}

static int vae_decode(lua_State *L) { return decode_impl(L, 0); }
static int vae_decode_chunk(lua_State *L) { return decode_impl(L, 1); }

static int vae_reset(lua_State *L) {
  sf_vae_clear_stream(check_vae(L, 1));
  return 0;
}

static int vae_config(lua_State *L) {
  const sf_vae_config *c = sf_vae_config_of(check_vae(L, 1));
  lua_newtable(L);
  lua_pushinteger(L, c->z_dim), lua_setfield(L, -2, "z_dim");
  lua_pushinteger(L, c->base_dim), lua_setfield(L, -2, "dim");
  lua_pushinteger(L, c->enc_mods), lua_setfield(L, -2, "encoder_modules");
  lua_pushinteger(L, c->dec_mods), lua_setfield(L, -2, "decoder_modules");
  lua_newtable(L);
  for (int i = 0; i < c->n_resample && i < 8; i++) lua_pushboolean(L, c->temporal_down[i]), lua_rawseti(L, -2, i + 1);
  lua_setfield(L, -2, "temperal_downsample");
  int f = 1;
  for (int i = 0; i < c->n_resample; i++) f *= 2;
  lua_pushinteger(L, f), lua_setfield(L, -2, "spatial_stride");
  lua_newtable(L);
  for (int i = 0; i < c->z_dim; i++) lua_pushnumber(L, c->mean[i]), lua_rawseti(L, -2, i + 1);
  lua_setfield(L, -2, "mean");
  lua_newtable(L);
  for (int i = 0; i < c->z_dim; i++) lua_pushnumber(L, c->std[i]), lua_rawseti(L, -2, i + 1);
  lua_setfield(L, -2, "std");
  return 1;
}

static void read_ints(lua_State *L, int idx, int *v, int n, int dflt) {
  for (int i = 0; i < n; i++) v[i] = dflt;
  if (lua_isinteger(L, idx)) {
    for (int i = 0; i < n; i++) v[i] = (int)lua_tointeger(L, idx);
  } else if (lua_istable(L, idx)) {
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, idx, i + 1);
      if (lua_isinteger(L, -1)) v[i] = (int)lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
  }
}

/* sfwb._vae.conv3d(x, w, b|nil, stride, padding) / conv2d: the conv op table (torch.nn.functional semantics) */
static int conv_nd_lua(lua_State *L, int nd) {
  sf_tensor *x = sf_lua_check_tensor(L, 1), *w = sf_lua_check_tensor(L, 2);
  sf_tensor *b = lua_isnoneornil(L, 3) ? NULL : sf_lua_check_tensor(L, 3);
  int stride[3], pad[3];
  read_ints(L, 4, stride, nd, 1);
  read_ints(L, 5, pad, nd, 0);
  const char *dtype = luaL_optstring(L, 6, "f32");
  if (strcmp(dtype, "f32") && strcmp(dtype, "bf16")) return luaL_error(L, "conv: dtype '%s' (f32 or bf16)", dtype);
  sf_tensor *y = !strcmp(dtype, "bf16") ? sf_conv_cpu_flags(nd, x, w, b, stride, pad, SF_CONV_BF16)
                 : nd == 3              ? sf_conv3d(x, w, b, stride, pad)
                                        : sf_conv2d(x, w, b, stride, pad);
  if (!y) return sf_lua_raise(L);
  sf_lua_push_tensor(L, y);
  return 1;
}
static int l_conv3d(lua_State *L) { return conv_nd_lua(L, 3); }
static int l_conv2d(lua_State *L) { return conv_nd_lua(L, 2); }

void sf_lua_register_vae(lua_State *L) {
  static const luaL_Reg methods[] = {{"encode", vae_encode},   {"decode", vae_decode}, {"decode_chunk", vae_decode_chunk},
                                     {"reset", vae_reset},     {"config", vae_config}, {"dtype", vae_dtype},
                                     {"set_dtype", vae_set_dtype}, {NULL, NULL}};
  if (luaL_newmetatable(L, VAE_MT)) {
    lua_pushcfunction(L, vae_gc), lua_setfield(L, -2, "__gc");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, vae_new);
  lua_setfield(L, -2, "new");
  lua_pushcfunction(L, l_conv3d);
  lua_setfield(L, -2, "conv3d");
  lua_pushcfunction(L, l_conv2d);
  lua_setfield(L, -2, "conv2d");
  lua_setfield(L, -2, "_vae");
}
