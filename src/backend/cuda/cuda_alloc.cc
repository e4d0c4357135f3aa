// cuda_alloc.cc — the caching device allocator: freed blocks go to per-device, per-stream free lists
// keyed by size class and are reused without a cudaMalloc/cudaFree round trip (each of which
// synchronizes the device). Lua's GC does not see device memory, so tensors release blocks by refcount.
// Size classes: multiples of 512 B below 1 MiB, then {1, 1.25, 1.5, 1.75} x 2^k (<= 25 % slack).
// Under AddressSanitizer nothing is rounded or cached, so an overrun hits a redzone.
// A block used on streams besides its own (t:record_stream(s)) goes, when released, to a pending list
// with one event per such stream, and joins its free list once they are all done (PyTorch's rule).
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
struct Block { size_t size; cudaStream_t stream; std::vector<cudaStream_t> uses; };
struct Pending { void *p; Block b; std::vector<cudaEvent_t> events; };
struct DevPool {
  std::mutex mu;
  std::unordered_map<void *, Block> live;
  std::vector<Pending> pending;
  std::map<std::pair<cudaStream_t, size_t>, std::vector<void *>> free_lists;
  size_t allocated = 0, cached = 0, peak = 0, cached_blocks = 0, pending_bytes = 0; /* pending: released, not yet reusable */
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

static void to_free_list(DevPool &pool, void *p, const Block &b) {
  pool.free_lists[{b.stream, b.size}].push_back(p);
  pool.cached += b.size;
  pool.cached_blocks++;
}

/* pending blocks whose other streams are done join their free lists (caller holds pool.mu, on the device);
 * wait = true waits for them all (before emptying the cache) */
static void collect_pending(DevPool &pool, bool wait) {
  size_t k = 0;
  for (size_t i = 0; i < pool.pending.size(); i++) {
    Pending &q = pool.pending[i];
    bool done = true;
    for (cudaEvent_t e : q.events) {
      cudaError_t r = wait ? cudaEventSynchronize(e) : cudaEventQuery(e);
      if (r == cudaErrorNotReady) { cudaGetLastError(); done = false; break; }
    }
    if (done) {
      for (cudaEvent_t e : q.events) cudaEventDestroy(e);
      pool.pending_bytes -= q.b.size;
      to_free_list(pool, q.p, q.b);
    } else {
      pool.pending[k++] = q;
    }
  }
  pool.pending.resize(k);
}

void *sf_alloc_get(int index, size_t nbytes) {
  if (sf_dev_enter(index)) return NULL;
  DevPool &pool = g_pool[index];
  cudaStream_t s = sf_cuda_stream();
  size_t c = size_class(nbytes);
  std::lock_guard<std::mutex> lk(pool.mu);
  if (!pool.pending.empty()) collect_pending(pool, false);
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
      collect_pending(pool, true);
      release_cached(pool);
      e = cudaMalloc(&p, c ? c : 1);
    }
    if (e != cudaSuccess) {
      sf_cuda_check(e, "allocating device memory");
      sf_error_prefix("%zu bytes (allocated %zu, cached %zu): ", nbytes, pool.allocated, pool.cached);
      return NULL;
    }
  }
  pool.live[p] = Block{c, s, {}};
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
  if (b.uses.empty() && k_cache) { /* the common case: no device switch, no call into the runtime */
    to_free_list(pool, p, b); /* stream order makes reuse on the same stream safe without a sync */
    return;
  }
  int cur = 0;
  cudaGetDevice(&cur);
  cudaSetDevice(index);
  if (!b.uses.empty()) {
    /* used on other streams: reusable once the work enqueued there up to now is done */
    Pending q{p, b, {}};
    for (cudaStream_t u : b.uses) {
      cudaEvent_t e;
      if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) { /* cannot track: wait instead */
        cudaGetLastError();
        cudaStreamSynchronize(u);
        continue;
      }
      cudaEventRecord(e, u);
      q.events.push_back(e);
    }
    pool.pending.push_back(q);
    pool.pending_bytes += b.size;
    if (!k_cache) collect_pending(pool, true);
  } else {
    to_free_list(pool, p, b);
  }
  if (!k_cache) release_cached(pool); /* nothing is kept: an overrun of a freed block hits a redzone */
  cudaSetDevice(cur);
}

int sf_alloc_record_stream(int index, void *p, cudaStream_t s) {
  if (index < 0 || index >= sf_dev_count()) return sf_error("device %s:%d does not exist", sf_dev_prefix(), index);
  DevPool &pool = g_pool[index];
  std::lock_guard<std::mutex> lk(pool.mu);
  auto it = pool.live.find(p);
  if (it == pool.live.end()) return sf_error("record_stream: %p is not the start of a live block of %s:%d", p, sf_dev_prefix(), index);
  Block &b = it->second;
  if (s == b.stream) return 0;
  for (cudaStream_t u : b.uses)
    if (u == s) return 0;
  b.uses.push_back(s);
  return 0;
}

int sf_alloc_stream_gone(int index, cudaStream_t s) { /* caller is on the device and has synchronized s */
  DevPool &pool = g_pool[index];
  std::lock_guard<std::mutex> lk(pool.mu);
  collect_pending(pool, false);
  cudaStream_t own = sf_dev_stream(index);
  /* s is idle: its cached blocks are safe on the device's own stream; live blocks allocated on s move there too */
  for (auto it = pool.free_lists.begin(); it != pool.free_lists.end();) {
    if (it->first.first == s) {
      auto &dst = pool.free_lists[{own, it->first.second}];
      dst.insert(dst.end(), it->second.begin(), it->second.end());
      it = pool.free_lists.erase(it);
    } else {
      ++it;
    }
  }
  for (auto &kv : pool.live) {
    if (kv.second.stream == s) kv.second.stream = own;
    auto &u = kv.second.uses;
    for (size_t i = 0; i < u.size(); i++)
      if (u[i] == s) { u.erase(u.begin() + (long)i); break; }
  }
  return 0;
}

int sf_alloc_stats(int index, sf_gpu_mem_stats *out) {
  if (index < 0 || index >= sf_dev_count()) return sf_error("device %s:%d does not exist", sf_dev_prefix(), index);
  DevPool &pool = g_pool[index];
  std::lock_guard<std::mutex> lk(pool.mu);
  out->allocated = pool.allocated;
  out->reserved = pool.allocated + pool.cached + pool.pending_bytes;
  out->peak = pool.peak;
  out->cached_blocks = pool.cached_blocks;
  return 0;
}

int sf_alloc_empty_cache(int index) {
  if (sf_dev_enter(index)) return -1;
  if (sf_cuda_check(cudaDeviceSynchronize(), "synchronize before emptying the cache")) return -1;
  DevPool &pool = g_pool[index];
  std::lock_guard<std::mutex> lk(pool.mu);
  collect_pending(pool, true);
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
