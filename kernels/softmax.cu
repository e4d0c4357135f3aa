// softmax.cu — softmax / log-softmax over one dim of a strided tensor, f32 accumulation (f64 for f64),
// one block per row: max, then sum of exp(x - max), then the normalised write.
#include "sf_device.cuh"

namespace SF_CUDA_NS {

template <class F>
__device__ void sf_softmax_row(void *out, const void *a, int dt, int64_t R, int64_t rs, int64_t os, int log_mode,
                               int64_t ia, int64_t io, F *sm) {
  F mx = -INFINITY;
  for (int64_t r = threadIdx.x; r < R; r += blockDim.x) {
    F x = (F)sf_ld_f64(a, dt, ia + r * rs);
    mx = (x != x || x > mx) ? x : mx;
  }
  mx = sf_block_max(mx, sm);
  F sum = 0;
  for (int64_t r = threadIdx.x; r < R; r += blockDim.x) sum += exp((F)sf_ld_f64(a, dt, ia + r * rs) - mx);
  sum = sf_block_sum(sum, sm);
  F lse = log(sum);
  for (int64_t r = threadIdx.x; r < R; r += blockDim.x) {
    F x = (F)sf_ld_f64(a, dt, ia + r * rs) - mx;
    sf_st_f64(out, dt, io + r * os, (double)(log_mode ? x - lse : exp(x) / sum));
  }
}

__global__ void sf_softmax_kernel(void *out, const void *a, int dt, int64_t R, int64_t rs, int64_t os, int log_mode,
                                  sf_kiter it) {
  __shared__ double sm[32];
  for (int64_t row = blockIdx.x; row < it.n; row += gridDim.x) {
    int64_t off[2];
    sf_offsets<2>(it, row, off);
    if (dt == SF_F64) sf_softmax_row<double>(out, a, dt, R, rs, os, log_mode, off[0], off[1], sm);
    else sf_softmax_row<float>(out, a, dt, R, rs, os, log_mode, off[0], off[1], (float *)sm);
  }
}

int sf_k_softmax(void *out, const void *a, sf_dtype dt, int64_t R, int64_t rs, int64_t os, bool log,
                 const sf_kiter *it) {
  if (it->n == 0 || R == 0) return 0;
  int threads = R >= 512 ? 256 : (R > 64 ? 128 : 32);
  SF_LAUNCH(sf_softmax_kernel, sf_grid_for(it->n, 1), threads, 0, sf_cuda_stream(), out, a, (int)dt, R, rs, os,
            (int)log, *it);
  return sf_cuda_check_launch("softmax");
}

} // namespace SF_CUDA_NS
