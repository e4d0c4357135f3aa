/* test_autograd_gradcheck.c — table-driven finite-difference checks (f64, CPU) of every core op's backward. */
#include "backend/backend.h"
#include "backend/conv_ops.h"
#include "gradcheck.h"
#include "sf_test.h"

#define I0 in[0]
#define I1 in[1]
#define I2 in[2]

static sf_tensor *f_unary(sf_tensor **in, const gc_case *c) { return sf_unary((sf_unary_op)c->ip[0], I0, c->p[0], c->p[1]); }
static sf_tensor *f_binary(sf_tensor **in, const gc_case *c) { return sf_binary((sf_binary_op)c->ip[0], I0, I1); }
static sf_tensor *f_scalar(sf_tensor **in, const gc_case *c) {
  return sf_binary_scalar((sf_binary_op)c->ip[0], I0, c->p[0], c->ip[1] != 0);
}
static sf_tensor *f_where(sf_tensor **in, const gc_case *c) {
  sf_tensor *m = sf_binary_scalar(SF_BIN_GT, I2, 0.0, false);
  sf_tensor *r = sf_where(m, I0, I1);
  sf_release(m);
  return r;
}
static sf_tensor *f_reduce(sf_tensor **in, const gc_case *c) {
  return sf_reduce((sf_reduce_op)c->ip[0], I0, c->ip[1] == 99 ? SF_ALL_DIMS : c->ip[1], c->ip[2] != 0);
}
static sf_tensor *f_softmax(sf_tensor **in, const gc_case *c) { return c->ip[1] ? sf_log_softmax(I0, c->ip[0]) : sf_softmax(I0, c->ip[0]); }
static sf_tensor *f_matmul(sf_tensor **in, const gc_case *c) { return sf_matmul(I0, I1); }
/* ip: {nd, stride (every dim), spatial padding, temporal padding} */
static sf_tensor *f_conv(sf_tensor **in, const gc_case *c) {
  int st[3] = {c->ip[1], c->ip[1], c->ip[1]};
  int p3[3] = {c->ip[3], c->ip[2], c->ip[2]}, p2[2] = {c->ip[2], c->ip[2]};
  sf_tensor *b = c->n_in > 2 ? I2 : NULL;
  return c->ip[0] == 3 ? sf_conv3d(I0, I1, b, st, p3) : sf_conv2d(I0, I1, b, st, p2);
}
static sf_tensor *f_linear(sf_tensor **in, const gc_case *c) { return sf_linear(I0, I1, c->n_in > 2 ? I2 : NULL); }
static sf_tensor *f_clone_t(sf_tensor **in, const gc_case *c) {
  sf_tensor *t = sf_transpose(I0, 0, 1);
  sf_tensor *r = sf_contiguous(t);
  sf_release(t);
  return r;
}
static sf_tensor *f_cast(sf_tensor **in, const gc_case *c) { /* f64 -> f32 -> *2 -> f64 */
  sf_tensor *a = sf_cast(I0, SF_F32);
  sf_tensor *b = sf_binary_scalar(SF_BIN_MUL, a, 2.0, false);
  sf_tensor *r = sf_cast(b, SF_F64);
  sf_release(a); sf_release(b);
  return r;
}
static sf_tensor *f_cat(sf_tensor **in, const gc_case *c) { return sf_cat(in, c->n_in, c->ip[0]); }
static sf_tensor *f_stack(sf_tensor **in, const gc_case *c) { return sf_stack(in, c->n_in, c->ip[0]); }
static sf_tensor *f_narrow(sf_tensor **in, const gc_case *c) { return sf_narrow(I0, c->ip[0], c->ip[1], c->ip[2]); }
static sf_tensor *f_select(sf_tensor **in, const gc_case *c) { return sf_select(I0, c->ip[0], c->ip[1]); }
static sf_tensor *f_permute(sf_tensor **in, const gc_case *c) { int d[3] = {2, 0, 1}; return sf_permute(I0, d); }
static sf_tensor *f_expand(sf_tensor **in, const gc_case *c) { int64_t s[3] = {2, 3, 4}; return sf_expand(I0, 3, s); }
static sf_tensor *f_reshape(sf_tensor **in, const gc_case *c) { int64_t s[2] = {4, -1}; return sf_reshape(I0, 2, s); }
static sf_tensor *f_reshape_t(sf_tensor **in, const gc_case *c) { /* reshape of a non-contiguous view copies */
  sf_tensor *t = sf_transpose(I0, 0, 1);
  int64_t s[1] = {-1};
  sf_tensor *r = sf_reshape(t, 1, s);
  sf_release(t);
  return r;
}
static sf_tensor *f_squeeze(sf_tensor **in, const gc_case *c) {
  sf_tensor *u = sf_unsqueeze(I0, 1);
  sf_tensor *r = sf_squeeze(u, SF_ALL_DIMS);
  sf_release(u);
  return r;
}
static sf_tensor *f_view_chain(sf_tensor **in, const gc_case *c) { /* expand, then permute and narrow the expanded */
  int64_t s[3] = {3, 4, 5};
  sf_tensor *e = sf_expand(I0, 3, s); /* I0 [3, 1, 5] */
  int d[3] = {1, 2, 0};
  sf_tensor *p = e ? sf_permute(e, d) : NULL;
  sf_tensor *n = p ? sf_narrow(p, 0, 1, 2) : NULL;
  sf_tensor *r = n ? sf_mul(n, n) : NULL;
  sf_release(e); sf_release(p); sf_release(n);
  return r;
}
static sf_tensor *f_reuse(sf_tensor **in, const gc_case *c) { /* x*x + exp(x) * y: gradients add up */
  sf_tensor *a = sf_mul(I0, I0), *b = sf_unary(SF_UN_EXP, I0, 0, 0);
  sf_tensor *d = b ? sf_mul(b, I1) : NULL;
  sf_tensor *r = (a && d) ? sf_add(a, d) : NULL;
  sf_release(a); sf_release(b); sf_release(d);
  return r;
}
static sf_tensor *f_mlp(sf_tensor **in, const gc_case *c) { /* a small model: linear, gelu_tanh, linear, log_softmax, mean */
  sf_tensor *h = sf_linear(I0, I1, NULL);
  sf_tensor *a = h ? sf_unary(SF_UN_GELU_TANH, h, 0, 0) : NULL;
  sf_tensor *w2 = sf_transpose(I2, 0, 1);
  sf_tensor *o = a ? sf_matmul(a, w2) : NULL;
  sf_tensor *l = o ? sf_log_softmax(o, -1) : NULL;
  sf_tensor *r = l ? sf_reduce(SF_RED_MEAN, l, 0, false) : NULL;
  sf_release(h); sf_release(a); sf_release(w2); sf_release(o); sf_release(l);
  return r;
}

#define SH1(a) 1, {{a}}
#define U(opname, op, d, ...) {#opname, 1, {2}, {{3, 4}}, {d}, {0}, f_unary, {__VA_ARGS__}, {op}, 0}

static const gc_case cases[] = {
  U(neg, SF_UN_NEG, 0), U(abs, SF_UN_ABS, 2), U(exp, SF_UN_EXP, 0), U(log, SF_UN_LOG, 1), U(sqrt, SF_UN_SQRT, 1),
  U(rsqrt, SF_UN_RSQRT, 1), U(sin, SF_UN_SIN, 0), U(cos, SF_UN_COS, 0), U(tanh, SF_UN_TANH, 0),
  U(sigmoid, SF_UN_SIGMOID, 0), U(silu, SF_UN_SILU, 0), U(gelu_tanh, SF_UN_GELU_TANH, 0), U(gelu, SF_UN_GELU, 0),
  U(relu, SF_UN_RELU, 2), U(reciprocal, SF_UN_RECIP, 1), U(square, SF_UN_SQUARE, 0), U(floor, SF_UN_FLOOR, 2),
  U(pow_p, SF_UN_POW, 1, 2.5), U(clamp, SF_UN_CLAMP, 2, -0.5, 0.7), U(clamp_lo, SF_UN_CLAMP, 2, -0.5, NAN),
  {"add_bcast", 2, {2, 1}, {{3, 4}, {4}}, {0, 0}, {0}, f_binary, {0}, {SF_BIN_ADD}},
  {"sub_bcast", 2, {3, 2}, {{2, 3, 4}, {3, 1}}, {0, 0}, {0}, f_binary, {0}, {SF_BIN_SUB}},
  {"mul_bcast", 2, {2, 2}, {{3, 4}, {3, 1}}, {0, 0}, {0}, f_binary, {0}, {SF_BIN_MUL}},
  {"div", 2, {2, 2}, {{3, 4}, {1, 4}}, {0, 1}, {0}, f_binary, {0}, {SF_BIN_DIV}},
  {"pow", 2, {2, 2}, {{3, 4}, {3, 4}}, {1, 0}, {0}, f_binary, {0}, {SF_BIN_POW}},
  {"maximum", 2, {2, 2}, {{3, 4}, {3, 4}}, {2, 2}, {0}, f_binary, {0}, {SF_BIN_MAX}},
  {"minimum", 2, {2, 1}, {{3, 4}, {4}}, {2, 2}, {0}, f_binary, {0}, {SF_BIN_MIN}},
  {"mul_one_side", 2, {2, 2}, {{3, 4}, {3, 4}}, {0, 0}, {false, true}, f_binary, {0}, {SF_BIN_MUL}},
  {"add_s", 1, {2}, {{3, 4}}, {0}, {0}, f_scalar, {1.5}, {SF_BIN_ADD, 0}},
  {"rsub_s", 1, {2}, {{3, 4}}, {0}, {0}, f_scalar, {1.5}, {SF_BIN_SUB, 1}},
  {"mul_s", 1, {2}, {{3, 4}}, {0}, {0}, f_scalar, {-2.5}, {SF_BIN_MUL, 0}},
  {"div_s", 1, {2}, {{3, 4}}, {0}, {0}, f_scalar, {3.0}, {SF_BIN_DIV, 0}},
  {"rdiv_s", 1, {2}, {{3, 4}}, {1}, {0}, f_scalar, {3.0}, {SF_BIN_DIV, 1}},
  {"pow_s", 1, {2}, {{3, 4}}, {1}, {0}, f_scalar, {1.7}, {SF_BIN_POW, 0}},
  {"rpow_s", 1, {2}, {{3, 4}}, {0}, {0}, f_scalar, {2.2}, {SF_BIN_POW, 1}},
  {"max_s", 1, {2}, {{3, 4}}, {2}, {0}, f_scalar, {0.1}, {SF_BIN_MAX, 0}},
  {"min_s", 1, {2}, {{3, 4}}, {2}, {0}, f_scalar, {0.1}, {SF_BIN_MIN, 0}},
  {"where", 3, {2, 1, 2}, {{3, 4}, {4}, {3, 4}}, {0, 0, 0}, {false, false, true}, f_where},
  {"sum_all", 1, {3}, {{2, 3, 4}}, {0}, {0}, f_reduce, {0}, {SF_RED_SUM, 99, 0}},
  {"sum_dim", 1, {3}, {{2, 3, 4}}, {0}, {0}, f_reduce, {0}, {SF_RED_SUM, 1, 0}},
  {"sum_keep", 1, {3}, {{2, 3, 4}}, {0}, {0}, f_reduce, {0}, {SF_RED_SUM, -1, 1}},
  {"mean_dim", 1, {3}, {{2, 3, 4}}, {0}, {0}, f_reduce, {0}, {SF_RED_MEAN, 0, 0}},
  {"mean_all", 1, {2}, {{3, 4}}, {0}, {0}, f_reduce, {0}, {SF_RED_MEAN, 99, 1}},
  {"max_dim", 1, {2}, {{3, 4}}, {2}, {0}, f_reduce, {0}, {SF_RED_MAX, 1, 0}},
  {"min_all", 1, {2}, {{3, 4}}, {2}, {0}, f_reduce, {0}, {SF_RED_MIN, 99, 0}},
  {"std_dim", 1, {2}, {{3, 4}}, {0}, {0}, f_reduce, {0}, {SF_RED_STD, 1, 1}},
  {"std_all", 1, {2}, {{3, 4}}, {0}, {0}, f_reduce, {0}, {SF_RED_STD, 99, 0}},
  {"norm_dim", 1, {2}, {{3, 4}}, {0}, {0}, f_reduce, {0}, {SF_RED_NORM, 0, 0}},
  {"prod_dim", 1, {2}, {{3, 4}}, {2}, {0}, f_reduce, {0}, {SF_RED_PROD, 1, 0}},
  {"softmax", 1, {3}, {{2, 3, 4}}, {0}, {0}, f_softmax, {0}, {-1, 0}},
  {"softmax_d1", 1, {3}, {{2, 3, 4}}, {0}, {0}, f_softmax, {0}, {1, 0}},
  {"log_softmax", 1, {2}, {{3, 5}}, {0}, {0}, f_softmax, {0}, {-1, 1}},
  {"matmul_2d", 2, {2, 2}, {{3, 4}, {4, 5}}, {0, 0}, {0}, f_matmul},
  {"matmul_bcast", 2, {3, 2}, {{2, 3, 4}, {4, 5}}, {0, 0}, {0}, f_matmul},
  {"matmul_bcast2", 2, {2, 3}, {{3, 4}, {2, 4, 2}}, {0, 0}, {0}, f_matmul},
  {"matmul_batch1", 2, {3, 3}, {{2, 3, 4}, {1, 4, 2}}, {0, 0}, {0}, f_matmul},
  {"matmul_vec_mat", 2, {1, 2}, {{4}, {4, 3}}, {0, 0}, {0}, f_matmul},
  {"matmul_mat_vec", 2, {3, 1}, {{2, 3, 4}, {4}}, {0, 0}, {0}, f_matmul},
  {"matmul_dot", 2, {1, 1}, {{5}, {5}}, {0, 0}, {0}, f_matmul},
  {"linear_bias", 3, {3, 2, 1}, {{2, 3, 4}, {5, 4}, {5}}, {0, 0, 0}, {0}, f_linear},
  {"linear_nobias", 2, {2, 2}, {{3, 4}, {2, 4}}, {0, 0}, {0}, f_linear},
  {"conv3d_bias_pad", 3, {5, 5, 1}, {{2, 3, 3, 5, 4}, {4, 3, 3, 3, 3}, {4}}, {0, 0, 0}, {0}, f_conv, {0}, {3, 1, 1, 1}},
  {"conv3d_stride2", 2, {5, 5}, {{1, 2, 5, 6, 7}, {3, 2, 3, 3, 3}}, {0, 0}, {0}, f_conv, {0}, {3, 2, 1, 0}},
  {"conv3d_time_only", 3, {5, 5, 1}, {{1, 2, 5, 3, 3}, {3, 2, 3, 1, 1}, {3}}, {0, 0, 0}, {0}, f_conv, {0}, {3, 1, 0, 0}},
  {"conv3d_x_only", 2, {5, 5}, {{1, 2, 3, 4, 4}, {2, 2, 3, 3, 3}}, {0, 0}, {false, true}, f_conv, {0}, {3, 1, 1, 2}},
  {"conv2d_bias_pad", 3, {4, 4, 1}, {{2, 3, 6, 5}, {4, 3, 3, 3}, {4}}, {0, 0, 0}, {0}, f_conv, {0}, {2, 1, 1, 0}},
  {"conv2d_stride2", 2, {4, 4}, {{1, 2, 7, 6}, {3, 2, 3, 3}}, {0, 0}, {0}, f_conv, {0}, {2, 2, 0, 0}},
  {"conv2d_1x1", 3, {4, 4, 1}, {{2, 3, 4, 4}, {5, 3, 1, 1}, {5}}, {0, 0, 0}, {0}, f_conv, {0}, {2, 1, 0, 0}},
  {"contiguous", 1, {2}, {{3, 4}}, {0}, {0}, f_clone_t},
  {"cast_f32", 1, {2}, {{3, 4}}, {0}, {0}, f_cast, {0}, {0}, 1e-4, 1e-2},
  {"cat_d0", 3, {2, 2, 2}, {{2, 3}, {1, 3}, {3, 3}}, {0, 0, 0}, {false, true, false}, f_cat, {0}, {0}},
  {"cat_d1", 2, {2, 2}, {{2, 3}, {2, 2}}, {0, 0}, {0}, f_cat, {0}, {-1}},
  {"stack", 2, {2, 2}, {{2, 3}, {2, 3}}, {0, 0}, {0}, f_stack, {0}, {1}},
  {"narrow", 1, {2}, {{4, 5}}, {0}, {0}, f_narrow, {0}, {1, 1, 3}},
  {"select", 1, {3}, {{2, 3, 4}}, {0}, {0}, f_select, {0}, {1, 2}},
  {"permute", 1, {3}, {{2, 3, 4}}, {0}, {0}, f_permute},
  {"expand", 1, {2}, {{3, 1}}, {0}, {0}, f_expand},
  {"reshape", 1, {3}, {{2, 2, 3}}, {0}, {0}, f_reshape},
  {"reshape_copy", 1, {2}, {{3, 4}}, {0}, {0}, f_reshape_t},
  {"squeeze", 1, {2}, {{3, 4}}, {0}, {0}, f_squeeze},
  {"view_chain", 1, {3}, {{3, 1, 5}}, {0}, {0}, f_view_chain},
  {"reuse", 2, {2, 2}, {{3, 4}, {3, 4}}, {0, 0}, {0}, f_reuse},
  {"mlp", 3, {2, 2, 2}, {{3, 4}, {6, 4}, {5, 6}}, {0, 0, 0}, {0}, f_mlp},
};

static void test_all_cases(void) {
  char why[256];
  int n = (int)(sizeof cases / sizeof cases[0]);
  for (int i = 0; i < n; i++) {
    why[0] = 0;
    double tol = cases[i].tol > 0 ? cases[i].tol : 1e-6;
    double err = gc_run(&cases[i], 1234 + i, why, sizeof why);
    if (!(err >= 0 && err <= tol)) {
      fprintf(stderr, "  gradcheck %-14s FAILED err %.3g (tol %.1g): %s\n", cases[i].name, err, tol, why);
      sf_test_case_failed = 1;
    } else {
      printf("  gradcheck %-14s err %.2g\n", cases[i].name, err);
    }
  }
}

int main(void) {
  sf_backends_init();
  RUN(test_all_cases);
  TEST_DONE();
}
