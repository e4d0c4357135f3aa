// random.cu — counter-based draws (src/core/philox.h): element i of out uses counter offset + i, so a
// seeded randn/rand is bit-identical on cpu, emu and cuda.
#include "core/philox.h"
#include "sf_device.cuh"

namespace SF_CUDA_NS {

__global__ void sf_random_kernel(void *out, int dt, int64_t n, uint64_t seed, uint64_t offset, int kind) {
  SF_GRID_STRIDE_LOOP(i, n) {
    float v = kind == 0 ? sf_philox_normal(seed, offset + (uint64_t)i) : sf_philox_uniform(seed, offset + (uint64_t)i);
    sf_st_f32(out, dt, i, v);
  }
}

int sf_k_random(void *out, sf_dtype dt, int64_t n, uint64_t seed, uint64_t offset, int kind) {
  if (n == 0) return 0;
  SF_LAUNCH(sf_random_kernel, sf_grid_for(n, 256), 256, 0, sf_cuda_stream(), out, (int)dt, n, seed, offset, kind);
  return sf_cuda_check_launch("random");
}

} // namespace SF_CUDA_NS
