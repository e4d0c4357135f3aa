/* frame_ops.c — the frame-major video ops (frame_ops.h): argument checks, then the backend's fused op where it
 * supports it, else the composition of core ops below (what the CUDA/emu backend runs today). */
#include <math.h>

#include "core/backend.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/half.h"
#include "core/nn_ops.h"
#include "core/scope.h"
#include "ops/frame_ops.h"

#include <stdlib.h>

#define MAX_PARTS 8

static void free_data(sf_storage *s) { free(s->data); }

/* an uninitialised f32 frame activation: on the CPU plain malloc rather than the backend's recycled blocks
 * (the sizes change at every layer, so recycled blocks would sit unused beside the live ones and raise the
 * peak; conv_cpu.c's conv_frames output does the same) */
static sf_tensor *frames_empty(const int64_t shape[4], sf_device dev) {
  if (dev.type != SF_DEV_CPU) return sf_empty(4, shape, SF_F32, dev);
  size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
  float *d = malloc(sizeof(float) * (n ? n : 1));
  sf_storage *st = d ? sf_storage_wrap(dev, d, sizeof(float) * n, free_data, NULL) : NULL;
  if (!st) {
    free(d);
    sf_error("out of memory for frames [%lld, %lld, %lld, %lld]", (long long)shape[0], (long long)shape[1],
             (long long)shape[2], (long long)shape[3]);
    return NULL;
  }
  sf_tensor *t = sf_tensor_from_storage(st, SF_F32, 4, shape, NULL, 0);
  sf_storage_release(st);
  return t;
}

sf_tensor *sf_frames_cat(sf_tensor *const *parts, int n) {
  char b0[64], bi[64];
  if (n < 1) { sf_error("frames_cat: no parts"); return NULL; }
  int64_t shape[4] = {0, parts[0]->shape[1], parts[0]->shape[2], parts[0]->shape[3]};
  for (int i = 0; i < n; i++) {
    const sf_tensor *p = parts[i];
    if (p->ndim != 4 || p->dtype != SF_F32 || p->shape[1] != shape[1] || p->shape[2] != shape[2] || p->shape[3] != shape[3] ||
        !sf_device_eq(sf_device_of(p), sf_device_of(parts[0]))) {
      sf_error("frames_cat: part %d %s %s does not continue f32 frames %s", i, sf_dtype_name(p->dtype),
               sf_shape_str(p, bi, sizeof bi), sf_shape_str(parts[0], b0, sizeof b0));
      return NULL;
    }
    shape[0] += p->shape[0];
  }
  sf_tensor *out = frames_empty(shape, sf_device_of(parts[0]));
  int64_t t = 0;
  for (int i = 0; out && i < n; i++) {
    sf_tensor *dst = sf_narrow(out, 0, t, parts[i]->shape[0]);
    int rc = dst ? sf_raw_copy_(dst, parts[i]) : -1;
    sf_release(dst);
    t += parts[i]->shape[0];
    if (rc) { sf_release(out); out = NULL; }
  }
  return out;
}

int sf_round_bf16_(sf_tensor *t) {
  sf_tensor *h = sf_raw_cast(t, SF_BF16);
  int rc = h ? sf_raw_copy_(t, h) : -1;
  sf_release(h);
  return rc;
}

/* a new f32 tensor holding t's values rounded to bf16 */
static sf_tensor *rounded(sf_tensor *t) {
  sf_tensor *h = sf_raw_cast(t, SF_BF16);
  sf_tensor *r = h ? sf_raw_cast(h, SF_F32) : NULL;
  sf_release(h);
  return r;
}

static int check_f32(const sf_tensor *t, sf_device dev, const char *op, const char *what) {
  char b1[32], b2[32];
  if (t->dtype != SF_F32 || !sf_is_contiguous(t))
    return sf_error("%s: %s must be contiguous f32 (got %s%s)", op, what, sf_dtype_name(t->dtype),
                    sf_is_contiguous(t) ? "" : ", strided");
  if (!sf_device_eq(sf_device_of(t), dev))
    return sf_error("%s: %s is on %s, the input on %s", op, what, sf_device_str(sf_device_of(t), b1, sizeof b1),
                    sf_device_str(dev, b2, sizeof b2));
  return 0;
}

/* what a device without the fused op runs: [zeros | parts] concatenated (and upsampled / padded when asked),
 * laid out [1, C, T, H, W] for the backend's conv3d, and the result turned back to frame-major */
static sf_tensor *conv_frames_composed(const sf_conv_geom *g, int nzero, sf_tensor *const *parts, int nparts, int flags,
                                       sf_tensor *w, sf_tensor *b) {
  sf_scope S = SF_SCOPE_INIT;
  sf_device dev = sf_device_of(parts[0]);
  int64_t C = parts[0]->shape[1], H = parts[0]->shape[2], W = parts[0]->shape[3];
  sf_tensor *list[MAX_PARTS + 1];
  int k = 0;
  if (nzero > 0) list[k++] = SF_OWN(S, sf_zeros(4, (int64_t[]){nzero, C, H, W}, SF_F32, dev));
  for (int i = 0; i < nparts; i++) list[k++] = parts[i];
  sf_tensor *x = k == 1 ? list[0] : SF_OWN(S, sf_raw_cat(list, k, 0));
  int64_t T = x ? x->shape[0] : 0;
  if (flags & SF_CONV_UP2) { /* nearest 2x: every pixel repeated in a 2x2 block */
    sf_tensor *v = SF_OWN(S, x ? sf_view(x, 6, (int64_t[]){T, C, H, 1, W, 1}) : NULL);
    sf_tensor *e = SF_OWN(S, v ? sf_expand(v, 6, (int64_t[]){T, C, H, 2, W, 2}) : NULL);
    x = SF_OWN(S, e ? sf_raw_reshape(e, 4, (int64_t[]){T, C, 2 * H, 2 * W}) : NULL);
    H *= 2, W *= 2;
  }
  int ph = g->pad_top, pw = g->pad_left;
  if (x && (g->pad_top != g->pad_bottom || g->pad_left != g->pad_right)) { /* conv3d pads symmetrically: pad here */
    sf_tensor *z = SF_OWN(S, sf_zeros(4, (int64_t[]){T, C, H + g->pad_top + g->pad_bottom, W + g->pad_left + g->pad_right},
                                      SF_F32, dev));
    sf_tensor *r = SF_OWN(S, z ? sf_narrow(z, 2, g->pad_top, H) : NULL);
    sf_tensor *in = SF_OWN(S, r ? sf_narrow(r, 3, g->pad_left, W) : NULL);
    if (!in || sf_raw_copy_(in, x)) { sf_scope_end(&S); return NULL; }
    x = z, ph = pw = 0;
  }
  sf_tensor *u = SF_OWN(S, x ? sf_unsqueeze(x, 0) : NULL);
  sf_tensor *x5 = SF_OWN(S, u ? sf_permute(u, (int[]){0, 2, 1, 3, 4}) : NULL);
  sf_tensor *w5 = SF_OWN(S, sf_view(w, 5, (int64_t[]){g->cout, g->cin, g->kt, g->kh, g->kw}));
  sf_tensor *bb = b;
  if (flags & SF_CONV_BF16) {
    w5 = SF_OWN(S, w5 ? rounded(w5) : NULL);
    if (b) bb = SF_OWN(S, rounded(b));
  }
  sf_tensor *y = SF_OWN(S, x5 && w5 && (!b || bb) ? sf_conv3d(x5, w5, bb, (int[]){g->st, g->sh, g->sw}, (int[]){0, ph, pw})
                                                   : NULL);
  sf_tensor *y4 = SF_OWN(S, y ? sf_select(y, 0, 0) : NULL);
  sf_tensor *yp = SF_OWN(S, y4 ? sf_permute(y4, (int[]){1, 0, 2, 3}) : NULL);
  sf_tensor *out = SF_OWN(S, yp ? sf_raw_contiguous(yp) : NULL);
  if (out && (flags & SF_CONV_BF16) && sf_round_bf16_(out)) { sf_scope_end(&S); return NULL; }
  return sf_scope_end_keep(&S, out);
}

sf_tensor *sf_conv_frames(const sf_conv_geom *g, int nzero, sf_tensor *const *parts, int nparts, int flags, sf_tensor *w,
                          sf_tensor *b) {
  char bs[64];
  if (nparts < 1 || nparts > MAX_PARTS || nzero < 0) {
    sf_error("conv_frames: %d parts (1 to %d) and %d zero frames", nparts, MAX_PARTS, nzero);
    return NULL;
  }
  sf_device dev = sf_device_of(parts[0]);
  for (int i = 0; i < nparts; i++) {
    const sf_tensor *p = parts[i];
    if (check_f32(p, dev, "conv_frames", "a part")) return NULL;
    if (p->ndim != 4 || p->shape[1] != g->cin || p->shape[2] != parts[0]->shape[2] || p->shape[3] != parts[0]->shape[3]) {
      sf_error("conv_frames: part %d is %s, expected [T, %d, %lld, %lld]", i, sf_shape_str(p, bs, sizeof bs), g->cin,
               (long long)parts[0]->shape[2], (long long)parts[0]->shape[3]);
      return NULL;
    }
  }
  if (check_f32(w, dev, "conv_frames", "the weight") || (b && check_f32(b, dev, "conv_frames", "the bias"))) return NULL;
  if (sf_numel(w) != (int64_t)g->cout * g->cin * g->kt * g->kh * g->kw || (b && sf_numel(b) != g->cout)) {
    sf_error("conv_frames: weight %s / bias do not match a %d -> %d conv of %dx%dx%d", sf_shape_str(w, bs, sizeof bs), g->cin,
             g->cout, g->kt, g->kh, g->kw);
    return NULL;
  }
  const sf_backend *be = sf_backend_for(dev);
  if (!be) return NULL;
  if (be->conv && be->conv->conv_frames && sf_backend_supports(be, SF_CAP_CONV_FRAMES, 0, NULL, parts[0], w))
    return be->conv->conv_frames(g, nzero, parts, nparts, flags, w, b);
  return conv_frames_composed(g, nzero, parts, nparts, flags, w, b);
}

/* F.normalize over channels * sqrt(C) * gamma (then SiLU) from core ops; bf16: every op's output rounded */
static sf_tensor *channel_norm_composed(sf_tensor *x, sf_tensor *gamma, int silu, int bf16) {
  sf_scope S = SF_SCOPE_INIT;
  int64_t C = x->shape[1];
  double eps = bf16 ? (double)sf_bf16_to_f32(sf_f32_to_bf16(1e-12f)) : 1e-12;
#define R(e) (bf16 ? SF_OWN(S, rounded(SF_OWN(S, (e)))) : SF_OWN(S, (e)))
  sf_tensor *sq = SF_OWN(S, sf_raw_mul(x, x));
  sf_tensor *ss = SF_OWN(S, sq ? sf_raw_reduce(SF_RED_SUM, sq, 1, true) : NULL);
  sf_tensor *n = ss ? R(sf_raw_unary(SF_UN_SQRT, ss, 0, 0)) : NULL;
  sf_tensor *nc = SF_OWN(S, n ? sf_raw_unary(SF_UN_CLAMP, n, eps, NAN) : NULL);
  sf_tensor *g = SF_OWN(S, sf_view(gamma, 4, (int64_t[]){1, C, 1, 1}));
  if (bf16) g = SF_OWN(S, g ? rounded(g) : NULL);
  sf_tensor *y = nc ? R(sf_raw_div(x, nc)) : NULL;
  y = y ? R(sf_raw_binary_scalar(SF_BIN_MUL, y, sqrt((double)C), false)) : NULL;
  y = y && g ? R(sf_raw_mul(y, g)) : NULL;
  if (silu) y = y ? R(sf_raw_unary(SF_UN_SILU, y, 0, 0)) : NULL;
#undef R
  return sf_scope_end_keep(&S, y);
}

sf_tensor *sf_channel_norm(sf_tensor *x, sf_tensor *gamma, int silu, int bf16, int inplace) {
  char bs[64];
  if (check_f32(x, sf_device_of(x), "channel_norm", "the input")) return NULL;
  if (x->ndim != 4) {
    sf_error("channel_norm: input %s, expected frames [T, C, H, W]", sf_shape_str(x, bs, sizeof bs));
    return NULL;
  }
  if (check_f32(gamma, sf_device_of(x), "channel_norm", "gamma")) return NULL;
  if (sf_numel(gamma) != x->shape[1]) {
    sf_error("channel_norm: gamma %s for %lld channels", sf_shape_str(gamma, bs, sizeof bs), (long long)x->shape[1]);
    return NULL;
  }
  const sf_backend *be = sf_backend_of(x);
  if (!be) return NULL;
  if (be->nn && be->nn->channel_norm && sf_backend_supports(be, SF_CAP_CHANNEL_NORM, 0, NULL, x, gamma)) {
    sf_tensor *out = inplace ? sf_retain(x) : frames_empty(x->shape, sf_device_of(x));
    if (out && be->nn->channel_norm(out, x, gamma, silu, bf16)) {
      sf_release(out);
      return NULL;
    }
    return out;
  }
  sf_tensor *y = channel_norm_composed(x, gamma, silu, bf16);
  if (!y || !inplace) return y;
  int rc = sf_raw_copy_(x, y);
  sf_release(y);
  return rc ? NULL : sf_retain(x);
}
