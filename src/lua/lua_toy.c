/* lua_toy.c — sfwb._toy: the toy world's pixel loops (models/toy_world.c) for lua/sfwb/toy_world.lua. */
#include <lauxlib.h>
#include <lua.h>

#include "core/error.h"
#include "core/ops.h"
#include "lua/lua_tensor.h"
#include "models/toy_world.h"

#define TOY_MAX_BALLS 16
#define TOY_MAX_PALETTE 16

static double field_number(lua_State *L, int t, const char *k, double def) {
  lua_getfield(L, t, k);
  double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* reads an {r, g, b} table at idx into v (0..255 each) */
static void read_rgb(lua_State *L, int idx, float v[3], const char *what) {
  if (!lua_istable(L, idx) || lua_rawlen(L, idx) != 3) luaL_error(L, "sfwb._toy: %s must be {r, g, b}", what);
  for (int c = 0; c < 3; c++) {
    lua_rawgeti(L, idx, c + 1);
    if (!lua_isnumber(L, -1)) luaL_error(L, "sfwb._toy: %s must be {r, g, b} numbers", what);
    v[c] = (float)lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
}

/* a Lua-owned float array (freed by the GC even when an error unwinds) */
static float *scratch_floats(lua_State *L, size_t n) { return (float *)lua_newuserdatauv(L, n * sizeof(float), 0); }

/* render(balls, {frames=, height=, width=, background={r,g,b}, supersample=4}) -> f32 [frames, 3, H, W]
 * balls: {{rgb={r,g,b}, radius=, x={...}, y={...}}, ...} with one centre per frame */
static int l_render(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  int64_t F = (int64_t)field_number(L, 2, "frames", 0), H = (int64_t)field_number(L, 2, "height", 64),
          W = (int64_t)field_number(L, 2, "width", 64);
  int ss = (int)field_number(L, 2, "supersample", 4);
  if (F < 1 || H < 1 || W < 1 || F * H * W > ((int64_t)1 << 31))
    return luaL_error(L, "sfwb._toy.render: frames/height/width must be >= 1 (got %d, %d, %d)", (int)F, (int)H, (int)W);
  float bg[3] = {0, 0, 0};
  lua_getfield(L, 2, "background");
  if (!lua_isnil(L, -1)) read_rgb(L, lua_gettop(L), bg, "background");
  lua_pop(L, 1);
  int nb = (int)lua_rawlen(L, 1);
  if (nb > TOY_MAX_BALLS) return luaL_error(L, "sfwb._toy.render: at most %d balls (got %d)", TOY_MAX_BALLS, nb);
  luaL_checkstack(L, 2 * nb + 8, "sfwb._toy.render");
  sf_toy_ball balls[TOY_MAX_BALLS];
  for (int b = 0; b < nb; b++) {
    lua_rawgeti(L, 1, b + 1);
    int t = lua_gettop(L);
    if (!lua_istable(L, t)) return luaL_error(L, "sfwb._toy.render: ball %d is not a table", b + 1);
    lua_getfield(L, t, "rgb");
    read_rgb(L, lua_gettop(L), balls[b].rgb, "ball.rgb");
    lua_pop(L, 1);
    balls[b].radius = (float)field_number(L, t, "radius", 0);
    float *xy[2];
    const char *names[2] = {"x", "y"};
    for (int a = 0; a < 2; a++) {
      lua_getfield(L, t, names[a]);
      int arr = lua_gettop(L);
      if (!lua_istable(L, arr) || (int64_t)lua_rawlen(L, arr) < F)
        return luaL_error(L, "sfwb._toy.render: ball %d needs %s = one number per frame (%d)", b + 1, names[a], (int)F);
      xy[a] = scratch_floats(L, (size_t)F); /* kept on the stack until the end of the call */
      for (int64_t f = 0; f < F; f++) {
        lua_rawgeti(L, arr, f + 1);
        xy[a][f] = (float)luaL_checknumber(L, -1);
        lua_pop(L, 1);
      }
      lua_remove(L, arr);
    }
    balls[b].x = xy[0];
    balls[b].y = xy[1];
    lua_remove(L, t);
  }
  int64_t shape[4] = {F, 3, H, W};
  sf_tensor *out = sf_tensor_new(SF_F32, sf_cpu(), 4, shape);
  if (!out) return sf_lua_raise(L);
  sf_toy_render((float *)sf_data_ptr(out), F, H, W, bg, balls, nb, ss);
  sf_lua_push_tensor(L, out);
  return 1;
}

/* detect(video [F, 3, H, W] float in [-1, 1], {palette={{r,g,b},...}, tol=90, min_area=12, max_blobs=8})
 * -> {{n=<blobs in all>, {colour=<1-based palette index>, area=, x=, y=}, ...}, ...} one entry per frame,
 * blobs largest first */
static int l_detect(lua_State *L) {
  sf_tensor *v = sf_lua_check_tensor(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (v->ndim != 4 || v->shape[1] != 3)
    return luaL_error(L, "sfwb._toy.detect: expected a video [F, 3, H, W], got a %d-D tensor", v->ndim);
  if (!sf_device_eq(sf_device_of(v), sf_cpu())) return luaL_error(L, "sfwb._toy.detect: the video must be on the cpu");
  float palette[TOY_MAX_PALETTE][3];
  lua_getfield(L, 2, "palette");
  int pt = lua_gettop(L);
  if (!lua_istable(L, pt)) return luaL_error(L, "sfwb._toy.detect: palette = {{r, g, b}, ...} is required");
  int np = (int)lua_rawlen(L, pt);
  if (np < 1 || np > TOY_MAX_PALETTE) return luaL_error(L, "sfwb._toy.detect: 1..%d palette colours", TOY_MAX_PALETTE);
  for (int k = 0; k < np; k++) {
    lua_rawgeti(L, pt, k + 1);
    read_rgb(L, lua_gettop(L), palette[k], "palette colour");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  float tol = (float)field_number(L, 2, "tol", 90);
  int64_t min_area = (int64_t)field_number(L, 2, "min_area", 12);
  int max_blobs = (int)field_number(L, 2, "max_blobs", 8);
  if (max_blobs < 1 || max_blobs > 1024) return luaL_error(L, "sfwb._toy.detect: max_blobs must be in 1..1024");
  sf_tensor *f = sf_cast(v, SF_F32);
  if (!f) return sf_lua_raise(L);
  sf_lua_push_tensor(L, f); /* Lua owns it: an error below cannot leak it */
  int64_t F = f->shape[0], H = f->shape[2], W = f->shape[3];
  int32_t *work = (int32_t *)lua_newuserdatauv(L, (size_t)(2 * H * W) * sizeof(int32_t), 0);
  sf_toy_blob *blobs = (sf_toy_blob *)lua_newuserdatauv(L, (size_t)max_blobs * sizeof(sf_toy_blob), 0);
  const float *base = (const float *)sf_data_ptr(f);
  lua_createtable(L, (int)F, 0);
  for (int64_t fr = 0; fr < F; fr++) {
    int n = sf_toy_detect(base + fr * f->stride[0], f->stride[1], f->stride[2], f->stride[3], H, W,
                          (const float(*)[3])palette, np, tol, min_area, blobs, max_blobs, work);
    int kept = n < max_blobs ? n : max_blobs;
    lua_createtable(L, kept, 1);
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    for (int i = 0; i < kept; i++) {
      lua_createtable(L, 0, 4);
      lua_pushinteger(L, blobs[i].colour + 1);
      lua_setfield(L, -2, "colour");
      lua_pushinteger(L, blobs[i].area);
      lua_setfield(L, -2, "area");
      lua_pushnumber(L, blobs[i].x);
      lua_setfield(L, -2, "x");
      lua_pushnumber(L, blobs[i].y);
      lua_setfield(L, -2, "y");
      lua_rawseti(L, -2, i + 1);
    }
    lua_rawseti(L, -2, fr + 1);
  }
  return 1;
}

void sf_lua_register_toy(lua_State *L) {
  static const luaL_Reg fns[] = {{"render", l_render}, {"detect", l_detect}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "_toy");
}
