/* autograd_hooks.h — the tensor hooks autograd installs in the core (core/tensor.h sf_tensor_hooks). The core
 * never names autograd: sf_autograd_init installs them, and every entry point that can give a tensor autograd
 * state (requires_grad_, set_grad, a recorded node) calls it first. */
#ifndef SF_AUTOGRAD_HOOKS_H
#define SF_AUTOGRAD_HOOKS_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* the last reference to t is going: drop t->grad and t->grad_fn */
void sf_autograd_tensor_freed(sf_tensor *t);
/* v is a new view (narrow/select/view/reshape/permute/transpose/unsqueeze/squeeze/expand/alias) of
 * `base` with v->offset/shape/stride over the same storage: record it when base requires grad.
 * The backward is the as_strided scatter of v's gradient into base's geometry (expand = stride 0:
 * gradients of repeated elements add). */
void sf_autograd_record_view(sf_tensor *v, sf_tensor *base);
/* install the hooks (idempotent, cheap) */
void sf_autograd_init(void);

#ifdef __cplusplus
}
#endif
#endif
