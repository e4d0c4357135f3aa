/* cpu_iter.c — the CPU backend's strided iterator: dims are ordered by the output's strides,
 * size-1 dims dropped and mergeable dims fused, then the element range is split across the pool's
 * threads (cpu_pool.h) and walked as contiguous runs of the innermost dim. */
#include <string.h>

#include "backend/cpu/cpu_internal.h"

static int esz_of(sf_dtype dt) {
  static const int sz[SF_NDTYPES] = {4, 2, 2, 8, 4, 1, 1, 8};
  return (dt >= 0 && dt < SF_NDTYPES) ? sz[dt] : 1;
}

static int64_t iabs64(int64_t x) { return x < 0 ? -x : x; }

void sf_cpu_iter_init_raw(sf_cpu_iter *it, int nops, int ndim, const int64_t *shape,
                          const int64_t (*strides)[SF_MAX_DIMS], char *const *base, const int *esz) {
  memset(it, 0, sizeof *it);
  it->nops = nops;
  it->numel = 1;
  for (int k = 0; k < nops; k++) { it->base[k] = base[k]; it->esz[k] = esz[k]; }
  int perm[SF_MAX_DIMS], n = 0;
  for (int d = 0; d < ndim; d++) {
    it->numel *= shape[d];
    if (shape[d] != 1) perm[n++] = d;
  }
  if (it->numel == 0) { it->ndim = 1; it->shape[0] = 0; return; }
  /* stable insertion sort: outer dims first by decreasing |output stride| (then operand 1's), so
   * the innermost loop walks the output (or, for an expanded output, the first input) contiguously */
  for (int i = 1; i < n; i++) {
    int d = perm[i], j = i;
    while (j > 0) {
      int e = perm[j - 1];
      int64_t se = iabs64(strides[0][e]), sd = iabs64(strides[0][d]);
      int before = se < sd || (se == sd && nops > 1 && iabs64(strides[1][e]) < iabs64(strides[1][d]));
      if (!before) break;
      perm[j] = e;
      j--;
    }
    perm[j] = d;
  }
  /* fuse dim i into i+1 when every operand steps through them as one */
  int m = 0;
  for (int i = 0; i < n; i++) {
    int d = perm[i];
    if (m > 0) {
      int ok = 1;
      for (int k = 0; k < nops; k++)
        if (it->stride[k][m - 1] != strides[k][d] * shape[d]) { ok = 0; break; }
      if (ok) {
        it->shape[m - 1] *= shape[d];
        for (int k = 0; k < nops; k++) it->stride[k][m - 1] = strides[k][d];
        continue;
      }
    }
    it->shape[m] = shape[d];
    for (int k = 0; k < nops; k++) it->stride[k][m] = strides[k][d];
    m++;
  }
  if (m == 0) { m = 1; it->shape[0] = 1; for (int k = 0; k < nops; k++) it->stride[k][0] = 1; }
  it->ndim = m;
}

void sf_cpu_iter_init(sf_cpu_iter *it, int nops, const sf_tensor *const *ts) {
  int64_t strides[SF_CPU_MAXOPS][SF_MAX_DIMS];
  char *base[SF_CPU_MAXOPS];
  int esz[SF_CPU_MAXOPS];
  for (int k = 0; k < nops; k++) {
    for (int d = 0; d < ts[0]->ndim; d++) strides[k][d] = ts[k]->stride[d];
    esz[k] = esz_of(ts[k]->dtype);
    base[k] = (char *)ts[k]->storage->data + ts[k]->offset * esz[k];
  }
  sf_cpu_iter_init_raw(it, nops, ts[0]->ndim, ts[0]->shape, (const int64_t(*)[SF_MAX_DIMS])strides, base, esz);
}

void sf_cpu_iter_init_rows(sf_cpu_iter *it, const sf_tensor *out, const sf_tensor *a, int dim) {
  int64_t shape[SF_MAX_DIMS], strides[2][SF_MAX_DIMS];
  for (int d = 0; d < a->ndim; d++) {
    shape[d] = d == dim ? 1 : a->shape[d];
    strides[0][d] = out->stride[d];
    strides[1][d] = a->stride[d];
  }
  const int esz[2] = {esz_of(out->dtype), esz_of(a->dtype)};
  char *base[2] = {(char *)out->storage->data + out->offset * esz[0], (char *)a->storage->data + a->offset * esz[1]};
  sf_cpu_iter_init_raw(it, 2, a->ndim, shape, (const int64_t(*)[SF_MAX_DIMS])strides, base, esz);
}

static void run_range(const sf_cpu_iter *it, int64_t start, int64_t end, sf_cpu_seg_fn fn, void *ctx) {
  int nd = it->ndim, last = nd - 1, nops = it->nops;
  int64_t idx[SF_MAX_DIMS];
  char *p[SF_CPU_MAXOPS];
  int64_t s_in[SF_CPU_MAXOPS];
  int64_t rem = start;
  for (int d = last; d >= 0; d--) { idx[d] = rem % it->shape[d]; rem /= it->shape[d]; }
  for (int k = 0; k < nops; k++) {
    int64_t off = 0;
    for (int d = 0; d < nd; d++) off += idx[d] * it->stride[k][d];
    p[k] = it->base[k] + off * it->esz[k];
    s_in[k] = it->stride[k][last];
  }
  int64_t pos = start;
  while (pos < end) {
    int64_t n = it->shape[last] - idx[last];
    if (n > end - pos) n = end - pos;
    fn(ctx, p, s_in, n);
    pos += n;
    if (pos >= end) break;
    for (int k = 0; k < nops; k++) p[k] += n * s_in[k] * it->esz[k];
    idx[last] += n;
    for (int d = last; d > 0 && idx[d] == it->shape[d]; d--) {
      idx[d] = 0;
      idx[d - 1]++;
      for (int k = 0; k < nops; k++) p[k] += (it->stride[k][d - 1] - it->shape[d] * it->stride[k][d]) * it->esz[k];
    }
  }
}

typedef struct { const sf_cpu_iter *it; sf_cpu_seg_fn fn; void *ctx; } run_job;

static void run_part(void *vjob, int t, int n) {
  const run_job *j = vjob;
  int64_t total = j->it->numel;
  /* split on 64-element boundaries so threads rarely share a cache line of the output */
  int64_t start = (total * t / n) & ~(int64_t)63, end = t == n - 1 ? total : (total * (t + 1) / n) & ~(int64_t)63;
  if (end > start) run_range(j->it, start, end, j->fn, j->ctx);
}

void sf_cpu_iter_run(const sf_cpu_iter *it, sf_cpu_seg_fn fn, void *ctx, int64_t par_min) {
  int64_t total = it->numel;
  if (total <= 0) return;
  int nt = sf_cpu_threads(total, par_min);
  if (nt <= 1) { run_range(it, 0, total, fn, ctx); return; }
  run_job j = {it, fn, ctx};
  sf_cpu_parallel(nt, run_part, &j);
}
