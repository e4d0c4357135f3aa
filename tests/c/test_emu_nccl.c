/* test_emu_nccl.c — the emulated NCCL among 2 emu devices in one process (one thread per rank):
 * all-reduce of rank-dependent data gives the exact sum on every rank (every dtype), in place and
 * out of place; reduce-scatter, all-gather, broadcast; CPU tensors in the same in-process world. */
#include <stdio.h>
#include <stdlib.h>

#include "core/backend.h"
#include "ops/ops.h"
#include "dist/dist.h"
#include "sf_test.h"

static const sf_dtype DT[] = {SF_F32, SF_BF16, SF_F16, SF_I64, SF_I32, SF_F64};

/* x_r[i] = (i % 50) * (r + 1) + 3 r : small integers, exact in every dtype */
static sf_tensor *rank_data(int rank, int64_t n, sf_dtype dt, sf_device dev) {
  sf_tensor *i = sf_arange(0, (double)n, 1, SF_F32, sf_cpu());
  sf_tensor *m = sf_binary_scalar(SF_BIN_SUB, i, 50, false); /* keep values small: (i mod 50) */
  sf_tensor *q = sf_binary_scalar(SF_BIN_DIV, i, 50, false), *fq = sf_unary(SF_UN_FLOOR, q, 0, 0);
  sf_tensor *f50 = sf_binary_scalar(SF_BIN_MUL, fq, 50, false), *mod = sf_binary(SF_BIN_SUB, i, f50);
  sf_tensor *s = sf_binary_scalar(SF_BIN_MUL, mod, rank + 1, false), *v = sf_binary_scalar(SF_BIN_ADD, s, 3 * rank, false);
  sf_tensor *c = sf_cast(v, dt), *d = sf_to_device(c, dev);
  sf_release(i); sf_release(m); sf_release(q); sf_release(fq); sf_release(f50); sf_release(mod); sf_release(s);
  sf_release(v); sf_release(c);
  return d;
}

static double max_diff_cpu(sf_tensor *a, sf_tensor *b) {
  sf_tensor *x = sf_to_device(a, sf_cpu()), *y = sf_to_device(b, sf_cpu());
  double d = sf_max_abs_diff(x, y);
  sf_release(x); sf_release(y);
  return d;
}

static int g_fail[2];

static int rank_main(int rank, void *arg) {
  sf_device dev = {SF_DEV_EMU, (int8_t)rank};
  int bad = 0;
  if (sf_dist_rank() != rank || sf_dist_world_size() != 2) bad++;
  for (int k = 0; k < 6; k++) {
    int64_t n = 1001;
    sf_tensor *t = rank_data(rank, n, DT[k], dev);
    sf_tensor *w0 = rank_data(0, n, DT[k], sf_cpu()), *w1 = rank_data(1, n, DT[k], sf_cpu());
    sf_tensor *want = sf_binary(SF_BIN_ADD, w0, w1);
    sf_release(w0); sf_release(w1);
    if (sf_dist_all_reduce(t, SF_DIST_SUM)) { fprintf(stderr, "rank %d: %s\n", rank, sf_last_error()); bad++; }
    double d = max_diff_cpu(t, want);
    if (d != 0) { fprintf(stderr, "  rank %d all_reduce %s: max error %g (must be exact)\n", rank, sf_dtype_name(DT[k]), d); bad++; }
    if (sf_device_of(t).index != rank || t->dtype != DT[k]) bad++;
    sf_release(t); sf_release(want);
  }
  /* reduce_scatter of [4, 3]: rank r gets rows 2r, 2r+1 of the sum */
  int64_t sh[2] = {4, 3};
  sf_tensor *x = sf_full(2, sh, rank + 1, SF_F32, dev);
  sf_tensor *rs = sf_dist_reduce_scatter(x, SF_DIST_SUM);
  sf_tensor *rsum = rs ? sf_reduce(SF_RED_SUM, rs, SF_ALL_DIMS, false) : NULL;
  if (!rs || rs->shape[0] != 2 || sf_item(rsum) != 6 * 3) { fprintf(stderr, "  rank %d reduce_scatter wrong\n", rank); bad++; }
  /* all_gather: [rank zeros.., ones..] */
  sf_tensor *g = sf_dist_all_gather(x);
  sf_tensor *gsum = g ? sf_reduce(SF_RED_SUM, g, SF_ALL_DIMS, false) : NULL;
  if (!g || g->shape[0] != 8 || sf_item(gsum) != 12 * 1 + 12 * 2) { fprintf(stderr, "  rank %d all_gather wrong\n", rank); bad++; }
  /* broadcast from rank 1 */
  sf_tensor *b = sf_full(2, sh, rank * 5, SF_BF16, dev);
  sf_dist_broadcast(b, 1);
  sf_tensor *bsum = sf_reduce(SF_RED_SUM, b, SF_ALL_DIMS, false);
  if (sf_item(bsum) != 5 * 12) { fprintf(stderr, "  rank %d broadcast wrong\n", rank); bad++; }
  /* CPU tensors in the in-process world; a max over a strided view */
  sf_tensor *c = sf_full(2, sh, rank - 4, SF_F32, sf_cpu()), *ct = sf_transpose(c, 0, 1);
  sf_dist_all_reduce(ct, SF_DIST_MAX);
  sf_tensor *cmin = sf_reduce(SF_RED_MIN, c, SF_ALL_DIMS, false);
  if (sf_item(cmin) != -3) { fprintf(stderr, "  rank %d cpu max wrong\n", rank); bad++; }
  sf_release(cmin);
  if (sf_dist_barrier()) bad++;
  sf_release(x); sf_release(rs); sf_release(rsum); sf_release(g); sf_release(gsum); sf_release(b); sf_release(bsum);
  sf_release(c); sf_release(ct);
  g_fail[rank] = bad;
  return 0;
}

static int failing_rank(int rank, void *arg) {
  return rank == 1 ? sf_error("planted failure") : 0;
}

static void test_two_emu_devices(void) {
  CHECK(sf_dist_run_threads(2, rank_main, NULL) == 0);
  CHECK(g_fail[0] == 0 && g_fail[1] == 0);
}

static void test_errors(void) {
  CHECK(sf_dist_run_threads(3, rank_main, NULL) != 0); /* only 2 emu devices */
  CHECK_ERROR_MENTIONS("SFWB_EMU_DEVICES");
  CHECK(sf_dist_run_threads(2, failing_rank, NULL) != 0);
  CHECK_ERROR_MENTIONS("rank 1 failed: planted failure");
  /* outside a launcher the world is one rank and collectives are the identity */
  CHECK(sf_dist_world_size() == 1 && sf_dist_rank() == 0);
  int64_t n = 3;
  sf_tensor *t = sf_full(1, &n, 2, SF_F32, sf_cpu());
  CHECK(sf_dist_all_reduce(t, SF_DIST_SUM) == 0);
  sf_tensor *s = sf_reduce(SF_RED_SUM, t, SF_ALL_DIMS, false);
  CHECK(sf_item(s) == 6);
  sf_release(t);
  sf_release(s);
}

int main(void) {
  setenv("SFWB_EMU_DEVICES", "2", 1);
  unsetenv("OMPI_COMM_WORLD_SIZE");
  sf_backends_init();
  RUN(test_two_emu_devices);
  RUN(test_errors);
  TEST_DONE();
}
