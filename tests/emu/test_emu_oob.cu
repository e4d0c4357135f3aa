// test_emu_oob.cu — plants one out-of-bounds access in a kernel (argv[1]: global | shared | static); under
// AddressSanitizer (make test-asan) the run must die with a heap-buffer-overflow report naming the
// kernel. Without ASan it only checks that the planted kernels run and prints "skipped".
#include <stdio.h>
#include <string.h>

#include "sf_launch.h"

__global__ void global_oob_kernel(float *x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) x[i] = 1.0f; // off by one: writes x[n]
}

__global__ void shared_oob_kernel(float *out, int n) {
  SF_DYNAMIC_SHARED(float, sm);
  int t = threadIdx.x;
  sm[t] = (float)t;
  __syncthreads();
  out[t] = sm[t + 1]; // the last thread reads one past the dynamic shared array
}

__global__ void static_shared_oob_kernel(float *out, int n) {
  __shared__ float sm[128];
  int t = threadIdx.x;
  sm[t] = (float)t;
  __syncthreads();
  out[t] = sm[t + 1 < n ? t + 1 : 0]; // n is 129 here: the last thread reads sm[128]
}

int main(int argc, char **argv) {
  const char *what = argc > 1 ? argv[1] : "global";
  int n = 100;
  float *d = NULL;
  cudaMalloc(&d, (n + 28) * sizeof(float)); // room for the planted write without ASan
  if (!strcmp(what, "global")) {
    cudaFree(d);
    cudaMalloc(&d, n * sizeof(float));
#if defined(__SANITIZE_ADDRESS__)
    SF_LAUNCH(global_oob_kernel, 1, 128, 0, 0, d, n);
#endif
  } else if (!strcmp(what, "static")) {
#if defined(__SANITIZE_ADDRESS__)
    SF_LAUNCH(static_shared_oob_kernel, 1, 128, 0, 0, d, 129);
#else
    SF_LAUNCH(static_shared_oob_kernel, 1, 128, 0, 0, d, 128);
#endif
  } else {
#if defined(__SANITIZE_ADDRESS__)
    SF_LAUNCH(shared_oob_kernel, 1, 128, 128 * sizeof(float), 0, d, n);
#else
    SF_LAUNCH(shared_oob_kernel, 1, 128, 129 * sizeof(float), 0, d, n);
#endif
  }
  cudaError_t e = cudaGetLastError();
  cudaFree(d);
#if defined(__SANITIZE_ADDRESS__)
  printf("FAIL: the out-of-bounds %s access was not caught (%s)\n0 passed, 1 failed\n", what, cudaGetErrorString(e));
  return 1;
#else
  printf("skipped: not an ASan build (launch: %s)\n1 passed, 0 failed\n", cudaGetErrorString(e));
  return e == cudaSuccess ? 0 : 1;
#endif
}
