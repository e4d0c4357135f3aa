/* lua_tensor_math.c — arithmetic, unary math, reductions, matmul/cat/stack/where for Lua tensors. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "lua/lua_tensor_impl.h"

/* ---------------------------------------------------------------- argument checks */

void sf_lua_check_broadcast(lua_State *L, const sf_tensor *a, const sf_tensor *b, const char *op) {
  int n = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int i = 0; i < n; i++) {
    int64_t x = i < a->ndim ? a->shape[a->ndim - 1 - i] : 1, y = i < b->ndim ? b->shape[b->ndim - 1 - i] : 1;
    if (x != y && x != 1 && y != 1) {
      char sa[96], sb[96];
      sf_lua_errorf(L, "%s: shapes %s and %s are not broadcastable (%lld vs %lld in dim %d from the end)", op,
                 sf_lua_shape_str(a, sa, sizeof sa), sf_lua_shape_str(b, sb, sizeof sb), (long long)x, (long long)y,
                 i + 1);
    }
  }
}

double sf_lua_check_scalar(lua_State *L, int idx, const char *op) {
  int ty = lua_type(L, idx);
  if (ty == LUA_TNUMBER) return lua_tonumber(L, idx);
  if (ty == LUA_TBOOLEAN) return lua_toboolean(L, idx);
  sf_lua_errorf(L, "%s: expected a Tensor or a number, got %s", op, luaL_typename(L, idx));
  return 0;
}

/* a Tensor at idx, NULL for a number/boolean; other userdata or a freed Tensor raise */
static sf_tensor *tensor_or_null(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TUSERDATA ? sf_lua_check_tensor(L, idx) : NULL;
}

static void check_same_device(lua_State *L, const sf_tensor *a, const sf_tensor *b, const char *op) {
  if (!sf_device_eq(sf_device_of(a), sf_device_of(b))) {
    char da[32], db[32];
    sf_lua_errorf(L, "%s: Tensors are on different devices (%s and %s); move one with t:to(device)", op,
               sf_device_str(sf_device_of(a), da, sizeof da), sf_device_str(sf_device_of(b), db, sizeof db));
  }
}

/* ---------------------------------------------------------------- binary ops */

#define bin_names(op) sf_binary_op_name(op) /* names from the one op list, core/dispatch.h */

static int binop(lua_State *L, sf_binary_op op) {
  const char *name = bin_names(op);
  sf_tensor *a = tensor_or_null(L, 1), *b = tensor_or_null(L, 2);
  sf_tensor *r;
  if (a && b) {
    sf_lua_check_broadcast(L, a, b, name);
    check_same_device(L, a, b, name);
    r = sf_binary(op, a, b);
  } else if (a) {
    r = sf_binary_scalar(op, a, sf_lua_check_scalar(L, 2, name), false);
  } else if (b) {
    r = sf_binary_scalar(op, b, sf_lua_check_scalar(L, 1, name), true);
  } else {
    return sf_lua_errorf(L, "%s: expected a Tensor, got %s and %s", name, luaL_typename(L, 1), luaL_typename(L, 2));
  }
  sf_lua_push_tensor(L, r);
  return 1;
}

static int l_binop(lua_State *L) { return binop(L, (sf_binary_op)lua_tointeger(L, lua_upvalueindex(1))); }

/* in place: a = a op b; add_/sub_ take an optional alpha (a += alpha * b) as torch */
static int l_binop_(lua_State *L) {
  sf_binary_op op = (sf_binary_op)lua_tointeger(L, lua_upvalueindex(1));
  char name[24];
  snprintf(name, sizeof name, "%s_", bin_names(op));
  sf_tensor *a = sf_lua_check_tensor(L, 1), *b = tensor_or_null(L, 2);
  int has_alpha = (op == SF_BIN_ADD || op == SF_BIN_SUB) && !lua_isnoneornil(L, 3);
  double alpha = has_alpha ? luaL_checknumber(L, 3) : 1.0;
  int rc;
  if (b) {
    sf_lua_check_broadcast(L, a, b, name);
    check_same_device(L, a, b, name);
    for (int i = 0; i < b->ndim; i++) {
      if (b->ndim > a->ndim || (b->shape[b->ndim - 1 - i] != 1 && b->shape[b->ndim - 1 - i] != a->shape[a->ndim - 1 - i])) {
        char sa[96], sb[96];
        return sf_lua_errorf(L, "%s: the result would have a different shape than the destination %s (operand %s)", name,
                          sf_lua_shape_str(a, sa, sizeof sa), sf_lua_shape_str(b, sb, sizeof sb));
      }
    }
    if (has_alpha && alpha != 1.0) {
      sf_tensor *tmp = sf_binary_scalar(SF_BIN_MUL, b, alpha, false);
      if (!tmp) return sf_lua_raise(L);
      rc = sf_binary_(op, a, tmp);
      sf_release(tmp);
    } else {
      rc = sf_binary_(op, a, b);
    }
  } else {
    rc = sf_binary_scalar_(op, a, sf_lua_check_scalar(L, 2, name) * alpha);
  }
  if (rc) return sf_lua_raise(L);
  lua_settop(L, 1);
  return 1;
}

/* pow: tensor ^ number is the unary POW; number ^ tensor and tensor ^ tensor are binary */
static int l_pow(lua_State *L) {
  sf_tensor *a = tensor_or_null(L, 1), *b = tensor_or_null(L, 2);
  if (a && !b) {
    sf_lua_push_tensor(L, sf_unary(SF_UN_POW, a, sf_lua_check_scalar(L, 2, "pow"), 0));
    return 1;
  }
  return binop(L, SF_BIN_POW);
}

/* t:max() / t:max(dim, keepdim) -> values, indices / t:max(other) elementwise (same for min) */
static int reduce(lua_State *L, sf_reduce_op op);
static int l_max(lua_State *L) {
  if (tensor_or_null(L, 2)) return binop(L, SF_BIN_MAX);
  return reduce(L, SF_RED_MAX);
}
static int l_min(lua_State *L) {
  if (tensor_or_null(L, 2)) return binop(L, SF_BIN_MIN);
  return reduce(L, SF_RED_MIN);
}

/* ---------------------------------------------------------------- unary ops */

static int l_unary(lua_State *L) {
  sf_unary_op op = (sf_unary_op)lua_tointeger(L, lua_upvalueindex(1));
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_lua_push_tensor(L, sf_unary(op, t, 0, 0));
  return 1;
}

static int l_gelu(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  const char *approx = luaL_optstring(L, 2, "none");
  if (strcmp(approx, "none") && strcmp(approx, "tanh"))
    return sf_lua_errorf(L, "gelu: approximate must be \"none\" or \"tanh\", got \"%s\"", approx);
  sf_lua_push_tensor(L, sf_unary(strcmp(approx, "tanh") ? SF_UN_GELU : SF_UN_GELU_TANH, t, 0, 0));
  return 1;
}

/* clamp(lo, hi): nil leaves that side unbounded */
static int l_clamp(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  double lo = lua_isnoneornil(L, 2) ? NAN : luaL_checknumber(L, 2);
  double hi = lua_isnoneornil(L, 3) ? NAN : luaL_checknumber(L, 3);
  if (!isnan(lo) && !isnan(hi) && lo > hi) return sf_lua_errorf(L, "clamp: min %g is greater than max %g", lo, hi);
  sf_lua_push_tensor(L, sf_unary(SF_UN_CLAMP, t, lo, hi));
  return 1;
}

/* the argument-less unary methods, from the one op list (core/dispatch.h SF_UNARY_OPS, method = 1) */
static const struct { const char *name; sf_unary_op op; } unary_ops[] = {
#define SF_UN_METHOD(id, nm, fl, m) {m ? nm : NULL, SF_UN_##id},
    SF_UNARY_OPS(SF_UN_METHOD)
#undef SF_UN_METHOD
};

/* ---------------------------------------------------------------- reductions */

#define red_names(op) sf_reduce_op_name(op)

/* 0-based indices from the core become 1-based Lua indices (in place keeps i64) */
static void push_index_result(lua_State *L, sf_tensor *idx) {
  if (idx && sf_binary_scalar_(SF_BIN_ADD, idx, 1.0)) {
    sf_release(idx);
    idx = NULL;
  }
  sf_lua_push_tensor(L, idx);
}

static int reduce(lua_State *L, sf_reduce_op op) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  int arg = (op == SF_RED_ARGMAX || op == SF_RED_ARGMIN) ? 1 : 0;
  if (lua_isnoneornil(L, 2)) {
    if (sf_numel(t) == 0 && op != SF_RED_SUM && op != SF_RED_PROD && op != SF_RED_NORM) {
      char s[96];
      return sf_lua_errorf(L, "%s: the Tensor of shape %s is empty", red_names(op), sf_lua_shape_str(t, s, sizeof s));
    }
    sf_tensor *r = sf_reduce(op, t, SF_ALL_DIMS, false);
    if (arg) push_index_result(L, r);
    else sf_lua_push_tensor(L, r);
    return 1;
  }
  int d = sf_lua_check_dim(L, 2, t->ndim);
  bool keep = lua_toboolean(L, 3);
  if (t->ndim && t->shape[d] == 0 && op != SF_RED_SUM && op != SF_RED_PROD && op != SF_RED_NORM)
    return sf_lua_errorf(L, "%s: dim %d has size 0", red_names(op), d + 1);
  sf_tensor *r = sf_reduce(op, t, d, keep);
  if (arg) {
    push_index_result(L, r);
    return 1;
  }
  sf_lua_push_tensor(L, r);
  if (op == SF_RED_MAX || op == SF_RED_MIN) { /* values, indices as torch / Torch7 */
    push_index_result(L, sf_reduce(op == SF_RED_MAX ? SF_RED_ARGMAX : SF_RED_ARGMIN, t, d, keep));
    return 2;
  }
  return 1;
}

static int l_reduce(lua_State *L) { return reduce(L, (sf_reduce_op)lua_tointeger(L, lua_upvalueindex(1))); }

static int softmax_like(lua_State *L, int log) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  int d = lua_isnoneornil(L, 2) ? (t->ndim ? t->ndim - 1 : 0) : sf_lua_check_dim(L, 2, t->ndim);
  sf_lua_push_tensor(L, log ? sf_log_softmax(t, d) : sf_softmax(t, d));
  return 1;
}
static int l_softmax(lua_State *L) { return softmax_like(L, 0); }
static int l_log_softmax(lua_State *L) { return softmax_like(L, 1); }

/* ---------------------------------------------------------------- linear algebra, joins */

static int l_matmul(lua_State *L) {
  sf_tensor *a = sf_lua_check_tensor(L, 1), *b = sf_lua_check_tensor(L, 2);
  char sa[96], sb[96];
  if (a->ndim == 0 || b->ndim == 0)
    return sf_lua_errorf(L, "matmul: both arguments need at least 1 dim, got shapes %s and %s",
                      sf_lua_shape_str(a, sa, sizeof sa), sf_lua_shape_str(b, sb, sizeof sb));
  int64_t ka = a->shape[a->ndim - 1], kb = b->ndim == 1 ? b->shape[0] : b->shape[b->ndim - 2];
  if (ka != kb)
    return sf_lua_errorf(L, "matmul: shapes %s and %s cannot be multiplied (%lld vs %lld)",
                      sf_lua_shape_str(a, sa, sizeof sa), sf_lua_shape_str(b, sb, sizeof sb), (long long)ka,
                      (long long)kb);
  check_same_device(L, a, b, "matmul");
  sf_lua_push_tensor(L, sf_matmul(a, b));
  return 1;
}

static int l_linear(lua_State *L) {
  sf_tensor *x = sf_lua_check_tensor(L, 1), *w = sf_lua_check_tensor(L, 2);
  sf_tensor *b = lua_isnoneornil(L, 3) ? NULL : sf_lua_check_tensor(L, 3);
  char sx[96], sw[96];
  if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
    return sf_lua_errorf(L, "linear: input %s and weight %s do not match (weight must be [out, in])",
                      sf_lua_shape_str(x, sx, sizeof sx), sf_lua_shape_str(w, sw, sizeof sw));
  sf_lua_push_tensor(L, sf_linear(x, w, b));
  return 1;
}

/* the tensors of the list at idx into a GC-owned array (no leak if a check raises) */
static sf_tensor **check_list(lua_State *L, int idx, int *n, const char *op) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_settop(L, 2); /* optional args keep their slots below the array pushed here */
  int k = (int)lua_rawlen(L, idx);
  if (k == 0) sf_lua_errorf(L, "%s: expected a non-empty list of Tensors", op);
  sf_tensor **ts = (sf_tensor **)lua_newuserdatauv(L, sizeof(sf_tensor *) * (size_t)k, 0);
  for (int i = 0; i < k; i++) {
    lua_rawgeti(L, idx, i + 1);
    ts[i] = sf_lua_to_tensor(L, -1);
    if (!ts[i]) sf_lua_errorf(L, "%s: element %d of the list is a %s, expected a Tensor", op, i + 1, luaL_typename(L, -1));
    lua_pop(L, 1);
    if (i) check_same_device(L, ts[0], ts[i], op);
  }
  *n = k;
  return ts;
}

static int l_cat(lua_State *L) {
  int n;
  sf_tensor **ts = check_list(L, 1, &n, "cat");
  int d = lua_isnoneornil(L, 2) ? 0 : sf_lua_check_dim(L, 2, ts[0]->ndim);
  for (int i = 1; i < n; i++) {
    int ok = ts[i]->ndim == ts[0]->ndim;
    for (int k = 0; ok && k < ts[0]->ndim; k++)
      if (k != d && ts[i]->shape[k] != ts[0]->shape[k]) ok = 0;
    if (!ok) {
      char a[96], b[96];
      return sf_lua_errorf(L, "cat: Tensor %d has shape %s but Tensor 1 has shape %s (sizes must match except in dim %d)",
                        i + 1, sf_lua_shape_str(ts[i], b, sizeof b), sf_lua_shape_str(ts[0], a, sizeof a), d + 1);
    }
  }
  if (ts[0]->ndim == 0) return sf_lua_errorf(L, "cat: 0-dim Tensors cannot be concatenated (use sfwb.stack)");
  sf_lua_push_tensor(L, sf_cat(ts, n, d));
  return 1;
}

static int l_stack(lua_State *L) {
  int n;
  sf_tensor **ts = check_list(L, 1, &n, "stack");
  int d = lua_isnoneornil(L, 2) ? 0 : sf_lua_check_dim(L, 2, ts[0]->ndim + 1);
  for (int i = 1; i < n; i++) {
    if (!sf_same_shape(ts[i], ts[0])) {
      char a[96], b[96];
      return sf_lua_errorf(L, "stack: Tensor %d has shape %s but Tensor 1 has shape %s (all must be equal)", i + 1,
                        sf_lua_shape_str(ts[i], b, sizeof b), sf_lua_shape_str(ts[0], a, sizeof a));
    }
  }
  sf_lua_push_tensor(L, sf_stack(ts, n, d));
  return 1;
}

static double opt_field(lua_State *L, int idx, const char *k, double def) {
  if (!lua_istable(L, idx)) return def;
  lua_getfield(L, idx, k);
  double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static int l_allclose(lua_State *L) {
  sf_tensor *a = sf_lua_check_tensor(L, 1), *b = sf_lua_check_tensor(L, 2);
  if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3)) return luaL_argerror(L, 3, "expected options {rtol=, atol=}");
  double rtol = opt_field(L, 3, "rtol", 1e-5), atol = opt_field(L, 3, "atol", 1e-8);
  sf_lua_check_broadcast(L, a, b, "allclose");
  check_same_device(L, a, b, "allclose");
  bool out = false;
  if (sf_allclose(a, b, rtol, atol, &out)) return sf_lua_raise(L);
  lua_pushboolean(L, out);
  return 1;
}

static int l_max_abs_diff(lua_State *L) {
  sf_tensor *a = sf_lua_check_tensor(L, 1), *b = sf_lua_check_tensor(L, 2);
  sf_lua_check_broadcast(L, a, b, "max_abs_diff");
  check_same_device(L, a, b, "max_abs_diff");
  double d = sf_max_abs_diff(a, b);
  if (d < 0) return sf_lua_raise(L);
  lua_pushnumber(L, d);
  return 1;
}

/* where(cond, a, b): a and b may be numbers (0-dim tensors of the other operand's dtype) */
static int l_where(lua_State *L) {
  sf_tensor *c = sf_lua_check_tensor(L, 1), *a = tensor_or_null(L, 2), *b = tensor_or_null(L, 3);
  double va = a ? 0 : sf_lua_check_scalar(L, 2, "where"), vb = b ? 0 : sf_lua_check_scalar(L, 3, "where");
  if (a) sf_lua_check_broadcast(L, c, a, "where"), check_same_device(L, c, a, "where");
  if (b) sf_lua_check_broadcast(L, c, b, "where"), check_same_device(L, c, b, "where");
  if (a && b) sf_lua_check_broadcast(L, a, b, "where");
  sf_dtype dt = a ? a->dtype : b ? b->dtype : (lua_isinteger(L, 2) && lua_isinteger(L, 3) ? SF_I64 : SF_F32);
  int64_t no_dims[1] = {1}; /* 0-dim: the shape array is not read, but must be a valid pointer */
  sf_tensor *ta = a ? sf_retain(a) : sf_full(0, no_dims, va, dt, sf_device_of(c));
  sf_tensor *tb = b ? sf_retain(b) : sf_full(0, no_dims, vb, dt, sf_device_of(c));
  sf_tensor *r = (ta && tb) ? sf_where(c, ta, tb) : NULL;
  sf_release(ta);
  sf_release(tb);
  sf_lua_push_tensor(L, r);
  return 1;
}

/* ---------------------------------------------------------------- registration */

static const luaL_Reg math_methods[] = {
    {"pow", l_pow},         {"max", l_max},         {"min", l_min},       {"gelu", l_gelu},
    {"clamp", l_clamp},     {"softmax", l_softmax}, {"log_softmax", l_log_softmax},
    {"matmul", l_matmul},   {NULL, NULL}};

void sf_lua_tensor_register_math_methods(lua_State *L) {
  luaL_setfuncs(L, math_methods, 0);
  static const sf_binary_op bins[] = {SF_BIN_ADD, SF_BIN_SUB, SF_BIN_MUL, SF_BIN_DIV, SF_BIN_EQ,  SF_BIN_NE,
                                      SF_BIN_LT,  SF_BIN_LE,  SF_BIN_GT,  SF_BIN_GE,  SF_BIN_AND, SF_BIN_OR,
                                      SF_BIN_MAX, SF_BIN_MIN};
  for (size_t i = 0; i < sizeof bins / sizeof bins[0]; i++) {
    lua_pushinteger(L, bins[i]);
    lua_pushcclosure(L, l_binop, 1);
    lua_setfield(L, -2, bin_names(bins[i]));
  }
  static const sf_binary_op inplace[] = {SF_BIN_ADD, SF_BIN_SUB, SF_BIN_MUL, SF_BIN_DIV};
  for (size_t i = 0; i < sizeof inplace / sizeof inplace[0]; i++) {
    char name[24];
    snprintf(name, sizeof name, "%s_", bin_names(inplace[i]));
    lua_pushinteger(L, inplace[i]);
    lua_pushcclosure(L, l_binop_, 1);
    lua_setfield(L, -2, name);
  }
  for (size_t i = 0; i < sizeof unary_ops / sizeof unary_ops[0]; i++) {
    if (!unary_ops[i].name) continue; /* bound by hand (pow, clamp, gelu) */
    lua_pushinteger(L, unary_ops[i].op);
    lua_pushcclosure(L, l_unary, 1);
    lua_setfield(L, -2, unary_ops[i].name);
  }
  static const sf_reduce_op reds[] = {SF_RED_SUM, SF_RED_MEAN, SF_RED_STD, SF_RED_NORM,
                                      SF_RED_ARGMAX, SF_RED_ARGMIN, SF_RED_PROD};
  for (size_t i = 0; i < sizeof reds / sizeof reds[0]; i++) {
    lua_pushinteger(L, reds[i]);
    lua_pushcclosure(L, l_reduce, 1);
    lua_setfield(L, -2, red_names(reds[i]));
  }
}

static const luaL_Reg math_funcs[] = {
    {"matmul", l_matmul},   {"linear", l_linear}, {"cat", l_cat},     {"stack", l_stack},
    {"allclose", l_allclose}, {"max_abs_diff", l_max_abs_diff}, {"where", l_where},
    {NULL, NULL}};

void sf_lua_tensor_register_math_functions(lua_State *L) {
  luaL_setfuncs(L, math_funcs, 0);
  /* sfwb.maximum(a, b) / sfwb.minimum(a, b): elementwise, as torch */
  lua_pushinteger(L, SF_BIN_MAX);
  lua_pushcclosure(L, l_binop, 1);
  lua_setfield(L, -2, "maximum");
  lua_pushinteger(L, SF_BIN_MIN);
  lua_pushcclosure(L, l_binop, 1);
  lua_setfield(L, -2, "minimum");
}
