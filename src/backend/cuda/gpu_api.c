/* gpu_api.c — where the cuda and emu builds of the CUDA backend register their device services. */
#include "backend/cuda/gpu_api.h"

#include "core/error.h"

static const sf_gpu_ext *g_ext[SF_NDEVTYPES];

void sf_gpu_register(sf_devtype type, const sf_gpu_ext *ext) { g_ext[type] = ext; }

const sf_gpu_ext *sf_gpu_ext_for(sf_devtype type) {
  if (type < 0 || type >= SF_NDEVTYPES || !g_ext[type]) {
    sf_error("no GPU services for device type %d (only cuda:N and emu:N devices have them)", (int)type);
    return NULL;
  }
  return g_ext[type];
}
