/* test_philox.c — the shared Philox4x32-10 generator (core/philox.h) against the Random123 known
 * answer and an independent Python transcription (tests/ref/philox_ref.py, which checks itself
 * against all Random123 vectors), and the statistics of sfwb.randn / rand draws. */
#include <stdio.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/philox.h"
#include "sf_test.h"
#include "tensor_ref.h"

static void test_known_answer(void) {
  /* Random123 kat_vectors: philox4x32 10, ctr 0, key 0 */
  sf_philox4 r = sf_philox4x32_10(0, 0);
  CHECK(r.v[0] == 0x6627e8d5u && r.v[1] == 0xe169c58du && r.v[2] == 0xbc57ac4cu && r.v[3] == 0x9b00dbd8u);
}

static void test_against_python(void) {
  static const uint64_t cases[][2] = {
      {0, 0}, {1, 0}, {2, 0}, {0, 1}, {12345, 42}, {0xffffffffull, 7}, {0x100000000ull, 7},
      {0xdeadbeefcafef00dull, 0x0123456789abcdefull}, {999999, 0xffffffffffffffffull}, {1ull << 40, 2024},
  };
  int n = sizeof cases / sizeof cases[0];
  char path[256];
  snprintf(path, sizeof path, "/tmp/sfwb_philox_%d.txt", (int)getpid());
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (!f) return;
  for (int i = 0; i < n; i++) fprintf(f, "%llu %llu\n", (unsigned long long)cases[i][0], (unsigned long long)cases[i][1]);
  fclose(f);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/philox_ref.py < %s", path);
  FILE *p = popen(cmd, "r");
  CHECK(p != NULL);
  if (!p) return;
  int rows = 0;
  for (int i = 0; i < n; i++) {
    unsigned w[4];
    double normal, uniform;
    if (fscanf(p, "%x %x %x %x %lf %lf", &w[0], &w[1], &w[2], &w[3], &normal, &uniform) != 6) break;
    rows++;
    sf_philox4 r = sf_philox4x32_10(cases[i][0], cases[i][1]);
    int ok = r.v[0] == w[0] && r.v[1] == w[1] && r.v[2] == w[2] && r.v[3] == w[3];
    ok &= sf_philox_normal(cases[i][1], cases[i][0]) == (float)normal;
    ok &= sf_philox_uniform(cases[i][1], cases[i][0]) == (float)uniform;
    if (!ok) {
      fprintf(stderr, "  counter %llu seed %llu: %08x %08x %08x %08x n=%.9g u=%.9g, python %08x %08x %08x %08x n=%.9g u=%.9g\n",
              (unsigned long long)cases[i][0], (unsigned long long)cases[i][1], r.v[0], r.v[1], r.v[2], r.v[3],
              sf_philox_normal(cases[i][1], cases[i][0]), sf_philox_uniform(cases[i][1], cases[i][0]), w[0], w[1], w[2],
              w[3], normal, uniform);
      CHECK(0);
    }
  }
  int rc = pclose(p);
  remove(path);
  CHECK(rows == n);
  CHECK(rc == 0); /* the script exits non-zero if its own Random123 check fails */
}

static void test_randn_statistics(void) {
  int64_t n = 1 << 20;
  sf_manual_seed(2024);
  sf_tensor *a = sf_randn(1, &n, SF_F32, sf_cpu());
  double *v = ref_read(a);
  double s = 0, s2 = 0, s4 = 0;
  int64_t beyond3 = 0;
  for (int64_t i = 0; i < n; i++) s += v[i];
  double mean = s / n;
  for (int64_t i = 0; i < n; i++) {
    double d = v[i] - mean;
    s2 += d * d;
    s4 += d * d * d * d;
    beyond3 += fabs(v[i]) > 3;
    CHECK(isfinite(v[i]));
  }
  double var = s2 / (n - 1), kurt = s4 / n / (var * var);
  CHECK(fabs(mean) < 5.0 / sqrt((double)n)); /* 5 sigma */
  CHECK(fabs(sqrt(var) - 1) < 0.005);
  CHECK(fabs(kurt - 3) < 0.05);
  CHECK(fabs((double)beyond3 / n - 0.0027) < 0.0005); /* two-sided tail beyond 3 sigma */
  free(v);
  sf_release(a);
}

static void test_rand_statistics(void) {
  int64_t n = 1 << 20;
  sf_manual_seed(7);
  sf_tensor *a = sf_rand(1, &n, SF_F32, sf_cpu());
  double *v = ref_read(a);
  int64_t bins[16] = {0};
  double s = 0;
  int in_range = 1;
  for (int64_t i = 0; i < n; i++) {
    in_range &= v[i] >= 0 && v[i] < 1;
    s += v[i];
    int b = (int)(v[i] * 16);
    bins[b < 0 ? 0 : b > 15 ? 15 : b]++;
  }
  CHECK(in_range);
  CHECK(fabs(s / n - 0.5) < 5 * sqrt(1.0 / 12 / n));
  double chi2 = 0, e = n / 16.0;
  for (int b = 0; b < 16; b++) chi2 += (bins[b] - e) * (bins[b] - e) / e;
  CHECK(chi2 < 40); /* 15 dof: p < 0.001 */
  /* different seeds give different streams, the same seed the same one */
  sf_manual_seed(7);
  sf_tensor *b = sf_rand(1, (int64_t[]){8}, SF_F32, sf_cpu());
  sf_manual_seed(8);
  sf_tensor *c = sf_rand(1, (int64_t[]){8}, SF_F32, sf_cpu());
  int same = 1, diff = 0;
  for (int i = 0; i < 8; i++) { same &= ref_get(SF_F32, ref_addr(b, i)) == v[i]; diff += ref_get(SF_F32, ref_addr(c, i)) != v[i]; }
  CHECK(same && diff >= 7);
  free(v);
  sf_release(a); sf_release(b); sf_release(c);
}

int main(void) {
  sf_backends_init();
  RUN(test_known_answer);
  RUN(test_against_python);
  RUN(test_randn_statistics);
  RUN(test_rand_statistics);
  TEST_DONE();
}
