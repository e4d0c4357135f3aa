/* registry.c — which backend serves which device type. Every backend is registered here, explicitly and
 * once: cpu always, emu (the CUDA backend on the CPU) always, cuda when the build has it. */
#include <stdio.h>

#include "backend/backend.h"
#include "core/error.h"

static const sf_backend *g_backends[SF_NDEVTYPES] = {&sf_cpu_backend, NULL, NULL};

int sf_emu_backend_register(void);  /* src/backend/cuda/cuda_backend.cc built for emu */
#ifdef SFWB_HAVE_CUDA
int sf_cuda_backend_register(void); /* the same file built by nvcc */
#endif

void sf_register_backend(sf_devtype type, const sf_backend *b) { g_backends[type] = b; }

int sf_backends_init(void) {
  static int done;
  if (done) return 0;
  done = 1;
  sf_register_backend(SF_DEV_CPU, &sf_cpu_backend);
  sf_emu_backend_register();
#ifdef SFWB_HAVE_CUDA
  sf_cuda_backend_register();
#endif
  return 0;
}

bool sf_backend_supports(const sf_backend *b, sf_capability cap, int op, const sf_tensor *out, const sf_tensor *a,
                         const sf_tensor *b2) {
  return b && b->supports && b->supports(cap, op, out, a, b2);
}

const sf_backend *sf_backend_for(sf_device dev) {
  char buf[32];
  if (dev.type < 0 || dev.type >= SF_NDEVTYPES || !g_backends[dev.type]) {
    sf_error("device %s is not available in this build (see sfwb.devices())", sf_device_str(dev, buf, sizeof buf));
    return NULL;
  }
  const sf_backend *b = g_backends[dev.type];
  if (dev.index < 0 || (b->device_count && dev.index >= b->device_count())) {
    sf_error("device %s does not exist (%d %s device(s))", sf_device_str(dev, buf, sizeof buf),
             b->device_count ? b->device_count() : 0, b->name);
    return NULL;
  }
  return b;
}

const sf_backend *sf_backend_of(const sf_tensor *t) { return sf_backend_for(t->storage->device); }

int sf_device_list(char names[][16], int max) {
  int n = 0;
  for (int ty = 0; ty < SF_NDEVTYPES; ty++) {
    const sf_backend *b = g_backends[ty];
    if (!b) continue;
    int cnt = b->device_count ? b->device_count() : 1;
    for (int i = 0; i < cnt && n < max; i++) {
      sf_device d = {(int8_t)ty, (int8_t)i};
      sf_device_str(d, names[n++], 16);
    }
  }
  return n;
}
