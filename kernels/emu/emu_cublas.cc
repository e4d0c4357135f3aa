// emu_cublas.cc — cuBLAS GEMMs on the CPU (OpenBLAS), with cuBLAS's argument checks and semantics.
#include "emu/emu_cublas.h"

#include <cblas.h>
#include <stdlib.h>

#include <vector>

struct sf_emu_cublas { cudaStream_t stream; int device; };

extern "C" {

cublasStatus_t sf_emu_cublasCreate(cublasHandle_t *h) {
  int d = 0;
  cudaGetDevice(&d);
  *h = new sf_emu_cublas{NULL, d};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t sf_emu_cublasDestroy(cublasHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t sf_emu_cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}

static float tf32_round(float x) { /* keep 10 mantissa bits, round to nearest even */
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;
  u += 0xfffu + ((u >> 13) & 1u);
  u &= ~0x1fffu;
  memcpy(&x, &u, 4);
  return x;
}

static double load_el(const void *p, cudaDataType t, long long i) {
  switch (t) {
  case CUDA_R_32F: return ((const float *)p)[i];
  case CUDA_R_64F: return ((const double *)p)[i];
  case CUDA_R_16F: return sf_f16_to_f32(((const uint16_t *)p)[i]);
  default: return sf_bf16_to_f32(((const uint16_t *)p)[i]);
  }
}
static void store_el(void *p, cudaDataType t, long long i, double v) {
  switch (t) {
  case CUDA_R_32F: ((float *)p)[i] = (float)v; break;
  case CUDA_R_64F: ((double *)p)[i] = v; break;
  case CUDA_R_16F: ((uint16_t *)p)[i] = sf_f32_to_f16((float)v); break;
  default: ((uint16_t *)p)[i] = sf_f32_to_bf16((float)v); break;
  }
}

cublasStatus_t sf_emu_cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                 int n, int k, const void *alpha, const void *A, cudaDataType at,
                                                 int lda, long long sa, const void *B, cudaDataType bt, int ldb,
                                                 long long sb, const void *beta, void *C, cudaDataType ct, int ldc,
                                                 long long sc, int batch, cublasComputeType_t comp, cublasGemmAlgo_t algo) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  int ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n; /* stored rows of A and B */
  if (lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) || ldc < (m > 1 ? m : 1)) return CUBLAS_STATUS_INVALID_VALUE;
  bool f64 = comp == CUBLAS_COMPUTE_64F;
  if (f64 != (at == CUDA_R_64F) || at != bt || (at != ct && !(ct == CUDA_R_32F && at != CUDA_R_64F)))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (f64 ? false : (comp != CUBLAS_COMPUTE_32F && comp != CUBLAS_COMPUTE_32F_FAST_TF32)) return CUBLAS_STATUS_NOT_SUPPORTED;
  /* alpha/beta are host scalars of the compute type */
  double al = f64 ? *(const double *)alpha : *(const float *)alpha, be = f64 ? *(const double *)beta : *(const float *)beta;
  bool tf32 = comp == CUBLAS_COMPUTE_32F_FAST_TF32 && at == CUDA_R_32F;
  std::vector<double> a64, b64, c64;
  std::vector<float> a32, b32, c32;
  for (int bi = 0; bi < batch; bi++) {
    const void *Ab = (const char *)A + (size_t)(bi * sa) * (at == CUDA_R_64F ? 8 : at == CUDA_R_32F ? 4 : 2);
    const void *Bb = (const char *)B + (size_t)(bi * sb) * (bt == CUDA_R_64F ? 8 : bt == CUDA_R_32F ? 4 : 2);
    long long ce = ct == CUDA_R_64F ? 8 : ct == CUDA_R_32F ? 4 : 2;
    void *Cb = (char *)C + (size_t)(bi * sc) * ce;
    if (m == 0 || n == 0) continue;
    /* op(A) as a dense column-major m x k, op(B) as k x n, C as m x n, in the compute precision */
    if (f64) {
      a64.assign((size_t)m * k, 0); b64.assign((size_t)k * n, 0); c64.assign((size_t)m * n, 0);
      for (int j = 0; j < k; j++)
        for (int i = 0; i < m; i++) a64[i + (size_t)j * m] = load_el(Ab, at, ta == CUBLAS_OP_N ? i + (long long)j * lda : j + (long long)i * lda);
      for (int j = 0; j < n; j++)
        for (int i = 0; i < k; i++) b64[i + (size_t)j * k] = load_el(Bb, bt, tb == CUBLAS_OP_N ? i + (long long)j * ldb : j + (long long)i * ldb);
      if (be != 0)
        for (int j = 0; j < n; j++)
          for (int i = 0; i < m; i++) c64[i + (size_t)j * m] = load_el(Cb, ct, i + (long long)j * ldc);
      if (k > 0) cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, n, k, al, a64.data(), m, b64.data(), k, be, c64.data(), m);
      else for (auto &v : c64) v *= be;
      for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) store_el(Cb, ct, i + (long long)j * ldc, c64[i + (size_t)j * m]);
    } else {
      a32.assign((size_t)m * k, 0); b32.assign((size_t)k * n, 0); c32.assign((size_t)m * n, 0);
      for (int j = 0; j < k; j++)
        for (int i = 0; i < m; i++) {
          float v = (float)load_el(Ab, at, ta == CUBLAS_OP_N ? i + (long long)j * lda : j + (long long)i * lda);
          a32[i + (size_t)j * m] = tf32 ? tf32_round(v) : v;
        }
      for (int j = 0; j < n; j++)
        for (int i = 0; i < k; i++) {
          float v = (float)load_el(Bb, bt, tb == CUBLAS_OP_N ? i + (long long)j * ldb : j + (long long)i * ldb);
          b32[i + (size_t)j * k] = tf32 ? tf32_round(v) : v;
        }
      if (be != 0)
        for (int j = 0; j < n; j++)
          for (int i = 0; i < m; i++) c32[i + (size_t)j * m] = (float)load_el(Cb, ct, i + (long long)j * ldc);
      if (k > 0) cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, n, k, (float)al, a32.data(), m, b32.data(), k, (float)be, c32.data(), m);
      else for (auto &v : c32) v *= (float)be;
      for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) store_el(Cb, ct, i + (long long)j * ldc, c32[i + (size_t)j * m]);
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

/* ---- cuBLASLt: the matmul with the bias epilogue, on top of the GEMM above ---- */
struct sf_emu_cublaslt { int device; };
struct sf_emu_lt_desc {
  cublasComputeType_t comp;
  cublasOperation_t ta, tb;
  cublasLtEpilogue_t epi;
  const void *bias;
};
struct sf_emu_lt_layout { cudaDataType t; uint64_t rows, cols; int64_t ld; };

cublasStatus_t sf_emu_cublasLtCreate(cublasLtHandle_t *h) {
  int d = 0;
  cudaGetDevice(&d);
  *h = new sf_emu_cublaslt{d};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t sf_emu_cublasLtDestroy(cublasLtHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t sf_emu_cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t comp, cudaDataType scale) {
  if (scale != (comp == CUBLAS_COMPUTE_64F ? CUDA_R_64F : CUDA_R_32F)) return CUBLAS_STATUS_NOT_SUPPORTED;
  *d = new sf_emu_lt_desc{comp, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, NULL};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t sf_emu_cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t sf_emu_cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                                    const void *buf, size_t size) {
  if (!d || !buf) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) { /* the real attributes are 4-byte enums and a pointer */
  case CUBLASLT_MATMUL_DESC_TRANSA: if (size != 4) return CUBLAS_STATUS_INVALID_VALUE; memcpy(&d->ta, buf, 4); break;
  case CUBLASLT_MATMUL_DESC_TRANSB: if (size != 4) return CUBLAS_STATUS_INVALID_VALUE; memcpy(&d->tb, buf, 4); break;
  case CUBLASLT_MATMUL_DESC_EPILOGUE: if (size != 4) return CUBLAS_STATUS_INVALID_VALUE; memcpy(&d->epi, buf, 4); break;
  case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
    if (size != sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&d->bias, buf, sizeof(void *));
    break;
  default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t sf_emu_cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t, uint64_t rows, uint64_t cols,
                                                 int64_t ld) {
  if (ld < (int64_t)(rows > 1 ? rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
  *l = new sf_emu_lt_layout{t, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t sf_emu_cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t sf_emu_cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
                                     cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                                     const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                                     const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_size, cudaStream_t stream) {
  if (!h || !desc || !la || !lb || !lc || !ld) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (desc->comp == CUBLAS_COMPUTE_64F) return CUBLAS_STATUS_NOT_SUPPORTED; /* not needed by sfwb */
  const uint64_t m = desc->ta == CUBLAS_OP_N ? la->rows : la->cols, k = desc->ta == CUBLAS_OP_N ? la->cols : la->rows;
  const uint64_t kb = desc->tb == CUBLAS_OP_N ? lb->rows : lb->cols, n = desc->tb == CUBLAS_OP_N ? lb->cols : lb->rows;
  if (k != kb || lc->rows != m || lc->cols != n || ld->rows != m || ld->cols != n || lc->t != ld->t || la->t != lb->t)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (desc->epi != CUBLASLT_EPILOGUE_DEFAULT && desc->epi != CUBLASLT_EPILOGUE_BIAS) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (desc->epi == CUBLASLT_EPILOGUE_BIAS && !desc->bias) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  /* alpha op(A) op(B) in f32 through the GEMM above, then + beta C + bias in f32, one rounding into D */
  std::vector<float> acc((size_t)m * n);
  float zero = 0.0f;
  sf_emu_cublas tmp{stream, h->device};
  cublasStatus_t st = sf_emu_cublasGemmStridedBatchedEx(&tmp, desc->ta, desc->tb, (int)m, (int)n, (int)k, alpha, A, la->t,
                                                        (int)la->ld, 0, B, lb->t, (int)lb->ld, 0, &zero, acc.data(),
                                                        CUDA_R_32F, (int)m, 0, 1, desc->comp, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  const float be = *(const float *)beta;
  for (uint64_t j = 0; j < n; j++)
    for (uint64_t i = 0; i < m; i++) {
      float v = acc[i + j * m];
      if (be != 0) v += be * (float)load_el(C, lc->t, (long long)(i + j * lc->ld));
      if (desc->epi == CUBLASLT_EPILOGUE_BIAS) v += (float)load_el(desc->bias, ld->t, (long long)i);
      store_el(D, ld->t, (long long)(i + j * ld->ld), v);
    }
  (void)algo, (void)ws, (void)ws_size;
  return CUBLAS_STATUS_SUCCESS;
}

} // extern "C"
