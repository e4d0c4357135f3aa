/* test_backend_ops.c — every op of the one op list (core/dispatch.h: SF_UNARY_OPS, SF_BINARY_OPS, SF_REDUCE_OPS)
 * in three modes, as ggml's test-backend-ops:
 *   eval  the op on the test device (emu:0, or $SFWB_TEST_DEVICE) against the CPU, f32 and bf16;
 *   grad  the CPU backward against f64 central differences (every differentiable op);
 *   perf  with SFWB_OPS_PERF=1: GB/s of each op on each backend at 4M elements (printed, not asserted).
 * A new op added to the list is tested here without editing this file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backend.h"
#include "gradcheck.h"
#include "sf_test.h"

static sf_device g_dev;

/* inputs valid for every op of a kind: positive for log/sqrt/pow, away from 0 for recip/div */
static sf_tensor *input(int64_t n, int dist, uint64_t seed) {
  sf_tensor *t = sf_empty(1, &n, SF_F64, sf_cpu());
  uint64_t st = seed;
  gc_fill(t, dist, &st);
  sf_tensor *f = sf_cast(t, SF_F32);
  sf_release(t);
  return f;
}

static int unary_dist(sf_unary_op op) {
  return (op == SF_UN_LOG || op == SF_UN_SQRT || op == SF_UN_RSQRT || op == SF_UN_POW) ? 1 : 2;
}

/* max |dev - cpu| / max(1, |cpu|) of one result */
static double rel_diff(sf_tensor *dev, sf_tensor *cpu) {
  sf_tensor *d = sf_to_device(dev, sf_cpu()), *a = d ? sf_cast(d, SF_F64) : NULL, *b = a ? sf_cast(cpu, SF_F64) : NULL;
  double worst = -1;
  if (a && b) {
    const double *pa = sf_data_ptr(a), *pb = sf_data_ptr(b);
    worst = 0;
    for (int64_t i = 0; i < sf_numel(a); i++) {
      if (isnan(pa[i]) && isnan(pb[i])) continue;
      double e = fabs(pa[i] - pb[i]) / fmax(1.0, fabs(pb[i]));
      if (!(e <= worst)) worst = e;
    }
  }
  sf_release(d), sf_release(a), sf_release(b);
  return worst;
}

static double unary_p0(sf_unary_op op) { return op == SF_UN_POW ? 1.7 : op == SF_UN_CLAMP ? -0.5 : 0; }
static double unary_p1(sf_unary_op op) { return op == SF_UN_CLAMP ? 0.5 : 0; }

static void eval_unary(void) {
  for (int op = 0; op < SF_UN_COUNT; op++)
    for (int bf = 0; bf < 2; bf++) {
      sf_tensor *x = input(1000, unary_dist(op), 7 + op), *xc = bf ? sf_cast(x, SF_BF16) : sf_retain(x);
      sf_tensor *xd = sf_to_device(xc, g_dev);
      sf_tensor *rc = sf_unary(op, xc, unary_p0(op), unary_p1(op)), *rd = xd ? sf_unary(op, xd, unary_p0(op), unary_p1(op)) : NULL;
      double e = rc && rd ? rel_diff(rd, rc) : -1;
      if (!(e >= 0 && e <= (bf ? 1e-2 : 2e-6))) {
        fprintf(stderr, "  unary %s (%s): device vs cpu %g [%s]\n", sf_unary_op_name(op), bf ? "bf16" : "f32", e, sf_last_error());
        sf_test_case_failed = 1;
      }
      sf_release(x), sf_release(xc), sf_release(xd), sf_release(rc), sf_release(rd);
    }
}

static void eval_binary(void) {
  for (int op = 0; op < SF_BIN_COUNT; op++) {
    sf_tensor *a = input(1000, op == SF_BIN_POW ? 1 : 2, 3 + op), *b = input(1000, op == SF_BIN_POW ? 1 : 2, 99 + op);
    sf_tensor *ad = sf_to_device(a, g_dev), *bd = sf_to_device(b, g_dev);
    sf_tensor *rc = sf_binary(op, a, b), *rd = ad && bd ? sf_binary(op, ad, bd) : NULL;
    double e = rc && rd ? rel_diff(rd, rc) : -1;
    if (!(e >= 0 && e <= 2e-6)) {
      fprintf(stderr, "  binary %s: device vs cpu %g [%s]\n", sf_binary_op_name(op), e, sf_last_error());
      sf_test_case_failed = 1;
    }
    sf_release(a), sf_release(b), sf_release(ad), sf_release(bd), sf_release(rc), sf_release(rd);
  }
}

static void eval_reduce(void) {
  for (int op = 0; op < SF_RED_COUNT; op++) {
    int64_t n = 999, sh[2] = {27, 37};
    sf_tensor *x = input(n, 2, 11 + op), *x2 = sf_reshape(x, 2, sh), *xd = sf_to_device(x2, g_dev);
    sf_tensor *rc = sf_reduce(op, x2, 1, false), *rd = xd ? sf_reduce(op, xd, 1, false) : NULL;
    double e = rc && rd ? rel_diff(rd, rc) : -1;
    if (!(e >= 0 && e <= 2e-6)) {
      fprintf(stderr, "  reduce %s: device vs cpu %g [%s]\n", sf_reduce_op_name(op), e, sf_last_error());
      sf_test_case_failed = 1;
    }
    sf_release(x), sf_release(x2), sf_release(xd), sf_release(rc), sf_release(rd);
  }
}

/* ---- grad: f64 finite differences on the CPU ---- */
static sf_tensor *f_un(sf_tensor **in, const gc_case *c) { return sf_unary(c->ip[0], in[0], c->p[0], c->p[1]); }
static sf_tensor *f_bin(sf_tensor **in, const gc_case *c) { return sf_binary(c->ip[0], in[0], in[1]); }
static sf_tensor *f_red(sf_tensor **in, const gc_case *c) { return sf_reduce(c->ip[0], in[0], 1, false); }

static bool differentiable_unary(int op) {
  return op != SF_UN_ISNAN && op != SF_UN_LOGICAL_NOT && op != SF_UN_FLOOR && op != SF_UN_CEIL && op != SF_UN_ROUND &&
         op != SF_UN_SIGN;
}

static void check_case(const gc_case *c, const char *what, const char *name) {
  char why[256] = "";
  double e = gc_run(c, 1234, why, sizeof why);
  if (!(e >= 0 && e <= (c->tol > 0 ? c->tol : 1e-6))) {
    fprintf(stderr, "  grad %s %s: %g (%s) [%s]\n", what, name, e, why, sf_last_error());
    sf_test_case_failed = 1;
  }
}

static void grad_all(void) {
  for (int op = 0; op < SF_UN_COUNT; op++) {
    if (!differentiable_unary(op)) continue;
    gc_case c = {.name = "unary", .n_in = 1, .ndim = {1}, .shape = {{12}}, .dist = {unary_dist(op)}, .fn = f_un,
                 .p = {unary_p0(op), unary_p1(op)}, .ip = {op}, .tol = 1e-5};
    check_case(&c, "unary", sf_unary_op_name(op));
  }
  for (int op = 0; op <= SF_BIN_MIN; op++) { /* the comparisons and logical ops have no gradient */
    gc_case c = {.name = "binary", .n_in = 2, .ndim = {1, 1}, .shape = {{12}, {12}}, .dist = {op == SF_BIN_POW ? 1 : 2, op == SF_BIN_POW ? 1 : 2},
                 .fn = f_bin, .ip = {op}, .tol = 1e-5};
    check_case(&c, "binary", sf_binary_op_name(op));
  }
  for (int op = 0; op < SF_RED_COUNT; op++) {
    if (op == SF_RED_ARGMAX || op == SF_RED_ARGMIN) continue;
    gc_case c = {.name = "reduce", .n_in = 1, .ndim = {2}, .shape = {{3, 5}}, .dist = {2}, .fn = f_red, .ip = {op}, .tol = 1e-5};
    check_case(&c, "reduce", sf_reduce_op_name(op));
  }
}

/* ---- perf ---- */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void perf(void) {
  const int64_t n = 4 << 20;
  sf_device devs[2] = {sf_cpu(), g_dev};
  for (int d = 0; d < 2; d++) {
    char dn[32];
    sf_device_str(devs[d], dn, sizeof dn);
    sf_tensor *x = input(n, 1, 5), *xd = sf_to_device(x, devs[d]);
    for (int op = 0; op < SF_UN_COUNT; op++) {
      sf_tensor *warm = sf_unary(op, xd, unary_p0(op), unary_p1(op));
      sf_release(warm);
      double t0 = now();
      sf_tensor *r = sf_unary(op, xd, unary_p0(op), unary_p1(op));
      sf_backend_for(devs[d])->sync(devs[d]);
      double dt = now() - t0;
      printf("perf %-6s unary %-12s %8.2f GB/s\n", dn, sf_unary_op_name(op), r ? 2.0 * 4 * n / dt / 1e9 : 0.0);
      sf_release(r);
    }
    sf_release(x), sf_release(xd);
  }
}

int main(void) {
  sf_backends_init();
  if (sf_test_device(&g_dev)) return 1;
  RUN(eval_unary);
  RUN(eval_binary);
  RUN(eval_reduce);
  RUN(grad_all);
  const char *p = getenv("SFWB_OPS_PERF");
  if (p && *p == '1') perf();
  TEST_DONE();
}
