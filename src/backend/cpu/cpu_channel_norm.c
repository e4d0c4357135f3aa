/* cpu_channel_norm.c — the Wan VAE's RMS_norm over channels on frame-major [T, C, H, W] f32 (the nn table's
 * channel_norm): F.normalize(x, dim=channels) * sqrt(C) * gamma, optionally followed by SiLU, in one pass
 * per block of 256 positions, blocks of every frame shared among the pool's threads. */
#include <math.h>

#include "backend/cpu/cpu_math.h"
#include "backend/cpu/cpu_pool.h"
#include "core/error.h"
#include "core/half.h"
#include "core/nn_ops.h"

static inline float bf(float x) { return sf_bf16_to_f32(sf_f32_to_bf16(x)); }

/* bf16: every op of F.normalize(x) * scale * gamma (then SiLU) rounds its output to bf16, computed in f32
 * from bf16 operands as the CUDA kernels do (the norm summed wider, the python scalar kept f32) */
static void norm_bf16(const float *f, float *o, int64_t HW, int C, int64_t np, const double *ss, const float *gamma,
                      float scale, int silu) {
  float nrm[256];
  for (int64_t p = 0; p < np; p++) {
    float n = bf((float)sqrt(ss[p]));
    nrm[p] = n > bf(1e-12f) ? n : bf(1e-12f);
  }
  for (int c = 0; c < C; c++) {
    const float *r = f + c * HW;
    float *q = o + c * HW;
    float sg = bf(gamma[c]);
    for (int64_t p = 0; p < np; p++) {
      float v = bf(bf(bf(r[p] / nrm[p]) * scale) * sg);
      q[p] = silu ? bf(v / (1.0f + sf_cpu_expf(-v))) : v;
    }
  }
}

typedef struct { const float *x; float *y; const float *gamma; int C, silu, bf16; int64_t HW, nblk; } norm_job;

static void norm_worker(void *ctx, int t, int nt) {
  const norm_job *j = ctx;
  int C = j->C;
  int64_t HW = j->HW, per = (HW + 255) / 256;
  float scale = sqrtf((float)C);
  float inv[256];
  double ss[256];
  for (int64_t blk = j->nblk * t / nt; blk < j->nblk * (t + 1) / nt; blk++) {
    const float *f = j->x + (blk / per) * C * HW;
    float *o = j->y + (blk / per) * C * HW;
    int64_t p0 = (blk % per) * 256, np = HW - p0 < 256 ? HW - p0 : 256;
    for (int64_t p = 0; p < np; p++) ss[p] = 0;
    for (int c = 0; c < C; c++) {
      const float *r = f + c * HW + p0;
      for (int64_t p = 0; p < np; p++) ss[p] += (double)r[p] * r[p];
    }
    if (j->bf16) {
      norm_bf16(f + p0, o + p0, HW, C, np, ss, j->gamma, scale, j->silu);
      continue;
    }
    for (int64_t p = 0; p < np; p++) {
      float n = (float)sqrt(ss[p]);
      inv[p] = scale / (n > 1e-12f ? n : 1e-12f); /* x / max(|x|, eps) * sqrt(C) to ~1 ulp */
    }
    for (int c = 0; c < C; c++) {
      const float *r = f + c * HW + p0;
      float *q = o + c * HW + p0;
      float sg = j->gamma[c];
      if (j->silu) {
        for (int64_t p = 0; p < np; p++) {
          float v = r[p] * inv[p] * sg;
          q[p] = v / (1.0f + sf_cpu_expf(-v));
        }
      } else {
        for (int64_t p = 0; p < np; p++) q[p] = r[p] * inv[p] * sg;
      }
    }
  }
}

int sf_cpu_channel_norm(sf_tensor *out, const sf_tensor *x, const sf_tensor *gamma, int silu, int bf16) {
  int64_t T = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
  norm_job j = {sf_data_ptr(x), sf_data_ptr(out), sf_data_ptr(gamma), (int)C, silu, bf16, HW, T * ((HW + 255) / 256)};
  sf_cpu_parallel(sf_cpu_threads(T * C * HW, (int64_t)1 << 16), norm_worker, &j);
  return 0;
}
