/* cpu_reduce.c — reductions of one dim of a strided tensor (sum, mean, max, min, std, norm, argmax,
 * argmin, prod). Floats accumulate in double (a sum of 1e7 f32 values stays exact to ~1e-16 relative);
 * std combines per-chunk (mean, M2) pairs (Chan et al.), so it needs one pass and no cancellation.
 * Two layouts: "row" when the reduced dim is the inner loop (unit stride), "column" when the kept
 * inner dim has unit stride and the reduced one does not — then whole rows are folded into
 * per-column accumulators, which keeps memory access sequential. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#define CH SF_CPU_CHUNK

/* a partial result over some elements of one row */
typedef struct {
  double s, m2; /* float: sum/prod/extremum (s), std: mean (s) and M2 */
  int64_t n;    /* elements seen */
  int64_t i;    /* integer accumulator */
  int64_t idx;  /* argmax/argmin position */
} racc;

static int is_int_op(sf_reduce_op op, sf_dtype dt) {
  return sf_cpu_domain(dt) == SF_DOM_I &&
         (op == SF_RED_SUM || op == SF_RED_PROD || op == SF_RED_MAX || op == SF_RED_MIN ||
          op == SF_RED_ARGMAX || op == SF_RED_ARGMIN);
}

static racc acc_init(sf_reduce_op op) {
  racc a = {0, 0, 0, 0, 0};
  switch (op) {
  case SF_RED_PROD: a.s = 1; a.i = 1; break;
  case SF_RED_MAX: case SF_RED_ARGMAX: a.s = -INFINITY; a.i = INT64_MIN; a.idx = -1; break;
  case SF_RED_MIN: case SF_RED_ARGMIN: a.s = INFINITY; a.i = INT64_MAX; a.idx = -1; break;
  default: break;
  }
  return a;
}

/* fold b (covering later elements) into a */
static void acc_combine(sf_reduce_op op, int ints, racc *a, const racc *b) {
  if (b->n == 0) return;
  if (a->n == 0) { *a = *b; return; }
  switch (op) {
  case SF_RED_SUM: case SF_RED_MEAN: case SF_RED_NORM: a->s += b->s; a->i = (int64_t)((uint64_t)a->i + (uint64_t)b->i); break;
  case SF_RED_PROD: a->s *= b->s; a->i = (int64_t)((uint64_t)a->i * (uint64_t)b->i); break;
  case SF_RED_MAX: case SF_RED_MIN: case SF_RED_ARGMAX: case SF_RED_ARGMIN: {
    int mx = op == SF_RED_MAX || op == SF_RED_ARGMAX;
    if (ints) {
      if (mx ? b->i > a->i : b->i < a->i) { a->i = b->i; a->idx = b->idx; }
    } else if (a->s == a->s) { /* a NaN already wins (first NaN) */
      if (b->s != b->s || (mx ? b->s > a->s : b->s < a->s)) { a->s = b->s; a->idx = b->idx; }
    }
    break;
  }
  case SF_RED_STD: {
    double na = (double)a->n, nb = (double)b->n, nn = na + nb, delta = b->s - a->s;
    a->s += delta * nb / nn;
    a->m2 += b->m2 + delta * delta * na * nb / nn;
    break;
  }
  default: break;
  }
  a->n += b->n;
}

/* partial over buf[0..m) whose first element is row position `base` */
static racc acc_chunk_d(sf_reduce_op op, const double *x, int64_t m, int64_t base) {
  racc r = acc_init(op);
  r.n = m;
  switch (op) {
  case SF_RED_SUM: case SF_RED_MEAN: { double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < m; i++) s += x[i];
    r.s = s; } break;
  case SF_RED_NORM: { double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < m; i++) s += x[i] * x[i];
    r.s = s; } break;
  case SF_RED_PROD: { double s = 1; for (int64_t i = 0; i < m; i++) s *= x[i]; r.s = s; } break;
  case SF_RED_MAX: case SF_RED_MIN: {
    double v = r.s; int nan = 0;
    if (op == SF_RED_MAX) {
#pragma omp simd reduction(max : v) reduction(| : nan)
      for (int64_t i = 0; i < m; i++) { v = x[i] > v ? x[i] : v; nan |= x[i] != x[i]; }
    } else {
#pragma omp simd reduction(min : v) reduction(| : nan)
      for (int64_t i = 0; i < m; i++) { v = x[i] < v ? x[i] : v; nan |= x[i] != x[i]; }
    }
    r.s = nan ? NAN : v; } break;
  case SF_RED_ARGMAX: case SF_RED_ARGMIN: {
    int mx = op == SF_RED_ARGMAX;
    double v = x[0]; int64_t k = 0;
    for (int64_t i = 1; i < m && v == v; i++)
      if (x[i] != x[i] || (mx ? x[i] > v : x[i] < v)) { v = x[i]; k = i; }
    r.s = v; r.idx = base + k; } break;
  case SF_RED_STD: {
    double s = 0, q = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < m; i++) s += x[i];
    double mean = s / (double)m;
#pragma omp simd reduction(+ : q)
    for (int64_t i = 0; i < m; i++) q += (x[i] - mean) * (x[i] - mean);
    r.s = mean; r.m2 = q; } break;
  default: break;
  }
  return r;
}

static racc acc_chunk_i(sf_reduce_op op, const int64_t *x, int64_t m, int64_t base) {
  racc r = acc_init(op);
  r.n = m;
  switch (op) {
  case SF_RED_SUM: { uint64_t s = 0; for (int64_t i = 0; i < m; i++) s += (uint64_t)x[i]; r.i = (int64_t)s; } break;
  case SF_RED_PROD: { uint64_t s = 1; for (int64_t i = 0; i < m; i++) s *= (uint64_t)x[i]; r.i = (int64_t)s; } break;
  case SF_RED_MAX: { int64_t v = INT64_MIN; for (int64_t i = 0; i < m; i++) v = x[i] > v ? x[i] : v; r.i = v; } break;
  case SF_RED_MIN: { int64_t v = INT64_MAX; for (int64_t i = 0; i < m; i++) v = x[i] < v ? x[i] : v; r.i = v; } break;
  case SF_RED_ARGMAX: case SF_RED_ARGMIN: {
    int mx = op == SF_RED_ARGMAX;
    int64_t v = x[0], k = 0;
    for (int64_t i = 1; i < m; i++) if (mx ? x[i] > v : x[i] < v) { v = x[i]; k = i; }
    r.i = v; r.idx = base + k; } break;
  default: break;
  }
  return r;
}

/* partial over row positions [start, end) of a row at p with stride s */
static racc row_partial(sf_reduce_op op, sf_dtype dt, const char *p, int64_t s, int64_t start, int64_t end) {
  int ints = is_int_op(op, dt);
  size_t es = sf_dtype_size(dt);
  racc acc = acc_init(op);
  if (dt == SF_F32 && s == 1 && (op == SF_RED_SUM || op == SF_RED_MEAN || op == SF_RED_NORM)) {
    /* contiguous f32 sums: widen to double in the loop itself (no staging buffer) */
    const float *q = (const float *)p;
    double sum = 0;
    if (op == SF_RED_NORM) {
#pragma omp simd reduction(+ : sum)
      for (int64_t i = start; i < end; i++) sum += (double)q[i] * (double)q[i];
    } else {
#pragma omp simd reduction(+ : sum)
      for (int64_t i = start; i < end; i++) sum += (double)q[i];
    }
    acc.s = sum;
    acc.n = end - start;
    return acc;
  }
  for (int64_t off = start; off < end; off += CH) {
    int64_t m = end - off < CH ? end - off : CH;
    const char *q = p + off * s * (int64_t)es;
    racc part;
    if (ints) {
      int64_t buf[CH];
      sf_cpu_load_i(dt, q, s, m, buf);
      part = acc_chunk_i(op, buf, m, off);
    } else if (dt == SF_F64 && s == 1) {
      part = acc_chunk_d(op, (const double *)q, m, off);
    } else {
      double buf[CH];
      sf_cpu_load_d(dt, q, s, m, buf);
      part = acc_chunk_d(op, buf, m, off);
    }
    acc_combine(op, ints, &acc, &part);
  }
  return acc;
}

/* the final value of a row's accumulator into element 0 of out (dtype odt) */
static void acc_store(sf_reduce_op op, int ints, const racc *a, int64_t R, sf_dtype odt, char *o) {
  if (op == SF_RED_ARGMAX || op == SF_RED_ARGMIN) {
    int64_t k = a->idx < 0 ? 0 : a->idx;
    sf_cpu_store_i(odt, o, 1, 1, &k);
    return;
  }
  if (ints) { sf_cpu_store_i(odt, o, 1, 1, &a->i); return; }
  double v = a->s;
  switch (op) {
  case SF_RED_MEAN: v = R > 0 ? a->s / (double)R : NAN; break;
  case SF_RED_NORM: v = sqrt(a->s); break;
  case SF_RED_STD: v = R > 1 ? sqrt(a->m2 / (double)(R - 1)) : NAN; break;
  case SF_RED_MAX: case SF_RED_MIN: if (R == 0) v = NAN; break;
  default: break;
  }
  sf_cpu_store_d(odt, o, 1, 1, &v);
}

typedef struct {
  sf_reduce_op op;
  sf_dtype adt, odt;
  int64_t R, sd; /* reduced dim: size and stride of a (elements) */
} red_ctx;

/* column layout: n outputs whose a-elements are adjacent (unit stride); fold R rows at stride sd */
static void column_reduce(const red_ctx *c, char *po, int64_t so, const char *pa, int64_t n) {
  sf_reduce_op op = c->op;
  int ints = is_int_op(op, c->adt);
  size_t es = sf_dtype_size(c->adt), eo = sf_dtype_size(c->odt);
  int mx = op == SF_RED_MAX || op == SF_RED_ARGMAX;
  for (int64_t off = 0; off < n; off += CH) {
    int64_t m = n - off < CH ? n - off : CH;
    const char *base = pa + off * (int64_t)es;
    double s[CH], q[CH];
    int64_t iv[CH], idx[CH];
    if (ints) {
      sf_cpu_load_i(c->adt, base, 1, m, iv);
      for (int64_t j = 0; j < m; j++) idx[j] = 0;
      for (int64_t r = 1; r < c->R; r++) {
        int64_t x[CH];
        sf_cpu_load_i(c->adt, base + r * c->sd * (int64_t)es, 1, m, x);
        switch (op) {
        case SF_RED_SUM: for (int64_t j = 0; j < m; j++) iv[j] = (int64_t)((uint64_t)iv[j] + (uint64_t)x[j]); break;
        case SF_RED_PROD: for (int64_t j = 0; j < m; j++) iv[j] = (int64_t)((uint64_t)iv[j] * (uint64_t)x[j]); break;
        case SF_RED_MAX: for (int64_t j = 0; j < m; j++) iv[j] = x[j] > iv[j] ? x[j] : iv[j]; break;
        case SF_RED_MIN: for (int64_t j = 0; j < m; j++) iv[j] = x[j] < iv[j] ? x[j] : iv[j]; break;
        default:
          for (int64_t j = 0; j < m; j++)
            if (mx ? x[j] > iv[j] : x[j] < iv[j]) { iv[j] = x[j]; idx[j] = r; }
          break;
        }
      }
      int64_t *res = (op == SF_RED_ARGMAX || op == SF_RED_ARGMIN) ? idx : iv;
      sf_cpu_store_i(c->odt, po + off * so * (int64_t)eo, so, m, res);
      continue;
    }
    sf_cpu_load_d(c->adt, base, 1, m, s);
    for (int64_t j = 0; j < m; j++) { idx[j] = 0; q[j] = 0; }
    if (op == SF_RED_NORM) for (int64_t j = 0; j < m; j++) s[j] *= s[j];
    for (int64_t r = 1; r < c->R; r++) {
      double x[CH];
      sf_cpu_load_d(c->adt, base + r * c->sd * (int64_t)es, 1, m, x);
      switch (op) {
      case SF_RED_SUM: case SF_RED_MEAN: for (int64_t j = 0; j < m; j++) s[j] += x[j]; break;
      case SF_RED_NORM: for (int64_t j = 0; j < m; j++) s[j] += x[j] * x[j]; break;
      case SF_RED_PROD: for (int64_t j = 0; j < m; j++) s[j] *= x[j]; break;
      case SF_RED_MAX: for (int64_t j = 0; j < m; j++) s[j] = (x[j] > s[j] || x[j] != x[j]) && s[j] == s[j] ? x[j] : s[j]; break;
      case SF_RED_MIN: for (int64_t j = 0; j < m; j++) s[j] = (x[j] < s[j] || x[j] != x[j]) && s[j] == s[j] ? x[j] : s[j]; break;
      case SF_RED_ARGMAX: case SF_RED_ARGMIN:
        for (int64_t j = 0; j < m; j++)
          if (s[j] == s[j] && (x[j] != x[j] || (mx ? x[j] > s[j] : x[j] < s[j]))) { s[j] = x[j]; idx[j] = r; }
        break;
      case SF_RED_STD: { /* Welford: s = running mean, q = M2 */
        double inv = 1.0 / (double)(r + 1);
        for (int64_t j = 0; j < m; j++) { double d = x[j] - s[j]; s[j] += d * inv; q[j] += d * (x[j] - s[j]); }
      } break;
      default: break;
      }
    }
    for (int64_t j = 0; j < m; j++) {
      racc a = {s[j], q[j], c->R, 0, idx[j]};
      acc_store(op, 0, &a, c->R, c->odt, po + (off + j) * so * (int64_t)eo);
    }
  }
}

static void red_seg(void *vctx, char *const *p, const int64_t *s, int64_t n) {
  const red_ctx *c = vctx;
  size_t eo = sf_dtype_size(c->odt), ea = sf_dtype_size(c->adt);
  if (s[1] == 1 && c->sd != 1 && n > 1 && c->R > 0) { column_reduce(c, p[0], s[0], p[1], n); return; }
  int ints = is_int_op(c->op, c->adt);
  for (int64_t j = 0; j < n; j++) {
    racc a = row_partial(c->op, c->adt, p[1] + j * s[1] * (int64_t)ea, c->sd, 0, c->R);
    acc_store(c->op, ints, &a, c->R, c->odt, p[0] + j * s[0] * (int64_t)eo);
  }
}

/* one long row split across threads: thread t folds positions [R t / n, R (t+1) / n) */
typedef struct {
  sf_reduce_op op;
  sf_dtype dt;
  const char *p;
  int64_t sd, R;
  racc parts[64];
} split_job;

static void split_part(void *vj, int t, int n) {
  split_job *j = vj;
  j->parts[t] = row_partial(j->op, j->dt, j->p, j->sd, j->R * t / n, j->R * (t + 1) / n);
}

int sf_cpu_reduce(sf_reduce_op op, sf_tensor *out, const sf_tensor *a, int dim) {
  if (op < 0 || op >= SF_RED_COUNT) return sf_error("cpu reduce: unknown op %d", (int)op);
  if (dim < 0 || dim >= a->ndim) return sf_error("cpu reduce: dim %d out of range for a %d-d tensor", dim, a->ndim);
  if (out->ndim != a->ndim) return sf_error("cpu reduce: out has rank %d, expected %d", out->ndim, a->ndim);
  for (int d = 0; d < a->ndim; d++)
    if (out->shape[d] != (d == dim ? 1 : a->shape[d]))
      return sf_error("cpu reduce: out dim %d has size %lld, expected %lld", d, (long long)out->shape[d],
                      (long long)(d == dim ? 1 : a->shape[d]));
  red_ctx c = {op, a->dtype, out->dtype, a->shape[dim], a->stride[dim]};
  const size_t ea = sf_dtype_size(a->dtype), eo = sf_dtype_size(out->dtype);
  sf_cpu_iter it; /* over the kept dims: the reduced one gets size 1 */
  sf_cpu_iter_init_rows(&it, out, a, dim);
  int64_t nout = it.numel, R = c.R;
  if (nout == 0) return 0;
  int nt = sf_cpu_threads(R, SF_CPU_PAR_MIN);
  if (nout < nt && R >= SF_CPU_PAR_MIN) {
    /* few long rows (e.g. a full reduction): split each row across threads and combine in order */
    int ints = is_int_op(op, a->dtype);
    char *const *ob = it.base;
    for (int64_t j = 0; j < nout; j++) {
      /* locate output j and its row through the (coalesced) iterator dims */
      int64_t rem = j, oo = 0, ao = 0;
      for (int d = it.ndim - 1; d >= 0; d--) {
        int64_t i = rem % it.shape[d];
        rem /= it.shape[d];
        oo += i * it.stride[0][d];
        ao += i * it.stride[1][d];
      }
      split_job sj = {op, a->dtype, ob[1] + ao * (int64_t)ea, c.sd, R};
      for (int t = 0; t < 64; t++) sj.parts[t] = acc_init(op);
      if (nt > 64) nt = 64;
      sf_cpu_parallel(nt, split_part, &sj);
      racc *parts = sj.parts;
      racc acc = parts[0];
      for (int t = 1; t < nt; t++) acc_combine(op, ints, &acc, &parts[t]);
      acc_store(op, ints, &acc, R, out->dtype, ob[0] + oo * (int64_t)eo);
    }
    return 0;
  }
  int64_t par_min = SF_CPU_PAR_MIN / (R > 0 ? R : 1);
  sf_cpu_iter_run(&it, red_seg, &c, par_min > 0 ? par_min : 1);
  return 0;
}
