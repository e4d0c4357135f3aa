/* enc_kernels.c — f32 CPU kernels for the encoders (see enc_kernels.h); GEMMs go to OpenBLAS,
 * elementwise loops are OpenMP-parallel. */
#include "models/enc_kernels.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "backend/cpu/cpu_pool.h"
#include "core/half.h"

float *sf_scratch_get(sf_scratch *s, size_t n) {
  if (n == 0) n = 1;
  if (s->cap < n) {
    float *p = realloc(s->p, n * sizeof(float));
    if (!p) {
      sf_error("out of memory allocating %zu floats of scratch", n);
      return NULL;
    }
    s->p = p, s->cap = n;
  }
  return s->p;
}

void sf_scratch_free(sf_scratch *s) {
  free(s->p);
  s->p = NULL, s->cap = 0;
}

static int check_weight(const sf_tensor *t, int64_t expect, const char *what) {
  char buf[96];
  if (!t) return sf_error("missing weight '%s'", what);
  if (sf_device_of(t).type != SF_DEV_CPU) return sf_error("weight '%s' must be on the cpu", what);
  if (sf_numel(t) != expect)
    return sf_error("weight '%s' has shape %s (%lld elements), expected %lld elements", what,
                    sf_shape_str(t, buf, sizeof buf), (long long)sf_numel(t), (long long)expect);
  if (!sf_is_contiguous(t)) return sf_error("weight '%s' is not contiguous", what);
  if (t->dtype != SF_F32 && t->dtype != SF_BF16 && t->dtype != SF_F16)
    return sf_error("weight '%s' has dtype %s (expected f32, bf16 or f16)", what, sf_dtype_name(t->dtype));
  return 0;
}

static void convert(const sf_tensor *t, int64_t n, float *dst) {
  const void *src = sf_data_ptr(t);
  if (t->dtype == SF_F32) {
    memcpy(dst, src, n * sizeof(float));
  } else if (t->dtype == SF_BF16) {
    const uint16_t *h = src;
#pragma omp parallel for schedule(static) if((int64_t)(n) > SF_PAR_MIN)
    for (int64_t i = 0; i < n; i++) dst[i] = sf_bf16_to_f32(h[i]);
  } else {
    const uint16_t *h = src;
#pragma omp parallel for schedule(static) if((int64_t)(n) > SF_PAR_MIN)
    for (int64_t i = 0; i < n; i++) dst[i] = sf_f16_to_f32(h[i]);
  }
}

const float *sf_enc_f32(const sf_tensor *t, int64_t expect, const char *what, sf_scratch *s) {
  if (check_weight(t, expect, what)) return NULL;
  if (t->dtype == SF_F32) return sf_data_ptr(t);
  float *dst = sf_scratch_get(s, expect);
  if (!dst) return NULL;
  convert(t, expect, dst);
  return dst;
}

void sf_enc_linear(const float *x, int64_t M, int64_t K, const float *w, int64_t N, const float *bias, float *y) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, x, (int)K, w, (int)K, 0.0f, y,
              (int)N);
  if (bias) {
#pragma omp parallel for schedule(static) if((int64_t)(M * N) > SF_PAR_MIN)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) y[i * N + j] += bias[j];
  }
}

/* rows [0, rows) cut among the CPU pool's threads (workers sleep after ~50 us, unlike OpenMP teams, so they
 * do not fight OpenBLAS's threads); `work` elements decide how many threads are worth it */
typedef void (*rows_fn)(void *ctx, int64_t r0, int64_t r1);
typedef struct { rows_fn fn; void *ctx; int64_t rows; } rows_job;

static void rows_worker(void *c, int t, int nt) {
  const rows_job *j = c;
  int64_t r0 = j->rows * t / nt, r1 = j->rows * (t + 1) / nt;
  if (r0 < r1) j->fn(j->ctx, r0, r1);
}

static void run_rows(int64_t rows, int64_t work, rows_fn fn, void *ctx) {
  int nt = sf_cpu_threads(work, (int64_t)1 << 16);
  if (nt > rows) nt = (int)rows;
  if (nt <= 1) {
    fn(ctx, 0, rows);
    return;
  }
  rows_job j = {fn, ctx, rows};
  sf_cpu_parallel(nt, rows_worker, &j);
}

typedef struct { const float *x, *w, *b; float *y; int64_t D; float eps; } norm_ctx;

static void rmsnorm_rows(void *c, int64_t r0, int64_t r1) {
  const norm_ctx *n = c;
  int64_t D = n->D;
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = n->x + r * D;
    float *yr = n->y + r * D;
    double ss = 0;
    for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
    float inv = 1.0f / sqrtf((float)(ss / D) + n->eps);
    for (int64_t i = 0; i < D; i++) yr[i] = n->w[i] * (xr[i] * inv);
  }
}

void sf_enc_rmsnorm(const float *x, int64_t rows, int64_t D, const float *w, float eps, float *y) {
  norm_ctx n = {x, w, NULL, y, D, eps};
  run_rows(rows, rows * D, rmsnorm_rows, &n);
}

static void layernorm_rows(void *c, int64_t r0, int64_t r1) {
  const norm_ctx *n = c;
  int64_t D = n->D;
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = n->x + r * D;
    float *yr = n->y + r * D;
    double s = 0, ss = 0;
    for (int64_t i = 0; i < D; i++) s += xr[i];
    double mean = s / D;
    for (int64_t i = 0; i < D; i++) {
      double dd = xr[i] - mean;
      ss += dd * dd;
    }
    float inv = (float)(1.0 / sqrt(ss / D + n->eps));
    float m = (float)mean;
    for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - m) * inv * n->w[i] + (n->b ? n->b[i] : 0.0f);
  }
}

void sf_enc_layernorm(const float *x, int64_t rows, int64_t D, const float *w, const float *b, float eps, float *y) {
  norm_ctx n = {x, w, b, y, D, eps};
  run_rows(rows, rows * D, layernorm_rows, &n);
}

/* elementwise maps over blocks of 4096 */
typedef struct { float *x; int64_t n; } map_ctx;
#define MAP_BLOCK 4096

/* 0.5 v (1 + tanh(u)) written as v / (1 + exp(-2u)): the same function without tanh's cancellation near
 * u << 0, and it vectorizes (sf_enc_expf) */
static void gelu_tanh_rows(void *c, int64_t b0, int64_t b1) {
  const map_ctx *m = c;
  const float k = 0.7978845608028654f; /* sqrt(2/pi) */
  int64_t e = b1 * MAP_BLOCK < m->n ? b1 * MAP_BLOCK : m->n;
  float *x = m->x;
  for (int64_t i = b0 * MAP_BLOCK; i < e; i++) {
    float v = x[i];
    float u = k * (v + 0.044715f * v * v * v);
    x[i] = v / (1.0f + sf_enc_expf(-2.0f * u));
  }
}

void sf_enc_gelu_tanh(float *x, int64_t n) {
  map_ctx m = {x, n};
  run_rows((n + MAP_BLOCK - 1) / MAP_BLOCK, n, gelu_tanh_rows, &m);
}

static void gelu_erf_rows(void *c, int64_t b0, int64_t b1) {
  const map_ctx *m = c;
  int64_t e = b1 * MAP_BLOCK < m->n ? b1 * MAP_BLOCK : m->n;
  for (int64_t i = b0 * MAP_BLOCK; i < e; i++) {
    float v = m->x[i];
    m->x[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
  }
}

void sf_enc_gelu_erf(float *x, int64_t n) {
  map_ctx m = {x, n};
  run_rows((n + MAP_BLOCK - 1) / MAP_BLOCK, n, gelu_erf_rows, &m);
}

typedef struct { float *x; int64_t n; } softmax_ctx;

static void softmax_rows_fn(void *c, int64_t r0, int64_t r1) {
  const softmax_ctx *m = c;
  int64_t n = m->n;
  for (int64_t r = r0; r < r1; r++) {
    float *row = m->x + r * n;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    double s = 0;
    for (int64_t j = 0; j < n; j++) {
      row[j] = sf_enc_expf(row[j] - mx);
      s += row[j];
    }
    float inv = (float)(1.0 / s);
    for (int64_t j = 0; j < n; j++) row[j] *= inv;
  }
}

void sf_enc_softmax_rows(float *x, int64_t rows, int64_t n) {
  softmax_ctx m = {x, n};
  run_rows(rows, rows * n, softmax_rows_fn, &m);
}

/* x += y over n floats */
typedef struct { float *x; const float *y; int64_t n; } add_ctx;

static void add_rows(void *c, int64_t b0, int64_t b1) {
  const add_ctx *m = c;
  int64_t e = b1 * MAP_BLOCK < m->n ? b1 * MAP_BLOCK : m->n;
  for (int64_t i = b0 * MAP_BLOCK; i < e; i++) m->x[i] += m->y[i];
}

void sf_enc_add(float *x, const float *y, int64_t n) {
  add_ctx m = {x, y, n};
  run_rows((n + MAP_BLOCK - 1) / MAP_BLOCK, n, add_rows, &m);
}

/* x *= y over n floats */
static void mul_rows(void *c, int64_t b0, int64_t b1) {
  const add_ctx *m = c;
  int64_t e = b1 * MAP_BLOCK < m->n ? b1 * MAP_BLOCK : m->n;
  for (int64_t i = b0 * MAP_BLOCK; i < e; i++) m->x[i] *= m->y[i];
}

void sf_enc_mul(float *x, const float *y, int64_t n) {
  add_ctx m = {x, y, n};
  run_rows((n + MAP_BLOCK - 1) / MAP_BLOCK, n, mul_rows, &m);
}

int sf_enc_attention(const float *q, int64_t ld_q, const float *k, const float *v, int64_t ld_kv, int64_t Lq,
                     int64_t Lk, int64_t H, int64_t d, float scale, const float *bias, const int64_t *key_mask,
                     float *out, sf_scratch *tmp) {
  float *S = sf_scratch_get(tmp, (size_t)Lq * Lk);
  if (!S) return -1;
  int64_t ldo = H * d;
  for (int64_t h = 0; h < H; h++) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Lq, (int)Lk, (int)d, scale, q + h * d, (int)ld_q,
                k + h * d, (int)ld_kv, 0.0f, S, (int)Lk);
    if (bias || key_mask) {
      const float *bh = bias ? bias + h * Lq * Lk : NULL;
#pragma omp parallel for schedule(static) if((int64_t)(Lq * Lk) > SF_PAR_MIN)
      for (int64_t i = 0; i < Lq; i++) {
        float *r = S + i * Lk;
        for (int64_t j = 0; j < Lk; j++) {
          float bb = bh ? bh[i * Lk + j] : 0.0f;
          if (key_mask && key_mask[j] == 0) bb = -FLT_MAX;
          r[j] += bb;
        }
      }
    }
    sf_enc_softmax_rows(S, Lq, Lk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Lq, (int)d, (int)Lk, 1.0f, S, (int)Lk, v + h * d,
                (int)ld_kv, 0.0f, out + h * d, (int)ldo);
  }
  return 0;
}
