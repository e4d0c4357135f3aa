// cuda_alloc.cc — the caching device allocator: freed blocks go to per-device, per-stream free lists
// keyed by size class and are reused without a cudaMalloc/cudaFree round trip (each of which
// synchronizes the device). Lua's GC does not see device memory, so tensors release blocks by refcount.
// Size classes: multiples of 512 B below 1 MiB, then {1, 1.25, 1.5, 1.75} x 2^k (<= 25 % slack).
// Under AddressSanitizer nothing is rounded or cached, so an overrun hits a redzone.
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backend/cuda/cuda_host.h"

namespace SF_CUDA_NS {

#if defined(__SANITIZE_ADDRESS__)
static const bool k_cache = false;
#else
static const bool k_cache = true;
#endif

namespace {
struct Block { size_t size; cudaStream_t stream; };
struct DevPool {
  std::mutex mu;
  std::unordered_map<void *, Block> live;
  std::map<std::pair<cudaStream_t, size_t>, std::vector<void *>> free_lists;
  size_t allocated = 0, cached = 0, peak = 0, cached_blocks = 0;
};
DevPool g_pool[SF_GPU_MAX_DEVICES];
} // namespace

static size_t size_class(size_t n) {
  if (!k_cache) return n;
  if (n == 0) n = 1;
  if (n < (1u << 20)) return (n + 511) & ~(size_t)511;
  size_t p = (size_t)1 << (63 - __builtin_clzll((unsigned long long)n)); /* 2^k <= n */
  for (int q = 4; q <= 8; q++) {
    size_t c = p / 4 * q;
    if (c >= n) return c;
  }
  return p * 2;
}

static void release_cached(DevPool &pool) { /* caller holds pool.mu and is on the device */
  for (auto &kv : pool.free_lists)
    for (void *p : kv.second) cudaFree(p);
  pool.free_lists.clear();
  pool.cached = 0;
  pool.cached_blocks = 0;
}

void *sf_alloc_get(int index, size_t nbytes) {
  if (sf_dev_enter(index)) return NULL;
  DevPool &pool = g_pool[index];
  cudaStream_t s = sf_cuda_stream();
  size_t c = size_class(nbytes);
  std::lock_guard<std::mutex> lk(pool.mu);
  void *p = NULL;
  auto it = pool.free_lists.find({s, c});
  if (it != pool.free_lists.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    pool.cached -= c;
    pool.cached_blocks--;
  } else {
    cudaError_t e = cudaMalloc(&p, c ? c : 1);
    if (e != cudaSuccess) { /* out of memory: give the cache back and retry once */
      cudaGetLastError();
      cudaDeviceSynchronize();
      release_cached(pool);
      e = cudaMalloc(&p, c ? c : 1);
    }
    if (e != cudaSuccess) {
      sf_cuda_check(e, "allocating device memory");
      sf_error_prefix("%zu bytes (allocated %zu, cached %zu): ", nbytes, pool.allocated, pool.cached);
      return NULL;
    }
  }
  pool.live[p] = Block{c, s};
  pool.allocated += c;
  if (pool.allocated > pool.peak) pool.peak = pool.allocated;
  return p;
}

void sf_alloc_put(int index, void *p) {
  if (!p || index < 0 || index >= SF_GPU_MAX_DEVICES) return;
  DevPool &pool = g_pool[index];
  std::lock_guard<std::mutex> lk(pool.mu);
  auto it = pool.live.find(p);
  if (it == pool.live.end()) return; /* not ours: ignore rather than corrupt the lists */
  Block b = it->second;
  pool.live.erase(it);
  pool.allocated -= b.size;
  if (k_cache) {
    /* stream order makes reuse on the same stream safe without a sync */
    pool.free_lists[{b.stream, b.size}].push_back(p);
    pool.cached += b.size;
    pool.cached_blocks++;
  } else {
    int cur = 0;
    cudaGetDevice(&cur);
    cudaSetDevice(index);
    cudaFree(p);
    cudaSetDevice(cur);
  }
}

int sf_alloc_stats(int index, sf_gpu_mem_stats *out) {
  if (index < 0 || index >= sf_dev_count()) return sf_error("device %s:%d does not exist", sf_dev_prefix(), index);
  DevPool &pool = g_pool[index];
  std::lock_guard<std::mutex> lk(pool.mu);
  out->allocated = pool.allocated;
  out->reserved = pool.allocated + pool.cached;
  out->peak = pool.peak;
  out->cached_blocks = pool.cached_blocks;
  return 0;
}

int sf_alloc_empty_cache(int index) {
  if (sf_dev_enter(index)) return -1;
  if (sf_cuda_check(cudaStreamSynchronize(sf_cuda_stream()), "synchronize before emptying the cache")) return -1;
  DevPool &pool = g_pool[index];
  std::lock_guard<std::mutex> lk(pool.mu);
  release_cached(pool);
  return 0;
}

int sf_alloc_reset_peak(int index) {
  if (index < 0 || index >= sf_dev_count()) return sf_error("device %s:%d does not exist", sf_dev_prefix(), index);
  DevPool &pool = g_pool[index];
  std::lock_guard<std::mutex> lk(pool.mu);
  pool.peak = pool.allocated;
  return 0;
}

} // namespace SF_CUDA_NS
