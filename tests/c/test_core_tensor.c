/* test_core_tensor.c — tensor core: views share storage with the right geometry, promotion,
 * broadcasting errors, cat/stack, matmul shape rules, device moves, refcounting, the ownership scope. */
#include <stdlib.h>

#include "core/backend.h"
#include "core/scope.h"
#include "ops/ops.h"
#include "core/tensor.h"
#include "sf_test.h"

static sf_tensor *arange_f32(int64_t n) { return sf_arange(0, (double)n, 1, SF_F32, sf_cpu()); }
static float at(sf_tensor *t, int64_t i) { return ((float *)sf_data_ptr(t))[i]; }

/* element at multi-index of a strided view, read through its strides */
static double get(sf_tensor *t, const int64_t *idx) {
  sf_tensor *c = sf_cast(t, SF_F64);
  int64_t off = c->offset;
  for (int i = 0; i < c->ndim; i++) off += idx[i] * c->stride[i];
  double v = ((double *)c->storage->data)[off];
  sf_release(c);
  return v;
}

static void test_views_share_storage(void) {
  sf_tensor *a = arange_f32(24);
  int64_t s[3] = {2, 3, 4};
  sf_tensor *v = sf_view(a, 3, s);
  CHECK(v && v->storage == a->storage && v->stride[0] == 12 && v->stride[2] == 1);
  int perm[3] = {2, 0, 1};
  sf_tensor *p = sf_permute(v, perm);
  CHECK(p && p->shape[0] == 4 && p->shape[1] == 2 && p->stride[0] == 1 && !sf_is_contiguous(p));
  int64_t i1[3] = {3, 1, 2}; /* p[3][1][2] = v[1][2][3] = 12+8+3 */
  CHECK_NEAR(get(p, i1), 23, 0);
  sf_tensor *n = sf_narrow(v, 1, 1, 2);
  CHECK(n && n->offset == 4 && n->shape[1] == 2);
  sf_tensor *sel = sf_select(v, 2, -1);
  CHECK(sel && sel->ndim == 2 && sel->offset == 3);
  int64_t i2[2] = {1, 2};
  CHECK_NEAR(get(sel, i2), 23, 0);
  /* writes through a view are visible in the base */
  CHECK(sf_fill_(n, -1) == 0);
  CHECK(at(a, 4) == -1 && at(a, 11) == -1 && at(a, 12) == 12 && at(a, 16) == -1);
  sf_tensor *u = sf_unsqueeze(v, -1);
  CHECK(u && u->ndim == 4 && u->shape[3] == 1);
  sf_tensor *sq = sf_squeeze(u, SF_ALL_DIMS);
  CHECK(sq && sq->ndim == 3);
  /* view of a non-contiguous tensor that can't be expressed fails with a clear error; reshape copies */
  int64_t flat = 24;
  CHECK(sf_view(p, 1, &flat) == NULL);
  CHECK_ERROR_MENTIONS("reshape");
  sf_tensor *r = sf_reshape(p, 1, &flat);
  CHECK(r && r->storage != a->storage && sf_is_contiguous(r));
  int64_t bad[2] = {5, -1};
  CHECK(sf_view(a, 2, bad) == NULL);
  CHECK_ERROR_MENTIONS("[5, -1]");
  sf_release(a); sf_release(v); sf_release(p); sf_release(n); sf_release(sel); sf_release(u); sf_release(sq); sf_release(r);
}

static void test_expand_and_broadcast(void) {
  int64_t s31[2] = {3, 1}, s4[1] = {4};
  sf_tensor *a = sf_full(2, s31, 2, SF_F32, sf_cpu());
  sf_tensor *b = arange_f32(4);
  sf_tensor *c = sf_add(a, b);
  CHECK(c && c->ndim == 2 && c->shape[0] == 3 && c->shape[1] == 4);
  if (c) CHECK(at(c, 5) == 3);
  int64_t s5[1] = {5};
  sf_tensor *d = arange_f32(5);
  sf_tensor *dv = sf_view(d, 1, s5), *ad = sf_add(a, dv); /* [3,1] + [5] is fine */
  CHECK(ad && ad->shape[1] == 5);
  sf_release(dv); sf_release(ad);
  int64_t s23[2] = {2, 3};
  sf_tensor *e = sf_zeros(2, s23, SF_F32, sf_cpu());
  CHECK(sf_add(e, b) == NULL);
  CHECK_ERROR_MENTIONS("[2, 3] and [4]");
  int64_t ex[3] = {2, 3, 4};
  sf_tensor *x = sf_expand(b, 3, ex);
  CHECK(x && x->stride[0] == 0 && x->stride[1] == 0 && x->stride[2] == 1);
  CHECK(sf_expand(e, 1, s4) == NULL);
  (void)s4;
  sf_release(a); sf_release(b); sf_release(c); sf_release(d); sf_release(e); sf_release(x);
}

static void test_promotion(void) {
  CHECK(sf_promote(SF_BF16, SF_F16) == SF_F32);
  CHECK(sf_promote(SF_BF16, SF_I64) == SF_BF16);
  CHECK(sf_promote(SF_U8, SF_I32) == SF_I32);
  CHECK(sf_promote(SF_BOOL, SF_U8) == SF_U8);
  int64_t s[1] = {3};
  sf_tensor *i = sf_arange(1, 4, 1, SF_I64, sf_cpu());
  sf_tensor *h = sf_div(i, i); /* true division of integers gives f32 */
  CHECK(h && h->dtype == SF_F32);
  sf_tensor *e = sf_unary(SF_UN_EXP, i, 0, 0);
  CHECK(e && e->dtype == SF_F32);
  sf_tensor *cmp = sf_binary_scalar(SF_BIN_GT, i, 1.5, false);
  CHECK(cmp && cmp->dtype == SF_BOOL);
  sf_tensor *sum = sf_reduce(SF_RED_SUM, cmp, SF_ALL_DIMS, false);
  CHECK(sum && sum->dtype == SF_I64 && sf_item(sum) == 2);
  sf_tensor *bf = sf_full(1, s, 1.5, SF_BF16, sf_cpu());
  sf_tensor *m = sf_mul(bf, i);
  sf_tensor *m2 = m ? sf_select(m, 0, 2) : NULL;
  CHECK(m && m->dtype == SF_BF16 && m2 && sf_item(m2) == 4.5);
  sf_release(m2);
  sf_release(i); sf_release(h); sf_release(e); sf_release(cmp); sf_release(sum); sf_release(bf); sf_release(m);
}

static void test_cat_stack(void) {
  int64_t s23[2] = {2, 3}, s21[2] = {2, 1};
  sf_tensor *a = sf_full(2, s23, 1, SF_F32, sf_cpu()), *b = sf_full(2, s21, 2, SF_F32, sf_cpu());
  sf_tensor *ts[2] = {a, b};
  sf_tensor *c = sf_cat(ts, 2, 1);
  CHECK(c && c->shape[1] == 4 && at(c, 3) == 2 && at(c, 4) == 1);
  CHECK(sf_cat(ts, 2, 0) == NULL);
  CHECK_ERROR_MENTIONS("tensor 2 has shape [2, 1]");
  CHECK(sf_stack(ts, 2, 0) == NULL);
  sf_tensor *ss[2] = {a, a};
  sf_tensor *st = sf_stack(ss, 2, -1);
  CHECK(st && st->ndim == 3 && st->shape[2] == 2);
  sf_release(a); sf_release(b); sf_release(c); sf_release(st);
}

static void test_matmul_shapes(void) {
  int64_t sa[3] = {2, 3, 4}, sb[2] = {4, 5};
  sf_tensor *a = sf_randn(3, sa, SF_F32, sf_cpu()), *b = sf_randn(2, sb, SF_F32, sf_cpu());
  sf_tensor *c = sf_matmul(a, b);
  CHECK(c && c->ndim == 3 && c->shape[0] == 2 && c->shape[1] == 3 && c->shape[2] == 5);
  /* check one entry by hand */
  if (c) {
    double ref = 0;
    float *pa = sf_data_ptr(a), *pb = sf_data_ptr(b);
    for (int k = 0; k < 4; k++) ref += (double)pa[12 + 1 * 4 + k] * pb[k * 5 + 2];
    CHECK_NEAR(at(c, 15 + 5 + 2), ref, 1e-5);
  }
  sf_tensor *bad = sf_matmul(b, a);
  CHECK(bad == NULL);
  CHECK_ERROR_MENTIONS("inner sizes");
  sf_tensor *a0 = sf_select(a, 0, 0), *v = sf_select(a0, 0, 0); /* [4] */
  sf_release(a0);
  sf_tensor *mv = sf_matmul(v, b);                     /* [5] */
  CHECK(mv && mv->ndim == 1 && mv->shape[0] == 5);
  int64_t sw[2] = {5, 4}, sbias[1] = {5};
  sf_tensor *w = sf_randn(2, sw, SF_F32, sf_cpu()), *bias = sf_full(1, sbias, 1, SF_F32, sf_cpu());
  sf_tensor *y = sf_linear(a, w, bias);
  CHECK(y && y->shape[2] == 5);
  sf_release(a); sf_release(b); sf_release(c); sf_release(v); sf_release(mv); sf_release(w); sf_release(bias); sf_release(y);
}

static void test_reductions_and_errors(void) {
  int64_t s[2] = {2, 3};
  sf_tensor *a = sf_arange(0, 6, 1, SF_F32, sf_cpu());
  sf_tensor *m = sf_view(a, 2, s);
  sf_tensor *r = sf_reduce(SF_RED_SUM, m, 1, false);
  CHECK(r && r->ndim == 1 && at(r, 0) == 3 && at(r, 1) == 12);
  sf_tensor *k = sf_reduce(SF_RED_MAX, m, 0, true);
  CHECK(k && k->ndim == 2 && k->shape[0] == 1 && at(k, 2) == 5);
  sf_tensor *am = sf_reduce(SF_RED_ARGMAX, m, -1, false);
  CHECK(am && am->dtype == SF_I64 && ((int64_t *)sf_data_ptr(am))[1] == 2);
  CHECK(sf_reduce(SF_RED_SUM, m, 2, false) == NULL);
  CHECK_ERROR_MENTIONS("out of range");
  CHECK(isnan(sf_item(m)));
  CHECK_ERROR_MENTIONS("6 elements");
  sf_dtype dt;
  CHECK(sf_dtype_from_name("float99", &dt) != 0);
  CHECK_ERROR_MENTIONS("bf16");
  sf_device dev;
  CHECK(sf_device_parse("gpu:0", &dev) != 0);
  CHECK_ERROR_MENTIONS("emu:N");
  sf_release(a); sf_release(m); sf_release(r); sf_release(k); sf_release(am);
}

static void test_random_reproducible(void) {
  int64_t s[1] = {1000};
  sf_manual_seed(7);
  sf_tensor *a = sf_randn(1, s, SF_F32, sf_cpu());
  sf_manual_seed(7);
  sf_tensor *b = sf_randn(1, s, SF_F32, sf_cpu());
  sf_tensor *c = sf_randn(1, s, SF_F32, sf_cpu());
  CHECK(sf_max_abs_diff(a, b) == 0);
  CHECK(sf_max_abs_diff(a, c) > 0);
  sf_tensor *mean = sf_reduce(SF_RED_MEAN, a, SF_ALL_DIMS, false);
  CHECK(fabs(sf_item(mean)) < 0.15);
  sf_release(a); sf_release(b); sf_release(c); sf_release(mean);
}

static void test_refcount(void) {
  sf_tensor *a = arange_f32(10);
  sf_tensor *v = sf_narrow(a, 0, 2, 3);
  sf_storage *s = a->storage;
  CHECK(s->refcount == 2);
  CHECK(v->base == a && a->refcount == 2); /* a view holds its base (PyTorch's _base) */
  sf_release(a);
  CHECK(s->refcount == 2 && at(v, 0) == 2); /* ... so the base and the storage stay alive */
  sf_tensor *w = sf_select(v, 0, 1);
  CHECK(w->base == a); /* the base of a view of a view is the root */
  sf_release(v);
  CHECK(s->refcount == 2 && at(w, 0) == 3);
  sf_release(w);
}

/* sf_scope: owned intermediates released at the end, the kept one returned, SF_DROP early, the chain
 * skipped after the first failure with that failure's error, more intermediates than the inline slots */
static void test_scope(void) {
  sf_tensor *a = arange_f32(4);
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *b = SF_OWN(S, sf_add(a, a)), *c = SF_OWN(S, sf_add(b, a));
  CHECK(a->refcount == 1 && b->refcount == 1);
  sf_tensor *v = SF_OWN(S, sf_narrow(b, 0, 1, 2));
  SF_DROP(S, v);
  CHECK(v == NULL && b->storage->refcount == 1); /* the view's hold on b's storage went early */
  for (int i = 0; i < 3 * SF_SCOPE_INLINE; i++) c = SF_OWN(S, sf_add(c, a)); /* past the inline slots */
  sf_tensor *r = sf_scope_end_keep(&S, c);
  CHECK(r && r->refcount == 1 && at(r, 1) == 2 + 1 + 3 * SF_SCOPE_INLINE);
  sf_release(r);
  /* a failing step: the later steps are skipped, the result is NULL and the error is the first one */
  sf_tensor *m = sf_zeros(1, (int64_t[]){3}, SF_F32, sf_cpu());
  int ran = 0;
  b = SF_OWN(S, sf_add(a, a));
  c = SF_OWN(S, sf_add(a, m)); /* [4] + [3]: broadcast error */
  char first[256];
  snprintf(first, sizeof first, "%s", sf_last_error());
  SF_CHECK(S, (ran = 1));
  sf_tensor *d = SF_OWN(S, sf_add(b, a));
  CHECK(c == NULL && d == NULL && ran == 0 && !strcmp(first, sf_last_error()));
  CHECK(sf_scope_end_keep(&S, b) == NULL && a->refcount == 1);
  CHECK(sf_scope_close(&S) == 0);
  SF_CHECK(S, -1);
  CHECK(sf_scope_close(&S) == -1);
  sf_release(m), sf_release(a);
}

int main(void) {
  sf_backends_init();
  RUN(test_views_share_storage);
  RUN(test_expand_and_broadcast);
  RUN(test_promotion);
  RUN(test_cat_stack);
  RUN(test_matmul_shapes);
  RUN(test_reductions_and_errors);
  RUN(test_random_reproducible);
  RUN(test_refcount);
  RUN(test_scope);
  TEST_DONE();
}
