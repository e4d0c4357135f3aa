/* cpu_matmul.c — batched matmul [B,M,K] x [B,K,N] -> [B,M,N] through OpenBLAS sgemm/dgemm.
 * Either inner layout of a or b is passed to BLAS as a transpose flag (no copy); bf16/f16 operands are
 * widened to f32 buffers and the f32 result rounded back; a batch of rows sharing one right-hand
 * matrix (batch stride 0, as in x @ W) becomes a single tall GEMM. Integer dtypes use a plain loop. */
#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/cpu_internal.h"

/* how BLAS should read one rows x cols matrix with element strides (sr, sc), if it can */
typedef struct { int trans; int64_t ld; } blay;

static int blas_layout(int64_t rows, int64_t cols, int64_t sr, int64_t sc, blay *L) {
  int64_t mc = cols > 1 ? cols : 1, mr = rows > 1 ? rows : 1;
  if ((sc == 1 || cols <= 1) && (rows <= 1 || sr >= mc)) { L->trans = 0; L->ld = rows <= 1 ? mc : sr; }
  else if ((sr == 1 || rows <= 1) && (cols <= 1 || sc >= mr)) { L->trans = 1; L->ld = cols <= 1 ? mr : sc; }
  else return 0;
  return L->ld <= INT_MAX;
}

/* an operand as BLAS sees it: base pointer, per-batch stride (elements), layout */
typedef struct { const char *p; int64_t bs; blay L; void *owned; } bop;

/* prepare a [B?, rows, cols] operand: direct when its dtype is the compute type and BLAS can read its
 * strides, else converted to a contiguous compute-type buffer (once when the batch stride is 0) */
static int prep(const sf_tensor *t, int64_t B, sf_dtype ct, bop *o) {
  int64_t rows = t->shape[1], cols = t->shape[2];
  size_t es = sf_dtype_size(t->dtype), ec = sf_dtype_size(ct);
  memset(o, 0, sizeof *o);
  if (t->dtype == ct && blas_layout(rows, cols, t->stride[1], t->stride[2], &o->L)) {
    o->p = (const char *)t->storage->data + t->offset * (int64_t)es;
    o->bs = t->stride[0];
    return 0;
  }
  int64_t nb = (t->stride[0] == 0 || B == 1) ? 1 : B;
  size_t n = (size_t)(nb * rows * cols);
  char *buf = malloc(n * ec + 64);
  if (!buf) return sf_error("cpu matmul: out of memory converting a [%lld, %lld, %lld] operand", (long long)nb,
                            (long long)rows, (long long)cols);
  const char *src = (const char *)t->storage->data + t->offset * (int64_t)es;
  for (int64_t b = 0; b < nb; b++)
    for (int64_t r = 0; r < rows; r++) {
      const char *row = src + (b * t->stride[0] + r * t->stride[1]) * (int64_t)es;
      char *dst = buf + ((b * rows + r) * cols) * (int64_t)ec;
      if (ct == SF_F64) sf_cpu_load_d(t->dtype, row, t->stride[2], cols, (double *)dst);
      else sf_cpu_load_f(t->dtype, row, t->stride[2], cols, (float *)dst);
    }
  o->p = buf;
  o->owned = buf;
  o->bs = nb == 1 ? 0 : rows * cols;
  o->L.trans = 0;
  o->L.ld = cols > 1 ? cols : 1;
  return 0;
}

static void gemm1(sf_dtype ct, int ta, int tb, int64_t M, int64_t N, int64_t K, const void *A, int64_t lda,
                  const void *Bm, int64_t ldb, double beta, void *C, int64_t ldc) {
  if (ct == SF_F64)
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
                1.0, A, (int)lda, Bm, (int)ldb, beta, C, (int)ldc);
  else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
                1.0f, A, (int)lda, Bm, (int)ldb, (float)beta, C, (int)ldc);
}

/* Large GEMMs are split into independent row or column blocks run by the CPU pool, each a single-threaded
 * BLAS call: OpenBLAS's own threads synchronise inside every GEMM and then spin (sched_yield) for a while
 * after it, against the pool's threads running the elementwise ops in between; with one threading layer
 * nothing spins and a descheduled thread delays only its own block. SFWB_GEMM_SPLIT=0 turns it off. */
#define SPLIT_MIN_FLOP ((int64_t)1 << 25)

typedef struct {
  sf_dtype ct;
  int ta, tb, by_rows;
  int64_t M, N, K, lda, ldb, ldc;
  const char *A, *B;
  char *C;
  double beta;
} gemm_job;

static void gemm_part(void *vj, int t, int nt) {
  const gemm_job *j = vj;
  const size_t ec = sf_dtype_size(j->ct);
  const int64_t n = j->by_rows ? j->M : j->N;
  /* block edges on multiples of 16 rows/columns (the BLAS kernels' register tiles) */
  int64_t lo = (n * t / nt) & ~(int64_t)15, hi = t == nt - 1 ? n : (n * (t + 1) / nt) & ~(int64_t)15;
  if (hi <= lo) return;
  if (j->by_rows) { /* rows lo..hi of A and C */
    const char *A = j->A + (j->ta ? lo : lo * j->lda) * (int64_t)ec;
    gemm1(j->ct, j->ta, j->tb, hi - lo, j->N, j->K, A, j->lda, j->B, j->ldb, j->beta, j->C + lo * j->ldc * (int64_t)ec, j->ldc);
  } else { /* columns lo..hi of B and C */
    const char *B = j->B + (j->tb ? lo * j->ldb : lo) * (int64_t)ec;
    gemm1(j->ct, j->ta, j->tb, j->M, hi - lo, j->K, j->A, j->lda, B, j->ldb, j->beta, j->C + lo * (int64_t)ec, j->ldc);
  }
}

static int split_on(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("SFWB_GEMM_SPLIT");
    on = !(e && *e == '0');
  }
  return on;
}

/* SFWB_GEMM_PROFILE=1: every GEMM's shape, time and rate on stderr */
static double nows(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + 1e-9 * ts.tv_nsec; }
static void gemm_beta0(sf_dtype ct, int ta, int tb, int64_t M, int64_t N, int64_t K, const void *A, int64_t lda,
                      const void *Bm, int64_t ldb, double beta, void *C, int64_t ldc);
static void gemm_beta(sf_dtype ct, int ta, int tb, int64_t M, int64_t N, int64_t K, const void *A, int64_t lda,
                      const void *Bm, int64_t ldb, double beta, void *C, int64_t ldc) {
  static int prof = -1;
  if (prof < 0) prof = getenv("SFWB_GEMM_PROFILE") != NULL;
  double t0 = prof ? nows() : 0;
  gemm_beta0(ct, ta, tb, M, N, K, A, lda, Bm, ldb, beta, C, ldc);
  if (prof) { double t = nows() - t0; fprintf(stderr, "gemm M %5lld N %5lld K %5lld ta %d tb %d beta %g: %7.2f ms %6.1f GF/s\n", (long long)M, (long long)N, (long long)K, ta, tb, beta, t * 1e3, 2.0 * M * N * K / t / 1e9); }
}
/* one-row / one-column products as BLAS level 2 (sgemm packs a whole operand for them: the Wan time
 * embedding's [1, 9216] x [9216, 1536] took 24 ms instead of ~3) and K = 1 (outer products) as rank-1 updates */
static int level2(sf_dtype ct, int ta, int tb, int64_t M, int64_t N, int64_t K, const void *A, int64_t lda,
                  const void *Bm, int64_t ldb, double beta, void *C, int64_t ldc) {
  const int d = ct == SF_F64;
  if (M == 1) { /* c[N] = op(B)^T a */
    const int64_t inca = ta ? lda : 1;
    if (d) cblas_dgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, (int)(tb ? N : K), (int)(tb ? K : N), 1.0, Bm, (int)ldb, A, (int)inca, beta, C, 1);
    else cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, (int)(tb ? N : K), (int)(tb ? K : N), 1.0f, Bm, (int)ldb, A, (int)inca, (float)beta, C, 1);
    return 1;
  }
  if (N == 1) { /* c[M] (stride ldc) = op(A) b */
    const int64_t incb = tb ? 1 : ldb;
    if (d) cblas_dgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, (int)(ta ? K : M), (int)(ta ? M : K), 1.0, A, (int)lda, Bm, (int)incb, beta, C, (int)ldc);
    else cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, (int)(ta ? K : M), (int)(ta ? M : K), 1.0f, A, (int)lda, Bm, (int)incb, (float)beta, C, (int)ldc);
    return 1;
  }
  if (K == 1 && (beta == 0.0 || beta == 1.0)) { /* C = beta C + a b^T */
    const size_t es = d ? 8 : 4;
    if (beta == 0.0)
      for (int64_t i = 0; i < M; i++) memset((char *)C + i * ldc * (int64_t)es, 0, (size_t)N * es);
    const int64_t inca = ta ? 1 : lda, incb = tb ? ldb : 1;
    if (d) cblas_dger(CblasRowMajor, (int)M, (int)N, 1.0, A, (int)inca, Bm, (int)incb, C, (int)ldc);
    else cblas_sger(CblasRowMajor, (int)M, (int)N, 1.0f, A, (int)inca, Bm, (int)incb, C, (int)ldc);
    return 1;
  }
  return 0;
}

static void gemm_beta0(sf_dtype ct, int ta, int tb, int64_t M, int64_t N, int64_t K, const void *A, int64_t lda,
                      const void *Bm, int64_t ldb, double beta, void *C, int64_t ldc) {
  if (level2(ct, ta, tb, M, N, K, A, lda, Bm, ldb, beta, C, ldc)) return;
  const int64_t flop = M * N * K;
  const int64_t span = M > N ? M : N;
  const int nt = split_on() && flop >= SPLIT_MIN_FLOP && span >= 64 ? sf_cpu_threads(span / 32, 2) : 1;
  if (nt <= 1) {
    gemm1(ct, ta, tb, M, N, K, A, lda, Bm, ldb, beta, C, ldc);
    return;
  }
  /* split the dimension whose other operand is smaller: every block packs that operand again */
  gemm_job j = {ct, ta, tb, M >= N, M, N, K, lda, ldb, ldc, A, Bm, C, beta};
  const int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  sf_cpu_parallel(nt, gemm_part, &j);
  openblas_set_num_threads(blas_threads);
}

static void gemm(sf_dtype ct, int ta, int tb, int64_t M, int64_t N, int64_t K, const void *A, int64_t lda,
                 const void *Bm, int64_t ldb, void *C, int64_t ldc) {
  gemm_beta(ct, ta, tb, M, N, K, A, lda, Bm, ldb, 0.0, C, ldc);
}

static int matmul_int(sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  int64_t B = out->shape[0], M = out->shape[1], N = out->shape[2], K = a->shape[2];
  size_t ea = sf_dtype_size(a->dtype), eo = sf_dtype_size(out->dtype);
  const char *pa = (const char *)a->storage->data + a->offset * (int64_t)ea;
  const char *pb = (const char *)b->storage->data + b->offset * (int64_t)ea;
  char *po = (char *)out->storage->data + out->offset * (int64_t)eo;
  int64_t *row = malloc((size_t)(K > 0 ? K : 1) * 8), *col = malloc((size_t)(K > 0 ? K : 1) * 8);
  if (!row || !col) { free(row); free(col); return sf_error("cpu matmul: out of memory"); }
  for (int64_t bi = 0; bi < B; bi++)
    for (int64_t i = 0; i < M; i++) {
      sf_cpu_load_i(a->dtype, pa + (bi * a->stride[0] + i * a->stride[1]) * (int64_t)ea, a->stride[2], K, row);
      for (int64_t j = 0; j < N; j++) {
        sf_cpu_load_i(b->dtype, pb + (bi * b->stride[0] + j * b->stride[2]) * (int64_t)ea, b->stride[1], K, col);
        uint64_t s = 0;
        for (int64_t k = 0; k < K; k++) s += (uint64_t)row[k] * (uint64_t)col[k];
        int64_t v = (int64_t)s;
        sf_cpu_store_i(out->dtype, po + (bi * out->stride[0] + i * out->stride[1] + j * out->stride[2]) * (int64_t)eo, 1, 1, &v);
      }
    }
  free(row);
  free(col);
  return 0;
}

int sf_cpu_matmul(sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  if (a->ndim != 3 || b->ndim != 3 || out->ndim != 3) return sf_error("cpu matmul: expects 3-d operands [B, M, K] x [B, K, N]");
  int64_t B = out->shape[0], M = out->shape[1], N = out->shape[2], K = a->shape[2];
  if (a->shape[0] != B || b->shape[0] != B || a->shape[1] != M || b->shape[1] != K || b->shape[2] != N)
    return sf_error("cpu matmul: shapes [%lld, %lld, %lld] x [%lld, %lld, %lld] -> [%lld, %lld, %lld] do not match",
                    (long long)a->shape[0], (long long)a->shape[1], (long long)a->shape[2], (long long)b->shape[0],
                    (long long)b->shape[1], (long long)b->shape[2], (long long)B, (long long)M, (long long)N);
  if (a->dtype != b->dtype) return sf_error("cpu matmul: operand dtypes differ (%s vs %s)", sf_dtype_name(a->dtype), sf_dtype_name(b->dtype));
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX) return sf_error("cpu matmul: a dimension exceeds BLAS's 32-bit range");
  if (B * M * N == 0) return 0;
  if (K == 0) return sf_cpu_fill(out, 0.0);
  sf_cpu_dom dom = sf_cpu_domain(a->dtype);
  if (dom == SF_DOM_I) return matmul_int(out, a, b);
  const int dn = sf_cpu_matmul_dnnl(out, a, b); /* bf16 on oneDNN; 1 = not taken */
  if (dn <= 0) return dn;
  sf_dtype ct = dom == SF_DOM_D ? SF_F64 : SF_F32;
  size_t ec = sf_dtype_size(ct), eo = sf_dtype_size(out->dtype);

  bop A, Bo;
  if (prep(a, B, ct, &A)) return -1;
  if (prep(b, B, ct, &Bo)) { free(A.owned); return -1; }
  /* the result goes straight into out when it is a contiguous compute-type tensor */
  int direct = out->dtype == ct && out->stride[2] == 1 && out->stride[1] == N && out->stride[0] == M * N;
  char *C = direct ? (char *)out->storage->data + out->offset * (int64_t)eo : malloc((size_t)(B * M * N) * ec + 64);
  if (!C) { free(A.owned); free(Bo.owned); return sf_error("cpu matmul: out of memory for a [%lld, %lld, %lld] result", (long long)B, (long long)M, (long long)N); }

  if (B > 1 && Bo.bs == 0 && !A.L.trans && (M == 1 ? A.bs > 0 : A.bs == M * A.L.ld) && M * B <= INT_MAX) {
    /* every batch shares b and a's rows are evenly spaced: one [B*M, K] x [K, N] GEMM */
    int64_t lda = M == 1 ? (A.bs > 0 ? A.bs : K) : A.L.ld;
    if (lda >= K && lda <= INT_MAX) {
      gemm(ct, 0, Bo.L.trans, B * M, N, K, A.p, lda, Bo.p, Bo.L.ld, C, N);
      goto done;
    }
  }
  for (int64_t bi = 0; bi < B; bi++)
    gemm(ct, A.L.trans, Bo.L.trans, M, N, K, A.p + bi * A.bs * (int64_t)ec, A.L.ld, Bo.p + bi * Bo.bs * (int64_t)ec,
         Bo.L.ld, C + bi * M * N * (int64_t)ec, N);
done:
  if (!direct) {
    /* round back into out (any dtype / strides) row by row */
    for (int64_t bi = 0; bi < B; bi++)
      for (int64_t i = 0; i < M; i++) {
        char *dst = (char *)out->storage->data + (out->offset + bi * out->stride[0] + i * out->stride[1]) * (int64_t)eo;
        const char *src = C + ((bi * M + i) * N) * (int64_t)ec;
        if (ct == SF_F64) sf_cpu_store_d(out->dtype, dst, out->stride[2], N, (const double *)src);
        else sf_cpu_store_f(out->dtype, dst, out->stride[2], N, (const float *)src);
      }
    free(C);
  }
  free(A.owned);
  free(Bo.owned);
  return 0;
}

/* may matmul_acc add a b into out? (the backend's supports query for SF_CAP_MATMUL_ACC) */
bool sf_cpu_can_matmul_acc(const sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  if (!out || !a || !b || a->ndim != 2 || b->ndim != 2 || out->ndim != 2) return false;
  const int64_t M = out->shape[0], N = out->shape[1], K = a->shape[1];
  if (a->shape[0] != M || b->shape[0] != K || b->shape[1] != N) return false;
  if (out->dtype != a->dtype || out->dtype != b->dtype || (out->dtype != SF_F32 && out->dtype != SF_F64)) return false;
  if (!sf_is_contiguous(out) || M > INT_MAX || N > INT_MAX || K > INT_MAX) return false;
  blay LA, LB;
  return blas_layout(M, K, a->stride[0], a->stride[1], &LA) && blas_layout(K, N, b->stride[0], b->stride[1], &LB);
}

/* out += a b (train_ops.h matmul_acc): BLAS with beta = 1 straight into out */
int sf_cpu_matmul_acc(sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  if (!sf_cpu_can_matmul_acc(out, a, b)) return sf_error("matmul_acc: operands the cpu cannot accumulate into");
  const int64_t M = out->shape[0], N = out->shape[1], K = a->shape[1];
  if (M * N == 0 || K == 0) return 0;
  blay LA = {0}, LB = {0};
  blas_layout(M, K, a->stride[0], a->stride[1], &LA);
  blas_layout(K, N, b->stride[0], b->stride[1], &LB);
  const size_t es = sf_dtype_size(out->dtype);
  const char *pa = (const char *)a->storage->data + a->offset * (int64_t)es;
  const char *pb = (const char *)b->storage->data + b->offset * (int64_t)es;
  char *pc = (char *)out->storage->data + out->offset * (int64_t)es;
  gemm_beta(out->dtype, LA.trans, LB.trans, M, N, K, pa, LA.ld, pb, LB.ld, 1.0, pc, N);
  return 0;
}
