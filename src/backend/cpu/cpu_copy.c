/* cpu_copy.c — strided copy with dtype cast between every pair of dtypes, and fill. */
#include <string.h>

#include "backend/cpu/cpu_internal.h"

typedef struct { sf_dtype dst, src; } copy_ctx;

/* same dtype: move raw elements of size ES */
#define RAW_COPY(T)                                                                                \
  do {                                                                                             \
    T *o = (T *)p[0];                                                                              \
    const T *a = (const T *)p[1];                                                                  \
    if (s[1] == 1) for (int64_t i = 0; i < n; i++) o[i * s[0]] = a[i];                             \
    else for (int64_t i = 0; i < n; i++) o[i * s[0]] = a[i * s[1]];                                \
  } while (0)

static void copy_seg(void *vctx, char *const *p, const int64_t *s, int64_t n) {
  const copy_ctx *c = vctx;
  if (c->dst == c->src) {
    size_t es = sf_dtype_size(c->dst);
    if (s[0] == 1 && s[1] == 1) { memmove(p[0], p[1], (size_t)n * es); return; } /* views may overlap */
    switch (es) {
    case 1: RAW_COPY(uint8_t); break;
    case 2: RAW_COPY(uint16_t); break;
    case 4: RAW_COPY(uint32_t); break;
    default: RAW_COPY(uint64_t); break;
    }
    return;
  }
  sf_cpu_dom ds = sf_cpu_domain(c->src), dd = sf_cpu_domain(c->dst);
  size_t ed = sf_dtype_size(c->dst), es = sf_dtype_size(c->src);
  for (int64_t off = 0; off < n; off += SF_CPU_CHUNK) {
    int64_t m = n - off < SF_CPU_CHUNK ? n - off : SF_CPU_CHUNK;
    char *o = p[0] + off * s[0] * (int64_t)ed;
    const char *a = p[1] + off * s[1] * (int64_t)es;
    if (ds == SF_DOM_I) { /* integers keep full 64-bit precision and round once into floats */
      int64_t buf[SF_CPU_CHUNK];
      sf_cpu_load_i(c->src, a, s[1], m, buf);
      sf_cpu_store_i(c->dst, o, s[0], m, buf);
    } else if (ds == SF_DOM_F && dd != SF_DOM_D) { /* f32/bf16/f16 among themselves or to ints */
      float buf[SF_CPU_CHUNK];
      sf_cpu_load_f(c->src, a, s[1], m, buf);
      sf_cpu_store_f(c->dst, o, s[0], m, buf);
    } else {
      double buf[SF_CPU_CHUNK];
      sf_cpu_load_d(c->src, a, s[1], m, buf);
      sf_cpu_store_d(c->dst, o, s[0], m, buf);
    }
  }
}

int sf_cpu_copy(sf_tensor *dst, const sf_tensor *src) {
  if (dst->ndim != src->ndim) return sf_error("cpu copy: rank mismatch (%d vs %d)", dst->ndim, src->ndim);
  for (int d = 0; d < dst->ndim; d++)
    if (dst->shape[d] != src->shape[d]) return sf_error("cpu copy: shape mismatch at dim %d (%lld vs %lld)", d,
                                                        (long long)dst->shape[d], (long long)src->shape[d]);
  const sf_tensor *ts[2] = {dst, src};
  sf_cpu_iter it;
  sf_cpu_iter_init(&it, 2, ts);
  copy_ctx c = {dst->dtype, src->dtype};
  /* plain copies are memory bound: two threads only help on large runs */
  sf_cpu_iter_run(&it, copy_seg, &c, dst->dtype == src->dtype ? 4 * SF_CPU_PAR_MIN : SF_CPU_PAR_MIN);
  return 0;
}

typedef struct { size_t es; unsigned char pat[8]; } fill_ctx;

static void fill_seg(void *vctx, char *const *p, const int64_t *s, int64_t n) {
  const fill_ctx *c = vctx;
  switch (c->es) {
  case 1: { uint8_t v = c->pat[0], *o = (uint8_t *)p[0];
    if (s[0] == 1) memset(o, v, (size_t)n); else for (int64_t i = 0; i < n; i++) o[i * s[0]] = v; } break;
  case 2: { uint16_t v, *o = (uint16_t *)p[0]; memcpy(&v, c->pat, 2); for (int64_t i = 0; i < n; i++) o[i * s[0]] = v; } break;
  case 4: { uint32_t v, *o = (uint32_t *)p[0]; memcpy(&v, c->pat, 4); for (int64_t i = 0; i < n; i++) o[i * s[0]] = v; } break;
  default: { uint64_t v, *o = (uint64_t *)p[0]; memcpy(&v, c->pat, 8); for (int64_t i = 0; i < n; i++) o[i * s[0]] = v; } break;
  }
}

int sf_cpu_fill(sf_tensor *t, double v) {
  fill_ctx c;
  c.es = sf_dtype_size(t->dtype);
  memset(c.pat, 0, sizeof c.pat);
  if (sf_cpu_domain(t->dtype) == SF_DOM_I && t->dtype != SF_BOOL && v == v) {
    /* integer fills go through int64 so large values stay exact */
    int64_t iv = sf_cpu_d2i(v);
    sf_cpu_store_i(t->dtype, (char *)c.pat, 1, 1, &iv);
  } else {
    sf_cpu_store_d(t->dtype, (char *)c.pat, 1, 1, &v);
  }
  const sf_tensor *ts[1] = {t};
  sf_cpu_iter it;
  sf_cpu_iter_init(&it, 1, ts);
  sf_cpu_iter_run(&it, fill_seg, &c, 4 * SF_CPU_PAR_MIN);
  return 0;
}
