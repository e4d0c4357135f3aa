// cuda_gemm.cc — batched matmul through cublasGemmStridedBatchedEx: bf16/f16 inputs with f32
// accumulation, f32 (TF32 only when sfwb asks for it), f64; and the bf16/f16 linear layer with its bias
// through cuBLASLt's bias epilogue (sf_gemm_bias). Row-major C = A B is computed as the
// column-major C^T = B^T A^T; an operand whose layout cuBLAS cannot express (no unit stride, or a
// leading dimension too small, e.g. an expanded dim) is first copied contiguous.
#include "backend/cuda/cuda_host.h"

namespace SF_CUDA_NS {

bool sf_gemm_allow_tf32 = false;

/* one operand as a column-major (rows x cols) matrix op(X) with leading dimension ld, for a row-major
 * R x C view with strides (sr, sc): row-major R x C == column-major C x R (op N, ld = sr) when sc == 1,
 * or its transpose (op T, ld = sc) when sr == 1. */
static bool gemm_layout(int64_t R, int64_t C, int64_t sr, int64_t sc, cublasOperation_t *op, int64_t *ld) {
  if (C == 1) sc = 1;          /* the stride of a size-1 dim is irrelevant */
  if (R == 1 && sc != 1) sr = 1;
  if (sc == 1 && sr >= (C > 1 ? C : 1)) { *op = CUBLAS_OP_N; *ld = sr; return true; }
  if (R == 1 && sc == 1) { *op = CUBLAS_OP_N; *ld = C > 1 ? C : 1; return true; }
  if (sr == 1 && sc >= (R > 1 ? R : 1)) { *op = CUBLAS_OP_T; *ld = sc; return true; }
  return false;
}

static cudaDataType blas_type(sf_dtype dt) {
  switch (dt) {
  case SF_BF16: return CUDA_R_16BF;
  case SF_F16: return CUDA_R_16F;
  case SF_F64: return CUDA_R_64F;
  default: return CUDA_R_32F;
  }
}

/* a contiguous copy of t on the device (caller releases) */
static sf_tensor *dense_copy(const sf_tensor *t) {
  sf_tensor *c = sf_tensor_new(t->dtype, sf_device_of(t), t->ndim, t->shape);
  if (!c) return NULL;
  sf_kiter it;
  const sf_tensor *ts[2] = {c, t};
  sf_kiter_make(&it, ts, 2);
  if (sf_k_copy(sf_data_ptr(c), c->dtype, sf_data_ptr(t), t->dtype, &it)) { sf_release(c); return NULL; }
  return c;
}

int sf_gemm(sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  int64_t B = a->shape[0], M = a->shape[1], K = a->shape[2], N = b->shape[2];
  sf_dtype dt = out->dtype;
  if (B == 0 || M == 0 || N == 0) return 0;
  if (K == 0) {
    sf_kiter it;
    const sf_tensor *ts[1] = {out};
    sf_kiter_make(&it, ts, 1);
    return sf_k_fill(sf_data_ptr(out), dt, 0.0, &it);
  }
  if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX || B > INT32_MAX) return sf_error("matmul: dims beyond 2^31 are not supported by cuBLAS");
  sf_tensor *ac = NULL, *bc = NULL;
  /* C^T (N x M col-major) = op(B) (N x K) * op(A) (K x M) */
  cublasOperation_t opa = CUBLAS_OP_N, opb = CUBLAS_OP_N;
  int64_t lda = 1, ldb = 1;
  if (!gemm_layout(K, N, b->stride[1], b->stride[2], &opb, &ldb)) {
    if (!(bc = dense_copy(b))) return -1;
    b = bc;
    gemm_layout(K, N, b->stride[1], b->stride[2], &opb, &ldb);
  }
  if (!gemm_layout(M, K, a->stride[1], a->stride[2], &opa, &lda)) {
    if (!(ac = dense_copy(a))) { sf_release(bc); return -1; }
    a = ac;
    gemm_layout(M, K, a->stride[1], a->stride[2], &opa, &lda);
  }
  int64_t sa = B > 1 ? a->stride[0] : 0, sb = B > 1 ? b->stride[0] : 0;
  sf_dev_state *ds = sf_dev_current();
  cublasSetStream(ds->blas, sf_cuda_stream()); /* the handle is the device's; the stream is this thread's current one */
  cublasComputeType_t comp = dt == SF_F64 ? CUBLAS_COMPUTE_64F
                             : (dt == SF_F32 && sf_gemm_allow_tf32) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  float one = 1.0f, zero = 0.0f;
  double one64 = 1.0, zero64 = 0.0;
  const void *alpha = dt == SF_F64 ? (const void *)&one64 : (const void *)&one;
  const void *beta = dt == SF_F64 ? (const void *)&zero64 : (const void *)&zero;
  /* operands may be bf16/f16 with an f32 result (the unrounded accumulator, e.g. for a bias added in f32) */
  cudaDataType t = blas_type(a->dtype), tc = blas_type(dt);
  cublasStatus_t st = cublasGemmStridedBatchedEx(ds->blas, opb, opa, (int)N, (int)M, (int)K, alpha, sf_data_ptr(b), t,
                                                 (int)ldb, (long long)sb, sf_data_ptr(a), t, (int)lda, (long long)sa,
                                                 beta, sf_data_ptr(out), tc, (int)N, (long long)(M * N), (int)B, comp,
                                                 CUBLAS_GEMM_DEFAULT);
  sf_release(ac);
  sf_release(bc);
  if (st != CUBLAS_STATUS_SUCCESS)
    return sf_error("matmul on %s: cublasGemmStridedBatchedEx failed with status %d ([%lld, %lld, %lld] x [%lld, %lld, %lld], %s)",
                    sf_dev_prefix(), (int)st, (long long)B, (long long)M, (long long)K, (long long)B, (long long)K,
                    (long long)N, sf_dtype_name(dt));
  return 0;
}

/* ---- cuBLASLt with the bias epilogue: out = round(a b + bias), bf16/f16, f32 accumulation and bias add ---- */

#define SF_LT_WORKSPACE (32u << 20) /* cuBLASLt's heuristics pick Hopper's faster kernels only with a workspace */

static bool lt_ok(cublasStatus_t st) { return st == CUBLAS_STATUS_SUCCESS; }

/* may sf_gemm_bias run these operands? (the backend's supports query for SF_CAP_LINEAR_BIAS; the caller gives a
 * bias [N] of out's dtype with unit stride) */
bool sf_gemm_bias_ok(const sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  if (!out || !a || !b) return false;
  sf_dtype dt = out->dtype;
  if ((dt != SF_BF16 && dt != SF_F16) || a->dtype != dt || b->dtype != dt) return false;
  if (out->ndim != 2 || a->ndim != 2 || b->ndim != 2) return false;
  int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
  if (M == 0 || N == 0 || K == 0 || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) return false;
  if (out->stride[1] != 1 || (M > 1 && out->stride[0] != N)) return false;
  cublasOperation_t op;
  int64_t ld;
  return gemm_layout(K, N, b->stride[0], b->stride[1], &op, &ld) && gemm_layout(M, K, a->stride[0], a->stride[1], &op, &ld);
}

int sf_gemm_bias(sf_tensor *out, const sf_tensor *a, const sf_tensor *b, const sf_tensor *bias) {
  sf_dtype dt = out->dtype;
  if (!sf_gemm_bias_ok(out, a, b) || bias->dtype != dt || bias->ndim != 1 || (b->shape[1] > 1 && bias->stride[0] != 1))
    return sf_error("linear_bias: operands the bias epilogue cannot take");
  int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
  cublasOperation_t opa = CUBLAS_OP_N, opb = CUBLAS_OP_N;
  int64_t lda = 0, ldb = 0;
  gemm_layout(K, N, b->stride[0], b->stride[1], &opb, &ldb);
  gemm_layout(M, K, a->stride[0], a->stride[1], &opa, &lda);
  const int index = sf_device_of(out).index;
  if (sf_dev_enter(index)) return -1;
  sf_dev_state *ds = sf_dev_current();
  if (!ds->lt_ws) { /* outside the caching allocator: not a tensor, and kept for the process */
    if (sf_cuda_check(cudaMalloc(&ds->lt_ws, SF_LT_WORKSPACE), "allocating the cuBLASLt workspace")) return -1;
    ds->lt_ws_bytes = SF_LT_WORKSPACE;
  }
  /* column-major C^T (N x M) = op(B) (N x K) * op(A) (K x M); the bias runs along C^T's rows (N) */
  cudaDataType t = blas_type(dt);
  cublasLtMatmulDesc_t desc = NULL;
  cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
  const void *bias_ptr = sf_data_ptr(bias);
  float one = 1.0f, zero = 0.0f;
  cublasStatus_t st = cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  if (lt_ok(st)) st = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opb, sizeof opb);
  if (lt_ok(st)) st = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opa, sizeof opa);
  if (lt_ok(st)) st = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
  if (lt_ok(st)) st = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof bias_ptr);
  /* stored shapes: op N keeps (rows, cols) = op's shape, op T stores the transpose */
  if (lt_ok(st)) st = cublasLtMatrixLayoutCreate(&la, t, opb == CUBLAS_OP_N ? N : K, opb == CUBLAS_OP_N ? K : N, ldb);
  if (lt_ok(st)) st = cublasLtMatrixLayoutCreate(&lb, t, opa == CUBLAS_OP_N ? K : M, opa == CUBLAS_OP_N ? M : K, lda);
  if (lt_ok(st)) st = cublasLtMatrixLayoutCreate(&lc, t, N, M, N);
  if (lt_ok(st))
    st = cublasLtMatmul(ds->lt, desc, &one, sf_data_ptr(b), la, sf_data_ptr(a), lb, &zero, sf_data_ptr(out), lc,
                        sf_data_ptr(out), lc, NULL, ds->lt_ws, ds->lt_ws_bytes, sf_cuda_stream());
  if (lc) cublasLtMatrixLayoutDestroy(lc);
  if (lb) cublasLtMatrixLayoutDestroy(lb);
  if (la) cublasLtMatrixLayoutDestroy(la);
  if (desc) cublasLtMatmulDescDestroy(desc);
  /* no kernel for this layout or alignment (cuBLASLt is pickier than cublasGemmEx): the caller's unfused path */
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE) return 1;
  if (!lt_ok(st))
    return sf_error("linear on %s: cublasLtMatmul (bias epilogue) failed with status %d ([%lld, %lld] x [%lld, %lld], %s)",
                    sf_dev_prefix(), (int)st, (long long)M, (long long)K, (long long)K, (long long)N, sf_dtype_name(dt));
  return 0;
}

} // namespace SF_CUDA_NS
