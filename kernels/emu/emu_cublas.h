/* emu_cublas.h — the cuBLAS subset the CUDA backend uses, emulated on the CPU with cuBLAS semantics
 * (column-major, op(A)/op(B), lda/ldb/ldc, strided batches with stride 0 allowed, f32 accumulation of
 * bf16/f16 inputs, TF32 input rounding for CUBLAS_COMPUTE_32F_FAST_TF32), and the cuBLASLt subset of
 * sf_gemm_bias: one 2-D matmul with the bias epilogue (D = alpha op(A) op(B) + beta C + bias per row of D,
 * in the compute precision, rounded once to D's type; the bias has D's type). */
#ifndef SF_EMU_CUBLAS_H
#define SF_EMU_CUBLAS_H

#include "emu/emu.h"

typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_ALLOC_FAILED = 3,
               CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_EXECUTION_FAILED = 13, CUBLAS_STATUS_NOT_SUPPORTED = 15 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77, CUBLAS_COMPUTE_64F = 70 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef struct sf_emu_cublas *cublasHandle_t;

#define cublasCreate sf_emu_cublasCreate
#define cublasDestroy sf_emu_cublasDestroy
#define cublasSetStream sf_emu_cublasSetStream
#define cublasGemmStridedBatchedEx sf_emu_cublasGemmStridedBatchedEx

/* cuBLASLt */
typedef struct sf_emu_cublaslt *cublasLtHandle_t;
typedef struct sf_emu_lt_desc *cublasLtMatmulDesc_t;
typedef struct sf_emu_lt_layout *cublasLtMatrixLayout_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef enum { CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4, CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
               CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8 } cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 } cublasLtEpilogue_t;

#define cublasLtCreate sf_emu_cublasLtCreate
#define cublasLtDestroy sf_emu_cublasLtDestroy
#define cublasLtMatmulDescCreate sf_emu_cublasLtMatmulDescCreate
#define cublasLtMatmulDescDestroy sf_emu_cublasLtMatmulDescDestroy
#define cublasLtMatmulDescSetAttribute sf_emu_cublasLtMatmulDescSetAttribute
#define cublasLtMatrixLayoutCreate sf_emu_cublasLtMatrixLayoutCreate
#define cublasLtMatrixLayoutDestroy sf_emu_cublasLtMatrixLayoutDestroy
#define cublasLtMatmul sf_emu_cublasLtMatmul

extern "C" {
cublasStatus_t sf_emu_cublasLtCreate(cublasLtHandle_t *h);
cublasStatus_t sf_emu_cublasLtDestroy(cublasLtHandle_t h);
cublasStatus_t sf_emu_cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t comp, cudaDataType scale);
cublasStatus_t sf_emu_cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d);
cublasStatus_t sf_emu_cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                                    const void *buf, size_t size);
cublasStatus_t sf_emu_cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t, uint64_t rows, uint64_t cols,
                                                 int64_t ld);
cublasStatus_t sf_emu_cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l);
cublasStatus_t sf_emu_cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
                                     cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                                     const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                                     const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_size, cudaStream_t stream);

cublasStatus_t sf_emu_cublasCreate(cublasHandle_t *h);
cublasStatus_t sf_emu_cublasDestroy(cublasHandle_t h);
cublasStatus_t sf_emu_cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t sf_emu_cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                 int n, int k, const void *alpha, const void *A, cudaDataType at,
                                                 int lda, long long sa, const void *B, cudaDataType bt, int ldb,
                                                 long long sb, const void *beta, void *C, cudaDataType ct, int ldc,
                                                 long long sc, int batch, cublasComputeType_t comp, cublasGemmAlgo_t algo);
}

#endif
