/* lua_tensor.c — the Tensor userdata (metatable, lifetime, indexing), argument parsing, sfwb utilities. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "core/error.h"
#include "core/half.h"
#include "core/ops.h"
#include "lua/lua_tensor_impl.h"

#define DTYPE_LIST "f32, bf16, f16, i64, i32, u8, bool"

/* ---------------------------------------------------------------- errors and helpers */

int sf_lua_raise(lua_State *L) {
  const char *m = sf_last_error();
  return luaL_error(L, "%s", (m && *m) ? m : "tensor operation failed (no message)");
}

int sf_lua_errorf(lua_State *L, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return luaL_error(L, "%s", buf);
}

const char *sf_lua_shape_str(const sf_tensor *t, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "[");
  for (int i = 0; i < t->ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

/* ---------------------------------------------------------------- the metatable */

static int tensor_gc(lua_State *L) {
  sf_lua_tensor_ud *u = (sf_lua_tensor_ud *)luaL_checkudata(L, 1, SF_TENSOR_MT);
  sf_tensor *t = u->t;
  u->t = NULL;
  sf_release(t);
  return 0;
}

static int tensor_free(lua_State *L) {
  tensor_gc(L);
  return 0;
}

sf_tensor *sf_lua_to_tensor(lua_State *L, int idx) {
  sf_lua_tensor_ud *u = (sf_lua_tensor_ud *)luaL_testudata(L, idx, SF_TENSOR_MT);
  return u ? u->t : NULL;
}

sf_tensor *sf_lua_check_tensor(lua_State *L, int idx) {
  sf_lua_tensor_ud *u = (sf_lua_tensor_ud *)luaL_testudata(L, idx, SF_TENSOR_MT);
  if (!u) {
    const char *got = luaL_typename(L, idx);
    if (idx == 1 && lua_isnone(L, 1))
      return (luaL_argerror(L, idx, "Tensor expected, got no value (did you write t.f() instead of t:f()?)"), NULL);
    return (luaL_argerror(L, idx, lua_pushfstring(L, "Tensor expected, got %s", got)), NULL);
  }
  if (!u->t) return (luaL_argerror(L, idx, "this Tensor was released by t:free() or went out of scope"), NULL);
  return u->t;
}

/* three side tables of the metatable: methods (t:f()), getters (t.x), setters (t.x = v) */
static void push_side_table(lua_State *L, const char *name);

/* t[{i, {a, b}, {}}] as Torch7: a number selects (the dim goes away), {a, b} keeps a..b inclusive, {a}
 * keeps a..a, {} keeps the whole dim; omitted trailing dims are kept. Everything is checked before
 * the first view is made, so errors leave nothing behind. Returns a new reference. */
static sf_tensor *table_index(lua_State *L, sf_tensor *t, int k) {
  struct { int kind; int64_t a, len; } sp[SF_MAX_DIMS];
  int n = (int)lua_rawlen(L, k);
  if (n > t->ndim) {
    char s[96];
    sf_lua_errorf(L, "index table has %d entries for a Tensor of shape %s", n, sf_lua_shape_str(t, s, sizeof s));
  }
  for (int d = 0; d < n; d++) {
    int isint = 0;
    lua_rawgeti(L, k, d + 1);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Integer i = lua_tointegerx(L, -1, &isint);
      if (!isint) sf_lua_errorf(L, "index entry %d must be an integer, got %s", d + 1, lua_tostring(L, -1));
      sp[d].kind = 1;
      sp[d].a = sf_lua_check_index(L, i, t->shape[d], d + 1, "index");
    } else if (lua_istable(L, -1)) {
      int m = (int)lua_rawlen(L, -1);
      if (m == 0) {
        sp[d].kind = 0;
      } else if (m <= 2) {
        lua_Integer a, b;
        lua_rawgeti(L, -1, 1);
        a = lua_tointegerx(L, -1, &isint);
        if (!isint) sf_lua_errorf(L, "range of dim %d must hold integers {first, last}", d + 1);
        lua_rawgeti(L, -2, m);
        b = lua_tointegerx(L, -1, &isint);
        if (!isint) sf_lua_errorf(L, "range of dim %d must hold integers {first, last}", d + 1);
        lua_pop(L, 2);
        int64_t a0 = sf_lua_check_index(L, a, t->shape[d], d + 1, "range start");
        int64_t b0 = sf_lua_check_index(L, b, t->shape[d], d + 1, "range end");
        if (b0 < a0) sf_lua_errorf(L, "range {%lld, %lld} of dim %d is empty", (long long)a, (long long)b, d + 1);
        sp[d].kind = 2;
        sp[d].a = a0;
        sp[d].len = b0 - a0 + 1;
      } else {
        sf_lua_errorf(L, "range of dim %d must be {first, last}, {i} or {}, got %d entries", d + 1, m);
      }
    } else {
      sf_lua_errorf(L, "index entry %d must be a number or a range table, got %s", d + 1, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  sf_tensor *cur = sf_retain(t);
  int dim = 0;
  for (int d = 0; d < n && cur; d++) {
    sf_tensor *nx = cur;
    if (sp[d].kind == 1) nx = sf_select(cur, dim, sp[d].a);
    else if (sp[d].kind == 2) nx = sf_narrow(cur, dim++, sp[d].a, sp[d].len);
    else { dim++; continue; }
    sf_release(cur);
    cur = nx;
  }
  if (!cur) sf_lua_raise(L);
  return cur;
}

static int tensor_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) {
      lua_pushvalue(L, 1);
      lua_call(L, 1, 1);
      return 1;
    }
    return 1; /* nil */
  }
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  if (lua_istable(L, 2)) {
    sf_tensor *r = table_index(L, t, 2);
    sf_lua_push_tensor(L, r);
    if (r->ndim == 0) { /* every dim selected: a number */
      sf_tensor *c = sf_lua_push_cpu_copy(L, r);
      sf_lua_push_elem(L, c, c->offset);
    }
    return 1;
  }
  int isint = 0;
  lua_Integer i = lua_tointegerx(L, 2, &isint);
  if (!isint) {
    if (lua_type(L, 2) == LUA_TNUMBER) return sf_lua_errorf(L, "Tensor index must be an integer, got %s", lua_tostring(L, 2));
    return sf_lua_errorf(L, "cannot index a Tensor with a %s (use t[i], t[{i, {a, b}}] or t:select(dim, i))", luaL_typename(L, 2));
  }
  if (t->ndim == 0) return sf_lua_errorf(L, "cannot index a 0-dim Tensor (use t:item())");
  int64_t i0 = sf_lua_check_index(L, i, t->shape[0], 1, "index");
  if (t->ndim == 1 && sf_device_of(t).type == SF_DEV_CPU) { /* fast path for loops over t[i] */
    sf_lua_push_elem(L, t, t->offset + i0 * t->stride[0]);
    return 1;
  }
  sf_tensor *r = sf_select(t, 0, i0);
  if (!r) return sf_lua_raise(L);
  if (r->ndim == 0) { /* a 1-D tensor yields numbers, as in Torch7 */
    sf_lua_push_tensor(L, r);
    sf_tensor *c = sf_lua_push_cpu_copy(L, r);
    sf_lua_push_elem(L, c, c->offset);
    return 1;
  }
  sf_lua_push_tensor(L, r);
  return 1;
}

static int tensor_newindex(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) {
      lua_pushvalue(L, 1);
      lua_pushvalue(L, 3);
      lua_call(L, 2, 0);
      return 0;
    }
    return sf_lua_errorf(L, "cannot set field '%s' of a Tensor (use methods such as t:fill_(v) or t:copy_(src))",
                      lua_tostring(L, 2));
  }
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_tensor *src = sf_lua_to_tensor(L, 3);
  double v = 0;
  if (!src) v = sf_lua_check_scalar(L, 3, "t[i] = v");
  sf_tensor *r;
  if (lua_istable(L, 2)) {
    r = table_index(L, t, 2);
  } else {
    int isint = 0;
    lua_Integer i = lua_tointegerx(L, 2, &isint);
    if (!isint) return sf_lua_errorf(L, "Tensor index must be an integer or a table, got %s", luaL_typename(L, 2));
    if (t->ndim == 0) return sf_lua_errorf(L, "cannot index a 0-dim Tensor (use t:fill_(v))");
    int64_t i0 = sf_lua_check_index(L, i, t->shape[0], 1, "index");
    r = sf_select(t, 0, i0);
    if (!r) return sf_lua_raise(L);
  }
  if (src) {
    char a[96], b[96];
    sf_tensor *s2 = src;
    /* the source must broadcast to the row's shape */
    int ok = s2->ndim <= r->ndim;
    for (int k = 0; ok && k < s2->ndim; k++) {
      int64_t ss = s2->shape[s2->ndim - 1 - k], rs = r->shape[r->ndim - 1 - k];
      if (ss != rs && ss != 1) ok = 0;
    }
    if (!ok) {
      sf_lua_shape_str(r, a, sizeof a);
      sf_lua_shape_str(src, b, sizeof b);
      sf_release(r);
      return sf_lua_errorf(L, "t[i] = v: cannot copy a Tensor of shape %s into a part of shape %s", b, a);
    }
  }
  int rc = src ? sf_copy_(r, src) : sf_fill_(r, v);
  sf_release(r);
  if (rc) return sf_lua_raise(L);
  return 0;
}

/* a < b, a <= b: Lua turns the result into a boolean, so only single-element tensors compare (by
 * value, e.g. `if loss < 1e-3`); elementwise comparisons are t:lt(x), t:le(x) */
static double compare_operand(lua_State *L, int idx, const char *op) {
  if (lua_type(L, idx) == LUA_TNUMBER) return lua_tonumber(L, idx);
  sf_tensor *t = sf_lua_check_tensor(L, idx);
  if (sf_numel(t) != 1) {
    char s[96];
    sf_lua_errorf(L, "'%s' compares single-element Tensors only (got shape %s); use t:%s(x) for an elementwise result",
                  op, sf_lua_shape_str(t, s, sizeof s), op[1] == '=' ? "le" : "lt");
  }
  sf_tensor *c = sf_lua_push_cpu_copy(L, t);
  double v = sf_lua_elem_double(c, c->offset);
  lua_pop(L, 1);
  return v;
}
static int tensor_lt(lua_State *L) {
  double a = compare_operand(L, 1, "<"), b = compare_operand(L, 2, "<");
  lua_pushboolean(L, a < b);
  return 1;
}
static int tensor_le(lua_State *L) {
  double a = compare_operand(L, 1, "<="), b = compare_operand(L, 2, "<=");
  lua_pushboolean(L, a <= b);
  return 1;
}

static int tensor_len(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  if (t->ndim == 0) return sf_lua_errorf(L, "#t of a 0-dim Tensor (it has no dim 1; use t:numel())");
  lua_pushinteger(L, t->shape[0]);
  return 1;
}

static void push_side_table(lua_State *L, const char *name) {
  luaL_getmetatable(L, SF_TENSOR_MT);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    luaL_newmetatable(L, SF_TENSOR_MT);
  }
  if (lua_getfield(L, -1, name) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
  }
  lua_remove(L, -2);
}

static void add_to(lua_State *L, const char *table, const char *name, lua_CFunction f) {
  push_side_table(L, table);
  lua_pushcfunction(L, f);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}
void sf_lua_tensor_add_method(lua_State *L, const char *name, lua_CFunction f) { add_to(L, "methods", name, f); }
void sf_lua_tensor_add_getter(lua_State *L, const char *name, lua_CFunction f) { add_to(L, "getters", name, f); }
void sf_lua_tensor_add_setter(lua_State *L, const char *name, lua_CFunction f) { add_to(L, "setters", name, f); }

/* arithmetic metamethods live in lua_tensor_math.c as methods; the metatable points at them */
static void link_metamethod(lua_State *L, int mt, const char *meta, const char *method) {
  push_side_table(L, "methods");
  lua_getfield(L, -1, method);
  lua_setfield(L, mt, meta);
  lua_pop(L, 1);
}

static void setup_metatable(lua_State *L) {
  push_side_table(L, "methods"); /* creates the metatable too */
  lua_pop(L, 1);
  luaL_getmetatable(L, SF_TENSOR_MT);
  int mt = lua_gettop(L);
  push_side_table(L, "methods");
  push_side_table(L, "getters");
  lua_pushcclosure(L, tensor_index, 2);
  lua_setfield(L, mt, "__index");
  push_side_table(L, "setters");
  lua_pushcclosure(L, tensor_newindex, 1);
  lua_setfield(L, mt, "__newindex");
  lua_pushcfunction(L, tensor_gc);
  lua_setfield(L, mt, "__gc");
  lua_pushcfunction(L, tensor_gc);
  lua_setfield(L, mt, "__close");
  lua_pushcfunction(L, tensor_len);
  lua_setfield(L, mt, "__len");
  lua_pushcfunction(L, tensor_lt);
  lua_setfield(L, mt, "__lt");
  lua_pushcfunction(L, tensor_le);
  lua_setfield(L, mt, "__le");
  lua_pushcfunction(L, sf_lua_tensor_tostring);
  lua_setfield(L, mt, "__tostring");
  lua_pop(L, 1);
}

void sf_lua_push_tensor(lua_State *L, sf_tensor *t) {
  if (!t) sf_lua_raise(L);
  sf_lua_tensor_ud *u = (sf_lua_tensor_ud *)lua_newuserdatauv(L, sizeof *u, 0);
  u->t = t;
  if (luaL_getmetatable(L, SF_TENSOR_MT) == LUA_TNIL) {
    lua_pop(L, 1);
    setup_metatable(L);
    luaL_getmetatable(L, SF_TENSOR_MT);
  }
  lua_setmetatable(L, -2);
  /* the GC cannot see tensor memory: charge fresh large storages to it so garbage tensors are
   * collected at a pace proportional to the bytes they hold, not to their tiny userdata */
  if (t->storage && t->storage->refcount == 1 && t->storage->nbytes >= (16u << 10)) {
    size_t kb = t->storage->nbytes >> 10;
    lua_gc(L, LUA_GCSTEP, kb > (1u << 30) ? (1 << 30) : (int)kb);
  }
}

sf_tensor *sf_lua_push_cpu_copy(lua_State *L, sf_tensor *t) {
  sf_tensor *c = sf_to_device(t, sf_cpu());
  sf_lua_push_tensor(L, c);
  return c;
}

int64_t sf_lua_check_index(lua_State *L, int64_t i, int64_t size, int dim1, const char *what) {
  if (i >= 1 && i <= size) return i - 1;
  if (i <= -1 && i >= -size) return size + i;
  if (size == 0) sf_lua_errorf(L, "%s %lld is out of range for dim %d of size 0", what, (long long)i, dim1);
  sf_lua_errorf(L, "%s %lld is out of range for dim %d of size %lld (valid: 1..%lld or -%lld..-1%s)", what,
             (long long)i, dim1, (long long)size, (long long)size, (long long)size,
             i == 0 ? "; indices are 1-based" : "");
  return -1;
}

/* ---------------------------------------------------------------- elements */

double sf_lua_elem_double(const sf_tensor *t, int64_t off) {
  const char *p = (const char *)t->storage->data + off * (int64_t)sf_dtype_size(t->dtype);
  switch (t->dtype) {
    case SF_F32: { float v; memcpy(&v, p, 4); return v; }
    case SF_F64: { double v; memcpy(&v, p, 8); return v; }
    case SF_BF16: { uint16_t h; memcpy(&h, p, 2); return sf_bf16_to_f32(h); }
    case SF_F16: { uint16_t h; memcpy(&h, p, 2); return sf_f16_to_f32(h); }
    default: return (double)sf_lua_elem_int(t, off);
  }
}

int64_t sf_lua_elem_int(const sf_tensor *t, int64_t off) {
  const char *p = (const char *)t->storage->data + off * (int64_t)sf_dtype_size(t->dtype);
  switch (t->dtype) {
    case SF_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    case SF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case SF_U8: return *(const uint8_t *)p;
    case SF_BOOL: return *(const uint8_t *)p != 0;
    default: return (int64_t)sf_lua_elem_double(t, off);
  }
}

void sf_lua_push_elem(lua_State *L, const sf_tensor *t, int64_t off) {
  if (t->dtype == SF_BOOL) lua_pushboolean(L, (int)sf_lua_elem_int(t, off));
  else if (sf_dtype_is_float(t->dtype)) lua_pushnumber(L, sf_lua_elem_double(t, off));
  else lua_pushinteger(L, sf_lua_elem_int(t, off));
}


/* ---------------------------------------------------------------- argument parsing */

int sf_lua_check_shape(lua_State *L, int idx, int64_t *shape) {
  if (lua_istable(L, idx)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n > SF_MAX_DIMS) return sf_lua_errorf(L, "shape has %d dims; at most %d are supported", (int)n, SF_MAX_DIMS);
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, idx, i + 1);
      int isint = 0;
      lua_Integer v = lua_tointegerx(L, -1, &isint);
      if (!isint) return sf_lua_errorf(L, "shape entry %d must be an integer, got %s", i + 1, luaL_typename(L, -1));
      if (v < -1) return sf_lua_errorf(L, "shape entry %d is negative (%lld)", i + 1, (long long)v);
      lua_pop(L, 1);
      shape[i] = v;
    }
    return (int)n;
  }
  int n = 0;
  while (lua_type(L, idx + n) == LUA_TNUMBER) {
    if (n == SF_MAX_DIMS) return sf_lua_errorf(L, "shape has more than %d dims", SF_MAX_DIMS);
    int isint = 0;
    lua_Integer v = lua_tointegerx(L, idx + n, &isint);
    if (!isint) return sf_lua_errorf(L, "size %d of the shape must be an integer, got %s", n + 1, lua_tostring(L, idx + n));
    if (v < -1) return sf_lua_errorf(L, "size %d of the shape is negative (%lld)", n + 1, (long long)v);
    shape[n++] = v;
  }
  if (n == 0)
    luaL_argerror(L, idx, lua_pushfstring(L, "expected a shape (a table such as {2, 3}, or sizes 2, 3), got %s",
                                          luaL_typename(L, idx)));
  return n;
}

/* index of the first argument after a shape read by sf_lua_check_shape */

static sf_dtype check_dtype_name(lua_State *L, const char *name) {
  sf_dtype dt;
  if (sf_dtype_from_name(name, &dt) != 0)
    sf_lua_errorf(L, "unknown dtype '%s' (accepted: " DTYPE_LIST
               "; torch names float32, float, bfloat16, float16, half, int64, long, int32, int, uint8 also work)", name);
  return dt;
}

static sf_device check_device_name(lua_State *L, const char *name) {
  sf_device dev;
  if (sf_device_parse(name, &dev) != 0) {
    char names[16][16];
    int n = sf_device_list(names, 16);
    char avail[300] = "";
    for (int i = 0; i < n; i++) {
      strncat(avail, i ? ", " : "", sizeof avail - strlen(avail) - 1);
      strncat(avail, names[i], sizeof avail - strlen(avail) - 1);
    }
    sf_lua_errorf(L, "unknown device '%s' (accepted forms: cpu, cuda:N, emu:N; available here: %s)", name, avail);
  }
  if (!sf_backend_for(dev)) sf_lua_raise(L);
  return dev;
}

static int looks_like_device(const char *s) {
  return !strncmp(s, "cpu", 3) || !strncmp(s, "cuda", 4) || !strncmp(s, "emu", 3);
}

void sf_lua_opt_dtype_device(lua_State *L, int idx, sf_dtype *dt, sf_device *dev) {
  int ty = lua_type(L, idx);
  if (ty == LUA_TNONE || ty == LUA_TNIL) return;
  if (ty == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    if (looks_like_device(s)) *dev = check_device_name(L, s);
    else *dt = check_dtype_name(L, s);
    return;
  }
  if (ty != LUA_TTABLE) {
    luaL_argerror(L, idx, lua_pushfstring(L, "expected options {dtype=, device=}, got %s", luaL_typename(L, idx)));
    return;
  }
  if (lua_getfield(L, idx, "dtype") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) sf_lua_errorf(L, "option dtype must be a string (" DTYPE_LIST "), got %s", luaL_typename(L, -1));
    *dt = check_dtype_name(L, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "device") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) sf_lua_errorf(L, "option device must be a string such as \"cpu\", got %s", luaL_typename(L, -1));
    *dev = check_device_name(L, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
}

/* creation options accept only dtype/device: a typo must not be ignored silently */

int sf_lua_check_dim(lua_State *L, int idx, int ndim) {
  int isint = 0;
  lua_Integer d = lua_tointegerx(L, idx, &isint);
  if (!isint) {
    luaL_argerror(L, idx, lua_pushfstring(L, "dim must be an integer, got %s", luaL_typename(L, idx)));
    return 0;
  }
  int n = ndim == 0 ? 1 : ndim; /* a 0-dim tensor accepts dim 1 / -1, as torch accepts 0 / -1 */
  if (d >= 1 && d <= n) return (int)d - 1;
  if (d <= -1 && d >= -n) return n + (int)d;
  sf_lua_errorf(L, "dim %lld is out of range for a %d-dim Tensor (valid: 1..%d or -%d..-1%s)", (long long)d, ndim, n, n,
             d == 0 ? "; dims are 1-based" : "");
  return 0;
}


/* ---------------------------------------------------------------- sfwb.* utilities */

static int l_manual_seed(lua_State *L) {
  sf_manual_seed((uint64_t)luaL_checkinteger(L, 1));
  return 0;
}

static int l_rng_state(lua_State *L) {
  uint64_t seed, offset;
  sf_rng_state(&seed, &offset);
  lua_pushinteger(L, (lua_Integer)seed);
  lua_pushinteger(L, (lua_Integer)offset);
  return 2;
}

static int l_set_rng_state(lua_State *L) {
  sf_rng_set_state((uint64_t)luaL_checkinteger(L, 1), (uint64_t)luaL_optinteger(L, 2, 0));
  return 0;
}

static int l_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
  return 1;
}

static int l_devices(lua_State *L) {
  char names[64][16];
  int n = sf_device_list(names, 64);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_sync(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    sf_device dev = check_device_name(L, luaL_checkstring(L, 1));
    const sf_backend *b = sf_backend_for(dev);
    if (!b) return sf_lua_raise(L);
    if (b->sync && b->sync(dev)) return sf_lua_raise(L);
    return 0;
  }
  char names[64][16];
  int n = sf_device_list(names, 64);
  for (int i = 0; i < n; i++) {
    sf_device dev;
    if (sf_device_parse(names[i], &dev)) continue;
    const sf_backend *b = sf_backend_for(dev);
    if (b && b->sync && b->sync(dev)) return sf_lua_raise(L);
  }
  return 0;
}

/* sfwb.sleep(seconds): waits in C, polling the interrupt flag as long C loops must (Ctrl-C in the REPL) */
static int l_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1), t0 = 0;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  t0 = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
  for (;;) {
    if (sf_interrupted()) return sf_lua_errorf(L, "sleep: interrupted");
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double left = s - ((double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec - t0);
    if (left <= 0) return 0;
    struct timespec nap = {0, (long)(1e9 * (left < 0.01 ? left : 0.01))};
    nanosleep(&nap, NULL);
  }
}

static int l_is_tensor(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, SF_TENSOR_MT) != NULL);
  return 1;
}

static const luaL_Reg module_funcs[] = {
    {"manual_seed", l_manual_seed}, {"rng_state", l_rng_state}, {"set_rng_state", l_set_rng_state},
    {"time", l_time},               {"devices", l_devices},     {"sync", l_sync},
    {"is_tensor", l_is_tensor},     {"sleep", l_sleep},         {NULL, NULL}};

static const luaL_Reg base_methods[] = {{"free", tensor_free}, {NULL, NULL}};

void sf_lua_register_tensor(lua_State *L) {
  int sfwb = lua_gettop(L);
  setup_metatable(L);
  push_side_table(L, "methods");
  luaL_setfuncs(L, base_methods, 0);
  sf_lua_tensor_register_view_methods(L);
  sf_lua_tensor_register_math_methods(L);
  sf_lua_tensor_register_print_methods(L);
  lua_setfield(L, sfwb, "Tensor"); /* sfwb.Tensor: the method table, extensible from Lua */
  luaL_getmetatable(L, SF_TENSOR_MT);
  int mt = lua_gettop(L);
  static const char *const arith[][2] = {{"__add", "add"}, {"__sub", "sub"}, {"__mul", "mul"},
                                         {"__div", "div"}, {"__unm", "neg"}, {"__pow", "pow"}};
  for (size_t i = 0; i < sizeof arith / sizeof arith[0]; i++) link_metamethod(L, mt, arith[i][0], arith[i][1]);
  lua_pop(L, 1);
  lua_pushvalue(L, sfwb);
  luaL_setfuncs(L, module_funcs, 0);
  sf_lua_tensor_register_create_functions(L);
  sf_lua_tensor_register_math_functions(L);
  lua_settop(L, sfwb);
}

void sf_lua_gc_metatable(lua_State *L, const char *name, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}
