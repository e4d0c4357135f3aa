/* ops.c — the public differentiable operations (ops.h): each runs the core's dispatch (core/dispatch.c)
 * with recording off, then records one autograd node (src/autograd/ag_ops.c) when an input requires grad.
 * In-place ops first ask autograd whether the write is allowed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "core/error.h"
#include "ops/ops.h"

/* ---------------- autograd: the public differentiable ops ----------------
 * Each runs its implementation with grad mode off (internal casts/views/copies of the inputs must not
 * record) and then records one node (src/autograd/ag_ops.c) when an input requires grad. */

#define SF_AG_RUN(impl_call) sf_ag_resume(sf__g, (impl_call))
#define SF_AG_OFF bool sf__g = sf_set_grad_enabled(false)
#define SHAPE(t, buf) sf_shape_str((t), (buf), sizeof(buf))

sf_tensor *sf_to_device(sf_tensor *t, sf_device dev) { SF_AG_OFF; return sf_ag_cast(SF_AG_RUN(sf_raw_to_device(t, dev)), t); }
sf_tensor *sf_cast(sf_tensor *t, sf_dtype dt) { SF_AG_OFF; return sf_ag_cast(SF_AG_RUN(sf_raw_cast(t, dt)), t); }
sf_tensor *sf_clone(sf_tensor *t) { SF_AG_OFF; return sf_ag_identity(SF_AG_RUN(sf_raw_clone(t)), t); }
sf_tensor *sf_cat(sf_tensor **ts, int n, int dim) { SF_AG_OFF; return sf_ag_cat(SF_AG_RUN(sf_raw_cat(ts, n, dim)), ts, n, dim); }
sf_tensor *sf_unary(sf_unary_op op, sf_tensor *a, double p0, double p1) {
  SF_AG_OFF; return sf_ag_unary(SF_AG_RUN(sf_raw_unary(op, a, p0, p1)), op, a, p0, p1);
}
sf_tensor *sf_binary(sf_binary_op op, sf_tensor *a, sf_tensor *b) {
  SF_AG_OFF; return sf_ag_binary(SF_AG_RUN(sf_raw_binary(op, a, b)), op, a, b);
}
sf_tensor *sf_binary_scalar(sf_binary_op op, sf_tensor *a, double s, bool scalar_first) {
  SF_AG_OFF; return sf_ag_binary_scalar(SF_AG_RUN(sf_raw_binary_scalar(op, a, s, scalar_first)), op, a, s, scalar_first);
}
sf_tensor *sf_where(sf_tensor *cond, sf_tensor *a, sf_tensor *b) {
  SF_AG_OFF; return sf_ag_where(SF_AG_RUN(sf_raw_where(cond, a, b)), cond, a, b);
}
sf_tensor *sf_reduce(sf_reduce_op op, sf_tensor *a, int dim, bool keepdim) {
  SF_AG_OFF; return sf_ag_reduce(SF_AG_RUN(sf_raw_reduce(op, a, dim, keepdim)), op, a, dim, keepdim);
}
sf_tensor *sf_softmax(sf_tensor *a, int dim) { SF_AG_OFF; return sf_ag_softmax(SF_AG_RUN(sf_raw_softmax(a, dim, false)), a, dim, false); }
sf_tensor *sf_log_softmax(sf_tensor *a, int dim) { SF_AG_OFF; return sf_ag_softmax(SF_AG_RUN(sf_raw_softmax(a, dim, true)), a, dim, true); }
sf_tensor *sf_matmul(sf_tensor *a, sf_tensor *b) { SF_AG_OFF; return sf_ag_matmul(SF_AG_RUN(sf_raw_matmul(a, b)), a, b); }
sf_tensor *sf_linear(sf_tensor *x, sf_tensor *w, sf_tensor *b) { SF_AG_OFF; return sf_ag_linear(SF_AG_RUN(sf_raw_linear(x, w, b)), x, w, b); }

/* in place: autograd first checks the write is allowed (a leaf that requires grad, an expanded tensor) and
 * says whether to record it; a recorded write gives dst's base a new history (src/autograd/ag_inplace.c) */
int sf_copy_(sf_tensor *dst, sf_tensor *src) {
  int rec = sf_ag_inplace_begin(dst, src, "copy_");
  if (rec < 0 || sf_raw_copy_(dst, src)) return -1;
  return rec ? sf_ag_inplace_record(dst, src) : 0;
}
int sf_fill_(sf_tensor *t, double v) {
  int rec = sf_ag_inplace_begin(t, NULL, "fill_");
  if (rec < 0 || sf_raw_fill_(t, v)) return -1;
  return rec ? sf_ag_inplace_record(t, NULL) : 0;
}
/* a recorded a op= b is the out-of-place op on a's old values (a copy of them where the op saves its
 * input: mul, div, ...), written back by a recorded copy: the gradient PyTorch's in-place op has */
static int record_written(sf_tensor *a, sf_tensor *r) {
  int rc = r ? sf_raw_copy_(a, r) : -1;
  if (!rc) rc = sf_ag_inplace_record(a, r);
  sf_release(r);
  return rc;
}
int sf_binary_(sf_binary_op op, sf_tensor *a, sf_tensor *b) {
  int rec = sf_ag_inplace_begin(a, b, sf_binary_op_name(op));
  if (rec <= 0) return rec < 0 ? -1 : sf_raw_binary_(op, a, b);
  sf_tensor *old = op == SF_BIN_ADD || op == SF_BIN_SUB ? sf_retain(a) : sf_clone(a);
  sf_tensor *r = old ? sf_binary(op, old, b) : NULL;
  sf_release(old);
  return record_written(a, r);
}
int sf_binary_scalar_(sf_binary_op op, sf_tensor *a, double s) {
  int rec = sf_ag_inplace_begin(a, NULL, sf_binary_op_name(op));
  if (rec <= 0) return rec < 0 ? -1 : sf_raw_binary_scalar_(op, a, s);
  sf_tensor *old = op == SF_BIN_ADD || op == SF_BIN_SUB || op == SF_BIN_MUL ? sf_retain(a) : sf_clone(a);
  sf_tensor *r = old ? sf_binary_scalar(op, old, s, false) : NULL;
  sf_release(old);
  return record_written(a, r);
}

sf_tensor *sf_contiguous(sf_tensor *t) {
  if (sf_is_contiguous(t)) return sf_retain(t);
  return sf_clone(t);
}

sf_tensor *sf_reshape(sf_tensor *t, int ndim, const int64_t *shape) { return sf_reshape_via(t, ndim, shape, sf_contiguous); }

/* stack = cat of unsqueezed views, so its gradient is cat's and the views' */
sf_tensor *sf_stack(sf_tensor **ts, int n, int dim) {
  char b0[128], bi[128];
  if (n <= 0) { sf_error("stack: needs at least one tensor"); return NULL; }
  for (int i = 1; i < n; i++)
    if (!sf_same_shape(ts[0], ts[i])) {
      sf_error("stack: tensor %d has shape %s but tensor 1 has %s", i + 1, SHAPE(ts[i], bi), SHAPE(ts[0], b0));
      return NULL;
    }
  int d = sf_wrap_dim(dim, ts[0]->ndim + 1);
  if (d < 0) return NULL;
  sf_tensor **us = calloc(n, sizeof *us);
  if (!us) { sf_error("stack: out of memory"); return NULL; }
  sf_tensor *out = NULL;
  int i;
  for (i = 0; i < n; i++)
    if (!(us[i] = sf_unsqueeze(ts[i], d))) break;
  if (i == n) out = sf_cat(us, n, d);
  for (int j = 0; j < n; j++) sf_release(us[j]);
  free(us);
  return out;
}

/* ---------------- comparison helpers ---------------- */

double sf_max_abs_diff(sf_tensor *a, sf_tensor *b) {
  sf_tensor *fa = sf_cast(a, SF_F64), *fb = fa ? sf_cast(b, SF_F64) : NULL;
  sf_tensor *d = fb ? sf_binary(SF_BIN_SUB, fa, fb) : NULL;
  sf_tensor *ad = d ? sf_unary(SF_UN_ABS, d, 0, 0) : NULL;
  sf_tensor *m = ad ? sf_reduce(SF_RED_MAX, ad, SF_ALL_DIMS, false) : NULL;
  double r = m ? sf_item(m) : -1;
  if (ad && sf_numel(ad) == 0) r = 0;
  sf_release(fa); sf_release(fb); sf_release(d); sf_release(ad); sf_release(m);
  return r;
}

int sf_allclose(sf_tensor *a, sf_tensor *b, double rtol, double atol, bool *out) {
  /* |a - b| <= atol + rtol * |b|, elementwise, as torch.allclose (NaN never close) */
  sf_tensor *fa = sf_cast(a, SF_F64), *fb = fa ? sf_cast(b, SF_F64) : NULL;
  sf_tensor *d = fb ? sf_binary(SF_BIN_SUB, fa, fb) : NULL;
  sf_tensor *ad = d ? sf_unary(SF_UN_ABS, d, 0, 0) : NULL;
  sf_tensor *ab = ad ? sf_unary(SF_UN_ABS, fb, 0, 0) : NULL;
  sf_tensor *tol = ab ? sf_binary_scalar(SF_BIN_MUL, ab, rtol, false) : NULL;
  int rc = -1;
  if (tol && !sf_binary_scalar_(SF_BIN_ADD, tol, atol)) {
    sf_tensor *ok = sf_binary(SF_BIN_LE, ad, tol);
    sf_tensor *bad = ok ? sf_unary(SF_UN_LOGICAL_NOT, ok, 0, 0) : NULL;
    sf_tensor *cnt = bad ? sf_reduce(SF_RED_SUM, bad, SF_ALL_DIMS, false) : NULL;
    if (cnt) { *out = sf_item(cnt) == 0; rc = 0; }
    sf_release(ok); sf_release(bad); sf_release(cnt);
  }
  sf_release(fa); sf_release(fb); sf_release(d); sf_release(ad); sf_release(ab); sf_release(tol);
  return rc;
}
