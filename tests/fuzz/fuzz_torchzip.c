/* fuzz_torchzip.c — libFuzzer target: sf_statedict_open on arbitrary file contents (torch.save zips,
 * safetensors, index JSON), through a memfd; every tensor entry is materialized and its first and
 * last element read. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/statedict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  int fd = memfd_create("fuzz", 0);
  if (fd < 0) return 0;
  if (write(fd, data, n) != (ssize_t)n) {
    close(fd);
    return 0;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  sf_statedict *sd = sf_statedict_open(path);
  if (sd) {
    volatile uint8_t sink = 0;
    for (int i = 0; i < sf_statedict_count(sd) && i < 256; i++) {
      const sf_sd_entry *e = sf_statedict_entry(sd, i);
      if (e->kind != SF_SD_TENSOR) continue;
      sf_tensor *t = sf_statedict_get_entry(sd, e);
      if (!t) continue;
      int64_t numel = sf_numel(t), last = t->offset;
      for (int d = 0; d < t->ndim; d++) last += (t->shape[d] - 1) * t->stride[d];
      if (numel > 0) {
        size_t es = sf_dtype_size(t->dtype);
        sink ^= ((const uint8_t *)t->storage->data)[t->offset * es];
        sink ^= ((const uint8_t *)t->storage->data)[last * es + es - 1];
        if ((uint64_t)(last * es + es) > t->storage->nbytes) __builtin_trap();
      }
      sf_release(t);
    }
    (void)sink;
    sf_statedict_close(sd);
  }
  close(fd);
  return 0;
}
