/* cuda_host.h — internals shared by the CUDA backend's host files (compiled once for `cuda` with the CUDA
 * runtime and once for `emu` with kernels/emu/emu.h): per-device state, the device guard, the caching
 * allocator and the GEMM entry. Everything lives in SF_CUDA_NS. */
#ifndef SF_CUDA_HOST_H
#define SF_CUDA_HOST_H

#include "backend/backend.h"
#include "backend/conv_ops.h"
#include "backend/nn_ops.h"
#include "backend/train_ops.h"
#include "backend/cuda/gpu_api.h"
#include "sf_kernels.h"

#ifdef SF_EMU
#include "emu/emu_cublas.h"
#else
#include <cublasLt.h>
#include <cublas_v2.h>
#endif

namespace SF_CUDA_NS {

#define SF_GPU_MAX_DEVICES 16

struct sf_dev_state {
  bool ready;
  cudaStream_t stream;
  cublasHandle_t blas;
  cublasLtHandle_t lt; /* cuBLASLt, for GEMMs with an epilogue (sf_gemm_bias) */
  void *lt_ws;         /* its workspace (sf_gemm_bias allocates it on first use) */
  size_t lt_ws_bytes;
};

/* makes dev current for this thread (and initializes its stream/handles once); -1 + sf_error on failure */
int sf_dev_enter(int index);
sf_dev_state *sf_dev_current(void);
int sf_dev_count(void);
const char *sf_dev_prefix(void); /* "cuda" or "emu", for messages */

/* caching allocator (cuda_alloc.cc) */
void *sf_alloc_get(int index, size_t nbytes);
void sf_alloc_put(int index, void *p);
int sf_alloc_stats(int index, sf_gpu_mem_stats *out);
int sf_alloc_empty_cache(int index);
int sf_alloc_reset_peak(int index);

/* out[B,M,N] = a[B,M,K] b[B,K,N] (cuda_gemm.cc) */
int sf_gemm(sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
/* out[M,N] = round(a[M,K] b[K,N] + bias[N]), bf16/f16, through cuBLASLt's bias epilogue (train_ops.h linear_bias) */
bool sf_gemm_bias_ok(const sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
int sf_gemm_bias(sf_tensor *out, const sf_tensor *a, const sf_tensor *b, const sf_tensor *bias);

/* device collectives (cuda_nccl.cc) */
extern const sf_gpu_ext sf_gpu_services;

/* the backend's op tables, one per file (cuda_nn.cc, cuda_conv.cc, cuda_train.cc), members of its one
 * backend table (cuda_backend.cc), and the activations whose backward cuda_train.cc fuses */
extern const sf_nn_ops sf_gpu_nn_table;
extern const sf_conv_ops sf_gpu_conv_table;
extern const sf_train_ops sf_gpu_train_table;
bool sf_gpu_fuses_unary_bwd(int op);

/* for the op tables (cuda_nn/train/conv.cc): make t's device current; raw pointers of optional tensors */
static inline int sf_enter_of(const sf_tensor *t) { return sf_dev_enter(sf_device_of(t).index); }
static inline const void *sf_ptr_or_null(const sf_tensor *t) { return t ? sf_data_ptr(t) : nullptr; }
static inline float *sf_fptr_or_null(sf_tensor *t) { return t ? (float *)sf_data_ptr(t) : nullptr; }

} // namespace SF_CUDA_NS


#endif
