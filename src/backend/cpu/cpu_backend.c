/* cpu_backend.c — the CPU backend's op table and its memory: 64-byte aligned host allocations,
 * host<->device copies are memcpy, sync is a no-op, exactly one device. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

static int cpu_device_count(void) { return 1; }

static void *cpu_alloc(sf_device dev, size_t nbytes) {
  /* round up so aligned_alloc's size rule holds and a 0-byte tensor still gets a unique pointer */
  size_t n = (nbytes + 63) & ~(size_t)63;
  if (n < nbytes) { sf_error("cpu: cannot allocate %zu bytes (size overflow)", nbytes); return NULL; }
  if (n == 0) n = 64;
  void *p = aligned_alloc(64, n);
  if (!p) sf_error("cpu: out of memory allocating %zu bytes (%.2f GiB)", nbytes, nbytes / 1073741824.0);
  return p;
}

static void cpu_free(sf_device dev, void *p, size_t nbytes) { free(p); }

static int cpu_memcpy(sf_device dev, void *dst, const void *src, size_t nbytes) {
  if (nbytes) memcpy(dst, src, nbytes);
  return 0;
}

static int cpu_sync(sf_device dev) { return 0; }

sf_backend sf_cpu_backend = {
    .name = "cpu",
    .device_count = cpu_device_count,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy_h2d = cpu_memcpy,
    .copy_d2h = cpu_memcpy,
    .sync = cpu_sync,
    .copy = sf_cpu_copy,
    .fill = sf_cpu_fill,
    .unary = sf_cpu_unary,
    .binary = sf_cpu_binary,
    .binary_scalar = sf_cpu_binary_scalar,
    .where = sf_cpu_where,
    .reduce = sf_cpu_reduce,
    .softmax = sf_cpu_softmax,
    .matmul = sf_cpu_matmul,
    .random = sf_cpu_random,
};
