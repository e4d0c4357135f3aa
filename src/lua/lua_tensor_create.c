/* lua_tensor_create.c — making tensors from Lua: sfwb.tensor (nested tables), zeros/ones/full/randn/arange, *_like. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "core/half.h"
#include "ops/ops.h"
#include "lua/lua_tensor_impl.h"

static void store_elem(void *base, sf_dtype dt, int64_t i, double d, int64_t iv, int is_int) {
  char *p = (char *)base + i * (int64_t)sf_dtype_size(dt);
  if (!is_int) /* float -> int truncates, as torch; out-of-range values saturate instead of being UB */
    iv = !isfinite(d) ? 0 : d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
  else d = (double)iv;
  switch (dt) {
    case SF_F32: { float v = (float)d; memcpy(p, &v, 4); break; }
    case SF_F64: memcpy(p, &d, 8); break;
    case SF_BF16: { uint16_t h = sf_f32_to_bf16((float)d); memcpy(p, &h, 2); break; }
    case SF_F16: { uint16_t h = sf_f32_to_f16((float)d); memcpy(p, &h, 2); break; }
    case SF_I64: memcpy(p, &iv, 8); break;
    case SF_I32: { int32_t v = (int32_t)iv; memcpy(p, &v, 4); break; }
    case SF_U8: *(uint8_t *)p = (uint8_t)iv; break;
    case SF_BOOL: *(uint8_t *)p = (is_int ? iv != 0 : d != 0); break;
    default: break;
  }
}

static int after_shape(lua_State *L, int idx, int ndim) { return lua_istable(L, idx) ? idx + 1 : idx + ndim; }

static void check_creation_opts(lua_State *L, int idx, sf_dtype *dt, sf_device *dev) {
  if (lua_istable(L, idx)) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      if (!k || (strcmp(k, "dtype") && strcmp(k, "device")))
        sf_lua_errorf(L, "unknown option '%s' (accepted: dtype, device)", k ? k : luaL_typename(L, -2));
      lua_pop(L, 1);
    }
  } else if (!lua_isnoneornil(L, idx) && lua_type(L, idx) != LUA_TSTRING) {
    luaL_argerror(L, idx, lua_pushfstring(L, "expected options {dtype=, device=}, got %s", luaL_typename(L, idx)));
  }
  sf_lua_opt_dtype_device(L, idx, dt, dev);
}

static void check_nonneg_shape(lua_State *L, int nd, const int64_t *shape) {
  for (int i = 0; i < nd; i++)
    if (shape[i] < 0) sf_lua_errorf(L, "size %d of the shape is %lld; sizes must be >= 0", i + 1, (long long)shape[i]);
}

/* ---------------------------------------------------------------- creation */

enum { K_ZEROS, K_ONES, K_EMPTY, K_RANDN, K_RAND };

static sf_tensor *create(int kind, int nd, const int64_t *shape, sf_dtype dt, sf_device dev) {
  switch (kind) {
    case K_ZEROS: return sf_zeros(nd, shape, dt, dev);
    case K_ONES: return sf_full(nd, shape, 1.0, dt, dev);
    case K_EMPTY: return sf_empty(nd, shape, dt, dev);
    case K_RANDN: return sf_randn(nd, shape, dt, dev);
    default: return sf_rand(nd, shape, dt, dev);
  }
}

static int l_create(lua_State *L, int kind) {
  int64_t shape[SF_MAX_DIMS];
  int nd = sf_lua_check_shape(L, 1, shape);
  check_nonneg_shape(L, nd, shape);
  sf_dtype dt = SF_F32;
  sf_device dev = sf_cpu();
  check_creation_opts(L, after_shape(L, 1, nd), &dt, &dev);
  if ((kind == K_RANDN || kind == K_RAND) && !sf_dtype_is_float(dt))
    return sf_lua_errorf(L, "%s needs a floating dtype (f32, bf16, f16), got %s", kind == K_RANDN ? "randn" : "rand",
                      sf_dtype_name(dt));
  sf_lua_push_tensor(L, create(kind, nd, shape, dt, dev));
  return 1;
}
static int l_zeros(lua_State *L) { return l_create(L, K_ZEROS); }
static int l_ones(lua_State *L) { return l_create(L, K_ONES); }
static int l_empty(lua_State *L) { return l_create(L, K_EMPTY); }
static int l_randn(lua_State *L) { return l_create(L, K_RANDN); }
static int l_rand(lua_State *L) { return l_create(L, K_RAND); }

/* dtype torch infers from a Lua scalar: bool, i64 for integers, f32 otherwise */
static sf_dtype scalar_dtype(lua_State *L, int idx) {
  if (lua_isboolean(L, idx)) return SF_BOOL;
  return lua_isinteger(L, idx) ? SF_I64 : SF_F32;
}

static int l_full(lua_State *L) {
  int64_t shape[SF_MAX_DIMS];
  if (!lua_istable(L, 1)) return luaL_argerror(L, 1, "expected a shape table such as {2, 3}");
  int nd = sf_lua_check_shape(L, 1, shape);
  check_nonneg_shape(L, nd, shape);
  double v = sf_lua_check_scalar(L, 2, "full");
  sf_dtype dt = scalar_dtype(L, 2);
  sf_device dev = sf_cpu();
  check_creation_opts(L, 3, &dt, &dev);
  sf_lua_push_tensor(L, sf_full(nd, shape, v, dt, dev));
  return 1;
}

/* zeros_like(t, opts) and friends: shape, dtype and device of t unless opts say otherwise */
static int l_like(lua_State *L, int kind) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_dtype dt = t->dtype;
  sf_device dev = sf_device_of(t);
  check_creation_opts(L, 2, &dt, &dev);
  sf_lua_push_tensor(L, create(kind, t->ndim, t->shape, dt, dev));
  return 1;
}
static int l_zeros_like(lua_State *L) { return l_like(L, K_ZEROS); }
static int l_ones_like(lua_State *L) { return l_like(L, K_ONES); }
static int l_empty_like(lua_State *L) { return l_like(L, K_EMPTY); }
static int l_randn_like(lua_State *L) { return l_like(L, K_RANDN); }
static int l_rand_like(lua_State *L) { return l_like(L, K_RAND); }
static int l_full_like(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  double v = sf_lua_check_scalar(L, 2, "full_like");
  sf_dtype dt = t->dtype;
  sf_device dev = sf_device_of(t);
  check_creation_opts(L, 3, &dt, &dev);
  sf_lua_push_tensor(L, sf_full(t->ndim, t->shape, v, dt, dev));
  return 1;
}

static int l_arange(lua_State *L) {
  int n = 0, allint = 1;
  double a[3];
  while (n < 3 && lua_type(L, n + 1) == LUA_TNUMBER) {
    a[n] = lua_tonumber(L, n + 1);
    if (!lua_isinteger(L, n + 1)) allint = 0;
    n++;
  }
  if (n == 0) return luaL_argerror(L, 1, "arange(end), arange(start, end) or arange(start, end, step) expects numbers");
  double start = n >= 2 ? a[0] : 0, end = n >= 2 ? a[1] : a[0], step = n == 3 ? a[2] : 1;
  if (step == 0) return sf_lua_errorf(L, "arange: step must be nonzero");
  if ((end - start) / step > 1e12) return sf_lua_errorf(L, "arange: %g elements are too many", (end - start) / step);
  sf_dtype dt = allint ? SF_I64 : SF_F32;
  sf_device dev = sf_cpu();
  check_creation_opts(L, n + 1, &dt, &dev);
  sf_lua_push_tensor(L, sf_arange(start, end, step, dt, dev));
  return 1;
}

/* ---- sfwb.tensor(nested table) ---- */

typedef struct {
  int ndim;
  int64_t shape[SF_MAX_DIMS];
  int any_float, any_int, any_bool;
  int path[SF_MAX_DIMS];
} nest_info;

static void path_str(const nest_info *ni, int depth, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < depth && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "[%d]", ni->path[i]);
}

/* checks that the nested table at the top of the stack is rectangular and numeric */
static void scan_nested(lua_State *L, nest_info *ni, int depth) {
  char p[128];
  int64_t len = (int64_t)lua_rawlen(L, -1);
  if (len != ni->shape[depth]) {
    path_str(ni, depth, p, sizeof p);
    sf_lua_errorf(L, "sfwb.tensor: ragged nested table: row %s has %lld elements, expected %lld", depth ? p : "(top)",
               (long long)len, (long long)ni->shape[depth]);
  }
  luaL_checkstack(L, 4, "sfwb.tensor: nesting too deep");
  for (int64_t i = 0; i < len; i++) {
    ni->path[depth] = (int)(i + 1);
    int ty = lua_rawgeti(L, -1, (lua_Integer)(i + 1));
    if (depth + 1 < ni->ndim) {
      if (ty != LUA_TTABLE) {
        path_str(ni, depth + 1, p, sizeof p);
        sf_lua_errorf(L, "sfwb.tensor: element %s is a %s, expected a table (rows must all have the same depth)", p,
                   lua_typename(L, ty));
      }
      scan_nested(L, ni, depth + 1);
    } else if (ty == LUA_TNUMBER) {
      if (lua_isinteger(L, -1)) ni->any_int = 1;
      else ni->any_float = 1;
    } else if (ty == LUA_TBOOLEAN) {
      ni->any_bool = 1;
    } else {
      path_str(ni, depth + 1, p, sizeof p);
      sf_lua_errorf(L, "sfwb.tensor: element %s is a %s, expected a number or boolean", p, lua_typename(L, ty));
    }
    lua_pop(L, 1);
  }
}

/* writes the already-checked nested table at the top of the stack; cannot fail */
static void fill_nested(lua_State *L, const nest_info *ni, int depth, void *data, sf_dtype dt, int64_t *pos) {
  int64_t len = ni->shape[depth];
  for (int64_t i = 0; i < len; i++) {
    lua_rawgeti(L, -1, (lua_Integer)(i + 1));
    if (depth + 1 < ni->ndim) fill_nested(L, ni, depth + 1, data, dt, pos);
    else if (lua_isboolean(L, -1)) store_elem(data, dt, (*pos)++, 0, lua_toboolean(L, -1), 1);
    else if (lua_isinteger(L, -1)) store_elem(data, dt, (*pos)++, 0, lua_tointeger(L, -1), 1);
    else store_elem(data, dt, (*pos)++, lua_tonumber(L, -1), 0, 0);
    lua_pop(L, 1);
  }
}

static int l_tensor(lua_State *L) {
  sf_tensor *src = sf_lua_to_tensor(L, 1);
  if (src) { /* sfwb.tensor(t, opts): a copy, optionally converted */
    sf_dtype dt = src->dtype;
    sf_device dev = sf_device_of(src);
    check_creation_opts(L, 2, &dt, &dev);
    sf_tensor *c = sf_cast(src, dt);
    if (!c) return sf_lua_raise(L);
    sf_tensor *d = sf_to_device(c, dev);
    sf_release(c);
    if (!d) return sf_lua_raise(L);
    sf_tensor *r = sf_clone(d);
    sf_release(d);
    sf_lua_push_tensor(L, r);
    return 1;
  }
  nest_info ni;
  memset(&ni, 0, sizeof ni);
  int ty = lua_type(L, 1);
  if (ty == LUA_TNUMBER || ty == LUA_TBOOLEAN) {
    ni.ndim = 0;
    if (ty == LUA_TBOOLEAN) ni.any_bool = 1;
    else if (lua_isinteger(L, 1)) ni.any_int = 1;
    else ni.any_float = 1;
  } else if (ty == LUA_TTABLE) {
    /* the shape follows the first element at each depth; scan_nested then checks every row */
    int top = lua_gettop(L);
    lua_pushvalue(L, 1);
    int depth = 0;
    for (;;) {
      if (depth == SF_MAX_DIMS) return sf_lua_errorf(L, "sfwb.tensor: more than %d nested levels", SF_MAX_DIMS);
      ni.shape[depth++] = (int64_t)lua_rawlen(L, -1);
      if (ni.shape[depth - 1] == 0 || lua_rawgeti(L, -1, 1) != LUA_TTABLE) break;
      lua_remove(L, -2);
    }
    lua_settop(L, top);
    ni.ndim = depth;
    lua_pushvalue(L, 1);
    scan_nested(L, &ni, 0);
    lua_pop(L, 1);
  } else {
    return luaL_argerror(L, 1, lua_pushfstring(L, "expected a (nested) table of numbers, a number or a Tensor, got %s",
                                               luaL_typename(L, 1)));
  }
  sf_dtype dt = ni.any_float ? SF_F32 : ni.any_int ? SF_I64 : ni.any_bool ? SF_BOOL : SF_F32;
  sf_device dev = sf_cpu();
  check_creation_opts(L, 2, &dt, &dev);
  sf_tensor *t = sf_empty(ni.ndim, ni.shape, dt, sf_cpu());
  if (!t) return sf_lua_raise(L);
  int64_t pos = 0;
  if (ni.ndim == 0) {
    if (ty == LUA_TBOOLEAN) store_elem(sf_data_ptr(t), dt, 0, 0, lua_toboolean(L, 1), 1);
    else if (lua_isinteger(L, 1)) store_elem(sf_data_ptr(t), dt, 0, 0, lua_tointeger(L, 1), 1);
    else store_elem(sf_data_ptr(t), dt, 0, lua_tonumber(L, 1), 0, 0);
  } else {
    lua_pushvalue(L, 1);
    fill_nested(L, &ni, 0, sf_data_ptr(t), dt, &pos);
    lua_pop(L, 1);
  }
  if (dev.type != SF_DEV_CPU) {
    sf_tensor *d = sf_to_device(t, dev);
    sf_release(t);
    t = d;
  }
  sf_lua_push_tensor(L, t);
  return 1;
}

static const luaL_Reg create_funcs[] = {
    {"tensor", l_tensor},         {"zeros", l_zeros},           {"ones", l_ones},
    {"empty", l_empty},           {"full", l_full},             {"randn", l_randn},
    {"rand", l_rand},             {"arange", l_arange},         {"zeros_like", l_zeros_like},
    {"ones_like", l_ones_like},   {"empty_like", l_empty_like}, {"full_like", l_full_like},
    {"randn_like", l_randn_like}, {"rand_like", l_rand_like},   {NULL, NULL}};

void sf_lua_tensor_register_create_functions(lua_State *L) { luaL_setfuncs(L, create_funcs, 0); }
