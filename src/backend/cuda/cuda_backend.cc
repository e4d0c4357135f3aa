// cuda_backend.cc — the CUDA backend's op table (backend.h), serving `cuda:N` when compiled with the CUDA
// runtime and `emu:N` when compiled with kernels/emu/emu.h. Ops run on the device's stream; copies to
// the host synchronize it.
#include "backend/cuda/cuda_host.h"

namespace SF_CUDA_NS {


static int be_count(void) { return sf_dev_count(); }

static void *be_alloc(sf_device dev, size_t n) { return sf_alloc_get(dev.index, n); }
static void be_free(sf_device dev, void *p, size_t n) { sf_alloc_put(dev.index, p); }

static int be_h2d(sf_device dev, void *dst, const void *src, size_t n) {
  if (!n) return 0;
  if (sf_dev_enter(dev.index)) return -1;
  /* the source is pageable and may be freed on return: synchronize */
  if (sf_cuda_check(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, sf_cuda_stream()), "host-to-device copy")) return -1;
  return sf_cuda_check(cudaStreamSynchronize(sf_cuda_stream()), "host-to-device copy");
}

static int be_d2h(sf_device dev, void *dst, const void *src, size_t n) {
  if (!n) return 0;
  if (sf_dev_enter(dev.index)) return -1;
  if (sf_cuda_check(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, sf_cuda_stream()), "device-to-host copy")) return -1;
  return sf_cuda_check(cudaStreamSynchronize(sf_cuda_stream()), "device-to-host copy");
}

static int be_sync(sf_device dev) {
  if (sf_dev_enter(dev.index)) return -1;
  return sf_cuda_check(cudaStreamSynchronize(sf_cuda_stream()), "synchronize");
}

static int be_copy(sf_tensor *dst, const sf_tensor *src) {
  if (sf_enter_of(dst)) return -1;
  sf_kiter it;
  const sf_tensor *ts[2] = {dst, src};
  sf_kiter_make(&it, ts, 2);
  return sf_k_copy(sf_data_ptr(dst), dst->dtype, sf_data_ptr(src), src->dtype, &it);
}

static int be_fill(sf_tensor *t, double v) {
  if (sf_enter_of(t)) return -1;
  sf_kiter it;
  const sf_tensor *ts[1] = {t};
  sf_kiter_make(&it, ts, 1);
  return sf_k_fill(sf_data_ptr(t), t->dtype, v, &it);
}

static int be_unary(sf_unary_op op, sf_tensor *out, const sf_tensor *a, double p0, double p1) {
  if (sf_enter_of(out)) return -1;
  sf_kiter it;
  const sf_tensor *ts[2] = {out, a};
  sf_kiter_make(&it, ts, 2);
  return sf_k_unary(op, sf_data_ptr(out), out->dtype, sf_data_ptr(a), a->dtype, p0, p1, &it);
}

static int be_binary(sf_binary_op op, sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  if (sf_enter_of(out)) return -1;
  sf_kiter it;
  const sf_tensor *ts[3] = {out, a, b};
  sf_kiter_make(&it, ts, 3);
  return sf_k_binary(op, sf_data_ptr(out), out->dtype, sf_data_ptr(a), sf_data_ptr(b), a->dtype, 0.0, false, &it);
}

static int be_binary_scalar(sf_binary_op op, sf_tensor *out, const sf_tensor *a, double s, bool scalar_first) {
  if (sf_enter_of(out)) return -1;
  sf_kiter it;
  const sf_tensor *ts[3] = {out, a, a};
  sf_kiter_make(&it, ts, 3);
  return sf_k_binary(op, sf_data_ptr(out), out->dtype, sf_data_ptr(a), NULL, a->dtype, s, scalar_first, &it);
}

static int be_where(sf_tensor *out, const sf_tensor *cond, const sf_tensor *a, const sf_tensor *b) {
  if (sf_enter_of(out)) return -1;
  sf_kiter it;
  const sf_tensor *ts[4] = {out, cond, a, b};
  sf_kiter_make(&it, ts, 4);
  return sf_k_where(sf_data_ptr(out), sf_data_ptr(cond), cond->dtype, sf_data_ptr(a), sf_data_ptr(b),
                    sf_dtype_size(out->dtype), &it);
}

/* the rows of dim d: an iterator over the other dims of x (operand 0) and y (operand 1) */
static void rows_iter(sf_kiter *it, const sf_tensor *x, const sf_tensor *y, int d) {
  int64_t shape[SF_MAX_DIMS], sx[SF_MAX_DIMS], sy[SF_MAX_DIMS];
  int n = 0;
  for (int i = 0; i < x->ndim; i++) {
    if (i == d) continue;
    shape[n] = x->shape[i];
    sx[n] = x->stride[i];
    sy[n] = y->stride[i];
    n++;
  }
  const int64_t *st[2] = {sx, sy};
  sf_kiter_make_raw(it, n, shape, st, 2);
}

static int be_reduce(sf_reduce_op op, sf_tensor *out, const sf_tensor *a, int dim) {
  if (sf_enter_of(out)) return -1;
  sf_kiter it;
  rows_iter(&it, a, out, dim);
  return sf_k_reduce(op, sf_data_ptr(out), out->dtype, sf_data_ptr(a), a->dtype, a->shape[dim], a->stride[dim], &it);
}

static int be_softmax(sf_tensor *out, const sf_tensor *a, int dim, bool log) {
  if (sf_enter_of(out)) return -1;
  sf_kiter it;
  rows_iter(&it, a, out, dim);
  return sf_k_softmax(sf_data_ptr(out), sf_data_ptr(a), a->dtype, a->shape[dim], a->stride[dim], out->stride[dim], log, &it);
}

static int be_matmul(sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  if (sf_enter_of(out)) return -1;
  return sf_gemm(out, a, b);
}

static int be_random(sf_tensor *out, uint64_t seed, uint64_t offset, int kind) {
  if (sf_enter_of(out)) return -1;
  return sf_k_random(sf_data_ptr(out), out->dtype, sf_numel(out), seed, offset, kind);
}

/* optional ops (backend.h's supports query); no matmul_acc, frame-list conv or channel norm on the device yet
 * (ops/frame_ops.c composes the last two from core ops) */
static bool be_supports(sf_capability cap, int op, const sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  switch (cap) {
  case SF_CAP_UNARY_BWD: return sf_gpu_fuses_unary_bwd(op);
  case SF_CAP_LINEAR_BIAS: return sf_gemm_bias_ok(out, a, b);
  default: return false;
  }
}

/* the whole backend, one table (its nn, conv and train members live in cuda_nn/conv/train.cc) */
static const sf_backend g_backend = {
#ifdef SF_EMU
    "emu",
#else
    "cuda",
#endif
    be_count, be_alloc, be_free, be_h2d, be_d2h, be_sync, be_copy, be_fill, be_unary, be_binary,
    be_binary_scalar, be_where, be_reduce, be_softmax, be_matmul, be_random, &sf_gpu_nn_table, &sf_gpu_conv_table,
    &sf_gpu_train_table, be_supports};

} // namespace SF_CUDA_NS

#ifdef SF_EMU
extern "C" int sf_emu_backend_register(void) {
  sf_register_backend(SF_DEV_EMU, &SF_CUDA_NS::g_backend);
  sf_gpu_register(SF_DEV_EMU, &SF_CUDA_NS::sf_gpu_services);
  return 0;
}
#else
extern "C" int sf_cuda_backend_register(void) {
  sf_register_backend(SF_DEV_CUDA, &SF_CUDA_NS::g_backend);
  sf_gpu_register(SF_DEV_CUDA, &SF_CUDA_NS::sf_gpu_services);
  return 0;
}
#endif
