/* test_autograd_engine.c — the tape's behaviour: accumulation, retain_graph, freed-graph errors, grad mode,
 * detach, leaf rules, in-place rules, dtype of leaf grads, long chains, checkpoint regions. */
#include <stdlib.h>

#include "autograd/autograd.h"
#include "core/backend.h"
#include "ops/ops.h"
#include "sf_test.h"

static sf_tensor *leaf(int ndim, const int64_t *shape, sf_dtype dt) {
  sf_tensor *t = sf_randn(ndim, shape, dt, sf_cpu());
  sf_requires_grad_(t, true);
  return t;
}

static double sum_all(sf_tensor *t) {
  sf_tensor *s = sf_reduce(SF_RED_SUM, t, SF_ALL_DIMS, false);
  double v = sf_item(s);
  sf_release(s);
  return v;
}

static void test_accumulate_and_retain(void) {
  int64_t sh[1] = {5};
  sf_tensor *x = leaf(1, sh, SF_F32);
  sf_tensor *y = sf_mul(x, x);
  sf_tensor *l = sf_reduce(SF_RED_SUM, y, SF_ALL_DIMS, false);
  CHECK(l->requires_grad && l->grad_fn);
  CHECK(sf_backward(l, NULL, true) == 0);
  sf_tensor *g1 = sf_clone(x->grad);
  CHECK(sf_backward(l, NULL, false) == 0); /* retained: runs again and accumulates */
  sf_tensor *twice = sf_binary_scalar(SF_BIN_MUL, g1, 2.0, false);
  CHECK(sf_max_abs_diff(x->grad, twice) < 1e-6);
  sf_tensor *ex = sf_binary_scalar(SF_BIN_MUL, x, 2.0, false);
  CHECK(sf_max_abs_diff(g1, ex) < 1e-6);
  CHECK(sf_backward(l, NULL, false) == -1); /* freed now */
  CHECK_ERROR_MENTIONS("second time");
  CHECK_ERROR_MENTIONS("retain_graph");
  sf_release(g1); sf_release(twice); sf_release(ex); sf_release(y); sf_release(l); sf_release(x);
}

static void test_errors(void) {
  int64_t sh[2] = {2, 3};
  sf_tensor *x = leaf(2, sh, SF_F32);
  sf_tensor *c = sf_zeros(2, sh, SF_F32, sf_cpu());
  CHECK(sf_backward(c, NULL, false) == -1); /* does not require grad */
  CHECK_ERROR_MENTIONS("does not require grad");
  sf_tensor *y = sf_mul(x, x);
  CHECK(sf_backward(y, NULL, false) == -1); /* non-scalar without a gradient */
  CHECK_ERROR_MENTIONS("one-element");
  int64_t bad[1] = {6};
  sf_tensor *gb = sf_zeros(1, bad, SF_F32, sf_cpu());
  CHECK(sf_backward(y, gb, false) == -1);
  CHECK_ERROR_MENTIONS("shape");
  sf_tensor *i = sf_zeros(2, sh, SF_I64, sf_cpu());
  CHECK(sf_requires_grad_(i, true) == -1);
  CHECK_ERROR_MENTIONS("floating-point");
  CHECK(sf_requires_grad_(y, false) == -1);
  CHECK_ERROR_MENTIONS("non-leaf");
  /* in-place on a leaf that requires grad: error under grad mode, allowed under no_grad (optimizers) */
  CHECK(sf_binary_scalar_(SF_BIN_MUL, x, 2.0) == -1);
  CHECK_ERROR_MENTIONS("leaf");
  CHECK(sf_fill_(y, 1.0) == 0); /* a non-leaf: recorded, as PyTorch (the old history gets no gradient) */
  bool prev = sf_set_grad_enabled(false);
  CHECK(sf_binary_scalar_(SF_BIN_MUL, x, 2.0) == 0);
  sf_set_grad_enabled(prev);
  sf_release(x); sf_release(c); sf_release(y); sf_release(gb); sf_release(i);
}

static void test_grad_mode_and_detach(void) {
  int64_t sh[1] = {4};
  sf_tensor *x = leaf(1, sh, SF_F32);
  bool prev = sf_set_grad_enabled(false);
  CHECK(prev == true);
  sf_tensor *y = sf_mul(x, x);
  CHECK(!y->requires_grad && !y->grad_fn);
  sf_tensor *v = sf_narrow(x, 0, 1, 2);
  CHECK(!v->grad_fn);
  sf_set_grad_enabled(true);
  sf_tensor *d = sf_detach(x);
  CHECK(!d->requires_grad && !d->grad_fn && d->storage == x->storage);
  sf_tensor *z = sf_mul(d, x); /* gradient flows only through the second operand */
  sf_tensor *l = sf_reduce(SF_RED_SUM, z, SF_ALL_DIMS, false);
  CHECK(sf_backward(l, NULL, false) == 0);
  CHECK(sf_max_abs_diff(x->grad, x) < 1e-7);
  /* comparisons and argmax do not take part */
  sf_tensor *cmp = sf_binary_scalar(SF_BIN_GT, x, 0.0, false);
  CHECK(!cmp->requires_grad);
  sf_tensor *am = sf_reduce(SF_RED_ARGMAX, x, 0, false);
  CHECK(!am->requires_grad);
  sf_release(x); sf_release(y); sf_release(v); sf_release(d); sf_release(z); sf_release(l); sf_release(cmp); sf_release(am);
}

static void test_half_leaf_grad_is_f32(void) {
  int64_t sh[2] = {3, 4};
  sf_tensor *w = leaf(2, sh, SF_BF16);
  sf_tensor *wf = sf_cast(w, SF_F32);
  sf_tensor *y = sf_binary_scalar(SF_BIN_MUL, wf, 1.0 / 3.0, false);
  sf_tensor *l = sf_reduce(SF_RED_SUM, y, SF_ALL_DIMS, false);
  CHECK(sf_backward(l, NULL, false) == 0);
  CHECK(w->grad && w->grad->dtype == SF_F32);
  /* the f32 gradient 1/3 survives unrounded (bf16 would give 0.333984375) */
  if (w->grad) CHECK_NEAR(sum_all(w->grad), 12.0 / 3.0, 1e-5);
  sf_release(w); sf_release(wf); sf_release(y); sf_release(l);
}

static void test_long_chain(void) {
  int64_t sh[1] = {3};
  sf_tensor *x = leaf(1, sh, SF_F32);
  sf_tensor *y = sf_retain(x);
  for (int i = 0; i < 20000; i++) { /* freeing and walking must not recurse per node */
    sf_tensor *z = sf_binary_scalar(SF_BIN_ADD, y, 1e-4, false);
    sf_release(y);
    y = z;
  }
  sf_tensor *l = sf_reduce(SF_RED_SUM, y, SF_ALL_DIMS, false);
  CHECK(sf_backward(l, NULL, false) == 0);
  CHECK_NEAR(sum_all(x->grad), 3.0, 1e-6);
  sf_release(l);
  sf_release(y);
  sf_release(x);
}

static void test_multiple_paths_and_upstream(void) {
  int64_t sh[2] = {2, 3};
  sf_tensor *x = leaf(2, sh, SF_F32);
  sf_tensor *a = sf_narrow(x, 1, 0, 2), *b = sf_narrow(x, 1, 1, 2);
  sf_tensor *s = sf_add(a, b); /* column 1 of x reached twice */
  sf_tensor *g = sf_full(2, (int64_t[]){2, 2}, 1.0, SF_F32, sf_cpu());
  CHECK(sf_backward(s, g, false) == 0);
  float *pg = sf_data_ptr(x->grad);
  CHECK(pg[0] == 1 && pg[1] == 2 && pg[2] == 1 && pg[3] == 1 && pg[4] == 2 && pg[5] == 1);
  sf_release(x); sf_release(a); sf_release(b); sf_release(s); sf_release(g);
}

/* ---- checkpoint ---- */
typedef struct { sf_tensor *x, *w, *out; int runs; } blk;

static sf_tensor *block_forward(sf_tensor *x, sf_tensor *w) { /* tanh(x w) * x w */
  sf_tensor *h = sf_matmul(x, w);
  sf_tensor *t = h ? sf_unary(SF_UN_TANH, h, 0, 0) : NULL;
  sf_tensor *r = t ? sf_mul(t, h) : NULL;
  sf_release(h); sf_release(t);
  return r;
}

static int block_recompute(void *ctx) {
  blk *b = ctx;
  b->runs++;
  sf_tensor *r = block_forward(b->x, b->w);
  int rc = r ? 0 : -1;
  sf_release(r);
  return rc;
}

static void test_checkpoint(void) {
  int64_t sx[2] = {4, 5}, sw[2] = {5, 5};
  sf_manual_seed(7);
  sf_tensor *x0 = leaf(2, sx, SF_F32), *w = leaf(2, sw, SF_F32);
  /* reference */
  sf_tensor *x = sf_mul(x0, x0);
  sf_tensor *y = block_forward(x, w);
  sf_tensor *y2 = block_forward(y, w);
  sf_tensor *l = sf_reduce(SF_RED_SUM, y2, SF_ALL_DIMS, false);
  CHECK(sf_backward(l, NULL, false) == 0);
  sf_tensor *gx_ref = sf_clone(x0->grad), *gw_ref = sf_clone(w->grad);
  sf_set_grad(x0, NULL);
  sf_set_grad(w, NULL);
  sf_release(x); sf_release(y); sf_release(y2); sf_release(l);
  /* checkpointed: both blocks recompute in backward */
  x = sf_mul(x0, x0);
  blk *b1 = calloc(1, sizeof *b1), *b2 = calloc(1, sizeof *b2);
  b1->x = x; b1->w = w;
  sf_ckpt_region *r1 = sf_checkpoint_begin(block_recompute, b1, free);
  y = block_forward(x, w);
  sf_checkpoint_end(r1);
  CHECK(y->grad_fn && y->grad_fn->dropped && y->grad_fn->saved[0] == NULL);
  b2->x = y; b2->w = w;
  sf_ckpt_region *r2 = sf_checkpoint_begin(block_recompute, b2, free);
  y2 = block_forward(y, w);
  sf_checkpoint_end(r2);
  l = sf_reduce(SF_RED_SUM, y2, SF_ALL_DIMS, false);
  CHECK(sf_backward(l, NULL, false) == 0);
  CHECK(b1->runs == 1 && b2->runs == 1);
  CHECK(x0->grad && sf_max_abs_diff(x0->grad, gx_ref) < 1e-5);
  CHECK(w->grad && sf_max_abs_diff(w->grad, gw_ref) < 1e-5);
  sf_release(x); sf_release(y); sf_release(y2); sf_release(l); /* frees the regions and their contexts */
  sf_release(x0); sf_release(w); sf_release(gx_ref); sf_release(gw_ref);
}

int main(void) {
  sf_backends_init();
  RUN(test_accumulate_and_retain);
  RUN(test_errors);
  RUN(test_grad_mode_and_detach);
  RUN(test_half_leaf_grad_is_f32);
  RUN(test_long_chain);
  RUN(test_multiple_paths_and_upstream);
  RUN(test_checkpoint);
  TEST_DONE();
}
