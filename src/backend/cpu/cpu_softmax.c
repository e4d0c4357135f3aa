/* cpu_softmax.c — softmax / log_softmax over any dim: per row, max-shifted exponentials with f32
 * math and a double sum (numerically stable; a NaN anywhere in a row gives a NaN row, as torch). */
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_math.h"

typedef struct {
  sf_dtype adt, odt;
  int64_t R, sa, so; /* softmax dim: size, stride in a, stride in out */
  int log;
} sm_ctx;

/* in place over w[0..R) */
static void softmax_row(float *w, int64_t R, int lg) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < R; i++) m = w[i] > m ? w[i] : m;
  if (m == -INFINITY) m = 0.0f; /* an all -inf row: exp(-inf) = 0 everywhere, sum 0 -> NaN as torch */
  double s = 0;
  if (lg) {
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < R; i++) s += sf_cpu_expf(w[i] - m);
    float ls = (float)log(s); /* (x - max) - log(sum), as torch: folding max into lse loses digits */
    for (int64_t i = 0; i < R; i++) w[i] = (w[i] - m) - ls;
  } else {
    for (int64_t i = 0; i < R; i++) w[i] = sf_cpu_expf(w[i] - m);
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < R; i++) s += w[i];
    float inv = (float)(1.0 / s);
    for (int64_t i = 0; i < R; i++) w[i] *= inv;
  }
}

/* f64 (gradient checks) keeps full double precision */
static void softmax_row_d(double *w, int64_t R, int log_) {
  double m = -INFINITY, s = 0;
  for (int64_t i = 0; i < R; i++) m = w[i] > m ? w[i] : m;
  if (m == -INFINITY) m = 0.0;
  for (int64_t i = 0; i < R; i++) s += exp(w[i] - m);
  if (log_) { double ls = log(s); for (int64_t i = 0; i < R; i++) w[i] = (w[i] - m) - ls; }
  else for (int64_t i = 0; i < R; i++) w[i] = exp(w[i] - m) / s;
}

static void sm_seg_d(const sm_ctx *c, char *const *p, const int64_t *s, int64_t n) {
  size_t eo = sf_dtype_size(c->odt), ea = sf_dtype_size(c->adt);
  double *w = malloc((size_t)c->R * sizeof(double));
  if (!w) return;
  for (int64_t j = 0; j < n; j++) {
    sf_cpu_load_d(c->adt, p[1] + j * s[1] * (int64_t)ea, c->sa, c->R, w);
    softmax_row_d(w, c->R, c->log);
    sf_cpu_store_d(c->odt, p[0] + j * s[0] * (int64_t)eo, c->so, c->R, w);
  }
  free(w);
}

static void sm_seg(void *vctx, char *const *p, const int64_t *s, int64_t n) {
  const sm_ctx *c = vctx;
  if (c->adt == SF_F64) { sm_seg_d(c, p, s, n); return; }
  size_t eo = sf_dtype_size(c->odt), ea = sf_dtype_size(c->adt);
  float stackbuf[SF_CPU_CHUNK];
  float *tmp = c->R <= SF_CPU_CHUNK ? stackbuf : malloc((size_t)c->R * sizeof(float));
  if (!tmp) return; /* reported by the caller's pre-check; rows this large always get a buffer */
  for (int64_t j = 0; j < n; j++) {
    char *o = p[0] + j * s[0] * (int64_t)eo;
    const char *a = p[1] + j * s[1] * (int64_t)ea;
    /* work in the output row itself when it is f32 with unit stride */
    float *w = (c->odt == SF_F32 && c->so == 1) ? (float *)o : tmp;
    sf_cpu_load_f(c->adt, a, c->sa, c->R, w);
    softmax_row(w, c->R, c->log);
    if (w == tmp) sf_cpu_store_f(c->odt, o, c->so, c->R, w);
  }
  if (tmp != stackbuf) free(tmp);
}

int sf_cpu_softmax(sf_tensor *out, const sf_tensor *a, int dim, bool log) {
  if (dim < 0 || dim >= a->ndim) return sf_error("cpu softmax: dim %d out of range for a %d-d tensor", dim, a->ndim);
  if (out->ndim != a->ndim) return sf_error("cpu softmax: rank mismatch (%d vs %d)", out->ndim, a->ndim);
  for (int d = 0; d < a->ndim; d++)
    if (out->shape[d] != a->shape[d]) return sf_error("cpu softmax: shape mismatch at dim %d", d);
  if (sf_cpu_domain(a->dtype) != SF_DOM_F && a->dtype != SF_F64)
    return sf_error("cpu softmax: needs a float tensor, got %s", sf_dtype_name(a->dtype));
  sm_ctx c = {a->dtype, out->dtype, a->shape[dim], a->stride[dim], out->stride[dim], log};
  if (c.R == 0) return 0;
  sf_cpu_iter it;
  sf_cpu_iter_init_rows(&it, out, a, dim);
  if (c.R > SF_CPU_CHUNK) { /* fail cleanly before the threads need their row buffers */
    void *probe = malloc((size_t)c.R * sizeof(float) * 2);
    if (!probe) return sf_error("cpu softmax: out of memory for a row of %lld", (long long)c.R);
    free(probe);
  }
  int64_t par_min = SF_CPU_PAR_MIN / c.R;
  sf_cpu_iter_run(&it, sm_seg, &c, par_min > 0 ? par_min : 1);
  return 0;
}
