/* test_ops_random.c — randomized differential test: public tensor ops (src/core/ops.h) on random
 * shapes (incl. 0/1 sizes), dtypes and layouts (contiguous, permuted, narrowed, expanded) against a
 * straightforward double-precision reference written here. A mismatch prints the op, shapes, dtypes,
 * layouts and the max error. SFWB_TEST_SEED=<n> replays a run; SFWB_TEST_CASES=<n> sets its length. */
#include <stdio.h>
#include <stdlib.h>

#include "core/backend.h"
#include "sf_test.h"
#include "tensor_ref.h"

/* ---------------- random inputs ---------------- */

typedef struct { int nd; int64_t sh[SF_MAX_DIMS]; } shape_t;

static int64_t numel_of(const shape_t *s) {
  int64_t n = 1;
  for (int i = 0; i < s->nd; i++) n *= s->sh[i];
  return n;
}

static const char *shape_str(const shape_t *s, char *buf) {
  char *p = buf;
  p += sprintf(p, "[");
  for (int i = 0; i < s->nd; i++) p += sprintf(p, i ? ", %lld" : "%lld", (long long)s->sh[i]);
  sprintf(p, "]");
  return buf;
}

static shape_t tshape(const sf_tensor *t) {
  shape_t s;
  s.nd = t->ndim;
  for (int i = 0; i < t->ndim; i++) s.sh[i] = t->shape[i];
  return s;
}

static shape_t rand_shape(int nd_lo, int nd_hi, int allow_zero) {
  shape_t s;
  s.nd = ref_randint(nd_lo, nd_hi);
  /* one case in 25 is large enough (up to 48^3) for the backend's threaded paths */
  int big = ref_randint(0, 24) == 0 && s.nd <= 3;
  for (int i = 0; i < s.nd; i++) {
    int r = ref_randint(0, 99);
    s.sh[i] = (allow_zero && r < 4) ? 0 : r < 25 ? 1 : ref_randint(2, big ? 48 : 6);
  }
  return s;
}

enum { V_ANY, V_POS, V_NONNEG_INT };

static double rand_value(sf_dtype dt, int kind) {
  switch (dt) {
  case SF_BOOL: return ref_randint(0, 1);
  case SF_U8: return ref_randint(0, 9);
  case SF_I64: case SF_I32: return kind == V_ANY ? ref_randint(-5, 5) : ref_randint(kind == V_POS ? 1 : 0, 4);
  default:
    if (kind == V_NONNEG_INT) return ref_randint(0, 3);
    if (kind == V_POS) return ref_uniform(0.1, 3.0);
    if (ref_randint(0, 60) == 0) return NAN;
    if (ref_randint(0, 30) == 0) return ref_randint(-2, 2); /* exact small ints make ties and zeros */
    return ref_uniform(-3.0, 3.0);
  }
}

static const char *LAYOUT_NAMES[] = {"contiguous", "permuted", "narrowed", "expanded"};

/* a tensor of logical shape s and dtype dt, laid out in memory one of four ways */
static sf_tensor *rand_tensor(sf_dtype dt, const shape_t *s, int kind, int allow_expand, int *layout_out) {
  int layout = ref_randint(0, allow_expand ? 3 : 2);
  if (layout_out) *layout_out = layout;
  sf_tensor *t = NULL;
  if (layout == 1 && s->nd >= 2) {
    int perm[SF_MAX_DIMS], inv[SF_MAX_DIMS];
    for (int i = 0; i < s->nd; i++) perm[i] = i;
    for (int i = s->nd - 1; i > 0; i--) { int j = ref_randint(0, i), x = perm[i]; perm[i] = perm[j]; perm[j] = x; }
    int64_t psh[SF_MAX_DIMS];
    for (int i = 0; i < s->nd; i++) { psh[i] = s->sh[perm[i]]; inv[perm[i]] = i; }
    sf_tensor *base = sf_empty(s->nd, psh, dt, sf_cpu());
    t = sf_permute(base, inv);
    sf_release(base);
  } else if (layout == 2 && s->nd >= 1) {
    int64_t big[SF_MAX_DIMS], start[SF_MAX_DIMS];
    for (int i = 0; i < s->nd; i++) { start[i] = ref_randint(0, 2); big[i] = s->sh[i] + start[i] + ref_randint(0, 2); }
    sf_tensor *cur = sf_empty(s->nd, big, dt, sf_cpu());
    for (int i = 0; i < s->nd; i++) {
      sf_tensor *n = sf_narrow(cur, i, start[i], s->sh[i]);
      sf_release(cur);
      cur = n;
    }
    t = cur;
  } else if (layout == 3 && s->nd >= 1) {
    int64_t small[SF_MAX_DIMS];
    for (int i = 0; i < s->nd; i++) small[i] = ref_randint(0, 1) ? 1 : s->sh[i];
    sf_tensor *base = sf_empty(s->nd, small, dt, sf_cpu());
    for (int64_t i = 0, n = sf_numel(base); i < n; i++) ref_set(dt, ref_addr(base, i), rand_value(dt, kind));
    t = sf_expand(base, s->nd, s->sh);
    sf_release(base);
    return t;
  } else {
    if (layout_out) *layout_out = 0;
    t = sf_empty(s->nd, s->sh, dt, sf_cpu());
  }
  if (!t) return NULL;
  /* fill the whole storage (so narrowed-away elements hold junk), then the view's elements */
  int64_t es = (int64_t)sf_dtype_size(dt), cap = (int64_t)t->storage->nbytes / es;
  for (int64_t i = 0; i < cap; i++) ref_set(dt, (char *)t->storage->data + i * es, 1234.5);
  for (int64_t i = 0, n = sf_numel(t); i < n; i++) ref_set(dt, ref_addr(t, i), rand_value(dt, kind));
  return t;
}

/* ---------------- comparison ---------------- */

static int n_checks, n_bad;

static double rtol_of(sf_dtype dt) {
  switch (dt) {
  case SF_BF16: return 8e-3;
  case SF_F16: return 1e-3;
  case SF_F32: return 4e-6;
  case SF_F64: return 1e-12;
  default: return 0;
  }
}

/* the reference rounded to dtype dt, as the op's result would be */
static double round_to(sf_dtype dt, double v) {
  unsigned char buf[8];
  if (dt == SF_BOOL) return v != 0;
  if (!sf_dtype_is_float(dt) && (v != v || fabs(v) > 9e18)) return v;
  ref_set(dt, buf, v);
  return ref_get(dt, buf);
}

/* got must have shape want_shape and dtype want_dt, and match want[] elementwise */
static void compare(const char *what, const char *detail, sf_tensor *got, sf_dtype want_dt, const shape_t *want_shape,
                    const double *want, double rtol, double atol) {
  char b1[128], b2[128];
  n_checks++;
  if (!got) {
    printf("MISMATCH %s %s: failed: %s\n", what, detail, sf_last_error());
    n_bad++;
    return;
  }
  shape_t gs = tshape(got);
  int same = gs.nd == want_shape->nd;
  for (int i = 0; same && i < gs.nd; i++) same = gs.sh[i] == want_shape->sh[i];
  if (!same || got->dtype != want_dt) {
    printf("MISMATCH %s %s: result %s %s, expected %s %s\n", what, detail, sf_dtype_name(got->dtype), shape_str(&gs, b1),
           sf_dtype_name(want_dt), shape_str(want_shape, b2));
    n_bad++;
    return;
  }
  double *g = ref_read(got), worst = 0;
  int64_t n = sf_numel(got), bad_at = -1;
  for (int64_t i = 0; i < n; i++) {
    double w = round_to(want_dt, want[i]);
    if (!ref_close(g[i], w, rtol, atol)) {
      double e = (g[i] != g[i] || w != w) ? INFINITY : fabs(g[i] - w);
      if (bad_at < 0 || e > worst) { worst = e; bad_at = i; }
    }
  }
  if (bad_at >= 0) {
    printf("MISMATCH %s %s: shape %s dtype %s: max error %g at %lld (got %.9g, want %.9g)\n", what, detail,
           shape_str(&gs, b1), sf_dtype_name(want_dt), worst, (long long)bad_at, g[bad_at], round_to(want_dt, want[bad_at]));
    n_bad++;
  }
  free(g);
}

/* logical index of out-position `i` (row-major over out) inside a broadcast input of shape in */
static int64_t bcast_index(const shape_t *out, const shape_t *in, int64_t i) {
  int64_t idx = 0, mul = 1;
  for (int d = out->nd - 1; d >= 0; d--) {
    int64_t k = i % out->sh[d];
    i /= out->sh[d];
    int di = d - (out->nd - in->nd);
    if (di >= 0) {
      if (in->sh[di] != 1) idx += k * mul;
      mul *= in->sh[di];
    }
  }
  return idx;
}

static shape_t bcast_shape_of(const shape_t *out) {
  shape_t s;
  s.nd = out->nd - ref_randint(0, out->nd > 0 ? 1 : 0);
  for (int i = 0; i < s.nd; i++) s.sh[i] = ref_randint(0, 2) == 0 ? 1 : out->sh[i + out->nd - s.nd];
  return s;
}

/* ---------------- references ---------------- */


static const char *UN_NAMES[] = {"neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "silu",
                                 "gelu_tanh", "gelu", "relu", "recip", "square", "floor", "ceil", "round", "sign",
                                 "isnan", "logical_not", "pow", "clamp"};
static const char *BIN_NAMES[] = {"add", "sub", "mul", "div", "pow", "max", "min", "eq", "ne", "lt", "le", "gt", "ge", "and", "or"};
static const char *RED_NAMES[] = {"sum", "mean", "max", "min", "std", "norm", "argmax", "argmin", "prod"};

static const sf_dtype FLOATS[] = {SF_F32, SF_BF16, SF_F16, SF_F64};
static const sf_dtype MIXED[] = {SF_F32, SF_F32, SF_BF16, SF_F16, SF_F64, SF_I64, SF_I32, SF_U8, SF_BOOL};

static sf_dtype pick(const sf_dtype *arr, int n) { return arr[ref_randint(0, n - 1)]; }

/* ---------------- cases ---------------- */

static void case_unary(void) {
  sf_unary_op op = (sf_unary_op)ref_randint(0, SF_UN_COUNT - 1);
  int int_ok = op == SF_UN_NEG || op == SF_UN_ABS || op == SF_UN_SQUARE || op == SF_UN_SIGN || op == SF_UN_RELU ||
               op == SF_UN_CLAMP || op == SF_UN_ISNAN || op == SF_UN_LOGICAL_NOT || op == SF_UN_FLOOR;
  sf_dtype dt = int_ok && ref_randint(0, 2) == 0 ? (ref_randint(0, 1) ? SF_I64 : SF_I32) : pick(FLOATS, 4);
  int kind = (op == SF_UN_LOG || op == SF_UN_SQRT || op == SF_UN_RSQRT || op == SF_UN_POW) ? V_POS : V_ANY;
  shape_t s = rand_shape(0, 4, 1);
  int layout;
  sf_tensor *a = rand_tensor(dt, &s, kind, 1, &layout);
  double p0 = op == SF_UN_POW ? ref_uniform(-2, 3) : -1.0, p1 = 2.0;
  if (op == SF_UN_POW && ref_randint(0, 1)) p0 = ref_randint(-1, 3);
  sf_tensor *y = sf_unary(op, a, p0, p1);
  double *av = ref_read(a);
  int64_t n = numel_of(&s);
  double *want = malloc(sizeof(double) * (n ? n : 1));
  for (int64_t i = 0; i < n; i++) want[i] = ref_unary(op, av[i], p0, p1);
  sf_dtype odt = (op == SF_UN_ISNAN || op == SF_UN_LOGICAL_NOT) ? SF_BOOL : dt;
  char detail[160];
  snprintf(detail, sizeof detail, "(%s, %s, p=%g)", sf_dtype_name(dt), LAYOUT_NAMES[layout], p0);
  char what[64];
  snprintf(what, sizeof what, "unary %s", UN_NAMES[op]);
  /* f32 math is single precision: allow a few ulps (more where the result cancels, e.g. sin near pi) */
  double rtol = rtol_of(odt), atol = odt == SF_F32 ? 2e-6 : odt == SF_F64 ? 1e-12 : rtol * 1e-3;
  if (op == SF_UN_POW && odt == SF_F32) rtol = 2e-5;
  compare(what, detail, y, odt, &s, want, rtol, atol);
  free(av); free(want);
  sf_release(a); sf_release(y);
}

static void case_binary(void) {
  sf_binary_op op = (sf_binary_op)ref_randint(0, SF_BIN_COUNT - 1);
  shape_t out = rand_shape(0, 4, 1), sa = bcast_shape_of(&out), sb = bcast_shape_of(&out);
  /* the broadcast of sa and sb must be exactly out: put out's rank back on one operand */
  if (ref_randint(0, 1)) sa = out; else sb = out;
  sf_dtype da = pick(MIXED, 9), db = ref_randint(0, 3) ? da : pick(MIXED, 9);
  int kb = op == SF_BIN_POW ? (sf_dtype_is_float(da) && sf_dtype_is_float(db) ? V_ANY : V_NONNEG_INT) : V_ANY;
  int ka = op == SF_BIN_POW && sf_dtype_is_float(da) && sf_dtype_is_float(db) ? V_POS : V_ANY;
  if (op == SF_BIN_SUB && (da == SF_BOOL || db == SF_BOOL)) da = db = SF_I32; /* torch refuses bool - bool */
  int la, lb;
  sf_tensor *a = rand_tensor(da, &sa, ka, 1, &la), *b = rand_tensor(db, &sb, kb, 1, &lb);
  sf_tensor *y = sf_binary(op, a, b);
  sf_dtype c = sf_promote(da, db);
  if (op == SF_BIN_DIV && !sf_dtype_is_float(c)) c = SF_F32;
  if (op == SF_BIN_AND || op == SF_BIN_OR) c = SF_BOOL;
  sf_dtype odt = (op >= SF_BIN_EQ && op <= SF_BIN_GE) ? SF_BOOL : c;
  double *av = ref_read(a), *bv = ref_read(b);
  int64_t n = numel_of(&out);
  double *want = malloc(sizeof(double) * (n ? n : 1));
  for (int64_t i = 0; i < n; i++) {
    /* operands are first cast to the compute dtype, as the core does */
    double x = round_to(c, av[bcast_index(&out, &sa, i)]), z = round_to(c, bv[bcast_index(&out, &sb, i)]);
    double r = ref_binary(op, x, z);
    if (!sf_dtype_is_float(c) && op == SF_BIN_DIV) r = floor(r);
    want[i] = r;
  }
  char b1[64], b2[64], detail[256], what[64];
  snprintf(detail, sizeof detail, "(%s %s %s, %s %s %s)", sf_dtype_name(da), shape_str(&sa, b1), LAYOUT_NAMES[la],
           sf_dtype_name(db), shape_str(&sb, b2), LAYOUT_NAMES[lb]);
  snprintf(what, sizeof what, "binary %s", BIN_NAMES[op]);
  double rtol = rtol_of(odt);
  if (op == SF_BIN_POW && odt == SF_F32) rtol = 2e-5;
  compare(what, detail, y, odt, &out, want, rtol, odt == SF_F32 ? 1e-6 : rtol * 1e-3);
  free(av); free(bv); free(want);
  sf_release(a); sf_release(b); sf_release(y);
}

static void case_binary_scalar(void) {
  static const sf_binary_op ops[] = {SF_BIN_ADD, SF_BIN_SUB, SF_BIN_MUL, SF_BIN_DIV, SF_BIN_POW, SF_BIN_MAX, SF_BIN_MIN, SF_BIN_LT, SF_BIN_EQ};
  sf_binary_op op = ops[ref_randint(0, 8)];
  static const double scalars[] = {2, -1.5, 0.5, 3, 0, 1};
  double s = scalars[ref_randint(0, 5)];
  bool first = ref_randint(0, 1);
  sf_dtype dt = pick(MIXED, 8); /* no bool */
  int is_int = !sf_dtype_is_float(dt);
  if (op == SF_BIN_POW && is_int && (first || s < 0)) op = SF_BIN_MUL; /* torch refuses ints to negative powers */
  int kind = op == SF_BIN_POW ? (first ? V_ANY : V_POS) : V_ANY;
  if (op == SF_BIN_POW && is_int) kind = V_NONNEG_INT;
  shape_t sh = rand_shape(0, 4, 1);
  int layout;
  sf_tensor *a = rand_tensor(dt, &sh, kind, 1, &layout), *y = sf_binary_scalar(op, a, s, first);
  /* the core's compute dtype: ints stay ints with integral scalars, except division */
  int s_int = s == floor(s);
  sf_dtype c = (is_int && (!s_int || op == SF_BIN_DIV)) ? SF_F32 : dt;
  sf_dtype odt = (op == SF_BIN_LT || op == SF_BIN_EQ) ? SF_BOOL : c;
  double *av = ref_read(a);
  int64_t n = numel_of(&sh);
  double *want = malloc(sizeof(double) * (n ? n : 1));
  double sc = sf_dtype_is_float(c) && c != SF_F64 ? (double)(float)s : s;
  for (int64_t i = 0; i < n; i++) {
    double x = round_to(c, av[i]);
    want[i] = first ? ref_binary(op, sc, x) : ref_binary(op, x, sc);
    if (!sf_dtype_is_float(c) && op == SF_BIN_DIV) want[i] = floor(want[i]);
  }
  char detail[160], what[64];
  snprintf(detail, sizeof detail, "(%s %s, scalar %g%s)", sf_dtype_name(dt), LAYOUT_NAMES[layout], s, first ? " first" : "");
  snprintf(what, sizeof what, "binary_scalar %s", BIN_NAMES[op]);
  double rtol = rtol_of(odt);
  if (op == SF_BIN_POW && odt == SF_F32) rtol = 2e-5;
  compare(what, detail, y, odt, &sh, want, rtol, odt == SF_F32 ? 1e-6 : rtol * 1e-3);
  free(av); free(want);
  sf_release(a); sf_release(y);
}

static double ref_reduce(sf_reduce_op op, const double *x, int64_t n) {
  double s = 0, p = 1, m = (op == SF_RED_MIN || op == SF_RED_ARGMIN) ? INFINITY : -INFINITY, q = 0;
  int64_t idx = 0;
  int nan = 0;
  for (int64_t i = 0; i < n; i++) {
    s += x[i];
    p *= x[i];
    if (x[i] != x[i]) { if (!nan) idx = i; nan = 1; }
    else if (!nan && ((op == SF_RED_MIN || op == SF_RED_ARGMIN) ? x[i] < m : x[i] > m)) { m = x[i]; idx = i; }
  }
  double mean = s / (double)n;
  for (int64_t i = 0; i < n; i++) q += (x[i] - mean) * (x[i] - mean);
  switch (op) {
  case SF_RED_SUM: return s;
  case SF_RED_MEAN: return n ? mean : NAN;
  case SF_RED_MAX: case SF_RED_MIN: return nan ? NAN : m;
  case SF_RED_STD: return n > 1 ? sqrt(q / (double)(n - 1)) : NAN;
  case SF_RED_NORM: { double t = 0; for (int64_t i = 0; i < n; i++) t += x[i] * x[i]; return sqrt(t); }
  case SF_RED_ARGMAX: case SF_RED_ARGMIN: return (double)idx;
  case SF_RED_PROD: return p;
  default: return NAN;
  }
}

static void case_reduce(void) {
  sf_reduce_op op = (sf_reduce_op)ref_randint(0, SF_RED_COUNT - 1);
  sf_dtype dt = pick(MIXED, 9);
  shape_t s = rand_shape(0, 4, 1);
  int all = s.nd == 0 || ref_randint(0, 3) == 0;
  if (op == SF_RED_PROD && all) { /* a product of up to 6^4 values over/underflows differently in f32 and f64 */
    all = 0;
    if (s.nd == 0) { s.nd = 1; s.sh[0] = 3; }
  }
  int dim = all ? SF_ALL_DIMS : ref_randint(0, s.nd - 1);
  bool keep = ref_randint(0, 1);
  int layout;
  sf_tensor *a = rand_tensor(dt, &s, V_ANY, 1, &layout);
  sf_tensor *y = sf_reduce(op, a, dim == SF_ALL_DIMS ? dim : dim - (ref_randint(0, 1) ? s.nd : 0), keep);
  int64_t R = all ? numel_of(&s) : s.sh[dim];
  char b1[64], detail[200], what[64];
  snprintf(detail, sizeof detail, "(%s %s %s, dim %s%d, keepdim %d)", sf_dtype_name(dt), shape_str(&s, b1),
           LAYOUT_NAMES[layout], all ? "all" : "", all ? 0 : dim, keep);
  snprintf(what, sizeof what, "reduce %s", RED_NAMES[op]);
  int extremum = op == SF_RED_MAX || op == SF_RED_MIN || op == SF_RED_ARGMAX || op == SF_RED_ARGMIN;
  if (R == 0 && extremum) { /* torch refuses; so must we, cleanly */
    n_checks++;
    if (y || !strstr(sf_last_error(), "empty")) { printf("MISMATCH %s %s: an empty reduction must fail\n", what, detail); n_bad++; }
    sf_release(a); sf_release(y);
    return;
  }
  /* expected shape and values */
  shape_t os;
  os.nd = 0;
  if (all) { if (keep) { os.nd = s.nd; for (int i = 0; i < s.nd; i++) os.sh[i] = 1; } }
  else for (int i = 0; i < s.nd; i++) { if (i != dim) os.sh[os.nd++] = s.sh[i]; else if (keep) os.sh[os.nd++] = 1; }
  int64_t nout = numel_of(&os);
  double *av = ref_read(a), *want = malloc(sizeof(double) * (nout ? nout : 1)), *row = malloc(sizeof(double) * (R ? R : 1));
  int is_float = sf_dtype_is_float(dt);
  sf_dtype in_dt = (op == SF_RED_MEAN || op == SF_RED_STD || op == SF_RED_NORM) && !is_float ? SF_F32 : dt;
  for (int64_t k = 0; k < nout; k++) {
    /* inner = product of dims after `dim`: out k = (outer, inner) */
    int64_t inner = 1;
    if (!all) for (int i = dim + 1; i < s.nd; i++) inner *= s.sh[i];
    int64_t o = all ? 0 : k / inner, in = all ? 0 : k % inner;
    for (int64_t r = 0; r < R; r++) row[r] = all ? av[r] : av[(o * R + r) * inner + in];
    want[k] = ref_reduce(op, row, R);
  }
  sf_dtype odt = in_dt;
  if ((op == SF_RED_SUM || op == SF_RED_PROD) && !is_float) odt = SF_I64;
  if (op == SF_RED_ARGMAX || op == SF_RED_ARGMIN) odt = SF_I64;
  double rtol = odt == SF_F32 ? 1e-5 : rtol_of(odt), atol = sf_dtype_is_float(odt) ? rtol * 1e-3 + 1e-7 : 0;
  compare(what, detail, y, odt, &os, want, rtol, atol);
  free(av); free(want); free(row);
  sf_release(a); sf_release(y);
}

static void case_softmax(void) {
  sf_dtype dt = pick(FLOATS, 4);
  shape_t s = rand_shape(1, 4, 1);
  int dim = ref_randint(0, s.nd - 1), lg = ref_randint(0, 1), layout;
  sf_tensor *a = rand_tensor(dt, &s, V_ANY, 1, &layout);
  sf_tensor *y = lg ? sf_log_softmax(a, dim) : sf_softmax(a, dim);
  double *av = ref_read(a);
  int64_t n = numel_of(&s), R = s.sh[dim], inner = 1;
  for (int i = dim + 1; i < s.nd; i++) inner *= s.sh[i];
  double *want = malloc(sizeof(double) * (n ? n : 1));
  for (int64_t k = 0; k < n; k++) {
    int64_t in = k % inner, o = k / inner / (R ? R : 1);
    double m = -INFINITY, sum = 0;
    int nan = 0;
    for (int64_t r = 0; r < R; r++) { double v = av[(o * R + r) * inner + in]; nan |= v != v; m = v > m ? v : m; }
    for (int64_t r = 0; r < R; r++) sum += exp(av[(o * R + r) * inner + in] - m);
    want[k] = nan ? NAN : lg ? av[k] - m - log(sum) : exp(av[k] - m) / sum;
  }
  char b1[64], detail[200];
  snprintf(detail, sizeof detail, "(%s %s %s, dim %d)", sf_dtype_name(dt), shape_str(&s, b1), LAYOUT_NAMES[layout], dim);
  double rtol = dt == SF_F32 ? 3e-6 : rtol_of(dt);
  compare(lg ? "log_softmax" : "softmax", detail, y, dt, &s, want, rtol, dt == SF_F32 ? 1e-6 : rtol * 0.1);
  free(av); free(want);
  sf_release(a); sf_release(y);
}

static void case_matmul(void) {
  sf_dtype dt = pick(FLOATS, 4);
  int64_t M = ref_randint(1, 9), K = ref_randint(0, 9), N = ref_randint(1, 9);
  if (ref_randint(0, 5) == 0) M = 0;
  int nba = ref_randint(0, 2), nbb = ref_randint(0, 2);
  shape_t bo; /* broadcast batch shape */
  bo.nd = nba > nbb ? nba : nbb;
  for (int i = 0; i < bo.nd; i++) bo.sh[i] = ref_randint(1, 3);
  shape_t sa, sb;
  int a1 = ref_randint(0, 7) == 0, b1 = ref_randint(0, 7) == 0; /* 1-D operands */
  sa.nd = 0; sb.nd = 0;
  if (a1) { sa.nd = 1; sa.sh[0] = K; nba = 0; }
  else {
    for (int i = 0; i < nba; i++) sa.sh[sa.nd++] = ref_randint(0, 1) ? bo.sh[bo.nd - nba + i] : 1;
    sa.sh[sa.nd++] = M; sa.sh[sa.nd++] = K;
  }
  if (b1) { sb.nd = 1; sb.sh[0] = K; nbb = 0; }
  else {
    for (int i = 0; i < nbb; i++) sb.sh[sb.nd++] = ref_randint(0, 1) ? bo.sh[bo.nd - nbb + i] : 1;
    sb.sh[sb.nd++] = K; sb.sh[sb.nd++] = N;
  }
  int la, lb;
  sf_tensor *a = rand_tensor(dt, &sa, V_ANY, 1, &la), *b = rand_tensor(dt, &sb, V_ANY, 1, &lb);
  sf_tensor *y = sf_matmul(a, b);
  /* the real broadcast batch shape of the operands as built */
  shape_t ba, bb, bt;
  ba.nd = a1 ? 0 : sa.nd - 2; bb.nd = b1 ? 0 : sb.nd - 2;
  for (int i = 0; i < ba.nd; i++) ba.sh[i] = sa.sh[i];
  for (int i = 0; i < bb.nd; i++) bb.sh[i] = sb.sh[i];
  bt.nd = ba.nd > bb.nd ? ba.nd : bb.nd;
  for (int i = 0; i < bt.nd; i++) {
    int ia = i - (bt.nd - ba.nd), ib = i - (bt.nd - bb.nd);
    int64_t x = ia >= 0 ? ba.sh[ia] : 1, z = ib >= 0 ? bb.sh[ib] : 1;
    bt.sh[i] = x > z ? x : z;
  }
  int64_t Me = a1 ? 1 : M, Ne = b1 ? 1 : N, nb = numel_of(&bt);
  shape_t os = bt;
  if (!a1) os.sh[os.nd++] = M;
  if (!b1) os.sh[os.nd++] = N;
  double *av = ref_read(a), *bv = ref_read(b);
  int64_t n = nb * Me * Ne;
  double *want = malloc(sizeof(double) * (n ? n : 1)), *mag = malloc(sizeof(double) * (n ? n : 1));
  for (int64_t bi = 0; bi < nb; bi++) {
    int64_t ia = bcast_index(&bt, &ba, bi), ib = bcast_index(&bt, &bb, bi);
    for (int64_t i = 0; i < Me; i++)
      for (int64_t j = 0; j < Ne; j++) {
        double s = 0, m = 0;
        for (int64_t k = 0; k < K; k++) {
          double x = av[ia * Me * K + i * K + k], z = bv[ib * K * Ne + k * Ne + j];
          s += x * z;
          m += fabs(x * z);
        }
        want[(bi * Me + i) * Ne + j] = s;
        mag[(bi * Me + i) * Ne + j] = m;
      }
  }
  char b1s[64], b2s[64], detail[256];
  snprintf(detail, sizeof detail, "(%s %s %s x %s %s)", sf_dtype_name(dt), shape_str(&sa, b1s), LAYOUT_NAMES[la],
           shape_str(&sb, b2s), LAYOUT_NAMES[lb]);
  /* tolerance relative to sum |x z| (BLAS may reassociate); NaN inputs make NaN rows both sides */
  double maxmag = 0;
  for (int64_t i = 0; i < n; i++) if (mag[i] == mag[i] && mag[i] > maxmag) maxmag = mag[i];
  double rtol = rtol_of(dt);
  compare("matmul", detail, y, dt, &os, want, rtol, (dt == SF_F32 ? 2e-6 : rtol) * (maxmag + 1e-30));
  free(av); free(bv); free(want); free(mag);
  sf_release(a); sf_release(b); sf_release(y);
}

static void case_cat(void) {
  sf_dtype dt = pick(MIXED, 9);
  shape_t s = rand_shape(1, 4, 1);
  int dim = ref_randint(0, s.nd - 1), nt = ref_randint(1, 3);
  sf_tensor *ts[3];
  double *vals[3];
  int64_t sizes[3], total = 0;
  for (int i = 0; i < nt; i++) {
    shape_t si = s;
    si.sh[dim] = sizes[i] = ref_randint(0, 4);
    total += sizes[i];
    ts[i] = rand_tensor(dt, &si, V_ANY, 1, NULL);
    vals[i] = ref_read(ts[i]);
  }
  sf_tensor *y = sf_cat(ts, nt, dim);
  shape_t os = s;
  os.sh[dim] = total;
  int64_t n = numel_of(&os), inner = 1, outer = 1;
  for (int i = dim + 1; i < s.nd; i++) inner *= s.sh[i];
  for (int i = 0; i < dim; i++) outer *= s.sh[i];
  double *want = malloc(sizeof(double) * (n ? n : 1));
  int64_t w = 0;
  for (int64_t o = 0; o < outer; o++)
    for (int i = 0; i < nt; i++)
      for (int64_t r = 0; r < sizes[i] * inner; r++) want[w++] = vals[i][o * sizes[i] * inner + r];
  char b1[64], detail[160];
  snprintf(detail, sizeof detail, "(%d x %s %s, dim %d)", nt, sf_dtype_name(dt), shape_str(&s, b1), dim);
  compare("cat", detail, y, dt, &os, want, 0, 0);
  for (int i = 0; i < nt; i++) { sf_release(ts[i]); free(vals[i]); }
  free(want);
  sf_release(y);
}

/* a reference view: shape/strides/offset over a contiguous double array */
typedef struct { shape_t s; int64_t st[SF_MAX_DIMS], off; } rview;

static void case_views(void) {
  sf_dtype dt = pick(MIXED, 9);
  shape_t s = rand_shape(1, 4, 0);
  sf_tensor *t = rand_tensor(dt, &s, V_ANY, 0, NULL);
  double *base = ref_read(t);
  rview v;
  v.s = s;
  v.off = 0;
  for (int i = s.nd - 1, m = 1; i >= 0; i--) { v.st[i] = m; m *= (int)s.sh[i]; }
  sf_tensor *cur = sf_retain(t);
  char ops[256] = "";
  int nops = ref_randint(1, 4);
  for (int k = 0; k < nops; k++) {
    int nd = v.s.nd, which = ref_randint(0, 6);
    sf_tensor *nx = NULL;
    char buf[48];
    if (which == 0 && nd >= 2) { /* transpose */
      int a = ref_randint(0, nd - 1), b = ref_randint(0, nd - 1);
      nx = sf_transpose(cur, a, b);
      int64_t x = v.s.sh[a]; v.s.sh[a] = v.s.sh[b]; v.s.sh[b] = x;
      x = v.st[a]; v.st[a] = v.st[b]; v.st[b] = x;
      snprintf(buf, sizeof buf, "transpose(%d,%d) ", a, b);
    } else if (which == 1 && nd >= 1) { /* narrow */
      int d = ref_randint(0, nd - 1);
      int64_t st = ref_randint(0, (int)v.s.sh[d]), len = ref_randint(0, (int)(v.s.sh[d] - st));
      nx = sf_narrow(cur, d, st, len);
      v.off += st * v.st[d];
      v.s.sh[d] = len;
      snprintf(buf, sizeof buf, "narrow(%d,%lld,%lld) ", d, (long long)st, (long long)len);
    } else if (which == 2 && nd >= 1) { /* select */
      int d = ref_randint(0, nd - 1);
      if (v.s.sh[d] == 0) continue;
      int64_t i = ref_randint(0, (int)v.s.sh[d] - 1);
      nx = sf_select(cur, d, i);
      v.off += i * v.st[d];
      for (int e = d; e < nd - 1; e++) { v.s.sh[e] = v.s.sh[e + 1]; v.st[e] = v.st[e + 1]; }
      v.s.nd--;
      snprintf(buf, sizeof buf, "select(%d,%lld) ", d, (long long)i);
    } else if (which == 3 && nd < 6) { /* unsqueeze */
      int d = ref_randint(0, nd);
      nx = sf_unsqueeze(cur, d);
      for (int e = nd; e > d; e--) { v.s.sh[e] = v.s.sh[e - 1]; v.st[e] = v.st[e - 1]; }
      v.s.sh[d] = 1; v.st[d] = 0;
      v.s.nd++;
      snprintf(buf, sizeof buf, "unsqueeze(%d) ", d);
    } else if (which == 4 && nd >= 1) { /* expand size-1 dims */
      int64_t sh[SF_MAX_DIMS];
      for (int e = 0; e < nd; e++) {
        sh[e] = v.s.sh[e] == 1 && ref_randint(0, 1) ? ref_randint(2, 4) : v.s.sh[e];
        if (sh[e] != v.s.sh[e]) { v.st[e] = 0; v.s.sh[e] = sh[e]; }
      }
      nx = sf_expand(cur, nd, sh);
      snprintf(buf, sizeof buf, "expand ");
    } else if (which == 5 && nd >= 2) { /* permute */
      int perm[SF_MAX_DIMS];
      for (int e = 0; e < nd; e++) perm[e] = e;
      for (int e = nd - 1; e > 0; e--) { int j = ref_randint(0, e), x = perm[e]; perm[e] = perm[j]; perm[j] = x; }
      nx = sf_permute(cur, perm);
      rview w = v;
      for (int e = 0; e < nd; e++) { w.s.sh[e] = v.s.sh[perm[e]]; w.st[e] = v.st[perm[e]]; }
      v = w;
      snprintf(buf, sizeof buf, "permute ");
    } else if (which == 6) { /* squeeze all size-1 dims */
      nx = sf_squeeze(cur, SF_ALL_DIMS);
      rview w = v;
      w.s.nd = 0;
      for (int e = 0; e < nd; e++) if (v.s.sh[e] != 1) { w.s.sh[w.s.nd] = v.s.sh[e]; w.st[w.s.nd++] = v.st[e]; }
      v = w;
      snprintf(buf, sizeof buf, "squeeze ");
    } else continue;
    strncat(ops, buf, sizeof ops - strlen(ops) - 1);
    sf_release(cur);
    cur = nx;
    if (!cur) break;
  }
  char b1[64], detail[400];
  snprintf(detail, sizeof detail, "(%s %s: %s)", sf_dtype_name(dt), shape_str(&s, b1), ops);
  int64_t n = numel_of(&v.s);
  double *want = malloc(sizeof(double) * (n ? n : 1));
  for (int64_t i = 0; i < n; i++) {
    int64_t rem = i, off = v.off;
    for (int e = v.s.nd - 1; e >= 0; e--) { off += (rem % v.s.sh[e]) * v.st[e]; rem /= v.s.sh[e]; }
    want[i] = base[off];
  }
  compare("view", detail, cur, dt, &v.s, want, 0, 0);
  if (cur) {
    /* the backend's strided copy of the view, a reshape to 1-D, and arithmetic on it */
    sf_tensor *c = sf_contiguous(cur);
    compare("view->contiguous", detail, c, dt, &v.s, want, 0, 0);
    shape_t flat = {1, {n}};
    sf_tensor *r = sf_reshape(cur, 1, &n);
    compare("view->reshape", detail, r, dt, &flat, want, 0, 0);
    if (sf_dtype_is_float(dt) && dt != SF_F64) {
      sf_tensor *x = sf_binary_scalar(SF_BIN_MUL, cur, 2.0, false);
      for (int64_t i = 0; i < n; i++) want[i] *= 2;
      compare("view->mul", detail, x, dt, &v.s, want, 0, 0);
      sf_release(x);
    }
    sf_release(c); sf_release(r);
  }
  free(base); free(want);
  sf_release(cur); sf_release(t);
}

static void case_where(void) {
  shape_t out = rand_shape(0, 4, 1), sc = bcast_shape_of(&out), sa = bcast_shape_of(&out), sb = out;
  sf_dtype dt = pick(MIXED, 9), cdt = ref_randint(0, 3) ? SF_BOOL : SF_F32;
  int lc, la, lb;
  sf_tensor *c = rand_tensor(cdt, &sc, V_ANY, 1, &lc), *a = rand_tensor(dt, &sa, V_ANY, 1, &la), *b = rand_tensor(dt, &sb, V_ANY, 1, &lb);
  sf_tensor *y = sf_where(c, a, b);
  double *cv = ref_read(c), *av = ref_read(a), *bv = ref_read(b);
  int64_t n = numel_of(&out);
  double *want = malloc(sizeof(double) * (n ? n : 1));
  for (int64_t i = 0; i < n; i++) want[i] = cv[bcast_index(&out, &sc, i)] != 0 ? av[bcast_index(&out, &sa, i)] : bv[i];
  char b1[64], detail[200];
  snprintf(detail, sizeof detail, "(%s cond %s, %s %s/%s/%s)", sf_dtype_name(cdt), shape_str(&sc, b1), sf_dtype_name(dt),
           LAYOUT_NAMES[lc], LAYOUT_NAMES[la], LAYOUT_NAMES[lb]);
  compare("where", detail, y, dt, &out, want, 0, 0);
  free(cv); free(av); free(bv); free(want);
  sf_release(c); sf_release(a); sf_release(b); sf_release(y);
}

static void case_copy(void) {
  shape_t out = rand_shape(0, 4, 1), ss = bcast_shape_of(&out);
  sf_dtype dd = pick(MIXED, 9), ds = pick(MIXED, 9);
  int ld, ls;
  sf_tensor *dst = rand_tensor(dd, &out, V_ANY, 0, &ld), *src = rand_tensor(ds, &ss, V_ANY, 1, &ls);
  /* float -> int casts of fractional / NaN values are exercised in test_cpu_ops; keep values exact here */
  if (sf_dtype_is_float(ds) && !sf_dtype_is_float(dd))
    for (int64_t i = 0, n = sf_numel(src); i < n; i++) {
      double v = ref_get(ds, ref_addr(src, i));
      ref_set(ds, ref_addr(src, i), v == v ? trunc(v) : 1);
    }
  int rc = sf_copy_(dst, src);
  double *sv = ref_read(src);
  int64_t n = numel_of(&out);
  double *want = malloc(sizeof(double) * (n ? n : 1));
  for (int64_t i = 0; i < n; i++) {
    double v = sv[bcast_index(&out, &ss, i)];
    if (dd == SF_U8 && v < 0) v += 256; /* u8 wraps */
    want[i] = v;
  }
  char b1[64], b2[64], detail[200];
  snprintf(detail, sizeof detail, "(%s %s %s <- %s %s %s)", sf_dtype_name(dd), shape_str(&out, b1), LAYOUT_NAMES[ld],
           sf_dtype_name(ds), shape_str(&ss, b2), LAYOUT_NAMES[ls]);
  compare("copy_", detail, rc == 0 ? dst : NULL, dd, &out, want, 0, 0);
  free(sv); free(want);
  sf_release(dst); sf_release(src);
}

int main(void) {
  sf_backends_init();
  const char *seed_env = getenv("SFWB_TEST_SEED"), *cases_env = getenv("SFWB_TEST_CASES");
  uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : 20240611;
  int cases = cases_env ? atoi(cases_env) : 3000;
  ref_rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
  printf("seed %llu, %d cases\n", (unsigned long long)seed, cases);
  void (*fns[])(void) = {case_unary, case_binary, case_binary_scalar, case_reduce, case_softmax,
                         case_matmul, case_cat, case_views, case_where, case_copy};
  const char *names[] = {"unary", "binary", "binary_scalar", "reduce", "softmax", "matmul", "cat", "views", "where", "copy"};
  int nf = sizeof fns / sizeof fns[0];
  for (int f = 0; f < nf; f++) {
    int bad0 = n_bad, checks0 = n_checks;
    for (int i = 0; i < cases / nf; i++) {
      sf_clear_error();
      fns[f]();
    }
    if (n_bad > bad0) { sf_test_failed++; printf("FAIL %s: %d of %d checks\n", names[f], n_bad - bad0, n_checks - checks0); }
    else { sf_test_passed++; printf("ok   %s (%d checks)\n", names[f], n_checks - checks0); }
  }
  TEST_DONE();
}
