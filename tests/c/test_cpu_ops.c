/* test_cpu_ops.c — unit tests of the CPU backend, op by op: casts between every dtype pair, fill,
 * each unary/binary op against libm in double, integer semantics, NaN handling, reductions over
 * every dim of strided inputs (incl. size-0/size-1 dims and 1e7-element accuracy), softmax,
 * matmul layouts and dtypes, and Philox-based random draws. */
#include <float.h>
#include <stdio.h>

#include <pthread.h>
#include <stdatomic.h>

#include "core/backend.h"
#include "backend/cpu/cpu_pool.h"
#include "core/philox.h"
#include "sf_test.h"
#include "tensor_ref.h"

static const sf_dtype ALL_DT[] = {SF_F32, SF_BF16, SF_F16, SF_I64, SF_I32, SF_U8, SF_BOOL, SF_F64};

static sf_tensor *vec(sf_dtype dt, int64_t n, const double *v) { return ref_tensor(dt, 1, &n, v); }

static double at(sf_tensor *t, int64_t i) { return ref_get(t->dtype, ref_addr(t, i)); }

/* ---------------- copy / cast / fill ---------------- */

static void test_cast_all_pairs(void) {
  double v[6] = {0, 1, 2, 3, 5, 7};
  for (int i = 0; i < 8; i++)
    for (int j = 0; j < 8; j++) {
      sf_tensor *a = vec(ALL_DT[i], 6, v);
      sf_tensor *b = sf_cast(a, ALL_DT[j]);
      CHECK(b && b->dtype == ALL_DT[j]);
      for (int k = 0; b && k < 6; k++) {
        double want = ALL_DT[i] == SF_BOOL || ALL_DT[j] == SF_BOOL ? (v[k] != 0) : v[k];
        if (at(b, k) != want) {
          fprintf(stderr, "  cast %s->%s [%d]: %g, want %g\n", sf_dtype_name(ALL_DT[i]), sf_dtype_name(ALL_DT[j]), k, at(b, k), want);
          CHECK(0);
        }
      }
      sf_release(a);
      sf_release(b);
    }
}

static void test_cast_semantics(void) {
  /* float -> int truncates toward zero; u8 wraps through int64; NaN -> bool is true */
  double f[5] = {-2.7, 2.7, 300.0, -1.0, NAN};
  sf_tensor *a = vec(SF_F32, 5, f);
  sf_tensor *i = sf_cast(a, SF_I64), *u = sf_cast(a, SF_U8), *b = sf_cast(a, SF_BOOL), *i32 = sf_cast(a, SF_I32);
  CHECK(at(i, 0) == -2 && at(i, 1) == 2 && at(i, 2) == 300);
  CHECK(at(u, 2) == 44 && at(u, 3) == 255 && at(u, 4) == 0); /* torch: 300 -> 44, -1 -> 255, NaN -> 0 */
  CHECK(at(i32, 4) == (double)INT32_MIN);                     /* torch: NaN -> INT_MIN */
  CHECK(at(b, 4) == 1 && at(b, 0) == 1);
  /* bf16 rounds to nearest even: 1 + 2^-8 is a tie -> 1; 1 + 3*2^-8 -> 1 + 2^-6... */
  double h[3] = {1.00390625, 1.01171875, 65520.0};
  sf_tensor *hf = vec(SF_F64, 3, h);
  sf_tensor *hb = sf_cast(hf, SF_BF16), *hh = sf_cast(hf, SF_F16);
  CHECK(at(hb, 0) == 1.0 && at(hb, 1) == 1.015625);
  CHECK(isinf(at(hh, 2)));
  /* i64 -> f32 rounds once (no detour through a lossy type) and i64 -> i32 wraps */
  int64_t big = ((int64_t)1 << 40) + 3;
  sf_tensor *bi = sf_full(1, (int64_t[]){1}, 0, SF_I64, sf_cpu());
  *(int64_t *)sf_data_ptr(bi) = big;
  sf_tensor *bf = sf_cast(bi, SF_F64), *b32 = sf_cast(bi, SF_I32);
  CHECK(at(bf, 0) == (double)big);
  CHECK(at(b32, 0) == 3);
  sf_release(a); sf_release(i); sf_release(u); sf_release(b); sf_release(i32);
  sf_release(hf); sf_release(hb); sf_release(hh); sf_release(bi); sf_release(bf); sf_release(b32);
}

static void test_strided_copy(void) {
  int64_t sh[3] = {3, 4, 5};
  double v[60];
  for (int i = 0; i < 60; i++) v[i] = i;
  for (int d = 0; d < 8; d++) {
    sf_tensor *a = ref_tensor(ALL_DT[d] == SF_BOOL ? SF_I32 : ALL_DT[d], 3, sh, v);
    sf_tensor *p = sf_permute(a, (int[]){2, 0, 1});
    sf_tensor *n = sf_narrow(p, 2, 1, 2);      /* [5, 3, 2], strides (1, 20, 5) */
    sf_tensor *c = sf_contiguous(n);
    CHECK(c && sf_is_contiguous(c));
    int ok = 1;
    for (int i = 0; c && i < 5; i++)
      for (int j = 0; j < 3; j++)
        for (int k = 0; k < 2; k++) ok &= at(c, (i * 3 + j) * 2 + k) == (double)(j * 20 + (k + 1) * 5 + i);
    CHECK(ok);
    /* copy a transposed source into a strided destination with a cast */
    sf_tensor *dst = sf_zeros(2, (int64_t[]){5, 6}, SF_F32, sf_cpu());
    sf_tensor *dv = sf_narrow(dst, 1, 1, 3);
    sf_tensor *src = sf_select(n, 2, 0); /* [5, 3] */
    CHECK(sf_copy_(dv, src) == 0);
    ok = 1;
    for (int i = 0; i < 5; i++)
      for (int j = 0; j < 6; j++) {
        double want = (j >= 1 && j <= 3) ? (double)((j - 1) * 20 + 5 + i) : 0.0;
        ok &= at(dst, i * 6 + j) == want;
      }
    CHECK(ok);
    sf_release(a); sf_release(p); sf_release(n); sf_release(c); sf_release(dst); sf_release(dv); sf_release(src);
  }
}

static void test_fill(void) {
  for (int d = 0; d < 8; d++) {
    sf_tensor *t = sf_zeros(2, (int64_t[]){4, 7}, ALL_DT[d], sf_cpu());
    sf_tensor *col = sf_narrow(t, 1, 2, 3);
    CHECK(sf_fill_(col, 3) == 0);
    int ok = 1;
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 7; j++)
        ok &= at(t, i * 7 + j) == ((j >= 2 && j < 5) ? (ALL_DT[d] == SF_BOOL ? 1.0 : 3.0) : 0.0);
    CHECK(ok);
    sf_release(col); sf_release(t);
  }
  /* a large fill goes through the threaded path */
  int64_t n = 1 << 20;
  sf_tensor *t = sf_full(1, &n, -1.5, SF_BF16, sf_cpu());
  CHECK(at(t, 0) == -1.5 && at(t, n - 1) == -1.5 && at(t, n / 2 + 3) == -1.5);
  sf_release(t);
  /* size-0 tensors are fine */
  sf_tensor *z = sf_full(2, (int64_t[]){0, 5}, 1, SF_F32, sf_cpu());
  CHECK(z != NULL);
  sf_release(z);
}

/* ---------------- unary ---------------- */


static void test_unary_f32_all_ops(void) {
  /* 4099 points (odd, so SIMD tails run) across the interesting range of every op */
  int64_t n = 4099;
  double *v = malloc(sizeof(double) * n);
  for (int op = 0; op < SF_UN_COUNT; op++) {
    int positive = op == SF_UN_LOG || op == SF_UN_SQRT || op == SF_UN_RSQRT || op == SF_UN_POW;
    for (int64_t i = 0; i < n; i++) v[i] = positive ? 1e-3 + 20.0 * i / n : -12.0 + 24.0 * i / n;
    v[7] = 0.5; v[8] = 2.5; v[9] = -0.5; /* rounding ties */
    sf_tensor *a = vec(SF_F32, n, v);
    double p0 = op == SF_UN_POW ? 1.7 : -0.5, p1 = 0.75;
    sf_tensor *y = sf_unary((sf_unary_op)op, a, p0, p1);
    CHECK(y != NULL);
    double worst = 0;
    for (int64_t i = 0; y && i < n; i++) {
      double x = (float)v[i], want = ref_unary((sf_unary_op)op, x, p0, p1), got = at(y, i);
      double err = fabs(got - want) / (fabs(want) + 1e-30);
      if (!ref_close(got, want, 2e-6, 1e-7) && err > worst) worst = err;
    }
    if (worst > 0) { fprintf(stderr, "  unary op %d: rel err %g\n", op, worst); CHECK(0); }
    sf_release(a); sf_release(y);
  }
  free(v);
}

static void test_unary_exp_range(void) {
  /* the vectorized exp against libm over its whole domain, incl. subnormal results and overflow */
  double v[] = {-200, -104, -103.5, -100, -90, -87.5, -80, -1e-8, 0, 1e-8, 1, 10, 80, 88.5, 88.7, 88.8, 100, INFINITY, -INFINITY, NAN};
  int n = sizeof v / sizeof v[0];
  sf_tensor *a = vec(SF_F32, n, v), *y = sf_unary(SF_UN_EXP, a, 0, 0);
  for (int i = 0; i < n; i++) {
    double want = expf((float)v[i]), got = at(y, i);
    if (!(got == want || (want != want && got != got) || fabs(got - want) <= 2.5e-7 * want + 2e-45)) {
      fprintf(stderr, "  exp(%g) = %.9g want %.9g\n", v[i], got, want);
      CHECK(0);
    }
  }
  /* tanh near 0 keeps its relative accuracy; limits are exact */
  double t[] = {1e-6, -3e-4, 0.3, 0.62, 0.63, 5, 20, -20, INFINITY, -INFINITY, NAN};
  sf_tensor *ta = vec(SF_F32, 11, t), *ty = sf_unary(SF_UN_TANH, ta, 0, 0);
  for (int i = 0; i < 11; i++) CHECK(ref_close(at(ty, i), tanh((float)t[i]), 3e-7, 0));
  sf_release(a); sf_release(y); sf_release(ta); sf_release(ty);
}

static void test_unary_special_values(void) {
  double v[6] = {NAN, -0.0, 0.0, -2.5, 2.5, INFINITY};
  sf_tensor *a = vec(SF_F32, 6, v);
  sf_tensor *s = sf_unary(SF_UN_SIGN, a, 0, 0), *r = sf_unary(SF_UN_RELU, a, 0, 0),
            *n = sf_unary(SF_UN_ISNAN, a, 0, 0), *c = sf_unary(SF_UN_CLAMP, a, NAN, 1.0),
            *rd = sf_unary(SF_UN_ROUND, a, 0, 0), *sg = sf_unary(SF_UN_SIGMOID, a, 0, 0);
  CHECK(at(s, 0) == 0 && at(s, 3) == -1 && at(s, 4) == 1);       /* torch.sign(nan) = 0 */
  CHECK(isnan(at(r, 0)) && at(r, 3) == 0 && at(r, 4) == 2.5);    /* relu keeps NaN */
  CHECK(n->dtype == SF_BOOL && at(n, 0) == 1 && at(n, 1) == 0);
  CHECK(isnan(at(c, 0)) && at(c, 3) == -2.5 && at(c, 4) == 1.0); /* lo = NaN: unbounded below */
  CHECK(at(rd, 3) == -2 && at(rd, 4) == 2);                      /* half to even */
  CHECK(at(sg, 5) == 1.0 && isnan(at(sg, 0)));
  sf_release(a); sf_release(s); sf_release(r); sf_release(n); sf_release(c); sf_release(rd); sf_release(sg);
}

static void test_unary_half_and_int(void) {
  double v[5] = {-3, -1, 0, 2, 100};
  /* bf16/f16: computed in f32, rounded once */
  for (int h = 0; h < 2; h++) {
    sf_dtype dt = h ? SF_F16 : SF_BF16;
    sf_tensor *a = vec(dt, 5, v), *y = sf_unary(SF_UN_GELU_TANH, a, 0, 0);
    CHECK(y && y->dtype == dt);
    for (int i = 0; y && i < 5; i++) {
      double want = ref_unary(SF_UN_GELU_TANH, v[i], 0, 0);
      double want_r = dt == SF_BF16 ? sf_bf16_to_f32(sf_f32_to_bf16((float)want)) : sf_f16_to_f32(sf_f32_to_f16((float)want));
      CHECK(ref_close(at(y, i), want_r, dt == SF_BF16 ? 4e-3 : 5e-4, 1e-6));
    }
    sf_release(a); sf_release(y);
  }
  /* integers keep their dtype for neg/abs/square/sign/clamp; exp(int) is float */
  sf_tensor *ai = vec(SF_I64, 5, v);
  sf_tensor *ng = sf_unary(SF_UN_NEG, ai, 0, 0), *sq = sf_unary(SF_UN_SQUARE, ai, 0, 0),
            *cl = sf_unary(SF_UN_CLAMP, ai, -1, 5), *ex = sf_unary(SF_UN_EXP, ai, 0, 0), *ln = sf_unary(SF_UN_LOGICAL_NOT, ai, 0, 0);
  CHECK(ng->dtype == SF_I64 && at(ng, 0) == 3 && at(ng, 4) == -100);
  CHECK(at(sq, 4) == 10000 && at(cl, 0) == -1 && at(cl, 4) == 5 && at(cl, 3) == 2);
  CHECK(ex->dtype == SF_F32 && ref_close(at(ex, 3), exp(2.0), 1e-6, 0));
  CHECK(ln->dtype == SF_BOOL && at(ln, 2) == 1 && at(ln, 3) == 0);
  sf_release(ai); sf_release(ng); sf_release(sq); sf_release(cl); sf_release(ex); sf_release(ln);
}

static void test_unary_strided(void) {
  int64_t sh[2] = {37, 53};
  double *v = malloc(sizeof(double) * 37 * 53);
  for (int i = 0; i < 37 * 53; i++) v[i] = sin(i * 0.37) * 3;
  sf_tensor *a = ref_tensor(SF_F32, 2, sh, v), *t = sf_transpose(a, 0, 1), *y = sf_unary(SF_UN_SILU, t, 0, 0);
  int ok = 1;
  for (int i = 0; i < 53; i++)
    for (int j = 0; j < 37; j++) ok &= ref_close(at(y, i * 37 + j), ref_unary(SF_UN_SILU, (float)v[j * 53 + i], 0, 0), 2e-6, 1e-7);
  CHECK(ok);
  /* big enough for the threaded path, exercised in place through the backend (out == a) */
  int64_t n = 300001;
  sf_tensor *big = sf_full(1, &n, 2.0, SF_F32, sf_cpu());
  CHECK(sf_cpu_backend.unary(SF_UN_SQUARE, big, big, 0, 0) == 0);
  CHECK(at(big, 0) == 4 && at(big, n - 1) == 4 && at(big, 150000) == 4);
  sf_release(a); sf_release(t); sf_release(y); sf_release(big);
  free(v);
}

/* ---------------- binary ---------------- */

static void test_binary_broadcast_all_ops(void) {
  /* [5, 1] op [1, 7] -> [5, 7] for every op, f32 */
  double va[5] = {-2, -0.5, 0, 1.5, 3}, vb[7] = {-1, 0, 0.5, 1.5, 2, NAN, 3};
  sf_tensor *a = ref_tensor(SF_F32, 2, (int64_t[]){5, 1}, va), *b = ref_tensor(SF_F32, 2, (int64_t[]){1, 7}, vb);
  for (int op = 0; op < SF_BIN_COUNT; op++) {
    sf_tensor *y = sf_binary((sf_binary_op)op, a, b);
    CHECK(y && y->ndim == 2 && y->shape[0] == 5 && y->shape[1] == 7);
    for (int i = 0; y && i < 5; i++)
      for (int j = 0; j < 7; j++) {
        double want = ref_binary((sf_binary_op)op, va[i], vb[j]), got = at(y, i * 7 + j);
        if (!ref_close(got, (float)want, 1e-6, 0)) {
          fprintf(stderr, "  binary op %d (%g, %g) = %g want %g\n", op, va[i], vb[j], got, want);
          CHECK(0);
        }
      }
    sf_release(y);
  }
  sf_release(a); sf_release(b);
}

static void test_binary_int_and_bool(void) {
  double va[4] = {-7, 7, -7, 5}, vb[4] = {2, -2, 0, 3};
  sf_tensor *a = vec(SF_I64, 4, va), *b = vec(SF_I64, 4, vb);
  /* through the backend directly: integer division floors and never traps on 0 */
  sf_tensor *q = sf_empty(1, (int64_t[]){4}, SF_I64, sf_cpu());
  CHECK(sf_cpu_backend.binary(SF_BIN_DIV, q, a, b) == 0);
  CHECK(at(q, 0) == -4 && at(q, 1) == -4 && at(q, 2) == 0 && at(q, 3) == 1);
  sf_tensor *p = sf_binary(SF_BIN_POW, a, b), *m = sf_binary(SF_BIN_MUL, a, b), *d = sf_binary(SF_BIN_DIV, a, b);
  CHECK(p->dtype == SF_I64 && at(p, 0) == 49 && at(p, 3) == 125 && at(p, 2) == 1);
  CHECK(at(m, 1) == -14);
  CHECK(d->dtype == SF_F32 && at(d, 0) == -3.5); /* true division on ints promotes */
  double ba[4] = {1, 1, 0, 0}, bb[4] = {1, 0, 1, 0};
  sf_tensor *x = vec(SF_BOOL, 4, ba), *y = vec(SF_BOOL, 4, bb);
  sf_tensor *an = sf_binary(SF_BIN_AND, x, y), *o = sf_binary(SF_BIN_OR, x, y), *s = sf_binary(SF_BIN_ADD, x, y);
  CHECK(an->dtype == SF_BOOL && at(an, 0) == 1 && at(an, 1) == 0 && at(an, 3) == 0);
  CHECK(at(o, 1) == 1 && at(o, 3) == 0);
  CHECK(s->dtype == SF_BOOL && at(s, 0) == 1); /* True + True = True as torch */
  /* u8 wraps, i32 arithmetic stays i32 */
  double u[2] = {250, 10};
  sf_tensor *ua = vec(SF_U8, 2, u), *us = sf_binary(SF_BIN_ADD, ua, ua);
  CHECK(us->dtype == SF_U8 && at(us, 0) == 244 && at(us, 1) == 20);
  sf_release(a); sf_release(b); sf_release(q); sf_release(p); sf_release(m); sf_release(d);
  sf_release(x); sf_release(y); sf_release(an); sf_release(o); sf_release(s); sf_release(ua); sf_release(us);
}

static void test_binary_scalar(void) {
  double v[5] = {1, 2, 4, -8, 0.5};
  sf_tensor *a = vec(SF_F32, 5, v);
  sf_tensor *d1 = sf_binary_scalar(SF_BIN_DIV, a, 2.0, false), *d2 = sf_binary_scalar(SF_BIN_DIV, a, 2.0, true),
            *s2 = sf_binary_scalar(SF_BIN_SUB, a, 1.0, true), *pw = sf_binary_scalar(SF_BIN_POW, a, 2.0, false),
            *pf = sf_binary_scalar(SF_BIN_POW, a, 2.0, true), *gt = sf_binary_scalar(SF_BIN_GT, a, 1.5, false);
  for (int i = 0; i < 5; i++) {
    CHECK(at(d1, i) == (float)(v[i] / 2));
    CHECK(at(d2, i) == (float)(2 / v[i]));
    CHECK(at(s2, i) == 1 - v[i]);
    CHECK(at(pw, i) == v[i] * v[i]);
    CHECK(ref_close(at(pf, i), pow(2, v[i]), 1e-6, 0));
    CHECK(gt->dtype == SF_BOOL && at(gt, i) == (v[i] > 1.5));
  }
  /* bf16 in place: a = a * 3 */
  sf_tensor *h = vec(SF_BF16, 5, v);
  CHECK(sf_binary_scalar_(SF_BIN_MUL, h, 3.0) == 0);
  CHECK(at(h, 3) == -24 && at(h, 4) == 1.5);
  sf_release(a); sf_release(d1); sf_release(d2); sf_release(s2); sf_release(pw); sf_release(pf); sf_release(gt); sf_release(h);
}

static void test_where(void) {
  double c[4] = {1, 0, 1, 0}, x[4] = {1, 2, 3, 4};
  sf_tensor *cond = ref_tensor(SF_BOOL, 2, (int64_t[]){4, 1}, c);
  sf_tensor *a = ref_tensor(SF_F32, 2, (int64_t[]){1, 4}, x);
  int64_t scalar_shape[1] = {1}; /* ndim 0: the shape pointer is not read */
  sf_tensor *b = sf_full(0, scalar_shape, -1, SF_F32, sf_cpu());
  sf_tensor *w = sf_where(cond, a, b);
  CHECK(w && w->shape[0] == 4 && w->shape[1] == 4);
  for (int i = 0; w && i < 4; i++)
    for (int j = 0; j < 4; j++) CHECK(at(w, i * 4 + j) == (c[i] ? x[j] : -1));
  sf_release(cond); sf_release(a); sf_release(b); sf_release(w);
}

/* ---------------- reductions ---------------- */

static double ref_reduce(sf_reduce_op op, const double *x, int64_t n, int64_t stride) {
  double s = 0, m = op == SF_RED_MIN || op == SF_RED_ARGMIN ? INFINITY : -INFINITY, p = 1;
  int64_t idx = 0;
  int nan = 0;
  for (int64_t i = 0; i < n; i++) {
    double v = x[i * stride];
    s += v; p *= v;
    if (v != v) { if (!nan) idx = i; nan = 1; }
    if (!nan && ((op == SF_RED_MIN || op == SF_RED_ARGMIN) ? v < m : v > m)) { m = v; idx = i; }
  }
  double mean = s / n, q = 0;
  for (int64_t i = 0; i < n; i++) q += (x[i * stride] - mean) * (x[i * stride] - mean);
  switch (op) {
  case SF_RED_SUM: return s;
  case SF_RED_MEAN: return mean;
  case SF_RED_MAX: case SF_RED_MIN: return nan ? NAN : m;
  case SF_RED_STD: return n > 1 ? sqrt(q / (n - 1)) : NAN;
  case SF_RED_NORM: { double t = 0; for (int64_t i = 0; i < n; i++) t += x[i * stride] * x[i * stride]; return sqrt(t); }
  case SF_RED_ARGMAX: case SF_RED_ARGMIN: return (double)idx;
  case SF_RED_PROD: return p;
  default: return NAN;
  }
}

static void test_reduce_every_dim_strided(void) {
  /* a [4, 6, 5] tensor viewed as a permutation [5, 4, 6]; reduce each dim with each op */
  int64_t sh[3] = {4, 6, 5};
  double v[120];
  for (int i = 0; i < 120; i++) v[i] = 0.5 + fmod(i * 7.31, 3.0) - 1.5;
  for (int dtc = 0; dtc < 3; dtc++) {
    sf_dtype dt = dtc == 0 ? SF_F32 : dtc == 1 ? SF_BF16 : SF_F64;
    sf_tensor *base = ref_tensor(dt, 3, sh, v);
    sf_tensor *a = sf_permute(base, (int[]){2, 0, 1});
    double *av = ref_read(a); /* [5, 4, 6] logical */
    int64_t as[3] = {24, 6, 1}, ash[3] = {5, 4, 6};
    for (int op = 0; op < SF_RED_COUNT; op++)
      for (int d = 0; d < 3; d++) {
        sf_tensor *r = sf_reduce((sf_reduce_op)op, a, d, true);
        CHECK(r != NULL);
        if (!r) continue;
        int64_t n = sf_numel(r);
        for (int64_t k = 0; k < n; k++) {
          /* position of output k in the input with dim d at 0 */
          int64_t rem = k, off = 0;
          for (int e = 2; e >= 0; e--) {
            int64_t sz = e == d ? 1 : ash[e];
            off += (rem % sz) * as[e];
            rem /= sz;
          }
          double want = ref_reduce((sf_reduce_op)op, av + off, ash[d], as[d]);
          double tol = dt == SF_BF16 && op != SF_RED_ARGMAX && op != SF_RED_ARGMIN ? 1e-2 : 1e-5;
          if (!ref_close(at(r, k), want, tol, 1e-6)) {
            fprintf(stderr, "  reduce %s op %d dim %d out %lld: %g want %g\n", sf_dtype_name(dt), op, d, (long long)k, at(r, k), want);
            CHECK(0);
          }
        }
        sf_release(r);
      }
    free(av);
    sf_release(a); sf_release(base);
  }
}

static void test_reduce_nan_and_edges(void) {
  double v[6] = {1, NAN, 3, 7, NAN, -2};
  sf_tensor *a = vec(SF_F32, 6, v);
  sf_tensor *mx = sf_reduce(SF_RED_MAX, a, 0, false), *mn = sf_reduce(SF_RED_MIN, a, 0, false),
            *am = sf_reduce(SF_RED_ARGMAX, a, 0, false), *ai = sf_reduce(SF_RED_ARGMIN, a, 0, false);
  CHECK(isnan(at(mx, 0)) && isnan(at(mn, 0)));
  CHECK(am->dtype == SF_I64 && at(am, 0) == 1 && at(ai, 0) == 1); /* first NaN, as torch */
  /* NaN in a column-mode reduction (dim 0 of [3, 2]) */
  double v2[6] = {1, NAN, 3, 7, 2, -2}; /* columns (1, 3, 2) and (NaN, 7, -2) */
  sf_tensor *m2 = ref_tensor(SF_F32, 2, (int64_t[]){3, 2}, v2);
  sf_tensor *c = sf_reduce(SF_RED_MAX, m2, 0, false), *ca = sf_reduce(SF_RED_ARGMAX, m2, 0, false);
  CHECK(at(c, 0) == 3 && isnan(at(c, 1)));
  CHECK(at(ca, 0) == 1 && at(ca, 1) == 0);
  /* size-0 and size-1 dims */
  sf_tensor *z = sf_zeros(2, (int64_t[]){3, 0}, SF_F32, sf_cpu());
  sf_tensor *zs = sf_reduce(SF_RED_SUM, z, 1, false), *zp = sf_reduce(SF_RED_PROD, z, 1, false), *zm = sf_reduce(SF_RED_MEAN, z, 1, false);
  CHECK(zs && zs->shape[0] == 3 && at(zs, 0) == 0 && at(zp, 2) == 1 && isnan(at(zm, 1)));
  sf_tensor *zz = sf_reduce(SF_RED_SUM, z, 0, false);
  CHECK(zz && zz->ndim == 1 && zz->shape[0] == 0);
  sf_tensor *one = ref_tensor(SF_F32, 2, (int64_t[]){1, 6}, v);
  sf_tensor *os = sf_reduce(SF_RED_SUM, one, 0, false), *sd = sf_reduce(SF_RED_STD, one, 0, false);
  CHECK(at(os, 0) == 1 && at(os, 3) == 7 && isnan(at(sd, 0))); /* std of one element is NaN (unbiased) */
  /* integers: sum gives i64, max keeps the dtype */
  double iv[4] = {3, -9, 250, 8};
  sf_tensor *u = vec(SF_U8, 4, iv), *i32 = vec(SF_I32, 4, iv);
  sf_tensor *us = sf_reduce(SF_RED_SUM, u, 0, false), *im = sf_reduce(SF_RED_MAX, i32, 0, false), *ia = sf_reduce(SF_RED_ARGMIN, i32, 0, false);
  CHECK(us->dtype == SF_I64 && at(us, 0) == 3 + 247 + 250 + 8);
  CHECK(im->dtype == SF_I32 && at(im, 0) == 250 && at(ia, 0) == 1);
  sf_tensor *bo = vec(SF_BOOL, 4, iv), *bs = sf_reduce(SF_RED_SUM, bo, 0, false);
  CHECK(bs->dtype == SF_I64 && at(bs, 0) == 4);
  sf_release(a); sf_release(mx); sf_release(mn); sf_release(am); sf_release(ai); sf_release(m2); sf_release(c); sf_release(ca);
  sf_release(z); sf_release(zs); sf_release(zp); sf_release(zm); sf_release(zz); sf_release(one); sf_release(os); sf_release(sd);
  sf_release(u); sf_release(i32); sf_release(us); sf_release(im); sf_release(ia); sf_release(bo); sf_release(bs);
}

static void test_reduce_large_accuracy(void) {
  /* 1e7 f32 values of 0.1f: a float accumulator would be off by ~1e-3 relative */
  int64_t n = 10000000;
  sf_tensor *a = sf_full(1, &n, 0.1, SF_F32, sf_cpu());
  sf_tensor *s = sf_reduce(SF_RED_SUM, a, SF_ALL_DIMS, false), *m = sf_reduce(SF_RED_MEAN, a, SF_ALL_DIMS, false);
  sf_tensor *sd = sf_reduce(SF_RED_STD, a, SF_ALL_DIMS, false);
  double want = (double)n * (double)0.1f;
  CHECK(ref_close(sf_item(s), (float)want, 1e-7, 0));
  CHECK(ref_close(sf_item(m), 0.1f, 1e-7, 0));
  CHECK(fabs(sf_item(sd)) < 1e-6);
  /* large offset + small spread: std must not cancel */
  int64_t k = 1000001;
  sf_tensor *r = sf_arange(0, (double)k, 1, SF_F64, sf_cpu());
  sf_tensor *shifted = sf_binary_scalar(SF_BIN_ADD, r, 1e9, false);
  sf_tensor *s2 = sf_reduce(SF_RED_STD, shifted, 0, false);
  double wstd = sqrt((double)k * (k + 1) / 12.0);
  CHECK(ref_close(sf_item(s2), wstd, 1e-9, 0));
  /* argmax of a long row split across threads picks the first maximum */
  sf_tensor *z = sf_zeros(1, &n, SF_F32, sf_cpu());
  ((float *)sf_data_ptr(z))[n - 5] = 2;
  ((float *)sf_data_ptr(z))[n / 2 + 7] = 2;
  sf_tensor *am = sf_reduce(SF_RED_ARGMAX, z, 0, false);
  CHECK(sf_item(am) == n / 2 + 7);
  /* a column reduction of a wide matrix (dim 0 of [1000, 3000]) */
  int64_t sh[2] = {1000, 3000};
  sf_tensor *w = sf_full(2, sh, 0.5, SF_F32, sf_cpu()), *ws = sf_reduce(SF_RED_SUM, w, 0, false);
  CHECK(at(ws, 0) == 500 && at(ws, 2999) == 500);
  sf_release(a); sf_release(s); sf_release(m); sf_release(sd); sf_release(r); sf_release(shifted); sf_release(s2);
  sf_release(z); sf_release(am); sf_release(w); sf_release(ws);
}

/* ---------------- softmax ---------------- */

static void test_softmax(void) {
  int64_t sh[3] = {3, 5, 4};
  double v[60];
  for (int i = 0; i < 60; i++) v[i] = sin(i * 1.3) * 4;
  v[5] = 1000; v[6] = 999; /* large logits stay finite */
  for (int dtc = 0; dtc < 2; dtc++) {
    sf_dtype dt = dtc ? SF_BF16 : SF_F32;
    sf_tensor *a = ref_tensor(dt, 3, sh, v);
    double *av = ref_read(a);
    sf_tensor *p = sf_permute(a, (int[]){1, 2, 0}); /* [5, 4, 3] non-contiguous */
    for (int lg = 0; lg < 2; lg++)
      for (int d = 0; d < 3; d++) {
        sf_tensor *y = lg ? sf_log_softmax(p, d) : sf_softmax(p, d);
        CHECK(y && y->dtype == dt);
        int ok = 1;
        for (int i = 0; y && i < 5; i++)
          for (int j = 0; j < 4; j++)
            for (int k = 0; k < 3; k++) {
              int idx[3] = {i, j, k}, lim[3] = {5, 4, 3};
              /* element (i, j, k) of p is a[k, i, j] */
              double mx = -INFINITY, s = 0;
              for (int r = 0; r < lim[d]; r++) {
                int q[3] = {idx[0], idx[1], idx[2]};
                q[d] = r;
                mx = fmax(mx, av[q[2] * 20 + q[0] * 4 + q[1]]);
              }
              for (int r = 0; r < lim[d]; r++) {
                int q[3] = {idx[0], idx[1], idx[2]};
                q[d] = r;
                s += exp(av[q[2] * 20 + q[0] * 4 + q[1]] - mx);
              }
              double x = av[k * 20 + i * 4 + j];
              double want = lg ? x - mx - log(s) : exp(x - mx) / s;
              ok &= ref_close(at(y, (i * 4 + j) * 3 + k), want, dt == SF_BF16 ? 8e-3 : 2e-6, dt == SF_BF16 ? 1e-2 : 1e-6);
            }
        if (!ok) fprintf(stderr, "  softmax %s log=%d dim=%d mismatch\n", sf_dtype_name(dt), lg, d);
        CHECK(ok);
        sf_release(y);
      }
    free(av);
    sf_release(a); sf_release(p);
  }
  /* -inf entries get probability 0; a NaN poisons its row only */
  double w[6] = {-INFINITY, 0, 0, NAN, 1, 2};
  sf_tensor *t = ref_tensor(SF_F32, 2, (int64_t[]){2, 3}, w), *y = sf_softmax(t, 1);
  CHECK(at(y, 0) == 0 && at(y, 1) == 0.5 && at(y, 2) == 0.5 && isnan(at(y, 3)) && isnan(at(y, 5)));
  /* a long row (> one chunk) */
  int64_t n = 100003;
  sf_tensor *l = sf_full(1, &n, 3.0, SF_F32, sf_cpu()), *ly = sf_softmax(l, 0), *lls = sf_log_softmax(l, 0);
  CHECK(ref_close(at(ly, 17), 1.0 / n, 1e-6, 0) && ref_close(at(lls, n - 1), -log((double)n), 1e-6, 0));
  sf_release(t); sf_release(y); sf_release(l); sf_release(ly); sf_release(lls);
}

/* ---------------- matmul ---------------- */

/* c[b] = a[b] @ b[b] in double from whatever layout the operands have */
static int check_matmul(sf_tensor *a, sf_tensor *b, double rtol) {
  sf_tensor *c = sf_matmul(a, b);
  if (!c) { fprintf(stderr, "  matmul failed: %s\n", sf_last_error()); return 0; }
  double *av = ref_read(a), *bv = ref_read(b);
  int nda = a->ndim, ndb = b->ndim;
  int64_t M = a->shape[nda - 2], K = a->shape[nda - 1], N = b->shape[ndb - 1];
  int64_t Ba = sf_numel(a) / (M * K > 0 ? M * K : 1), Bb = sf_numel(b) / (K * N > 0 ? K * N : 1);
  int64_t B = Ba > Bb ? Ba : Bb;
  int ok = sf_numel(c) == B * M * N;
  for (int64_t bi = 0; ok && bi < B; bi++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0, sa = 0;
        for (int64_t k = 0; k < K; k++) {
          double x = av[(Ba == 1 ? 0 : bi) * M * K + i * K + k], y = bv[(Bb == 1 ? 0 : bi) * K * N + k * N + j];
          s += x * y;
          sa += fabs(x * y);
        }
        double got = at(c, (bi * M + i) * N + j);
        if (!(fabs(got - s) <= rtol * (sa + 1e-30) + 1e-30)) {
          fprintf(stderr, "  matmul %s [%lld,%lld,%lld] (%lld,%lld,%lld): %g want %g\n", sf_dtype_name(a->dtype), (long long)M,
                  (long long)K, (long long)N, (long long)bi, (long long)i, (long long)j, got, s);
          ok = 0;
          break;
        }
      }
  free(av); free(bv);
  sf_release(c);
  return ok;
}

static sf_tensor *randt(sf_dtype dt, int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  double *v = malloc(sizeof(double) * (n ? n : 1));
  for (int64_t i = 0; i < n; i++) v[i] = ref_uniform(-1, 1);
  sf_tensor *t = ref_tensor(dt, ndim, shape, v);
  free(v);
  return t;
}

static void test_matmul_layouts_and_dtypes(void) {
  const sf_dtype dts[4] = {SF_F32, SF_BF16, SF_F16, SF_F64};
  for (int di = 0; di < 4; di++) {
    sf_dtype dt = dts[di];
    double tol = dt == SF_F64 ? 1e-12 : dt == SF_F32 ? 1e-5 : 1e-2; /* halves: the result is rounded */
    int64_t dims[][3] = {{7, 5, 9}, {1, 5, 9}, {7, 1, 9}, {7, 5, 1}, {1, 1, 1}, {33, 17, 65}};
    for (int s = 0; s < 6; s++) {
      int64_t M = dims[s][0], K = dims[s][1], N = dims[s][2];
      for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
          /* transposed operands are views of [K, M] / [N, K] tensors */
          sf_tensor *a0 = ta ? randt(dt, 2, (int64_t[]){K, M}) : randt(dt, 2, (int64_t[]){M, K});
          sf_tensor *b0 = tb ? randt(dt, 2, (int64_t[]){N, K}) : randt(dt, 2, (int64_t[]){K, N});
          sf_tensor *a = ta ? sf_transpose(a0, 0, 1) : sf_retain(a0), *b = tb ? sf_transpose(b0, 0, 1) : sf_retain(b0);
          CHECK(check_matmul(a, b, tol));
          sf_release(a0); sf_release(b0); sf_release(a); sf_release(b);
        }
    }
    /* batched: [3, 4, 6] x [6, 5] (shared rhs: one tall GEMM), [3, 4, 6] x [3, 6, 5], [1, 4, 6] x [3, 6, 5] */
    sf_tensor *a3 = randt(dt, 3, (int64_t[]){3, 4, 6}), *b2 = randt(dt, 2, (int64_t[]){6, 5}), *b3 = randt(dt, 3, (int64_t[]){3, 6, 5});
    sf_tensor *a1 = randt(dt, 3, (int64_t[]){1, 4, 6});
    CHECK(check_matmul(a3, b2, tol));
    CHECK(check_matmul(a3, b3, tol));
    CHECK(check_matmul(a1, b3, tol));
    /* a batch of transposed left operands sharing the rhs */
    sf_tensor *a3t0 = randt(dt, 3, (int64_t[]){3, 6, 4}), *a3t = sf_transpose(a3t0, 1, 2);
    CHECK(check_matmul(a3t, b2, tol));
    /* a [B, 1, K] row batch (M = 1) against a shared rhs */
    sf_tensor *ar = randt(dt, 3, (int64_t[]){5, 1, 6});
    CHECK(check_matmul(ar, b2, tol));
    sf_release(a3); sf_release(b2); sf_release(b3); sf_release(a1); sf_release(a3t0); sf_release(a3t); sf_release(ar);
  }
  /* K = 0 gives zeros; integer matmul through the backend */
  sf_tensor *a = sf_zeros(2, (int64_t[]){3, 0}, SF_F32, sf_cpu()), *b = sf_zeros(2, (int64_t[]){0, 2}, SF_F32, sf_cpu());
  sf_tensor *c = sf_matmul(a, b);
  CHECK(c && c->shape[0] == 3 && c->shape[1] == 2 && at(c, 5) == 0);
  double iv[6] = {1, 2, 3, 4, 5, 6};
  sf_tensor *ia = ref_tensor(SF_I64, 3, (int64_t[]){1, 2, 3}, iv), *ib = ref_tensor(SF_I64, 3, (int64_t[]){1, 3, 2}, iv);
  sf_tensor *ic = sf_empty(3, (int64_t[]){1, 2, 2}, SF_I64, sf_cpu());
  CHECK(sf_cpu_backend.matmul(ic, ia, ib) == 0);
  CHECK(at(ic, 0) == 22 && at(ic, 1) == 28 && at(ic, 2) == 49 && at(ic, 3) == 64);
  sf_release(a); sf_release(b); sf_release(c); sf_release(ia); sf_release(ib); sf_release(ic);
}

static void test_matmul_large(void) {
  /* big enough for OpenBLAS's threaded kernels, with the rhs transposed (x @ W^T) */
  int64_t M = 130, K = 257, N = 190;
  sf_tensor *a = randt(SF_F32, 2, (int64_t[]){M, K}), *w = randt(SF_F32, 2, (int64_t[]){N, K});
  sf_tensor *wt = sf_transpose(w, 0, 1);
  CHECK(check_matmul(a, wt, 1e-5));
  sf_release(a); sf_release(w); sf_release(wt);
}

/* ---------------- random ---------------- */

static void test_random(void) {
  int64_t n = 1000;
  sf_manual_seed(1234);
  sf_tensor *a = sf_randn(1, &n, SF_F32, sf_cpu());
  sf_manual_seed(1234);
  sf_tensor *b = sf_randn(1, (int64_t[]){400}, SF_F32, sf_cpu()), *c = sf_randn(1, (int64_t[]){600}, SF_F32, sf_cpu());
  int ok = 1;
  for (int i = 0; i < 1000; i++) {
    ok &= at(a, i) == sf_philox_normal(1234, (uint64_t)i);
    ok &= at(a, i) == (i < 400 ? at(b, i) : at(c, i - 400)); /* a draw continues where the last ended */
  }
  CHECK(ok);
  /* through the backend with an explicit offset, bf16 output, uniform */
  sf_tensor *u = sf_empty(1, (int64_t[]){5000}, SF_BF16, sf_cpu());
  CHECK(sf_cpu_backend.random(u, 77, 1000000, 1) == 0);
  ok = 1;
  for (int i = 0; i < 5000; i++) {
    double want = sf_bf16_to_f32(sf_f32_to_bf16(sf_philox_uniform(77, 1000000 + (uint64_t)i)));
    ok &= at(u, i) == want && want >= 0 && want <= 1;
  }
  CHECK(ok);
  /* integer outputs are refused */
  sf_tensor *ii = sf_empty(1, (int64_t[]){3}, SF_I64, sf_cpu());
  CHECK(sf_cpu_backend.random(ii, 1, 0, 0) != 0);
  sf_release(a); sf_release(b); sf_release(c); sf_release(u); sf_release(ii);
}

static void test_alloc(void) {
  void *p = sf_cpu_backend.alloc(sf_cpu(), 0), *q = sf_cpu_backend.alloc(sf_cpu(), 100);
  CHECK(p && q && ((uintptr_t)q % 64) == 0);
  sf_cpu_backend.free(sf_cpu(), p, 0);
  sf_cpu_backend.free(sf_cpu(), q, 100);
  CHECK(sf_cpu_backend.alloc(sf_cpu(), (size_t)-8) == NULL);
  CHECK_ERROR_MENTIONS("cpu");
  CHECK(sf_cpu_backend.device_count() == 1);
  /* large blocks: 2 MiB aligned, recycled by rounded size, never confused across sizes */
  size_t big = (size_t)20 << 20;
  char *a = sf_cpu_backend.alloc(sf_cpu(), big), *b = sf_cpu_backend.alloc(sf_cpu(), big);
  CHECK(a && b && a != b && ((uintptr_t)a % (2u << 20)) == 0);
  memset(a, 1, big);
  memset(b, 2, big);
  sf_cpu_backend.free(sf_cpu(), a, big);
  char *c = sf_cpu_backend.alloc(sf_cpu(), big + (4u << 20)); /* a larger class must not get a's block */
  CHECK(c && c != a && c != b);
  memset(c, 3, big + (4u << 20));
  char *d = sf_cpu_backend.alloc(sf_cpu(), big - 100); /* the same 2 MiB class may reuse a */
  CHECK(d && d != b && d != c);
  memset(d, 4, big - 100);
  CHECK(b[0] == 2 && b[big - 1] == 2);
  sf_cpu_backend.free(sf_cpu(), b, big);
  sf_cpu_backend.free(sf_cpu(), c, 0); /* the size argument is not trusted */
  sf_cpu_backend.free(sf_cpu(), d, big - 100);
  /* mid-size blocks (64 KiB-1 MiB, mapped by sfwb so glibc's heap never fragments under them): many live at
   * once (the live table grows and deletes out of order), each keeps its bytes, a freed one is reused */
  enum { NB = 3000 };
  char **blk = malloc(NB * sizeof *blk);
  size_t *len = malloc(NB * sizeof *len);
  int all = blk && len;
  for (int i = 0; all && i < NB; i++) {
    len[i] = ((size_t)64 << 10) + (size_t)(i * 7919 % 960) * 1024;
    blk[i] = sf_cpu_backend.alloc(sf_cpu(), len[i]);
    all &= blk[i] != NULL && ((uintptr_t)blk[i] % 64) == 0;
    if (blk[i]) { blk[i][0] = (char)i; blk[i][len[i] - 1] = (char)(i + 1); }
  }
  CHECK(all);
  for (int i = 0; all && i < NB; i += 3) sf_cpu_backend.free(sf_cpu(), blk[i], 0), blk[i] = NULL;
  int intact = 1;
  for (int i = 0; all && i < NB; i++)
    if (blk[i]) intact &= blk[i][0] == (char)i && blk[i][len[i] - 1] == (char)(i + 1);
  CHECK(intact);
  if (all) {
    char *r = sf_cpu_backend.alloc(sf_cpu(), len[1]);
    sf_cpu_backend.free(sf_cpu(), r, len[1]);
    char *r2 = sf_cpu_backend.alloc(sf_cpu(), len[1]);
#if !defined(__SANITIZE_ADDRESS__) /* ASan: no cache, so it sees every use after free */
    CHECK(r2 == r); /* the cache's most recent block of that size */
#endif
    sf_cpu_backend.free(sf_cpu(), r2, len[1]);
    for (int i = NB - 1; i >= 0; i--) sf_cpu_backend.free(sf_cpu(), blk[i], len[i]);
  }
  free(blk);
  free(len);
}

/* ---------------- thread pool ---------------- */

typedef struct { atomic_long hits[64]; atomic_long total; } pool_ctx;

static void pool_job(void *vc, int t, int nt) {
  pool_ctx *c = vc;
  atomic_fetch_add(&c->hits[t], 1);
  atomic_fetch_add(&c->total, nt);
}

static void *pool_hammer(void *arg) {
  pool_ctx *c = arg;
  for (int i = 0; i < 3000; i++) sf_cpu_parallel(2, pool_job, c);
  return NULL;
}

static void test_pool(void) {
  /* back-to-back jobs: every thread index runs exactly once per job (no lost or doubled wake-ups) */
  pool_ctx c;
  memset(&c, 0, sizeof c);
  int n = sf_cpu_pool_size() < 4 ? sf_cpu_pool_size() : 4;
  for (int i = 0; i < 5000; i++) sf_cpu_parallel(n, pool_job, &c);
  CHECK(atomic_load(&c.hits[0]) == 5000);
  for (int t = 1; t < n; t++) CHECK(atomic_load(&c.hits[t]) == 5000);
  /* two application threads at once: one gets the pool, the other runs serially; nothing hangs */
  pool_ctx d;
  memset(&d, 0, sizeof d);
  pthread_t th;
  pthread_create(&th, NULL, pool_hammer, &d);
  pool_hammer(&d);
  pthread_join(th, NULL);
  long jobs = 0;
  for (int t = 0; t < 64; t++) jobs += atomic_load(&d.hits[t]);
  CHECK(atomic_load(&d.hits[0]) == 6000 && jobs >= 6000 && jobs <= 12000);
  /* a parallel op inside a pool job runs serially and still computes the right thing */
  int64_t big = 200000;
  sf_tensor *x = sf_full(1, &big, 1.0, SF_F32, sf_cpu());
  sf_tensor *s = sf_reduce(SF_RED_SUM, x, 0, false);
  CHECK(sf_item(s) == (double)big);
  sf_release(x); sf_release(s);
}

int main(void) {
  sf_backends_init();
  RUN(test_pool);
  RUN(test_alloc);
  RUN(test_cast_all_pairs);
  RUN(test_cast_semantics);
  RUN(test_strided_copy);
  RUN(test_fill);
  RUN(test_unary_f32_all_ops);
  RUN(test_unary_exp_range);
  RUN(test_unary_special_values);
  RUN(test_unary_half_and_int);
  RUN(test_unary_strided);
  RUN(test_binary_broadcast_all_ops);
  RUN(test_binary_int_and_bool);
  RUN(test_binary_scalar);
  RUN(test_where);
  RUN(test_reduce_every_dim_strided);
  RUN(test_reduce_nan_and_edges);
  RUN(test_reduce_large_accuracy);
  RUN(test_softmax);
  RUN(test_matmul_layouts_and_dtypes);
  RUN(test_matmul_large);
  RUN(test_random);
  TEST_DONE();
}
