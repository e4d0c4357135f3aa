/* cpu_nn_attn.c — CPU flash-style attention: per (batch, head) and query tile, key blocks are scored with
 * an SGEMM, softmaxed online (running max / denominator, f32), and accumulated into the output with a
 * second SGEMM; memory is O(tile x key block), never [N, N]. Visible key ranges per query group cover
 * full / block-causal / KV-slice attention. Capture reads the scores and probabilities the output is
 * built from (logit sums directly, probability sums rescaled like the output), so attaching a capture
 * cannot change a single output bit. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn_ops.h"
#include <stdatomic.h>

#include "backend/cpu/cpu_nn_util.h"
#include "backend/cpu/cpu_pool.h"
#include "core/error.h"

enum { TQ = 256, KB = 2048 };

/* exp for the softmax: Cody-Waite range reduction + degree-7 Taylor (error < 2 ulp), written so the
 * compiler vectorizes the row loops (libm's expf does not vectorize here) */
static inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float n = rintf(x * 1.44269504088896341f);
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, 4);
  return p * scale;
}

/* Row reductions over LANES independent partial results, so the compiler vectorizes them (one running
 * value would be a serial dependency chain: a float sum is not reassociated without -ffast-math). */
enum { LANES = 16 };

static float row_max(const float *s, int64_t n, float init) {
  float l[LANES];
  for (int k = 0; k < LANES; k++) l[k] = init;
  int64_t j = 0;
  for (; j + LANES <= n; j += LANES)
    for (int k = 0; k < LANES; k++) l[k] = s[j + k] > l[k] ? s[j + k] : l[k];
  for (; j < n; j++) l[0] = s[j] > l[0] ? s[j] : l[0];
  float mx = l[0];
  for (int k = 1; k < LANES; k++) mx = l[k] > mx ? l[k] : mx;
  return mx;
}

/* s[j] = exp(s[j] - mx) in place; returns their sum */
static float row_exp_sum(float *s, int64_t n, float mx) {
  float l[LANES] = {0};
  int64_t j = 0;
  for (; j + LANES <= n; j += LANES)
    for (int k = 0; k < LANES; k++) {
      const float p = exp_approx(s[j + k] - mx);
      s[j + k] = p;
      l[k] += p;
    }
  for (; j < n; j++) {
    const float p = exp_approx(s[j] - mx);
    s[j] = p;
    l[0] += p;
  }
  float sum = 0.0f;
  for (int k = 0; k < LANES; k++) sum += l[k];
  return sum;
}

typedef struct {
  const float *q, *k, *v; /* f32 head views (row stride ld*) */
  int64_t ldq, ldk, ldv;
} head_view;

/* f32 views of q/k/v for head h of batch b: direct pointers for f32 inputs, else converted copies */
static int head_f32(const sf_tensor *t, int64_t b, int64_t h, float *buf, const float **p, int64_t *ld) {
  const int64_t L = t->shape[1], d = t->shape[3];
  if (t->dtype == SF_F32) {
    *p = (const float *)sf_data_ptr(t) + b * t->stride[0] + h * t->stride[2];
    *ld = t->stride[1];
    return 0;
  }
  const char *base = (const char *)sf_data_ptr(t);
  const size_t es = sf_dtype_size(t->dtype);
  for (int64_t j = 0; j < L; j++) {
    const void *src = base + (b * t->stride[0] + j * t->stride[1] + h * t->stride[2]) * (int64_t)es;
    for (int64_t c = 0; c < d; c++) buf[j * d + c] = sf_nn_ld(src, t->dtype, c);
  }
  *p = buf;
  *ld = d;
  return 0;
}

typedef struct {
  const sf_tensor *q, *k, *v;
  sf_tensor *out, *lse;
  const sf_attn_desc *ds;
  int64_t B, Lq, Lk, H, d, qg, kg, n_qg, n_kg;
  float scale, invB;
  float *capl, *capp, *tokl, *tokp;
} attn_job;

typedef struct {
  float *qb, *kb, *vb, *S, *O, *m, *l, *corr, *tokp_row;
  double *accp;
} attn_bufs;

static void bufs_free(attn_bufs *w) {
  /* S and O live in the thread's scratch (sf_cpu_scratch slot 1) */
  free(w->qb), free(w->kb), free(w->vb), free(w->m), free(w->l), free(w->corr), free(w->accp), free(w->tokp_row);
}

static int bufs_alloc(attn_bufs *w, const attn_job *J) {
  memset(w, 0, sizeof *w);
  const size_t ntq = (size_t)(TQ < J->Lq ? TQ : J->Lq), nkb = (size_t)(KB < J->Lk ? KB : J->Lk);
  const int64_t d = J->d;
  int ok = 1;
  if (J->q->dtype != SF_F32) ok &= (w->qb = malloc(sizeof(float) * (size_t)(J->Lq * d))) != NULL;
  if (J->k->dtype != SF_F32) ok &= (w->kb = malloc(sizeof(float) * (size_t)(J->Lk * d))) != NULL;
  if (J->v->dtype != SF_F32) ok &= (w->vb = malloc(sizeof(float) * (size_t)(J->Lk * d))) != NULL;
  /* the score tile (~0.8 MB at 1560 keys) is reused across calls: a fresh one faults in every page */
  const size_t nS = (ntq * nkb + 16) & ~(size_t)15;
  float *sc = sf_cpu_scratch(1, sizeof(float) * (nS + ntq * (size_t)d + 16));
  ok &= sc != NULL;
  w->S = sc;
  w->O = sc ? sc + nS : NULL;
  ok &= (w->m = malloc(sizeof(float) * (ntq + 1))) != NULL;
  ok &= (w->l = malloc(sizeof(float) * (ntq + 1))) != NULL;
  ok &= (w->corr = malloc(sizeof(float) * (ntq + 1))) != NULL;
  if (J->capp || J->tokp) ok &= (w->accp = calloc(ntq * (size_t)J->n_kg + 1, sizeof(double))) != NULL;
  if (J->tokp) ok &= (w->tokp_row = malloc(sizeof(float) * (ntq * (size_t)(J->ds->tk1 - J->ds->tk0) + 1))) != NULL;
  return ok ? 0 : -1;
}

/* one (batch, head): every query tile of every query group */
static void attn_bh(const attn_job *J, attn_bufs *w, int64_t b, int64_t h) {
  const sf_attn_desc *ds = J->ds;
  const int64_t Lq = J->Lq, Lk = J->Lk, H = J->H, d = J->d, qg = J->qg, kg = J->kg, n_qg = J->n_qg, n_kg = J->n_kg;
  const float scale = J->scale, invB = J->invB;
  float *capl = J->capl, *capp = J->capp, *tokl = J->tokl, *tokp = J->tokp;
  float *S = w->S, *O = w->O, *m = w->m, *l = w->l, *corr = w->corr, *tokp_row = w->tokp_row;
  double *accp = w->accp;
  sf_tensor *out = J->out, *lse = J->lse;
  const float *Q, *K, *V;
  int64_t ldq, ldk, ldv;
  head_f32(J->q, b, h, w->qb, &Q, &ldq);
  head_f32(J->k, b, h, w->kb, &K, &ldk);
  head_f32(J->v, b, h, w->vb, &V, &ldv);
  for (int64_t g = 0; g < n_qg; g++) {
    const int64_t lo = ds->kv_lo ? ds->kv_lo[g] : 0, hi = ds->kv_hi ? ds->kv_hi[g] : Lk;
    /* query tiles of (nearly) equal height, at most TQ: no thin last tile */
    const int64_t ntq = (qg + TQ - 1) / TQ, tq = (qg + ntq - 1) / ntq;
    for (int64_t r0 = g * qg; r0 < (g + 1) * qg; r0 += tq) {
      const int64_t nq = r0 + tq <= (g + 1) * qg ? tq : (g + 1) * qg - r0;
      for (int64_t i = 0; i < nq; i++) m[i] = -INFINITY, l[i] = 0.0f;
      memset(O, 0, sizeof(float) * (size_t)(nq * d));
      if (accp) memset(accp, 0, sizeof(double) * (size_t)(nq * n_kg));
      for (int64_t k0 = lo; k0 < hi; k0 += KB) {
        const int64_t nk = k0 + KB <= hi ? KB : hi - k0;
        /* S = scale * Q K^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)d, scale, Q + r0 * ldq, (int)ldq,
                    K + k0 * ldk, (int)ldk, 0.0f, S, (int)nk);
        for (int64_t i = 0; i < nq; i++) {
          float *s = S + i * nk;
          /* capture of logits needs no normalisation: sum them before the scores become probabilities */
          if (capl) {
            float *cl = capl + (h * n_qg + g) * n_kg;
            for (int64_t j = 0; j < nk;) {
              const int64_t gi = (k0 + j) / kg, je = (gi + 1) * kg - k0 < nk ? (gi + 1) * kg - k0 : nk;
              double sl = 0;
              for (int64_t jj = j; jj < je; jj++) sl += s[jj];
              cl[gi] += (float)sl;
              j = je;
            }
          }
          if (tokl && r0 + i >= ds->tq0 && r0 + i < ds->tq1) {
            const int64_t nkk = ds->tk1 - ds->tk0;
            for (int64_t jj = 0; jj < nk; jj++)
              if (k0 + jj >= ds->tk0 && k0 + jj < ds->tk1)
                tokl[(h * (ds->tq1 - ds->tq0) + (r0 + i - ds->tq0)) * nkk + (k0 + jj - ds->tk0)] += s[jj] * invB;
          }
          const float mx = row_max(s, nk, m[i]);
          const float c = m[i] == -INFINITY ? 0.0f : exp_approx(m[i] - mx);
          const float sum = row_exp_sum(s, nk, mx);
          l[i] = l[i] * c + sum;
          m[i] = mx;
          corr[i] = c;
          float *o = O + i * d;
          for (int64_t cc = 0; cc < d; cc++) o[cc] *= c;
          if (accp) {
            double *ap = accp + i * n_kg;
            for (int64_t gi = 0; gi < n_kg; gi++) ap[gi] *= c;
            for (int64_t j = 0; j < nk;) {
              const int64_t gi = (k0 + j) / kg, je = (gi + 1) * kg - k0 < nk ? (gi + 1) * kg - k0 : nk;
              double sp = 0;
              for (int64_t jj = j; jj < je; jj++) sp += s[jj];
              ap[gi] += sp;
              j = je;
            }
          }
        }
        /* O += P V */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)d, (int)nk, 1.0f, S, (int)nk, V + k0 * ldv,
                    (int)ldv, 1.0f, O, (int)d);
        /* token-level probabilities: keep this block's unnormalised values, rescaled at the end */
        if (tokp) {
          const int64_t nkk = ds->tk1 - ds->tk0;
          for (int64_t i = 0; i < nq; i++) {
            if (r0 + i < ds->tq0 || r0 + i >= ds->tq1) continue;
            float *tr = tokp_row + i * nkk;
            if (k0 == lo)
              for (int64_t jj = 0; jj < nkk; jj++) tr[jj] = 0.0f;
            else
              for (int64_t jj = 0; jj < nkk; jj++) tr[jj] *= corr[i];
            for (int64_t jj = 0; jj < nk; jj++)
              if (k0 + jj >= ds->tk0 && k0 + jj < ds->tk1) tr[k0 + jj - ds->tk0] = S[i * nk + jj];
          }
        }
      }
      for (int64_t i = 0; i < nq; i++) {
        const float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
        const int64_t row = ((b * Lq + r0 + i) * H + h) * d;
        for (int64_t c = 0; c < d; c++) sf_nn_st(sf_data_ptr(out), out->dtype, row + c, O[i * d + c] * inv);
        if (lse) ((float *)sf_data_ptr(lse))[(b * H + h) * Lq + r0 + i] = l[i] > 0 ? m[i] + logf(l[i]) : -INFINITY;
        if (capp && l[i] > 0) {
          float *cp = capp + (h * n_qg + g) * n_kg;
          for (int64_t gi = 0; gi < n_kg; gi++) cp[gi] += (float)(accp[i * n_kg + gi] / l[i]);
        }
        if (tokp && l[i] > 0 && r0 + i >= ds->tq0 && r0 + i < ds->tq1) {
          const int64_t nkk = ds->tk1 - ds->tk0;
          float *dst = tokp + (h * (ds->tq1 - ds->tq0) + (r0 + i - ds->tq0)) * nkk;
          for (int64_t jj = 0; jj < nkk; jj++)
            if (!isnan(dst[jj])) dst[jj] += tokp_row[i * nkk + jj] * inv * invB;
        }
      }
    }
  }
}

/* heads handed out one at a time (dynamic: capture and masks make their costs uneven) */
typedef struct {
  const attn_job *J;
  atomic_long next;
  atomic_int failed;
} heads_job;

static void heads_part(void *vj, int t, int nt) {
  (void)t, (void)nt;
  heads_job *hj = vj;
  const attn_job *J = hj->J;
  attn_bufs w;
  if (bufs_alloc(&w, J) != 0) {
    atomic_store(&hj->failed, 1);
    bufs_free(&w);
    return;
  }
  for (int64_t h; (h = atomic_fetch_add(&hj->next, 1)) < J->H;)
    for (int64_t b = 0; b < J->B; b++) attn_bh(J, &w, b, h);
  bufs_free(&w);
}

int sf_cpu_attention(sf_tensor *out, const sf_tensor *q, const sf_tensor *k, const sf_tensor *v, const sf_attn_desc *ds,
                     sf_tensor *lse) {
  attn_job J = {q, k, v, out, lse, ds, q->shape[0], q->shape[1], k->shape[1], q->shape[2], q->shape[3], 0, 0, 0, 0, 0, 0,
                NULL, NULL, NULL, NULL};
  J.qg = ds->q_group > 0 ? ds->q_group : J.Lq;
  J.kg = ds->k_group > 0 ? ds->k_group : J.Lk;
  J.n_qg = J.Lq / J.qg, J.n_kg = J.Lk / J.kg;
  J.scale = (float)ds->scale, J.invB = 1.0f / (float)J.B;
  J.capl = ds->cap_logits ? (float *)sf_data_ptr(ds->cap_logits) : NULL;
  J.capp = ds->cap_probs ? (float *)sf_data_ptr(ds->cap_probs) : NULL;
  J.tokl = ds->tok_logits ? (float *)sf_data_ptr(ds->tok_logits) : NULL;
  J.tokp = ds->tok_probs ? (float *)sf_data_ptr(ds->tok_probs) : NULL;
  const int64_t Lk = J.Lk, H = J.H, qg = J.qg;
  float *tokl = J.tokl, *tokp = J.tokp;
  /* token-level: invisible pairs are NaN */
  if (tokl || tokp) {
    const int64_t nq = ds->tq1 - ds->tq0, nk = ds->tk1 - ds->tk0;
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < nq; i++) {
        const int64_t g = (ds->tq0 + i) / qg;
        const int64_t lo = ds->kv_lo ? ds->kv_lo[g] : 0, hi = ds->kv_hi ? ds->kv_hi[g] : Lk;
        for (int64_t j = 0; j < nk; j++) {
          const int64_t kj = ds->tk0 + j;
          if (kj >= lo && kj < hi) continue;
          if (tokl) tokl[(h * nq + i) * nk + j] = NAN;
          if (tokp) tokp[(h * nq + i) * nk + j] = NAN;
        }
      }
  }
  /* One threading layer only: heads across the CPU pool's threads, each calling single-threaded SGEMMs
   * (mixing parallel regions with OpenBLAS's own threads per tile made both spin against each other).
   * Heads own their capture cells, so threads never write the same cell; batches run inside a head. */
  const int nb = openblas_get_num_threads();
  const int par = H > 1 && J.Lq * J.Lk * J.d >= 65536;
  heads_job hj = {&J, 0, 0};
  const int nt = par ? sf_cpu_threads(H, 2) : 1;
  if (nt > 1) openblas_set_num_threads(1);
  sf_cpu_parallel(nt, heads_part, &hj);
  if (nt > 1) openblas_set_num_threads(nb);
  const int failed = atomic_load(&hj.failed);
  if (failed) return sf_error("attention: out of memory for its tiles (Lq %lld, Lk %lld)", (long long)J.Lq, (long long)J.Lk);
  return 0;
}
