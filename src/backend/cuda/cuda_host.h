/* cuda_host.h — internals shared by the CUDA backend's host files (compiled once for `cuda` with the CUDA
 * runtime and once for `emu` with kernels/emu/emu.h): per-device state, the device guard, the caching
 * allocator and the GEMM entry. Everything lives in SF_CUDA_NS. */
#ifndef SF_CUDA_HOST_H
#define SF_CUDA_HOST_H

#include "core/backend.h"
#include "backend/conv_ops.h"
#include "core/nn_ops.h"
#include "core/train_ops.h"
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
/* streams: the device's own stream (made at first use), and the thread's current stream on a device,
 * where every launch, copy, GEMM and collective of this thread goes (NULL or the own stream = default) */
cudaStream_t sf_dev_stream(int index);
int sf_stream_set_current(int index, cudaStream_t s);
int sf_dev_count(void);
const char *sf_dev_prefix(void); /* "cuda" or "emu", for messages */

/* caching allocator (cuda_alloc.cc) */
void *sf_alloc_get(int index, size_t nbytes);
void sf_alloc_put(int index, void *p);
int sf_alloc_stats(int index, sf_gpu_mem_stats *out);
int sf_alloc_empty_cache(int index);
int sf_alloc_reset_peak(int index);
/* a block allocated on one stream and used on another (t:record_stream(s)): it is reused only after the
 * work enqueued on s before its release is done; a stream about to be destroyed hands its cache back */
int sf_alloc_record_stream(int index, void *p, cudaStream_t s);
int sf_alloc_stream_gone(int index, cudaStream_t s);

/* out[B,M,N] = a[B,M,K] b[B,K,N] (cuda_gemm.cc) */
int sf_gemm(sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
/* out[M,N] = round(a[M,K] b[K,N] + bias[N]), bf16/f16, through cuBLASLt's bias epilogue (train_ops.h linear_bias) */
bool sf_gemm_bias_ok(const sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
int sf_gemm_bias(sf_tensor *out, const sf_tensor *a, const sf_tensor *b, const sf_tensor *bias);

/* streams and events (cuda_stream.cc): members of sf_gpu_services */
sf_gpu_event *sf_svc_event_new(int index);
int sf_svc_event_record(sf_gpu_event *e);
int sf_svc_event_elapsed(sf_gpu_event *a, sf_gpu_event *b, double *ms);
void sf_svc_event_free(sf_gpu_event *e);
sf_gpu_stream *sf_svc_stream_new(int index);
sf_gpu_stream *sf_svc_stream_default(int index);
void sf_svc_stream_free(sf_gpu_stream *s);
int sf_svc_stream_set_current(int index, sf_gpu_stream *s);
int sf_svc_stream_synchronize(sf_gpu_stream *s);
int sf_svc_stream_query(sf_gpu_stream *s);
int sf_svc_stream_wait_event(sf_gpu_stream *s, sf_gpu_event *e);
int sf_svc_event_record_on(sf_gpu_event *e, sf_gpu_stream *s);
int sf_svc_event_synchronize(sf_gpu_event *e);
int sf_svc_event_query(sf_gpu_event *e);
int sf_svc_record_stream(int index, void *ptr, sf_gpu_stream *s);

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
