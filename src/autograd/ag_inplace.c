/* ag_inplace.c — in-place writes under autograd, recorded as PyTorch records them.
 *
 * A write into a tensor `dst` (copy_, fill_, add_, t[i] = v, ...) whose destination or source takes part in a
 * graph gives dst's base B (the root of its view chain; dst itself when it is not a view) a new history: a
 * "copy_slices" node (PyTorch's CopySlices) with two inputs, B's old history and the written values' history.
 * Its backward takes B's gradient, sends the part inside dst's region to the written values (summed over
 * broadcast dims, cast to their dtype) and the rest, with the region zeroed, to B's old history. Arithmetic
 * in-place ops are recorded as the out-of-place op on dst's old values (a copy where the op saves them)
 * whose result is written by copy_, so the old values' gradient flows through the op as PyTorch's
 * derivative of the in-place op routes it.
 *
 * The write bumps B->hist; every other view of B then takes B's new history on its next use (a view node
 * from B, regenerated lazily: sf_ag_sync_view), as PyTorch regenerates a stale view's grad_fn.
 *
 * Refused as PyTorch refuses them: a write into a leaf that requires grad or into a view of one, and a
 * recorded write into a tensor whose elements overlap in memory (an expanded tensor). Every write bumps the
 * storage's version counter, so a tensor saved for backward and overwritten afterwards fails its backward
 * with an error naming the op (engine.c). */
#include <stdlib.h>
#include <string.h>

#include "autograd/ag_internal.h"
#include "core/error.h"

/* nodes made here save nothing, so a checkpoint region neither refills nor counts them */
static sf_node *begin_outside_region(const char *name, sf_backward_fn bw, sf_tensor *const *in, int n_in) {
  sf_ckpt_region *fr = sf__ckpt_forward;
  sf__ckpt_forward = NULL;
  sf_node *n = sf_node_begin(name, bw, in, n_in);
  sf__ckpt_forward = fr;
  return n;
}

/* v's grad_fn := a view node from its base (v's geometry over the base's current history) */
static void regenerate_view(sf_tensor *v) {
  sf_tensor *b = v->base;
  if (sf__ckpt_refill) { /* recomputation: outside the graph, only the flag the following ops look at */
    if (b->requires_grad) v->requires_grad = true;
    v->hist = b->hist;
    return;
  }
  if (b->requires_grad) {
    sf_node *n = begin_outside_region("view", sf__bw_view, &b, 1);
    if (!n || sf_node_finish(n, &v, 1)) return; /* OOM: v keeps its old history, the next sync tries again */
  }
  v->hist = b->hist;
}

void sf_ag_sync_view(sf_tensor *t) {
  if (t && t->base && t->hist != t->base->hist && sf_grad_enabled()) regenerate_view(t);
}

static bool overlapping(const sf_tensor *t) {
  for (int d = 0; d < t->ndim; d++)
    if (t->stride[d] == 0 && t->shape[d] > 1) return true;
  return false;
}

int sf_ag_inplace_begin(sf_tensor *dst, sf_tensor *src, const char *opname) {
  sf_autograd_init();
  int rec = 0;
  if (sf_grad_enabled()) {
    sf_ag_sync_view(dst);
    if (src) sf_ag_sync_view(src);
    sf_tensor *b = dst->base;
    rec = dst->requires_grad || (b && b->requires_grad) || (src && src->requires_grad);
    if (rec && !sf__ckpt_refill) { /* a recomputation repeats writes its forward already allowed */
      if (dst->requires_grad && !dst->grad_fn && !(b && b->requires_grad))
        return sf_error("in-place %s on a leaf tensor that requires grad; do it inside sfwb.no_grad (as an optimizer "
                        "does) or on a detached copy", opname);
      if (b && b->requires_grad && !b->grad_fn)
        return sf_error("in-place %s on a view of a leaf tensor that requires grad (PyTorch refuses it too); do it "
                        "inside sfwb.no_grad or on a clone", opname);
      if (overlapping(dst) || (b && overlapping(b)))
        return sf_error("in-place %s with autograd into an expanded tensor (several elements share one memory "
                        "location); write into a contiguous copy (clone) instead", opname);
    }
  }
  dst->storage->version++;
  dst->storage->last_inplace = opname;
  return rec;
}

/* geometry of the written region (dst at record time) */
typedef struct {
  sf_tensor_meta region;
  bool whole; /* dst is its base: the old history gets nothing */
} cs_ctx;

static int bw_copy_slices(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  const cs_ctx *c = n->ctx;
  const sf_tensor_meta *bm = &n->in[0], *vm = &c->region, *sm = &n->in[1];
  sf_tensor *g = go[0];
  if (c->whole) {
    if (!sf_node_needs(n, 1)) return 0;
    sf_tensor *s = sf_ag_sum_to(g, sm);
    if (s && s->dtype != sm->dtype) {
      sf_tensor *x = sf_raw_cast(s, sm->dtype);
      sf_release(s);
      s = x;
    }
    gi[1] = s;
    return s ? 0 : -1;
  }
  /* B's gradient laid out like B's storage span, so the region is the same strided view of it */
  int64_t span = 1;
  for (int d = 0; d < bm->ndim; d++) {
    if (bm->shape[d] == 0) span = 0;
    if (span) span += (bm->shape[d] - 1) * bm->stride[d];
  }
  int64_t flat[1] = {span > 0 ? span : 1};
  sf_tensor *buf = sf_zeros(1, flat, g->dtype, sf_device_of(g));
  if (!buf) return -1;
  sf_tensor *gb = sf_tensor_from_storage(buf->storage, g->dtype, bm->ndim, bm->shape, bm->stride, buf->offset);
  sf_tensor *gv = gb ? sf_tensor_from_storage(buf->storage, g->dtype, vm->ndim, vm->shape, vm->stride,
                                              buf->offset + vm->offset - bm->offset)
                     : NULL;
  sf_release(buf);
  int rc = gv && !sf_raw_copy_(gb, g) ? 0 : -1;
  if (!rc && sf_node_needs(n, 1)) {
    sf_tensor *r = sf_raw_clone(gv); /* a copy: the region is zeroed below */
    sf_tensor *s = r ? sf_ag_sum_to(r, sm) : NULL;
    sf_release(r);
    if (s && s->dtype != sm->dtype) {
      sf_tensor *x = sf_raw_cast(s, sm->dtype);
      sf_release(s);
      s = x;
    }
    if (!(gi[1] = s)) rc = -1;
  }
  if (!rc && sf_node_needs(n, 0)) {
    if (sf_raw_fill_(gv, 0.0) || !(gi[0] = sf_raw_contiguous(gb))) rc = -1;
  }
  sf_release(gb), sf_release(gv);
  return rc;
}

int sf_ag_inplace_record(sf_tensor *dst, sf_tensor *src) {
  sf_tensor *b = dst->base ? dst->base : dst;
  if (sf__ckpt_refill) { /* recomputation: the flags the following ops look at, no graph */
    b->requires_grad = true;
    b->hist++;
    if (dst != b) dst->hist = b->hist, dst->requires_grad = true;
    return 0;
  }
  cs_ctx *c = calloc(1, sizeof *c);
  if (!c) return sf_error("out of host memory recording an in-place write");
  sf_meta_of(dst, &c->region);
  c->whole = dst == b;
  sf_tensor *in[2] = {b, src};
  sf_node *n = begin_outside_region("copy_slices", bw_copy_slices, in, 2);
  if (!n) { /* something requires grad (sf_ag_inplace_begin said so): out of memory */
    free(c);
    return -1;
  }
  n->ctx = c;
  n->free_ctx = free;
  if (sf_node_finish(n, &b, 1)) return -1;
  b->hist++;
  if (dst != b) regenerate_view(dst);
  return 0;
}
