/* cpu_nn_norm.c — CPU LayerNorm, RMSNorm, adaLN modulation, gated residual and Wan 3-D RoPE. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/nn_ops.h"
#include "backend/cpu/cpu_nn_util.h"
#include "backend/cpu/cpu_pool.h"
#include "core/error.h"

/* rows split across the CPU pool (not OpenMP: its idle threads spin against OpenBLAS's) */
#define PAR_MIN 32768
static int nthreads(int64_t work) { return sf_cpu_threads(work, PAR_MIN); }

static int64_t rows_of(const sf_tensor *x, int64_t D) { return D ? sf_numel(x) / D : 0; }

typedef struct {
  sf_tensor *out;
  const sf_tensor *x, *w, *b;
  double eps;
  float *mp, *rp;
} ln_job;

static void ln_rows(void *vj, int64_t r0, int64_t r1) {
  const ln_job *J = vj;
  const sf_tensor *x = J->x, *w = J->w, *b = J->b;
  sf_tensor *out = J->out;
  const int64_t D = x->shape[x->ndim - 1];
  const double eps = J->eps;
  const void *xp = sf_data_ptr(x);
  void *op = sf_data_ptr(out);
  const void *wp = w ? sf_data_ptr(w) : NULL, *bp = b ? sf_data_ptr(b) : NULL;
  float *mp = J->mp, *rp = J->rp;
  const bool fast = out->dtype == SF_F32 && (!w || w->dtype == SF_F32) && (!b || b->dtype == SF_F32);
  float *buf = x->dtype == SF_F32 ? NULL : malloc(sizeof(float) * (size_t)(D + 1));
  if (x->dtype != SF_F32 && !buf) { /* out of memory for one row buffer: the slow path needs none */
    for (int64_t r = r0; r < r1; r++) {
      double s = 0, ss = 0;
      for (int64_t c = 0; c < D; c++) s += sf_nn_ld(xp, x->dtype, r * D + c);
      const double mu = s / D;
      for (int64_t c = 0; c < D; c++) {
        double d = sf_nn_ld(xp, x->dtype, r * D + c) - mu;
        ss += d * d;
      }
      const float rstd = (float)(1.0 / sqrt(ss / D + eps)), muf = (float)mu;
      if (mp) mp[r] = muf;
      if (rp) rp[r] = rstd;
      for (int64_t c = 0; c < D; c++) {
        float y = (sf_nn_ld(xp, x->dtype, r * D + c) - muf) * rstd;
        if (wp) y = y * sf_nn_ld(wp, w->dtype, c) + (bp ? sf_nn_ld(bp, b->dtype, c) : 0.0f);
        sf_nn_st(op, out->dtype, r * D + c, y);
      }
    }
    return;
  }
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = sf_nn_row_f32(xp, x->dtype, r, D, buf);
    const double mu = sf_nn_sum_d(xr, D) / D;
    const double ss = sf_nn_sumsq_d(xr, D, mu);
    const float rstd = (float)(1.0 / sqrt(ss / D + eps)), muf = (float)mu;
    if (mp) mp[r] = muf;
    if (rp) rp[r] = rstd;
    if (fast) {
      float *o = (float *)op + r * D;
      const float *wf = wp, *bf = bp;
      if (wf && bf)
        for (int64_t c = 0; c < D; c++) o[c] = (xr[c] - muf) * rstd * wf[c] + bf[c];
      else if (wf)
        for (int64_t c = 0; c < D; c++) o[c] = (xr[c] - muf) * rstd * wf[c] + 0.0f;
      else
        for (int64_t c = 0; c < D; c++) o[c] = (xr[c] - muf) * rstd;
      continue;
    }
    for (int64_t c = 0; c < D; c++) {
      float y = (xr[c] - muf) * rstd;
      if (wp) y = y * sf_nn_ld(wp, w->dtype, c) + (bp ? sf_nn_ld(bp, b->dtype, c) : 0.0f);
      sf_nn_st(op, out->dtype, r * D + c, y);
    }
  }
  free(buf);
}

int sf_cpu_layer_norm(sf_tensor *out, const sf_tensor *x, const sf_tensor *w, const sf_tensor *b, double eps,
                      sf_tensor *mean_out, sf_tensor *rstd_out) {
  const int64_t D = x->shape[x->ndim - 1], R = rows_of(x, D);
  ln_job J = {out, x, w, b, eps, mean_out ? (float *)sf_data_ptr(mean_out) : NULL,
              rstd_out ? (float *)sf_data_ptr(rstd_out) : NULL};
  sf_cpu_for(R, nthreads(R * D), ln_rows, &J);
  return 0;
}

static void rms_rows(void *vj, int64_t r0, int64_t r1) {
  const ln_job *J = vj;
  const sf_tensor *x = J->x, *w = J->w;
  const int64_t D = x->shape[x->ndim - 1];
  const double eps = J->eps;
  const void *xp = sf_data_ptr(x), *wp = w ? sf_data_ptr(w) : NULL;
  void *op = sf_data_ptr(J->out);
  float *rp = J->rp;
  const sf_dtype dt = J->out->dtype;
  const bool fast = x->dtype == SF_F32 && dt == SF_F32 && (!w || w->dtype == SF_F32);
  for (int64_t r = r0; r < r1; r++) {
    if (fast) {
      const float *xr = (const float *)xp + r * D, *wf = wp;
      float *o = (float *)op + r * D;
      const float rstd = (float)(1.0 / sqrt(sf_nn_sumsq_d(xr, D, 0.0) / D + eps));
      if (rp) rp[r] = rstd;
      if (wf)
        for (int64_t c = 0; c < D; c++) o[c] = xr[c] * rstd * wf[c];
      else
        for (int64_t c = 0; c < D; c++) o[c] = xr[c] * rstd;
      continue;
    }
    double ss = 0;
    for (int64_t c = 0; c < D; c++) {
      double v = sf_nn_ld(xp, x->dtype, r * D + c);
      ss += v * v;
    }
    const float rstd = (float)(1.0 / sqrt(ss / D + eps));
    if (rp) rp[r] = rstd;
    for (int64_t c = 0; c < D; c++) {
      float y = sf_nn_round(sf_nn_ld(xp, x->dtype, r * D + c) * rstd, x->dtype);
      if (wp) y = y * sf_nn_ld(wp, w->dtype, c);
      sf_nn_st(op, dt, r * D + c, y);
    }
  }
}

int sf_cpu_rms_norm(sf_tensor *out, const sf_tensor *x, const sf_tensor *w, double eps, sf_tensor *rstd_out) {
  const int64_t D = x->shape[x->ndim - 1], R = rows_of(x, D);
  ln_job J = {out, x, w, NULL, eps, NULL, rstd_out ? (float *)sf_data_ptr(rstd_out) : NULL};
  sf_cpu_for(R, nthreads(R * D), rms_rows, &J);
  return 0;
}

/* shift/scale/gate are [G, D] views with unit stride on D and any row stride */
static inline const void *row_ptr(const sf_tensor *t, int64_t g) {
  return (const char *)sf_data_ptr(t) + g * t->stride[0] * (int64_t)sf_dtype_size(t->dtype);
}

typedef struct {
  sf_tensor *out;
  const sf_tensor *x, *a, *b; /* modulate: shift, scale; gated add: y, gate */
} frame_job;

static void modulate_rows(void *vj, int64_t lo, int64_t hi) {
  const frame_job *J = vj;
  const sf_tensor *x = J->x, *shift = J->a, *scale = J->b;
  const int64_t R = x->shape[1], D = x->shape[2];
  const void *xp = sf_data_ptr(x);
  void *op = sf_data_ptr(J->out);
  const sf_dtype dt = J->out->dtype;
  for (int64_t gr = lo; gr < hi; gr++) {
    const int64_t g = gr / R;
    const void *sh = row_ptr(shift, g), *sc = row_ptr(scale, g);
    for (int64_t c = 0; c < D; c++) {
      float a = sf_nn_round(1.0f + sf_nn_ld(sc, scale->dtype, c), dt);
      float y = sf_nn_round(sf_nn_ld(xp, x->dtype, gr * D + c) * a, dt);
      sf_nn_st(op, dt, gr * D + c, y + sf_nn_ld(sh, shift->dtype, c));
    }
  }
}

int sf_cpu_modulate(sf_tensor *out, const sf_tensor *x, const sf_tensor *shift, const sf_tensor *scale) {
  const int64_t G = x->shape[0], R = x->shape[1], D = x->shape[2];
  frame_job J = {out, x, shift, scale};
  sf_cpu_for(G * R, nthreads(G * R * D), modulate_rows, &J);
  return 0;
}

static void gated_rows(void *vj, int64_t lo, int64_t hi) {
  const frame_job *J = vj;
  const sf_tensor *x = J->x, *y = J->a, *gate = J->b;
  const int64_t R = x->shape[1], D = x->shape[2];
  const void *xp = sf_data_ptr(x), *yp = sf_data_ptr(y);
  void *op = sf_data_ptr(J->out);
  const sf_dtype dt = J->out->dtype;
  for (int64_t gr = lo; gr < hi; gr++) {
    const void *gp = row_ptr(gate, gr / R);
    for (int64_t c = 0; c < D; c++) {
      float p = sf_nn_round(sf_nn_ld(yp, y->dtype, gr * D + c) * sf_nn_ld(gp, gate->dtype, c), dt);
      sf_nn_st(op, dt, gr * D + c, sf_nn_ld(xp, x->dtype, gr * D + c) + p);
    }
  }
}

int sf_cpu_gated_add(sf_tensor *out, const sf_tensor *x, const sf_tensor *y, const sf_tensor *gate) {
  const int64_t G = x->shape[0], R = x->shape[1], D = x->shape[2];
  frame_job J = {out, x, y, gate};
  sf_cpu_for(G * R, nthreads(G * R * D), gated_rows, &J);
  return 0;
}

/* per-axis cos/sin tables in f64: tab[(p * half + j) * 2 + {0,1}] for positions p0 .. p0+n-1 */
static double *axis_table(int64_t p0, int64_t n, int64_t dim_axis) {
  const int64_t half = dim_axis / 2;
  double *t = malloc(sizeof(double) * 2 * (size_t)(n * half + 1));
  if (!t) return NULL;
  for (int64_t p = 0; p < n; p++)
    for (int64_t j = 0; j < half; j++) {
      double ang = (double)(p0 + p) * pow(10000.0, -2.0 * (double)j / (double)dim_axis);
      t[(p * half + j) * 2] = cos(ang);
      t[(p * half + j) * 2 + 1] = sin(ang);
    }
  return t;
}

typedef struct {
  sf_tensor *out;
  const sf_tensor *x;
  int64_t Hp, Wp;
  const double *tt, *th, *tw;
  double sgn; /* +1 rotates by theta; -1 by -theta (the backward: R(theta)^T = R(-theta)) */
} rope_job;

static void rope_rows(void *vj, int64_t lo, int64_t hi) {
  const rope_job *J = vj;
  const sf_tensor *x = J->x;
  sf_tensor *out = J->out;
  const int64_t L = x->shape[1], H = x->shape[2], d = x->shape[3], Hp = J->Hp, Wp = J->Wp;
  const int64_t q6 = d / 6, dt = d - 4 * q6, dh = 2 * q6;
  const int64_t ht = dt / 2, hh = dh / 2;
  const double *tt = J->tt, *th = J->th, *tw = J->tw;
  const char *xp = (const char *)sf_data_ptr(x);
  void *op = sf_data_ptr(out);
  const size_t es = sf_dtype_size(x->dtype);
  for (int64_t bl = lo; bl < hi; bl++) {
    const int64_t b = bl / L, n = bl % L;
    const int64_t f = n / (Hp * Wp), hy = (n / Wp) % Hp, wx = n % Wp;
    for (int64_t h = 0; h < H; h++) {
      const void *src = xp + (b * x->stride[0] + n * x->stride[1] + h * x->stride[2]) * (int64_t)es;
      const int64_t obase = ((b * L + n) * H + h) * d;
      for (int64_t j = 0; j < d / 2; j++) {
        const double *cs = j < ht ? &tt[(f * ht + j) * 2]
                           : j < ht + hh ? &th[(hy * hh + (j - ht)) * 2]
                                         : &tw[(wx * hh + (j - ht - hh)) * 2];
        const double a = sf_nn_ld(src, x->dtype, 2 * j), bb = sf_nn_ld(src, x->dtype, 2 * j + 1), sn = J->sgn * cs[1];
        sf_nn_st(op, out->dtype, obase + 2 * j, (float)(a * cs[0] - bb * sn));
        sf_nn_st(op, out->dtype, obase + 2 * j + 1, (float)(a * sn + bb * cs[0]));
      }
    }
  }
}

int sf_cpu_rope3d_dir(sf_tensor *out, const sf_tensor *x, int64_t F, int64_t Hp, int64_t Wp, int64_t f0, bool inverse) {
  const int64_t B = x->shape[0], L = x->shape[1], H = x->shape[2], d = x->shape[3];
  const int64_t q6 = d / 6, dt = d - 4 * q6, dh = 2 * q6;
  double *tt = axis_table(f0, F, dt), *th = axis_table(0, Hp, dh), *tw = axis_table(0, Wp, dh);
  if (!tt || !th || !tw) {
    free(tt), free(th), free(tw);
    return sf_error("rope3d: out of memory");
  }
  rope_job J = {out, x, Hp, Wp, tt, th, tw, inverse ? -1.0 : 1.0};
  sf_cpu_for(B * L, nthreads(B * L * H * d), rope_rows, &J);
  free(tt), free(th), free(tw);
  return 0;
}

int sf_cpu_rope3d(sf_tensor *out, const sf_tensor *x, int64_t F, int64_t Hp, int64_t Wp, int64_t f0) {
  return sf_cpu_rope3d_dir(out, x, F, Hp, Wp, f0, false);
}

