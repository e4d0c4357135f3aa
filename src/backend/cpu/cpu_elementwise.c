/* cpu_elementwise.c — unary, binary, binary-with-scalar and where on strided tensors of any dtype.
 * Each run of the innermost dim is processed in chunks: operands are used in place when they are
 * already in the compute type with unit stride (the contiguous f32 fast path), else gathered into a
 * stack buffer; one kernel per compute domain (float / double / int64) holds the op's math. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_math.h"

#define CH SF_CPU_CHUNK

/* ================= unary ================= */

static inline float un_scalar_f(sf_unary_op op, float x, float p0, float p1) {
  switch (op) {
  case SF_UN_LOG: return logf(x);
  case SF_UN_SIN: return sinf(x);
  case SF_UN_COS: return cosf(x);
  case SF_UN_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
  case SF_UN_POW: return powf(x, p0);
  default: return x;
  }
}

static void un_f(sf_unary_op op, float *y, const float *x, int64_t n, float p0, float p1, int has_lo, int has_hi) {
  switch (op) {
  case SF_UN_NEG: for (int64_t i = 0; i < n; i++) y[i] = -x[i]; break;
  case SF_UN_ABS: for (int64_t i = 0; i < n; i++) y[i] = fabsf(x[i]); break;
  case SF_UN_EXP: for (int64_t i = 0; i < n; i++) y[i] = sf_cpu_expf(x[i]); break;
  case SF_UN_SQRT: for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); break;
  case SF_UN_RSQRT: for (int64_t i = 0; i < n; i++) y[i] = 1.0f / sqrtf(x[i]); break;
  case SF_UN_TANH: for (int64_t i = 0; i < n; i++) y[i] = sf_cpu_tanhf(x[i]); break;
  case SF_UN_SIGMOID: for (int64_t i = 0; i < n; i++) y[i] = sf_cpu_sigmoidf(x[i]); break;
  case SF_UN_SILU: for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + sf_cpu_expf(-x[i])); break;
  case SF_UN_GELU_TANH: for (int64_t i = 0; i < n; i++) y[i] = sf_cpu_gelu_tanhf(x[i]); break;
  case SF_UN_RELU: for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i]; break; /* keeps NaN, -0 */
  case SF_UN_RECIP: for (int64_t i = 0; i < n; i++) y[i] = 1.0f / x[i]; break;
  case SF_UN_SQUARE: for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i]; break;
  case SF_UN_FLOOR: for (int64_t i = 0; i < n; i++) y[i] = floorf(x[i]); break;
  case SF_UN_CEIL: for (int64_t i = 0; i < n; i++) y[i] = ceilf(x[i]); break;
  case SF_UN_ROUND: for (int64_t i = 0; i < n; i++) y[i] = rintf(x[i]); break; /* half to even, as torch */
  case SF_UN_SIGN: for (int64_t i = 0; i < n; i++) y[i] = (float)((0.0f < x[i]) - (x[i] < 0.0f)); break;
  case SF_UN_ISNAN: for (int64_t i = 0; i < n; i++) y[i] = x[i] != x[i] ? 1.0f : 0.0f; break;
  case SF_UN_LOGICAL_NOT: for (int64_t i = 0; i < n; i++) y[i] = x[i] == 0.0f ? 1.0f : 0.0f; break;
  case SF_UN_CLAMP:
    for (int64_t i = 0; i < n; i++) {
      float v = x[i];
      if (has_lo) v = v < p0 ? p0 : v;
      if (has_hi) v = v > p1 ? p1 : v;
      y[i] = v;
    }
    break;
  case SF_UN_POW:
    if (p0 == 2.0f) for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i];
    else if (p0 == 1.0f) for (int64_t i = 0; i < n; i++) y[i] = x[i];
    else if (p0 == 0.5f) for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]);
    else if (p0 == 3.0f) for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i] * x[i];
    else if (p0 == -1.0f) for (int64_t i = 0; i < n; i++) y[i] = 1.0f / x[i];
    else for (int64_t i = 0; i < n; i++) y[i] = powf(x[i], p0);
    break;
  default: for (int64_t i = 0; i < n; i++) y[i] = un_scalar_f(op, x[i], p0, p1); break;
  }
}

static double un_scalar_d(sf_unary_op op, double x, double p0, double p1) {
  switch (op) {
  case SF_UN_NEG: return -x;
  case SF_UN_ABS: return fabs(x);
  case SF_UN_EXP: return exp(x);
  case SF_UN_LOG: return log(x);
  case SF_UN_SQRT: return sqrt(x);
  case SF_UN_RSQRT: return 1.0 / sqrt(x);
  case SF_UN_SIN: return sin(x);
  case SF_UN_COS: return cos(x);
  case SF_UN_TANH: return tanh(x);
  case SF_UN_SIGMOID: return 1.0 / (1.0 + exp(-x));
  case SF_UN_SILU: return x / (1.0 + exp(-x));
  case SF_UN_GELU_TANH: return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
  case SF_UN_GELU: return 0.5 * x * (1.0 + erf(x * 0.70710678118654752));
  case SF_UN_RELU: return x < 0 ? 0.0 : x;
  case SF_UN_RECIP: return 1.0 / x;
  case SF_UN_SQUARE: return x * x;
  case SF_UN_FLOOR: return floor(x);
  case SF_UN_CEIL: return ceil(x);
  case SF_UN_ROUND: return rint(x);
  case SF_UN_SIGN: return (double)((0.0 < x) - (x < 0.0));
  case SF_UN_ISNAN: return x != x;
  case SF_UN_LOGICAL_NOT: return x == 0.0;
  case SF_UN_POW: return pow(x, p0);
  case SF_UN_CLAMP:
    if (p0 == p0) x = x < p0 ? p0 : x;
    if (p1 == p1) x = x > p1 ? p1 : x;
    return x;
  default: return x;
  }
}

static int64_t ipow(int64_t b, int64_t e) {
  if (e < 0) return b == 1 ? 1 : b == -1 ? ((e & 1) ? -1 : 1) : 0; /* torch refuses; never trap */
  uint64_t r = 1, x = (uint64_t)b;
  while (e) { if (e & 1) r *= x; x *= x; e >>= 1; }
  return (int64_t)r;
}

static int64_t un_scalar_i(sf_unary_op op, int64_t x, double p0, double p1) {
  switch (op) {
  case SF_UN_NEG: return (int64_t)(0 - (uint64_t)x);
  case SF_UN_ABS: return x < 0 ? (int64_t)(0 - (uint64_t)x) : x;
  case SF_UN_SQUARE: return (int64_t)((uint64_t)x * (uint64_t)x);
  case SF_UN_RELU: return x < 0 ? 0 : x;
  case SF_UN_SIGN: return (0 < x) - (x < 0);
  case SF_UN_FLOOR: case SF_UN_CEIL: case SF_UN_ROUND: return x;
  case SF_UN_ISNAN: return 0;
  case SF_UN_LOGICAL_NOT: return x == 0;
  case SF_UN_POW:
    if (p0 == floor(p0) && fabs(p0) < 1e18) return ipow(x, (int64_t)p0);
    return sf_cpu_d2i(pow((double)x, p0));
  case SF_UN_CLAMP:
    if (p0 == p0 && (double)x < p0) x = sf_cpu_d2i(ceil(p0));
    if (p1 == p1 && (double)x > p1) x = sf_cpu_d2i(floor(p1));
    return x;
  default: return sf_cpu_d2i(un_scalar_d(op, (double)x, p0, p1)); /* float math on ints: truncate */
  }
}

typedef struct { sf_unary_op op; sf_dtype odt, adt; double p0, p1; } un_ctx;

static void un_seg(void *vctx, char *const *p, const int64_t *s, int64_t n) {
  const un_ctx *c = vctx;
  size_t eo = sf_dtype_size(c->odt), ea = sf_dtype_size(c->adt);
  sf_cpu_dom dom = sf_cpu_domain(c->adt);
  for (int64_t off = 0; off < n; off += CH) {
    int64_t m = n - off < CH ? n - off : CH;
    char *po = p[0] + off * s[0] * (int64_t)eo;
    const char *pa = p[1] + off * s[1] * (int64_t)ea;
    if (dom == SF_DOM_F) {
      float bx[CH], by[CH];
      const float *x = (c->adt == SF_F32 && s[1] == 1) ? (const float *)pa : (sf_cpu_load_f(c->adt, pa, s[1], m, bx), bx);
      float *y = (c->odt == SF_F32 && s[0] == 1) ? (float *)po : by;
      un_f(c->op, y, x, m, (float)c->p0, (float)c->p1, c->p0 == c->p0, c->p1 == c->p1);
      if (y == by) sf_cpu_store_f(c->odt, po, s[0], m, by);
    } else if (dom == SF_DOM_D) {
      double b[CH];
      sf_cpu_load_d(c->adt, pa, s[1], m, b);
      for (int64_t i = 0; i < m; i++) b[i] = un_scalar_d(c->op, b[i], c->p0, c->p1);
      sf_cpu_store_d(c->odt, po, s[0], m, b);
    } else {
      int64_t b[CH];
      sf_cpu_load_i(c->adt, pa, s[1], m, b);
      for (int64_t i = 0; i < m; i++) b[i] = un_scalar_i(c->op, b[i], c->p0, c->p1);
      sf_cpu_store_i(c->odt, po, s[0], m, b);
    }
  }
}

static int check_shapes(const char *what, const sf_tensor *out, const sf_tensor *a) {
  if (out->ndim != a->ndim) return sf_error("cpu %s: rank mismatch (%d vs %d)", what, out->ndim, a->ndim);
  for (int d = 0; d < out->ndim; d++)
    if (out->shape[d] != a->shape[d])
      return sf_error("cpu %s: shape mismatch at dim %d (%lld vs %lld)", what, d, (long long)out->shape[d],
                      (long long)a->shape[d]);
  return 0;
}

int sf_cpu_unary(sf_unary_op op, sf_tensor *out, const sf_tensor *a, double p0, double p1) {
  if (op < 0 || op >= SF_UN_COUNT) return sf_error("cpu unary: unknown op %d", (int)op);
  if (check_shapes("unary", out, a)) return -1;
  const sf_tensor *ts[2] = {out, a};
  sf_cpu_iter it;
  sf_cpu_iter_init(&it, 2, ts);
  un_ctx c = {op, out->dtype, a->dtype, p0, p1};
  sf_cpu_iter_run(&it, un_seg, &c, SF_CPU_PAR_MIN);
  return 0;
}

/* ================= binary ================= */

/* mode 0: both vectors, 1: b is one value, 2: a is one value */
#define BIN_LOOPS(T, EXPR)                                                                         \
  do {                                                                                             \
    if (mode == 0) for (int64_t i = 0; i < n; i++) { T x = a[i], y = b[i]; (void)y; o[i] = (EXPR); } \
    else if (mode == 1) { T y = b[0]; (void)y; for (int64_t i = 0; i < n; i++) { T x = a[i]; o[i] = (EXPR); } } \
    else { T x = a[0]; for (int64_t i = 0; i < n; i++) { T y = b[i]; (void)y; o[i] = (EXPR); } }   \
  } while (0)

/* max/min propagate NaN as torch.maximum/minimum */
#define FMAX(x, y) ((x) != (x) ? (x) : (y) != (y) ? (y) : (x) > (y) ? (x) : (y))
#define FMIN(x, y) ((x) != (x) ? (x) : (y) != (y) ? (y) : (x) < (y) ? (x) : (y))

static void bin_f(sf_binary_op op, int mode, float *o, const float *a, const float *b, int64_t n) {
  switch (op) {
  case SF_BIN_ADD: BIN_LOOPS(float, x + y); break;
  case SF_BIN_SUB: BIN_LOOPS(float, x - y); break;
  case SF_BIN_MUL: BIN_LOOPS(float, x * y); break;
  case SF_BIN_DIV: BIN_LOOPS(float, x / y); break;
  case SF_BIN_POW:
    if (mode == 1 && b[0] == 2.0f) BIN_LOOPS(float, x * x);
    else if (mode == 1 && b[0] == 0.5f) BIN_LOOPS(float, sqrtf(x));
    else if (mode == 1 && b[0] == 1.0f) BIN_LOOPS(float, x);
    else BIN_LOOPS(float, powf(x, y));
    break;
  case SF_BIN_MAX: BIN_LOOPS(float, FMAX(x, y)); break;
  case SF_BIN_MIN: BIN_LOOPS(float, FMIN(x, y)); break;
  case SF_BIN_EQ: BIN_LOOPS(float, x == y ? 1.0f : 0.0f); break;
  case SF_BIN_NE: BIN_LOOPS(float, x != y ? 1.0f : 0.0f); break;
  case SF_BIN_LT: BIN_LOOPS(float, x < y ? 1.0f : 0.0f); break;
  case SF_BIN_LE: BIN_LOOPS(float, x <= y ? 1.0f : 0.0f); break;
  case SF_BIN_GT: BIN_LOOPS(float, x > y ? 1.0f : 0.0f); break;
  case SF_BIN_GE: BIN_LOOPS(float, x >= y ? 1.0f : 0.0f); break;
  case SF_BIN_AND: BIN_LOOPS(float, (x != 0.0f && y != 0.0f) ? 1.0f : 0.0f); break;
  case SF_BIN_OR: BIN_LOOPS(float, (x != 0.0f || y != 0.0f) ? 1.0f : 0.0f); break;
  default: break;
  }
}

static void bin_d(sf_binary_op op, int mode, double *o, const double *a, const double *b, int64_t n) {
  switch (op) {
  case SF_BIN_ADD: BIN_LOOPS(double, x + y); break;
  case SF_BIN_SUB: BIN_LOOPS(double, x - y); break;
  case SF_BIN_MUL: BIN_LOOPS(double, x * y); break;
  case SF_BIN_DIV: BIN_LOOPS(double, x / y); break;
  case SF_BIN_POW: BIN_LOOPS(double, pow(x, y)); break;
  case SF_BIN_MAX: BIN_LOOPS(double, FMAX(x, y)); break;
  case SF_BIN_MIN: BIN_LOOPS(double, FMIN(x, y)); break;
  case SF_BIN_EQ: BIN_LOOPS(double, x == y); break;
  case SF_BIN_NE: BIN_LOOPS(double, x != y); break;
  case SF_BIN_LT: BIN_LOOPS(double, x < y); break;
  case SF_BIN_LE: BIN_LOOPS(double, x <= y); break;
  case SF_BIN_GT: BIN_LOOPS(double, x > y); break;
  case SF_BIN_GE: BIN_LOOPS(double, x >= y); break;
  case SF_BIN_AND: BIN_LOOPS(double, x != 0 && y != 0); break;
  case SF_BIN_OR: BIN_LOOPS(double, x != 0 || y != 0); break;
  default: break;
  }
}

/* integer division floors as torch's `//`; x/0 gives 0 and INT64_MIN/-1 wraps instead of trapping */
static inline int64_t idiv(int64_t x, int64_t y) {
  if (y == 0) return 0;
  if (y == -1) return (int64_t)(0 - (uint64_t)x);
  int64_t q = x / y;
  if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
  return q;
}

#define UADD(x, y) ((int64_t)((uint64_t)(x) + (uint64_t)(y)))
#define USUB(x, y) ((int64_t)((uint64_t)(x) - (uint64_t)(y)))
#define UMUL(x, y) ((int64_t)((uint64_t)(x) * (uint64_t)(y)))

/* bool inputs: add/mul/max/min/and/or are computed on 0/1 and stored as (r != 0), which is torch's
 * logical result; for other integers and/or are bitwise */
static void bin_i(sf_binary_op op, int mode, int64_t *o, const int64_t *a, const int64_t *b, int64_t n) {
  switch (op) {
  case SF_BIN_ADD: BIN_LOOPS(int64_t, UADD(x, y)); break;
  case SF_BIN_SUB: BIN_LOOPS(int64_t, USUB(x, y)); break;
  case SF_BIN_MUL: BIN_LOOPS(int64_t, UMUL(x, y)); break;
  case SF_BIN_DIV: BIN_LOOPS(int64_t, idiv(x, y)); break;
  case SF_BIN_POW: BIN_LOOPS(int64_t, ipow(x, y)); break;
  case SF_BIN_MAX: BIN_LOOPS(int64_t, x > y ? x : y); break;
  case SF_BIN_MIN: BIN_LOOPS(int64_t, x < y ? x : y); break;
  case SF_BIN_EQ: BIN_LOOPS(int64_t, x == y); break;
  case SF_BIN_NE: BIN_LOOPS(int64_t, x != y); break;
  case SF_BIN_LT: BIN_LOOPS(int64_t, x < y); break;
  case SF_BIN_LE: BIN_LOOPS(int64_t, x <= y); break;
  case SF_BIN_GT: BIN_LOOPS(int64_t, x > y); break;
  case SF_BIN_GE: BIN_LOOPS(int64_t, x >= y); break;
  case SF_BIN_AND: BIN_LOOPS(int64_t, x & y); break;
  case SF_BIN_OR: BIN_LOOPS(int64_t, x | y); break;
  default: break;
  }
}

typedef struct {
  sf_binary_op op;
  sf_dtype odt, idt;
  int has_scalar, scalar_first; /* binary_scalar: the scalar replaces operand b (or a) */
  double s;
} bin_ctx;

static void bin_seg(void *vctx, char *const *p, const int64_t *s, int64_t n) {
  const bin_ctx *c = vctx;
  size_t eo = sf_dtype_size(c->odt), ei = sf_dtype_size(c->idt);
  sf_cpu_dom dom = sf_cpu_domain(c->idt);
  /* stride-0 operands (broadcast along the run) are passed as a single value */
  int a_one, b_one;
  int64_t sa = s[1], sb = c->has_scalar ? 0 : s[2];
  if (c->has_scalar) { a_one = 0; b_one = 1; }
  else { a_one = sa == 0; b_one = sb == 0; if (a_one && b_one) a_one = 0; }
  int mode = b_one ? 1 : a_one ? 2 : 0;
  int swap = c->has_scalar && c->scalar_first; /* s op a: the scalar goes on the left */
  if (swap) mode = 2;
  for (int64_t off = 0; off < n; off += CH) {
    int64_t m = n - off < CH ? n - off : CH;
    char *po = p[0] + off * s[0] * (int64_t)eo;
    const char *pa = p[1] + off * sa * (int64_t)ei;
    const char *pb = c->has_scalar ? NULL : p[2] + off * sb * (int64_t)ei;
    int64_t ma = a_one ? 1 : m, mb = b_one ? 1 : m;
#define BIN_DOMAIN(T, NATIVE, LOAD, STORE, KERNEL, SCONV)                                         \
    {                                                                                              \
      T ba[CH], bb[CH], bo[CH];                                                                    \
      const T *x = (c->idt == NATIVE && sa == 1) ? (const T *)pa : (LOAD(c->idt, pa, sa, ma, ba), ba); \
      const T *y;                                                                                  \
      if (c->has_scalar) { bb[0] = SCONV(c->s); y = bb; }                                          \
      else y = (c->idt == NATIVE && sb == 1) ? (const T *)pb : (LOAD(c->idt, pb, sb, mb, bb), bb); \
      T *o = (c->odt == NATIVE && s[0] == 1) ? (T *)po : bo;                                       \
      if (swap) KERNEL(c->op, mode, o, y, x, m); else KERNEL(c->op, mode, o, x, y, m);             \
      if (o == bo) STORE(c->odt, po, s[0], m, bo);                                                 \
    }
    if (dom == SF_DOM_F) BIN_DOMAIN(float, SF_F32, sf_cpu_load_f, sf_cpu_store_f, bin_f, (float))
    else if (dom == SF_DOM_D) BIN_DOMAIN(double, SF_F64, sf_cpu_load_d, sf_cpu_store_d, bin_d, (double))
    else BIN_DOMAIN(int64_t, SF_I64, sf_cpu_load_i, sf_cpu_store_i, bin_i, sf_cpu_d2i)
#undef BIN_DOMAIN
  }
}

int sf_cpu_binary(sf_binary_op op, sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  if (op < 0 || op >= SF_BIN_COUNT) return sf_error("cpu binary: unknown op %d", (int)op);
  if (check_shapes("binary", out, a) || check_shapes("binary", out, b)) return -1;
  if (a->dtype != b->dtype)
    return sf_error("cpu binary: operands must share a dtype (%s vs %s)", sf_dtype_name(a->dtype), sf_dtype_name(b->dtype));
  const sf_tensor *ts[3] = {out, a, b};
  sf_cpu_iter it;
  sf_cpu_iter_init(&it, 3, ts);
  bin_ctx c = {op, out->dtype, a->dtype, 0, 0, 0};
  sf_cpu_iter_run(&it, bin_seg, &c, SF_CPU_PAR_MIN);
  return 0;
}

int sf_cpu_binary_scalar(sf_binary_op op, sf_tensor *out, const sf_tensor *a, double s, bool scalar_first) {
  if (op < 0 || op >= SF_BIN_COUNT) return sf_error("cpu binary: unknown op %d", (int)op);
  if (check_shapes("binary", out, a)) return -1;
  const sf_tensor *ts[2] = {out, a};
  sf_cpu_iter it;
  sf_cpu_iter_init(&it, 2, ts);
  bin_ctx c = {op, out->dtype, a->dtype, 1, scalar_first, s};
  sf_cpu_iter_run(&it, bin_seg, &c, SF_CPU_PAR_MIN);
  return 0;
}

/* ================= where ================= */

typedef struct { sf_dtype odt, cdt, adt; } where_ctx;

static void where_seg(void *vctx, char *const *p, const int64_t *s, int64_t n) {
  const where_ctx *c = vctx;
  size_t eo = sf_dtype_size(c->odt), ec = sf_dtype_size(c->cdt), ea = sf_dtype_size(c->adt);
  for (int64_t off = 0; off < n; off += CH) {
    int64_t m = n - off < CH ? n - off : CH;
    char *po = p[0] + off * s[0] * (int64_t)eo;
    const char *pc = p[1] + off * s[1] * (int64_t)ec;
    const char *pa = p[2] + off * s[2] * (int64_t)ea, *pb = p[3] + off * s[3] * (int64_t)ea;
    uint8_t cond[CH];
    if (c->cdt == SF_BOOL || c->cdt == SF_U8) {
      const uint8_t *q = (const uint8_t *)pc;
      for (int64_t i = 0; i < m; i++) cond[i] = q[i * s[1]] != 0;
    } else {
      double bc[CH];
      sf_cpu_load_d(c->cdt, pc, s[1], m, bc);
      for (int64_t i = 0; i < m; i++) cond[i] = bc[i] != 0;
    }
#define WHERE_DOMAIN(T, LOAD, STORE)                                                               \
    {                                                                                              \
      T ba[CH], bb[CH];                                                                            \
      LOAD(c->adt, pa, s[2], m, ba);                                                               \
      LOAD(c->adt, pb, s[3], m, bb);                                                               \
      for (int64_t i = 0; i < m; i++) ba[i] = cond[i] ? ba[i] : bb[i];                             \
      STORE(c->odt, po, s[0], m, ba);                                                              \
    }
    switch (sf_cpu_domain(c->adt)) {
    case SF_DOM_F: WHERE_DOMAIN(float, sf_cpu_load_f, sf_cpu_store_f) break;
    case SF_DOM_D: WHERE_DOMAIN(double, sf_cpu_load_d, sf_cpu_store_d) break;
    default: WHERE_DOMAIN(int64_t, sf_cpu_load_i, sf_cpu_store_i) break;
    }
#undef WHERE_DOMAIN
  }
}

int sf_cpu_where(sf_tensor *out, const sf_tensor *cond, const sf_tensor *a, const sf_tensor *b) {
  if (check_shapes("where", out, cond) || check_shapes("where", out, a) || check_shapes("where", out, b)) return -1;
  if (a->dtype != b->dtype)
    return sf_error("cpu where: operands must share a dtype (%s vs %s)", sf_dtype_name(a->dtype), sf_dtype_name(b->dtype));
  const sf_tensor *ts[4] = {out, cond, a, b};
  sf_cpu_iter it;
  sf_cpu_iter_init(&it, 4, ts);
  where_ctx c = {out->dtype, cond->dtype, a->dtype};
  sf_cpu_iter_run(&it, where_seg, &c, SF_CPU_PAR_MIN);
  return 0;
}
