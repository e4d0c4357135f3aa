/* enc_kernels.c — f32 CPU kernels for the encoders (see enc_kernels.h); GEMMs go to OpenBLAS,
 * elementwise loops are OpenMP-parallel. */
#include "models/enc_kernels.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
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

float *sf_enc_f32_copy(const sf_tensor *t, int64_t expect, const char *what) {
  if (check_weight(t, expect, what)) return NULL;
  float *dst = malloc((expect ? expect : 1) * sizeof(float));
  if (!dst) {
    sf_error("out of memory copying weight '%s'", what);
    return NULL;
  }
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

void sf_enc_conv1x1(const float *w, const float *bias, int64_t N, int64_t K, const float *x, int64_t P, float *y) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)P, (int)K, 1.0f, w, (int)K, x, (int)P, 0.0f, y,
              (int)P);
  if (bias) {
#pragma omp parallel for schedule(static) if((int64_t)(N * P) > SF_PAR_MIN)
    for (int64_t i = 0; i < N; i++)
      for (int64_t j = 0; j < P; j++) y[i * P + j] += bias[i];
  }
}

void sf_enc_rmsnorm(const float *x, int64_t rows, int64_t D, const float *w, float eps, float *y) {
#pragma omp parallel for schedule(static) if((int64_t)(rows * D) > SF_PAR_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * D;
    float *yr = y + r * D;
    double ss = 0;
    for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
    float inv = 1.0f / sqrtf((float)(ss / D) + eps);
    for (int64_t i = 0; i < D; i++) yr[i] = w[i] * (xr[i] * inv);
  }
}

void sf_enc_layernorm(const float *x, int64_t rows, int64_t D, const float *w, const float *b, float eps, float *y) {
#pragma omp parallel for schedule(static) if((int64_t)(rows * D) > SF_PAR_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * D;
    float *yr = y + r * D;
    double s = 0, ss = 0;
    for (int64_t i = 0; i < D; i++) s += xr[i];
    double mean = s / D;
    for (int64_t i = 0; i < D; i++) {
      double dd = xr[i] - mean;
      ss += dd * dd;
    }
    float inv = (float)(1.0 / sqrt(ss / D + eps));
    float m = (float)mean;
    for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - m) * inv * w[i] + (b ? b[i] : 0.0f);
  }
}

void sf_enc_gelu_tanh(float *x, int64_t n) {
  const float c = 0.7978845608028654f; /* sqrt(2/pi) */
#pragma omp parallel for schedule(static) if((int64_t)(n) > SF_PAR_MIN)
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    x[i] = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
  }
}

void sf_enc_gelu_erf(float *x, int64_t n) {
#pragma omp parallel for schedule(static) if((int64_t)(n) > SF_PAR_MIN)
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    x[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
  }
}

void sf_enc_silu(float *x, int64_t n) {
#pragma omp parallel for schedule(static) if((int64_t)(n) > SF_PAR_MIN)
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    x[i] = v / (1.0f + expf(-v));
  }
}

static void softmax_row(float *r, int64_t n) {
  float m = -INFINITY;
  for (int64_t j = 0; j < n; j++) m = r[j] > m ? r[j] : m;
  double s = 0;
  for (int64_t j = 0; j < n; j++) {
    r[j] = expf(r[j] - m);
    s += r[j];
  }
  float inv = (float)(1.0 / s);
  for (int64_t j = 0; j < n; j++) r[j] *= inv;
}

void sf_enc_softmax_rows(float *x, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if((int64_t)(rows * n) > SF_PAR_MIN)
  for (int64_t r = 0; r < rows; r++) softmax_row(x + r * n, n);
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
