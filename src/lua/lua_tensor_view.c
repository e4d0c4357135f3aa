/* lua_tensor_view.c — Tensor methods about shape, dtype, device and views (1-based dims in Lua). */
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "lua/lua_tensor_impl.h"

static sf_tensor *check(lua_State *L) { return sf_lua_check_tensor(L, 1); }

/* ---- queries ---- */

static int m_shape(lua_State *L) {
  sf_tensor *t = check(L);
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int m_size(lua_State *L) {
  sf_tensor *t = check(L);
  if (lua_isnoneornil(L, 2)) return m_shape(L);
  lua_pushinteger(L, t->ndim ? t->shape[sf_lua_check_dim(L, 2, t->ndim)] : 1);
  return 1;
}

static int m_stride(lua_State *L) {
  sf_tensor *t = check(L);
  if (!lua_isnoneornil(L, 2)) {
    lua_pushinteger(L, t->ndim ? t->stride[sf_lua_check_dim(L, 2, t->ndim)] : 1);
    return 1;
  }
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->stride[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int m_dim(lua_State *L) { lua_pushinteger(L, check(L)->ndim); return 1; }
static int m_numel(lua_State *L) { lua_pushinteger(L, sf_numel(check(L))); return 1; }
static int m_dtype(lua_State *L) { lua_pushstring(L, sf_dtype_name(check(L)->dtype)); return 1; }
static int m_element_size(lua_State *L) { lua_pushinteger(L, (lua_Integer)sf_dtype_size(check(L)->dtype)); return 1; }
static int m_is_contiguous(lua_State *L) { lua_pushboolean(L, sf_is_contiguous(check(L))); return 1; }
static int m_is_floating_point(lua_State *L) { lua_pushboolean(L, sf_dtype_is_float(check(L)->dtype)); return 1; }
static int m_device(lua_State *L) {
  char buf[32];
  lua_pushstring(L, sf_device_str(sf_device_of(check(L)), buf, sizeof buf));
  return 1;
}

/* ---- conversions ---- */

static void push_converted(lua_State *L, sf_tensor *t, sf_dtype dt, sf_device dev) {
  sf_tensor *c = sf_cast(t, dt);
  if (!c) sf_lua_raise(L);
  sf_tensor *d = sf_to_device(c, dev);
  sf_release(c);
  sf_lua_push_tensor(L, d);
}

/* t:to("cuda:0") / t:to("bf16") / t:to{dtype=, device=} / t:to(other_tensor) */
static int m_to(lua_State *L) {
  sf_tensor *t = check(L);
  sf_dtype dt = t->dtype;
  sf_device dev = sf_device_of(t);
  sf_tensor *o = sf_lua_to_tensor(L, 2);
  if (o) {
    dt = o->dtype;
    dev = sf_device_of(o);
  } else if (lua_type(L, 2) == LUA_TSTRING || lua_istable(L, 2)) {
    sf_lua_opt_dtype_device(L, 2, &dt, &dev);
    if (lua_type(L, 3) == LUA_TSTRING) sf_lua_opt_dtype_device(L, 3, &dt, &dev); /* t:to("cpu", "f32") */
  } else {
    return luaL_argerror(L, 2, "expected a device (\"cpu\", \"cuda:0\", \"emu:0\"), a dtype (f32, bf16, f16, i64, "
                               "i32, u8, bool), a table {dtype=, device=} or a Tensor");
  }
  push_converted(L, t, dt, dev);
  return 1;
}

static int cast_to(lua_State *L, sf_dtype dt) {
  sf_tensor *t = check(L);
  sf_lua_push_tensor(L, sf_cast(t, dt));
  return 1;
}
static int m_float(lua_State *L) { return cast_to(L, SF_F32); }
static int m_bf16(lua_State *L) { return cast_to(L, SF_BF16); }
static int m_half(lua_State *L) { return cast_to(L, SF_F16); }
static int m_long(lua_State *L) { return cast_to(L, SF_I64); }
static int m_int(lua_State *L) { return cast_to(L, SF_I32); }
static int m_byte(lua_State *L) { return cast_to(L, SF_U8); }
static int m_bool(lua_State *L) { return cast_to(L, SF_BOOL); }
static int m_double(lua_State *L) { return cast_to(L, SF_F64); }

static int m_cpu(lua_State *L) {
  sf_lua_push_tensor(L, sf_to_device(check(L), sf_cpu()));
  return 1;
}
static int m_clone(lua_State *L) {
  sf_lua_push_tensor(L, sf_clone(check(L)));
  return 1;
}
static int m_contiguous(lua_State *L) {
  sf_lua_push_tensor(L, sf_contiguous(check(L)));
  return 1;
}

/* ---- views ---- */

static int view_like(lua_State *L, int reshape) {
  sf_tensor *t = check(L);
  int64_t shape[SF_MAX_DIMS];
  int nd = sf_lua_check_shape(L, 2, shape);
  int64_t known = 1, n = sf_numel(t);
  int infer = -1;
  for (int i = 0; i < nd; i++) {
    if (shape[i] == -1) {
      if (infer >= 0) return sf_lua_errorf(L, "%s: only one size may be -1", reshape ? "reshape" : "view");
      infer = i;
    } else {
      known *= shape[i];
    }
  }
  if ((infer < 0 && known != n) || (infer >= 0 && (known == 0 || n % known))) {
    char a[96], b[160];
    size_t k = (size_t)snprintf(b, sizeof b, "[");
    for (int i = 0; i < nd; i++) k += (size_t)snprintf(b + k, sizeof b - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    snprintf(b + k, sizeof b - k, "]");
    return sf_lua_errorf(L, "%s: shape %s is invalid for a Tensor of shape %s (%lld elements)",
                      reshape ? "reshape" : "view", b, sf_lua_shape_str(t, a, sizeof a), (long long)n);
  }
  sf_tensor *r = reshape ? sf_reshape(t, nd, shape) : sf_view(t, nd, shape);
  if (!r && !reshape) {
    char a[96];
    return sf_lua_errorf(L, "view: a Tensor of shape %s with these strides cannot be viewed this way (%s); "
                         "use t:reshape() or t:contiguous():view()", sf_lua_shape_str(t, a, sizeof a), sf_last_error());
  }
  sf_lua_push_tensor(L, r);
  return 1;
}
static int m_view(lua_State *L) { return view_like(L, 0); }
static int m_reshape(lua_State *L) { return view_like(L, 1); }

static int m_view_as(lua_State *L) {
  sf_tensor *t = check(L), *o = sf_lua_check_tensor(L, 2);
  lua_settop(L, 1);
  lua_createtable(L, o->ndim, 0);
  for (int i = 0; i < o->ndim; i++) {
    lua_pushinteger(L, o->shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
  (void)t;
  return view_like(L, 0);
}

/* flatten(start_dim=1, end_dim=-1) */
static int m_flatten(lua_State *L) {
  sf_tensor *t = check(L);
  if (t->ndim == 0) {
    int64_t one = 1;
    sf_lua_push_tensor(L, sf_reshape(t, 1, &one));
    return 1;
  }
  int a = lua_isnoneornil(L, 2) ? 0 : sf_lua_check_dim(L, 2, t->ndim);
  int b = lua_isnoneornil(L, 3) ? t->ndim - 1 : sf_lua_check_dim(L, 3, t->ndim);
  if (b < a) return sf_lua_errorf(L, "flatten: end dim %d comes before start dim %d", b + 1, a + 1);
  int64_t shape[SF_MAX_DIMS];
  int nd = 0;
  for (int i = 0; i < a; i++) shape[nd++] = t->shape[i];
  int64_t m = 1;
  for (int i = a; i <= b; i++) m *= t->shape[i];
  shape[nd++] = m;
  for (int i = b + 1; i < t->ndim; i++) shape[nd++] = t->shape[i];
  sf_lua_push_tensor(L, sf_reshape(t, nd, shape));
  return 1;
}

static int m_permute(lua_State *L) {
  sf_tensor *t = check(L);
  int dims[SF_MAX_DIMS], seen[SF_MAX_DIMS] = {0};
  int n = 0;
  if (lua_istable(L, 2)) {
    n = (int)lua_rawlen(L, 2);
    if (n != t->ndim) goto bad;
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, 2, i + 1);
      dims[i] = sf_lua_check_dim(L, lua_gettop(L), t->ndim);
      lua_pop(L, 1);
    }
  } else {
    n = lua_gettop(L) - 1;
    if (n != t->ndim) goto bad;
    for (int i = 0; i < n; i++) dims[i] = sf_lua_check_dim(L, i + 2, t->ndim);
  }
  for (int i = 0; i < n; i++) {
    if (seen[dims[i]]) return sf_lua_errorf(L, "permute: dim %d appears twice", dims[i] + 1);
    seen[dims[i]] = 1;
  }
  sf_lua_push_tensor(L, sf_permute(t, dims));
  return 1;
bad:;
  char a[96];
  return sf_lua_errorf(L, "permute: needs %d dims for a Tensor of shape %s, got %d", t->ndim,
                    sf_lua_shape_str(t, a, sizeof a), lua_istable(L, 2) ? (int)lua_rawlen(L, 2) : lua_gettop(L) - 1);
}

static int m_transpose(lua_State *L) {
  sf_tensor *t = check(L);
  int a = sf_lua_check_dim(L, 2, t->ndim), b = sf_lua_check_dim(L, 3, t->ndim);
  sf_lua_push_tensor(L, sf_transpose(t, a, b));
  return 1;
}

/* t:t() — 2-D transpose (a 1-D tensor is returned as a view) */
static int m_t(lua_State *L) {
  sf_tensor *t = check(L);
  if (t->ndim > 2) return sf_lua_errorf(L, "t:t() expects a Tensor with at most 2 dims, got %d (use t:transpose(a, b))", t->ndim);
  sf_lua_push_tensor(L, t->ndim < 2 ? sf_alias(t) : sf_transpose(t, 0, 1));
  return 1;
}

/* narrow(dim, start, len): start is 1-based, negative counts from the end */
static int m_narrow(lua_State *L) {
  sf_tensor *t = check(L);
  if (t->ndim == 0) return sf_lua_errorf(L, "narrow: cannot narrow a 0-dim Tensor");
  int d = sf_lua_check_dim(L, 2, t->ndim);
  lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  int64_t size = t->shape[d];
  int64_t s0;
  if (start == size + 1 && len == 0) s0 = size; /* an empty slice at the end is fine */
  else s0 = sf_lua_check_index(L, start, size, d + 1, "narrow: start");
  if (len < 0 || s0 + len > size)
    return sf_lua_errorf(L, "narrow: start %lld + length %lld exceeds dim %d of size %lld", (long long)start,
                      (long long)len, d + 1, (long long)size);
  sf_lua_push_tensor(L, sf_narrow(t, d, s0, len));
  return 1;
}

static int m_select(lua_State *L) {
  sf_tensor *t = check(L);
  if (t->ndim == 0) return sf_lua_errorf(L, "select: cannot select from a 0-dim Tensor");
  int d = sf_lua_check_dim(L, 2, t->ndim);
  int64_t i = sf_lua_check_index(L, luaL_checkinteger(L, 3), t->shape[d], d + 1, "select: index");
  sf_lua_push_tensor(L, sf_select(t, d, i));
  return 1;
}

static int m_unsqueeze(lua_State *L) {
  sf_tensor *t = check(L);
  int d = sf_lua_check_dim(L, 2, t->ndim + 1); /* a new dim may go anywhere in 1..ndim+1 */
  sf_lua_push_tensor(L, sf_unsqueeze(t, d));
  return 1;
}

static int m_squeeze(lua_State *L) {
  sf_tensor *t = check(L);
  int d = lua_isnoneornil(L, 2) ? SF_ALL_DIMS : (t->ndim ? sf_lua_check_dim(L, 2, t->ndim) : SF_ALL_DIMS);
  sf_lua_push_tensor(L, sf_squeeze(t, d));
  return 1;
}

static int m_expand(lua_State *L) {
  sf_tensor *t = check(L);
  int64_t shape[SF_MAX_DIMS];
  int nd;
  sf_tensor *o = sf_lua_to_tensor(L, 2);
  if (o) {
    nd = o->ndim;
    memcpy(shape, o->shape, sizeof shape);
  } else {
    nd = sf_lua_check_shape(L, 2, shape);
  }
  int ok = nd >= t->ndim;
  for (int i = 0; ok && i < t->ndim; i++) {
    int64_t ts = t->shape[t->ndim - 1 - i], s = shape[nd - 1 - i];
    if (s != -1 && s != ts && ts != 1) ok = 0;
  }
  for (int i = 0; ok && i < nd - t->ndim; i++)
    if (shape[i] < 0) ok = 0;
  if (!ok) {
    char a[96], b[160];
    size_t k = (size_t)snprintf(b, sizeof b, "[");
    for (int i = 0; i < nd; i++) k += (size_t)snprintf(b + k, sizeof b - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    snprintf(b + k, sizeof b - k, "]");
    return sf_lua_errorf(L, "expand: a Tensor of shape %s cannot be expanded to %s (only size-1 dims expand)",
                      sf_lua_shape_str(t, a, sizeof a), b);
  }
  sf_lua_push_tensor(L, sf_expand(t, nd, shape));
  return 1;
}

/* ---- in-place writes ---- */

static int m_copy_(lua_State *L) {
  sf_tensor *t = check(L), *s = sf_lua_check_tensor(L, 2);
  int ok = s->ndim <= t->ndim;
  for (int i = 0; ok && i < s->ndim; i++)
    if (s->shape[s->ndim - 1 - i] != t->shape[t->ndim - 1 - i] && s->shape[s->ndim - 1 - i] != 1) ok = 0;
  if (!ok) {
    char a[96], b[96];
    return sf_lua_errorf(L, "copy_: source of shape %s does not broadcast to destination shape %s",
                      sf_lua_shape_str(s, b, sizeof b), sf_lua_shape_str(t, a, sizeof a));
  }
  if (sf_copy_(t, s)) return sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int m_fill_(lua_State *L) {
  sf_tensor *t = check(L);
  if (sf_fill_(t, sf_lua_check_scalar(L, 2, "fill_"))) return sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int m_zero_(lua_State *L) {
  if (sf_fill_(check(L), 0)) return sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

static const luaL_Reg view_methods[] = {
    {"shape", m_shape},         {"size", m_size},
    {"stride", m_stride},       {"dim", m_dim},
    {"ndim", m_dim},            {"numel", m_numel},
    {"nelement", m_numel},      {"dtype", m_dtype},
    {"device", m_device},       {"element_size", m_element_size},
    {"is_contiguous", m_is_contiguous}, {"is_floating_point", m_is_floating_point},
    {"to", m_to},               {"float", m_float},
    {"bf16", m_bf16},           {"half", m_half},
    {"long", m_long},           {"int", m_int},
    {"byte", m_byte},           {"bool", m_bool},
    {"double", m_double},       {"cpu", m_cpu},
    {"clone", m_clone},         {"contiguous", m_contiguous},
    {"view", m_view},           {"reshape", m_reshape},
    {"view_as", m_view_as},     {"flatten", m_flatten},
    {"permute", m_permute},     {"transpose", m_transpose},
    {"t", m_t},                 {"narrow", m_narrow},
    {"select", m_select},       {"unsqueeze", m_unsqueeze},
    {"squeeze", m_squeeze},     {"expand", m_expand},
    {"expand_as", m_expand},    {"copy_", m_copy_},
    {"fill_", m_fill_},         {"zero_", m_zero_},
    {NULL, NULL}};

void sf_lua_tensor_register_view_methods(lua_State *L) { luaL_setfuncs(L, view_methods, 0); }
