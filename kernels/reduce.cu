// reduce.cu — reductions over one dim of a strided tensor: sum, mean, max, min, std (unbiased, two
// passes), L2 norm, argmax/argmin (first index; NaN wins, as torch), prod. Floats accumulate in f64,
// integers in int64. Long rows: one block per row (warp shuffles + shared memory); short rows: one
// thread per row.
#include "sf_device.cuh"

namespace SF_CUDA_NS {

struct sf_racc {
  double v;   // float accumulator / best value
  int64_t iv; // integer accumulator / best value
  int64_t idx; // argmax/argmin index
};

__device__ __forceinline__ bool sf_red_is_arg(int op) { return op == SF_RED_ARGMAX || op == SF_RED_ARGMIN; }
__device__ __forceinline__ bool sf_red_is_max(int op) { return op == SF_RED_MAX || op == SF_RED_ARGMAX; }

__device__ __forceinline__ sf_racc sf_racc_init(int op) {
  sf_racc a;
  a.idx = -1;
  if (op == SF_RED_PROD) { a.v = 1; a.iv = 1; }
  else { a.v = 0; a.iv = 0; }
  return a;
}

// is (v, i) better than the current best (b, bi)? -1 index = none yet
__device__ __forceinline__ bool sf_better_f(int op, double v, int64_t i, double b, int64_t bi) {
  if (bi < 0) return true;
  if (i < 0) return false;
  bool vn = v != v, bn = b != b;
  if (vn || bn) return vn && (!bn || i < bi);
  if (v == b) return i < bi;
  return sf_red_is_max(op) ? v > b : v < b;
}
__device__ __forceinline__ bool sf_better_i(int op, int64_t v, int64_t i, int64_t b, int64_t bi) {
  if (bi < 0) return true;
  if (i < 0) return false;
  if (v == b) return i < bi;
  return sf_red_is_max(op) ? v > b : v < b;
}

// fold element x (index r) into acc; `mean` is the row mean for the second pass of std
__device__ __forceinline__ void sf_racc_add(int op, int ints, sf_racc &a, const void *p, int dt, int64_t off, int64_t r,
                                            double mean) {
  if (ints) {
    int64_t x = sf_ld_i64(p, dt, off);
    switch (op) {
    case SF_RED_PROD: a.iv *= x; break;
    case SF_RED_MAX: case SF_RED_MIN: case SF_RED_ARGMAX: case SF_RED_ARGMIN:
      if (sf_better_i(op, x, r, a.iv, a.idx)) { a.iv = x; a.idx = r; }
      break;
    default: a.iv += x; break;
    }
  } else {
    double x = sf_ld_f64(p, dt, off);
    switch (op) {
    case SF_RED_PROD: a.v *= x; break;
    case SF_RED_MAX: case SF_RED_MIN: case SF_RED_ARGMAX: case SF_RED_ARGMIN:
      if (sf_better_f(op, x, r, a.v, a.idx)) { a.v = x; a.idx = r; }
      break;
    case SF_RED_NORM: a.v += x * x; break;
    case SF_RED_STD: a.v += (x - mean) * (x - mean); break;
    default: a.v += x; break;
    }
  }
}

__device__ __forceinline__ void sf_racc_merge(int op, int ints, sf_racc &a, const sf_racc &b) {
  if (sf_red_is_arg(op) || op == SF_RED_MAX || op == SF_RED_MIN) {
    bool better = ints ? sf_better_i(op, b.iv, b.idx, a.iv, a.idx) : sf_better_f(op, b.v, b.idx, a.v, a.idx);
    if (better) a = b;
  } else if (op == SF_RED_PROD) {
    a.v *= b.v;
    a.iv *= b.iv;
  } else {
    a.v += b.v;
    a.iv += b.iv;
  }
}

// only the fields the op uses travel (a shuffle each: a third of the traffic for sums)
__device__ __forceinline__ sf_racc sf_racc_shfl(int op, int ints, const sf_racc &a, int m) {
  sf_racc o = a;
  if (ints) o.iv = __shfl_xor_sync(SF_FULL_MASK, a.iv, m);
  else o.v = __shfl_xor_sync(SF_FULL_MASK, a.v, m);
  if (sf_red_is_arg(op) || op == SF_RED_MAX || op == SF_RED_MIN) o.idx = __shfl_xor_sync(SF_FULL_MASK, a.idx, m);
  return o;
}

// all threads of the block get the merged accumulator (blockDim.x a multiple of 32)
__device__ sf_racc sf_racc_block(int op, int ints, sf_racc a, sf_racc *sm) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int m = 16; m > 0; m >>= 1) { sf_racc o = sf_racc_shfl(op, ints, a, m); sf_racc_merge(op, ints, a, o); }
  __syncthreads();
  if (lane == 0) sm[w] = a;
  __syncthreads();
  a = lane < nw ? sm[lane] : sf_racc_init(op);
  for (int m = 16; m > 0; m >>= 1) { sf_racc o = sf_racc_shfl(op, ints, a, m); sf_racc_merge(op, ints, a, o); }
  return a;
}

__device__ __forceinline__ void sf_racc_store(int op, int ints, const sf_racc &a, void *out, int dt_out, int64_t o,
                                              int64_t R) {
  if (sf_red_is_arg(op)) { sf_st_i64(out, dt_out, o, a.idx < 0 ? 0 : a.idx); return; }
  if (ints) { sf_st_i64(out, dt_out, o, a.iv); return; }
  double v = a.v;
  if (op == SF_RED_MEAN) v = v / (double)R;
  else if (op == SF_RED_STD) v = sqrt(v / (double)(R - 1));
  else if (op == SF_RED_NORM) v = sqrt(v);
  sf_st_f64(out, dt_out, o, v);
}

// one block per output row
__global__ void sf_reduce_block_kernel(int op, int ints, void *out, int dt_out, const void *a, int dt_a, int64_t R,
                                       int64_t rs, sf_kiter it) {
  __shared__ sf_racc sm[32];
  for (int64_t row = blockIdx.x; row < it.n; row += gridDim.x) {
    int64_t off[2];
    sf_offsets<2>(it, row, off);
    double mean = 0;
    if (op == SF_RED_STD) { // first pass: the mean
      sf_racc s = sf_racc_init(SF_RED_SUM);
      for (int64_t r = threadIdx.x; r < R; r += blockDim.x) sf_racc_add(SF_RED_SUM, 0, s, a, dt_a, off[0] + r * rs, r, 0);
      s = sf_racc_block(SF_RED_SUM, 0, s, sm);
      mean = s.v / (double)R;
    }
    sf_racc acc = sf_racc_init(op);
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) sf_racc_add(op, ints, acc, a, dt_a, off[0] + r * rs, r, mean);
    acc = sf_racc_block(op, ints, acc, sm);
    if (threadIdx.x == 0) sf_racc_store(op, ints, acc, out, dt_out, off[1], R);
  }
}

// one thread per output row (short rows)
__global__ void sf_reduce_thread_kernel(int op, int ints, void *out, int dt_out, const void *a, int dt_a, int64_t R,
                                        int64_t rs, sf_kiter it) {
  SF_GRID_STRIDE_LOOP(row, it.n) {
    int64_t off[2];
    sf_offsets<2>(it, row, off);
    double mean = 0;
    if (op == SF_RED_STD) {
      double s = 0;
      for (int64_t r = 0; r < R; r++) s += sf_ld_f64(a, dt_a, off[0] + r * rs);
      mean = s / (double)R;
    }
    sf_racc acc = sf_racc_init(op);
    for (int64_t r = 0; r < R; r++) sf_racc_add(op, ints, acc, a, dt_a, off[0] + r * rs, r, mean);
    sf_racc_store(op, ints, acc, out, dt_out, off[1], R);
  }
}

int sf_k_reduce(sf_reduce_op op, void *out, sf_dtype dt_out, const void *a, sf_dtype dt_a, int64_t R, int64_t rs,
                const sf_kiter *it) {
  if (it->n == 0) return 0;
  int ints = !(dt_a == SF_F32 || dt_a == SF_BF16 || dt_a == SF_F16 || dt_a == SF_F64);
  if (R >= 256 || it->n < 256) {
    /* threads in proportion to the row (each folds >= 4 elements before the shuffles): a wide block on a
     * short row only adds barrier work (on emu each barrier switches every thread's fiber) */
    int threads = R >= 4096 ? 256 : (R >= 1024 ? 128 : (R >= 256 ? 64 : 32));
    SF_LAUNCH(sf_reduce_block_kernel, sf_grid_for(it->n, 1), threads, 0, sf_cuda_stream(), (int)op, ints, out,
              (int)dt_out, a, (int)dt_a, R, rs, *it);
  } else {
    SF_LAUNCH(sf_reduce_thread_kernel, sf_grid_for(it->n, 128), 128, 0, sf_cuda_stream(), (int)op, ints, out,
              (int)dt_out, a, (int)dt_a, R, rs, *it);
  }
  return sf_cuda_check_launch("reduce");
}

} // namespace SF_CUDA_NS
