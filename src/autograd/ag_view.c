/* ag_view.c — backward of every view (narrow, select, permute, expand, reshape-as-view, ...): scatter the
 * view's gradient into its base's geometry through a scratch buffer laid out like the base's storage. */
#include <string.h>

#include "autograd/ag_internal.h"
#include "core/error.h"

/* v's gradient g -> base's gradient. Dims where the view repeats an element (stride 0, expand) are summed
 * first; base dims with stride 0 are collapsed to size 1 and the gradient is put at index 0 of them,
 * which is exact for whatever later sums over those dims (the base's own expand backward). */
int sf__bw_view(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  const sf_tensor_meta *bm = &n->in[0], *vm = &n->out[0];
  sf_tensor *g = sf_retain(go[0]);
  /* fast path: same elements in the same order (view/reshape/unsqueeze/squeeze/alias of a contiguous base) */
  int64_t bnum = 1, vnum = 1;
  for (int d = 0; d < bm->ndim; d++) bnum *= bm->shape[d];
  for (int d = 0; d < vm->ndim; d++) vnum *= vm->shape[d];
  bool bcontig = true, vcontig = true;
  {
    int64_t s = 1;
    for (int d = bm->ndim - 1; d >= 0; d--) {
      if (bm->shape[d] != 1 && bm->stride[d] != s) bcontig = false;
      s *= bm->shape[d];
    }
    s = 1;
    for (int d = vm->ndim - 1; d >= 0; d--) {
      if (vm->shape[d] != 1 && vm->stride[d] != s) vcontig = false;
      s *= vm->shape[d];
    }
  }
  if (bnum == vnum && bcontig && vcontig && bm->offset == vm->offset) {
    gi[0] = sf_raw_reshape(g, bm->ndim, bm->shape);
    sf_release(g);
    return gi[0] ? 0 : -1;
  }
  /* 1. sum over repeated view dims */
  int64_t vshape[SF_MAX_DIMS];
  for (int d = 0; d < vm->ndim; d++) {
    vshape[d] = vm->shape[d];
    if (vm->stride[d] == 0 && vm->shape[d] > 1) {
      sf_tensor *s = sf_raw_reduce(SF_RED_SUM, g, d, true);
      sf_release(g);
      if (!(g = s)) return -1;
      vshape[d] = 1;
    }
  }
  /* 2. the base without its repeated dims, and the storage span it covers */
  int64_t bshape[SF_MAX_DIMS], span = 1;
  bool collapsed = false;
  for (int d = 0; d < bm->ndim; d++) {
    bshape[d] = bm->shape[d];
    if (bm->stride[d] == 0 && bm->shape[d] > 1) { bshape[d] = 1; collapsed = true; }
    if (bshape[d] == 0) span = 0;
    if (span) span += (bshape[d] - 1) * bm->stride[d];
  }
  int64_t vmin = vm->offset, vmax = vm->offset;
  for (int d = 0; d < vm->ndim; d++) vmax += (vshape[d] - 1) * vm->stride[d];
  if (span && (vmin < bm->offset || vmax >= bm->offset + span)) {
    sf_release(g);
    return sf_error("view backward: the view reaches outside its base (negative strides are not supported)");
  }
  int64_t flat[1] = {span > 0 ? span : 1};
  sf_tensor *buf = sf_zeros(1, flat, g->dtype, sf_device_of(g));
  if (!buf) { sf_release(g); return -1; }
  int rc = 0;
  sf_tensor *gv = sf_tensor_from_storage(buf->storage, g->dtype, vm->ndim, vshape, vm->stride, buf->offset + vm->offset - bm->offset);
  if (!gv || sf_raw_copy_(gv, g)) rc = -1;
  sf_release(gv);
  sf_release(g);
  sf_tensor *gb = rc ? NULL : sf_tensor_from_storage(buf->storage, buf->dtype, bm->ndim, bshape, bm->stride, buf->offset);
  sf_release(buf);
  if (!gb) return -1;
  sf_tensor *c = sf_raw_contiguous(gb);
  sf_release(gb);
  if (!c) return -1;
  if (!collapsed) { gi[0] = c; return 0; }
  sf_tensor *full = sf_zeros(bm->ndim, bm->shape, c->dtype, sf_device_of(c));
  sf_tensor *dst = full ? sf_alias(full) : NULL;
  for (int d = 0; dst && d < bm->ndim; d++)
    if (bshape[d] != bm->shape[d]) {
      sf_tensor *x = sf_narrow(dst, d, 0, 1);
      sf_release(dst);
      dst = x;
    }
  if (!dst || sf_raw_copy_(dst, c)) rc = -1;
  sf_release(dst);
  sf_release(c);
  if (rc) { sf_release(full); return -1; }
  gi[0] = full;
  return 0;
}

void sf_autograd_record_view(sf_tensor *v, sf_tensor *base) {
  if (!v || !sf_grad_enabled()) return;
  sf_ag_sync_view(base); /* a stale parent first takes its base's new history */
  if (!base->requires_grad) return;
  sf_node *n = sf_node_begin("view", sf__bw_view, &base, 1);
  if (n) sf_node_finish(n, &v, 1); /* no way to report OOM here: the view just stays outside the graph */
}
