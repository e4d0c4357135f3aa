/* sf_launch.h — SF_LAUNCH, the one way to launch a kernel: the hardware's <<<>>> under nvcc, the
 * emulated launch (kernels/emu) otherwise. A launch that exceeds an H100 limit fails on both; check
 * with cudaGetLastError() afterwards. A kernel name with template commas goes in parentheses. */
#ifndef SF_LAUNCH_H
#define SF_LAUNCH_H

#if defined(SF_EMU)
#define SF_LAUNCH(kernel, grid, block, smem, stream, ...) \
  sf_emu_launch_kernel(#kernel, kernel, dim3(grid), dim3(block), (size_t)(smem), (stream), ##__VA_ARGS__)
#elif defined(__CUDACC__)
#define SF_LAUNCH(kernel, grid, block, smem, stream, ...) \
  kernel<<<dim3(grid), dim3(block), (size_t)(smem), (stream)>>>(__VA_ARGS__)
/* one raw array for every kernel (the name must not differ in type between kernels) */
#define SF_DYNAMIC_SHARED(type, name) \
  extern __shared__ __align__(16) unsigned char sf_dynamic_smem_raw[]; \
  type *name = (type *)sf_dynamic_smem_raw
#endif

#endif
