/* test_autograd_emu.c — every backward on the emulated CUDA device (`emu`: the CUDA backend's host code and
 * kernels run on the CPU) against the same backward on `cpu`: same inputs, same upstream gradient. One row per
 * differentiable op (every recorder of src/autograd: unary incl. the fused activations, binary, scalar, where,
 * reductions, softmax, matmul shapes, linear, cast, clone, cat/stack, views, norms, modulation, RoPE,
 * attention), bf16 leaves for the model ops; then the flash-attention backward on masks/dtypes/shapes.
 * SF_TEST_VERBOSE=1 prints the forward and per-input differences. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/optim.h"
#include "backend/backend.h"
#include "core/nn.h"
#include "core/ops.h"
#include "sf_test.h"

typedef struct ecase {
  const char *name;
  int n_in;
  int ndim[3];
  int64_t shape[3][5];
  int positive; /* inputs in [0.5, 1.5) */
  sf_tensor *(*fn)(sf_tensor **in, const struct ecase *c);
  int ip[4];
  double tol;
  int lowp; /* inputs are bf16 leaves (f32 gradients), upstream gradient in the output's dtype */
} ecase;

#define I0 in[0]
#define I1 in[1]
#define I2 in[2]
static sf_tensor *f_unary(sf_tensor **in, const ecase *c) { return sf_unary((sf_unary_op)c->ip[0], I0, 2.5, 0); }
static sf_tensor *f_binary(sf_tensor **in, const ecase *c) { return sf_binary((sf_binary_op)c->ip[0], I0, I1); }
static sf_tensor *f_reduce(sf_tensor **in, const ecase *c) { return sf_reduce((sf_reduce_op)c->ip[0], I0, c->ip[1] == 9 ? SF_ALL_DIMS : c->ip[1], c->ip[2]); }
static sf_tensor *f_softmax(sf_tensor **in, const ecase *c) { return c->ip[0] ? sf_log_softmax(I0, -1) : sf_softmax(I0, -1); }
static sf_tensor *f_matmul(sf_tensor **in, const ecase *c) { return sf_matmul(I0, I1); }
static sf_tensor *f_linear(sf_tensor **in, const ecase *c) { return sf_linear(I0, I1, I2); }
static sf_tensor *f_cat(sf_tensor **in, const ecase *c) { return sf_cat(in, c->n_in, 1); }
static sf_tensor *f_views(sf_tensor **in, const ecase *c) {
  int d[3] = {2, 0, 1};
  sf_tensor *p = sf_permute(I0, d), *n = p ? sf_narrow(p, 0, 1, 2) : NULL, *r = n ? sf_mul(n, n) : NULL;
  sf_release(p), sf_release(n);
  return r;
}
static sf_tensor *f_ln(sf_tensor **in, const ecase *c) { return sf_layer_norm(I0, I1, I2, 1e-6); }
static sf_tensor *f_rms(sf_tensor **in, const ecase *c) { return sf_rms_norm(I0, I1, 1e-6); }
static sf_tensor *f_mod(sf_tensor **in, const ecase *c) { return sf_modulate(I0, I1, I2); }
static sf_tensor *f_gate(sf_tensor **in, const ecase *c) { return sf_gated_add(I0, I1, I2); }
static sf_tensor *f_rope(sf_tensor **in, const ecase *c) { return sf_rope3d(I0, 3, 2, 2, 1); }
static sf_tensor *f_clamp(sf_tensor **in, const ecase *c) { return sf_unary(SF_UN_CLAMP, I0, -0.5, 0.5); }
/* ip: op, scalar * 4, scalar_first */
static sf_tensor *f_bscalar(sf_tensor **in, const ecase *c) { return sf_binary_scalar((sf_binary_op)c->ip[0], I0, c->ip[1] / 4.0, c->ip[2]); }
static sf_tensor *f_where(sf_tensor **in, const ecase *c) {
  sf_tensor *cond = sf_binary_scalar(SF_BIN_GT, I0, 0.0, false), *r = cond ? sf_where(cond, I1, I2) : NULL;
  sf_tensor *s = r ? sf_mul(r, I0) : NULL; /* I0 gets its gradient through the product, not through the mask */
  sf_release(cond), sf_release(r);
  return s;
}
static sf_tensor *f_stack(sf_tensor **in, const ecase *c) { return sf_stack(in, c->n_in, 1); }
static sf_tensor *f_cast(sf_tensor **in, const ecase *c) { /* f32 -> bf16 -> f32 round trip times another input */
  sf_tensor *h = sf_cast(I0, SF_BF16), *f = h ? sf_cast(h, SF_F32) : NULL, *r = f ? sf_mul(f, I1) : NULL;
  sf_release(h), sf_release(f);
  return r;
}
static sf_tensor *f_clone(sf_tensor **in, const ecase *c) {
  sf_tensor *k = sf_clone(I0), *r = k ? sf_mul(k, I0) : NULL;
  sf_release(k);
  return r;
}
static sf_tensor *f_expand(sf_tensor **in, const ecase *c) {
  int64_t sh[2] = {-1, 7};
  sf_tensor *e = sf_expand(I0, 2, sh), *r = e ? sf_mul(e, I1) : NULL;
  sf_release(e);
  return r;
}
static sf_tensor *f_tsel(sf_tensor **in, const ecase *c) {
  sf_tensor *t = sf_transpose(I0, 0, 2), *s = t ? sf_select(t, 1, 2) : NULL, *u = s ? sf_unsqueeze(s, 0) : NULL;
  int64_t sh[2] = {-1, 3};
  sf_tensor *v = u ? sf_reshape(u, 2, sh) : NULL, *r = v ? sf_mul(v, v) : NULL;
  sf_release(t), sf_release(s), sf_release(u), sf_release(v);
  return r;
}
static sf_tensor *f_linear_nb(sf_tensor **in, const ecase *c) { return sf_linear(I0, I1, NULL); }
static sf_tensor *f_ln_plain(sf_tensor **in, const ecase *c) { return sf_layer_norm(I0, NULL, NULL, 1e-6); }
static sf_tensor *f_rms_plain(sf_tensor **in, const ecase *c) { return sf_rms_norm(I0, NULL, 1e-6); }
static int64_t lo4[4] = {0, 0, 4, 8}, hi4[4] = {4, 8, 12, 16};
static sf_tensor *f_attn(sf_tensor **in, const ecase *c) {
  if (!c->ip[0]) return sf_attention(I0, I1, I2, NULL, NULL);
  sf_attn_desc d = {0};
  d.q_group = 4, d.kv_lo = lo4, d.kv_hi = hi4;
  return sf_attention(I0, I1, I2, &d, NULL);
}

#define UN(n, op, pos) {#n, 1, {2}, {{5, 7}}, pos, f_unary, {op}}
static const ecase cases[] = {
  UN(neg, SF_UN_NEG, 0), UN(abs, SF_UN_ABS, 0), UN(exp, SF_UN_EXP, 0), UN(log, SF_UN_LOG, 1), UN(sqrt, SF_UN_SQRT, 1),
  UN(rsqrt, SF_UN_RSQRT, 1), UN(sin, SF_UN_SIN, 0), UN(cos, SF_UN_COS, 0), UN(tanh, SF_UN_TANH, 0),
  UN(sigmoid, SF_UN_SIGMOID, 0), UN(silu, SF_UN_SILU, 0), UN(gelu_tanh, SF_UN_GELU_TANH, 0), UN(gelu, SF_UN_GELU, 0),
  UN(relu, SF_UN_RELU, 0), UN(recip, SF_UN_RECIP, 1), UN(square, SF_UN_SQUARE, 0), UN(pow, SF_UN_POW, 1),
  {"add", 2, {2, 1}, {{5, 7}, {7}}, 0, f_binary, {SF_BIN_ADD}},
  {"sub", 2, {3, 2}, {{2, 5, 7}, {5, 1}}, 0, f_binary, {SF_BIN_SUB}},
  {"mul", 2, {2, 2}, {{5, 7}, {5, 1}}, 0, f_binary, {SF_BIN_MUL}},
  {"div", 2, {2, 2}, {{5, 7}, {5, 7}}, 1, f_binary, {SF_BIN_DIV}},
  {"maximum", 2, {2, 2}, {{5, 7}, {5, 7}}, 0, f_binary, {SF_BIN_MAX}},
  {"sum_dim", 1, {3}, {{2, 5, 7}}, 0, f_reduce, {SF_RED_SUM, 1, 0}},
  {"mean_all", 1, {2}, {{5, 7}}, 0, f_reduce, {SF_RED_MEAN, 9, 0}},
  {"max_dim", 1, {2}, {{5, 7}}, 0, f_reduce, {SF_RED_MAX, 1, 1}},
  {"std_dim", 1, {2}, {{5, 7}}, 0, f_reduce, {SF_RED_STD, 1, 0}},
  {"norm_all", 1, {2}, {{5, 7}}, 0, f_reduce, {SF_RED_NORM, 9, 0}},
  {"softmax", 1, {3}, {{2, 5, 7}}, 0, f_softmax, {0}},
  {"log_softmax", 1, {2}, {{5, 7}}, 0, f_softmax, {1}},
  {"matmul", 2, {3, 2}, {{2, 5, 7}, {7, 3}}, 0, f_matmul},
  {"linear", 3, {3, 2, 1}, {{2, 5, 7}, {4, 7}, {4}}, 0, f_linear},
  {"cat", 2, {2, 2}, {{3, 4}, {3, 2}}, 0, f_cat},
  {"views", 1, {3}, {{3, 4, 5}}, 0, f_views},
  {"layer_norm", 3, {3, 1, 1}, {{2, 5, 64}, {64}, {64}}, 0, f_ln, {0}, 1e-5},
  {"rms_norm", 2, {3, 1}, {{2, 5, 64}, {64}}, 0, f_rms, {0}, 1e-5},
  {"modulate", 3, {3, 3, 3}, {{2, 6, 8}, {2, 3, 8}, {2, 3, 8}}, 0, f_mod},
  {"gated_add", 3, {3, 3, 3}, {{2, 6, 8}, {2, 6, 8}, {2, 2, 8}}, 0, f_gate},
  {"rope3d", 1, {4}, {{1, 12, 2, 12}}, 0, f_rope},
  UN(floor, SF_UN_FLOOR, 0), UN(ceil, SF_UN_CEIL, 0), UN(round, SF_UN_ROUND, 0), UN(sign, SF_UN_SIGN, 0),
  {"clamp", 1, {2}, {{5, 7}}, 0, f_clamp},
  {"pow_tensor", 2, {2, 2}, {{5, 7}, {5, 1}}, 1, f_binary, {SF_BIN_POW}},
  {"minimum", 2, {2, 1}, {{5, 7}, {7}}, 0, f_binary, {SF_BIN_MIN}},
  {"add_scalar", 1, {2}, {{5, 7}}, 0, f_bscalar, {SF_BIN_ADD, 3, 0}},
  {"rsub_scalar", 1, {2}, {{5, 7}}, 0, f_bscalar, {SF_BIN_SUB, 3, 1}},
  {"mul_scalar", 1, {2}, {{5, 7}}, 0, f_bscalar, {SF_BIN_MUL, -6, 0}},
  {"div_scalar", 1, {2}, {{5, 7}}, 0, f_bscalar, {SF_BIN_DIV, 5, 0}},
  {"rdiv_scalar", 1, {2}, {{5, 7}}, 1, f_bscalar, {SF_BIN_DIV, 5, 1}},
  {"pow_scalar", 1, {2}, {{5, 7}}, 1, f_bscalar, {SF_BIN_POW, 6, 0}},
  {"rpow_scalar", 1, {2}, {{5, 7}}, 0, f_bscalar, {SF_BIN_POW, 7, 1}},
  {"max_scalar", 1, {2}, {{5, 7}}, 0, f_bscalar, {SF_BIN_MAX, 1, 0}},
  {"min_scalar", 1, {2}, {{5, 7}}, 0, f_bscalar, {SF_BIN_MIN, -1, 0}},
  {"where", 3, {2, 2, 1}, {{5, 7}, {5, 7}, {7}}, 0, f_where},
  {"min_dim", 1, {2}, {{5, 7}}, 0, f_reduce, {SF_RED_MIN, 0, 1}},
  {"prod_dim", 1, {2}, {{5, 7}}, 1, f_reduce, {SF_RED_PROD, 1, 0}},
  {"mean_dim", 1, {3}, {{2, 5, 7}}, 0, f_reduce, {SF_RED_MEAN, 2, 1}},
  {"sum_all", 1, {3}, {{2, 5, 7}}, 0, f_reduce, {SF_RED_SUM, 9, 0}},
  {"bmm", 2, {3, 3}, {{2, 5, 7}, {2, 7, 3}}, 0, f_matmul},
  {"matmul_bcast", 2, {2, 3}, {{5, 7}, {2, 7, 3}}, 0, f_matmul},
  {"matmul_vec_mat", 2, {1, 2}, {{7}, {7, 3}}, 0, f_matmul},
  {"matmul_mat_vec", 2, {3, 1}, {{2, 5, 7}, {7}}, 0, f_matmul},
  {"matmul_dot", 2, {1, 1}, {{7}, {7}}, 0, f_matmul},
  {"std_all", 1, {2}, {{5, 7}}, 0, f_reduce, {SF_RED_STD, 9, 0}},
  {"norm_dim", 1, {3}, {{2, 5, 7}}, 0, f_reduce, {SF_RED_NORM, 2, 1}},
  {"min_all", 1, {2}, {{5, 7}}, 0, f_reduce, {SF_RED_MIN, 9, 0}},
  {"linear_nobias", 2, {3, 2}, {{2, 5, 7}, {4, 7}}, 0, f_linear_nb},
  {"stack", 2, {2, 2}, {{3, 4}, {3, 4}}, 0, f_stack},
  {"cast", 2, {2, 2}, {{5, 7}, {5, 7}}, 0, f_cast},
  {"clone", 1, {2}, {{5, 7}}, 0, f_clone},
  {"expand", 2, {2, 2}, {{5, 1}, {5, 7}}, 0, f_expand},
  {"transp_select", 1, {3}, {{3, 4, 5}}, 0, f_tsel},
  {"layer_norm_plain", 1, {3}, {{2, 5, 64}}, 0, f_ln_plain, {0}, 1e-5},
  {"rms_norm_plain", 1, {3}, {{2, 5, 64}}, 0, f_rms_plain, {0}, 1e-5},
  /* bf16 leaves (the trainer's bf16 parameters and activations): both devices round the same f32 results */
  {"silu_bf16", 1, {2}, {{5, 7}}, 0, f_unary, {SF_UN_SILU}, 1e-6, 1},
  {"gelu_tanh_bf16", 1, {2}, {{5, 7}}, 0, f_unary, {SF_UN_GELU_TANH}, 1e-6, 1},
  {"mul_bf16", 2, {2, 2}, {{5, 7}, {5, 1}}, 0, f_binary, {SF_BIN_MUL}, 1e-6, 1},
  {"softmax_bf16", 1, {3}, {{2, 5, 7}}, 0, f_softmax, {0}, 1e-6, 1},
  {"matmul_bf16", 2, {3, 2}, {{2, 5, 7}, {7, 3}}, 0, f_matmul, {0}, 1e-6, 1},
  {"linear_bf16", 3, {3, 2, 1}, {{2, 5, 16}, {8, 16}, {8}}, 0, f_linear, {0}, 1e-6, 1},
  {"layer_norm_bf16", 3, {3, 1, 1}, {{2, 5, 64}, {64}, {64}}, 0, f_ln, {0}, 1e-6, 1},
  {"rms_norm_bf16", 2, {3, 1}, {{2, 5, 64}, {64}}, 0, f_rms, {0}, 1e-6, 1},
  {"modulate_bf16", 3, {3, 3, 3}, {{2, 6, 8}, {2, 3, 8}, {2, 3, 8}}, 0, f_mod, {0}, 1e-6, 1},
  {"gated_add_bf16", 3, {3, 3, 3}, {{2, 6, 8}, {2, 6, 8}, {2, 2, 8}}, 0, f_gate, {0}, 1e-6, 1},
  {"rope3d_bf16", 1, {4}, {{1, 12, 2, 12}}, 0, f_rope, {0}, 1e-6, 1},
  {"attn_causal_bf16", 3, {4, 4, 4}, {{1, 16, 3, 8}, {1, 16, 3, 8}, {1, 16, 3, 8}}, 0, f_attn, {1}, 2e-2, 1},
  {"attention", 3, {4, 4, 4}, {{2, 19, 2, 16}, {2, 21, 2, 16}, {2, 21, 2, 16}}, 0, f_attn, {0}, 1e-5},
  {"attn_causal", 3, {4, 4, 4}, {{1, 16, 3, 8}, {1, 16, 3, 8}, {1, 16, 3, 8}}, 0, f_attn, {1}, 1e-5},
};

static double rel_diff(sf_tensor *a, sf_tensor *b) {
  sf_tensor *bb = sf_to_device(b, sf_cpu());
  double d = sf_max_abs_diff(a, bb);
  sf_tensor *ab = sf_unary(SF_UN_ABS, a, 0, 0), *mx = sf_reduce(SF_RED_MAX, ab, SF_ALL_DIMS, false);
  double s = fmax(sf_item(mx), 1e-30);
  sf_release(bb), sf_release(ab), sf_release(mx);
  return d / s;
}

static void test_backward_emu_vs_cpu(void) {
  sf_device emu;
  if (sf_test_device(&emu)) { CHECK(0); return; }
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const ecase *c = &cases[k];
    sf_tensor *in_c[3] = {0}, *in_e[3] = {0};
    sf_manual_seed(100 + k);
    for (int i = 0; i < c->n_in; i++) {
      in_c[i] = c->positive ? sf_rand(c->ndim[i], c->shape[i], SF_F32, sf_cpu()) : sf_randn(c->ndim[i], c->shape[i], SF_F32, sf_cpu());
      if (c->positive) sf_binary_scalar_(SF_BIN_ADD, in_c[i], 0.5);
      if (c->lowp) {
        sf_tensor *h = sf_cast(in_c[i], SF_BF16);
        sf_release(in_c[i]);
        in_c[i] = h;
      }
      in_e[i] = sf_to_device(in_c[i], emu);
      sf_requires_grad_(in_c[i], true);
      sf_requires_grad_(in_e[i], true);
    }
    sf_tensor *oc = c->fn(in_c, c), *oe = oc ? c->fn(in_e, c) : NULL;
    double worst = -1;
    const char *what = "forward";
    if (oc && oe) {
      sf_tensor *R0 = sf_randn(oc->ndim, oc->shape, SF_F32, sf_cpu()), *R = sf_cast(R0, oc->dtype), *Re = sf_to_device(R, emu);
      if (!sf_backward(oc, R, false) && !sf_backward(oe, Re, false)) {
        worst = rel_diff(oc, oe);
        if (getenv("SF_TEST_VERBOSE")) printf("    forward %.3g\n", worst);
        for (int i = 0; i < c->n_in; i++) {
          sf_tensor *gc = in_c[i]->grad, *ge = in_e[i]->grad;
          if (!gc || !ge) { /* no gradient on either device is fine; on one only is not */
            if (gc || ge) worst = INFINITY, what = "gradient presence";
            continue;
          }
          if (gc->dtype != ge->dtype) worst = INFINITY, what = "gradient dtype";
          double e = rel_diff(gc, ge);
          if (getenv("SF_TEST_VERBOSE")) printf("    input %d: gradient %.3g\n", i, e);
          if (e > worst) worst = e, what = "gradient";
        }
      }
      sf_release(R0), sf_release(R), sf_release(Re);
    }
    double tol = c->tol > 0 ? c->tol : 2e-6;
    if (!(worst >= 0 && worst <= tol)) {
      fprintf(stderr, "  %-16s emu vs cpu FAILED: %s differs by %.3g [%s]\n", c->name, what, worst, sf_last_error());
      sf_test_case_failed = 1;
    } else {
      printf("  %-16s emu vs cpu %.2g\n", c->name, worst);
    }
    sf_release(oc), sf_release(oe);
    for (int i = 0; i < c->n_in; i++) sf_release(in_c[i]), sf_release(in_e[i]);
  }
}

/* ---- the flash-attention backward (kernels/attn_bwd.cu) on shapes and masks the Wan models use ---- */

typedef struct acase {
  const char *name;
  int64_t B, Lq, Lk, H, d;
  sf_dtype dt;
  int64_t q_group;          /* 0: one group */
  int64_t lo[4], hi[4];     /* per group visible key range; hi[0] == 0: everything visible */
  int strided;              /* q/k/v are views with row strides (narrowed from [.., 2d]) */
  int no_q, no_kv;          /* q (resp. k and v) need no gradient: the kernel skips that pass */
  double tol;               /* relative to the largest |gradient| */
} acase;

static const acase acases[] = {
  {"full_f32_d128", 1, 70, 70, 2, 128, SF_F32, 0, {0}, {0}, 0, 0, 0, 2e-6},
  {"cross_f32", 2, 37, 77, 2, 24, SF_F32, 0, {0}, {0}, 0, 0, 0, 2e-6},
  {"blkcausal_f32", 1, 96, 96, 2, 40, SF_F32, 32, {0, 0, 0}, {32, 64, 96}, 1, 0, 0, 2e-6},
  {"window_f32", 1, 99, 99, 1, 16, SF_F32, 33, {0, 0, 33}, {33, 66, 99}, 0, 0, 0, 2e-6},
  {"kvcache_f32", 1, 40, 90, 2, 32, SF_F32, 20, {0, 0}, {70, 90}, 0, 0, 1, 2e-6},
  {"full_bf16_d128", 1, 130, 130, 2, 128, SF_BF16, 0, {0}, {0}, 0, 0, 0, 2e-2},
  {"blkcausal_bf16", 2, 130, 130, 2, 128, SF_BF16, 65, {0, 0}, {65, 130}, 1, 0, 0, 2e-2},
  {"cross_bf16", 1, 70, 150, 3, 64, SF_BF16, 0, {0}, {0}, 0, 0, 0, 2e-2},
  {"window_f16_d40", 1, 96, 96, 2, 40, SF_F16, 32, {0, 0, 32}, {32, 64, 96}, 0, 0, 0, 1e-2},
  {"dq_only_bf16", 1, 64, 128, 2, 64, SF_BF16, 32, {0, 0}, {96, 128}, 0, 0, 1, 2e-2},
  {"dkv_only_bf16", 1, 64, 64, 1, 32, SF_BF16, 0, {0}, {0}, 0, 1, 0, 2e-2},
  {"empty_group_bf16", 1, 96, 96, 2, 32, SF_BF16, 32, {0, 5, 10}, {32, 5, 96}, 0, 0, 0, 2e-2}, /* group 1 sees nothing */
  {"empty_group_f32", 1, 96, 80, 1, 16, SF_F32, 32, {7, 0, 40}, {7, 80, 80}, 0, 0, 0, 2e-6},
  {"d20_bf16", 1, 70, 70, 2, 20, SF_BF16, 0, {0}, {0}, 1, 0, 0, 2e-2}, /* head dim not a multiple of 8: element loads */
};

static void test_attention_backward_emu_vs_cpu(void) {
  sf_device emu;
  if (sf_test_device(&emu)) { CHECK(0); return; }
  for (size_t k = 0; k < sizeof acases / sizeof acases[0]; k++) {
    const acase *c = &acases[k];
    const int64_t w = c->strided ? 2 * c->d : c->d;
    int64_t shq[4] = {c->B, c->Lq, c->H, w}, shk[4] = {c->B, c->Lk, c->H, w};
    sf_manual_seed(300 + k);
    sf_tensor *leaf[2][3], *f32[3];
    for (int i = 0; i < 3; i++) {
      f32[i] = sf_randn(4, i ? shk : shq, SF_F32, sf_cpu());
      leaf[0][i] = sf_cast(f32[i], c->dt);
      leaf[1][i] = sf_to_device(leaf[0][i], emu);
      const int need = i ? !c->no_kv : !c->no_q;
      for (int s = 0; s < 2; s++) sf_requires_grad_(leaf[s][i], need);
    }
    int64_t sho[4] = {c->B, c->Lq, c->H, c->d};
    sf_tensor *R = sf_randn(4, sho, SF_F32, sf_cpu());
    sf_attn_desc desc = {0};
    desc.q_group = c->q_group;
    if (c->hi[0]) desc.kv_lo = c->lo, desc.kv_hi = c->hi;
    sf_tensor *grads[2][3] = {{0}}, *outs[2] = {0};
    for (int s = 0; s < 2; s++) {
      sf_tensor *in[3];
      for (int i = 0; i < 3; i++) in[i] = c->strided ? sf_narrow(leaf[s][i], 3, 0, c->d) : sf_retain(leaf[s][i]);
      sf_tensor *Rs = s ? sf_to_device(R, emu) : sf_retain(R), *Rd = sf_cast(Rs, c->dt);
      outs[s] = sf_attention(in[0], in[1], in[2], &desc, NULL);
      if (!outs[s] || sf_backward(outs[s], Rd, false)) fprintf(stderr, "  %s: %s\n", c->name, sf_last_error()), sf_test_case_failed = 1;
      for (int i = 0; i < 3; i++) {
        grads[s][i] = leaf[s][i]->grad ? sf_retain(leaf[s][i]->grad) : NULL;
        sf_release(in[i]);
      }
      sf_release(Rs), sf_release(Rd);
    }
    double worst = 0;
    const char *names[3] = {"dq", "dk", "dv"};
    char buf[160] = "";
    for (int i = 0; i < 3; i++) {
      const int need = i ? !c->no_kv : !c->no_q;
      if (!need) { CHECK(!grads[0][i] && !grads[1][i]); continue; }
      if (!grads[0][i] || !grads[1][i]) { sf_test_case_failed = 1; fprintf(stderr, "  %s: no %s\n", c->name, names[i]); continue; }
      const double e = rel_diff(grads[0][i], grads[1][i]);
      snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " %s %.2g", names[i], e);
      if (!(e <= worst)) worst = e;
    }
    /* deterministic: a second backward on emu gives the same bits */
    for (int i = 0; i < 3; i++) sf_release(leaf[1][i]->grad), leaf[1][i]->grad = NULL;
    {
      sf_tensor *in[3];
      for (int i = 0; i < 3; i++) in[i] = c->strided ? sf_narrow(leaf[1][i], 3, 0, c->d) : sf_retain(leaf[1][i]);
      sf_tensor *Re = sf_to_device(R, emu), *Rd = sf_cast(Re, c->dt);
      sf_tensor *o2 = sf_attention(in[0], in[1], in[2], &desc, NULL);
      CHECK(o2 && sf_backward(o2, Rd, false) == 0);
      for (int i = 0; i < 3; i++)
        if (grads[1][i] && leaf[1][i]->grad) {
          sf_tensor *a = sf_to_device(grads[1][i], sf_cpu()), *b = sf_to_device(leaf[1][i]->grad, sf_cpu());
          CHECK(sf_max_abs_diff(a, b) == 0.0);
          sf_release(a), sf_release(b);
        }
      sf_release(o2), sf_release(Re), sf_release(Rd);
      for (int i = 0; i < 3; i++) sf_release(in[i]);
    }
    if (!(worst <= c->tol)) {
      fprintf(stderr, "  %-16s emu vs cpu FAILED:%s (tol %g) [%s]\n", c->name, buf, c->tol, sf_last_error());
      sf_test_case_failed = 1;
    } else {
      printf("  %-16s emu vs cpu:%s\n", c->name, buf);
    }
    for (int s = 0; s < 2; s++) {
      sf_release(outs[s]);
      for (int i = 0; i < 3; i++) sf_release(grads[s][i]), sf_release(leaf[s][i]);
    }
    for (int i = 0; i < 3; i++) sf_release(f32[i]);
    sf_release(R);
  }
}

/* the tensor-core forward (kernels/attn_fwd_mma.cu, the GPU's default for bf16/f16; on emu with
 * SFWB_ATTN_MMA=1): output within bf16/f16 rounding of the CPU's, log-sum-exp to f32 round-off, and the
 * whole backward table again on top of it */
static void test_attention_mma_forward_emu_vs_cpu(void) {
  sf_device emu;
  if (sf_test_device(&emu)) { CHECK(0); return; }
  setenv("SFWB_ATTN_MMA", "1", 1);
  for (size_t k = 0; k < sizeof acases / sizeof acases[0]; k++) {
    const acase *c = &acases[k];
    if (c->dt == SF_F32) continue;
    const int64_t w = c->strided ? 2 * c->d : c->d;
    int64_t shq[4] = {c->B, c->Lq, c->H, w}, shk[4] = {c->B, c->Lk, c->H, w};
    sf_manual_seed(500 + k);
    sf_tensor *in[2][3];
    for (int i = 0; i < 3; i++) {
      sf_tensor *f = sf_randn(4, i ? shk : shq, SF_F32, sf_cpu()), *hh = sf_cast(f, c->dt);
      in[0][i] = c->strided ? sf_narrow(hh, 3, 0, c->d) : sf_retain(hh);
      in[1][i] = sf_to_device(in[0][i], emu);
      sf_release(f), sf_release(hh);
    }
    sf_attn_desc desc = {0};
    desc.q_group = c->q_group;
    if (c->hi[0]) desc.kv_lo = c->lo, desc.kv_hi = c->hi;
    sf_tensor *lse[2] = {0}, *out[2];
    for (int s = 0; s < 2; s++) out[s] = sf_attention(in[s][0], in[s][1], in[s][2], &desc, &lse[s]);
    CHECK(out[0] && out[1] && lse[0] && lse[1]);
    if (out[0] && out[1] && lse[0] && lse[1]) {
      const double eo = rel_diff(out[0], out[1]);
      sf_tensor *le = sf_to_device(lse[1], sf_cpu());
      const float *l0 = sf_data_ptr(lse[0]), *l1 = sf_data_ptr(le);
      double el = 0; /* -inf rows (a group that sees nothing) must match exactly */
      for (int64_t i = 0; i < sf_numel(le); i++) el = fmax(el, isinf(l0[i]) || isinf(l1[i]) ? (l0[i] == l1[i] ? 0 : INFINITY) : fabs(l0[i] - l1[i]));
      const bool ok = eo <= (c->dt == SF_F16 ? 4e-3 : 2e-2) && el <= 1e-5;
      if (!ok) sf_test_case_failed = 1;
      printf("  %-16s mma forward vs cpu: out %.2g lse %.2g%s\n", c->name, eo, el, ok ? "" : "  FAILED");
      sf_release(le);
    }
    for (int s = 0; s < 2; s++) {
      sf_release(out[s]), sf_release(lse[s]);
      for (int i = 0; i < 3; i++) sf_release(in[s][i]);
    }
  }
  printf("  backward on the tensor-core forward:\n");
  test_attention_backward_emu_vs_cpu();
  unsetenv("SFWB_ATTN_MMA");
}

/* capture on the tensor-core path: the f32-P kernel's capture sweep runs on the tensor-core kernel's lse, so
 * the output is the same bits with or without a capture, and the captured sums match the f32-P kernel's */
static void test_attention_mma_capture(void) {
  sf_device emu;
  if (sf_test_device(&emu)) { CHECK(0); return; }
  sf_manual_seed(77);
  int64_t s4[4] = {1, 96, 2, 32}, c3[3] = {2, 3, 3}, t3[3] = {2, 40, 50};
  sf_tensor *f = sf_randn(4, s4, SF_F32, sf_cpu()), *hq = sf_cast(f, SF_BF16), *q = sf_to_device(hq, emu);
  int64_t lo[3] = {0, 0, 32}, hi[3] = {32, 64, 96};
  sf_tensor *res[2][5] = {{0}}; /* [mma, f32-P] x {out without capture, out with, frame logits, frame probs, token probs} */
  for (int mode = 0; mode < 2; mode++) {
    if (mode == 0) setenv("SFWB_ATTN_MMA", "1", 1);
    else unsetenv("SFWB_ATTN_MMA");
    sf_attn_desc d = {0};
    d.q_group = 32, d.kv_lo = lo, d.kv_hi = hi;
    res[mode][0] = sf_attention(q, q, q, &d, NULL);
    sf_tensor *cl = sf_zeros(3, c3, SF_F32, emu), *cp = sf_zeros(3, c3, SF_F32, emu), *tp = sf_zeros(3, t3, SF_F32, emu);
    d.k_group = 32, d.cap_logits = cl, d.cap_probs = cp;
    d.tq0 = 30, d.tq1 = 70, d.tk0 = 20, d.tk1 = 70, d.tok_probs = tp;
    res[mode][1] = sf_attention(q, q, q, &d, NULL);
    res[mode][2] = cl, res[mode][3] = cp, res[mode][4] = tp;
  }
  unsetenv("SFWB_ATTN_MMA");
  CHECK(res[0][0] && res[0][1] && res[1][0] && res[1][1]);
  if (res[0][0] && res[0][1] && res[1][0]) {
    sf_tensor *a = sf_to_device(res[0][0], sf_cpu()), *b = sf_to_device(res[0][1], sf_cpu());
    CHECK(sf_max_abs_diff(a, b) == 0.0); /* capturing does not change the tensor-core output */
    const double e = rel_diff(a, res[1][0]);
    printf("  tensor-core vs f32-P output %.2g (bf16 rounding)\n", e);
    CHECK(e > 0 && e < 2e-2); /* and it is the tensor-core kernel that ran */
    sf_release(a), sf_release(b);
  }
  for (int i = 2; i < 5; i++) {
    sf_tensor *a = sf_to_device(res[0][i], sf_cpu()), *b = sf_to_device(res[1][i], sf_cpu());
    sf_tensor *nan_a = sf_unary(SF_UN_ISNAN, a, 0, 0), *nan_b = sf_unary(SF_UN_ISNAN, b, 0, 0);
    CHECK(sf_max_abs_diff(nan_a, nan_b) == 0.0); /* NaN (unseen) in the same places */
    sf_tensor *z = sf_zeros(0, NULL, SF_F32, sf_cpu()), *a0 = sf_where(nan_a, z, a), *b0 = sf_where(nan_b, z, b);
    const double e = rel_diff(b0, a0);
    printf("  capture %d: tensor-core path vs f32-P kernel %.2g\n", i - 2, e);
    CHECK(e < 1e-5);
    sf_release(a), sf_release(b), sf_release(nan_a), sf_release(nan_b), sf_release(z), sf_release(a0), sf_release(b0);
  }
  for (int m = 0; m < 2; m++)
    for (int i = 0; i < 5; i++) sf_release(res[m][i]);
  sf_release(f), sf_release(hq), sf_release(q);
}

static void test_optimizer_emu_vs_cpu(void) {
  sf_device emu;
  if (sf_test_device(&emu)) { CHECK(0); return; }
  int64_t sh[2] = {37, 11};
  sf_manual_seed(5);
  sf_tensor *p = sf_randn(2, sh, SF_F32, sf_cpu()), *g = sf_randn(2, sh, SF_F32, sf_cpu());
  sf_tensor *m = sf_zeros(2, sh, SF_F32, sf_cpu()), *v = sf_zeros(2, sh, SF_F32, sf_cpu());
  sf_tensor *pe = sf_to_device(p, emu), *ge = sf_to_device(g, emu), *me = sf_to_device(m, emu), *ve = sf_to_device(v, emu);
  for (int s = 1; s <= 3; s++) {
    CHECK(sf_adamw_update(p, NULL, g, m, v, 1e-2, 0.9, 0.999, 1e-8, 0.01, s) == 0);
    CHECK(sf_adamw_update(pe, NULL, ge, me, ve, 1e-2, 0.9, 0.999, 1e-8, 0.01, s) == 0);
  }
  CHECK(rel_diff(p, pe) < 1e-6 && rel_diff(m, me) < 1e-6 && rel_diff(v, ve) < 1e-6);
  double a, b;
  CHECK(sf_sum_sq(g, &a) == 0 && sf_sum_sq(ge, &b) == 0);
  CHECK_NEAR(a, b, 1e-9 * a);
  CHECK(sf_ema_update(m, p, 0.9) == 0 && sf_ema_update(me, pe, 0.9) == 0);
  CHECK(rel_diff(m, me) < 1e-6);
  sf_release(p), sf_release(g), sf_release(m), sf_release(v), sf_release(pe), sf_release(ge), sf_release(me), sf_release(ve);
}

int main(void) {
  sf_backends_init();
  printf("device: %s\n", sf_test_device_name());
  RUN(test_backward_emu_vs_cpu);
  RUN(test_attention_backward_emu_vs_cpu);
  RUN(test_attention_mma_forward_emu_vs_cpu);
  RUN(test_attention_mma_capture);
  RUN(test_optimizer_emu_vs_cpu);
  TEST_DONE();
}
