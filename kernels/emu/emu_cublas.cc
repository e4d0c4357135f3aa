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

} // extern "C"
