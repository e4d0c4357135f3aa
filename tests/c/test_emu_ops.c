/* test_emu_ops.c — every op of the backend table on emu:0 against the CPU backend: random shapes with
 * odd sizes and size-0/size-1 dims, non-contiguous views (transpose, narrow, expand), f32/bf16/f16 (and
 * integer dtypes where they apply), large reductions; randn/rand bit-identical; allocator statistics.
 * A mismatch prints the op, dtype, shape and the max error. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "backend/cuda/gpu_api.h"
#include "core/ops.h"
#include "sf_test.h"

static sf_device EMU = {SF_DEV_EMU, 0}; /* the device under test (sf_test_device: emu:0 or $SFWB_TEST_DEVICE) */
static uint64_t g_rng = 12345;
static int rnd(int n) { /* 0 .. n-1 */
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return (int)((g_rng >> 33) % (uint64_t)n);
}

static const int64_t SIZES[] = {1, 2, 3, 5, 7, 17, 33, 64, 100, 129};
static int rand_shape(int64_t *sh, int maxdim) {
  int nd = 1 + rnd(maxdim);
  for (int i = 0; i < nd; i++) sh[i] = SIZES[rnd(10)];
  return nd;
}

static const char *shape_s(const sf_tensor *t) {
  static char b[8][128];
  static int k;
  k = (k + 1) & 7;
  return sf_shape_str(t, b[k], sizeof b[k]);
}

/* a random cpu tensor of dtype dt (floats ~N(0,1) scaled, ints in [-20, 20]) */
static sf_tensor *rand_cpu(int nd, const int64_t *sh, sf_dtype dt) {
  sf_tensor *f = sf_randn(nd, sh, SF_F32, sf_cpu());
  if (!sf_dtype_is_float(dt)) {
    sf_tensor *g = sf_binary_scalar(SF_BIN_MUL, f, 8.0, false);
    sf_release(f);
    f = g;
  }
  sf_tensor *c = sf_cast(f, dt);
  sf_release(f);
  return c;
}

/* a non-contiguous view of t with the same shape: a transposed copy transposed back, or a narrowed slice */
static sf_tensor *strided_like(sf_tensor *t) {
  if (t->ndim >= 2 && rnd(2)) {
    sf_tensor *tt = sf_transpose(t, 0, t->ndim - 1);
    sf_tensor *c = sf_contiguous(tt);
    sf_tensor *r = sf_transpose(c, 0, t->ndim - 1);
    sf_release(tt);
    sf_release(c);
    return r;
  }
  /* embed in a bigger buffer along the last dim and narrow */
  int64_t sh[SF_MAX_DIMS];
  memcpy(sh, t->shape, sizeof sh);
  int d = t->ndim - 1;
  sh[d] += 3;
  sf_tensor *big = sf_zeros(t->ndim, sh, t->dtype, sf_device_of(t));
  sf_tensor *n = sf_narrow(big, d, 2, t->shape[d]);
  sf_copy_(n, t);
  sf_release(big);
  return n;
}

static sf_tensor *emu(sf_tensor *t) { return sf_to_device(t, EMU); }

/* compare an emu result with the cpu one: same dtype and shape, max |diff| <= tol * max(1, max|ref|);
 * NaNs must sit at the same places */
static int compare(const char *op, sf_tensor *ref, sf_tensor *got, double tol) {
  if (!ref || !got) {
    fprintf(stderr, "  %s: %s failed: %s\n", op, ref ? "emu" : "cpu", sf_last_error());
    CHECK(0);
    return -1;
  }
  if (ref->dtype != got->dtype || !sf_same_shape(ref, got)) {
    fprintf(stderr, "  %s: cpu gives %s %s, emu %s %s\n", op, sf_dtype_name(ref->dtype), shape_s(ref),
            sf_dtype_name(got->dtype), shape_s(got));
    CHECK(0);
    return -1;
  }
  sf_tensor *g = sf_to_device(got, sf_cpu());
  sf_tensor *a = sf_cast(ref, SF_F64), *b = sf_cast(g, SF_F64);
  sf_tensor *ca = sf_contiguous(a), *cb = sf_contiguous(b);
  int64_t n = sf_numel(ca);
  const double *x = sf_data_ptr(ca), *y = sf_data_ptr(cb);
  double err = 0, scale = 1;
  int64_t nan_bad = 0, worst = -1;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(x[i]) || isnan(y[i])) { nan_bad += isnan(x[i]) != isnan(y[i]); continue; }
    if (fabs(x[i]) > scale && !isinf(x[i])) scale = fabs(x[i]);
    double e = (isinf(x[i]) || isinf(y[i])) ? (x[i] == y[i] ? 0 : INFINITY) : fabs(x[i] - y[i]);
    if (e > err) { err = e; worst = i; }
  }
  int bad = nan_bad > 0 || err > tol * scale;
  if (bad) {
    fprintf(stderr, "  MISMATCH %s %s %s: max error %.3g (scale %.3g, tol %.3g) at %lld: cpu %.9g emu %.9g; NaN mismatches %lld\n",
            op, sf_dtype_name(ref->dtype), shape_s(ref), err, scale, tol, (long long)worst,
            worst >= 0 ? x[worst] : 0.0, worst >= 0 ? y[worst] : 0.0, (long long)nan_bad);
    CHECK(0);
  }
  sf_release(g); sf_release(a); sf_release(b); sf_release(ca); sf_release(cb);
  return bad ? -1 : 0;
}

static double tol_for(sf_dtype dt) { return dt == SF_BF16 ? 1.6e-2 : dt == SF_F16 ? 2e-3 : dt == SF_F64 ? 1e-12 : sf_dtype_is_float(dt) ? 2e-6 : 0; }

static const sf_dtype FDT[] = {SF_F32, SF_BF16, SF_F16};
static const sf_dtype ALLDT[] = {SF_F32, SF_BF16, SF_F16, SF_I64, SF_I32, SF_U8, SF_BOOL, SF_F64};

static void test_devices_and_transfer(void) {
  char names[8][16];
  int n = sf_device_list(names, 8), found = 0;
  for (int i = 0; i < n; i++) found += !strcmp(names[i], sf_test_device_name());
  CHECK(found == 1);
  for (int k = 0; k < 8; k++) {
    int64_t sh[SF_MAX_DIMS];
    int nd = rand_shape(sh, 4);
    if (k == 0) sh[0] = 0; /* size 0 */
    sf_tensor *a = rand_cpu(nd, sh, ALLDT[k]);
    sf_tensor *e = emu(a);
    CHECK(e && sf_device_eq(sf_device_of(e), EMU));
    compare("to(emu)/to(cpu)", a, e, 0);
    sf_release(a); sf_release(e);
  }
}

static void test_copy_cast(void) {
  for (int i = 0; i < 8; i++)
    for (int j = 0; j < 8; j++) {
      int64_t sh[SF_MAX_DIMS];
      int nd = rand_shape(sh, 3);
      sf_tensor *a = rand_cpu(nd, sh, ALLDT[i]);
      sf_tensor *as = strided_like(a), *ea = emu(a), *eas = strided_like(ea);
      sf_tensor *r = sf_cast(as, ALLDT[j]), *g = sf_cast(eas, ALLDT[j]);
      char op[64];
      snprintf(op, sizeof op, "cast %s->%s (strided)", sf_dtype_name(ALLDT[i]), sf_dtype_name(ALLDT[j]));
      compare(op, r, g, 0);
      /* strided destination: copy_ into a transposed/narrowed view */
      sf_tensor *dr = strided_like(r), *dg = strided_like(g);
      sf_copy_(dr, as);
      sf_copy_(dg, eas);
      snprintf(op, sizeof op, "copy_ %s->%s (strided dst)", sf_dtype_name(ALLDT[i]), sf_dtype_name(ALLDT[j]));
      compare(op, dr, dg, 0);
      sf_release(a); sf_release(as); sf_release(ea); sf_release(eas); sf_release(r); sf_release(g);
      sf_release(dr); sf_release(dg);
    }
  /* broadcast copy (0 strides) and fill */
  int64_t sh[3] = {5, 1, 7}, big[3] = {5, 9, 7};
  sf_tensor *a = rand_cpu(3, sh, SF_BF16), *ea = emu(a);
  sf_tensor *r = sf_zeros(3, big, SF_F32, sf_cpu()), *g = sf_zeros(3, big, SF_F32, EMU);
  sf_copy_(r, a);
  sf_copy_(g, ea);
  compare("copy_ broadcast bf16->f32", r, g, 0);
  for (int k = 0; k < 8; k++) {
    sf_tensor *fr = sf_full(3, big, -2.5, ALLDT[k], sf_cpu()), *fg = sf_full(3, big, -2.5, ALLDT[k], EMU);
    compare("full -2.5", fr, fg, 0);
    sf_tensor *nr = sf_narrow(fr, 1, 2, 3), *ng = sf_narrow(fg, 1, 2, 3);
    sf_fill_(nr, 7);
    sf_fill_(ng, 7);
    compare("fill_ narrowed", fr, fg, 0);
    sf_release(fr); sf_release(fg); sf_release(nr); sf_release(ng);
  }
  sf_release(a); sf_release(ea); sf_release(r); sf_release(g);
}

static const char *UN_NAMES[] = {"neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid",
                                 "silu", "gelu_tanh", "gelu", "relu", "recip", "square", "floor", "ceil", "round",
                                 "sign", "isnan", "logical_not", "pow", "clamp"};

static void test_unary(void) {
  for (int op = 0; op < SF_UN_COUNT; op++)
    for (int k = 0; k < 3; k++) {
      sf_dtype dt = FDT[k];
      int64_t sh[SF_MAX_DIMS];
      int nd = rand_shape(sh, 3);
      sf_tensor *a = rand_cpu(nd, sh, dt);
      bool pos = op == SF_UN_LOG || op == SF_UN_SQRT || op == SF_UN_RSQRT || op == SF_UN_POW;
      if (pos) { /* keep inputs in the domain: |x| + 0.25 */
        sf_tensor *b = sf_unary(SF_UN_ABS, a, 0, 0), *c = sf_binary_scalar(SF_BIN_ADD, b, 0.25, false);
        sf_release(a); sf_release(b);
        a = c;
      }
      sf_tensor *as = strided_like(a), *ea = emu(a), *eas = strided_like(ea);
      double p0 = op == SF_UN_POW ? 2.5 : op == SF_UN_CLAMP ? -0.5 : 0, p1 = op == SF_UN_CLAMP ? 0.75 : 0;
      sf_tensor *r = sf_unary((sf_unary_op)op, as, p0, p1), *g = sf_unary((sf_unary_op)op, eas, p0, p1);
      char name[64];
      snprintf(name, sizeof name, "unary %s", UN_NAMES[op]);
      /* bf16/f16 results may land one rounding step apart when f32 math differs in the last bit */
      compare(name, r, g, dt == SF_F32 ? 4e-6 : tol_for(dt));
      sf_release(a); sf_release(as); sf_release(ea); sf_release(eas); sf_release(r); sf_release(g);
    }
  /* integer unary ops */
  int64_t sh[2] = {7, 13};
  for (int k = 3; k < 6; k++) {
    sf_tensor *a = rand_cpu(2, sh, ALLDT[k]), *ea = emu(a);
    int ops[] = {SF_UN_NEG, SF_UN_ABS, SF_UN_RELU, SF_UN_SQUARE, SF_UN_SIGN, SF_UN_CLAMP, SF_UN_LOGICAL_NOT, SF_UN_EXP};
    for (int j = 0; j < 8; j++) {
      if (ALLDT[k] == SF_U8 && ops[j] == SF_UN_NEG) continue;
      sf_tensor *r = sf_unary((sf_unary_op)ops[j], a, -3, 4), *g = sf_unary((sf_unary_op)ops[j], ea, -3, 4);
      char name[64];
      snprintf(name, sizeof name, "unary %s on %s", UN_NAMES[ops[j]], sf_dtype_name(ALLDT[k]));
      compare(name, r, g, ops[j] == SF_UN_EXP ? 4e-6 : 0);
      sf_release(r); sf_release(g);
    }
    sf_release(a); sf_release(ea);
  }
}

static const char *BIN_NAMES[] = {"add", "sub", "mul", "div", "pow", "max", "min", "eq", "ne", "lt", "le", "gt", "ge", "and", "or"};

static void test_binary(void) {
  const sf_dtype dts[] = {SF_F32, SF_BF16, SF_F16, SF_I64, SF_I32};
  for (int op = 0; op < SF_BIN_COUNT; op++)
    for (int k = 0; k < 5; k++) {
      sf_dtype dt = dts[k];
      /* broadcasting: a [d0, 1, d2], b [d1, 1] (plus size-0 / size-1 variants) */
      int64_t d0 = SIZES[rnd(10)], d1 = SIZES[rnd(10)], d2 = SIZES[rnd(10)];
      if (rnd(8) == 0) d1 = 0;
      int64_t sa[3] = {d0, 1, d2}, sb[2] = {d1, 1};
      sf_tensor *a = rand_cpu(3, sa, dt), *b = rand_cpu(2, sb, dt);
      if (op == SF_BIN_POW || op == SF_BIN_DIV) { /* positive bases, nonzero divisors, small exponents */
        sf_tensor *aa = sf_unary(SF_UN_ABS, a, 0, 0), *bb = sf_unary(SF_UN_ABS, b, 0, 0);
        sf_tensor *a2 = sf_binary_scalar(SF_BIN_ADD, aa, 1, false), *b2 = sf_binary_scalar(SF_BIN_ADD, bb, op == SF_BIN_POW ? 0 : 1, false);
        sf_release(a); sf_release(b); sf_release(aa); sf_release(bb);
        a = a2;
        b = b2;
        if (op == SF_BIN_POW && !sf_dtype_is_float(dt)) { sf_tensor *c = sf_unary(SF_UN_CLAMP, b, 0, 3); sf_release(b); b = c; }
      }
      sf_tensor *as = strided_like(a), *ea = emu(a), *eas = strided_like(ea), *eb = emu(b);
      sf_tensor *r = sf_binary((sf_binary_op)op, as, b), *g = sf_binary((sf_binary_op)op, eas, eb);
      char name[64];
      snprintf(name, sizeof name, "binary %s", BIN_NAMES[op]);
      compare(name, r, g, op == SF_BIN_POW ? 2 * tol_for(r ? r->dtype : dt) + 1e-6 : tol_for(r ? r->dtype : dt));
      /* scalar forms, both orders */
      for (int first = 0; first < 2; first++) {
        double s = op == SF_BIN_POW ? 2.0 : 1.75;
        sf_tensor *rs = sf_binary_scalar((sf_binary_op)op, as, s, first), *gs = sf_binary_scalar((sf_binary_op)op, eas, s, first);
        snprintf(name, sizeof name, "binary_scalar %s (scalar %s)", BIN_NAMES[op], first ? "first" : "second");
        compare(name, rs, gs, op == SF_BIN_POW ? 1e-5 + tol_for(rs ? rs->dtype : dt) : tol_for(rs ? rs->dtype : dt));
        sf_release(rs); sf_release(gs);
      }
      /* in place on a strided destination */
      if (op <= SF_BIN_MIN && r && sf_same_shape(r, as)) {
        sf_binary_(op, as, as);
        sf_binary_(op, eas, eas);
        compare("binary_ in place", as, eas, 2 * tol_for(dt) + (op == SF_BIN_POW ? 1e-5 : 0));
      }
      sf_release(a); sf_release(b); sf_release(as); sf_release(ea); sf_release(eas); sf_release(eb);
      sf_release(r); sf_release(g);
    }
}

static void test_where(void) {
  for (int k = 0; k < 8; k++) {
    int64_t sc[3] = {4, 1, 9}, sa[2] = {3, 9}, sb[1] = {1};
    sf_tensor *c = rand_cpu(3, sc, SF_BOOL), *a = rand_cpu(2, sa, ALLDT[k]), *b = rand_cpu(1, sb, ALLDT[k]);
    sf_tensor *ec = emu(c), *ea = emu(a), *eb = emu(b);
    sf_tensor *r = sf_where(c, a, b), *g = sf_where(ec, ea, eb);
    compare("where", r, g, 0);
    sf_release(c); sf_release(a); sf_release(b); sf_release(ec); sf_release(ea); sf_release(eb);
    sf_release(r); sf_release(g);
  }
}

static const char *RED_NAMES[] = {"sum", "mean", "max", "min", "std", "norm", "argmax", "argmin", "prod"};

static void test_reduce(void) {
  for (int op = 0; op < SF_RED_COUNT; op++)
    for (int k = 0; k < 5; k++) {
      sf_dtype dt = k < 3 ? FDT[k] : (k == 3 ? SF_I64 : SF_I32);
      if (op == SF_RED_PROD && k < 3) dt = SF_F32;
      int64_t sh[SF_MAX_DIMS];
      int nd = rand_shape(sh, 4);
      if (rnd(6) == 0 && op != SF_RED_MAX && op != SF_RED_MIN && op != SF_RED_ARGMAX && op != SF_RED_ARGMIN) sh[rnd(nd)] = 0;
      sf_tensor *a = rand_cpu(nd, sh, dt);
      if (op == SF_RED_PROD) { /* keep products in range: values near 1 */
        sf_tensor *b = sf_binary_scalar(SF_BIN_MUL, a, 0.05, false), *c = sf_binary_scalar(SF_BIN_ADD, b, 1.0, false);
        sf_release(a); sf_release(b);
        a = dt == SF_F32 ? c : (sf_release(c), rand_cpu(nd, sh, SF_BOOL));
      }
      sf_tensor *as = strided_like(a), *ea = emu(a), *eas = strided_like(ea);
      for (int d = -1; d < nd; d++) {
        int dim = d < 0 ? SF_ALL_DIMS : d;
        sf_tensor *r = sf_reduce((sf_reduce_op)op, as, dim, d >= 0 && rnd(2)), *g = sf_reduce((sf_reduce_op)op, eas, dim, d >= 0 && rnd(2) == 5);
        if (r && g && !sf_same_shape(r, g)) { /* keepdim differed by the coin flip above: compare values */
          sf_tensor *gv = sf_reshape(g, r->ndim, r->shape);
          sf_release(g);
          g = gv;
        }
        char name[64];
        snprintf(name, sizeof name, "reduce %s dim %d of %s", RED_NAMES[op], d, shape_s(a));
        double tol = tol_for(r ? r->dtype : dt);
        if (r && r->dtype == SF_F32) tol = 2e-5; /* accumulation order differs */
        compare(name, r, g, tol);
        sf_release(r); sf_release(g);
      }
      sf_release(a); sf_release(as); sf_release(ea); sf_release(eas);
    }
}

static void test_large_reductions(void) {
  int64_t n = 1 << 21, sh2[2] = {3, 1 << 19};
  for (int k = 0; k < 2; k++) {
    sf_tensor *a = k == 0 ? rand_cpu(1, &n, SF_F32) : rand_cpu(2, sh2, SF_BF16), *ea = emu(a);
    for (int op = 0; op < SF_RED_COUNT; op++) {
      if (op == SF_RED_PROD) continue;
      sf_tensor *r = sf_reduce((sf_reduce_op)op, a, -1, false), *g = sf_reduce((sf_reduce_op)op, ea, -1, false);
      char name[64];
      snprintf(name, sizeof name, "large reduce %s", RED_NAMES[op]);
      compare(name, r, g, r && r->dtype == SF_F32 ? 1e-5 : tol_for(r ? r->dtype : SF_F32));
      sf_release(r); sf_release(g);
    }
    sf_release(a); sf_release(ea);
  }
}

static void test_softmax(void) {
  for (int k = 0; k < 3; k++)
    for (int rep = 0; rep < 3; rep++) {
      int64_t sh[SF_MAX_DIMS];
      int nd = rand_shape(sh, 3);
      if (rep == 2) { nd = 2; sh[0] = 3; sh[1] = 3000; }
      sf_tensor *a = rand_cpu(nd, sh, FDT[k]), *as = strided_like(a), *ea = emu(a), *eas = strided_like(ea);
      for (int d = 0; d < nd; d++)
        for (int lg = 0; lg < 2; lg++) {
          sf_tensor *r = lg ? sf_log_softmax(as, d) : sf_softmax(as, d), *g = lg ? sf_log_softmax(eas, d) : sf_softmax(eas, d);
          compare(lg ? "log_softmax" : "softmax", r, g, FDT[k] == SF_F32 ? 1e-5 : tol_for(FDT[k]));
          sf_release(r); sf_release(g);
        }
      sf_release(a); sf_release(as); sf_release(ea); sf_release(eas);
    }
}

static void test_matmul(void) {
  const sf_dtype dts[] = {SF_F32, SF_BF16, SF_F16, SF_F64};
  for (int k = 0; k < 4; k++)
    for (int rep = 0; rep < 6; rep++) {
      int64_t M = SIZES[rnd(10)], K = SIZES[rnd(10)], N = SIZES[rnd(10)], B = 1 + rnd(3);
      if (rep == 5) K = 0;
      int64_t sa[3] = {B, M, K}, sb[3] = {1, K, N};
      sf_tensor *a = rand_cpu(3, sa, dts[k]), *b = rand_cpu(rep == 4 ? 1 : 3, rep == 4 ? &K : sb, dts[k]);
      sf_tensor *ea = emu(a), *eb = emu(b);
      sf_tensor *ca = a, *cea = ea, *cb = b, *ceb = eb;
      if (rep % 2 == 1) { /* transposed operands: the same values laid out column-major */
        ca = strided_like(a); cea = strided_like(ea);
        cb = b->ndim == 3 ? strided_like(b) : sf_retain(b); ceb = eb->ndim == 3 ? strided_like(eb) : sf_retain(eb);
      } else {
        sf_retain(ca); sf_retain(cea); sf_retain(cb); sf_retain(ceb);
      }
      sf_tensor *r = sf_matmul(ca, cb), *g = sf_matmul(cea, ceb);
      char name[96];
      snprintf(name, sizeof name, "matmul [%lld,%lld,%lld]x[%lld,%lld]", (long long)B, (long long)M, (long long)K, (long long)K, (long long)N);
      compare(name, r, g, dts[k] == SF_F32 ? 1e-5 : dts[k] == SF_F64 ? 1e-12 : tol_for(dts[k]));
      sf_release(a); sf_release(b); sf_release(ea); sf_release(eb); sf_release(ca); sf_release(cb);
      sf_release(cea); sf_release(ceb); sf_release(r); sf_release(g);
    }
  /* an expanded (stride 0) operand, a broadcast batch */
  int64_t s1[2] = {1, 33}, s1e[3] = {4, 9, 33}, s2[2] = {33, 5};
  sf_tensor *a = rand_cpu(2, s1, SF_F32), *b = rand_cpu(2, s2, SF_F32), *ea = emu(a), *eb = emu(b);
  sf_tensor *ax = sf_expand(a, 3, s1e), *eax = sf_expand(ea, 3, s1e);
  sf_tensor *r = sf_matmul(ax, b), *g = sf_matmul(eax, eb);
  compare("matmul expanded lhs", r, g, 1e-5);
  sf_release(a); sf_release(b); sf_release(ea); sf_release(eb); sf_release(ax); sf_release(eax); sf_release(r); sf_release(g);
}

/* the bf16/f16 linear layer with its bias: one GEMM with cuBLASLt's bias epilogue on the device (train_ops
 * linear_bias), against the f32 linear of the same values rounded once, on the CPU; a [B, L, K] input, the
 * [N, K] weight transposed in the GEMM, a strided input, and an empty batch */
static void test_linear_bias(void) {
  const sf_dtype dts[] = {SF_BF16, SF_F16};
  for (int k = 0; k < 2; k++)
    for (int rep = 0; rep < 5; rep++) {
      int64_t M = SIZES[rnd(10)], K = SIZES[rnd(10)] + 1, N = SIZES[rnd(10)] + 1;
      if (rep == 4) M = 0;
      int64_t sx[3] = {2, M, K}, sw[2] = {N, K};
      sf_tensor *x = rand_cpu(3, sx, dts[k]), *w = rand_cpu(2, sw, dts[k]), *b = rand_cpu(1, &N, dts[k]);
      sf_tensor *xs = rep == 3 ? strided_like(x) : sf_retain(x);
      sf_tensor *ex = emu(x), *exs = rep == 3 ? strided_like(ex) : sf_retain(ex), *ew = emu(w), *eb = emu(b);
      sf_tensor *x32 = sf_cast(xs, SF_F32), *w32 = sf_cast(w, SF_F32), *b32 = sf_cast(b, SF_F32);
      sf_tensor *r32 = sf_linear(x32, w32, b32), *r = r32 ? sf_cast(r32, dts[k]) : NULL;
      sf_tensor *g = sf_linear(exs, ew, eb);
      char name[96];
      snprintf(name, sizeof name, "linear+bias [2,%lld,%lld]x[%lld,%lld]^T%s", (long long)M, (long long)K, (long long)N,
               (long long)K, rep == 3 ? " strided" : "");
      compare(name, r, g, tol_for(dts[k]));
      sf_release(x); sf_release(w); sf_release(b); sf_release(xs); sf_release(ex); sf_release(exs); sf_release(ew);
      sf_release(eb); sf_release(x32); sf_release(w32); sf_release(b32); sf_release(r32); sf_release(r); sf_release(g);
    }
}

static void test_random(void) {
  int64_t sh[2] = {37, 129};
  for (int k = 0; k < 3; k++)
    for (int kind = 0; kind < 2; kind++) {
      sf_manual_seed(777 + k);
      sf_tensor *skip = sf_randn(1, sh, SF_F32, sf_cpu()); /* advance the offset */
      sf_tensor *r = kind ? sf_rand(2, sh, FDT[k], sf_cpu()) : sf_randn(2, sh, FDT[k], sf_cpu());
      sf_manual_seed(777 + k);
      sf_tensor *skip2 = sf_randn(1, sh, SF_F32, EMU);
      sf_tensor *g = kind ? sf_rand(2, sh, FDT[k], EMU) : sf_randn(2, sh, FDT[k], EMU);
      compare(kind ? "rand (bit-identical)" : "randn (bit-identical)", r, g, 0);
      compare("randn offset", skip, skip2, 0);
      sf_release(skip); sf_release(skip2); sf_release(r); sf_release(g);
    }
}

static void test_cat(void) {
  int64_t s1[3] = {2, 3, 5}, s2[3] = {2, 7, 5};
  sf_tensor *a = rand_cpu(3, s1, SF_BF16), *b = rand_cpu(3, s2, SF_BF16), *ea = emu(a), *eb = emu(b);
  sf_tensor *l[2] = {a, b}, *el[2] = {ea, eb};
  sf_tensor *r = sf_cat(l, 2, 1), *g = sf_cat(el, 2, 1);
  compare("cat", r, g, 0);
  sf_release(a); sf_release(b); sf_release(ea); sf_release(eb); sf_release(r); sf_release(g);
}

static void test_allocator(void) {
  const sf_gpu_ext *x = sf_gpu_ext_for((sf_devtype)EMU.type);
  CHECK(x != NULL);
  if (!x) return;
  sf_gpu_mem_stats s0, s1, s2, s3;
  CHECK(x->memory(EMU.index, &s0) == 0);
  int64_t n = 1000000;
  sf_tensor *t = sf_zeros(1, &n, SF_F32, EMU);
  CHECK(x->memory(EMU.index, &s1) == 0);
  CHECK(s1.allocated >= s0.allocated + 4000000 && s1.peak >= s1.allocated);
  sf_release(t);
  CHECK(x->memory(EMU.index, &s2) == 0);
  CHECK(s2.allocated == s0.allocated);
#if !defined(__SANITIZE_ADDRESS__)
  CHECK(s2.reserved >= s1.allocated); /* the block stays cached */
  sf_tensor *t2 = sf_zeros(1, &n, SF_F32, EMU); /* and is reused */
  sf_gpu_mem_stats s4;
  x->memory(EMU.index, &s4);
  CHECK(s4.reserved == s2.reserved);
  sf_release(t2);
#endif
  CHECK(x->empty_cache(EMU.index) == 0);
  CHECK(x->memory(EMU.index, &s3) == 0);
  CHECK(s3.reserved == s3.allocated);
  CHECK(x->memory(5, &s3) != 0);
}

static void test_pinned_async(void) {
  const sf_gpu_ext *x = sf_gpu_ext_for((sf_devtype)EMU.type);
  int64_t n = 4099;
  float *h = x->host_alloc(n * sizeof(float)), *back = x->host_alloc(n * sizeof(float));
  CHECK(h && back);
  if (!h || !back) return;
  for (int64_t i = 0; i < n; i++) h[i] = (float)i * 0.5f;
  sf_tensor *t = sf_empty(1, &n, SF_F32, EMU);
  CHECK(x->copy_async(EMU.index, sf_data_ptr(t), h, n * sizeof(float), 1) == 0);
  sf_tensor *u = sf_binary_scalar(SF_BIN_MUL, t, 2.0, false); /* stream order: runs after the copy */
  CHECK(x->copy_async(EMU.index, back, sf_data_ptr(u), n * sizeof(float), 0) == 0);
  CHECK(x->synchronize(EMU.index) == 0);
  int bad = 0;
  for (int64_t i = 0; i < n; i++) bad += back[i] != (float)i;
  CHECK(bad == 0);
  /* a host pointer is not device memory: emu refuses the copy (the real API may accept pinned memory) */
  if (EMU.type == SF_DEV_EMU) CHECK(x->copy_async(EMU.index, h, back, 16, 1) != 0);
  sf_release(t); sf_release(u);
  x->host_free(h);
  x->host_free(back);
}

static void test_errors(void) {
  int64_t n = 4;
  sf_tensor *a = sf_zeros(1, &n, SF_F32, sf_cpu()), *b = sf_zeros(1, &n, SF_F32, EMU);
  sf_tensor *c = sf_add(a, b);
  CHECK(c == NULL);
  sf_device bad = {EMU.type, 15};
  char name[16];
  sf_tensor *d = sf_zeros(1, &n, SF_F32, bad);
  CHECK(d == NULL);
  CHECK_ERROR_MENTIONS(sf_device_str(bad, name, sizeof name));
  sf_release(a); sf_release(b); sf_release(c); sf_release(d);
}

int main(void) {
  sf_backends_init();
  if (sf_test_device(&EMU)) return 1;
  printf("device: %s\n", sf_test_device_name());
  RUN(test_devices_and_transfer);
  RUN(test_copy_cast);
  RUN(test_unary);
  RUN(test_binary);
  RUN(test_where);
  RUN(test_reduce);
  RUN(test_large_reductions);
  RUN(test_softmax);
  RUN(test_matmul);
  RUN(test_linear_bias);
  RUN(test_random);
  RUN(test_cat);
  RUN(test_allocator);
  RUN(test_pinned_async);
  RUN(test_errors);
  TEST_DONE();
}
