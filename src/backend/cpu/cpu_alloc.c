/* cpu_alloc.c — host memory for CPU tensors. Small blocks (< 1 MiB): 64-byte aligned malloc. Larger
 * blocks are recycled through a small cache of freed blocks of the same rounded size — a fresh 64 MiB
 * result otherwise costs more in kernel page zeroing and faults than the op itself (numpy pays this on
 * every `x + y`); blocks >= 8 MiB are also 2 MiB aligned and marked for transparent huge pages. Mid-size
 * blocks (1-8 MiB, e.g. the [512, 1536] text-side activations of the Wan DiT) are cached too: glibc
 * serves them with a fresh mmap each time, which cost ~11k page faults per DiT forward.
 * The cache holds at most SFWB_CPU_CACHE_MB (default 2048) MiB and is bypassed under AddressSanitizer. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/cpu/cpu_internal.h"

#define MID_MIN ((size_t)1 << 20)
#define MID_ROUND ((size_t)64 << 10)
#define BIG_MIN ((size_t)8 << 20)
#define BIG_ALIGN ((size_t)2 << 20)
#define CACHE_SLOTS 128

typedef struct { void *p; size_t n; } blk;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static blk *g_live;           /* large blocks handed out (their rounded sizes) */
static size_t g_nlive, g_cap_live;
static blk g_cache[CACHE_SLOTS]; /* freed large blocks, oldest first */
static int g_ncache;
static size_t g_cache_bytes;
static long long g_cache_limit = -1;

static size_t cache_limit(void) {
  if (g_cache_limit < 0) {
#if defined(__SANITIZE_ADDRESS__)
    g_cache_limit = 0; /* let ASan see every use after free */
#else
    const char *e = getenv("SFWB_CPU_CACHE_MB");
    g_cache_limit = (e && *e) ? atoll(e) << 20 : (long long)2048 << 20;
    if (g_cache_limit < 0) g_cache_limit = 0;
#endif
  }
  return (size_t)g_cache_limit;
}

/* free every cached block (called on allocation failure; also usable to return memory to the OS) */
void sf_cpu_cache_flush(void) {
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < g_ncache; i++) free(g_cache[i].p);
  g_ncache = 0;
  g_cache_bytes = 0;
  pthread_mutex_unlock(&g_mu);
}

static void *big_alloc(size_t n) {
  void *p = NULL;
  pthread_mutex_lock(&g_mu);
  for (int i = g_ncache - 1; i >= 0; i--) /* most recently freed first: its pages are warm */
    if (g_cache[i].n == n) {
      p = g_cache[i].p;
      g_cache_bytes -= n;
      memmove(&g_cache[i], &g_cache[i + 1], sizeof(blk) * (size_t)(g_ncache - i - 1));
      g_ncache--;
      break;
    }
  pthread_mutex_unlock(&g_mu);
  if (!p) {
    const size_t align = n >= BIG_MIN ? BIG_ALIGN : 64;
    if (posix_memalign(&p, align, n) != 0) {
      sf_cpu_cache_flush();
      if (posix_memalign(&p, align, n) != 0) return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (n >= BIG_MIN) madvise(p, n, MADV_HUGEPAGE); /* advisory: failure just means 4 KiB pages */
#endif
  }
  pthread_mutex_lock(&g_mu);
  if (g_nlive == g_cap_live) {
    size_t cap = g_cap_live ? 2 * g_cap_live : 64;
    blk *nl = realloc(g_live, cap * sizeof(blk));
    if (!nl) { pthread_mutex_unlock(&g_mu); free(p); return NULL; }
    g_live = nl;
    g_cap_live = cap;
  }
  g_live[g_nlive].p = p;
  g_live[g_nlive].n = n;
  g_nlive++;
  pthread_mutex_unlock(&g_mu);
  return p;
}

static void *raw_alloc(size_t nbytes) {
  /* round up so aligned_alloc's size rule holds and a 0-byte tensor still gets a unique pointer */
  size_t n = (nbytes + 63) & ~(size_t)63;
  if (n < nbytes || nbytes > ((size_t)1 << 60)) {
    sf_error("cpu: cannot allocate %zu bytes (size overflow)", nbytes);
    return NULL;
  }
  if (n == 0) n = 64;
  void *p = n >= BIG_MIN   ? big_alloc((n + BIG_ALIGN - 1) & ~(BIG_ALIGN - 1))
            : n >= MID_MIN ? big_alloc((n + MID_ROUND - 1) & ~(MID_ROUND - 1))
                           : aligned_alloc(64, n);
  if (!p) sf_error("cpu: out of memory allocating %zu bytes (%.2f GiB)", nbytes, nbytes / 1073741824.0);
  return p;
}

static void raw_free(void *p) {
  if (!p) return;
  pthread_mutex_lock(&g_mu);
  size_t i = g_nlive;
  /* recent blocks are freed first, so search from the end */
  while (i > 0 && g_live[i - 1].p != p) i--;
  if (i == 0) { pthread_mutex_unlock(&g_mu); free(p); return; } /* a small block */
  size_t n = g_live[i - 1].n;
  g_live[i - 1] = g_live[--g_nlive];
  size_t limit = cache_limit();
  void *drop[CACHE_SLOTS + 1];
  int ndrop = 0;
  if (n > limit) {
    drop[ndrop++] = p;
  } else {
    while (g_ncache > 0 && (g_ncache == CACHE_SLOTS || g_cache_bytes + n > limit)) { /* evict the oldest */
      drop[ndrop++] = g_cache[0].p;
      g_cache_bytes -= g_cache[0].n;
      memmove(&g_cache[0], &g_cache[1], sizeof(blk) * (size_t)(g_ncache - 1));
      g_ncache--;
    }
    g_cache[g_ncache].p = p;
    g_cache[g_ncache].n = n;
    g_ncache++;
    g_cache_bytes += n;
  }
  pthread_mutex_unlock(&g_mu);
  for (int k = 0; k < ndrop; k++) free(drop[k]);
}

/* ---- byte counters (live and peak) over every CPU allocation, so training can report peak memory
 * (e.g. what block checkpointing saves): sfwb.train.memory() ---- */
static _Atomic size_t mem_live, mem_peak;

void *sf_cpu_alloc(sf_device dev, size_t nbytes) {
  void *p = raw_alloc(nbytes);
  if (p) {
    size_t live = atomic_fetch_add(&mem_live, nbytes) + nbytes, pk = atomic_load(&mem_peak);
    while (live > pk && !atomic_compare_exchange_weak(&mem_peak, &pk, live)) {}
  }
  return p;
}

void sf_cpu_free(sf_device dev, void *p, size_t nbytes) {
  if (p) atomic_fetch_sub(&mem_live, nbytes);
  raw_free(p);
}

void sf_cpu_memory_stats(size_t *live, size_t *peak) {
  if (live) *live = atomic_load(&mem_live);
  if (peak) *peak = atomic_load(&mem_peak);
}

void sf_cpu_reset_peak_memory(void) { atomic_store(&mem_peak, atomic_load(&mem_live)); }
