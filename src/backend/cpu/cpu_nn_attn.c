/* cpu_nn_attn.c — CPU flash-style attention: online softmax over key tiles, f32 accumulation, O(N)
 * memory, per-query-group visible key ranges (full / block-causal / KV slices) and in-kernel capture.
 * Capture runs as a second sweep over the keys once a row's max and denominator are final, so the
 * output is computed by exactly the same instructions whether or not a capture is attached. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/nn_ops.h"
#include "backend/cpu/cpu_nn_util.h"
#include "core/error.h"

enum { TQ = 32, TK = 128 };

typedef struct {
  int64_t B, Lq, Lk, H, d;
  double scale;
  const sf_attn_desc *desc;
  int64_t n_qg, n_kg;
} attn_shape;

/* S[i][j] = scale * q_i . k_j for i < nq, j < nk; kt is K transposed [d][ldk] starting at key k0 */
static void tile_scores(float *restrict S, const float *restrict q, const float *restrict kt, int64_t ldk,
                        int64_t nq, int64_t nk, int64_t d, float scale) {
  for (int64_t i = 0; i < nq; i++) {
    float *restrict s = S + i * TK;
    for (int64_t j = 0; j < nk; j++) s[j] = 0.0f;
    const float *restrict qi = q + i * d;
    for (int64_t c = 0; c < d; c++) {
      const float qc = qi[c];
      const float *restrict kc = kt + c * ldk;
      for (int64_t j = 0; j < nk; j++) s[j] += qc * kc[j];
    }
    for (int64_t j = 0; j < nk; j++) s[j] *= scale;
  }
}

/* one (batch, head): all query tiles */
static void attn_head(const attn_shape *sh, int64_t b, int64_t h, const sf_tensor *q, const sf_tensor *k,
                      const sf_tensor *v, sf_tensor *out, sf_tensor *lse, float *kt, float *vb, float *qb,
                      float *S, float *O, float *capl, float *capp, float *tokl, float *tokp) {
  const int64_t Lq = sh->Lq, Lk = sh->Lk, d = sh->d, H = sh->H;
  const sf_attn_desc *ds = sh->desc;
  const float scale = (float)sh->scale;
  const size_t qes = sf_dtype_size(q->dtype), kes = sf_dtype_size(k->dtype), ves = sf_dtype_size(v->dtype);
  /* keys (transposed) and values of this head in f32 */
  for (int64_t j = 0; j < Lk; j++) {
    const void *kp = (const char *)sf_data_ptr(k) + (b * k->stride[0] + j * k->stride[1] + h * k->stride[2]) * (int64_t)kes;
    const void *vp = (const char *)sf_data_ptr(v) + (b * v->stride[0] + j * v->stride[1] + h * v->stride[2]) * (int64_t)ves;
    for (int64_t c = 0; c < d; c++) {
      kt[c * Lk + j] = sf_nn_ld(kp, k->dtype, c);
      vb[j * d + c] = sf_nn_ld(vp, v->dtype, c);
    }
  }
  const int64_t qg = ds && ds->q_group > 0 ? ds->q_group : Lq;
  const int64_t kg = ds && ds->k_group > 0 ? ds->k_group : Lk;
  const int capture = capl || capp || tokl || tokp;
  for (int64_t g = 0; g * qg < Lq; g++) {
    const int64_t lo = ds && ds->kv_lo ? ds->kv_lo[g] : 0, hi = ds && ds->kv_hi ? ds->kv_hi[g] : Lk;
    for (int64_t r0 = g * qg; r0 < (g + 1) * qg && r0 < Lq; r0 += TQ) {
      const int64_t nq = (r0 + TQ <= (g + 1) * qg ? TQ : (g + 1) * qg - r0);
      float m[TQ], l[TQ];
      for (int64_t i = 0; i < nq; i++) {
        const void *qp = (const char *)sf_data_ptr(q) + (b * q->stride[0] + (r0 + i) * q->stride[1] + h * q->stride[2]) * (int64_t)qes;
        for (int64_t c = 0; c < d; c++) qb[i * d + c] = sf_nn_ld(qp, q->dtype, c);
        m[i] = -INFINITY;
        l[i] = 0.0f;
      }
      memset(O, 0, sizeof(float) * (size_t)(nq * d));
      /* pass 1: online softmax and output */
      for (int64_t k0 = lo; k0 < hi; k0 += TK) {
        const int64_t nk = k0 + TK <= hi ? TK : hi - k0;
        tile_scores(S, qb, kt + k0, Lk, nq, nk, d, scale);
        for (int64_t i = 0; i < nq; i++) {
          float *s = S + i * TK;
          float mx = m[i];
          for (int64_t j = 0; j < nk; j++) mx = s[j] > mx ? s[j] : mx;
          const float corr = m[i] == -INFINITY ? 0.0f : expf(m[i] - mx);
          float sum = 0.0f;
          for (int64_t j = 0; j < nk; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
          }
          l[i] = l[i] * corr + sum;
          m[i] = mx;
          float *o = O + i * d;
          for (int64_t c = 0; c < d; c++) o[c] *= corr;
          for (int64_t j = 0; j < nk; j++) {
            const float p = s[j];
            const float *vj = vb + (k0 + j) * d;
            for (int64_t c = 0; c < d; c++) o[c] += p * vj[c];
          }
        }
      }
      for (int64_t i = 0; i < nq; i++) {
        const float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
        const int64_t row = ((b * Lq + r0 + i) * H + h) * d;
        for (int64_t c = 0; c < d; c++) sf_nn_st(sf_data_ptr(out), out->dtype, row + c, O[i * d + c] * inv);
        if (lse) ((float *)sf_data_ptr(lse))[(b * H + h) * Lq + r0 + i] = l[i] > 0 ? m[i] + logf(l[i]) : -INFINITY;
      }
      if (!capture) continue;
      /* pass 2: capture with the final max / denominator (output untouched) */
      const float invB = 1.0f / (float)sh->B;
      for (int64_t k0 = lo; k0 < hi; k0 += TK) {
        const int64_t nk = k0 + TK <= hi ? TK : hi - k0;
        tile_scores(S, qb, kt + k0, Lk, nq, nk, d, scale);
        for (int64_t i = 0; i < nq; i++) {
          const float *s = S + i * TK;
          const float inv = 1.0f / l[i];
          float *cl = capl ? capl + (h * sh->n_qg + g) * sh->n_kg : NULL;
          float *cp = capp ? capp + (h * sh->n_qg + g) * sh->n_kg : NULL;
          /* group-wise partial sums in double for accuracy over long rows */
          int64_t j = 0;
          while (j < nk) {
            const int64_t kgi = (k0 + j) / kg, jend = ((kgi + 1) * kg - k0) < nk ? (kgi + 1) * kg - k0 : nk;
            double sl = 0, sp = 0;
            for (int64_t jj = j; jj < jend; jj++) {
              sl += s[jj];
              sp += expf(s[jj] - m[i]) * inv;
            }
            if (cl) cl[kgi] += (float)sl;
            if (cp) cp[kgi] += (float)sp;
            j = jend;
          }
          const int64_t qi = r0 + i;
          if ((tokl || tokp) && qi >= ds->tq0 && qi < ds->tq1) {
            const int64_t nkk = ds->tk1 - ds->tk0;
            for (int64_t jj = 0; jj < nk; jj++) {
              const int64_t kj = k0 + jj;
              if (kj < ds->tk0 || kj >= ds->tk1) continue;
              const int64_t idx = (h * (ds->tq1 - ds->tq0) + (qi - ds->tq0)) * nkk + (kj - ds->tk0);
              if (tokl) tokl[idx] += s[jj] * invB;
              if (tokp) tokp[idx] += expf(s[jj] - m[i]) * inv * invB;
            }
          }
        }
      }
    }
  }
}

int sf_cpu_attention(sf_tensor *out, const sf_tensor *q, const sf_tensor *k, const sf_tensor *v,
                     const sf_attn_desc *desc, sf_tensor *lse) {
  attn_shape sh = {q->shape[0], q->shape[1], k->shape[1], q->shape[2], q->shape[3], 0, desc, 1, 1};
  sh.scale = desc ? desc->scale : 1.0 / sqrt((double)sh.d);
  const int64_t qg = desc && desc->q_group > 0 ? desc->q_group : sh.Lq;
  const int64_t kg = desc && desc->k_group > 0 ? desc->k_group : sh.Lk;
  sh.n_qg = qg ? (sh.Lq + qg - 1) / qg : 1;
  sh.n_kg = kg ? (sh.Lk + kg - 1) / kg : 1;
  float *capl = desc && desc->cap_logits ? (float *)sf_data_ptr(desc->cap_logits) : NULL;
  float *capp = desc && desc->cap_probs ? (float *)sf_data_ptr(desc->cap_probs) : NULL;
  float *tokl = desc && desc->tok_logits ? (float *)sf_data_ptr(desc->tok_logits) : NULL;
  float *tokp = desc && desc->tok_probs ? (float *)sf_data_ptr(desc->tok_probs) : NULL;
  /* token-level: invisible pairs are NaN */
  if (tokl || tokp) {
    const int64_t nq = desc->tq1 - desc->tq0, nk = desc->tk1 - desc->tk0;
    for (int64_t h = 0; h < sh.H; h++)
      for (int64_t i = 0; i < nq; i++) {
        const int64_t g = (desc->tq0 + i) / qg;
        const int64_t lo = desc->kv_lo ? desc->kv_lo[g] : 0, hi = desc->kv_hi ? desc->kv_hi[g] : sh.Lk;
        for (int64_t j = 0; j < nk; j++) {
          const int64_t kj = desc->tk0 + j;
          if (kj >= lo && kj < hi) continue;
          if (tokl) tokl[(h * nq + i) * nk + j] = NAN;
          if (tokp) tokp[(h * nq + i) * nk + j] = NAN;
        }
      }
  }
  const int64_t work = sh.B * sh.H;
  int failed = 0;
  /* each (b, h) is independent, but several batches share a capture cell: heads never collide, so
   * parallelise over heads and loop over the batch inside */
#pragma omp parallel if (work > 1 && (sh.Lq * sh.Lk * sh.d > 65536))
  {
    float *kt = malloc(sizeof(float) * (size_t)(sh.Lk * sh.d + 1));
    float *vb = malloc(sizeof(float) * (size_t)(sh.Lk * sh.d + 1));
    float *qb = malloc(sizeof(float) * (size_t)(TQ * sh.d));
    float *S = malloc(sizeof(float) * (size_t)(TQ * TK));
    float *O = malloc(sizeof(float) * (size_t)(TQ * sh.d));
    const int ok = kt && vb && qb && S && O;
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t h = 0; h < sh.H; h++)
      for (int64_t b = 0; b < sh.B && ok; b++)
        attn_head(&sh, b, h, q, k, v, out, lse, kt, vb, qb, S, O, capl, capp, tokl, tokp);
    free(kt), free(vb), free(qb), free(S), free(O);
  }
  if (failed) return sf_error("attention: out of memory for key/value tiles (Lk=%lld, d=%lld)", (long long)sh.Lk, (long long)sh.d);
  return 0;
}
