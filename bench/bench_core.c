/* bench_core.c — timings of core tensor ops through the public C API (what Lua calls reach):
 * f32 GEMM GFLOP/s and elementwise / reduction / softmax bandwidth. Prints "key value unit" lines
 * that bench/bench_core.sh joins with the same ops timed in numpy. Usage: bench_core [quick] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backend.h"
#include "core/error.h"
#include "ops/ops.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef sf_tensor *(*op_fn)(void *ctx);

/* best time of several runs (after one warm-up), running for at least ~min_s seconds in total */
static double best_time(op_fn fn, void *ctx, double min_s) {
  sf_tensor *r = fn(ctx);
  if (!r) { fprintf(stderr, "bench: %s\n", sf_last_error()); exit(1); }
  sf_release(r);
  double best = 1e30, total = 0;
  int reps = 0;
  while (reps < 3 || (total < min_s && reps < 50)) {
    double t0 = now();
    r = fn(ctx);
    double dt = now() - t0;
    sf_release(r);
    total += dt;
    reps++;
    if (dt < best) best = dt;
  }
  return best;
}

typedef struct { sf_tensor *a, *b; } pair;

static sf_tensor *do_mm(void *c) { pair *p = c; return sf_matmul(p->a, p->b); }
static sf_tensor *do_add(void *c) { pair *p = c; return sf_binary(SF_BIN_ADD, p->a, p->b); }
/* in place (z += y): the kernel without a fresh result's page faults */
static sf_tensor *do_add_(void *c) { pair *p = c; return sf_binary_(SF_BIN_ADD, p->a, p->b) ? NULL : sf_retain(p->a); }
static sf_tensor *do_mul(void *c) { pair *p = c; return sf_binary(SF_BIN_MUL, p->a, p->b); }
static sf_tensor *do_exp(void *c) { pair *p = c; return sf_unary(SF_UN_EXP, p->a, 0, 0); }
static sf_tensor *do_gelu(void *c) { pair *p = c; return sf_unary(SF_UN_GELU_TANH, p->a, 0, 0); }
static sf_tensor *do_sum(void *c) { pair *p = c; return sf_reduce(SF_RED_SUM, p->a, SF_ALL_DIMS, false); }
static sf_tensor *do_rowsum(void *c) { pair *p = c; return sf_reduce(SF_RED_SUM, p->a, -1, false); }
static sf_tensor *do_softmax(void *c) { pair *p = c; return sf_softmax(p->a, -1); }
static sf_tensor *do_cast(void *c) { pair *p = c; return sf_cast(p->a, SF_BF16); }

static void gemm(const char *key, int64_t M, int64_t K, int64_t N, double min_s) {
  int64_t sa[2] = {M, K}, sb[2] = {K, N};
  pair p = {sf_randn(2, sa, SF_F32, sf_cpu()), sf_randn(2, sb, SF_F32, sf_cpu())};
  double t = best_time(do_mm, &p, min_s);
  printf("%s %.2f GFLOP/s\n", key, 2.0 * M * N * K / t / 1e9);
  fflush(stdout);
  sf_release(p.a); sf_release(p.b);
}

/* bytes = elements moved per call (reads + writes) * element size */
static void stream(const char *key, op_fn fn, int ndim, const int64_t *shape, int two_inputs, double bytes_per_elem, double min_s) {
  pair p = {sf_randn(ndim, shape, SF_F32, sf_cpu()), two_inputs ? sf_randn(ndim, shape, SF_F32, sf_cpu()) : NULL};
  double n = 1;
  for (int i = 0; i < ndim; i++) n *= (double)shape[i];
  double t = best_time(fn, &p, min_s);
  printf("%s %.2f GB/s\n", key, n * bytes_per_elem / t / 1e9);
  fflush(stdout);
  sf_release(p.a); sf_release(p.b);
}

int main(int argc, char **argv) {
  int quick = argc > 1 && !strcmp(argv[1], "quick");
  double min_s = quick ? 0.05 : 0.5;
  if (sf_backends_init() != 0) { fprintf(stderr, "bench_core: %s\n", sf_last_error()); return 1; }
  sf_manual_seed(0);
  gemm("gemm_f32_512", 512, 512, 512, min_s);
  gemm("gemm_f32_1024", 1024, 1024, 1024, min_s);
  if (!quick) gemm("gemm_f32_2048", 2048, 2048, 2048, min_s);
  if (!quick) gemm("gemm_f32_1560x1536x8960", 1560, 1536, 8960, min_s);
  int64_t n = quick ? (1 << 20) : (1 << 24), sq[2] = {4096, 4096};
  stream("add_f32", do_add, 1, &n, 1, 12, min_s);
  stream("add_f32_inplace", do_add_, 1, &n, 1, 12, min_s);
  stream("mul_f32", do_mul, 1, &n, 1, 12, min_s);
  stream("exp_f32", do_exp, 1, &n, 0, 8, min_s);
  stream("gelu_tanh_f32", do_gelu, 1, &n, 0, 8, min_s);
  stream("sum_f32", do_sum, 1, &n, 0, 4, min_s);
  stream("rowsum_f32_4096x4096", do_rowsum, 2, sq, 0, 4, min_s);
  stream("softmax_f32_4096x4096", do_softmax, 2, sq, 0, 8, min_s);
  stream("cast_f32_bf16", do_cast, 1, &n, 0, 6, min_s);
  return 0;
}
