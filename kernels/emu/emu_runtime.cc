/* emu_runtime.cc — the emulated CUDA device: fiber scheduler for thread blocks, launch-limit checks
 * (as an H100), device memory, streams and events. Streams execute synchronously in issue order,
 * which is one legal schedule of the CUDA stream semantics. */
#include "emu/emu.h"

#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

#include <map>
#include <mutex>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define SF_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SF_EMU_ASAN 1
#endif
#endif
#ifdef SF_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

__thread sf_emu_thread_state *sf_emu_cur __attribute__((tls_model("initial-exec")));
__thread sf_emu_block_state sf_emu_blk __attribute__((tls_model("initial-exec")));

/* ---------------- context switch ---------------- */
#if defined(__x86_64__)
/* Saves the callee-saved registers on the current stack, stores its sp in *save, and resumes the context
 * whose sp is `next`. A new context starts in sf_emu_ctx_entry with r12 = arg, r13 = function. The
 * MXCSR / x87 control words are not switched: kernels never change rounding modes. */
extern "C" void sf_emu_ctx_switch(void **save, void *next);
extern "C" void sf_emu_ctx_entry(void);
asm(R"(
  .text
  .globl sf_emu_ctx_switch
  .hidden sf_emu_ctx_switch
  .type sf_emu_ctx_switch,@function
sf_emu_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size sf_emu_ctx_switch, .-sf_emu_ctx_switch
  .globl sf_emu_ctx_entry
  .hidden sf_emu_ctx_entry
  .type sf_emu_ctx_entry,@function
sf_emu_ctx_entry:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size sf_emu_ctx_entry, .-sf_emu_ctx_entry
)");

static void *ctx_make(char *lo, size_t size, void (*fn)(void *), void *arg) {
  uintptr_t top = ((uintptr_t)(lo + size)) & ~(uintptr_t)15;
  /* 6 saved registers + the return address (56 bytes); after the ret, sp = frame + 56 must be 16-aligned
   * for the call in sf_emu_ctx_entry, hence frame = top - 72 */
  uint64_t *sp = (uint64_t *)(top - 72);
  memset(sp, 0, 72);
  sp[2] = (uint64_t)(uintptr_t)fn;  /* r13 */
  sp[3] = (uint64_t)(uintptr_t)arg; /* r12 */
  sp[6] = (uint64_t)(uintptr_t)&sf_emu_ctx_entry;
  return sp;
}
#else
#error "kernels/emu: the fiber switch is written for x86-64 only"
#endif

/* ---------------- fibers and blocks ---------------- */
namespace {
enum { F_NEW, F_RUNNABLE, F_RUNNING, F_WAIT_BLOCK, F_WAIT_WARP, F_DONE };

struct Fiber {
  sf_emu_thread_state st; /* first: sf_emu_cur points here */
  void *sp;
  char *stack_lo;
  int state;
  int phase; /* which slot buffer the next warp exchange uses */
  void *fake;
};

/* slots are double-buffered by a per-lane phase: a lane can only write a buffer again after the next
 * warp barrier, which every lane reaches only after reading it, so one barrier per shuffle suffices */
struct Warp {
  int live, count;
  unsigned live_mask;
  uint64_t slots[2][32];
  unsigned posted[2]; /* live lanes when buffer p was filled: lanes may exit before a slow lane reads */
  float mma[512];     /* the two 16x16 operands of the warp's running wmma mma_sync (emu_wmma.h) */
};

#ifdef SF_EMU_ASAN
const size_t kStack = 512 * 1024;
#else
const size_t kStack = 64 * 1024;
#endif

struct Worker {
  std::vector<Fiber> fibers;
  std::vector<char *> stacks;
  Warp warps[32];
  int n, live, bcount, count_acc, count_result;
  void *sched_sp;
  const void *sched_lo;
  size_t sched_size;
  void *sched_fake;
  void (*call)(void *);
  void *ctx;
  uint64_t rng;
  std::vector<int> order;
  char trap[160]; /* set by sf_emu_trap: the running block fails with this message */
};

__thread Worker *tw;
bool g_shuffle;
uint64_t g_seed = 0x5eed;
std::once_flag g_env_once;

/* OS threads running blocks of one launch: SFWB_EMU_THREADS, default 1 (the test machines are shared;
 * blocks on several threads are exercised by the self-test through sf_emu_set_threads) */
int g_threads = 1;

void read_env() {
  if (const char *t = getenv("SFWB_EMU_THREADS")) {
    int v = atoi(t);
    g_threads = v < 1 ? 1 : (v > 64 ? 64 : v);
  }
  const char *s = getenv("SFWB_EMU_SHUFFLE");
  if (s && *s && strcmp(s, "0")) g_shuffle = true;
  if ((s = getenv("SFWB_EMU_SEED"))) g_seed = strtoull(s, NULL, 0);
}

inline Fiber *cur_fiber() { return (Fiber *)sf_emu_cur; }

inline void asan_start(void **fake, const void *lo, size_t size) {
#ifdef SF_EMU_ASAN
  __sanitizer_start_switch_fiber(fake, lo, size);
#endif
}
inline void asan_finish(void *fake, const void **lo, size_t *size) {
#ifdef SF_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, lo, size);
#endif
}

/* fiber side: back to the scheduler until it resumes us */
void yield_fiber(Worker *w, Fiber *f) {
  asan_start(&f->fake, w->sched_lo, w->sched_size);
  sf_emu_ctx_switch(&f->sp, w->sched_sp);
  asan_finish(f->fake, NULL, NULL);
}

void release_block(Worker *w) {
  for (int i = 0; i < w->n; i++)
    if (w->fibers[i].state == F_WAIT_BLOCK) w->fibers[i].state = F_RUNNABLE;
  w->bcount = 0;
  w->count_result = w->count_acc;
  w->count_acc = 0;
}

void release_warp(Worker *w, int warp) {
  int lo = warp * 32, hi = lo + 32 < w->n ? lo + 32 : w->n;
  for (int i = lo; i < hi; i++)
    if (w->fibers[i].state == F_WAIT_WARP) w->fibers[i].state = F_RUNNABLE;
  w->warps[warp].count = 0;
}

void block_barrier() {
  Worker *w = tw;
  Fiber *f = cur_fiber();
  if (!w || !f) { fprintf(stderr, "sfwb emu: __syncthreads outside a kernel\n"); abort(); }
  if (++w->bcount == w->live) {
    release_block(w);
    if (!g_shuffle) return;
    f->state = F_RUNNABLE; /* shuffled mode: let the others run first in a random order */
  } else {
    f->state = F_WAIT_BLOCK;
  }
  yield_fiber(w, f);
}

void warp_barrier() {
  Worker *w = tw;
  Fiber *f = cur_fiber();
  if (!w || !f) { fprintf(stderr, "sfwb emu: warp operation outside a kernel\n"); abort(); }
  Warp &wp = w->warps[f->st.warp];
  if (++wp.count == wp.live) {
    release_warp(w, f->st.warp);
    if (!g_shuffle) return;
    f->state = F_RUNNABLE;
  } else {
    f->state = F_WAIT_WARP;
  }
  yield_fiber(w, f);
}

void fiber_main(void *arg) {
  Fiber *f = (Fiber *)arg;
  Worker *w = tw;
  asan_finish(NULL, &w->sched_lo, &w->sched_size);
  w->call(w->ctx);
  f->state = F_DONE;
  w->live--;
  Warp &wp = w->warps[f->st.warp];
  wp.live--;
  wp.live_mask &= ~(1u << f->st.lane);
  /* exited threads no longer hold a barrier back */
  if (w->bcount > 0 && w->bcount == w->live) release_block(w);
  if (wp.count > 0 && wp.count == wp.live) release_warp(w, f->st.warp);
  asan_start(NULL, w->sched_lo, w->sched_size);
  sf_emu_ctx_switch(&f->sp, w->sched_sp);
  abort(); /* a finished fiber is never resumed */
}

char *new_stack() {
  size_t page = 4096;
  char *p = (char *)mmap(NULL, kStack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return NULL;
  mprotect(p, page, PROT_NONE); /* guard page: a stack overflow faults instead of corrupting */
  return p + page;
}

uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13; x ^= x >> 7; x ^= x << 17;
  return *s = x;
}

/* runs one block to completion on this OS thread; -1 + msg on deadlock */
int run_block(Worker *w, int n, const dim3 &bd, char *msg, size_t msgn) {
  if ((int)w->fibers.size() < n) w->fibers.resize(n);
  while ((int)w->stacks.size() < n) {
    char *s = new_stack();
    if (!s) { snprintf(msg, msgn, "cannot allocate fiber stacks for %d threads", n); return -1; }
    w->stacks.push_back(s);
  }
  w->n = n;
  w->live = n;
  w->bcount = w->count_acc = w->count_result = 0;
  w->trap[0] = 0;
  for (int i = 0; i < n; i++) {
    Fiber &f = w->fibers[i];
    f.st.tid.x = i % bd.x;
    f.st.tid.y = (i / bd.x) % bd.y;
    f.st.tid.z = i / (bd.x * bd.y);
    f.st.lane = i & 31;
    f.st.warp = i >> 5;
    f.state = F_NEW;
    f.phase = 0;
    f.stack_lo = w->stacks[i];
    f.fake = NULL;
  }
  for (int k = 0; k * 32 < n; k++) {
    int lanes = n - k * 32 < 32 ? n - k * 32 : 32;
    w->warps[k].live = lanes;
    w->warps[k].count = 0;
    w->warps[k].live_mask = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
  }
  w->order.resize(n);
  for (int i = 0; i < n; i++) w->order[i] = i;
  while (w->live > 0) {
    if (g_shuffle)
      for (int i = n - 1; i > 0; i--) std::swap(w->order[i], w->order[xorshift(&w->rng) % (uint64_t)(i + 1)]);
    bool progressed = false;
    for (int k = 0; k < n; k++) {
      Fiber &f = w->fibers[w->order[k]];
      if (f.state == F_NEW) {
#ifdef SF_EMU_ASAN
        __asan_unpoison_memory_region(f.stack_lo, kStack);
#endif
        f.sp = ctx_make(f.stack_lo, kStack, fiber_main, &f);
      } else if (f.state != F_RUNNABLE) {
        continue;
      }
      f.state = F_RUNNING;
      sf_emu_cur = &f.st;
      asan_start(&w->sched_fake, f.stack_lo, kStack);
      sf_emu_ctx_switch(&w->sched_sp, f.sp);
      asan_finish(w->sched_fake, NULL, NULL);
      progressed = true;
    }
    sf_emu_cur = NULL;
    if (!progressed) {
      int at_block = 0, at_warp = 0;
      for (int i = 0; i < n; i++) {
        at_block += w->fibers[i].state == F_WAIT_BLOCK;
        at_warp += w->fibers[i].state == F_WAIT_WARP;
      }
      snprintf(msg, msgn, "deadlock: %d thread(s) wait at __syncthreads and %d at a warp barrier, %d live of %d "
               "(a barrier in divergent code?)", at_block, at_warp, w->live, n);
      return -1;
    }
  }
  if (w->trap[0]) {
    snprintf(msg, msgn, "%s", w->trap);
    return -1;
  }
  return 0;
}

/* frees a thread's worker (fiber stacks included) when the thread exits */
struct WorkerOwner {
  Worker *w = nullptr;
  ~WorkerOwner() {
    if (!w) return;
    for (char *s : w->stacks) munmap(s - 4096, kStack + 4096);
    delete w;
    tw = nullptr;
  }
};
thread_local WorkerOwner t_owner;

Worker *get_worker() {
  if (!tw) {
    tw = new Worker();
    tw->rng = g_seed * 0x9E3779B97F4A7C15ull + (uint64_t)(uintptr_t)&tw + 1;
    t_owner.w = tw;
  }
  return tw;
}

/* ---------------- errors ---------------- */
__thread cudaError_t t_last_error;
__thread char t_message[512];

cudaError_t fail(cudaError_t e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_message, sizeof t_message, fmt, ap);
  va_end(ap);
  t_last_error = e;
  return e;
}

/* ---------------- devices, memory, streams ---------------- */
__thread int t_device;
std::mutex g_mem_mu;
struct Alloc { size_t n; int device; };
std::map<uintptr_t, Alloc> g_allocs;
size_t g_allocated[8];
const size_t kDeviceMem = (size_t)80 << 30;
const size_t kSmemDefault = 48 * 1024, kSmemOptin = 227 * 1024;
std::mutex g_attr_mu;
std::map<const void *, int> g_max_dyn_smem;

} // namespace

/* destroyed handles are kept (marked dead, a few bytes each) so a use after destroy is reported, not UB */
struct sf_emu_stream { int device; unsigned flags; bool dead; };
struct sf_emu_event { int device; bool recorded; double t; bool dead; };

namespace {
double now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* is [p, p+n) inside one device allocation? */
bool is_device_range(const void *p, size_t n) {
  std::lock_guard<std::mutex> g(g_mem_mu);
  auto it = g_allocs.upper_bound((uintptr_t)p);
  if (it == g_allocs.begin()) return false;
  --it;
  return (uintptr_t)p >= it->first && (uintptr_t)p + n <= it->first + it->second.n;
}

cudaError_t check_stream(cudaStream_t s) {
  if (s && s->dead) return fail(cudaErrorInvalidResourceHandle, "a stream used after cudaStreamDestroy");
  if (s && s->device != t_device)
    return fail(cudaErrorInvalidResourceHandle, "stream of emu:%d used while emu:%d is current", s->device, t_device);
  return cudaSuccess;
}

cudaError_t check_copy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
  if (n == 0) return cudaSuccess;
  bool dd = k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice;
  bool sd = k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice;
  if (k > cudaMemcpyDefault) return fail(cudaErrorInvalidMemcpyDirection, "bad cudaMemcpyKind %d", (int)k);
  if (k != cudaMemcpyDefault && k != cudaMemcpyHostToHost) {
    if (dd && !is_device_range(dst, n))
      return fail(cudaErrorInvalidValue, "cudaMemcpy: destination [%p, +%zu) is not inside a device allocation", dst, n);
    if (sd && !is_device_range(src, n))
      return fail(cudaErrorInvalidValue, "cudaMemcpy: source [%p, +%zu) is not inside a device allocation", src, n);
  }
  return cudaSuccess;
}

int device_count_env() {
  static int n = -1;
  if (n < 0) {
    const char *s = getenv("SFWB_EMU_DEVICES");
    int v = s ? atoi(s) : 1;
    n = v < 1 ? 1 : (v > 8 ? 8 : v);
  }
  return n;
}
} // namespace

extern "C" {

int sf_emu_device_count(void) { return device_count_env(); }
void sf_emu_set_threads(int n) {
  std::call_once(g_env_once, read_env);
  __atomic_store_n(&g_threads, n < 1 ? 1 : (n > 64 ? 64 : n), __ATOMIC_RELAXED);
}
const char *sf_emu_last_message(void) { return t_message; }
void sf_emu_set_shuffle(int on, uint64_t seed) {
  std::call_once(g_env_once, read_env);
  g_shuffle = on != 0;
  g_seed = seed;
}

void sf_emu_syncthreads(void) { block_barrier(); }
float *sf_emu_warp_scratch(void) { return tw->warps[cur_fiber()->st.warp].mma; }
void sf_emu_trap(const char *why) {
  if (tw && !tw->trap[0]) snprintf(tw->trap, sizeof tw->trap, "thread %d: %s", cur_fiber() ? (int)(cur_fiber() - tw->fibers.data()) : -1, why);
}
void sf_emu_syncwarp(void) { warp_barrier(); }

uint64_t sf_emu_warp_shfl(uint64_t v, int src) {
  Fiber *f = cur_fiber();
  Warp &wp = tw->warps[f->st.warp];
  int p = f->phase;
  f->phase ^= 1;
  wp.slots[p][f->st.lane] = v;
  wp.posted[p] = wp.live_mask;
  warp_barrier();
  return (src >= 0 && src < 32 && (wp.posted[p] >> src & 1u)) ? wp.slots[p][src] : v;
}

unsigned sf_emu_warp_ballot(int pred) {
  Fiber *f = cur_fiber();
  Warp &wp = tw->warps[f->st.warp];
  int p = f->phase;
  f->phase ^= 1;
  wp.slots[p][f->st.lane] = pred != 0;
  wp.posted[p] = wp.live_mask;
  warp_barrier();
  unsigned m = 0;
  for (int l = 0; l < 32; l++)
    if ((wp.posted[p] >> l & 1u) && wp.slots[p][l]) m |= 1u << l;
  return m;
}

unsigned sf_emu_warp_live_mask(void) { return tw->warps[cur_fiber()->st.warp].live_mask; }

int sf_emu_syncthreads_count(int pred) {
  tw->count_acc += pred != 0;
  block_barrier();
  return tw->count_result;
}

void *sf_emu_dynamic_smem(void) { return sf_emu_blk.dyn_smem; }

cudaError_t sf_emu_launch(const char *name, const void *key, dim3 g, dim3 b, size_t smem, cudaStream_t s,
                          void (*call)(void *), void *ctx) {
  std::call_once(g_env_once, read_env);
  if (sf_emu_cur) return fail(cudaErrorLaunchFailure, "%s: launch from inside a kernel is not supported", name);
  if (check_stream(s)) return t_last_error;
  uint64_t nthr = (uint64_t)b.x * b.y * b.z;
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
    return fail(cudaErrorInvalidConfiguration, "%s: zero grid or block dimension (grid %u,%u,%u block %u,%u,%u)", name,
                g.x, g.y, g.z, b.x, b.y, b.z);
  if (b.x > 1024 || b.y > 1024 || b.z > 64 || nthr > 1024)
    return fail(cudaErrorInvalidConfiguration, "%s: block %u,%u,%u exceeds 1024 threads or the (1024,1024,64) limits", name,
                b.x, b.y, b.z);
  if (g.x > 2147483647u || g.y > 65535 || g.z > 65535)
    return fail(cudaErrorInvalidConfiguration, "%s: grid %u,%u,%u exceeds (2^31-1, 65535, 65535)", name, g.x, g.y, g.z);
  size_t limit = kSmemDefault;
  {
    std::lock_guard<std::mutex> lk(g_attr_mu);
    auto it = g_max_dyn_smem.find(key);
    if (it != g_max_dyn_smem.end()) limit = (size_t)it->second;
  }
  if (smem > limit)
    return fail(cudaErrorInvalidValue, "%s: %zu bytes of dynamic shared memory exceed the %zu allowed%s", name, smem, limit,
                limit == kSmemDefault ? " (opt in with cudaFuncSetAttribute(MaxDynamicSharedMemorySize), up to 227 KB)" : "");

  uint64_t nblocks = (uint64_t)g.x * g.y * g.z;
  int max_threads = __atomic_load_n(&g_threads, __ATOMIC_RELAXED);
  /* blocks of small grids are not worth a thread team */
  int nt = nblocks >= 4 && nthr * nblocks >= 4096 ? max_threads : 1;
#ifdef SF_EMU_ASAN
  static std::mutex one_block_at_a_time; /* __shared__ is a plain static under ASan (emu.h) */
  std::lock_guard<std::mutex> serial(one_block_at_a_time);
  nt = 1;
#endif
  if ((uint64_t)nt > nblocks) nt = (int)nblocks;
  uint64_t next = 0;
  int failed = 0;
  /* shuffled mode also runs the blocks in a random order (blocks must not rely on each other's order) */
  std::vector<uint64_t> perm;
  if (g_shuffle && nblocks > 1 && nblocks <= (1u << 20)) {
    perm.resize(nblocks);
    for (uint64_t i = 0; i < nblocks; i++) perm[i] = i;
    uint64_t st = g_seed ^ (nblocks * 0x9E3779B97F4A7C15ull) ^ (uint64_t)(uintptr_t)key;
    for (uint64_t i = nblocks - 1; i > 0; i--) std::swap(perm[i], perm[xorshift(&st) % (i + 1)]);
  }
  char failmsg[400] = {0};
  std::mutex fmu;
  auto body = [&]() {
    Worker *w = get_worker();
    w->call = call;
    w->ctx = ctx;
    char msg[300];
    void *dyn = NULL;
    if (smem && posix_memalign(&dyn, 128, smem)) dyn = NULL; /* 128-byte aligned, as the hardware window in practice */
    sf_emu_blk.block_dim = uint3{b.x, b.y, b.z};
    sf_emu_blk.grid_dim = uint3{g.x, g.y, g.z};
    sf_emu_blk.dyn_smem = dyn;
    sf_emu_blk.dyn_smem_bytes = smem;
    for (;;) {
      uint64_t i = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
      if (i >= nblocks || __atomic_load_n(&failed, __ATOMIC_RELAXED)) break;
      if (!perm.empty()) i = perm[i];
      sf_emu_blk.block_idx.x = (unsigned)(i % g.x);
      sf_emu_blk.block_idx.y = (unsigned)((i / g.x) % g.y);
      sf_emu_blk.block_idx.z = (unsigned)(i / ((uint64_t)g.x * g.y));
      if (dyn) memset(dyn, 0xff, smem); /* shared memory starts as garbage (NaN for floats), as on hardware */
      if (run_block(w, (int)nthr, b, msg, sizeof msg)) {
        std::lock_guard<std::mutex> lk(fmu);
        if (!failed) snprintf(failmsg, sizeof failmsg, "block (%u,%u,%u): %s", sf_emu_blk.block_idx.x,
                              sf_emu_blk.block_idx.y, sf_emu_blk.block_idx.z, msg);
        __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
      }
    }
    free(dyn);
    sf_emu_blk.dyn_smem = NULL;
  };
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    body();
  } else {
    body();
  }
  if (failed) return fail(cudaErrorLaunchFailure, "%s: %s", name, failmsg);
  return cudaSuccess;
}

cudaError_t sf_emu_cudaFuncSetAttribute(const void *fn, cudaFuncAttribute a, int v) {
  if (a != cudaFuncAttributeMaxDynamicSharedMemorySize) return fail(cudaErrorInvalidValue, "unsupported function attribute %d", (int)a);
  if (v < 0 || (size_t)v > kSmemOptin)
    return fail(cudaErrorInvalidValue, "MaxDynamicSharedMemorySize %d exceeds the H100's 227 KB (232448 bytes)", v);
  std::lock_guard<std::mutex> lk(g_attr_mu);
  g_max_dyn_smem[fn] = v;
  return cudaSuccess;
}

cudaError_t sf_emu_cudaMalloc(void **p, size_t n) {
  if (!p) return fail(cudaErrorInvalidValue, "cudaMalloc: NULL pointer");
  *p = NULL;
  {
    std::lock_guard<std::mutex> g(g_mem_mu);
    if (g_allocated[t_device] + n > kDeviceMem)
      return fail(cudaErrorMemoryAllocation, "emu:%d out of memory (%zu bytes requested)", t_device, n);
  }
  void *q = NULL;
  /* exact size, so ASan sees an overrun past the end */
  if (posix_memalign(&q, 256, n ? n : 1)) return fail(cudaErrorMemoryAllocation, "emu:%d: host allocation of %zu bytes failed", t_device, n);
  std::lock_guard<std::mutex> g(g_mem_mu);
  g_allocs[(uintptr_t)q] = Alloc{n ? n : 1, t_device};
  g_allocated[t_device] += n;
  *p = q;
  return cudaSuccess;
}

cudaError_t sf_emu_cudaFree(void *p) {
  if (!p) return cudaSuccess;
  {
    std::lock_guard<std::mutex> g(g_mem_mu);
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end()) return fail(cudaErrorInvalidDevicePointer, "cudaFree(%p): not a device allocation", p);
    g_allocated[it->second.device] -= it->second.n;
    g_allocs.erase(it);
  }
  free(p);
  return cudaSuccess;
}

cudaError_t sf_emu_cudaMallocHost(void **p, size_t n) {
  *p = malloc(n ? n : 1);
  return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation, "cudaMallocHost(%zu) failed", n);
}
cudaError_t sf_emu_cudaHostAlloc(void **p, size_t n, unsigned flags) { return sf_emu_cudaMallocHost(p, n); }
cudaError_t sf_emu_cudaFreeHost(void *p) { free(p); return cudaSuccess; }

cudaError_t sf_emu_cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
  if (check_copy(dst, src, n, k)) return t_last_error;
  if (n) memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t sf_emu_cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s) {
  if (check_stream(s)) return t_last_error;
  return sf_emu_cudaMemcpy(dst, src, n, k);
}
cudaError_t sf_emu_cudaMemset(void *p, int v, size_t n) {
  if (n && !is_device_range(p, n)) return fail(cudaErrorInvalidValue, "cudaMemset: [%p, +%zu) is not device memory", p, n);
  if (n) memset(p, v, n);
  return cudaSuccess;
}
cudaError_t sf_emu_cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
  if (check_stream(s)) return t_last_error;
  return sf_emu_cudaMemset(p, v, n);
}
cudaError_t sf_emu_cudaMemGetInfo(size_t *free_b, size_t *total_b) {
  std::lock_guard<std::mutex> g(g_mem_mu);
  *total_b = kDeviceMem;
  *free_b = kDeviceMem - g_allocated[t_device];
  return cudaSuccess;
}

cudaError_t sf_emu_cudaGetDeviceCount(int *n) { *n = device_count_env(); return cudaSuccess; }
cudaError_t sf_emu_cudaSetDevice(int d) {
  if (d < 0 || d >= device_count_env()) return fail(cudaErrorInvalidDevice, "no device emu:%d (SFWB_EMU_DEVICES=%d)", d, device_count_env());
  t_device = d;
  return cudaSuccess;
}
cudaError_t sf_emu_cudaGetDevice(int *d) { *d = t_device; return cudaSuccess; }
cudaError_t sf_emu_cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
  if (d < 0 || d >= device_count_env()) return fail(cudaErrorInvalidDevice, "no device emu:%d", d);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "sfwb emulated H100 (emu:%d)", d);
  p->totalGlobalMem = kDeviceMem;
  p->sharedMemPerBlock = kSmemDefault;
  p->sharedMemPerBlockOptin = kSmemOptin;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024; p->maxThreadsDim[1] = 1024; p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647; p->maxGridSize[1] = 65535; p->maxGridSize[2] = 65535;
  p->warpSize = 32;
  p->multiProcessorCount = 132;
  p->major = 9;
  p->minor = 0;
  return cudaSuccess;
}
cudaError_t sf_emu_cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t sf_emu_cudaStreamCreate(cudaStream_t *s) { return sf_emu_cudaStreamCreateWithFlags(s, 0); }
cudaError_t sf_emu_cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
  sf_emu_stream *st = new sf_emu_stream();
  st->device = t_device;
  st->flags = flags;
  st->dead = false;
  *s = st;
  return cudaSuccess;
}
cudaError_t sf_emu_cudaStreamDestroy(cudaStream_t s) {
  if (!s || s->dead) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: a NULL or destroyed stream");
  s->dead = true;
  return cudaSuccess;
}
cudaError_t sf_emu_cudaStreamSynchronize(cudaStream_t s) { return check_stream(s); }
cudaError_t sf_emu_cudaStreamQuery(cudaStream_t s) { return check_stream(s); }
cudaError_t sf_emu_cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
  if (!e || e->dead) return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: a NULL or destroyed event");
  return check_stream(s);
}
cudaError_t sf_emu_cudaEventCreate(cudaEvent_t *e) { return sf_emu_cudaEventCreateWithFlags(e, 0); }
cudaError_t sf_emu_cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
  *e = new sf_emu_event{t_device, false, 0, false};
  return cudaSuccess;
}
cudaError_t sf_emu_cudaEventDestroy(cudaEvent_t e) {
  if (!e || e->dead) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: a NULL or destroyed event");
  e->dead = true;
  return cudaSuccess;
}
cudaError_t sf_emu_cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e || e->dead) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: a NULL or destroyed event");
  if (check_stream(s)) return t_last_error;
  if (s && s->device != e->device)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: an event of emu:%d on a stream of emu:%d", e->device, s->device);
  e->recorded = true;
  e->t = now_s();
  return cudaSuccess;
}
/* work runs at issue on emu, so a recorded event is always complete */
cudaError_t sf_emu_cudaEventSynchronize(cudaEvent_t e) {
  return e && !e->dead ? cudaSuccess : fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: a NULL or destroyed event");
}
cudaError_t sf_emu_cudaEventQuery(cudaEvent_t e) {
  return e && !e->dead ? cudaSuccess : fail(cudaErrorInvalidResourceHandle, "cudaEventQuery: a NULL or destroyed event");
}
cudaError_t sf_emu_cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
  if (!a || !b || !a->recorded || !b->recorded) return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: event not recorded");
  *ms = (float)((b->t - a->t) * 1e3);
  return cudaSuccess;
}

cudaError_t sf_emu_cudaGetLastError(void) {
  cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}
cudaError_t sf_emu_cudaPeekAtLastError(void) { return t_last_error; }

const char *sf_emu_cudaGetErrorString(cudaError_t e) {
  switch (e) {
  case cudaSuccess: return "no error";
  case cudaErrorInvalidValue: return "invalid argument";
  case cudaErrorMemoryAllocation: return "out of memory";
  case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  case cudaErrorInvalidDevicePointer: return "invalid device pointer";
  case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
  case cudaErrorNoDevice: return "no CUDA-capable device is detected";
  case cudaErrorInvalidDevice: return "invalid device ordinal";
  case cudaErrorInvalidResourceHandle: return "invalid resource handle";
  case cudaErrorNotReady: return "device not ready";
  case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

} // extern "C"
