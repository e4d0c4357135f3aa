/* cpu_pool.h — the CPU backend's thread pool. Unlike an OpenMP team (whose idle threads spin for
 * ~10 ms after each region), idle workers here spin only ~50 us and then sleep, so a parallel op
 * stays fast when other processes share the cores (with OpenMP's spinning, a 1M-element add on
 * the loaded 2-core build machine took 10-50x longer than on one thread). Any C code may use it. */
#ifndef SF_CPU_POOL_H
#define SF_CPU_POOL_H

#include <stdint.h>

/* fn(ctx, t, nt) for t = 0..nt-1; the caller runs t = 0. Runs serially (nt = 1) when called from
 * inside a pool job or an OpenMP region, or while another thread's job occupies the pool. */
typedef void (*sf_par_fn)(void *ctx, int t, int nt);
void sf_cpu_parallel(int nt, sf_par_fn fn, void *ctx);

/* fn(ctx, lo, hi) over [0, n) split into nt contiguous ranges (static schedule, one per thread) */
typedef void (*sf_range_fn)(void *ctx, int64_t lo, int64_t hi);
void sf_cpu_for(int64_t n, int nt, sf_range_fn fn, void *ctx);

/* A grow-only scratch buffer of at least n bytes (64-byte aligned) owned by the calling thread and slot
 * (0..3), kept for the thread's next call: kernels that need a few MB of tiles per call would otherwise
 * get fresh pages from glibc's mmap on every call and pay the kernel's page zeroing. NULL when out of
 * memory. Contents are undefined; one user per slot at a time. */
void *sf_cpu_scratch(int slot, size_t n);

/* threads the pool may use: SFWB_THREADS, else OMP_NUM_THREADS, else the online CPUs (max 64) */
int sf_cpu_pool_size(void);

/* how many threads `work` elements deserve: 1 below par_min, at least par_min/2 elements each */
int sf_cpu_threads(int64_t work, int64_t par_min);

/* Parallel teams for the encoders' and convolutions' loops only above this many elements. Measured on the
 * 2-core box: libgomp's spinning workers fight OpenBLAS's own GEMM threads (VAE decode 2.4 s -> 10 s under
 * load), so they leave the parallelism to OpenBLAS and run memory-bound loops on one thread. */
#define SF_PAR_MIN ((int64_t)1 << 62)

#endif
