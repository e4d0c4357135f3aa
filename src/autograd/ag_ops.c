/* ag_ops.c — recorders and backward functions for the core tensor ops (elementwise, reductions,
 * softmax, matmul/linear, casts, cat/stack). Backwards are composed from the public ops, so they run
 * on every device the forward runs on. */
#include <math.h>
#include <string.h>

#include "autograd/ag_internal.h"
#include "core/backend.h"
#include "core/train_ops.h"
#include "core/error.h"
#include "core/scope.h"

/* ---- small helpers: each consumes its tensor arguments marked `own` and passes NULL through ---- */

static sf_tensor *own(sf_tensor *x, sf_tensor *r) { sf_release(x); return r; }

sf_tensor *sf_ag_zeros_like_meta(const sf_tensor_meta *m) { return sf_zeros(m->ndim, m->shape, m->dtype, m->device); }

static sf_tensor *sum_to_shape(sf_tensor *g, int ndim, const int64_t *shape) {
  if (!g) return NULL;
  sf_tensor *cur = sf_retain(g);
  while (cur && cur->ndim > ndim) cur = own(cur, sf_raw_reduce(SF_RED_SUM, cur, 0, false));
  for (int d = 0; cur && d < ndim; d++)
    if (shape[d] == 1 && cur->shape[d] != 1) cur = own(cur, sf_raw_reduce(SF_RED_SUM, cur, d, true));
  return cur;
}

sf_tensor *sf_ag_sum_to(sf_tensor *g, const sf_tensor_meta *m) { return sum_to_shape(g, m->ndim, m->shape); }

/* consumes g */
static sf_tensor *sum_to_own(sf_tensor *g, const sf_tensor_meta *m) { return own(g, sf_ag_sum_to(g, m)); }

static sf_tensor *mul_own(sf_tensor *a, sf_tensor *b) { /* consumes both */
  sf_tensor *r = (a && b) ? sf_raw_mul(a, b) : NULL;
  sf_release(a);
  sf_release(b);
  return r;
}
static sf_tensor *mul1(sf_tensor *a, sf_tensor *b) { return a && b ? sf_raw_mul(a, b) : NULL; } /* borrows */
static sf_tensor *scal_own(sf_binary_op op, sf_tensor *a, double s) { return a ? own(a, sf_raw_binary_scalar(op, a, s, false)) : NULL; }
static sf_tensor *un_own(sf_unary_op op, sf_tensor *a) { return a ? own(a, sf_raw_unary(op, a, 0, 0)) : NULL; }
static sf_tensor *bin_own(sf_binary_op op, sf_tensor *a, sf_tensor *b) {
  sf_tensor *r = (a && b) ? sf_raw_binary(op, a, b) : NULL;
  sf_release(a);
  sf_release(b);
  return r;
}
/* comparison mask as a float tensor of dtype dt */
static sf_tensor *mask_as(sf_tensor *m, sf_dtype dt) { return m ? own(m, sf_raw_cast(m, dt)) : NULL; }

static int bw_done(sf_node *n, sf_tensor **gi) {
  for (int i = 0; i < n->n_in; i++)
    if (sf_node_needs(n, i) && !gi[i]) {
      if (!sf_last_error()[0]) sf_error("no gradient computed for input %d", i + 1);
      return -1;
    }
  return 0;
}

static bool out_is_float(sf_tensor *out) { return sf_dtype_is_float(out->dtype) || out->dtype == SF_F64; }

/* ---- unary ---- */

/* the device's fused activation backward when it has one: 1 = not fused here */
static int fused_unary_bw(sf_unary_op op, sf_tensor *g, sf_tensor *a, sf_tensor **out) {
  const sf_backend *be = a ? sf_backend_of(a) : NULL;
  if (!sf_backend_supports(be, SF_CAP_UNARY_BWD, op, NULL, g, a) || !sf_same_shape(g, a)) return 1;
  sf_tensor *gc = sf_raw_contiguous(g), *ac = gc ? sf_raw_contiguous(a) : NULL;
  sf_tensor *dx = ac ? sf_empty(a->ndim, a->shape, g->dtype, sf_device_of(a)) : NULL;
  int rc = dx ? be->train->unary_bwd(op, dx, gc, ac) : -1;
  sf_release(gc), sf_release(ac);
  if (rc) { sf_release(dx); return rc; }
  *out = dx;
  return 0;
}

/* one op per statement in an ownership scope (core/scope.h): intermediates are released at the scope's end */
#define UN(op, x) SF_OWN(S, sf_raw_unary((op), (x), 0, 0))
#define SC(op, x, v) SF_OWN(S, sf_raw_binary_scalar((op), (x), (v), false))
#define SC1(op, x, v) SF_OWN(S, sf_raw_binary_scalar((op), (x), (v), true)) /* v op x */
#define BI(op, x, z) SF_OWN(S, sf_raw_binary((op), (x), (z)))

static int bw_unary(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  sf_tensor *g = go[0], *a = n->saved[0], *y = n->saved[1];
  double p0 = n->p[0], p1 = n->p[1];
  sf_tensor *r = NULL;
  sf_scope S = SF_SCOPE_INIT;
  int fr = fused_unary_bw((sf_unary_op)n->ip[0], g, a, &gi[0]);
  if (fr <= 0) return fr;
  switch ((sf_unary_op)n->ip[0]) {
  case SF_UN_NEG: r = sf_raw_unary(SF_UN_NEG, g, 0, 0); break;
  case SF_UN_ABS: r = mul_own(sf_retain(g), sf_raw_unary(SF_UN_SIGN, a, 0, 0)); break;
  case SF_UN_EXP: r = sf_raw_mul(g, y); break;
  case SF_UN_LOG: r = sf_raw_div(g, a); break;
  case SF_UN_SQRT: r = bin_own(SF_BIN_DIV, sf_retain(g), sf_raw_binary_scalar(SF_BIN_MUL, y, 2.0, false)); break;
  case SF_UN_RSQRT: /* d a^-1/2 = -1/2 y^3 */
    r = mul_own(sf_retain(g), scal_own(SF_BIN_MUL, sf_raw_unary(SF_UN_POW, y, 3.0, 0), -0.5));
    break;
  case SF_UN_SIN: r = mul_own(sf_retain(g), sf_raw_unary(SF_UN_COS, a, 0, 0)); break;
  case SF_UN_COS: r = mul_own(sf_raw_unary(SF_UN_NEG, g, 0, 0), sf_raw_unary(SF_UN_SIN, a, 0, 0)); break;
  case SF_UN_TANH: /* 1 - y^2 */
    r = mul_own(sf_retain(g), scal_own(SF_BIN_ADD, un_own(SF_UN_NEG, sf_raw_unary(SF_UN_SQUARE, y, 0, 0)), 1.0));
    break;
  case SF_UN_SIGMOID: /* y (1 - y) */
    r = mul_own(mul1(g, y), sf_raw_binary_scalar(SF_BIN_SUB, y, 1.0, true));
    break;
  case SF_UN_SILU: { /* s (1 + a (1 - s)) */
    sf_tensor *s = UN(SF_UN_SIGMOID, a);
    sf_tensor *t = SC1(SF_BIN_SUB, s, 1.0);
    t = BI(SF_BIN_MUL, t, a);
    t = SC(SF_BIN_ADD, t, 1.0);
    t = BI(SF_BIN_MUL, s, t);
    r = sf_scope_end_keep(&S, BI(SF_BIN_MUL, g, t));
    break;
  }
  case SF_UN_GELU_TANH: { /* 0.5 (1 + t) + 0.5 a (1 - t^2) k (1 + 3 c a^2), t = tanh(k (a + c a^3)) */
    const double k = sqrt(2.0 / M_PI), c = 0.044715;
    sf_tensor *a2 = UN(SF_UN_SQUARE, a);
    sf_tensor *in = SC(SF_BIN_MUL, a2, c);
    in = SC(SF_BIN_ADD, in, 1.0);
    in = BI(SF_BIN_MUL, in, a);
    in = SC(SF_BIN_MUL, in, k);
    sf_tensor *t = UN(SF_UN_TANH, in);
    sf_tensor *left = SC(SF_BIN_ADD, t, 1.0);
    left = SC(SF_BIN_MUL, left, 0.5);
    sf_tensor *sech2 = UN(SF_UN_SQUARE, t);
    sech2 = UN(SF_UN_NEG, sech2);
    sech2 = SC(SF_BIN_ADD, sech2, 1.0);
    sf_tensor *poly = SC(SF_BIN_MUL, a2, 3.0 * c);
    poly = SC(SF_BIN_ADD, poly, 1.0);
    sf_tensor *right = BI(SF_BIN_MUL, sech2, poly);
    right = BI(SF_BIN_MUL, right, a);
    right = SC(SF_BIN_MUL, right, 0.5 * k);
    sf_tensor *d = BI(SF_BIN_ADD, left, right);
    r = sf_scope_end_keep(&S, BI(SF_BIN_MUL, g, d));
    break;
  }
  case SF_UN_GELU: { /* Phi(a) + a phi(a); Phi = y / a away from 0 (no erf op), 1/2 at 0 */
    sf_tensor *eq0 = SC(SF_BIN_EQ, a, 0.0);
    sf_tensor *safe_a = SC(SF_BIN_ADD, a, 0.0); /* copy of a */
    sf_tensor *ones = SF_OWN(S, sf_full(0, NULL, 1.0, a->dtype, sf_device_of(a)));
    sf_tensor *den = SF_OWN(S, sf_raw_where(eq0, ones, safe_a));
    sf_tensor *half = SF_OWN(S, sf_full(0, NULL, 0.5, a->dtype, sf_device_of(a)));
    sf_tensor *q = BI(SF_BIN_DIV, y, den);
    sf_tensor *Phi = SF_OWN(S, sf_raw_where(eq0, half, q));
    sf_tensor *phi = UN(SF_UN_SQUARE, a);
    phi = SC(SF_BIN_MUL, phi, -0.5);
    phi = UN(SF_UN_EXP, phi);
    phi = SC(SF_BIN_MUL, phi, 1.0 / sqrt(2.0 * M_PI));
    sf_tensor *d = BI(SF_BIN_MUL, phi, a);
    d = BI(SF_BIN_ADD, Phi, d);
    r = sf_scope_end_keep(&S, BI(SF_BIN_MUL, g, d));
    break;
  }
  case SF_UN_RELU: r = mul_own(sf_retain(g), mask_as(sf_raw_binary_scalar(SF_BIN_GT, a, 0.0, false), g->dtype)); break;
  case SF_UN_RECIP: r = un_own(SF_UN_NEG, mul_own(sf_retain(g), sf_raw_unary(SF_UN_SQUARE, y, 0, 0))); break;
  case SF_UN_SQUARE: r = scal_own(SF_BIN_MUL, sf_raw_mul(g, a), 2.0); break;
  case SF_UN_POW: r = mul_own(sf_retain(g), scal_own(SF_BIN_MUL, sf_raw_unary(SF_UN_POW, a, p0 - 1.0, 0), p0)); break;
  case SF_UN_CLAMP: {
    sf_tensor *m = sf_full(a->ndim, a->shape, 1.0, g->dtype, sf_device_of(a));
    if (m && !isnan(p0)) m = mul_own(m, mask_as(sf_raw_binary_scalar(SF_BIN_GE, a, p0, false), g->dtype));
    if (m && !isnan(p1)) m = mul_own(m, mask_as(sf_raw_binary_scalar(SF_BIN_LE, a, p1, false), g->dtype));
    r = mul_own(sf_retain(g), m);
    break;
  }
  case SF_UN_FLOOR: case SF_UN_CEIL: case SF_UN_ROUND: case SF_UN_SIGN:
    r = sf_ag_zeros_like_meta(&n->in[0]);
    break;
  default: return sf_error("no backward for unary op %d", (int)n->ip[0]);
  }
  gi[0] = r;
  return bw_done(n, gi);
}

sf_tensor *sf_ag_unary(sf_tensor *out, sf_unary_op op, sf_tensor *a, double p0, double p1) {
  if (!out || !out_is_float(out) || op == SF_UN_ISNAN || op == SF_UN_LOGICAL_NOT) return out;
  sf_node *n = sf_node_begin("unary", bw_unary, &a, 1);
  if (!n) return out;
  n->name = sf_unary_op_name(op);
  n->ip[0] = op;
  n->p[0] = p0;
  n->p[1] = p1;
  bool need_a = op == SF_UN_ABS || op == SF_UN_LOG || op == SF_UN_SIN || op == SF_UN_COS || op == SF_UN_SILU ||
                op == SF_UN_TANH || op == SF_UN_SIGMOID ||
                op == SF_UN_GELU_TANH || op == SF_UN_GELU || op == SF_UN_RELU || op == SF_UN_SQUARE ||
                op == SF_UN_POW || op == SF_UN_CLAMP;
  bool need_y = op == SF_UN_EXP || op == SF_UN_SQRT || op == SF_UN_RSQRT || op == SF_UN_TANH || op == SF_UN_SIGMOID ||
                op == SF_UN_RECIP || op == SF_UN_GELU;
  if (need_a) sf_node_save(n, 0, a);
  if (need_y) sf_node_save(n, 1, out);
  return sf_node_finish1(n, out);
}

/* ---- binary ---- */

static sf_tensor *tie_mask(sf_binary_op op, sf_tensor *x, sf_tensor *y, sf_dtype dt) {
  /* x wins for MAX when x > y (MIN: x < y); ties split the gradient evenly, as torch.maximum */
  sf_tensor *win = mask_as(sf_raw_binary(op == SF_BIN_MAX ? SF_BIN_GT : SF_BIN_LT, x, y), dt);
  sf_tensor *tie = scal_own(SF_BIN_MUL, mask_as(sf_raw_binary(SF_BIN_EQ, x, y), dt), 0.5);
  return bin_own(SF_BIN_ADD, win, tie);
}

static int bw_binary(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  sf_tensor *g = go[0], *a = n->saved[0], *b = n->saved[1], *y = n->saved[2];
  bool na = sf_node_needs(n, 0), nb = sf_node_needs(n, 1);
  switch ((sf_binary_op)n->ip[0]) {
  case SF_BIN_ADD:
    if (na) gi[0] = sf_ag_sum_to(g, &n->in[0]);
    if (nb) gi[1] = sf_ag_sum_to(g, &n->in[1]);
    break;
  case SF_BIN_SUB:
    if (na) gi[0] = sf_ag_sum_to(g, &n->in[0]);
    if (nb) gi[1] = sum_to_own(sf_raw_unary(SF_UN_NEG, g, 0, 0), &n->in[1]);
    break;
  case SF_BIN_MUL:
    if (na) gi[0] = sum_to_own(sf_raw_mul(g, b), &n->in[0]);
    if (nb) gi[1] = sum_to_own(sf_raw_mul(g, a), &n->in[1]);
    break;
  case SF_BIN_DIV: {
    sf_tensor *gb = sf_raw_div(g, b);
    if (nb) gi[1] = sum_to_own(un_own(SF_UN_NEG, mul1(gb, y)), &n->in[1]);
    if (na) gi[0] = sum_to_own(gb, &n->in[0]);
    else sf_release(gb);
    break;
  }
  case SF_BIN_POW:
    if (na) gi[0] = sum_to_own(mul_own(sf_raw_mul(g, b), bin_own(SF_BIN_POW, sf_retain(a), scal_own(SF_BIN_SUB, sf_retain(b), 1.0))), &n->in[0]);
    if (nb) gi[1] = sum_to_own(mul_own(sf_raw_mul(g, y), sf_raw_unary(SF_UN_LOG, a, 0, 0)), &n->in[1]);
    break;
  case SF_BIN_MAX: case SF_BIN_MIN: {
    sf_binary_op op = (sf_binary_op)n->ip[0];
    if (na) gi[0] = sum_to_own(mul_own(sf_retain(g), tie_mask(op, a, b, g->dtype)), &n->in[0]);
    if (nb) gi[1] = sum_to_own(mul_own(sf_retain(g), tie_mask(op, b, a, g->dtype)), &n->in[1]);
    break;
  }
  default: return sf_error("no backward for binary op %d", (int)n->ip[0]);
  }
  return bw_done(n, gi);
}

sf_tensor *sf_ag_binary(sf_tensor *out, sf_binary_op op, sf_tensor *a, sf_tensor *b) {
  if (!out || !out_is_float(out) || op >= SF_BIN_EQ) return out;
  sf_tensor *in[2] = {a, b};
  sf_node *n = sf_node_begin("binary", bw_binary, in, 2);
  if (!n) return out;
  static const char *names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"};
  n->name = names[op];
  n->ip[0] = op;
  int k = 0;
  if (op == SF_BIN_MUL || op == SF_BIN_DIV || op == SF_BIN_POW || op == SF_BIN_MAX || op == SF_BIN_MIN) {
    sf_node_save(n, k++, a);
    sf_node_save(n, k++, b);
    if (op == SF_BIN_DIV || op == SF_BIN_POW) sf_node_save(n, k++, out);
  }
  return sf_node_finish1(n, out);
}

static int bw_binary_scalar(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  sf_tensor *g = go[0], *a = n->saved[0], *y = n->saved[1];
  double s = n->p[0];
  bool first = n->ip[1] != 0;
  sf_tensor *r = NULL;
  switch ((sf_binary_op)n->ip[0]) {
  case SF_BIN_ADD: r = sf_retain(g); break;
  case SF_BIN_SUB: r = first ? sf_raw_unary(SF_UN_NEG, g, 0, 0) : sf_retain(g); break;
  case SF_BIN_MUL: r = sf_raw_binary_scalar(SF_BIN_MUL, g, s, false); break;
  case SF_BIN_DIV: /* a / s, or s / a: -g y / a */
    r = first ? un_own(SF_UN_NEG, bin_own(SF_BIN_DIV, sf_raw_mul(g, y), sf_retain(a))) : sf_raw_binary_scalar(SF_BIN_DIV, g, s, false);
    break;
  case SF_BIN_POW: /* a ^ s, or s ^ a: g y ln s */
    r = first ? scal_own(SF_BIN_MUL, sf_raw_mul(g, y), log(s))
              : mul_own(sf_retain(g), scal_own(SF_BIN_MUL, sf_raw_unary(SF_UN_POW, a, s - 1.0, 0), s));
    break;
  case SF_BIN_MAX: case SF_BIN_MIN: {
    sf_tensor *win = mask_as(sf_raw_binary_scalar(n->ip[0] == SF_BIN_MAX ? SF_BIN_GT : SF_BIN_LT, a, s, false), g->dtype);
    sf_tensor *tie = scal_own(SF_BIN_MUL, mask_as(sf_raw_binary_scalar(SF_BIN_EQ, a, s, false), g->dtype), 0.5);
    r = mul_own(sf_retain(g), bin_own(SF_BIN_ADD, win, tie));
    break;
  }
  default: return sf_error("no backward for binary op %d with a scalar", (int)n->ip[0]);
  }
  gi[0] = r;
  return bw_done(n, gi);
}

sf_tensor *sf_ag_binary_scalar(sf_tensor *out, sf_binary_op op, sf_tensor *a, double s, bool scalar_first) {
  if (!out || !out_is_float(out) || op >= SF_BIN_EQ) return out;
  sf_node *n = sf_node_begin("binary_scalar", bw_binary_scalar, &a, 1);
  if (!n) return out;
  static const char *names[] = {"add_scalar", "sub_scalar", "mul_scalar", "div_scalar", "pow_scalar", "max_scalar",
                                "min_scalar"};
  n->name = names[op];
  n->ip[0] = op;
  n->ip[1] = scalar_first;
  n->p[0] = s;
  if (op == SF_BIN_DIV || op == SF_BIN_POW || op == SF_BIN_MAX || op == SF_BIN_MIN) {
    sf_node_save(n, 0, a);
    sf_node_save(n, 1, out);
  }
  return sf_node_finish1(n, out);
}

/* ---- where ---- */

static int bw_where(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  sf_tensor *g = go[0], *cond = n->saved[0];
  sf_tensor *z = sf_zeros(0, NULL, g->dtype, sf_device_of(g));
  if (!z) return -1;
  if (sf_node_needs(n, 1)) gi[1] = sum_to_own(sf_raw_where(cond, g, z), &n->in[1]);
  if (sf_node_needs(n, 2)) gi[2] = sum_to_own(sf_raw_where(cond, z, g), &n->in[2]);
  sf_release(z);
  return bw_done(n, gi);
}

sf_tensor *sf_ag_where(sf_tensor *out, sf_tensor *cond, sf_tensor *a, sf_tensor *b) {
  if (!out || !out_is_float(out)) return out;
  sf_tensor *in[3] = {cond, a, b};
  /* cond carries no gradient even if it is a float tensor that requires it */
  if (!sf_ag_should_record(in + 1, 2)) return out;
  sf_node *n = sf_node_begin("where", bw_where, in, 3);
  if (!n) return out;
  if (n->next[0].node || n->next[0].leaf) { /* never send a gradient to cond */
    sf_node_release(n->next[0].node);
    sf_release(n->next[0].leaf);
    n->next[0].node = NULL;
    n->next[0].leaf = NULL;
  }
  sf_node_save(n, 0, cond);
  return sf_node_finish1(n, out);
}

/* ---- reductions ---- */

/* g (reduced) back to the input's shape as a broadcastable view */
static sf_tensor *unreduce(sf_tensor *g, const sf_tensor_meta *m, int dim, bool keepdim) {
  if (!g) return NULL;
  sf_tensor *k;
  if (dim == SF_ALL_DIMS) {
    int64_t ones[SF_MAX_DIMS];
    for (int d = 0; d < m->ndim; d++) ones[d] = 1;
    k = sf_raw_reshape(g, m->ndim, ones);
  } else {
    k = keepdim ? sf_retain(g) : sf_unsqueeze(g, dim);
  }
  return k ? own(k, sf_expand(k, m->ndim, m->shape)) : NULL;
}

static int bw_reduce(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  sf_tensor *g = go[0], *a = n->saved[0], *y = n->saved[1];
  int dim = (int)n->ip[1];
  bool keep = n->ip[2] != 0;
  const sf_tensor_meta *m = &n->in[0];
  int64_t count = 1;
  if (dim == SF_ALL_DIMS) for (int d = 0; d < m->ndim; d++) count *= m->shape[d];
  else count = m->ndim ? m->shape[dim] : 1;
  sf_tensor *ge = unreduce(g, m, dim, keep), *r = NULL;
  if (!ge) return -1;
  switch ((sf_reduce_op)n->ip[0]) {
  case SF_RED_SUM: r = sf_raw_contiguous(ge); break;
  case SF_RED_MEAN: r = sf_raw_binary_scalar(SF_BIN_DIV, ge, (double)count, false); break;
  case SF_RED_MAX: case SF_RED_MIN: {
    sf_tensor *ye = unreduce(y, m, dim, keep);
    sf_tensor *mask = ye ? mask_as(sf_raw_binary(SF_BIN_EQ, a, ye), g->dtype) : NULL;
    sf_tensor *cnt = mask ? sf_raw_reduce(SF_RED_SUM, mask, dim, true) : NULL; /* ties share the gradient */
    if (cnt && dim == SF_ALL_DIMS) {
      int64_t ones[SF_MAX_DIMS];
      for (int d = 0; d < m->ndim; d++) ones[d] = 1;
      cnt = own(cnt, sf_raw_reshape(cnt, m->ndim, ones));
    }
    r = bin_own(SF_BIN_DIV, mul_own(sf_retain(ge), mask), cnt);
    sf_release(ye);
    break;
  }
  case SF_RED_STD: { /* (a - mean) / ((n - 1) std) */
    sf_tensor *mean = sf_raw_reduce(SF_RED_MEAN, a, dim, true);
    if (mean && dim == SF_ALL_DIMS) {
      int64_t ones[SF_MAX_DIMS];
      for (int d = 0; d < m->ndim; d++) ones[d] = 1;
      mean = own(mean, sf_raw_reshape(mean, m->ndim, ones));
    }
    sf_tensor *ye = unreduce(y, m, dim, keep);
    sf_tensor *num = mean ? sf_raw_sub(a, mean) : NULL;
    sf_release(mean);
    r = bin_own(SF_BIN_DIV, mul_own(sf_retain(ge), num), scal_own(SF_BIN_MUL, ye, (double)(count - 1)));
    break;
  }
  case SF_RED_NORM: r = bin_own(SF_BIN_DIV, mul1(ge, a), unreduce(y, m, dim, keep)); break;
  case SF_RED_PROD: r = bin_own(SF_BIN_DIV, mul_own(sf_retain(ge), unreduce(y, m, dim, keep)), sf_retain(a)); break;
  default: sf_release(ge); return sf_error("no backward for reduction %d", (int)n->ip[0]);
  }
  sf_release(ge);
  gi[0] = r;
  return bw_done(n, gi);
}

sf_tensor *sf_ag_reduce(sf_tensor *out, sf_reduce_op op, sf_tensor *a, int dim, bool keepdim) {
  if (!out || !out_is_float(out) || op == SF_RED_ARGMAX || op == SF_RED_ARGMIN) return out;
  sf_node *n = sf_node_begin("reduce", bw_reduce, &a, 1);
  if (!n) return out;
  static const char *names[] = {"sum", "mean", "max", "min", "std", "norm", "argmax", "argmin", "prod"};
  n->name = names[op];
  n->ip[0] = op;
  n->ip[1] = dim == SF_ALL_DIMS ? SF_ALL_DIMS : sf_wrap_dim(dim, a->ndim);
  n->ip[2] = keepdim;
  if (op != SF_RED_SUM && op != SF_RED_MEAN) {
    sf_node_save(n, 0, a);
    sf_node_save(n, 1, out);
  }
  return sf_node_finish1(n, out);
}

/* ---- softmax ---- */

static int bw_softmax(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  sf_tensor *g = go[0], *y = n->saved[0];
  int dim = (int)n->ip[0];
  if (n->ip[1]) { /* log_softmax: g - exp(y) sum(g) */
    gi[0] = bin_own(SF_BIN_SUB, sf_retain(g), mul_own(sf_raw_unary(SF_UN_EXP, y, 0, 0), sf_raw_reduce(SF_RED_SUM, g, dim, true)));
  } else { /* y (g - sum(g y)) */
    sf_tensor *gy = sf_raw_mul(g, y);
    sf_tensor *s = gy ? sf_raw_reduce(SF_RED_SUM, gy, dim, true) : NULL;
    sf_release(gy);
    gi[0] = mul_own(bin_own(SF_BIN_SUB, sf_retain(g), s), sf_retain(y));
  }
  return bw_done(n, gi);
}

sf_tensor *sf_ag_softmax(sf_tensor *out, sf_tensor *a, int dim, bool log) {
  if (!out) return out;
  sf_node *n = sf_node_begin(log ? "log_softmax" : "softmax", bw_softmax, &a, 1);
  if (!n) return out;
  n->ip[0] = sf_wrap_dim(dim, a->ndim);
  n->ip[1] = log;
  sf_node_save(n, 0, out);
  return sf_node_finish1(n, out);
}

/* ---- matmul / linear ---- */

static int bw_matmul(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  sf_tensor *g = go[0], *a = n->saved[0], *b = n->saved[1];
  bool a1 = a->ndim == 1, b1 = b->ndim == 1;
  sf_tensor *a2 = a1 ? sf_unsqueeze(a, 0) : sf_retain(a);
  sf_tensor *b2 = b1 ? sf_unsqueeze(b, 1) : sf_retain(b);
  sf_tensor *g2 = sf_retain(g);
  if (a1 && b1) {
    int64_t s11[2] = {1, 1};
    g2 = own(g2, sf_raw_reshape(g2, 2, s11));
  } else if (a1) {
    g2 = own(g2, sf_unsqueeze(g2, g2->ndim - 1));
  } else if (b1) {
    g2 = own(g2, sf_unsqueeze(g2, g2->ndim));
  }
  if (!a2 || !b2 || !g2) goto out;
  if (sf_node_needs(n, 0)) {
    sf_tensor *bt = sf_transpose(b2, -1, -2);
    sf_tensor *ga = bt ? sf_raw_matmul(g2, bt) : NULL;
    sf_release(bt);
    ga = own(ga, sum_to_shape(ga, a2->ndim, a2->shape));
    if (ga && a1) ga = own(ga, sf_raw_reshape(ga, 1, a->shape));
    gi[0] = ga;
  }
  if (sf_node_needs(n, 1)) {
    sf_tensor *at = sf_transpose(a2, -1, -2);
    sf_tensor *gb = at ? sf_raw_matmul(at, g2) : NULL;
    sf_release(at);
    gb = own(gb, sum_to_shape(gb, b2->ndim, b2->shape));
    if (gb && b1) gb = own(gb, sf_raw_reshape(gb, 1, b->shape));
    gi[1] = gb;
  }
out:
  sf_release(a2);
  sf_release(b2);
  sf_release(g2);
  return bw_done(n, gi);
}

sf_tensor *sf_ag_matmul(sf_tensor *out, sf_tensor *a, sf_tensor *b) {
  if (!out) return out;
  sf_tensor *in[2] = {a, b};
  sf_node *n = sf_node_begin("matmul", bw_matmul, in, 2);
  if (!n) return out;
  /* each input's gradient needs only the other operand */
  sf_node_save(n, 0, a);
  sf_node_save(n, 1, b);
  return sf_node_finish1(n, out);
}

/* acc += a b through the device's matmul_acc when it has one: 0 done, else the caller computes a fresh product */
static int matmul_into(sf_tensor *acc, sf_tensor *a, sf_tensor *b) {
  const sf_backend *be = sf_backend_of(acc);
  if (!a || !b || !be) return 1;
  int64_t s2[2] = {-1, acc->shape[acc->ndim - 1]};
  sf_tensor *acc2 = sf_raw_reshape(acc, 2, s2); /* a view: acc is contiguous */
  int rc = acc2 && acc2->storage == acc->storage && sf_backend_supports(be, SF_CAP_MATMUL_ACC, 0, acc2, a, b)
               ? be->train->matmul_acc(acc2, a, b)
               : 1;
  sf_release(acc2);
  return rc;
}

static int bw_linear(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  sf_tensor *g = go[0], *x = n->saved[0], *w = n->saved[1];
  int64_t out_f = w->shape[0], in_f = w->shape[1];
  int64_t s2[2] = {-1, out_f}, x2s[2] = {-1, in_f};
  sf_tensor *g2 = sf_raw_reshape(g, 2, s2);
  if (!g2) return -1;
  /* dX = dY W and dW = dY^T X go straight into the gradients accumulated so far when possible (later
   * steps of gradient accumulation, inputs with several consumers): one GEMM pass, no temporary, no add */
  bool done[2] = {false, false};
  int rc = 0;
  if (sf_node_needs(n, 0)) {
    sf_tensor *acc = sf_node_grad_acc(n, 0);
    if (acc && (rc = matmul_into(acc, g2, w)) == 0) done[0] = true;
    else if (rc >= 0) gi[0] = sf_raw_matmul(g, w);
  }
  if (rc >= 0 && sf_node_needs(n, 1)) {
    sf_tensor *x2 = sf_raw_reshape(x, 2, x2s);
    sf_tensor *gt = sf_transpose(g2, 0, 1);
    sf_tensor *acc = sf_node_grad_acc(n, 1);
    if (acc && x2 && gt && (rc = matmul_into(acc, gt, x2)) == 0) done[1] = true;
    else if (rc >= 0) gi[1] = (x2 && gt) ? sf_raw_matmul(gt, x2) : NULL;
    sf_release(x2);
    sf_release(gt);
  }
  if (rc >= 0 && sf_node_needs(n, 2)) gi[2] = sf_raw_reduce(SF_RED_SUM, g2, 0, false);
  sf_release(g2);
  if (rc < 0) return -1;
  for (int i = 0; i < n->n_in; i++)
    if (sf_node_needs(n, i) && !gi[i] && !(i < 2 && done[i])) {
      if (!sf_last_error()[0]) sf_error("no gradient computed for input %d", i + 1);
      return -1;
    }
  return 0;
}

sf_tensor *sf_ag_linear(sf_tensor *out, sf_tensor *x, sf_tensor *w, sf_tensor *b) {
  if (!out) return out;
  sf_tensor *in[3] = {x, w, b};
  sf_node *n = sf_node_begin("linear", bw_linear, in, 3);
  if (!n) return out;
  sf_node_save(n, 0, x);
  sf_node_save(n, 1, w);
  return sf_node_finish1(n, out);
}

/* ---- casts, copies, cat/stack ---- */

static int bw_cast(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  const sf_tensor_meta *m = &n->in[0];
  sf_tensor *g = go[0];
  /* dtype: the engine casts to the input's dtype (a bf16 leaf keeps the wider gradient) */
  gi[0] = sf_device_eq(sf_device_of(g), m->device) ? sf_retain(g) : sf_raw_to_device(g, m->device);
  return bw_done(n, gi);
}

sf_tensor *sf_ag_cast(sf_tensor *out, sf_tensor *a) {
  if (!out || out == a || !out_is_float(out)) return out;
  sf_node *n = sf_node_begin("to", bw_cast, &a, 1);
  return sf_node_finish1(n, out);
}

static int bw_identity(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  gi[0] = sf_retain(go[0]);
  return bw_done(n, gi);
}

sf_tensor *sf_ag_identity(sf_tensor *out, sf_tensor *a) {
  if (!out || out == a) return out;
  sf_node *n = sf_node_begin("clone", bw_identity, &a, 1);
  return sf_node_finish1(n, out);
}

static int bw_cat(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  int dim = (int)n->ip[0];
  bool stack = n->ip[1] != 0;
  int64_t off = 0;
  int out_nd = n->out[0].ndim;
  for (int i = 0; i < n->n_in; i++) {
    if (!stack && n->in[i].ndim == 1 && n->in[i].shape[0] == 0 && out_nd != 1) { /* cat skips these, as torch */
      if (sf_node_needs(n, i) && !(gi[i] = sf_ag_zeros_like_meta(&n->in[i]))) return -1;
      continue;
    }
    int64_t len = stack ? 1 : n->in[i].shape[dim];
    if (sf_node_needs(n, i)) {
      gi[i] = stack ? sf_select(go[0], dim, off) : sf_narrow(go[0], dim, off, len);
      if (!gi[i]) return -1;
    }
    off += len;
  }
  return bw_done(n, gi);
}

static sf_tensor *record_cat(sf_tensor *out, sf_tensor *const *ts, int n_in, int dim, bool stack) {
  if (!out || !out_is_float(out)) return out;
  sf_node *n = sf_node_begin(stack ? "stack" : "cat", bw_cat, ts, n_in);
  if (!n) return out;
  n->ip[0] = sf_wrap_dim(dim, out->ndim);
  n->ip[1] = stack;
  return sf_node_finish1(n, out);
}

sf_tensor *sf_ag_cat(sf_tensor *out, sf_tensor *const *ts, int n, int dim) { return record_cat(out, ts, n, dim, false); }
sf_tensor *sf_ag_stack(sf_tensor *out, sf_tensor *const *ts, int n, int dim) { return record_cat(out, ts, n, dim, true); }
