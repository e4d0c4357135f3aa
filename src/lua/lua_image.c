/* lua_image.c — sfwb.image: read/write PNG, u8 <-> [-1, 1] float conversion, grid tiling. */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "io/image.h"
#include "lua/lua_tensor.h"

/* sfwb.image.read(path [, {float=true}]) -> u8 [H, W, 3] (or f32 [3, H, W] in [-1, 1]) */
static int l_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int as_float = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "float");
    as_float = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  sf_tensor *t = sf_png_read(path);
  if (!t) return sf_lua_raise(L);
  if (as_float) {
    sf_tensor *f = sf_image_u8_to_float(t);
    sf_release(t);
    t = f;
  }
  sf_lua_push_tensor(L, t);
  return 1;
}

/* any accepted image tensor -> u8 [H, W, C] (new reference) */
static sf_tensor *to_u8_hwc(sf_tensor *t) {
  if (t->dtype == SF_U8 && t->ndim == 3) return sf_retain(t);
  if (t->dtype == SF_U8 && t->ndim == 2) {
    int64_t s[3] = {t->shape[0], t->shape[1], 1};
    return sf_reshape(t, 3, s);
  }
  if (sf_dtype_is_float(t->dtype) && t->ndim == 3) return sf_image_float_to_u8(t);
  if (sf_dtype_is_float(t->dtype) && t->ndim == 2) {
    int64_t s[3] = {1, t->shape[0], t->shape[1]};
    sf_tensor *v = sf_reshape(t, 3, s);
    if (!v) return NULL;
    sf_tensor *r = sf_image_float_to_u8(v);
    sf_release(v);
    return r;
  }
  char b[64];
  sf_error("expected an image: u8 [H, W, C] or float [C, H, W] in [-1, 1], got %s %s", sf_dtype_name(t->dtype),
           sf_shape_str(t, b, sizeof b));
  return NULL;
}

/* sfwb.image.write(path, t) */
static int l_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  sf_tensor *t = sf_lua_check_tensor(L, 2);
  sf_tensor *u = to_u8_hwc(t);
  if (!u) {
    sf_error_prefix("%s: ", path);
    return sf_lua_raise(L);
  }
  int rc = sf_png_write(path, u);
  sf_release(u);
  if (rc) return sf_lua_raise(L);
  return 0;
}

static int l_to_float(lua_State *L) {
  sf_lua_push_tensor(L, sf_image_u8_to_float(sf_lua_check_tensor(L, 1)));
  return 1;
}

static int l_to_u8(lua_State *L) {
  sf_lua_push_tensor(L, to_u8_hwc(sf_lua_check_tensor(L, 1)));
  return 1;
}

/* sfwb.image.grid(list, {cols=, pad=0, pad_value=}) — tiles same-shaped images row by row. Works on
 * u8 [H, W, C] and float [C, H, W] alike (the result has the input's kind); pad_value defaults to 0
 * for u8 and -1 (black) for float. */
static int l_grid(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)lua_rawlen(L, 1);
  if (n < 1) return luaL_error(L, "sfwb.image.grid: the list is empty");
  int cols = n, pad = 0;
  double pad_value = 0;
  int have_pad_value = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "cols");
    if (!lua_isnil(L, -1)) cols = (int)luaL_checkinteger(L, -1);
    lua_getfield(L, 2, "pad");
    if (!lua_isnil(L, -1)) pad = (int)luaL_checkinteger(L, -1);
    lua_getfield(L, 2, "pad_value");
    if (!lua_isnil(L, -1)) {
      pad_value = luaL_checknumber(L, -1);
      have_pad_value = 1;
    }
    lua_pop(L, 3);
  }
  if (cols < 1 || pad < 0) return luaL_error(L, "sfwb.image.grid: cols must be >= 1 and pad >= 0");
  if (cols > n) cols = n;
  int rows = (n + cols - 1) / cols;
  lua_rawgeti(L, 1, 1);
  sf_tensor *first = sf_lua_check_tensor(L, -1);
  lua_pop(L, 1);
  int hwc = first->dtype == SF_U8;
  if (first->ndim != 3) return luaL_error(L, "sfwb.image.grid: images must be u8 [H, W, C] or float [C, H, W]");
  int hd = hwc ? 0 : 1, wd = hwc ? 1 : 2;
  int64_t H = first->shape[hd], W = first->shape[wd];
  int64_t shape[3];
  memcpy(shape, first->shape, sizeof shape);
  shape[hd] = rows * H + (rows + 1) * (int64_t)pad;
  shape[wd] = cols * W + (cols + 1) * (int64_t)pad;
  if (!have_pad_value) pad_value = hwc ? 0 : -1;
  sf_tensor *out = sf_full(3, shape, pad_value, first->dtype, sf_device_of(first));
  if (!out) return sf_lua_raise(L);
  sf_lua_push_tensor(L, out); /* owned by Lua from here: errors below cannot leak it */
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    sf_tensor *t = sf_lua_check_tensor(L, -1);
    if (!sf_same_shape(t, first))
      return luaL_error(L, "sfwb.image.grid: image %d has a different shape from image 1", i + 1);
    int r = i / cols, c = i % cols;
    sf_tensor *a = sf_narrow(out, hd, pad + r * (H + pad), H);
    sf_tensor *b = a ? sf_narrow(a, wd, pad + c * (W + pad), W) : NULL;
    int rc = b ? sf_copy_(b, t) : -1;
    sf_release(a);
    sf_release(b);
    if (rc) return sf_lua_raise(L);
    lua_pop(L, 1);
  }
  return 1;
}

void sf_lua_register_image(lua_State *L) {
  static const luaL_Reg fns[] = {{"read", l_read}, {"write", l_write}, {"grid", l_grid},
                                 {"to_float", l_to_float}, {"to_u8", l_to_u8}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "image");
}
