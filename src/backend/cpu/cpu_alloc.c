/* cpu_alloc.c — host memory for CPU tensors. Small blocks (< 64 KiB): 64-byte aligned malloc. Larger
 * blocks are mapped by sfwb itself (mmap; >= 8 MiB 2 MiB aligned and marked for transparent huge pages)
 * and recycled through a cache of freed blocks binned by rounded size, most recently freed first:
 *  - a fresh 64 MiB result otherwise costs more in kernel page zeroing and faults than the op itself (numpy
 *    pays this on every `x + y`), and glibc serves 1-8 MiB blocks (e.g. the [512, 1536] text-side
 *    activations of the Wan DiT) with a fresh mmap each time (~11k page faults per DiT forward);
 *  - blocks of 64 KiB-1 MiB left to glibc fragmented its heap: after each freed mmapped block glibc raises
 *    its mmap threshold, later blocks of that size land on the heap between small ones, and a training run
 *    of the toy world grew by ~0.2 MB a step (2 GB over 5000 teacher steps; docs/toy_world.md). Blocks that
 *    glibc never sees cannot fragment its heap.
 * The cache holds at most SFWB_CPU_CACHE_MB (default 2048) MiB, evicting the least recently freed; under
 * AddressSanitizer every block goes through malloc/free uncached so ASan sees each use after free. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/cpu/cpu_internal.h"

#define MAP_MIN ((size_t)64 << 10)
#define MID_MIN ((size_t)1 << 20)
#define BIG_MIN ((size_t)8 << 20)
#define BIG_ALIGN ((size_t)2 << 20)

/* the size a block of nbytes is mapped (and binned) at, or 0 for a malloc block */
static size_t mapped_size(size_t nbytes) {
  size_t n = (nbytes + 63) & ~(size_t)63;
  if (n < MAP_MIN) return 0;
  size_t r = n >= BIG_MIN ? BIG_ALIGN : n >= MID_MIN ? ((size_t)64 << 10) : ((size_t)4 << 10);
  return (n + r - 1) & ~(r - 1);
}

typedef struct { void *p; uint64_t stamp; } entry;
typedef struct { size_t n; int count, cap; entry *e; } bin; /* e: oldest first */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static bin *g_bins; /* sorted by n */
static int g_nbins, g_cap_bins;
static size_t g_cache_bytes;
static uint64_t g_clock;
static long long g_cache_limit = -1;

static size_t cache_limit(void) {
  if (g_cache_limit < 0) {
    const char *e = getenv("SFWB_CPU_CACHE_MB");
    g_cache_limit = (e && *e) ? atoll(e) << 20 : (long long)2048 << 20;
    if (g_cache_limit < 0) g_cache_limit = 0;
  }
  return (size_t)g_cache_limit;
}

/* the mapped blocks handed out, pointer -> mapped size: the free path does not trust its size argument
 * (the backend contract), and must tell a mapped block from a malloc one. Open addressing, linear
 * probing, deletion by backward shift; called under g_mu */
typedef struct { uintptr_t p; size_t n; } live_slot;
static live_slot *g_live;
static size_t g_live_cap, g_nlive; /* cap: a power of 2, at most half full */

static size_t live_hash(uintptr_t p, size_t cap) { return (size_t)(((p >> 12) * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1); }

static int live_put(uintptr_t p, size_t n) {
  if (2 * (g_nlive + 1) > g_live_cap) {
    size_t cap = g_live_cap ? 2 * g_live_cap : 1024;
    live_slot *t = calloc(cap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < g_live_cap; i++)
      if (g_live[i].p) {
        size_t j = live_hash(g_live[i].p, cap);
        while (t[j].p) j = (j + 1) & (cap - 1);
        t[j] = g_live[i];
      }
    free(g_live);
    g_live = t;
    g_live_cap = cap;
  }
  size_t j = live_hash(p, g_live_cap);
  while (g_live[j].p) j = (j + 1) & (g_live_cap - 1);
  g_live[j] = (live_slot){p, n};
  g_nlive++;
  return 0;
}

/* removes p and returns its mapped size, or 0 when p is not a mapped block */
static size_t live_take(uintptr_t p) {
  if (!g_live_cap) return 0;
  size_t m = g_live_cap - 1, i = live_hash(p, g_live_cap);
  while (g_live[i].p && g_live[i].p != p) i = (i + 1) & m;
  if (!g_live[i].p) return 0;
  size_t n = g_live[i].n;
  g_nlive--;
  /* backward shift: move up every later entry of the run that may sit at i */
  for (size_t j = (i + 1) & m; g_live[j].p; j = (j + 1) & m) {
    size_t h = live_hash(g_live[j].p, g_live_cap);
    if (((j - h) & m) >= ((j - i) & m)) { g_live[i] = g_live[j]; i = j; }
  }
  g_live[i].p = 0;
  return n;
}

static void *map_block(size_t n) {
  if (n < BIG_MIN) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
  }
  /* over-map by the alignment and unmap the ends, so the block starts on a 2 MiB boundary */
  size_t span = n + BIG_ALIGN;
  char *q = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (q == MAP_FAILED) return NULL;
  char *p = (char *)(((uintptr_t)q + BIG_ALIGN - 1) & ~(uintptr_t)(BIG_ALIGN - 1));
  if (p > q) munmap(q, (size_t)(p - q));
  if (q + span > p + n) munmap(p + n, (size_t)(q + span - (p + n)));
#ifdef MADV_HUGEPAGE
  madvise(p, n, MADV_HUGEPAGE); /* advisory: failure just means 4 KiB pages */
#endif
  return p;
}

/* the bin of size n (created when make), or NULL; called under g_mu */
static bin *find_bin(size_t n, int make) {
  int lo = 0, hi = g_nbins;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (g_bins[mid].n < n) lo = mid + 1; else hi = mid;
  }
  if (lo < g_nbins && g_bins[lo].n == n) return &g_bins[lo];
  if (!make) return NULL;
  if (g_nbins == g_cap_bins) {
    int cap = g_cap_bins ? 2 * g_cap_bins : 64;
    bin *nb = realloc(g_bins, (size_t)cap * sizeof(bin));
    if (!nb) return NULL;
    g_bins = nb;
    g_cap_bins = cap;
  }
  memmove(&g_bins[lo + 1], &g_bins[lo], sizeof(bin) * (size_t)(g_nbins - lo));
  g_nbins++;
  g_bins[lo] = (bin){.n = n};
  return &g_bins[lo];
}

/* remove the least recently freed cached block and return it (its size in *n), or NULL; under g_mu */
static void *evict_oldest(size_t *n) {
  bin *old = NULL;
  for (int i = 0; i < g_nbins; i++)
    if (g_bins[i].count > 0 && (!old || g_bins[i].e[0].stamp < old->e[0].stamp)) old = &g_bins[i];
  if (!old) return NULL;
  void *p = old->e[0].p;
  memmove(&old->e[0], &old->e[1], sizeof(entry) * (size_t)(old->count - 1));
  old->count--;
  g_cache_bytes -= old->n;
  *n = old->n;
  return p;
}

/* unmap every cached block (called on allocation failure; also usable to return memory to the OS) */
void sf_cpu_cache_flush(void) {
  for (;;) {
    size_t n = 0;
    pthread_mutex_lock(&g_mu);
    void *p = evict_oldest(&n);
    pthread_mutex_unlock(&g_mu);
    if (!p) break;
    munmap(p, n);
  }
}

static void *mapped_alloc(size_t n) {
  void *p = NULL;
  pthread_mutex_lock(&g_mu);
  bin *b = find_bin(n, 0);
  if (b && b->count > 0) { /* the most recently freed: its pages are warm */
    p = b->e[--b->count].p;
    g_cache_bytes -= n;
  }
  pthread_mutex_unlock(&g_mu);
  if (!p) p = map_block(n);
  if (!p) {
    sf_cpu_cache_flush();
    p = map_block(n);
  }
  if (!p) return NULL;
  pthread_mutex_lock(&g_mu);
  int bad = live_put((uintptr_t)p, n);
  pthread_mutex_unlock(&g_mu);
  if (bad) { munmap(p, n); return NULL; }
  return p;
}

/* a mapped block back to the cache (or unmapped); 0 when p is not a mapped block */
static int mapped_free(void *p) {
  pthread_mutex_lock(&g_mu);
  size_t n = live_take((uintptr_t)p);
  pthread_mutex_unlock(&g_mu);
  if (!n) return 0;
  size_t limit = cache_limit();
  if (n > limit) { munmap(p, n); return 1; }
  void *drop[16];
  size_t dropn[16];
  int ndrop = 0, cached = 0;
  pthread_mutex_lock(&g_mu);
  while (ndrop < 16 && g_cache_bytes + n > limit) {
    size_t en = 0;
    void *q = evict_oldest(&en);
    if (!q) break;
    drop[ndrop] = q;
    dropn[ndrop++] = en;
  }
  bin *b = g_cache_bytes + n <= limit ? find_bin(n, 1) : NULL;
  if (b && b->count == b->cap) {
    int cap = b->cap ? 2 * b->cap : 8;
    entry *ne = realloc(b->e, (size_t)cap * sizeof(entry));
    if (ne) { b->e = ne; b->cap = cap; }
  }
  if (b && b->count < b->cap) {
    b->e[b->count++] = (entry){p, ++g_clock};
    g_cache_bytes += n;
    cached = 1;
  }
  pthread_mutex_unlock(&g_mu);
  for (int k = 0; k < ndrop; k++) munmap(drop[k], dropn[k]);
  if (!cached) munmap(p, n);
  return 1;
}

static void *raw_alloc(size_t nbytes) {
  /* round up so aligned_alloc's size rule holds and a 0-byte tensor still gets a unique pointer */
  size_t n = (nbytes + 63) & ~(size_t)63;
  if (n < nbytes || nbytes > ((size_t)1 << 60)) {
    sf_error("cpu: cannot allocate %zu bytes (size overflow)", nbytes);
    return NULL;
  }
  if (n == 0) n = 64;
#if defined(__SANITIZE_ADDRESS__)
  void *p = aligned_alloc(64, n);
#else
  size_t m = mapped_size(nbytes);
  void *p = m ? mapped_alloc(m) : aligned_alloc(64, n);
#endif
  if (!p) sf_error("cpu: out of memory allocating %zu bytes (%.2f GiB)", nbytes, nbytes / 1073741824.0);
  return p;
}

static void raw_free(void *p) {
  if (!p) return;
#if defined(__SANITIZE_ADDRESS__)
  free(p);
#else
  if (!mapped_free(p)) free(p);
#endif
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
