// test_emu_selftest.cu — tests of the emulated device itself: barriers, shuffles, votes, atomics,
// shared memory, launch limits, deadlock detection, the shuffled mode finding a missing barrier, and the
// tensor-core tiles (nvcuda::wmma) with their alignment rule.
// Compiled as C++ with kernels/emu/emu.h (never by nvcc).
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "sf_launch.h"

static int g_pass, g_fail;
#define CHECK(cond, ...)                                          \
  do {                                                            \
    if (cond) g_pass++;                                           \
    else {                                                        \
      g_fail++;                                                   \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
      printf(__VA_ARGS__);                                        \
      printf("\n");                                               \
    }                                                             \
  } while (0)

// classic shared-memory tree reduction: one partial sum per block
__global__ void block_sum_kernel(const float *x, float *out, int n) {
  __shared__ float buf[256];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  buf[threadIdx.x] = i < n ? x[i] : 0.0f;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = buf[0];
}

// butterfly all-reduce inside each warp: every lane must end with the warp total
__global__ void butterfly_kernel(const int *x, int *out, int *down, int *up, int *bcast, unsigned *ballot) {
  int t = threadIdx.x;
  int v = x[t];
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  out[t] = v;
  down[t] = __shfl_down_sync(0xffffffffu, x[t], 1);
  up[t] = __shfl_up_sync(0xffffffffu, x[t], 2, 8);
  bcast[t] = __shfl_sync(0xffffffffu, x[t], 3);
  unsigned b = __ballot_sync(0xffffffffu, x[t] & 1);
  if ((t & 31) == 0) ballot[t / 32] = b;
}

// planted race: reads a neighbour's shared slot without a barrier in between
__global__ void racy_kernel(int *out, int with_barrier) {
  __shared__ int s[128];
  int t = threadIdx.x;
  s[t] = t + 1000 * (int)blockIdx.x;
  if (with_barrier) __syncthreads();
  out[blockIdx.x * blockDim.x + t] = s[t > 0 ? t - 1 : 0];
}

__global__ void atomic_kernel(float *fsum, int *isum, int *imax, unsigned long long *cnt) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(fsum, 1.0f);
  atomicAdd(isum, i);
  atomicMax(imax, i);
  atomicAdd(cnt, 1ull);
}

__global__ void dyn_smem_kernel(float *out) {
  SF_DYNAMIC_SHARED(float, sm);
  int t = threadIdx.x;
  sm[t] = (float)t;
  __syncthreads();
  out[t] = sm[blockDim.x - 1 - t];
}

__global__ void count_kernel(int *out) {
  int c = __syncthreads_count(threadIdx.x % 3 == 0);
  if (threadIdx.x == 0) out[0] = c;
}

__global__ void deadlock_kernel(int *out) {
  if (threadIdx.x < 16) __syncthreads();
  else __syncwarp();
  out[threadIdx.x] = 1;
}

__global__ void tid3d_kernel(int *out) {
  int lin = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  out[b * blockDim.x * blockDim.y * blockDim.z + lin] = lin * 1000 + b;
}

__global__ void noop_kernel(int *p) {}

template <class T> static T *dalloc(size_t n) {
  T *p = NULL;
  if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) { printf("cudaMalloc failed\n"); exit(1); }
  return p;
}

static void test_block_reduce(void) {
  int n = 256 * 37 + 11, nb = (n + 255) / 256;
  std::vector<float> h(n);
  for (int i = 0; i < n; i++) h[i] = (float)(i % 17) - 8.0f;
  float *dx = dalloc<float>(n), *dout = dalloc<float>(nb);
  cudaMemcpy(dx, h.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  SF_LAUNCH(block_sum_kernel, nb, 256, 0, 0, dx, dout, n);
  CHECK(cudaGetLastError() == cudaSuccess, "launch: %s", sf_emu_last_message());
  std::vector<float> o(nb);
  cudaMemcpy(o.data(), dout, nb * sizeof(float), cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int b = 0; b < nb; b++) {
    float ref = 0;
    for (int i = b * 256; i < n && i < (b + 1) * 256; i++) ref += h[i];
    bad += o[b] != ref;
  }
  CHECK(bad == 0, "%d of %d block sums wrong", bad, nb);
  cudaFree(dx);
  cudaFree(dout);
}

static void test_butterfly(int nthreads) {
  int *dx = dalloc<int>(nthreads), *o = dalloc<int>(nthreads), *dn = dalloc<int>(nthreads), *up = dalloc<int>(nthreads),
      *bc = dalloc<int>(nthreads);
  unsigned *bal = dalloc<unsigned>((nthreads + 31) / 32);
  std::vector<int> h(nthreads);
  for (int i = 0; i < nthreads; i++) h[i] = i * 7 + 3;
  cudaMemcpy(dx, h.data(), nthreads * 4, cudaMemcpyHostToDevice);
  SF_LAUNCH(butterfly_kernel, 1, nthreads, 0, 0, dx, o, dn, up, bc, bal);
  CHECK(cudaGetLastError() == cudaSuccess, "launch: %s", sf_emu_last_message());
  std::vector<int> ho(nthreads), hd(nthreads), hu(nthreads), hb(nthreads);
  std::vector<unsigned> hbal((nthreads + 31) / 32);
  cudaMemcpy(ho.data(), o, nthreads * 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(hd.data(), dn, nthreads * 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(hu.data(), up, nthreads * 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(hb.data(), bc, nthreads * 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(hbal.data(), bal, hbal.size() * 4, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int t = 0; t < nthreads; t++) {
    int w = t / 32, lo = w * 32, hi = lo + 32 < nthreads ? lo + 32 : nthreads;
    // a full warp: the butterfly sums all 32 lanes (partial warps: only checked for the full ones)
    if (hi - lo == 32) {
      int sum = 0;
      for (int k = lo; k < hi; k++) sum += h[k];
      bad += ho[t] != sum;
    }
    int lane = t - lo;
    bad += hd[t] != (lane + 1 < 32 && t + 1 < hi ? h[t + 1] : h[t]);
    bad += hu[t] != ((lane & 7) >= 2 ? h[t - 2] : h[t]);
    bad += hb[t] != (lo + 3 < hi ? h[lo + 3] : h[t]);
    if (lane == 0) {
      unsigned m = 0;
      for (int k = lo; k < hi; k++) m |= (unsigned)(h[k] & 1) << (k - lo);
      bad += hbal[w] != m;
    }
  }
  CHECK(bad == 0, "%d shuffle/vote results wrong with %d threads", bad, nthreads);
  cudaFree(dx); cudaFree(o); cudaFree(dn); cudaFree(up); cudaFree(bc); cudaFree(bal);
}

static int racy_errors(int with_barrier) {
  int nb = 8, nt = 128;
  int *d = dalloc<int>(nb * nt);
  SF_LAUNCH(racy_kernel, nb, nt, 0, 0, d, with_barrier);
  std::vector<int> h(nb * nt);
  cudaMemcpy(h.data(), d, h.size() * 4, cudaMemcpyDeviceToHost);
  cudaFree(d);
  int bad = 0;
  for (int b = 0; b < nb; b++)
    for (int t = 0; t < nt; t++) bad += h[b * nt + t] != (t > 0 ? t - 1 : 0) + 1000 * b;
  return bad;
}

static void test_shuffled_mode(void) {
  sf_emu_set_shuffle(0, 1);
  CHECK(racy_errors(0) == 0, "in-order execution happens to hide the race (expected)");
  int found = 0;
  for (int seed = 1; seed <= 3; seed++) {
    sf_emu_set_shuffle(1, (uint64_t)seed);
    found += racy_errors(0) > 0;
    CHECK(racy_errors(1) == 0, "the kernel with its barrier must pass in shuffled mode (seed %d)", seed);
  }
  CHECK(found == 3, "shuffled mode found the missing __syncthreads in %d of 3 runs", found);
  // the reduction and shuffles stay correct in shuffled order
  test_block_reduce();
  test_butterfly(96);
  sf_emu_set_shuffle(0, 1);
}

static void test_atomics(void) {
  sf_emu_set_threads(4); // blocks on several OS threads: atomics must be real atomics, __shared__ per thread
  float *f = dalloc<float>(1);
  int *s = dalloc<int>(1), *m = dalloc<int>(1);
  unsigned long long *c = dalloc<unsigned long long>(1);
  cudaMemset(f, 0, 4); cudaMemset(s, 0, 4); cudaMemset(m, 0, 4); cudaMemset(c, 0, 8);
  int nb = 64, nt = 128, n = nb * nt;
  SF_LAUNCH(atomic_kernel, nb, nt, 0, 0, f, s, m, c);
  float hf; int hs, hm; unsigned long long hc;
  cudaMemcpy(&hf, f, 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(&hs, s, 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(&hm, m, 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(&hc, c, 8, cudaMemcpyDeviceToHost);
  CHECK(hf == (float)n && hs == n * (n - 1) / 2 && hm == n - 1 && hc == (unsigned long long)n,
        "atomics: %g %d %d %llu", hf, hs, hm, hc);
  cudaFree(f); cudaFree(s); cudaFree(m); cudaFree(c);
  test_block_reduce(); // static __shared__ with several blocks in flight
  sf_emu_set_threads(1);
}

static void test_smem_and_count(void) {
  float *o = dalloc<float>(200);
  SF_LAUNCH(dyn_smem_kernel, 1, 200, 200 * sizeof(float), 0, o);
  CHECK(cudaGetLastError() == cudaSuccess, "%s", sf_emu_last_message());
  std::vector<float> h(200);
  cudaMemcpy(h.data(), o, 800, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int t = 0; t < 200; t++) bad += h[t] != (float)(199 - t);
  CHECK(bad == 0, "dynamic shared memory: %d wrong", bad);
  cudaFree(o);
  int *c = dalloc<int>(1), hc = 0;
  SF_LAUNCH(count_kernel, 1, 100, 0, 0, c);
  cudaMemcpy(&hc, c, 4, cudaMemcpyDeviceToHost);
  CHECK(hc == 34, "__syncthreads_count gave %d, expected 34", hc);
  cudaFree(c);
}

static void test_indices(void) {
  dim3 g(3, 2, 2), b(4, 3, 2);
  int nb = 12, nt = 24;
  int *o = dalloc<int>(nb * nt);
  SF_LAUNCH(tid3d_kernel, g, b, 0, 0, o);
  std::vector<int> h(nb * nt);
  cudaMemcpy(h.data(), o, h.size() * 4, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int bi = 0; bi < nb; bi++)
    for (int t = 0; t < nt; t++) bad += h[bi * nt + t] != t * 1000 + bi;
  CHECK(bad == 0, "3-D thread/block indices: %d wrong", bad);
  cudaFree(o);
}

static void test_limits(void) {
  int *p = dalloc<int>(1);
  struct { dim3 g, b; size_t smem; bool ok; const char *what; } cases[] = {
    {dim3(1), dim3(1024), 0, true, "1024 threads"},
    {dim3(1), dim3(1025), 0, false, "1025 threads"},
    {dim3(1), dim3(32, 32, 2), 0, false, "32x32x2 threads"},
    {dim3(1), dim3(1, 1, 65), 0, false, "block z 65"},
    {dim3(1, 65536), dim3(1), 0, false, "grid y 65536"},
    {dim3(0), dim3(32), 0, false, "empty grid"},
    {dim3(1), dim3(32), 48 * 1024, true, "48 KB dynamic smem"},
    {dim3(1), dim3(32), 48 * 1024 + 1, false, "48 KB + 1 without opt-in"},
  };
  for (auto &c : cases) {
    SF_LAUNCH(noop_kernel, c.g, c.b, c.smem, 0, p);
    cudaError_t e = cudaGetLastError();
    CHECK((e == cudaSuccess) == c.ok, "%s: got '%s' (%s)", c.what, cudaGetErrorString(e), sf_emu_last_message());
  }
  CHECK(cudaFuncSetAttribute(noop_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024) == cudaSuccess, "opt-in");
  SF_LAUNCH(noop_kernel, 1, 32, 100 * 1024, 0, p);
  CHECK(cudaGetLastError() == cudaSuccess, "100 KB after opt-in: %s", sf_emu_last_message());
  CHECK(cudaFuncSetAttribute(noop_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024) != cudaSuccess,
        "opt-in beyond 227 KB must fail");
  cudaGetLastError();
  SF_LAUNCH(deadlock_kernel, 1, 32, 0, 0, p);
  cudaError_t e = cudaGetLastError();
  CHECK(e == cudaErrorLaunchFailure && strstr(sf_emu_last_message(), "deadlock"), "deadlock detection: %s",
        sf_emu_last_message());
  // memcpy into host memory labelled as device memory is refused
  int host[4];
  CHECK(cudaMemcpy(host, p, 16, cudaMemcpyHostToDevice) != cudaSuccess, "H2D to a host pointer must fail");
  CHECK(cudaMemcpy(p, host, 16, cudaMemcpyHostToDevice) != cudaSuccess, "H2D past the end of an allocation must fail");
  cudaGetLastError();
  cudaFree(p);
}

static void test_streams_events(void) {
  cudaStream_t s;
  cudaEvent_t a, b;
  CHECK(cudaStreamCreate(&s) == cudaSuccess && cudaEventCreate(&a) == cudaSuccess && cudaEventCreate(&b) == cudaSuccess, "create");
  int *d = dalloc<int>(256);
  int h[256];
  for (int i = 0; i < 256; i++) h[i] = i;
  cudaEventRecord(a, s);
  cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, s);
  SF_LAUNCH(racy_kernel, 2, 128, 0, s, d, 1);
  cudaEventRecord(b, s);
  cudaStreamWaitEvent(0, b, 0);
  cudaStreamSynchronize(s);
  float ms = -1;
  CHECK(cudaEventElapsedTime(&ms, a, b) == cudaSuccess && ms >= 0, "elapsed %g", ms);
  cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
  CHECK(h[129] == 1000, "stream launch result %d", h[129]);
  cudaFree(d);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaStreamDestroy(s);
}

static void test_half_types(void) {
  CHECK(__bfloat162float(__float2bfloat16_rn(1.00390625f)) == 1.0f, "bf16 tie to even");
  CHECK(__bfloat162float(__float2bfloat16_rn(1.01171875f)) == 1.015625f, "bf16 round up");
  CHECK(__half2float(__float2half_rn(65520.0f)) == INFINITY, "f16 overflow");
  CHECK(__half2float(__float2half_rn(5.9604645e-08f)) == 5.9604645e-08f, "f16 smallest subnormal");
  __nv_bfloat16 x = 3.0f;
  __half y = 0.5f;
  CHECK((float)x * (float)y == 1.5f, "conversions");
}

// wmma: C = A B + C over a 32x48 * 48x32 product by 4 warps (each a 16x16 output tile), A row-major, B
// column-major, in bf16 with f32 accumulation; `shift` offsets A by that many elements (misalignment test)
__global__ void wmma_kernel(const __nv_bfloat16 *A, const __nv_bfloat16 *B, float *C, int shift) {
  namespace wm = nvcuda::wmma;
  const int w = threadIdx.x / 32, i = w / 2, j = w % 2;
  wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
  wm::load_matrix_sync(acc, C + i * 16 * 32 + j * 16, 32, wm::mem_row_major);
  for (int k = 0; k < 48; k += 16) {
    wm::fragment<wm::matrix_a, 16, 16, 16, __nv_bfloat16, wm::row_major> a;
    wm::fragment<wm::matrix_b, 16, 16, 16, __nv_bfloat16, wm::col_major> b;
    wm::load_matrix_sync(a, A + shift + i * 16 * 48 + k, 48);
    wm::load_matrix_sync(b, B + j * 16 * 48 + k, 48);
    for (int e = 0; e < a.num_elements; e++) a.x[e] = __float2bfloat16_rn(2.0f * __bfloat162float(a.x[e])); // elementwise: layout-free
    wm::mma_sync(acc, a, b, acc);
  }
  wm::store_matrix_sync(C + i * 16 * 32 + j * 16, acc, 32, wm::mem_row_major);
}

static void test_wmma(void) {
  std::vector<__nv_bfloat16> a(32 * 48 + 16), b(32 * 48);
  std::vector<float> c(32 * 32), ref(32 * 32);
  for (size_t i = 0; i < a.size(); i++) a[i] = __float2bfloat16_rn((float)((i * 7) % 13) - 6.0f);
  for (size_t i = 0; i < b.size(); i++) b[i] = __float2bfloat16_rn(((float)((i * 5) % 11) - 5.0f) * 0.25f);
  for (int i = 0; i < 32 * 32; i++) c[i] = (float)(i % 3);
  for (int r = 0; r < 32; r++)
    for (int col = 0; col < 32; col++) {
      float s = c[r * 32 + col];
      for (int k = 0; k < 48; k++) s += 2.0f * __bfloat162float(a[r * 48 + k]) * __bfloat162float(b[col * 48 + k]);
      ref[r * 32 + col] = s;
    }
  __nv_bfloat16 *da = dalloc<__nv_bfloat16>(a.size()), *db = dalloc<__nv_bfloat16>(b.size());
  float *dc = dalloc<float>(c.size());
  cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dc, c.data(), c.size() * 4, cudaMemcpyHostToDevice);
  SF_LAUNCH(wmma_kernel, 1, 128, 0, 0, da, db, dc, 0);
  CHECK(cudaGetLastError() == cudaSuccess, "wmma launch: %s", sf_emu_last_message());
  std::vector<float> o(c.size());
  cudaMemcpy(o.data(), dc, o.size() * 4, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (size_t i = 0; i < o.size(); i++) bad += o[i] != ref[i]; /* small integers and quarters: exact */
  CHECK(bad == 0, "%d of %d wmma results wrong", bad, (int)o.size());
  SF_LAUNCH(wmma_kernel, 1, 128, 0, 0, da, db, dc, 8); /* 16 bytes off: not 256-bit aligned */
  cudaError_t e = cudaGetLastError();
  CHECK(e == cudaErrorLaunchFailure && strstr(sf_emu_last_message(), "aligned"), "misaligned wmma pointer: %s",
        sf_emu_last_message());
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
}

int main(void) {
  test_block_reduce();
  test_butterfly(32);
  test_butterfly(80);
  test_shuffled_mode();
  test_atomics();
  test_smem_and_count();
  test_indices();
  test_limits();
  test_streams_events();
  test_half_types();
  test_wmma();
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
