// cuda_device.cc — per-device state (stream, cuBLAS handle), the device guard, error checks and the
// strided-iteration descriptor used by every launcher.
#include <mutex>
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_host.h"

namespace SF_CUDA_NS {

static sf_dev_state g_dev[SF_GPU_MAX_DEVICES];
static std::mutex g_dev_mu;
static thread_local int t_dev = -1;
/* the stream this thread's work goes to, per device: NULL = the device's own stream (sfwb.cuda.set_stream) */
static thread_local cudaStream_t t_cur[SF_GPU_MAX_DEVICES];

const char *sf_dev_prefix(void) {
#ifdef SF_EMU
  return "emu";
#else
  return "cuda";
#endif
}

int sf_dev_count(void) {
  static int n = -1;
  if (n < 0) {
    int c = 0;
    if (cudaGetDeviceCount(&c) != cudaSuccess) { c = 0; cudaGetLastError(); }
    n = c > SF_GPU_MAX_DEVICES ? SF_GPU_MAX_DEVICES : c;
  }
  return n;
}

int sf_cuda_check(cudaError_t e, const char *what) {
  if (e == cudaSuccess) return 0;
  cudaGetLastError(); /* clear a non-sticky error so later calls do not report it again */
#ifdef SF_EMU
  return sf_error("%s on emu:%d: %s (%s)", what, t_dev, cudaGetErrorString(e), sf_emu_last_message());
#else
  return sf_error("%s on cuda:%d: %s", what, t_dev, cudaGetErrorString(e));
#endif
}

int sf_cuda_check_launch(const char *what) { return sf_cuda_check(cudaGetLastError(), what); }

int sf_dev_enter(int index) {
  if (index < 0 || index >= sf_dev_count())
    return sf_error("device %s:%d does not exist (%d device(s))", sf_dev_prefix(), index, sf_dev_count());
  if (t_dev != index) {
    if (sf_cuda_check(cudaSetDevice(index), "cudaSetDevice")) return -1;
    t_dev = index;
  }
  sf_dev_state *s = &g_dev[index];
  if (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE)) {
    std::lock_guard<std::mutex> lk(g_dev_mu);
    if (!s->ready) {
      if (sf_cuda_check(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate")) return -1;
      if (cublasCreate(&s->blas) != CUBLAS_STATUS_SUCCESS) return sf_error("cublasCreate failed on %s:%d", sf_dev_prefix(), index);
      cublasSetStream(s->blas, s->stream);
      if (cublasLtCreate(&s->lt) != CUBLAS_STATUS_SUCCESS) return sf_error("cublasLtCreate failed on %s:%d", sf_dev_prefix(), index);
      __atomic_store_n(&s->ready, true, __ATOMIC_RELEASE);
    }
  }
  return 0;
}

sf_dev_state *sf_dev_current(void) { return t_dev >= 0 ? &g_dev[t_dev] : NULL; }

cudaStream_t sf_cuda_stream(void) {
  if (t_dev < 0) return (cudaStream_t)0;
  return t_cur[t_dev] ? t_cur[t_dev] : g_dev[t_dev].stream;
}

cudaStream_t sf_dev_stream(int index) { return sf_dev_enter(index) ? (cudaStream_t)0 : g_dev[index].stream; }

int sf_stream_set_current(int index, cudaStream_t s) {
  if (sf_dev_enter(index)) return -1;
  t_cur[index] = s == g_dev[index].stream ? (cudaStream_t)0 : s;
  return 0;
}

void sf_kiter_make_raw(sf_kiter *it, int ndim, const int64_t *shape, const int64_t *const *strides, int nops) {
  memset(it, 0, sizeof *it);
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) n *= shape[d];
  it->n = n;
  /* keep non-trivial dims, then merge d into d+1 when every operand steps contiguously across them */
  int nd = 0;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == 1) continue;
    it->shape[nd] = shape[d];
    for (int k = 0; k < nops; k++) it->stride[k][nd] = strides[k][d];
    nd++;
  }
  int m = 0;
  for (int d = 0; d < nd; d++) {
    if (m > 0) {
      bool merge = true;
      for (int k = 0; k < nops; k++)
        if (it->stride[k][m - 1] != it->stride[k][d] * it->shape[d]) merge = false;
      if (merge) {
        it->shape[m - 1] *= it->shape[d];
        for (int k = 0; k < nops; k++) it->stride[k][m - 1] = it->stride[k][d];
        continue;
      }
    }
    it->shape[m] = it->shape[d];
    for (int k = 0; k < nops; k++) it->stride[k][m] = it->stride[k][d];
    m++;
  }
  if (m == 0) { /* a single element (or empty): one dim of size n */
    it->shape[0] = n;
    for (int k = 0; k < nops; k++) it->stride[k][0] = 1;
    m = 1;
  }
  it->ndim = m;
}

int sf_kiter_make(sf_kiter *it, const sf_tensor *const *ts, int nops) {
  if (nops > SF_KMAX_OPS) return sf_error("internal: %d operands in one kernel (max %d)", nops, SF_KMAX_OPS);
  const int64_t *st[SF_KMAX_OPS];
  for (int k = 0; k < nops; k++) st[k] = ts[k]->stride;
  sf_kiter_make_raw(it, ts[0]->ndim, ts[0]->shape, st, nops);
  return 0;
}

} // namespace SF_CUDA_NS
