// copy.cu — strided copies with dtype conversion (cast) and fills.
#include "sf_device.cuh"

namespace SF_CUDA_NS {

static __device__ __forceinline__ bool sf_is_int_dtype(int dt) { return dt == SF_I64 || dt == SF_I32 || dt == SF_U8 || dt == SF_BOOL; }

// integers travel as int64 (exact), floats as double (exact for every float dtype)
__global__ void sf_copy_kernel(void *dst, int dt_dst, const void *src, int dt_src, sf_kiter it) {
  bool ints = sf_is_int_dtype(dt_src) && sf_is_int_dtype(dt_dst);
  SF_GRID_STRIDE_LOOP(i, it.n) {
    int64_t off[2];
    sf_offsets<2>(it, i, off);
    if (ints) sf_st_i64(dst, dt_dst, off[0], sf_ld_i64(src, dt_src, off[1]));
    else if (sf_is_int_dtype(dt_src)) sf_st_f64(dst, dt_dst, off[0], (double)sf_ld_i64(src, dt_src, off[1]));
    else sf_st_f64(dst, dt_dst, off[0], sf_ld_f64(src, dt_src, off[1]));
  }
}

// same dtype, both sides contiguous in the walked order: a plain element copy by size
__global__ void sf_copy_contig_kernel(void *dst, const void *src, int64_t n, int elem) {
  SF_GRID_STRIDE_LOOP(i, n) {
    switch (elem) {
    case 1: ((uint8_t *)dst)[i] = ((const uint8_t *)src)[i]; break;
    case 2: ((uint16_t *)dst)[i] = ((const uint16_t *)src)[i]; break;
    case 4: ((uint32_t *)dst)[i] = ((const uint32_t *)src)[i]; break;
    default: ((uint64_t *)dst)[i] = ((const uint64_t *)src)[i]; break;
    }
  }
}

__global__ void sf_fill_kernel(void *dst, int dt, double v, int64_t iv, sf_kiter it) {
  bool ints = sf_is_int_dtype(dt);
  SF_GRID_STRIDE_LOOP(i, it.n) {
    int64_t off[1];
    sf_offsets<1>(it, i, off);
    if (ints) sf_st_i64(dst, dt, off[0], dt == SF_BOOL ? (int64_t)(v != 0) : iv);
    else sf_st_f64(dst, dt, off[0], v);
  }
}

int sf_k_copy(void *dst, sf_dtype dt_dst, const void *src, sf_dtype dt_src, const sf_kiter *it) {
  if (it->n == 0) return 0;
  if (dt_dst == dt_src && it->ndim == 1 && it->stride[0][0] == 1 && it->stride[1][0] == 1) {
    int elem = (int)sf_dtype_size(dt_dst);
    SF_LAUNCH(sf_copy_contig_kernel, sf_grid_for(it->n, 256), 256, 0, sf_cuda_stream(), dst, src, it->n, elem);
  } else {
    SF_LAUNCH(sf_copy_kernel, sf_grid_for(it->n, 256), 256, 0, sf_cuda_stream(), dst, (int)dt_dst, src, (int)dt_src, *it);
  }
  return sf_cuda_check_launch("copy");
}

int sf_k_fill(void *dst, sf_dtype dt, double v, const sf_kiter *it) {
  if (it->n == 0) return 0;
  SF_LAUNCH(sf_fill_kernel, sf_grid_for(it->n, 256), 256, 0, sf_cuda_stream(), dst, (int)dt, v,
            (v == v && v < 9.2e18 && v > -9.2e18) ? (int64_t)v : (int64_t)0, *it);
  return sf_cuda_check_launch("fill");
}

} // namespace SF_CUDA_NS
