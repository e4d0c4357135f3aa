/* backends_init.c — registers every backend of this build with the core's table (core/registry.c),
 * explicitly and once: cpu always, emu (the CUDA backend run on the CPU) always, cuda when built with it. */
#include "backend/cpu/cpu_internal.h"
#include "core/backend.h"

int sf_emu_backend_register(void);  /* src/backend/cuda/cuda_backend.cc built for emu */
#ifdef SFWB_HAVE_CUDA
int sf_cuda_backend_register(void); /* the same file built by nvcc */
#endif

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

