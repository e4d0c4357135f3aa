/* vae_blocks.c — forwards of the Wan VAE modules with the reference's per-chunk feature caches
 * (spec §7.2, §7.4): cached causal convs, residual blocks, the middle attention, resamplers. One forward for
 * every device: frames [T, C, H, W] on the VAE's device through ops/frame_ops.h (the CPU backend's fused
 * frame-list conv and channel norm; composed core ops elsewhere) and the core's matmul/softmax.
 * Ownership: a step's input is released as soon as its output exists, which keeps the peak of a decode at
 * the old hand-managed buffers' (docs/encoders.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/scope.h"
#include "models/vae_internal.h"
#include "ops/frame_ops.h"

void vstate_clear(vstate *st) {
  for (int i = 0; st->s && i < st->n; i++) {
    sf_release(st->s[i].d);
    memset(&st->s[i], 0, sizeof(vslot));
  }
}

int vstate_init(vstate *st, int nslots) {
  st->s = calloc(nslots ? nslots : 1, sizeof(vslot));
  st->n = nslots;
  if (!st->s) return sf_error("VAE: out of memory");
  return 0;
}

static sf_tensor *conv_parts(const vconv *c, int nzero, sf_tensor **parts, int nparts, int up2, int bf16) {
  return sf_conv_frames(&c->g, nzero, parts, nparts, (up2 ? SF_CONV_UP2 : 0) | (bf16 ? SF_CONV_BF16 : 0), c->w, c->b);
}

sf_tensor *vconv_apply(const vconv *c, sf_tensor *x, int up2, int bf16) { return conv_parts(c, c->causal_t, &x, 1, up2, bf16); }

/* a copy of the last frame of t [n, C, H, W] (a view would keep all of t's storage alive) */
static sf_tensor *last_frame(sf_tensor *t) {
  sf_tensor *v = sf_narrow(t, 0, t->shape[0] - 1, 1);
  sf_tensor *c = v ? sf_frames_cat(&v, 1) : NULL;
  sf_release(v);
  return c;
}

/* the frames a cache slot keeps after seeing x: the last two frames of x, or (one-frame x) the last
 * frame of the old slot (or a zero frame for the decoder's "Rep" marker) followed by x */
static int slot_update(vslot *s, sf_tensor *x) {
  int64_t T = x->shape[0], keep = T < 2 ? T : 2;
  int prev = T < 2 && (s->d || s->rep);
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *parts[2];
  int k = 0;
  if (prev)
    parts[k++] = s->d ? SF_OWN(S, sf_narrow(s->d, 0, s->d->shape[0] - 1, 1))
                      : SF_OWN(S, sf_zeros(4, (int64_t[]){1, x->shape[1], x->shape[2], x->shape[3]}, SF_F32, sf_device_of(x)));
  parts[k++] = SF_OWN(S, sf_narrow(x, 0, T - keep, keep));
  sf_tensor *d = S.failed ? NULL : sf_frames_cat(parts, k);
  sf_scope_end(&S);
  if (!d) return -1;
  sf_release(s->d);
  s->d = d, s->rep = 0;
  return 0;
}

/* conv over [zeros][slot frames][x]: the slot replaces as many of the causal zero frames as it holds */
static sf_tensor *conv_with_slot(const vconv *c, const vslot *s, sf_tensor *x, int bf16) {
  char b1[64], b2[64];
  int n = s->d ? (int)s->d->shape[0] : 0;
  if (n > 0 && (s->d->shape[1] != x->shape[1] || s->d->shape[2] != x->shape[2] || s->d->shape[3] != x->shape[3])) {
    sf_error("VAE: cached frames %s do not match the chunk %s (call clear first)", sf_shape_str(s->d, b1, sizeof b1),
             sf_shape_str(x, b2, sizeof b2));
    return NULL;
  }
  sf_tensor *parts[2] = {s->d, x};
  int zeros = c->causal_t - n;
  return n > 0 ? conv_parts(c, zeros > 0 ? zeros : 0, parts, 2, 0, bf16) : conv_parts(c, c->causal_t, &x, 1, 0, bf16);
}

/* the cached causal conv of the reference (CACHE_T = 2) */
static sf_tensor *vconv_cached(const vconv *c, vslot *slot, sf_tensor *x, int bf16) {
  sf_tensor *y = conv_with_slot(c, slot, x, bf16);
  if (y && slot_update(slot, x)) {
    sf_release(y);
    return NULL;
  }
  return y;
}

/* *x := y (the step's input released), or -1 when the step failed (*x kept for the caller to release) */
static int step(sf_tensor **x, sf_tensor *y) {
  if (!y) return -1;
  sf_release(*x);
  *x = y;
  return 0;
}

/* a += b, rounded to bf16 when bf16 */
static int add_(sf_tensor *a, sf_tensor *b, int bf16) {
  if (sf_raw_binary_(SF_BIN_ADD, a, b)) return -1;
  return bf16 ? sf_round_bf16_(a) : 0;
}

static int res_forward(const vmod *m, int bf16, vstate *st, sf_tensor **xp) {
  sf_tensor *x = *xp, *h = NULL, *a = NULL, *b = NULL, *c = NULL;
  int rc = -1;
  if (m->sc.w && !(h = vconv_apply(&m->sc, x, 0, bf16))) goto done;
  if (!(a = sf_channel_norm(x, m->g0, 1, bf16, 0))) goto done;
  b = vconv_cached(&m->c0, &st->s[m->slot0], a, bf16);
  sf_release(a), a = NULL; /* early: the norm's output is as large as x */
  if (!b) goto done;
  sf_tensor *bn = sf_channel_norm(b, m->g1, 1, bf16, 1); /* in place */
  if (!bn) goto done;
  sf_release(bn);
  c = vconv_cached(&m->c1, &st->s[m->slot1], b, bf16);
  sf_release(b), b = NULL;
  if (!c || add_(c, h ? h : x, bf16)) goto done;
  sf_release(x);
  *xp = c, c = NULL;
  rc = 0;
done:
  sf_release(h), sf_release(a), sf_release(b), sf_release(c);
  return rc;
}

/* single-head attention over the h*w positions of each frame, width C, scale 1/sqrt(C). bf16: q, k, v
 * are bf16 and the attention runs in f32 with one rounding of its output, as a fused SDPA kernel. One frame
 * at a time: the [HW, HW] scores of one frame are the largest intermediate. */
static int attn_forward(const vmod *m, int bf16, sf_tensor *x) {
  int64_t T = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  for (int64_t t = 0; t < T; t++) {
    sf_scope S = SF_SCOPE_INIT;
    sf_tensor *f = SF_OWN(S, sf_narrow(x, 0, t, 1));
    sf_tensor *xn = SF_OWN(S, sf_channel_norm(f, m->g0, 0, bf16, 0));
    sf_tensor *qkv = SF_OWN(S, conv_parts(&m->qkv, 0, &xn, 1, 0, bf16));
    sf_tensor *q2 = SF_OWN(S, sf_view(qkv, 2, (int64_t[]){3 * C, H * W}));
    sf_tensor *q = SF_OWN(S, sf_narrow(q2, 0, 0, C)), *k = SF_OWN(S, sf_narrow(q2, 0, C, C));
    sf_tensor *v = SF_OWN(S, sf_narrow(q2, 0, 2 * C, C));
    sf_tensor *qt = SF_OWN(S, sf_transpose(q, 0, 1));
    sf_tensor *s = S.failed ? NULL : sf_raw_matmul(qt, k); /* S[i][j] = q[:, i] . k[:, j] */
    sf_tensor *p = s && !sf_raw_binary_scalar_(SF_BIN_MUL, s, 1.0 / sqrt((double)C)) ? sf_raw_softmax(s, 1, false) : NULL;
    sf_release(s); /* early: [HW, HW] */
    SF_OWN(S, p);
    sf_tensor *pt = SF_OWN(S, sf_transpose(p, 0, 1));
    sf_tensor *o = SF_OWN(S, sf_raw_matmul(v, pt)); /* o[c][i] = sum_j v[c][j] P[i][j] */
    if (o && bf16 && sf_round_bf16_(o)) S.failed = true;
    sf_tensor *o4 = SF_OWN(S, sf_view(o, 4, (int64_t[]){1, C, H, W}));
    sf_tensor *pr = SF_OWN(S, conv_parts(&m->proj, 0, &o4, 1, 0, bf16));
    int rc = pr ? add_(f, pr, bf16) : -1;
    sf_scope_end(&S);
    if (rc) return -1;
  }
  return 0;
}

static int down_forward(const vmod *m, int bf16, vstate *st, sf_tensor **x) {
  if (step(x, vconv_apply(&m->rs, *x, 0, bf16))) return -1;
  if (m->kind != VM_DOWN3D) return 0;
  vslot *s = &st->s[m->slot0];
  if (!s->d) /* first chunk: remember its last frame and skip the temporal conv (the first frame passes alone) */
    return (s->d = last_frame(*x)) ? 0 : -1;
  sf_tensor *prev = sf_narrow(s->d, 0, s->d->shape[0] - 1, 1);
  sf_tensor *parts[2] = {prev, *x};
  sf_tensor *z = prev ? conv_parts(&m->tc, 0, parts, 2, 0, bf16) : NULL;
  sf_tensor *last = z ? last_frame(*x) : NULL; /* the slot keeps only x's last frame */
  sf_release(prev);
  if (!last) { sf_release(z); return -1; }
  sf_release(s->d);
  s->d = last;
  return step(x, z);
}

static int up_forward(const vmod *m, int bf16, vstate *st, sf_tensor **x) {
  if (m->kind == VM_UP3D) {
    vslot *s = &st->s[m->slot0];
    if (!s->d && !s->rep) {
      s->rep = 1; /* first chunk: no temporal upsampling */
    } else {
      /* the conv uses the old slot, the new slot is computed from x */
      sf_tensor *y = s->rep ? vconv_apply(&m->tc, *x, 0, bf16) : conv_with_slot(&m->tc, s, *x, bf16);
      if (!y || slot_update(s, *x)) { sf_release(y); return -1; }
      /* [T][2C][H][W] is already [2T][C][H][W]: frame 2t = channels 0..C-1, 2t+1 = channels C..2C-1 */
      sf_tensor *yv = sf_view(y, 4, (int64_t[]){2 * y->shape[0], y->shape[1] / 2, y->shape[2], y->shape[3]});
      sf_release(y);
      if (step(x, yv)) return -1;
    }
  }
  /* nearest 2x (inside the CPU conv's frame padding, never materialised there), then the 3x3 conv halving
   * the channels */
  return step(x, vconv_apply(&m->rs, *x, 1, bf16));
}

static int vmod_forward(const vmod *m, int bf16, vstate *st, sf_tensor **x) {
  switch (m->kind) {
    case VM_RES: return res_forward(m, bf16, st, x);
    case VM_ATTN: return attn_forward(m, bf16, *x);
    case VM_DOWN2D:
    case VM_DOWN3D: return down_forward(m, bf16, st, x);
    case VM_UP2D:
    case VM_UP3D: return up_forward(m, bf16, st, x);
  }
  return sf_error("VAE: unknown module kind");
}

int vcoder_forward(const vcoder *c, int bf16, vstate *st, sf_tensor **x) {
  if (step(x, vconv_cached(&c->conv1, &st->s[0], *x, bf16))) return -1;
  for (int i = 0; c->middle_first && i < 3; i++)
    if (vmod_forward(&c->mid[i], bf16, st, x)) return -1;
  for (int i = 0; i < c->nmods; i++) {
    if (sf_interrupted()) return sf_error("VAE: interrupted");
    if (vmod_forward(&c->mods[i], bf16, st, x)) return -1;
  }
  for (int i = 0; !c->middle_first && i < 3; i++)
    if (vmod_forward(&c->mid[i], bf16, st, x)) return -1;
  sf_tensor *n = sf_channel_norm(*x, c->head_g, 1, bf16, 1); /* in place */
  if (!n) return -1;
  sf_release(n);
  return step(x, vconv_cached(&c->head, &st->s[c->nslots - 1], *x, bf16));
}
