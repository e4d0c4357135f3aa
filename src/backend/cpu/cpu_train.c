/* cpu_train.c — the CPU backend's training ops: norm/RoPE/flash-attention backward, AdamW, sum of
 * squares, EMA (train_ops.h). Attached to sf_cpu_backend at start-up like the nn table. */
#include <cblas.h>
#include <limits.h>
#include <stdatomic.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_math.h"
#include "backend/cpu/cpu_nn_util.h"
#include "backend/cpu/cpu_pool.h"
#include "backend/train_ops.h"
#include "core/error.h"

int sf_cpu_matmul_acc(sf_tensor *out, const sf_tensor *a, const sf_tensor *b); /* cpu_matmul.c */

/* Threads: the CPU pool (cpu_pool.h), not OpenMP, whose idle threads spin for milliseconds after each
 * region and so fight OpenBLAS's threads for the cores between the GEMMs of a backward pass. */
static int nthreads(int64_t work, int64_t par_min) { return sf_cpu_threads(work, par_min); }

/* f64 inputs (gradient checks) keep full precision here; everything else computes in f32/f64 */
static inline double ldd(const void *p, sf_dtype dt, int64_t i) {
  return dt == SF_F64 ? ((const double *)p)[i] : (double)sf_nn_ld(p, dt, i);
}
static inline void std_(void *p, sf_dtype dt, int64_t i, double v) {
  if (dt == SF_F64) ((double *)p)[i] = v;
  else sf_nn_st(p, dt, i, (float)v);
}

/* per-thread [D] partial sums for dw/db, reduced at the end */
typedef struct {
  sf_tensor *dx;
  const sf_tensor *dy, *x, *w;
  double eps;
  int rms, nt;
  double *acc, *rowbuf;
} norm_job;

static void norm_part(void *vj, int tid, int nt_run) {
  const norm_job *J = vj;
  const sf_tensor *x = J->x, *dy = J->dy, *w = J->w;
  sf_tensor *dx = J->dx;
  const int rms = J->rms;
  const double eps = J->eps;
  const int64_t D = x->shape[x->ndim - 1], R = D ? sf_numel(x) / D : 0;
  const void *xp = sf_data_ptr(x), *gp = sf_data_ptr(dy), *wp = w ? sf_data_ptr(w) : NULL;
  void *dxp = dx ? sf_data_ptr(dx) : NULL;
  double *aw = J->acc + (size_t)tid * 2 * D, *ab = aw + D;
  double *xh = J->rowbuf + (size_t)tid * 2 * D, *dh = xh + D;
  const int64_t r0 = R * tid / nt_run, r1 = R * (tid + 1) / nt_run;
  if (x->dtype == SF_F32 && dy->dtype == SF_F32 && (!w || w->dtype == SF_F32) && (!dx || dx->dtype == SF_F32)) {
    /* f32: the same f64 math with direct loads and lane-split row sums, so it vectorizes */
    const float *wf = wp;
    for (int64_t r = r0; r < r1; r++) {
      const float *xr = (const float *)xp + r * D, *gr = (const float *)gp + r * D;
      const double mu = rms ? 0.0 : sf_nn_sum_d(xr, D) / D;
      const double rstd = (float)(1.0 / sqrt(sf_nn_sumsq_d(xr, D, mu) / D + eps));
      const double muf = rms ? 0.0 : (float)mu;
      for (int64_t c = 0; c < D; c++) {
        const double g = gr[c], xhc = (xr[c] - muf) * rstd;
        xh[c] = xhc;
        aw[c] += g * xhc;
        ab[c] += g;
        dh[c] = wf ? g * wf[c] : g;
      }
      double l1[8] = {0}, l2[8] = {0};
      int64_t c = 0;
      for (; c + 8 <= D; c += 8)
        for (int k = 0; k < 8; k++) {
          l1[k] += dh[c + k];
          l2[k] += dh[c + k] * xh[c + k];
        }
      for (; c < D; c++) {
        l1[0] += dh[c];
        l2[0] += dh[c] * xh[c];
      }
      if (!dxp) continue;
      const double s1 = (((l1[0] + l1[1]) + (l1[2] + l1[3])) + ((l1[4] + l1[5]) + (l1[6] + l1[7]))) / D;
      const double s2 = (((l2[0] + l2[1]) + (l2[2] + l2[3])) + ((l2[4] + l2[5]) + (l2[6] + l2[7]))) / D;
      float *o = (float *)dxp + r * D;
      for (int64_t c = 0; c < D; c++) o[c] = (float)(rstd * (dh[c] - (rms ? 0.0 : s1) - xh[c] * s2));
    }
    return;
  }
  for (int64_t r = r0; r < r1; r++) {
    double mu = 0, ss = 0;
    if (!rms) {
      for (int64_t c = 0; c < D; c++) mu += ldd(xp, x->dtype, r * D + c);
      mu /= D;
    }
    for (int64_t c = 0; c < D; c++) {
      double v = ldd(xp, x->dtype, r * D + c) - mu;
      ss += v * v;
    }
    /* the forward rounds rstd to f32; so do we (f64 inputs keep it exact) */
    double rstd = 1.0 / sqrt(ss / D + eps);
    if (x->dtype != SF_F64) rstd = (float)rstd;
    double s1 = 0, s2 = 0;
    for (int64_t c = 0; c < D; c++) {
      double g = ldd(gp, dy->dtype, r * D + c);
      xh[c] = (ldd(xp, x->dtype, r * D + c) - (rms ? 0.0 : (x->dtype == SF_F64 ? mu : (float)mu))) * rstd;
      aw[c] += g * xh[c];
      ab[c] += g;
      dh[c] = wp ? g * ldd(wp, w->dtype, c) : g;
      s1 += dh[c];
      s2 += dh[c] * xh[c];
    }
    if (!dxp) continue;
    s1 /= D;
    s2 /= D;
    for (int64_t c = 0; c < D; c++) std_(dxp, dx->dtype, r * D + c, rstd * (dh[c] - (rms ? 0.0 : s1) - xh[c] * s2));
  }
}

static int norm_bwd(sf_tensor *dx, sf_tensor *dw, sf_tensor *db, const sf_tensor *dy, const sf_tensor *x,
                    const sf_tensor *w, double eps, int rms) {
  const int64_t D = x->shape[x->ndim - 1], R = D ? sf_numel(x) / D : 0;
  const int nt = nthreads(R * D, 32768);
  double *acc = calloc((size_t)nt * 2 * (size_t)D + 1, sizeof(double));
  double *rowbuf = malloc(sizeof(double) * (size_t)nt * 2 * (size_t)D + 1);
  if (!acc || !rowbuf) { free(acc); free(rowbuf); return sf_error("norm backward: out of memory"); }
  norm_job J = {dx, dy, x, w, eps, rms, nt, acc, rowbuf};
  sf_cpu_parallel(nt, norm_part, &J);
  for (int t = 1; t < nt; t++)
    for (int64_t c = 0; c < 2 * D; c++) acc[c] += acc[(size_t)t * 2 * D + c];
  if (dw) for (int64_t c = 0; c < D; c++) std_(sf_data_ptr(dw), dw->dtype, c, acc[c]);
  if (db) for (int64_t c = 0; c < D; c++) std_(sf_data_ptr(db), db->dtype, c, acc[D + c]);
  free(acc);
  free(rowbuf);
  return 0;
}

static int cpu_layer_norm_bwd(sf_tensor *dx, sf_tensor *dw, sf_tensor *db, const sf_tensor *dy, const sf_tensor *x,
                              const sf_tensor *w, double eps) {
  return norm_bwd(dx, dw, db, dy, x, w, eps, 0);
}

static int cpu_rms_norm_bwd(sf_tensor *dx, sf_tensor *dw, const sf_tensor *dy, const sf_tensor *x, const sf_tensor *w,
                            double eps) {
  return norm_bwd(dx, dw, NULL, dy, x, w, eps, 1);
}

/* ---- RoPE: dx = R(-theta) dy per interleaved pair: the forward's kernel and f64 angles, inverted ---- */

static int cpu_rope3d_bwd(sf_tensor *dx, const sf_tensor *dy, int64_t F, int64_t Hp, int64_t Wp, int64_t f0) {
  return sf_cpu_rope3d_dir(dx, dy, F, Hp, Wp, f0, true);
}

/* ---- flash-attention backward ----
 * Per (batch, head), per tile of TQ queries of one visibility group and tile of TK visible keys:
 *   S = scale Q K^T, P = exp(S - lse), dV += P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO o O)),
 *   dQ += scale dS K, dK += scale dS^T Q. Memory: O(TQ x TK) scratch per thread, never Lq x Lk. */
#define BTQ 256
#define BTK 512

static void load_rows(float *dst, const sf_tensor *t, int64_t b, int64_t h, int64_t r0, int64_t n, int64_t d) {
  const size_t es = sf_dtype_size(t->dtype);
  for (int64_t i = 0; i < n; i++) {
    const void *p = (const char *)sf_data_ptr(t) + (b * t->stride[0] + (r0 + i) * t->stride[1] + h * t->stride[2]) * (int64_t)es;
    for (int64_t c = 0; c < d; c++) dst[i * d + c] = (float)ldd(p, t->dtype, c);
  }
}

/* rows r0.. of head h of batch b as an f32 matrix for BLAS: f32 tensors with unit inner stride are read in
 * place (row stride = the tensor's), anything else is converted into buf (row stride d) */
static bool f32_rows(const sf_tensor *t) { return t->dtype == SF_F32 && t->stride[3] == 1 && t->stride[1] <= INT_MAX; }

static const float *rows_f32(const sf_tensor *t, int64_t b, int64_t h, int64_t r0, int64_t n, int64_t d, float *buf,
                             int64_t *ld) {
  if (f32_rows(t)) {
    *ld = t->stride[1];
    return (const float *)sf_data_ptr(t) + b * t->stride[0] + r0 * t->stride[1] + h * t->stride[2];
  }
  load_rows(buf, t, b, h, r0, n, d);
  *ld = d;
  return buf;
}

/* a gradient written in place: contiguous f32 [B, L, H, d] (what the autograd engine allocates) */
static bool direct_grad(const sf_tensor *g) { return g && g->dtype == SF_F32 && sf_is_contiguous(g); }

static void zero_rows(float *p, int64_t n, int64_t d, int64_t ld) {
  for (int64_t i = 0; i < n; i++) memset(p + i * ld, 0, sizeof(float) * (size_t)d);
}

typedef struct {
  sf_tensor *dq, *dk, *dv;
  const sf_tensor *dout, *q, *k, *v, *out;
  const float *lsep;
  const sf_attn_desc *ds;
  float scale;
  int64_t qg;
  atomic_long next; /* heads handed out one at a time */
  atomic_int failed;
} attn_bwd_job;

static void attn_bwd_part(void *vj, int tid, int nt) {
  (void)tid, (void)nt;
  attn_bwd_job *J = vj;
  const sf_tensor *q = J->q, *k = J->k, *v = J->v, *out = J->out, *dout = J->dout;
  sf_tensor *dq = J->dq, *dk = J->dk, *dv = J->dv;
  const sf_attn_desc *ds = J->ds;
  const int64_t B = q->shape[0], Lq = q->shape[1], H = q->shape[2], d = q->shape[3], Lk = k->shape[1];
  const float scale = J->scale, *lsep = J->lsep;
  const int64_t qg = J->qg;
  const bool dq_in = direct_grad(dq), dk_in = direct_grad(dk), dv_in = direct_grad(dv);
  /* scratch only for what cannot be used in place */
  /* per-thread scratch kept between calls (sf_cpu_scratch): fresh buffers cost page faults every call */
  const size_t nkd = (size_t)(Lk * d), nqd = (size_t)BTQ * (size_t)d, nqk = (size_t)BTQ * BTK;
  const bool kin = f32_rows(k), vin = f32_rows(v);
  const size_t need = (kin ? 0 : nkd) + (vin ? 0 : nkd) + (dk_in ? 0 : nkd) + (dv_in ? 0 : nkd) + 4 * nqd + 2 * nqk + 16 * 10;
  float *sp = sf_cpu_scratch(0, sizeof(float) * need);
  float Di[BTQ], Li[BTQ];
  if (!sp) {
    atomic_store(&J->failed, 1);
    return;
  }
#define TAKE(n) (sp += ((n) + 15) & ~(size_t)15, sp - (((n) + 15) & ~(size_t)15))
  float *Kb = kin ? NULL : TAKE(nkd), *Vb = vin ? NULL : TAKE(nkd), *dKb = dk_in ? NULL : TAKE(nkd), *dVb = dv_in ? NULL : TAKE(nkd);
  float *Qb = TAKE(nqd), *dOb = TAKE(nqd), *Ob = TAKE(nqd), *dQb = TAKE(nqd), *P = TAKE(nqk), *dP = TAKE(nqk);
#undef TAKE
  for (int64_t bh; (bh = atomic_fetch_add(&J->next, 1)) < B * H;) {
    const int64_t b = bh / H, h = bh % H;
    int64_t ldk, ldv, lddk = d, lddv = d, lddq = d;
    const float *K = rows_f32(k, b, h, 0, Lk, d, Kb, &ldk), *V = rows_f32(v, b, h, 0, Lk, d, Vb, &ldv);
    float *dK = dKb, *dV = dVb;
    if (dk_in) dK = (float *)sf_data_ptr(dk) + (b * Lk * H + h) * d, lddk = H * d;
    if (dv_in) dV = (float *)sf_data_ptr(dv) + (b * Lk * H + h) * d, lddv = H * d;
    zero_rows(dK, Lk, d, lddk);
    zero_rows(dV, Lk, d, lddv);
    for (int64_t g = 0; g * qg < Lq; g++) {
      const int64_t lo = ds && ds->kv_lo ? ds->kv_lo[g] : 0, hi = ds && ds->kv_hi ? ds->kv_hi[g] : Lk;
      const int64_t gend = (g + 1) * qg < Lq ? (g + 1) * qg : Lq;
      /* key tiles of (nearly) equal size: no thin last tile */
      const int64_t nkt = hi > lo ? (hi - lo + BTK - 1) / BTK : 0, tk = nkt ? (hi - lo + nkt - 1) / nkt : 0;
      const int64_t nqt = (gend - g * qg + BTQ - 1) / BTQ, tqr = nqt ? (gend - g * qg + nqt - 1) / nqt : 1;
      for (int64_t r0 = g * qg; r0 < gend; r0 += tqr) {
        const int64_t nq = r0 + tqr <= gend ? tqr : gend - r0;
        int64_t ldq, lddo, ldo;
        const float *Q = rows_f32(q, b, h, r0, nq, d, Qb, &ldq), *dO = rows_f32(dout, b, h, r0, nq, d, dOb, &lddo);
        const float *O = rows_f32(out, b, h, r0, nq, d, Ob, &ldo);
        float *dQ = dQb;
        if (dq_in) dQ = (float *)sf_data_ptr(dq) + ((b * Lq + r0) * H + h) * d, lddq = H * d;
        zero_rows(dQ, nq, d, lddq);
        for (int64_t i = 0; i < nq; i++) {
          float s = 0;
          for (int64_t c = 0; c < d; c++) s += dO[i * lddo + c] * O[i * ldo + c];
          Di[i] = s;
          Li[i] = lsep[(b * H + h) * Lq + r0 + i];
        }
        for (int64_t k0 = lo; k0 < hi; k0 += tk) {
          const int64_t nk = k0 + tk <= hi ? tk : hi - k0;
          /* P = exp(scale Q K^T - lse) */
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)d, scale, Q, (int)ldq, K + k0 * ldk,
                      (int)ldk, 0.0f, P, (int)nk);
          for (int64_t i = 0; i < nq; i++) {
            float *pr = P + i * nk;
            const float li = Li[i];
            if (isinf(li)) memset(pr, 0, sizeof(float) * (size_t)nk);
            else
              for (int64_t j = 0; j < nk; j++) pr[j] = sf_cpu_expf(pr[j] - li);
          }
          /* dV += P^T dO */
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)d, (int)nq, 1.0f, P, (int)nk, dO, (int)lddo,
                      1.0f, dV + k0 * lddv, (int)lddv);
          /* dP = dO V^T; dS = P (dP - D) */
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)d, 1.0f, dO, (int)lddo, V + k0 * ldv,
                      (int)ldv, 0.0f, dP, (int)nk);
          for (int64_t i = 0; i < nq; i++) {
            float *dr = dP + i * nk;
            const float *pr = P + i * nk, di = Di[i];
            for (int64_t j = 0; j < nk; j++) dr[j] = pr[j] * (dr[j] - di);
          }
          /* dQ += scale dS K; dK += scale dS^T Q */
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)d, (int)nk, scale, dP, (int)nk, K + k0 * ldk,
                      (int)ldk, 1.0f, dQ, (int)lddq);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)d, (int)nq, scale, dP, (int)nk, Q, (int)ldq, 1.0f,
                      dK + k0 * lddk, (int)lddk);
        }
        if (dq && !dq_in)
          for (int64_t i = 0; i < nq; i++)
            for (int64_t c = 0; c < d; c++) std_(sf_data_ptr(dq), dq->dtype, ((b * Lq + r0 + i) * H + h) * d + c, dQ[i * d + c]);
      }
    }
    for (int64_t j = 0; j < Lk; j++)
      for (int64_t c = 0; c < d; c++) {
        const int64_t o = ((b * Lk + j) * H + h) * d + c;
        if (dk && !dk_in) std_(sf_data_ptr(dk), dk->dtype, o, dK[j * d + c]);
        if (dv && !dv_in) std_(sf_data_ptr(dv), dv->dtype, o, dV[j * d + c]);
      }
  }
}

static int cpu_attention_bwd(sf_tensor *dq, sf_tensor *dk, sf_tensor *dv, const sf_tensor *dout, const sf_tensor *q,
                             const sf_tensor *k, const sf_tensor *v, const sf_tensor *out, const sf_tensor *lse,
                             const sf_attn_desc *ds) {
  const int64_t B = q->shape[0], Lq = q->shape[1], H = q->shape[2], d = q->shape[3];
  attn_bwd_job J = {dq, dk, dv, dout, q, k, v, out, sf_data_ptr(lse), ds,
                    (float)(ds && ds->scale > 0 ? ds->scale : 1.0 / sqrt((double)d)), ds && ds->q_group > 0 ? ds->q_group : Lq,
                    0, 0};
  /* the heads run in parallel: OpenBLAS's own threads inside would fight them (measured 35x slower) */
  const int blas_threads = openblas_get_num_threads();
  const int nt = B * H > 1 ? nthreads(B * H, 2) : 1;
  if (nt > 1) openblas_set_num_threads(1);
  sf_cpu_parallel(nt, attn_bwd_part, &J);
  if (nt > 1) openblas_set_num_threads(blas_threads);
  return atomic_load(&J.failed) ? sf_error("attention backward: out of memory") : 0;
}

/* ---- elementwise backward of the activations (one pass instead of a chain of core ops) ---- */

/* f32 math (the forward computed in f32 too) with the vectorizable transcendentals of cpu_math.h */
static inline float unary_bwd_f(int op, float a) {
  if (op == SF_UN_GELU_TANH) {
    const float k = 0.7978845608f, c = 0.044715f, a2 = a * a, t = sf_cpu_tanhf(k * (a + c * a2 * a));
    return 0.5f * (1 + t) + 0.5f * a * (1 - t * t) * k * (1 + 3 * c * a2);
  }
  if (op == SF_UN_SILU) {
    const float s = sf_cpu_sigmoidf(a);
    return s * (1 + a * (1 - s));
  }
  if (op == SF_UN_TANH) {
    const float t = sf_cpu_tanhf(a);
    return 1 - t * t;
  }
  const float s = sf_cpu_sigmoidf(a);
  return s * (1 - s);
}

static inline double unary_bwd_d(int op, double a) {
  if (op == SF_UN_GELU_TANH) {
    const double k = 0.7978845608028654, c = 0.044715, t = tanh(k * (a + c * a * a * a));
    return 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * k * (1 + 3 * c * a * a);
  }
  if (op == SF_UN_SILU) {
    const double s = 1 / (1 + exp(-a));
    return s * (1 + a * (1 - s));
  }
  if (op == SF_UN_TANH) {
    const double t = tanh(a);
    return 1 - t * t;
  }
  const double s = 1 / (1 + exp(-a));
  return s * (1 - s);
}

typedef struct {
  int op;
  sf_tensor *dx;
  const sf_tensor *dy, *x;
} unary_job;

/* one loop per op so each vectorizes */
#define UNARY_F32_LOOP(OP)                                                              \
  for (int64_t i = lo; i < hi; i++) dxp[i] = gp[i] * unary_bwd_f(OP, xp[i]);

static void unary_bwd_range(void *vj, int64_t lo, int64_t hi) {
  const unary_job *J = vj;
  const int op = J->op;
  const sf_tensor *x = J->x, *dy = J->dy;
  sf_tensor *dx = J->dx;
  if (x->dtype == SF_F32 && dy->dtype == SF_F32 && dx->dtype == SF_F32) {
    const float *xp = sf_data_ptr(x), *gp = sf_data_ptr(dy);
    float *dxp = sf_data_ptr(dx);
    switch (op) {
    case SF_UN_GELU_TANH: UNARY_F32_LOOP(SF_UN_GELU_TANH) break;
    case SF_UN_SILU: UNARY_F32_LOOP(SF_UN_SILU) break;
    case SF_UN_TANH: UNARY_F32_LOOP(SF_UN_TANH) break;
    default: UNARY_F32_LOOP(SF_UN_SIGMOID) break;
    }
    return;
  }
  const void *gp = sf_data_ptr(dy), *xp = sf_data_ptr(x);
  void *dxp = sf_data_ptr(dx);
  if (x->dtype != SF_F64 && dy->dtype != SF_F64) {
    for (int64_t i = lo; i < hi; i++)
      sf_nn_st(dxp, dx->dtype, i, sf_nn_ld(gp, dy->dtype, i) * unary_bwd_f(op, sf_nn_ld(xp, x->dtype, i)));
    return;
  }
  for (int64_t i = lo; i < hi; i++) std_(dxp, dx->dtype, i, ldd(gp, dy->dtype, i) * unary_bwd_d(op, ldd(xp, x->dtype, i)));
}
#undef UNARY_F32_LOOP

/* the activations whose backward is fused here (asked through the backend's supports query) */
bool sf_cpu_fuses_unary_bwd(int op) {
  return op == SF_UN_GELU_TANH || op == SF_UN_SILU || op == SF_UN_TANH || op == SF_UN_SIGMOID;
}

static int cpu_unary_bwd(int op, sf_tensor *dx, const sf_tensor *dy, const sf_tensor *x) {
  if (!sf_cpu_fuses_unary_bwd(op)) return sf_error("unary_bwd: op %d is not fused on the cpu", op);
  const int64_t n = sf_numel(x);
  unary_job J = {op, dx, dy, x};
  sf_cpu_for(n, nthreads(n, 65536), unary_bwd_range, &J);
  return 0;
}

/* ---- optimizer pieces ---- */

/* torch.optim.AdamW (single-tensor path), op by op in f32 so results match to the last bit where possible:
 *   p *= 1 - lr wd; m = m b1 + (1 - b1) g; v = v b2 + (1 - b2) g g;
 *   p += -(lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps) */
typedef struct {
  sf_tensor *param, *master;
  const sf_tensor *grad, *w;
  float *m, *v;
  float decay, b1, b2, a1, a2, step_size, bc2s, fe;
} adamw_job;
static void adamw_range(void *vj, int64_t lo, int64_t hi);

static int cpu_adamw(sf_tensor *param, sf_tensor *master, const sf_tensor *grad, sf_tensor *exp_avg, sf_tensor *exp_avg_sq,
                     double lr, double beta1, double beta2, double eps, double weight_decay, double bc1, double bc2) {
  const int64_t n = sf_numel(param);
  sf_tensor *w = master ? master : param;
  const float decay = (float)(1.0 - lr * weight_decay), b1 = (float)beta1, b2 = (float)beta2;
  const float a1 = (float)(1.0 - beta1), a2 = (float)(1.0 - beta2);
  const float step_size = (float)(lr / bc1), bc2s = (float)sqrt(bc2), fe = (float)eps;
  float *m = sf_data_ptr(exp_avg), *v = sf_data_ptr(exp_avg_sq);
  adamw_job J = {param, master, grad, w, m, v, decay, b1, b2, a1, a2, step_size, bc2s, fe};
  sf_cpu_for(n, nthreads(n, 65536), adamw_range, &J);
  return 0;
}

static void adamw_range(void *vj, int64_t lo, int64_t hi) {
  const adamw_job *J = vj;
  const sf_tensor *param = J->param, *master = J->master, *grad = J->grad, *w = J->w;
  float *m = J->m, *v = J->v;
  const float decay = J->decay, b1 = J->b1, b2 = J->b2, a1 = J->a1, a2 = J->a2, step_size = J->step_size, bc2s = J->bc2s,
              fe = J->fe;
  const void *gp = sf_data_ptr(grad);
  void *wp = sf_data_ptr(w), *pp = sf_data_ptr(param);
  for (int64_t i = lo; i < hi; i++) {
    float g = sf_nn_ld(gp, grad->dtype, i);
    float p = sf_nn_ld(wp, w->dtype, i) * decay;
    float mi = m[i] * b1 + a1 * g;
    float vi = v[i] * b2 + a2 * g * g;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / bc2s + fe;
    p = p + (-step_size) * (mi / denom);
    sf_nn_st(wp, w->dtype, i, p);
    if (master) sf_nn_st(pp, param->dtype, i, p);
  }
}

typedef struct {
  const sf_tensor *t;
  int64_t n, per;
  double *part;
} sumsq_job;

static void sumsq_chunks(void *vj, int64_t c0, int64_t c1) {
  const sumsq_job *J = vj;
  const void *p = sf_data_ptr(J->t);
  for (int64_t c = c0; c < c1; c++) {
    double s = 0;
    const int64_t hi = (c + 1) * J->per < J->n ? (c + 1) * J->per : J->n;
    for (int64_t i = c * J->per; i < hi; i++) {
      double v = ldd(p, J->t->dtype, i);
      s += v * v;
    }
    J->part[c] = s;
  }
}

/* deterministic: fixed chunks summed in order, whatever the thread count or scheduling (an OpenMP
 * reduction combines in an unspecified order, and ranks of a data-parallel job must get identical norms) */
static int cpu_sum_sq(const sf_tensor *t, double *out) {
  enum { CHUNKS = 64 };
  const int64_t n = sf_numel(t), per = (n + CHUNKS - 1) / CHUNKS;
  double part[CHUNKS] = {0};
  sumsq_job J = {t, n, per, part};
  sf_cpu_for(CHUNKS, nthreads(n, 65536), sumsq_chunks, &J);
  double s = 0;
  for (int c = 0; c < CHUNKS; c++) s += part[c];
  *out = s;
  return 0;
}

typedef struct {
  float *s;
  const void *p;
  sf_dtype dt;
  float d, a;
} ema_job;

static void ema_range(void *vj, int64_t lo, int64_t hi) {
  const ema_job *J = vj;
  for (int64_t i = lo; i < hi; i++) J->s[i] = J->s[i] * J->d + J->a * sf_nn_ld(J->p, J->dt, i); /* mul_(d).add_(p, alpha=1-d) */
}

static int cpu_ema(sf_tensor *shadow, const sf_tensor *param, double decay) {
  const int64_t n = sf_numel(shadow);
  float *s = sf_data_ptr(shadow);
  const void *p = sf_data_ptr(param);
  ema_job J = {s, p, param->dtype, (float)decay, (float)(1.0 - decay)};
  sf_cpu_for(n, nthreads(n, 65536), ema_range, &J);
  return 0;
}

const sf_train_ops sf_cpu_train_ops = {
  .layer_norm_bwd = cpu_layer_norm_bwd,
  .rms_norm_bwd = cpu_rms_norm_bwd,
  .rope3d_bwd = cpu_rope3d_bwd,
  .attention_bwd = cpu_attention_bwd,
  .adamw = cpu_adamw,
  .sum_sq = cpu_sum_sq,
  .ema = cpu_ema,
  .unary_bwd = cpu_unary_bwd,
  .matmul_acc = sf_cpu_matmul_acc,
};

