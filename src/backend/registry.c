/* registry.c — which backend serves which device type; optional backends register themselves. */
#include <stdio.h>

#include "backend/backend.h"
#include "core/error.h"

static sf_backend *g_backends[SF_NDEVTYPES] = {&sf_cpu_backend, NULL, NULL};

/* Optional backends provide these (src/backend/cuda); weak so CPU-only builds link. */
__attribute__((weak)) int sf_cuda_backend_register(void) { return 0; }
__attribute__((weak)) int sf_emu_backend_register(void) { return 0; }

void sf_register_backend(sf_devtype type, sf_backend *b) { g_backends[type] = b; }

int sf_backends_init(void) {
  static int done;
  if (done) return 0;
  done = 1;
  sf_emu_backend_register();
  sf_cuda_backend_register();
  return 0;
}

sf_backend *sf_backend_for(sf_device dev) {
  char buf[32];
  if (dev.type < 0 || dev.type >= SF_NDEVTYPES || !g_backends[dev.type]) {
    sf_error("device %s is not available in this build (see sfwb.devices())", sf_device_str(dev, buf, sizeof buf));
    return NULL;
  }
  sf_backend *b = g_backends[dev.type];
  if (dev.index < 0 || (b->device_count && dev.index >= b->device_count())) {
    sf_error("device %s does not exist (%d %s device(s))", sf_device_str(dev, buf, sizeof buf),
             b->device_count ? b->device_count() : 0, b->name);
    return NULL;
  }
  return b;
}

sf_backend *sf_backend_of(const sf_tensor *t) { return sf_backend_for(t->storage->device); }

int sf_device_list(char names[][16], int max) {
  int n = 0;
  for (int ty = 0; ty < SF_NDEVTYPES; ty++) {
    sf_backend *b = g_backends[ty];
    if (!b) continue;
    int cnt = b->device_count ? b->device_count() : 1;
    for (int i = 0; i < cnt && n < max; i++) {
      sf_device d = {(int8_t)ty, (int8_t)i};
      sf_device_str(d, names[n++], 16);
    }
  }
  return n;
}
