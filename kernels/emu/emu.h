/* emu.h — lets the kernels (kernels/NAME.cu) and the CUDA host code compile with the host C++ compiler (device `emu`).
 * Force-included (`g++ -x c++ -include kernels/emu/emu.h -DSF_EMU`). Threads of a block are fibers
 * that switch at barriers (__syncthreads, warp shuffles/votes/__syncwarp); blocks run one at a time
 * per OS worker thread, so `__shared__` variables are function-static thread-local storage: each
 * worker holds exactly one live block, whose fibers all share it (ASan builds: see below). The CUDA runtime/library names are
 * macros onto sf_emu_* functions (kernels/emu/emu_runtime.cc) so a binary may link both the emulated
 * and the real CUDA runtime. */
#ifndef SF_EMU_H
#define SF_EMU_H

#ifndef SF_EMU
#define SF_EMU 1
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <math.h> /* libstdc++: brings the float overloads (exp(float), ...) into the global namespace, as CUDA has */
#include <cstdlib>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---------------- qualifiers ---------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#if defined(__SANITIZE_ADDRESS__)
/* ASan does not instrument thread-local storage, so ASan builds run one block at a time in the whole
 * process (the runtime serializes launches) and __shared__ arrays become instrumented statics. */
#define __shared__ static
#else
#define __shared__ static thread_local
#endif
#define __constant__ static
#define __align__(n) alignas(n)
#define __managed__

#include "core/half.h" /* after the qualifiers: its functions are __host__ __device__ */

/* dynamic shared memory: use SF_DYNAMIC_SHARED(type, name) instead of `extern __shared__ type name[]` */
#define SF_DYNAMIC_SHARED(type, name) type *name = (type *)sf_emu_dynamic_smem()

struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
enum { warpSize = 32 };

/* ---------------- the running thread (fiber) and block ---------------- */
struct sf_emu_fiber; /* runtime-private */
struct sf_emu_thread_state { uint3 tid; int lane; int warp; };
struct sf_emu_block_state { uint3 block_idx; uint3 block_dim; uint3 grid_dim; void *dyn_smem; size_t dyn_smem_bytes; };
extern __thread sf_emu_thread_state *sf_emu_cur __attribute__((tls_model("initial-exec")));
extern __thread sf_emu_block_state sf_emu_blk __attribute__((tls_model("initial-exec")));

#define threadIdx (sf_emu_cur->tid)
#define blockIdx (sf_emu_blk.block_idx)
#define blockDim (sf_emu_blk.block_dim)
#define gridDim (sf_emu_blk.grid_dim)

extern "C" {
void sf_emu_syncthreads(void);
void sf_emu_syncwarp(void);
/* every live lane of the warp posts `v`; the result is lane `src`'s value (own value if src is not live) */
uint64_t sf_emu_warp_shfl(uint64_t v, int src);
/* every live lane posts `pred`; returns the ballot over live lanes */
unsigned sf_emu_warp_ballot(int pred);
unsigned sf_emu_warp_live_mask(void);
/* block-wide count of true predicates (the barrier is included) */
int sf_emu_syncthreads_count(int pred);
void *sf_emu_dynamic_smem(void);
}

#define __syncthreads() sf_emu_syncthreads()
#define __syncwarp(...) sf_emu_syncwarp()
#define __threadfence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __threadfence_block() __atomic_thread_fence(__ATOMIC_SEQ_CST)
static inline int __syncthreads_count(int p) { return sf_emu_syncthreads_count(p); }
static inline int __syncthreads_and(int p) { return sf_emu_syncthreads_count(!p) == 0; }
static inline int __syncthreads_or(int p) { return sf_emu_syncthreads_count(p) != 0; }
static inline unsigned __activemask(void) { return sf_emu_warp_live_mask(); }

/* shuffles: any trivially copyable value of up to 8 bytes (as the hardware's 32/64-bit shuffles) */
template <class T> static inline T sf_emu_shfl_lane(T v, int src) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a value over 8 bytes");
  uint64_t bits = 0;
  memcpy(&bits, &v, sizeof(T));
  bits = sf_emu_warp_shfl(bits, src);
  T r;
  memcpy(&r, &bits, sizeof(T));
  return r;
}
/* width must be a power of two <= 32; lanes read inside their own width-segment, as the hardware */
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  int lane = sf_emu_cur->lane, base = lane & ~(width - 1);
  return sf_emu_shfl_lane(v, base + (src & (width - 1)));
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
  int lane = sf_emu_cur->lane, seg = lane & (width - 1);
  return sf_emu_shfl_lane(v, seg >= (int)d ? lane - (int)d : lane);
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
  int lane = sf_emu_cur->lane, seg = lane & (width - 1);
  return sf_emu_shfl_lane(v, seg + (int)d < width ? lane + (int)d : lane);
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32) {
  int lane = sf_emu_cur->lane, src = lane ^ m;
  return sf_emu_shfl_lane(v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane);
}
static inline unsigned __ballot_sync(unsigned mask, int p) { return sf_emu_warp_ballot(p) & mask; }
static inline int __all_sync(unsigned mask, int p) {
  return (sf_emu_warp_ballot(p) & mask & sf_emu_warp_live_mask()) == (mask & sf_emu_warp_live_mask());
}
static inline int __any_sync(unsigned mask, int p) { return (sf_emu_warp_ballot(p) & mask) != 0; }

/* ---------------- integer intrinsics ---------------- */
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
template <class T> static inline T __ldg(const T *p) { return *p; }
/* CUDA's device-side min/max overloads for same-type operands */
template <class T> static inline T min(T a, T b) { return b < a ? b : a; }
template <class T> static inline T max(T a, T b) { return a < b ? b : a; }

/* ---------------- float intrinsics (fast variants are exact here: tolerance tests cover both) ---------------- */
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
#define __expf expf
#define __logf logf
#define __sinf sinf
#define __cosf cosf
#define __tanf tanf
#define __powf powf
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x != x ? 0.0f : x)); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline long long __double_as_longlong(double d) { long long i; memcpy(&i, &d, 8); return i; }
static inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, 8); return d; }

/* ---------------- bf16 / f16 (bit-exact round-to-nearest-even, as cuda_bf16.h / cuda_fp16.h) ---------------- */
struct __nv_bfloat16 {
  uint16_t __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(sf_f32_to_bf16(f)) {}
  operator float() const { return sf_bf16_to_f32(__x); }
};
struct __half {
  uint16_t __x;
  __half() = default;
  __half(float f) : __x(sf_f32_to_f16(f)) {}
  operator float() const { return sf_f16_to_f32(__x); }
};
typedef __half half;
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
struct __half2 { __half x, y; };
static inline float __bfloat162float(__nv_bfloat16 h) { return sf_bf16_to_f32(h.__x); }
static inline __nv_bfloat16 __float2bfloat16(float f) { __nv_bfloat16 h; h.__x = sf_f32_to_bf16(f); return h; }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
static inline float __half2float(__half h) { return sf_f16_to_f32(h.__x); }
static inline __half __float2half(float f) { __half h; h.__x = sf_f32_to_f16(f); return h; }
static inline __half __float2half_rn(float f) { return __float2half(f); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 h; h.__x = u; return h; }
static inline unsigned short __half_as_ushort(__half h) { return h.__x; }
static inline __half __ushort_as_half(unsigned short u) { __half h; h.__x = u; return h; }
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16(a), __float2bfloat16(b)}; }
static inline __half2 __floats2half2_rn(float a, float b) { return {__float2half(a), __float2half(b)}; }
static inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16((float)a + (float)b); }
static inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16((float)a * (float)b); }
static inline __half __hadd(__half a, __half b) { return __float2half((float)a + (float)b); }
static inline __half __hmul(__half a, __half b) { return __float2half((float)a * (float)b); }

/* ---------------- atomics (real atomics: blocks may run on several OS threads) ---------------- */
template <class T> static inline T atomicAdd(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
template <class F, class B> static inline F sf_emu_atomic_float_op(F *p, F v, int op) {
  B old = __atomic_load_n((B *)p, __ATOMIC_RELAXED), nw;
  for (;;) {
    F o, n;
    memcpy(&o, &old, sizeof o);
    n = op == 0 ? o + v : (op == 1 ? (v > o ? v : o) : (v < o ? v : o));
    memcpy(&nw, &n, sizeof n);
    if (__atomic_compare_exchange_n((B *)p, &old, nw, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return o;
  }
}
static inline float atomicAdd(float *p, float v) { return sf_emu_atomic_float_op<float, uint32_t>(p, v, 0); }
static inline double atomicAdd(double *p, double v) { return sf_emu_atomic_float_op<double, uint64_t>(p, v, 0); }
template <class T> static inline T atomicSub(T *p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
template <class T> static inline T atomicExch(T *p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
static inline float atomicExch(float *p, float v) {
  uint32_t b = __float_as_uint(v);
  return __uint_as_float(__atomic_exchange_n((uint32_t *)p, b, __ATOMIC_RELAXED));
}
template <class T> static inline T atomicCAS(T *p, T cmp, T v) {
  __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return cmp;
}
template <class T> static inline T atomicMax(T *p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
  return old;
}
template <class T> static inline T atomicMin(T *p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
  return old;
}
template <class T> static inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }
template <class T> static inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }
template <class T> static inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); }

/* ---------------- the runtime API (names as cuda_runtime.h) ---------------- */
typedef enum {
  cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17, cudaErrorInvalidMemcpyDirection = 21, cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101, cudaErrorInvalidResourceHandle = 400, cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719
} cudaError_t;
typedef enum { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
               cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4 } cudaMemcpyKind;
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
typedef struct sf_emu_stream *cudaStream_t;
typedef struct sf_emu_event *cudaEvent_t;
#define cudaStreamNonBlocking 0x01
#define cudaStreamDefault 0x00
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00
typedef struct {
  char name[256];
  size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
  int maxThreadsPerBlock, maxThreadsDim[3], maxGridSize[3], warpSize, multiProcessorCount, major, minor;
} cudaDeviceProp;

#define cudaMalloc sf_emu_cudaMalloc
#define cudaFree sf_emu_cudaFree
#define cudaMallocHost sf_emu_cudaMallocHost
#define cudaHostAlloc sf_emu_cudaHostAlloc
#define cudaFreeHost sf_emu_cudaFreeHost
#define cudaMemcpy sf_emu_cudaMemcpy
#define cudaMemcpyAsync sf_emu_cudaMemcpyAsync
#define cudaMemset sf_emu_cudaMemset
#define cudaMemsetAsync sf_emu_cudaMemsetAsync
#define cudaMemGetInfo sf_emu_cudaMemGetInfo
#define cudaGetDeviceCount sf_emu_cudaGetDeviceCount
#define cudaSetDevice sf_emu_cudaSetDevice
#define cudaGetDevice sf_emu_cudaGetDevice
#define cudaGetDeviceProperties sf_emu_cudaGetDeviceProperties
#define cudaDeviceSynchronize sf_emu_cudaDeviceSynchronize
#define cudaStreamCreate sf_emu_cudaStreamCreate
#define cudaStreamCreateWithFlags sf_emu_cudaStreamCreateWithFlags
#define cudaStreamDestroy sf_emu_cudaStreamDestroy
#define cudaStreamSynchronize sf_emu_cudaStreamSynchronize
#define cudaStreamWaitEvent sf_emu_cudaStreamWaitEvent
#define cudaStreamQuery sf_emu_cudaStreamQuery
#define cudaEventCreate sf_emu_cudaEventCreate
#define cudaEventCreateWithFlags sf_emu_cudaEventCreateWithFlags
#define cudaEventDestroy sf_emu_cudaEventDestroy
#define cudaEventRecord sf_emu_cudaEventRecord
#define cudaEventSynchronize sf_emu_cudaEventSynchronize
#define cudaEventQuery sf_emu_cudaEventQuery
#define cudaEventElapsedTime sf_emu_cudaEventElapsedTime
#define cudaGetLastError sf_emu_cudaGetLastError
#define cudaPeekAtLastError sf_emu_cudaPeekAtLastError
#define cudaGetErrorString sf_emu_cudaGetErrorString
#define cudaFuncSetAttribute sf_emu_cudaFuncSetAttribute

extern "C" {
cudaError_t sf_emu_cudaMalloc(void **p, size_t n);
cudaError_t sf_emu_cudaFree(void *p);
cudaError_t sf_emu_cudaMallocHost(void **p, size_t n);
cudaError_t sf_emu_cudaHostAlloc(void **p, size_t n, unsigned flags);
cudaError_t sf_emu_cudaFreeHost(void *p);
cudaError_t sf_emu_cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k);
cudaError_t sf_emu_cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s);
cudaError_t sf_emu_cudaMemset(void *p, int v, size_t n);
cudaError_t sf_emu_cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s);
cudaError_t sf_emu_cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t sf_emu_cudaGetDeviceCount(int *n);
cudaError_t sf_emu_cudaSetDevice(int d);
cudaError_t sf_emu_cudaGetDevice(int *d);
cudaError_t sf_emu_cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t sf_emu_cudaDeviceSynchronize(void);
cudaError_t sf_emu_cudaStreamCreate(cudaStream_t *s);
cudaError_t sf_emu_cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t sf_emu_cudaStreamDestroy(cudaStream_t s);
cudaError_t sf_emu_cudaStreamSynchronize(cudaStream_t s);
cudaError_t sf_emu_cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t sf_emu_cudaStreamQuery(cudaStream_t s);
cudaError_t sf_emu_cudaEventCreate(cudaEvent_t *e);
cudaError_t sf_emu_cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t sf_emu_cudaEventDestroy(cudaEvent_t e);
cudaError_t sf_emu_cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t sf_emu_cudaEventSynchronize(cudaEvent_t e);
cudaError_t sf_emu_cudaEventQuery(cudaEvent_t e);
cudaError_t sf_emu_cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t sf_emu_cudaGetLastError(void);
cudaError_t sf_emu_cudaPeekAtLastError(void);
const char *sf_emu_cudaGetErrorString(cudaError_t e);
cudaError_t sf_emu_cudaFuncSetAttribute(const void *fn, cudaFuncAttribute a, int v);

/* emu-only controls */
const char *sf_emu_last_message(void);              /* why the last launch failed (limits, deadlock) */
void sf_emu_set_shuffle(int on, uint64_t seed);     /* fibers in random order (also env SFWB_EMU_SHUFFLE=1) */
int sf_emu_device_count(void);                      /* SFWB_EMU_DEVICES, default 1 */
void sf_emu_set_threads(int n);                     /* OS threads per launch (also SFWB_EMU_THREADS), default 1 */
/* the launch: checks the H100 limits, then runs every block (fibers switch at barriers) */
cudaError_t sf_emu_launch(const char *name, const void *key, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                          void (*call)(void *), void *ctx);
}

template <class T> static inline cudaError_t sf_emu_cudaMalloc(T **p, size_t n) { return sf_emu_cudaMalloc((void **)p, n); }
template <class T> static inline cudaError_t sf_emu_cudaMallocHost(T **p, size_t n) { return sf_emu_cudaMallocHost((void **)p, n); }
template <class T> static inline cudaError_t sf_emu_cudaFuncSetAttribute(T *fn, cudaFuncAttribute a, int v) {
  return sf_emu_cudaFuncSetAttribute((const void *)fn, a, v);
}

/* the argument values are captured once, as the hardware copies kernel parameters at launch */
template <class K, class... A>
static inline void sf_emu_launch_kernel(const char *name, K kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                                        A &&...args) {
  struct Call { K k; std::tuple<typename std::decay<A>::type...> a; } c{kernel, std::tuple<typename std::decay<A>::type...>(std::forward<A>(args)...)};
  sf_emu_launch(name, (const void *)kernel, grid, block, smem, s, [](void *p) { Call *cc = (Call *)p; std::apply(cc->k, cc->a); }, &c);
}

#include "emu_wmma.h" /* nvcuda::wmma (tensor-core tiles) */

#endif
