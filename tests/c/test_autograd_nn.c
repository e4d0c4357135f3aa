/* test_autograd_nn.c — backward of the fused model ops (norms, modulation, RoPE, flash attention) against
 * the same function composed from core ops (whose backwards are finite-difference checked in f64), and a
 * finite-difference check of the fused ops themselves (they compute in f32, so with a coarse step). */
#include <math.h>
#include <stdlib.h>

#include "core/backend.h"
#include "ops/nn.h"
#include "gradcheck.h"
#include "sf_test.h"

#define I0 in[0]
#define I1 in[1]
#define I2 in[2]

static sf_tensor *rel(sf_tensor *t) { return t; }
#define REL(...) do { sf_tensor *_r[] = {__VA_ARGS__}; for (size_t _i = 0; _i < sizeof _r / sizeof *_r; _i++) sf_release(_r[_i]); } while (0)

/* ---- fused: the f64 leaves go through an f32 cast (the fused ops take f32/bf16/f16), result back to f64 ---- */
static sf_tensor *f32s[GC_MAX_IN];
static sf_tensor **to32(sf_tensor **in, int n) {
  for (int i = 0; i < GC_MAX_IN; i++) { sf_release(f32s[i]); f32s[i] = i < n ? sf_cast(in[i], SF_F32) : NULL; }
  return f32s;
}
static sf_tensor *to64(sf_tensor *t) { sf_tensor *r = t ? sf_cast(t, SF_F64) : NULL; sf_release(t); return r; }
#undef I0
#undef I1
#undef I2
#define I0 (to32(in, c->n_in)[0])
#define I1 f32s[1]
#define I2 f32s[2]
static sf_tensor *f_ln(sf_tensor **in, const gc_case *c) { sf_tensor *x = I0; return to64(sf_layer_norm(x, c->n_in > 1 ? I1 : NULL, c->n_in > 2 ? I2 : NULL, 1e-6)); }
static sf_tensor *f_rms(sf_tensor **in, const gc_case *c) { sf_tensor *x = I0; return to64(sf_rms_norm(x, c->n_in > 1 ? I1 : NULL, 1e-6)); }
static sf_tensor *f_mod(sf_tensor **in, const gc_case *c) { sf_tensor *x = I0; return to64(sf_modulate(x, I1, I2)); }
static sf_tensor *f_gate(sf_tensor **in, const gc_case *c) { sf_tensor *x = I0; return to64(sf_gated_add(x, I1, I2)); }
static sf_tensor *f_rope(sf_tensor **in, const gc_case *c) { sf_tensor *x = I0; return to64(sf_rope3d(x, c->ip[0], c->ip[1], c->ip[2], c->ip[3])); }

/* block-causal visibility: query group g (of q_group tokens) sees keys [lo, (g + 1) * q_group) */
static int64_t g_lo[8], g_hi[8];
static sf_attn_desc causal_desc(const gc_case *c, int64_t L) {
  sf_attn_desc d = {0};
  d.q_group = c->ip[1];
  for (int64_t g = 0; g < L / d.q_group; g++) {
    g_lo[g] = c->ip[2] ? (g > 0 ? (g - 1) * d.q_group : 0) : 0; /* ip[2]: local window of one previous group */
    g_hi[g] = (g + 1) * d.q_group;
  }
  d.kv_lo = g_lo;
  d.kv_hi = g_hi;
  return d;
}
static sf_tensor *f_attn(sf_tensor **in, const gc_case *c) {
  sf_tensor *q = I0;
  if (!c->ip[0]) return to64(sf_attention(q, I1, I2, NULL, NULL));
  sf_attn_desc d = causal_desc(c, q->shape[1]);
  return to64(sf_attention(q, I1, I2, &d, NULL));
}
#undef I0
#undef I1
#undef I2
#define I0 in[0]
#define I1 in[1]
#define I2 in[2]

/* ---- composed from core ops ---- */
static sf_tensor *c_ln(sf_tensor **in, const gc_case *c) {
  sf_tensor *mu = sf_reduce(SF_RED_MEAN, I0, -1, true), *xc = sf_sub(I0, mu), *sq = sf_mul(xc, xc);
  sf_tensor *var = sf_reduce(SF_RED_MEAN, sq, -1, true), *ve = sf_binary_scalar(SF_BIN_ADD, var, 1e-6, false);
  sf_tensor *rs = sf_unary(SF_UN_RSQRT, ve, 0, 0), *y = sf_mul(xc, rs);
  sf_tensor *r = y;
  if (c->n_in > 1) {
    sf_tensor *yw = sf_mul(y, I1);
    r = sf_add(yw, I2);
    REL(yw, y);
  }
  REL(mu, xc, sq, var, ve, rs);
  return r;
}
static sf_tensor *c_rms(sf_tensor **in, const gc_case *c) {
  sf_tensor *sq = sf_mul(I0, I0), *ms = sf_reduce(SF_RED_MEAN, sq, -1, true), *me = sf_binary_scalar(SF_BIN_ADD, ms, 1e-6, false);
  sf_tensor *rs = sf_unary(SF_UN_RSQRT, me, 0, 0), *y = sf_mul(I0, rs);
  sf_tensor *r = c->n_in > 1 ? sf_mul(y, I1) : rel(sf_retain(y));
  REL(sq, ms, me, rs, y);
  return r;
}
/* x [B, L, D] with per-frame [B, F, D] vectors: view x as [B, F, L/F, D] */
static sf_tensor *framed(sf_tensor *x, int64_t F) {
  int64_t s[4] = {x->shape[0], F, x->shape[1] / F, x->shape[2]};
  return sf_reshape(x, 4, s);
}
static sf_tensor *unframed(sf_tensor *x) {
  int64_t s[3] = {x->shape[0], x->shape[1] * x->shape[2], x->shape[3]};
  return sf_reshape(x, 3, s);
}
static sf_tensor *c_mod(sf_tensor **in, const gc_case *c) {
  int64_t F = I1->shape[1];
  sf_tensor *x4 = framed(I0, F), *sc = sf_unsqueeze(I2, 2), *sh = sf_unsqueeze(I1, 2);
  sf_tensor *a = sf_binary_scalar(SF_BIN_ADD, sc, 1.0, false), *xa = sf_mul(x4, a), *y = sf_add(xa, sh);
  sf_tensor *r = unframed(y);
  REL(x4, sc, sh, a, xa, y);
  return r;
}
static sf_tensor *c_gate(sf_tensor **in, const gc_case *c) {
  int64_t F = I2->shape[1];
  sf_tensor *y4 = framed(I1, F), *g = sf_unsqueeze(I2, 2), *p = sf_mul(y4, g), *pu = unframed(p), *r = sf_add(I0, pu);
  REL(y4, g, p, pu);
  return r;
}
static sf_tensor *c_attn(sf_tensor **in, const gc_case *c) {
  int perm[4] = {0, 2, 1, 3};
  const int64_t Lq = I0->shape[1], Lk = I1->shape[1], d = I0->shape[3];
  sf_tensor *q = sf_permute(I0, perm), *k = sf_permute(I1, perm), *v = sf_permute(I2, perm);
  sf_tensor *kt = sf_transpose(k, -1, -2), *s = sf_matmul(q, kt), *ss = sf_binary_scalar(SF_BIN_MUL, s, 1.0 / sqrt((double)d), false);
  sf_tensor *p;
  if (c->ip[0]) {
    sf_attn_desc dd = causal_desc(c, Lq);
    int64_t ms[2] = {Lq, Lk};
    sf_tensor *mask = sf_zeros(2, ms, SF_F64, sf_cpu());
    double *mp = sf_data_ptr(mask);
    for (int64_t i = 0; i < Lq; i++)
      for (int64_t j = 0; j < Lk; j++) {
        int64_t g = i / dd.q_group;
        mp[i * Lk + j] = (j >= dd.kv_lo[g] && j < dd.kv_hi[g]) ? 0.0 : -INFINITY;
      }
    sf_tensor *sm = sf_add(ss, mask);
    p = sf_softmax(sm, -1);
    REL(mask, sm);
  } else {
    p = sf_softmax(ss, -1);
  }
  sf_tensor *o = sf_matmul(p, v), *r = sf_permute(o, perm), *rc = sf_contiguous(r);
  REL(q, k, v, kt, s, ss, p, o, r);
  return rc;
}

typedef struct {
  gc_case fused;
  sf_tensor *(*composed)(sf_tensor **in, const gc_case *c);
} nn_case;

static const nn_case cases[] = {
  {{"layer_norm", 3, {3, 1, 1}, {{2, 3, 8}, {8}, {8}}, {0, 0, 0}, {0}, f_ln}, c_ln},
  {{"layer_norm_noaff", 1, {2}, {{3, 8}}, {0}, {0}, f_ln}, c_ln},
  {{"rms_norm", 2, {3, 1}, {{2, 3, 8}, {8}}, {0, 0}, {0}, f_rms}, c_rms},
  {{"rms_norm_now", 1, {2}, {{4, 6}}, {0}, {0}, f_rms}, c_rms},
  {{"modulate", 3, {3, 3, 3}, {{2, 6, 4}, {2, 3, 4}, {2, 3, 4}}, {0, 0, 0}, {0}, f_mod}, c_mod},
  {{"gated_add", 3, {3, 3, 3}, {{2, 6, 4}, {2, 6, 4}, {2, 2, 4}}, {0, 0, 0}, {0}, f_gate}, c_gate},
  {{"rope3d", 1, {4}, {{1, 12, 2, 12}}, {0}, {0}, f_rope, {0}, {3, 2, 2, 1}}, NULL},
  {{"attention", 3, {4, 4, 4}, {{2, 6, 2, 4}, {2, 5, 2, 4}, {2, 5, 2, 4}}, {0, 0, 0}, {0}, f_attn, {0}, {0}}, c_attn},
  {{"attn_causal", 3, {4, 4, 4}, {{1, 8, 2, 4}, {1, 8, 2, 4}, {1, 8, 2, 4}}, {0, 0, 0}, {0}, f_attn, {0}, {1, 2, 0}}, c_attn},
  {{"attn_local", 3, {4, 4, 4}, {{1, 300, 1, 8}, {1, 300, 1, 8}, {1, 300, 1, 8}}, {0, 0, 0}, {0}, f_attn, {0}, {1, 100, 1}}, c_attn},
};

/* fused vs composed: forward values and every input's gradient for upstream R */
static double compare(const nn_case *nc, char *why, size_t nwhy) {
  const gc_case *c = &nc->fused;
  sf_tensor *in[GC_MAX_IN] = {0}, *g_f[GC_MAX_IN] = {0};
  uint64_t st = 99;
  for (int i = 0; i < c->n_in; i++) {
    in[i] = sf_empty(c->ndim[i], c->shape[i], SF_F64, sf_cpu());
    gc_fill(in[i], c->dist[i], &st);
    sf_requires_grad_(in[i], true);
  }
  double worst = 0;
  sf_tensor *R = NULL;
  for (int pass = 0; pass < 2; pass++) {
    sf_tensor *out = pass ? nc->composed(in, c) : c->fn(in, c);
    if (!out) { snprintf(why, nwhy, "forward %d failed: %s", pass, sf_last_error()); worst = -1; break; }
    sf_tensor *o64 = sf_cast(out, SF_F64);
    if (!R) { R = sf_empty(out->ndim, out->shape, SF_F64, sf_cpu()); gc_fill(R, 0, &st); }
    if (sf_backward(out, R, false)) { snprintf(why, nwhy, "backward %d failed: %s", pass, sf_last_error()); worst = -1; sf_release(out); sf_release(o64); break; }
    sf_release(out);
    if (!pass) { g_f[GC_MAX_IN - 1] = o64; }
    else {
      double e = sf_max_abs_diff(o64, g_f[GC_MAX_IN - 1]);
      if (e > worst) { worst = e; snprintf(why, nwhy, "forward differs by %.3g", e); }
      sf_release(o64);
    }
    for (int i = 0; i < c->n_in; i++) {
      if (!pass) { g_f[i] = sf_cast(in[i]->grad, SF_F64); sf_set_grad(in[i], NULL); continue; }
      sf_tensor *gc64 = sf_cast(in[i]->grad, SF_F64);
      sf_tensor *a = sf_unary(SF_UN_ABS, gc64, 0, 0), *mx = sf_reduce(SF_RED_MAX, a, SF_ALL_DIMS, false);
      double scale = fmax(sf_item(mx), 1e-12), e = sf_max_abs_diff(g_f[i], gc64) / scale;
      if (e > worst) { worst = e; snprintf(why, nwhy, "grad of input %d differs by %.3g (relative to max %.3g)", i + 1, e, scale); }
      REL(gc64, a, mx);
    }
  }
  for (int i = 0; i < GC_MAX_IN; i++) { sf_release(in[i]); sf_release(g_f[i]); }
  sf_release(R);
  return worst;
}

static void test_fused_vs_composed(void) {
  char why[256];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (!cases[i].composed) continue;
    why[0] = 0;
    double e = compare(&cases[i], why, sizeof why);
    if (!(e >= 0 && e < 2e-5)) {
      fprintf(stderr, "  %-16s FAILED %.3g: %s\n", cases[i].fused.name, e, why);
      sf_test_case_failed = 1;
    } else {
      printf("  %-16s fused vs composed %.2g\n", cases[i].fused.name, e);
    }
  }
}

static void test_fused_gradcheck(void) {
  char why[256];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    gc_case c = cases[i].fused;
    if (c.shape[0][1] > 100) continue; /* the long local-window case only against the composed version */
    c.h = 1e-3; /* the fused CPU ops compute in f32 */
    why[0] = 0;
    double e = gc_run(&c, 4242 + i, why, sizeof why);
    if (!(e >= 0 && e < 2e-3)) {
      fprintf(stderr, "  %-16s FAILED %.3g: %s\n", c.name, e, why);
      sf_test_case_failed = 1;
    } else {
      printf("  %-16s finite differences %.2g\n", c.name, e);
    }
  }
}

int main(void) {
  sf_backends_init();
  RUN(test_fused_vs_composed);
  RUN(test_fused_gradcheck);
  to32(NULL, 0);
  TEST_DONE();
}
