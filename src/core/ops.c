/* ops.c — public tensor operations: argument checks, broadcasting, type promotion, result allocation,
 * then dispatch to the device's backend. Backends never see a shape they have to validate. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "backend/backend.h"
#include "backend/train_ops.h"
#include "core/error.h"
#include "core/half.h"
#include "core/ops.h"

#define SHAPE(t, buf) sf_shape_str((t), (buf), sizeof(buf))

static const sf_backend *same_device(const char *op, sf_tensor *a, sf_tensor *b) {
  if (!sf_device_eq(sf_device_of(a), sf_device_of(b))) {
    char da[32], db[32];
    sf_error("%s: tensors are on different devices (%s and %s); move one with :to()", op,
             sf_device_str(sf_device_of(a), da, sizeof da), sf_device_str(sf_device_of(b), db, sizeof db));
    return NULL;
  }
  return sf_backend_of(a);
}

static sf_tensor *new_like_shape(sf_tensor *ref, sf_dtype dt, int ndim, const int64_t *shape) {
  return sf_tensor_new(dt, sf_device_of(ref), ndim, shape);
}

/* ---------------- creation ---------------- */

sf_tensor *sf_empty(int ndim, const int64_t *shape, sf_dtype dt, sf_device dev) {
  return sf_tensor_new(dt, dev, ndim, shape);
}

sf_tensor *sf_full(int ndim, const int64_t *shape, double v, sf_dtype dt, sf_device dev) {
  sf_tensor *t = sf_tensor_new(dt, dev, ndim, shape);
  if (t && sf_fill_(t, v)) { sf_release(t); return NULL; }
  return t;
}

sf_tensor *sf_zeros(int ndim, const int64_t *shape, sf_dtype dt, sf_device dev) {
  return sf_full(ndim, shape, 0.0, dt, dev);
}

/* host buffer -> tensor on dev (contiguous, same dtype) */
static sf_tensor *from_host(const void *data, sf_dtype dt, int ndim, const int64_t *shape, sf_device dev) {
  sf_tensor *t = sf_tensor_new(dt, dev, ndim, shape);
  if (!t) return NULL;
  size_t n = (size_t)sf_numel(t) * sf_dtype_size(dt);
  if (n && sf_backend_of(t)->copy_h2d(dev, sf_data_ptr(t), data, n)) { sf_release(t); return NULL; }
  return t;
}

sf_tensor *sf_arange(double start, double end, double step, sf_dtype dt, sf_device dev) {
  if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step))
    { sf_error("arange: invalid range start=%g end=%g step=%g", start, end, step); return NULL; }
  double cnt = ceil((end - start) / step);
  int64_t n = cnt > 0 ? (int64_t)cnt : 0;
  if (n > ((int64_t)1 << 40)) { sf_error("arange: %lld elements is too many", (long long)n); return NULL; }
  double *buf = malloc(sizeof(double) * (n ? n : 1));
  if (!buf) { sf_error("arange: out of memory"); return NULL; }
  for (int64_t i = 0; i < n; i++) buf[i] = start + (double)i * step;
  sf_tensor *d = from_host(buf, SF_F64, 1, &n, sf_cpu());
  free(buf);
  if (!d) return NULL;
  sf_tensor *c = sf_cast(d, dt);
  sf_release(d);
  if (!c) return NULL;
  sf_tensor *r = sf_to_device(c, dev);
  sf_release(c);
  return r;
}

static uint64_t g_seed = 0x5f3759dfULL, g_offset = 0;

void sf_manual_seed(uint64_t seed) { g_seed = seed; g_offset = 0; }
void sf_rng_state(uint64_t *seed, uint64_t *offset) { *seed = g_seed; *offset = g_offset; }
void sf_rng_set_state(uint64_t seed, uint64_t offset) { g_seed = seed; g_offset = offset; }

static sf_tensor *random_tensor(int ndim, const int64_t *shape, sf_dtype dt, sf_device dev, int kind) {
  if (!sf_dtype_is_float(dt))
    { sf_error("%s: dtype %s is not a float dtype (use f32, bf16, f16)", kind ? "rand" : "randn", sf_dtype_name(dt)); return NULL; }
  sf_tensor *t = sf_tensor_new(dt, dev, ndim, shape);
  if (!t) return NULL;
  if (sf_backend_of(t)->random(t, g_seed, g_offset, kind)) { sf_release(t); return NULL; }
  g_offset += (uint64_t)sf_numel(t);
  return t;
}

sf_tensor *sf_randn(int ndim, const int64_t *shape, sf_dtype dt, sf_device dev) { return random_tensor(ndim, shape, dt, dev, 0); }
sf_tensor *sf_rand(int ndim, const int64_t *shape, sf_dtype dt, sf_device dev) { return random_tensor(ndim, shape, dt, dev, 1); }

/* ---------------- data movement ---------------- */

static sf_tensor *to_device_impl(sf_tensor *t, sf_device dev) {
  sf_device src = sf_device_of(t);
  if (sf_device_eq(src, dev)) return sf_retain(t);
  const sf_backend *bs = sf_backend_for(src), *bd = sf_backend_for(dev);
  if (!bs || !bd) return NULL;
  sf_tensor *c = sf_contiguous(t);
  if (!c) return NULL;
  size_t n = (size_t)sf_numel(c) * sf_dtype_size(c->dtype);
  sf_tensor *out = sf_tensor_new(c->dtype, dev, c->ndim, c->shape);
  if (!out) { sf_release(c); return NULL; }
  int rc = 0;
  if (n == 0) {
  } else if (src.type == SF_DEV_CPU) {
    rc = bd->copy_h2d(dev, sf_data_ptr(out), sf_data_ptr(c), n);
  } else if (dev.type == SF_DEV_CPU) {
    rc = bs->copy_d2h(src, sf_data_ptr(out), sf_data_ptr(c), n);
  } else { /* device to device through host memory (peer copies are a backend optimisation) */
    void *tmp = malloc(n);
    if (!tmp) rc = sf_error("to_device: out of host memory staging %zu bytes", n);
    else rc = bs->copy_d2h(src, tmp, sf_data_ptr(c), n) || bd->copy_h2d(dev, sf_data_ptr(out), tmp, n);
    free(tmp);
  }
  sf_release(c);
  if (rc) { sf_release(out); return NULL; }
  return out;
}

static sf_tensor *cast_impl(sf_tensor *t, sf_dtype dt) {
  if (t->dtype == dt) return sf_retain(t);
  sf_tensor *out = new_like_shape(t, dt, t->ndim, t->shape);
  if (out && sf_backend_of(t)->copy(out, t)) { sf_release(out); return NULL; }
  return out;
}

static sf_tensor *clone_impl(sf_tensor *t) {
  sf_tensor *out = new_like_shape(t, t->dtype, t->ndim, t->shape);
  if (out && sf_backend_of(t)->copy(out, t)) { sf_release(out); return NULL; }
  return out;
}

sf_tensor *sf_contiguous(sf_tensor *t) {
  if (sf_is_contiguous(t)) return sf_retain(t);
  return sf_clone(t);
}

/* broadcast shape of a and b (numpy rules); error shows both shapes */
static int broadcast_shape(const char *op, const sf_tensor *a, const sf_tensor *b, int *ndim, int64_t *shape) {
  int n = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int i = 0; i < n; i++) {
    int ia = i - (n - a->ndim), ib = i - (n - b->ndim);
    int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      char ba[128], bb[128];
      return sf_error("%s: shapes %s and %s cannot be broadcast (dim %d: %lld vs %lld)", op, SHAPE(a, ba), SHAPE(b, bb),
                      i + 1, (long long)sa, (long long)sb);
    }
    shape[i] = sa == 1 ? sb : sa;
  }
  *ndim = n;
  return 0;
}

int sf_copy_(sf_tensor *dst, sf_tensor *src) {
  if (sf_ag_check_inplace_src(dst, src, "copy_")) return -1;
  char bd[128], bs[128];
  int nd;
  int64_t sh[SF_MAX_DIMS];
  if (broadcast_shape("copy_", dst, src, &nd, sh)) return -1;
  if (nd != dst->ndim || memcmp(sh, dst->shape, sizeof(int64_t) * nd))
    return sf_error("copy_: source of shape %s does not broadcast to destination shape %s", SHAPE(src, bs), SHAPE(dst, bd));
  sf_tensor *s = sf_to_device(src, sf_device_of(dst));
  if (!s) return -1;
  sf_tensor *e = sf_expand(s, dst->ndim, dst->shape);
  sf_release(s);
  if (!e) return -1;
  int rc = sf_backend_of(dst)->copy(dst, e);
  sf_release(e);
  return rc;
}

int sf_fill_(sf_tensor *t, double v) {
  if (sf_ag_check_inplace(t, "fill_")) return -1;
  const sf_backend *b = sf_backend_of(t);
  return b ? b->fill(t, v) : -1;
}

static sf_tensor *cat_impl(sf_tensor **ts, int n, int dim) {
  char b0[128], bi[128];
  if (n <= 0) { sf_error("cat: needs at least one tensor"); return NULL; }
  /* torch skips 1-D empty tensors in cat */
  sf_tensor *ref = NULL;
  for (int i = 0; i < n; i++)
    if (!(ts[i]->ndim == 1 && ts[i]->shape[0] == 0)) { ref = ts[i]; break; }
  if (!ref) return sf_clone(ts[0]);
  int d = sf_wrap_dim(dim, ref->ndim);
  if (d < 0) return NULL;
  if (ref->ndim == 0) { sf_error("cat: zero-dim tensors cannot be concatenated"); return NULL; }
  int64_t sh[SF_MAX_DIMS];
  memcpy(sh, ref->shape, sizeof sh);
  sh[d] = 0;
  sf_dtype dt = ref->dtype;
  for (int i = 0; i < n; i++) {
    sf_tensor *t = ts[i];
    if (t->ndim == 1 && t->shape[0] == 0) continue;
    if (!same_device("cat", ref, t)) return NULL;
    bool ok = t->ndim == ref->ndim;
    for (int j = 0; ok && j < t->ndim; j++) ok = j == d || t->shape[j] == ref->shape[j];
    if (!ok) {
      sf_error("cat: tensor %d has shape %s, incompatible with %s along dim %d", i + 1, SHAPE(t, bi), SHAPE(ref, b0), d + 1);
      return NULL;
    }
    sh[d] += t->shape[d];
    dt = sf_promote(dt, t->dtype);
  }
  sf_tensor *out = new_like_shape(ref, dt, ref->ndim, sh);
  if (!out) return NULL;
  int64_t pos = 0;
  for (int i = 0; i < n; i++) {
    sf_tensor *t = ts[i];
    if (t->ndim == 1 && t->shape[0] == 0) continue;
    sf_tensor *slot = sf_narrow(out, d, pos, t->shape[d]);
    int rc = slot ? sf_backend_of(out)->copy(slot, t) : -1;
    sf_release(slot);
    if (rc) { sf_release(out); return NULL; }
    pos += t->shape[d];
  }
  return out;
}

sf_tensor *sf_stack(sf_tensor **ts, int n, int dim) {
  char b0[128], bi[128];
  if (n <= 0) { sf_error("stack: needs at least one tensor"); return NULL; }
  for (int i = 1; i < n; i++)
    if (!sf_same_shape(ts[0], ts[i])) {
      sf_error("stack: tensor %d has shape %s but tensor 1 has %s", i + 1, SHAPE(ts[i], bi), SHAPE(ts[0], b0));
      return NULL;
    }
  int d = sf_wrap_dim(dim, ts[0]->ndim + 1);
  if (d < 0) return NULL;
  sf_tensor **us = calloc(n, sizeof *us);
  if (!us) { sf_error("stack: out of memory"); return NULL; }
  sf_tensor *out = NULL;
  int i;
  for (i = 0; i < n; i++)
    if (!(us[i] = sf_unsqueeze(ts[i], d))) break;
  if (i == n) out = sf_cat(us, n, d);
  for (int j = 0; j < n; j++) sf_release(us[j]);
  free(us);
  return out;
}

static double load_host(const void *p, sf_dtype dt) {
  switch (dt) {
  case SF_F32: return *(const float *)p;
  case SF_BF16: return sf_bf16_to_f32(*(const uint16_t *)p);
  case SF_F16: return sf_f16_to_f32(*(const uint16_t *)p);
  case SF_I64: return (double)*(const int64_t *)p;
  case SF_I32: return *(const int32_t *)p;
  case SF_U8: return *(const uint8_t *)p;
  case SF_BOOL: return *(const uint8_t *)p ? 1 : 0;
  case SF_F64: return *(const double *)p;
  default: return NAN;
  }
}

double sf_item(sf_tensor *t) {
  char b[128];
  if (sf_numel(t) != 1) {
    sf_error("item: tensor of shape %s has %lld elements, item() needs exactly one", SHAPE(t, b), (long long)sf_numel(t));
    return NAN;
  }
  sf_tensor *h = sf_to_device(t, sf_cpu());
  if (!h) return NAN;
  double v = load_host(sf_data_ptr(h), h->dtype);
  sf_release(h);
  return v;
}

/* ---------------- elementwise ---------------- */

static bool unary_is_float_op(sf_unary_op op) {
  switch (op) {
  case SF_UN_NEG: case SF_UN_ABS: case SF_UN_SQUARE: case SF_UN_SIGN: case SF_UN_CLAMP: case SF_UN_ISNAN:
  case SF_UN_LOGICAL_NOT: case SF_UN_RELU: case SF_UN_FLOOR: case SF_UN_CEIL: case SF_UN_ROUND:
    return false;
  default: return true;
  }
}

static sf_tensor *unary_impl(sf_unary_op op, sf_tensor *a, double p0, double p1) {
  if ((unsigned)op >= SF_UN_COUNT) { sf_error("unary: invalid op %d", (int)op); return NULL; }
  const sf_backend *b = sf_backend_of(a);
  if (!b) return NULL;
  sf_tensor *in = NULL;
  sf_dtype out_dt;
  if (op == SF_UN_ISNAN || op == SF_UN_LOGICAL_NOT) {
    in = sf_retain(a);
    out_dt = SF_BOOL;
  } else {
    sf_dtype dt = a->dtype;
    if (unary_is_float_op(op) && !sf_dtype_is_float(dt)) dt = SF_F32; /* torch: exp(int) is float */
    if (op == SF_UN_NEG && dt == SF_BOOL) { sf_error("neg: not defined for bool tensors (use logical_not)"); return NULL; }
    in = sf_cast(a, dt);
    out_dt = dt;
  }
  if (!in) return NULL;
  sf_tensor *out = new_like_shape(in, out_dt, in->ndim, in->shape);
  if (out && b->unary(op, out, in, p0, p1)) { sf_release(out); out = NULL; }
  sf_release(in);
  return out;
}

static bool is_compare(sf_binary_op op) { return op >= SF_BIN_EQ && op <= SF_BIN_GE; }

static const char *binary_name(sf_binary_op op) {
  static const char *n[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
                            "logical_and", "logical_or"};
  return (unsigned)op < SF_BIN_COUNT ? n[op] : "binary";
}

/* compute dtype (inputs are cast to it) and result dtype of a binary op */
static void binary_dtypes(sf_binary_op op, sf_dtype ta, sf_dtype tb, sf_dtype *compute, sf_dtype *result) {
  sf_dtype c = sf_promote(ta, tb);
  if ((op == SF_BIN_DIV || op == SF_BIN_POW) && !sf_dtype_is_float(c)) c = op == SF_BIN_DIV ? SF_F32 : c;
  if (op == SF_BIN_AND || op == SF_BIN_OR) c = SF_BOOL;
  *compute = c;
  *result = is_compare(op) ? SF_BOOL : c;
}

static sf_tensor *binary_into(sf_binary_op op, sf_tensor *out, sf_tensor *a, sf_tensor *b, sf_dtype compute) {
  const sf_backend *be = sf_backend_of(out);
  sf_tensor *ca = sf_cast(a, compute), *cb = ca ? sf_cast(b, compute) : NULL;
  sf_tensor *ea = cb ? sf_expand(ca, out->ndim, out->shape) : NULL;
  sf_tensor *eb = ea ? sf_expand(cb, out->ndim, out->shape) : NULL;
  int rc = eb ? be->binary(op, out, ea, eb) : -1;
  sf_release(ca); sf_release(cb); sf_release(ea); sf_release(eb);
  return rc ? NULL : out;
}

static sf_tensor *binary_impl(sf_binary_op op, sf_tensor *a, sf_tensor *b) {
  if ((unsigned)op >= SF_BIN_COUNT) { sf_error("binary: invalid op %d", (int)op); return NULL; }
  if (!same_device(binary_name(op), a, b)) return NULL;
  int nd;
  int64_t sh[SF_MAX_DIMS];
  if (broadcast_shape(binary_name(op), a, b, &nd, sh)) return NULL;
  sf_dtype compute, result;
  binary_dtypes(op, a->dtype, b->dtype, &compute, &result);
  sf_tensor *out = new_like_shape(a, result, nd, sh);
  if (!out) return NULL;
  if (!binary_into(op, out, a, b, compute)) { sf_release(out); return NULL; }
  return out;
}

int sf_binary_(sf_binary_op op, sf_tensor *a, sf_tensor *b) {
  if (sf_ag_check_inplace_src(a, b, binary_name(op))) return -1;
  char ba[128], bb[128];
  if (!same_device(binary_name(op), a, b)) return -1;
  int nd;
  int64_t sh[SF_MAX_DIMS];
  if (broadcast_shape(binary_name(op), a, b, &nd, sh)) return -1;
  if (nd != a->ndim || memcmp(sh, a->shape, sizeof(int64_t) * nd))
    return sf_error("%s_: in-place result of shape %s would not fit the destination %s (other operand %s)",
                    binary_name(op), "(broadcast)", SHAPE(a, ba), SHAPE(b, bb));
  sf_dtype compute, result;
  binary_dtypes(op, a->dtype, b->dtype, &compute, &result);
  if (result != a->dtype && !(sf_dtype_is_float(a->dtype) && sf_dtype_is_float(result)))
    return sf_error("%s_: result dtype %s cannot be stored in a %s tensor in place", binary_name(op),
                    sf_dtype_name(result), sf_dtype_name(a->dtype));
  if (compute == a->dtype) return binary_into(op, a, a, b, compute) ? 0 : -1;
  /* e.g. bf16 += f32: compute in the promoted dtype, round back into a */
  sf_tensor *tmp = sf_binary(op, a, b);
  if (!tmp) return -1;
  int rc = sf_backend_of(a)->copy(a, tmp);
  sf_release(tmp);
  return rc;
}

static sf_dtype scalar_compute_dtype(sf_binary_op op, sf_dtype ta, double s) {
  bool s_int = s == floor(s) && fabs(s) < 9.0e15;
  sf_dtype c = ta;
  if (!sf_dtype_is_float(ta) && (!s_int || op == SF_BIN_DIV)) c = SF_F32;
  if (op == SF_BIN_POW && !sf_dtype_is_float(ta) && s < 0) c = SF_F32;
  if (ta == SF_BOOL && (op == SF_BIN_ADD || op == SF_BIN_SUB || op == SF_BIN_MUL)) c = s_int ? SF_I64 : SF_F32;
  return c;
}

static sf_tensor *binary_scalar_impl(sf_binary_op op, sf_tensor *a, double s, bool scalar_first) {
  if ((unsigned)op >= SF_BIN_COUNT) { sf_error("binary: invalid op %d", (int)op); return NULL; }
  const sf_backend *be = sf_backend_of(a);
  if (!be) return NULL;
  sf_dtype c = scalar_compute_dtype(op, a->dtype, s);
  sf_tensor *ca = sf_cast(a, c);
  if (!ca) return NULL;
  sf_tensor *out = new_like_shape(a, is_compare(op) ? SF_BOOL : c, a->ndim, a->shape);
  if (out && be->binary_scalar(op, out, ca, s, scalar_first)) { sf_release(out); out = NULL; }
  sf_release(ca);
  return out;
}

int sf_binary_scalar_(sf_binary_op op, sf_tensor *a, double s) {
  if (sf_ag_check_inplace(a, binary_name(op))) return -1;
  if (is_compare(op)) return sf_error("%s_: comparisons cannot run in place", binary_name(op));
  sf_dtype c = scalar_compute_dtype(op, a->dtype, s);
  if (c != a->dtype && !sf_dtype_is_float(a->dtype))
    return sf_error("%s_: a %s tensor cannot hold the result with %g in place", binary_name(op), sf_dtype_name(a->dtype), s);
  return sf_backend_of(a)->binary_scalar(op, a, a, s, false);
}

static sf_tensor *where_impl(sf_tensor *cond, sf_tensor *a, sf_tensor *b) {
  if (!same_device("where", cond, a) || !same_device("where", a, b)) return NULL;
  int n1, n2;
  int64_t s1[SF_MAX_DIMS], s2[SF_MAX_DIMS];
  if (broadcast_shape("where", a, b, &n1, s1)) return NULL;
  sf_tensor *shape_ref = sf_tensor_from_storage(a->storage, a->dtype, n1, s1, NULL, 0);
  if (!shape_ref) return NULL;
  int rc = broadcast_shape("where", cond, shape_ref, &n2, s2);
  sf_release(shape_ref);
  if (rc) return NULL;
  sf_dtype dt = sf_promote(a->dtype, b->dtype);
  sf_tensor *out = new_like_shape(a, dt, n2, s2);
  if (!out) return NULL;
  sf_tensor *cc = sf_cast(cond, SF_BOOL), *ca = sf_cast(a, dt), *cb = sf_cast(b, dt);
  sf_tensor *ec = cc ? sf_expand(cc, n2, s2) : NULL, *ea = ca ? sf_expand(ca, n2, s2) : NULL,
            *eb = cb ? sf_expand(cb, n2, s2) : NULL;
  rc = (ec && ea && eb) ? sf_backend_of(out)->where(out, ec, ea, eb) : -1;
  sf_release(cc); sf_release(ca); sf_release(cb); sf_release(ec); sf_release(ea); sf_release(eb);
  if (rc) { sf_release(out); return NULL; }
  return out;
}

/* ---------------- reductions ---------------- */

static const char *reduce_name(sf_reduce_op op) {
  static const char *n[] = {"sum", "mean", "max", "min", "std", "norm", "argmax", "argmin", "prod"};
  return (unsigned)op < SF_RED_COUNT ? n[op] : "reduce";
}

static sf_tensor *reduce_impl(sf_reduce_op op, sf_tensor *a, int dim, bool keepdim) {
  char b[128];
  if ((unsigned)op >= SF_RED_COUNT) { sf_error("reduce: invalid op %d", (int)op); return NULL; }
  const sf_backend *be = sf_backend_of(a);
  if (!be) return NULL;
  sf_tensor *src;
  int d;
  if (dim == SF_ALL_DIMS || a->ndim == 0) {
    int64_t n = sf_numel(a);
    src = sf_reshape(a, 1, &n);
    d = 0;
  } else {
    d = sf_wrap_dim(dim, a->ndim);
    if (d < 0) return NULL;
    src = sf_retain(a);
  }
  if (!src) return NULL;
  if (src->shape[d] == 0 && (op == SF_RED_MAX || op == SF_RED_MIN || op == SF_RED_ARGMAX || op == SF_RED_ARGMIN)) {
    sf_error("%s: cannot reduce over an empty dim %d of shape %s", reduce_name(op), d + 1, SHAPE(a, b));
    sf_release(src);
    return NULL;
  }
  sf_dtype in_dt = src->dtype, out_dt = in_dt;
  bool needs_float = op == SF_RED_MEAN || op == SF_RED_STD || op == SF_RED_NORM;
  if (needs_float && !sf_dtype_is_float(in_dt)) in_dt = out_dt = SF_F32;
  if ((op == SF_RED_SUM || op == SF_RED_PROD) && !sf_dtype_is_float(in_dt)) out_dt = SF_I64;
  if (op == SF_RED_ARGMAX || op == SF_RED_ARGMIN) out_dt = SF_I64;
  sf_tensor *cin = sf_cast(src, in_dt);
  sf_release(src);
  if (!cin) return NULL;
  int64_t sh[SF_MAX_DIMS];
  memcpy(sh, cin->shape, sizeof sh);
  sh[d] = 1;
  sf_tensor *out = new_like_shape(cin, out_dt, cin->ndim, sh);
  int rc = out ? be->reduce(op, out, cin, d) : -1;
  sf_release(cin);
  if (rc) { sf_release(out); return NULL; }
  sf_tensor *r;
  if (dim == SF_ALL_DIMS || a->ndim == 0) {
    if (keepdim && a->ndim > 0) {
      int64_t ones[SF_MAX_DIMS];
      for (int i = 0; i < a->ndim; i++) ones[i] = 1;
      r = sf_view(out, a->ndim, ones);
    } else {
      r = sf_view(out, 0, NULL);
    }
  } else {
    r = keepdim ? sf_retain(out) : sf_squeeze(out, d);
  }
  sf_release(out);
  return r;
}

static sf_tensor *softmax_impl(sf_tensor *a, int dim, bool log) {
  const sf_backend *be = sf_backend_of(a);
  if (!be) return NULL;
  int d = sf_wrap_dim(dim, a->ndim);
  if (d < 0) return NULL;
  sf_tensor *in = sf_cast(a, sf_dtype_is_float(a->dtype) ? a->dtype : SF_F32);
  if (!in) return NULL;
  if (in->ndim == 0) { /* softmax of a scalar is 1 (log: 0) */
    sf_tensor *o = sf_full(0, NULL, log ? 0.0 : 1.0, in->dtype, sf_device_of(in));
    sf_release(in);
    return o;
  }
  sf_tensor *out = new_like_shape(in, in->dtype, in->ndim, in->shape);
  if (out && be->softmax(out, in, d, log)) { sf_release(out); out = NULL; }
  sf_release(in);
  return out;
}


/* ---------------- matmul ---------------- */

/* collapse the (expanded) batch dims [0, nb) of t into one stride; false if they do not collapse */
static bool batch_stride(const sf_tensor *t, int nb, int64_t *stride) {
  int64_t st = 0, expect = -1;
  bool any = false;
  for (int i = nb - 1; i >= 0; i--) {
    if (t->shape[i] == 1) continue;
    if (!any) {
      st = t->stride[i];
      expect = t->stride[i] * t->shape[i];
      any = true;
      if (st == 0) expect = 0;
      continue;
    }
    if (t->stride[i] != expect) return false;
    expect = t->stride[i] * t->shape[i];
  }
  *stride = st;
  return true;
}

static bool inner_ok(const sf_tensor *t) {
  int n = t->ndim;
  return t->stride[n - 1] == 1 || t->stride[n - 2] == 1 || t->shape[n - 1] == 1 || t->shape[n - 2] == 1;
}

/* out_dt: the result dtype; SF_NDTYPES = the operands' promoted dtype. A wider result (f32 from bf16/f16
 * operands) keeps the f32 accumulator unrounded. */
static sf_tensor *matmul_into(sf_tensor *a, sf_tensor *b, sf_dtype out_dt) {
  char ba[128], bb[128];
  if (!same_device("matmul", a, b)) return NULL;
  const sf_backend *be = sf_backend_of(a);
  if (a->ndim == 0 || b->ndim == 0) { sf_error("matmul: both operands need at least 1 dim (got %s and %s)", SHAPE(a, ba), SHAPE(b, bb)); return NULL; }
  sf_dtype dt = sf_promote(a->dtype, b->dtype);
  if (!sf_dtype_is_float(dt)) { sf_error("matmul: needs float tensors, got %s and %s", sf_dtype_name(a->dtype), sf_dtype_name(b->dtype)); return NULL; }
  /* 1-D operands as torch.matmul: prepend/append a dim, drop it from the result */
  sf_tensor *A = a->ndim == 1 ? sf_unsqueeze(a, 0) : sf_retain(a);
  sf_tensor *B = b->ndim == 1 ? sf_unsqueeze(b, 1) : sf_retain(b);
  sf_tensor *out = NULL, *A3 = NULL, *B3 = NULL, *O3 = NULL, *Ac = NULL, *Bc = NULL;
  if (!A || !B) goto done;
  int64_t M = A->shape[A->ndim - 2], K = A->shape[A->ndim - 1], K2 = B->shape[B->ndim - 2], N = B->shape[B->ndim - 1];
  if (K != K2) {
    sf_error("matmul: shapes %s and %s do not match (inner sizes %lld and %lld)", SHAPE(a, ba), SHAPE(b, bb), (long long)K, (long long)K2);
    goto done;
  }
  /* broadcast batch dims */
  int na = A->ndim - 2, nb = B->ndim - 2, nbat = na > nb ? na : nb;
  int64_t bsh[SF_MAX_DIMS], nbatch = 1;
  for (int i = 0; i < nbat; i++) {
    int ia = i - (nbat - na), ib = i - (nbat - nb);
    int64_t sa = ia >= 0 ? A->shape[ia] : 1, sb = ib >= 0 ? B->shape[ib] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      sf_error("matmul: batch dims of %s and %s cannot be broadcast", SHAPE(a, ba), SHAPE(b, bb));
      goto done;
    }
    bsh[i] = sa == 1 ? sb : sa;
    nbatch *= bsh[i];
  }
  if (nbat + 2 > SF_MAX_DIMS) { sf_error("matmul: too many dims"); goto done; }
  int64_t esh[SF_MAX_DIMS];
  if (nbat > 0) memcpy(esh, bsh, sizeof(int64_t) * nbat);
  Ac = sf_cast(A, dt);
  Bc = Ac ? sf_cast(B, dt) : NULL;
  if (!Bc) goto done;
  esh[nbat] = M; esh[nbat + 1] = K;
  sf_tensor *Ae = sf_expand(Ac, nbat + 2, esh);
  esh[nbat] = K; esh[nbat + 1] = N;
  sf_tensor *Be = Ae ? sf_expand(Bc, nbat + 2, esh) : NULL;
  sf_release(Ac); sf_release(Bc);
  Ac = Ae; Bc = Be;
  if (!Ac || !Bc) goto done;
  int64_t sA, sB;
  for (int pass = 0; pass < 2; pass++) {
    sf_tensor **T = pass ? &Bc : &Ac;
    int64_t *s = pass ? &sB : &sA;
    if (!batch_stride(*T, nbat, s) || !inner_ok(*T)) {
      sf_tensor *c = sf_contiguous(*T);
      sf_release(*T);
      *T = c;
      if (!c) goto done;
      batch_stride(c, nbat, s);
    }
  }
  int64_t a3[3] = {nbatch, M, K}, as[3] = {sA, Ac->stride[nbat], Ac->stride[nbat + 1]};
  int64_t b3[3] = {nbatch, K, N}, bs[3] = {sB, Bc->stride[nbat], Bc->stride[nbat + 1]};
  A3 = sf_tensor_from_storage(Ac->storage, dt, 3, a3, as, Ac->offset);
  B3 = A3 ? sf_tensor_from_storage(Bc->storage, dt, 3, b3, bs, Bc->offset) : NULL;
  int64_t o3[3] = {nbatch, M, N};
  O3 = B3 ? sf_tensor_new(out_dt == SF_NDTYPES ? dt : out_dt, sf_device_of(a), 3, o3) : NULL;
  if (!O3) goto done;
  if (be->matmul(O3, A3, B3)) goto done;
  int64_t osh[SF_MAX_DIMS];
  int on = 0;
  for (int i = 0; i < nbat; i++) osh[on++] = bsh[i];
  if (a->ndim > 1) osh[on++] = M;
  if (b->ndim > 1) osh[on++] = N;
  out = sf_view(O3, on, osh);
done:
  sf_release(A); sf_release(B); sf_release(Ac); sf_release(Bc);
  sf_release(A3); sf_release(B3); sf_release(O3);
  return out;
}

static sf_tensor *linear_impl(sf_tensor *x, sf_tensor *w, sf_tensor *bias) {
  char bx[128], bw[128];
  if (w->ndim != 2) { sf_error("linear: weight must be 2-D [out, in], got %s", SHAPE(w, bw)); return NULL; }
  if (x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1]) {
    sf_error("linear: input %s does not match weight %s (last dim must be %lld)", SHAPE(x, bx), SHAPE(w, bw), (long long)w->shape[1]);
    return NULL;
  }
  if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0])) {
    sf_error("linear: bias %s does not match weight %s", SHAPE(bias, bx), SHAPE(w, bw));
    return NULL;
  }
  sf_tensor *wt = sf_transpose(w, 0, 1);
  if (!wt) return NULL;
  const sf_dtype dt = sf_promote(x->dtype, w->dtype);
  const sf_backend *be = sf_backend_of(x);
  if (bias && (dt == SF_BF16 || dt == SF_F16) && x->dtype == dt && w->dtype == dt && bias->dtype == dt && be && be->train &&
      be->train->linear_bias && (bias->shape[0] <= 1 || bias->stride[0] == 1) &&
      sf_device_eq(sf_device_of(x), sf_device_of(w)) && sf_device_eq(sf_device_of(x), sf_device_of(bias))) {
    /* the same numerics in one GEMM with a bias epilogue (cuBLASLt on the GPU) */
    int64_t ysh[SF_MAX_DIMS], x2s[2] = {-1, w->shape[1]}, y2s[2] = {-1, w->shape[0]};
    memcpy(ysh, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    ysh[x->ndim - 1] = w->shape[0];
    sf_tensor *y = sf_empty(x->ndim, ysh, dt, sf_device_of(x));
    sf_tensor *x2 = y ? sf_reshape(x, 2, x2s) : NULL, *y2 = x2 ? sf_reshape(y, 2, y2s) : NULL;
    int rc = !y2 ? -1 : sf_backend_supports(be, SF_CAP_LINEAR_BIAS, 0, y2, x2, wt) ? be->train->linear_bias(y2, x2, wt, bias) : 1;
    sf_release(x2), sf_release(y2);
    if (rc == 0) { sf_release(wt); return y; }
    sf_release(y);
    if (rc < 0) { sf_release(wt); return NULL; }
  }
  if (bias && (dt == SF_BF16 || dt == SF_F16) && bias->dtype == dt) {
    /* low precision: accumulate and add the bias in f32 and round once, as cuBLASLt's bias epilogue and
     * oneDNN do (a separate low-precision bias add would round twice) */
    sf_tensor *y32 = matmul_into(x, wt, SF_F32), *b32 = y32 ? sf_cast(bias, SF_F32) : NULL, *y = NULL;
    sf_release(wt);
    if (b32 && !sf_binary_(SF_BIN_ADD, y32, b32)) y = sf_cast(y32, dt);
    sf_release(y32), sf_release(b32);
    return y;
  }
  if (bias && x->dtype == dt && w->dtype == dt && bias->dtype == dt && (dt == SF_F32 || dt == SF_F64) && be && be->train &&
      sf_device_eq(sf_device_of(x), sf_device_of(w)) &&
      sf_device_eq(sf_device_of(x), sf_device_of(bias))) {
    /* y = bias rows, then y += x W^T in the GEMM (beta = 1), as torch's addmm: no separate bias pass */
    int64_t ysh[SF_MAX_DIMS], x2s[2] = {-1, w->shape[1]}, y2s[2] = {-1, w->shape[0]};
    memcpy(ysh, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    ysh[x->ndim - 1] = w->shape[0];
    sf_tensor *y = sf_empty(x->ndim, ysh, dt, sf_device_of(x));
    sf_tensor *x2 = y && !sf_copy_(y, bias) ? sf_reshape(x, 2, x2s) : NULL, *y2 = x2 ? sf_reshape(y, 2, y2s) : NULL;
    int rc = !y2 ? -1 : sf_backend_supports(be, SF_CAP_MATMUL_ACC, 0, y2, x2, wt) ? be->train->matmul_acc(y2, x2, wt) : 1;
    sf_release(x2), sf_release(y2);
    if (rc == 0) { sf_release(wt); return y; }
    sf_release(y);
    if (rc < 0) { sf_release(wt); return NULL; }
  }
  sf_tensor *y = matmul_into(x, wt, SF_NDTYPES);
  sf_release(wt);
  if (!y || !bias) return y;
  if (sf_binary_(SF_BIN_ADD, y, bias)) { sf_release(y); return NULL; }
  return y;
}

/* ---------------- autograd: the public differentiable ops ----------------
 * Each runs its implementation with grad mode off (internal casts/views/copies of the inputs must not
 * record) and then records one node (src/autograd/ag_ops.c) when an input requires grad. */

#define SF_AG_RUN(impl_call) sf_ag_resume(sf__g, (impl_call))
#define SF_AG_OFF bool sf__g = sf_set_grad_enabled(false)

sf_tensor *sf_to_device(sf_tensor *t, sf_device dev) { SF_AG_OFF; return sf_ag_cast(SF_AG_RUN(to_device_impl(t, dev)), t); }
sf_tensor *sf_cast(sf_tensor *t, sf_dtype dt) { SF_AG_OFF; return sf_ag_cast(SF_AG_RUN(cast_impl(t, dt)), t); }
sf_tensor *sf_clone(sf_tensor *t) { SF_AG_OFF; return sf_ag_identity(SF_AG_RUN(clone_impl(t)), t); }
sf_tensor *sf_cat(sf_tensor **ts, int n, int dim) { SF_AG_OFF; return sf_ag_cat(SF_AG_RUN(cat_impl(ts, n, dim)), ts, n, dim); }
sf_tensor *sf_unary(sf_unary_op op, sf_tensor *a, double p0, double p1) {
  SF_AG_OFF; return sf_ag_unary(SF_AG_RUN(unary_impl(op, a, p0, p1)), op, a, p0, p1);
}
sf_tensor *sf_binary(sf_binary_op op, sf_tensor *a, sf_tensor *b) {
  SF_AG_OFF; return sf_ag_binary(SF_AG_RUN(binary_impl(op, a, b)), op, a, b);
}
sf_tensor *sf_binary_scalar(sf_binary_op op, sf_tensor *a, double s, bool scalar_first) {
  SF_AG_OFF; return sf_ag_binary_scalar(SF_AG_RUN(binary_scalar_impl(op, a, s, scalar_first)), op, a, s, scalar_first);
}
sf_tensor *sf_where(sf_tensor *cond, sf_tensor *a, sf_tensor *b) {
  SF_AG_OFF; return sf_ag_where(SF_AG_RUN(where_impl(cond, a, b)), cond, a, b);
}
sf_tensor *sf_reduce(sf_reduce_op op, sf_tensor *a, int dim, bool keepdim) {
  SF_AG_OFF; return sf_ag_reduce(SF_AG_RUN(reduce_impl(op, a, dim, keepdim)), op, a, dim, keepdim);
}
sf_tensor *sf_softmax(sf_tensor *a, int dim) { SF_AG_OFF; return sf_ag_softmax(SF_AG_RUN(softmax_impl(a, dim, false)), a, dim, false); }
sf_tensor *sf_log_softmax(sf_tensor *a, int dim) { SF_AG_OFF; return sf_ag_softmax(SF_AG_RUN(softmax_impl(a, dim, true)), a, dim, true); }
sf_tensor *sf_matmul(sf_tensor *a, sf_tensor *b) { SF_AG_OFF; return sf_ag_matmul(SF_AG_RUN(matmul_into(a, b, SF_NDTYPES)), a, b); }
sf_tensor *sf_linear(sf_tensor *x, sf_tensor *w, sf_tensor *b) { SF_AG_OFF; return sf_ag_linear(SF_AG_RUN(linear_impl(x, w, b)), x, w, b); }

/* ---------------- comparison helpers ---------------- */

double sf_max_abs_diff(sf_tensor *a, sf_tensor *b) {
  sf_tensor *fa = sf_cast(a, SF_F64), *fb = fa ? sf_cast(b, SF_F64) : NULL;
  sf_tensor *d = fb ? sf_binary(SF_BIN_SUB, fa, fb) : NULL;
  sf_tensor *ad = d ? sf_unary(SF_UN_ABS, d, 0, 0) : NULL;
  sf_tensor *m = ad ? sf_reduce(SF_RED_MAX, ad, SF_ALL_DIMS, false) : NULL;
  double r = m ? sf_item(m) : -1;
  if (ad && sf_numel(ad) == 0) r = 0;
  sf_release(fa); sf_release(fb); sf_release(d); sf_release(ad); sf_release(m);
  return r;
}

int sf_allclose(sf_tensor *a, sf_tensor *b, double rtol, double atol, bool *out) {
  /* |a - b| <= atol + rtol * |b|, elementwise, as torch.allclose (NaN never close) */
  sf_tensor *fa = sf_cast(a, SF_F64), *fb = fa ? sf_cast(b, SF_F64) : NULL;
  sf_tensor *d = fb ? sf_binary(SF_BIN_SUB, fa, fb) : NULL;
  sf_tensor *ad = d ? sf_unary(SF_UN_ABS, d, 0, 0) : NULL;
  sf_tensor *ab = ad ? sf_unary(SF_UN_ABS, fb, 0, 0) : NULL;
  sf_tensor *tol = ab ? sf_binary_scalar(SF_BIN_MUL, ab, rtol, false) : NULL;
  int rc = -1;
  if (tol && !sf_binary_scalar_(SF_BIN_ADD, tol, atol)) {
    sf_tensor *ok = sf_binary(SF_BIN_LE, ad, tol);
    sf_tensor *bad = ok ? sf_unary(SF_UN_LOGICAL_NOT, ok, 0, 0) : NULL;
    sf_tensor *cnt = bad ? sf_reduce(SF_RED_SUM, bad, SF_ALL_DIMS, false) : NULL;
    if (cnt) { *out = sf_item(cnt) == 0; rc = 0; }
    sf_release(ok); sf_release(bad); sf_release(cnt);
  }
  sf_release(fa); sf_release(fb); sf_release(d); sf_release(ad); sf_release(ab); sf_release(tol);
  return rc;
}
