/* cpu_pool.c — a small persistent thread pool (see cpu_pool.h): workers wait for a job generation
 * number, spinning briefly and then sleeping on a condition variable; the caller takes part. */
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend/cpu/cpu_pool.h"

#define MAX_THREADS 64
#define SPIN 2000 /* ~50 us of pause loops before sleeping */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_work = PTHREAD_COND_INITIALIZER, g_done = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t g_job_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static atomic_uint g_gen;
static atomic_int g_remaining;
static sf_par_fn g_fn;
static void *g_ctx;
static int g_nt;
static int g_started, g_size = -1;
static _Thread_local int t_in_pool;
static unsigned g_gen_at_start;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

int sf_cpu_pool_size(void) {
  if (g_size < 0) {
    const char *e = getenv("SFWB_THREADS");
    if (!e || !*e) e = getenv("OMP_NUM_THREADS");
    long n = (e && *e) ? strtol(e, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    g_size = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
  }
  return g_size;
}

int sf_cpu_threads(int64_t work, int64_t par_min) {
  if (work < par_min || t_in_pool || omp_in_parallel()) return 1;
  int nt = sf_cpu_pool_size();
  int64_t most = work / (par_min / 2 > 0 ? par_min / 2 : 1);
  if (most < nt) nt = (int)(most > 1 ? most : 1);
  return nt;
}

static void *worker(void *arg) {
  int tid = (int)(intptr_t)arg;
  t_in_pool = 1;
  unsigned seen = g_gen_at_start; /* not g_gen: the first job may be published before we run */
  for (;;) {
    for (int spins = 0; spins < SPIN && atomic_load_explicit(&g_gen, memory_order_acquire) == seen; spins++) cpu_relax();
    /* the job's parameters are read under the lock they were published under, with its generation */
    pthread_mutex_lock(&g_mu);
    while (atomic_load_explicit(&g_gen, memory_order_acquire) == seen) pthread_cond_wait(&g_work, &g_mu);
    seen = atomic_load(&g_gen);
    sf_par_fn fn = g_fn;
    void *ctx = g_ctx;
    int nt = g_nt;
    pthread_mutex_unlock(&g_mu);
    if (tid < nt) {
      fn(ctx, tid, nt);
      if (atomic_fetch_sub_explicit(&g_remaining, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_lock(&g_mu);
        pthread_cond_signal(&g_done);
        pthread_mutex_unlock(&g_mu);
      }
    }
  }
  return NULL;
}

/* a forked child has no workers: start over there */
static void after_fork_child(void) {
  g_started = 0;
  pthread_mutex_init(&g_mu, NULL);
  pthread_mutex_init(&g_job_lock, NULL);
  pthread_cond_init(&g_work, NULL);
  pthread_cond_init(&g_done, NULL);
}

static int g_nworkers;

static void start_workers(void) {
  static int atfork_done;
  if (!atfork_done) { pthread_atfork(NULL, NULL, after_fork_child); atfork_done = 1; }
  int want = sf_cpu_pool_size() - 1;
  g_gen_at_start = atomic_load(&g_gen);
  g_nworkers = 0;
  for (int i = 0; i < want; i++) {
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, (size_t)8 << 20); /* kernels keep chunk buffers on the stack */
    if (pthread_create(&th, &at, worker, (void *)(intptr_t)(i + 1)) == 0) g_nworkers++;
    pthread_attr_destroy(&at);
    if (g_nworkers < i + 1) break;
  }
  g_started = 1;
}

void sf_cpu_parallel(int nt, sf_par_fn fn, void *ctx) {
  if (nt <= 1 || t_in_pool || omp_in_parallel() || pthread_mutex_trylock(&g_job_lock) != 0) {
    fn(ctx, 0, 1);
    return;
  }
  if (!g_started) start_workers();
  if (nt > g_nworkers + 1) nt = g_nworkers + 1;
  if (nt <= 1) { pthread_mutex_unlock(&g_job_lock); fn(ctx, 0, 1); return; }
  pthread_mutex_lock(&g_mu);
  g_fn = fn;
  g_ctx = ctx;
  g_nt = nt;
  atomic_store_explicit(&g_remaining, nt - 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&g_gen, 1, memory_order_release);
  pthread_cond_broadcast(&g_work);
  pthread_mutex_unlock(&g_mu);
  t_in_pool = 1;
  fn(ctx, 0, nt);
  t_in_pool = 0;
  int spins = 0;
  while (atomic_load_explicit(&g_remaining, memory_order_acquire) > 0 && spins < SPIN) { cpu_relax(); spins++; }
  if (atomic_load_explicit(&g_remaining, memory_order_acquire) > 0) {
    pthread_mutex_lock(&g_mu);
    while (atomic_load_explicit(&g_remaining, memory_order_acquire) > 0) pthread_cond_wait(&g_done, &g_mu);
    pthread_mutex_unlock(&g_mu);
  }
  pthread_mutex_unlock(&g_job_lock);
}

typedef struct { int64_t n; sf_range_fn fn; void *ctx; } range_job;

static void range_part(void *vj, int t, int nt) {
  const range_job *j = vj;
  const int64_t lo = j->n * t / nt, hi = j->n * (t + 1) / nt;
  if (hi > lo) j->fn(j->ctx, lo, hi);
}

void sf_cpu_for(int64_t n, int nt, sf_range_fn fn, void *ctx) {
  if (n <= 0) return;
  if (nt > n) nt = (int)n;
  if (nt <= 1) { fn(ctx, 0, n); return; }
  range_job j = {n, fn, ctx};
  sf_cpu_parallel(nt, range_part, &j);
}

#define SCRATCH_SLOTS 4
typedef struct { void *p[SCRATCH_SLOTS]; size_t n[SCRATCH_SLOTS]; } scratch_set;
static _Thread_local scratch_set *t_scratch;
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *v) { /* at thread exit */
  scratch_set *s = v;
  for (int i = 0; i < SCRATCH_SLOTS; i++) free(s->p[i]);
  free(s);
}
static void scratch_key_init(void) { pthread_key_create(&g_scratch_key, scratch_free); }

void *sf_cpu_scratch(int slot, size_t n) {
  if (slot < 0 || slot >= SCRATCH_SLOTS) return NULL;
  if (!t_scratch) {
    pthread_once(&g_scratch_once, scratch_key_init);
    if (!(t_scratch = calloc(1, sizeof *t_scratch))) return NULL;
    pthread_setspecific(g_scratch_key, t_scratch);
  }
  scratch_set *s = t_scratch;
  if (s->n[slot] >= n && s->p[slot]) return s->p[slot];
  free(s->p[slot]);
  n = (n + 4095) & ~(size_t)4095;
  s->p[slot] = aligned_alloc(64, n);
  s->n[slot] = s->p[slot] ? n : 0;
  return s->p[slot];
}
