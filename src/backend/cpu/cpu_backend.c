/* cpu_backend.c — the CPU backend's op table: memory from cpu_alloc.c, host<->device copies are
 * memcpy, sync is a no-op, exactly one device. */
#include <string.h>

#include "backend/conv_ops.h"
#include "backend/cpu/cpu_internal.h"
#include "core/nn_ops.h"
#include "core/train_ops.h"

static int cpu_device_count(void) { return 1; }

static int cpu_memcpy(sf_device dev, void *dst, const void *src, size_t nbytes) {
  if (nbytes) memcpy(dst, src, nbytes);
  return 0;
}

static int cpu_sync(sf_device dev) { return 0; }

/* the optional ops this backend does (backend.h's supports query) */
static bool cpu_supports(sf_capability cap, int op, const sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  switch (cap) {
  case SF_CAP_UNARY_BWD: return sf_cpu_fuses_unary_bwd(op);
  case SF_CAP_MATMUL_ACC: return sf_cpu_can_matmul_acc(out, a, b);
  case SF_CAP_LINEAR_BIAS: return false; /* the CPU rounds once through oneDNN / the f32 path instead */
  case SF_CAP_CONV_FRAMES: /* conv_cpu.c: frame pointers, the cache frames are never copied */
  case SF_CAP_CHANNEL_NORM: return true; /* cpu_channel_norm.c */
  }
  return false;
}

/* the whole CPU backend, one table: core ops, fused model ops (cpu_nn.c), convolutions (conv_cpu.c),
 * training ops (cpu_train.c) */
const sf_backend sf_cpu_backend = {
    .name = "cpu",
    .device_count = cpu_device_count,
    .alloc = sf_cpu_alloc,
    .free = sf_cpu_free,
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
    .nn = &sf_cpu_nn_ops,
    .conv = &sf_cpu_conv_ops,
    .train = &sf_cpu_train_ops,
    .supports = cpu_supports,
};
