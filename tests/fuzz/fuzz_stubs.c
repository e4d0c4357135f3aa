/* fuzz_stubs.c — the little the io readers need from the rest of sfwb, so the fuzz targets link a
 * handful of files: host allocation for CPU storages and no-op autograd hooks. */
#include <stdlib.h>

#include "autograd/autograd_hooks.h"
#include "backend/backend.h"

void sf_autograd_tensor_freed(sf_tensor *t) { (void)t; }
void sf_autograd_record_view(sf_tensor *v, sf_tensor *base) { (void)v; (void)base; }

static void *host_alloc(sf_device d, size_t n) { (void)d; return malloc(n ? n : 1); }
static void host_free(sf_device d, void *p, size_t n) { (void)d; (void)n; free(p); }
static sf_backend host = {.name = "fuzz-host", .alloc = host_alloc, .free = host_free};
const sf_backend *sf_backend_for(sf_device dev) { (void)dev; return &host; }
sf_tensor *sf_contiguous(sf_tensor *t) { return sf_retain(t); }
