/* autograd_defaults.c — weak no-op autograd hooks, replaced by src/autograd when it is linked. */
#include "autograd/autograd_hooks.h"

__attribute__((weak)) void sf_autograd_tensor_freed(sf_tensor *t) { (void)t; }
__attribute__((weak)) void sf_autograd_record_view(sf_tensor *v, sf_tensor *base) { (void)v; (void)base; }
