/* checkpoint.c — recompute-in-backward regions: the forward records nodes without saved tensors; the
 * first backward that needs one re-runs the region in "refill" mode, which hands each recorded node its
 * saved tensors again (the same idea as torch's non-reentrant checkpoint). */
#include <stdlib.h>

#include "autograd/ag_internal.h"
#include "core/error.h"

sf_ckpt_region *sf_checkpoint_begin(int (*recompute)(void *ctx), void *ctx, void (*free_ctx)(void *ctx)) {
  sf_ckpt_region *r = calloc(1, sizeof *r);
  if (!r) { sf_error("out of host memory for a checkpoint region"); return NULL; }
  r->refcount = 1;
  r->recompute = recompute;
  r->ctx = ctx;
  r->free_ctx = free_ctx;
  sf_rng_state(&r->rng_seed, &r->rng_offset);
  /* nested regions (or a region inside a recomputation) join the enclosing one: not activated */
  if (!sf__ckpt_forward && !sf__ckpt_refill) sf__ckpt_forward = r;
  return r;
}

int sf_checkpoint_end(sf_ckpt_region *r) {
  if (!r) return -1;
  if (sf__ckpt_forward == r) sf__ckpt_forward = NULL;
  sf__region_release(r);
  return 0;
}

bool sf_checkpoint_recomputing(void) { return sf__ckpt_refill != NULL; }

bool sf_checkpoint_active(void) { return sf__ckpt_forward != NULL || sf__ckpt_refill != NULL; }

void sf__region_release(sf_ckpt_region *r) {
  if (!r || --r->refcount > 0) return;
  if (r->free_ctx) r->free_ctx(r->ctx);
  free(r->nodes);
  free(r);
}

int sf__region_recompute(sf_ckpt_region *r) {
  if (!r->recompute) return sf_error("checkpoint region has no recompute function");
  if (sf__ckpt_refill) return sf_error("checkpoint: a recomputation needs another recomputation (nested backward)");
  uint64_t seed, off;
  sf_rng_state(&seed, &off);
  sf_rng_set_state(r->rng_seed, r->rng_offset);
  sf_ckpt_region *fwd = sf__ckpt_forward;
  sf__ckpt_forward = NULL;
  sf__ckpt_refill = r;
  r->refill_pos = 0;
  r->refill_mismatch = false;
  r->refcount++; /* keep it alive while it runs */
  bool prev = sf_set_grad_enabled(true);
  int rc = r->recompute(r->ctx);
  sf_set_grad_enabled(prev);
  sf__ckpt_refill = NULL;
  sf__ckpt_forward = fwd;
  sf_rng_set_state(seed, off);
  bool mismatch = r->refill_mismatch || r->refill_pos != r->n_nodes;
  int pos = r->refill_pos, n = r->n_nodes;
  sf__region_release(r);
  if (rc) {
    sf_error_prefix("checkpoint recomputation: ");
    return -1;
  }
  if (mismatch)
    return sf_error("checkpoint: the recomputation ran a different sequence of differentiable ops than the forward "
                    "(%d recorded vs %d in the forward); the region must be deterministic in its inputs", pos, n);
  return 0;
}
