/* ag_internal.h — state shared inside src/autograd: checkpoint regions and the thread-local modes. */
#ifndef SF_AG_INTERNAL_H
#define SF_AG_INTERNAL_H

#include "autograd/autograd.h"

struct sf_ckpt_region {
  int refcount;              /* one per recorded node, one while the forward region is open */
  int (*recompute)(void *ctx);
  void *ctx;
  void (*free_ctx)(void *ctx);
  uint64_t rng_seed, rng_offset; /* RNG state at region start, restored for the recomputation */
  sf_node **nodes;           /* weak: recorded nodes in order (NULL once freed) */
  int n_nodes, cap;
  int refill_pos;            /* recomputation: index of the next recorded node */
  bool refill_mismatch;
};

/* the region whose forward is running (recording with dropped saves), and the one being recomputed */
extern _Thread_local sf_ckpt_region *sf__ckpt_forward;
extern _Thread_local sf_ckpt_region *sf__ckpt_refill;

void sf__region_release(sf_ckpt_region *r);
int sf__region_recompute(sf_ckpt_region *r);
/* the backward of a view node (ag_view.c): the view's gradient scattered into its base's geometry */
int sf__bw_view(sf_node *n, sf_tensor **go, sf_tensor **gi);
/* a detached alias that never owns a graph */
sf_tensor *sf__detached_alias(sf_tensor *t);

#endif
