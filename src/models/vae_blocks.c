/* vae_blocks.c — forwards of the Wan VAE modules with the reference's per-chunk feature caches
 * (spec §7.2, §7.4): cached causal convs, residual blocks, the middle attention, resamplers. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_pool.h"
#include "core/error.h"
#include "models/enc_kernels.h"
#include "models/vae_internal.h"

int vseq_alloc(vseq *x, int T, int C, int H, int W) {
  x->T = T, x->C = C, x->H = H, x->W = W;
  size_t n = (size_t)T * C * H * W;
  x->d = malloc(sizeof(float) * (n ? n : 1));
  if (!x->d) return sf_error("VAE: out of memory for %d frames of [%d, %d, %d]", T, C, H, W);
  return 0;
}

void vseq_free(vseq *x) {
  free(x->d);
  x->d = NULL;
}

void vstate_clear(vstate *st) {
  for (int i = 0; st->s && i < st->n; i++) {
    free(st->s[i].d);
    memset(&st->s[i], 0, sizeof(vslot));
  }
}

int vstate_init(vstate *st, int nslots) {
  st->s = calloc(nslots ? nslots : 1, sizeof(vslot));
  st->n = nslots;
  if (!st->s) return sf_error("VAE: out of memory");
  return 0;
}

/* up2: the frames are nearest-upsampled 2x on the way into the conv (the decoder's Resample) */
static int run_conv(const vconv *c, const float **list, int nin, int H, int W, int up2, vseq *y) {
  int flags = (up2 ? SF_CONV_UP2 : 0) | (c->bf16 ? SF_CONV_BF16 : 0);
  int To = sf_conv_out_t(&c->g, nin), Ho = sf_conv_out_h(&c->g, up2 ? 2 * H : H), Wo = sf_conv_out_w(&c->g, up2 ? 2 * W : W);
  if (To <= 0 || Ho <= 0 || Wo <= 0) return sf_error("VAE: %d frames of %dx%d are too few for a conv", nin, H, W);
  int64_t n = sf_conv_frames_out_floats(&c->g, nin, H, W, up2);
  y->T = To, y->C = c->g.cout, y->H = Ho, y->W = Wo;
  y->d = malloc(sizeof(float) * (n ? n : 1));
  if (!y->d) return sf_error("VAE: out of memory for %d frames of [%d, %d, %d]", To, c->g.cout, Ho, Wo);
  /* the weights are rearranged per call (parallel, cache-blocked: not measurable in the decode time),
   * not kept: a kept copy cost +290 MB of peak memory on the real-width decoder */
  if (sf_conv3d_frames_f32x(&c->g, list, nin, H, W, flags, c->w, NULL, c->b, y->d)) {
    vseq_free(y);
    return -1;
  }
  return 0;
}

static int vconv_apply_up(const vconv *c, const vseq *x, int up2, vseq *y) {
  int nin = c->causal_t + x->T;
  const float **list = malloc(sizeof(float *) * nin);
  if (!list) return sf_error("VAE: out of memory");
  for (int i = 0; i < nin; i++) list[i] = i < c->causal_t ? NULL : vseq_frame(x, i - c->causal_t);
  int rc = run_conv(c, list, nin, x->H, x->W, up2, y);
  free(list);
  return rc;
}

int vconv_apply(const vconv *c, const vseq *x, vseq *y) { return vconv_apply_up(c, x, 0, y); }

/* the frames a cache slot keeps after seeing x: the last two frames of x, or (one-frame x) the last
 * frame of the old slot (or a zero frame for the decoder's "Rep" marker) followed by x */
static int slot_update(vslot *s, const vseq *x) {
  int64_t fs = (int64_t)x->C * x->H * x->W;
  int keep = x->T < 2 ? x->T : 2;
  int prev = (x->T < 2 && (s->n > 0 || s->rep)) ? 1 : 0;
  float *d = malloc(sizeof(float) * fs * (keep + prev));
  if (!d) return sf_error("VAE: out of memory for a cache slot");
  if (prev) {
    if (s->n > 0) memcpy(d, s->d + (int64_t)(s->n - 1) * fs, sizeof(float) * fs);
    else memset(d, 0, sizeof(float) * fs);
  }
  memcpy(d + prev * fs, vseq_frame(x, x->T - keep), sizeof(float) * fs * keep);
  free(s->d);
  s->d = d, s->n = keep + prev, s->rep = 0;
  s->C = x->C, s->H = x->H, s->W = x->W;
  return 0;
}

/* conv over [zeros][slot frames][x]: the slot replaces as many of the causal zero frames as it holds */
static int conv_with_slot(const vconv *c, const vslot *s, const vseq *x, vseq *y) {
  int n = s->n;
  if (n > 0 && (s->C != x->C || s->H != x->H || s->W != x->W))
    return sf_error("VAE: cached frames [%d, %d, %d] do not match the chunk [%d, %d, %d] (call clear first)", s->C, s->H,
                    s->W, x->C, x->H, x->W);
  int zeros = c->causal_t - n;
  if (zeros < 0) zeros = 0;
  int nin = zeros + n + x->T;
  const float **list = malloc(sizeof(float *) * nin);
  if (!list) return sf_error("VAE: out of memory");
  int64_t fs = (int64_t)x->C * x->H * x->W;
  int k = 0;
  for (int i = 0; i < zeros; i++) list[k++] = NULL;
  for (int i = 0; i < n; i++) list[k++] = s->d + i * fs;
  for (int i = 0; i < x->T; i++) list[k++] = vseq_frame(x, i);
  int rc = run_conv(c, list, nin, x->H, x->W, 0, y);
  free(list);
  return rc;
}

int vconv_cached(const vconv *c, vslot *slot, const vseq *x, vseq *y) {
  if (conv_with_slot(c, slot, x, y)) return -1;
  if (slot_update(slot, x)) {
    vseq_free(y);
    return -1;
  }
  return 0;
}

/* bf16: every op of F.normalize(x) * scale * gamma (then SiLU) rounds its output to bf16, computed in f32
 * from bf16 operands as the CUDA kernels do (the norm summed in f32, the python scalar kept f32) */
static void norm_bf16(const float *f, float *o, int64_t HW, int C, int64_t np, const double *ss, const float *gamma,
                      float scale, int silu) {
  float nrm[256];
  for (int64_t p = 0; p < np; p++) {
    float n = vbf((float)sqrt(ss[p]));
    nrm[p] = n > vbf(1e-12f) ? n : vbf(1e-12f);
  }
  for (int c = 0; c < C; c++) {
    const float *r = f + c * HW;
    float *q = o + c * HW;
    float sg = vbf(gamma[c]);
    for (int64_t p = 0; p < np; p++) {
      float v = vbf(vbf(vbf(r[p] / nrm[p]) * scale) * sg);
      q[p] = silu ? vbf(v / (1.0f + sf_enc_expf(-v))) : v;
    }
  }
}

/* RMS_norm over channels (F.normalize * sqrt(C) * gamma), optionally followed by SiLU; y may be x.
 * Blocks of 256 positions of every frame are shared among the pool's threads. */
typedef struct { const vseq *x; const float *gamma; int silu, bf16; vseq *y; int64_t nblk; } norm_job;

static void norm_worker(void *ctx, int t, int nt) {
  const norm_job *j = ctx;
  const vseq *x = j->x;
  int C = x->C;
  int64_t HW = (int64_t)x->H * x->W, per = (HW + 255) / 256;
  float scale = sqrtf((float)C);
  float inv[256];
  double ss[256];
  for (int64_t blk = j->nblk * t / nt; blk < j->nblk * (t + 1) / nt; blk++) {
    const float *f = vseq_frame(x, (int)(blk / per));
    float *o = vseq_frame(j->y, (int)(blk / per));
    int64_t p0 = (blk % per) * 256, np = HW - p0 < 256 ? HW - p0 : 256;
    for (int64_t p = 0; p < np; p++) ss[p] = 0;
    for (int c = 0; c < C; c++) {
      const float *r = f + c * HW + p0;
      for (int64_t p = 0; p < np; p++) ss[p] += (double)r[p] * r[p];
    }
    if (j->bf16) {
      norm_bf16(f + p0, o + p0, HW, C, np, ss, j->gamma, scale, j->silu);
      continue;
    }
    for (int64_t p = 0; p < np; p++) {
      float n = (float)sqrt(ss[p]);
      inv[p] = scale / (n > 1e-12f ? n : 1e-12f); /* x / max(|x|, eps) * sqrt(C) to ~1 ulp */
    }
    for (int c = 0; c < C; c++) {
      const float *r = f + c * HW + p0;
      float *q = o + c * HW + p0;
      float sg = j->gamma[c];
      if (j->silu) {
        for (int64_t p = 0; p < np; p++) {
          float v = r[p] * inv[p] * sg;
          q[p] = v / (1.0f + sf_enc_expf(-v));
        }
      } else {
        for (int64_t p = 0; p < np; p++) q[p] = r[p] * inv[p] * sg;
      }
    }
  }
}

static void rms_norm(const vseq *x, const float *gamma, int silu, int bf16, vseq *y) {
  int64_t HW = (int64_t)x->H * x->W;
  norm_job j = {x, gamma, silu, bf16, y, (int64_t)x->T * ((HW + 255) / 256)};
  sf_cpu_parallel(sf_cpu_threads((int64_t)x->T * x->C * HW, (int64_t)1 << 16), norm_worker, &j);
}

typedef struct { float *d; const float *s; int64_t n; int bf16; } add_job;

static void add_worker(void *ctx, int t, int nt) {
  const add_job *j = ctx;
  int64_t i0 = j->n * t / nt, i1 = j->n * (t + 1) / nt;
  if (j->bf16)
    for (int64_t i = i0; i < i1; i++) j->d[i] = vbf(j->d[i] + j->s[i]);
  else
    for (int64_t i = i0; i < i1; i++) j->d[i] += j->s[i];
}

/* d += s over n floats (rounded to bf16 when bf16) */
static void add_into(float *d, const float *s, int64_t n, int bf16) {
  add_job j = {d, s, n, bf16};
  sf_cpu_parallel(sf_cpu_threads(n, (int64_t)1 << 17), add_worker, &j);
}

static int res_forward(const vmod *m, vstate *st, vseq *x) {
  vseq h = {0}, a = {0}, b = {0}, c = {0};
  int rc = -1;
  if (m->sc.w && vconv_apply(&m->sc, x, &h)) goto done;
  if (vseq_alloc(&a, x->T, x->C, x->H, x->W)) goto done;
  rms_norm(x, m->g0, 1, m->bf16, &a);
  if (vconv_cached(&m->c0, &st->s[m->slot0], &a, &b)) goto done;
  rms_norm(&b, m->g1, 1, m->bf16, &b);
  if (vconv_cached(&m->c1, &st->s[m->slot1], &b, &c)) goto done;
  const float *id = m->sc.w ? h.d : x->d;
  add_into(c.d, id, (int64_t)c.T * c.C * c.H * c.W, m->bf16);
  vseq_free(x);
  *x = c;
  c.d = NULL;
  rc = 0;
done:
  vseq_free(&h), vseq_free(&a), vseq_free(&b), vseq_free(&c);
  return rc;
}

/* 1x1 conv of one frame [cin][HW] -> out [cout][HW] (bf16 as the conv's flag) */
static int conv1x1_frame(const vconv *c, const float *in, int H, int W, float *out) {
  const float *list[1] = {in};
  return sf_conv3d_frames_f32x(&c->g, list, 1, H, W, c->bf16 ? SF_CONV_BF16 : 0, c->w, NULL, c->b, out);
}

/* single-head attention over the h*w positions of each frame, width C, scale 1/sqrt(C). bf16: q, k, v
 * are bf16 and the attention runs in f32 with one rounding of its output, as a fused SDPA kernel. */
static int attn_forward(const vmod *m, vseq *x) {
  int C = x->C;
  int64_t HW = (int64_t)x->H * x->W;
  float *xn = malloc(sizeof(float) * C * HW), *qkv = malloc(sizeof(float) * 3 * C * HW);
  float *o = malloc(sizeof(float) * C * HW), *S = malloc(sizeof(float) * HW * HW), *pr = malloc(sizeof(float) * C * HW);
  int rc = 0;
  if (!xn || !qkv || !o || !S || !pr) {
    rc = sf_error("VAE: out of memory for attention over %lld positions", (long long)HW);
    goto done;
  }
  for (int t = 0; t < x->T && rc == 0; t++) {
    float *f = vseq_frame(x, t);
    vseq one = {1, C, x->H, x->W, f}, nn = {1, C, x->H, x->W, xn};
    rms_norm(&one, m->g0, 0, m->bf16, &nn);
    if ((rc = conv1x1_frame(&m->qkv, xn, x->H, x->W, qkv))) break;
    const float *q = qkv, *k = qkv + C * HW, *v = qkv + 2 * C * HW;
    /* S[i][j] = q[:, i] . k[:, j] / sqrt(C) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)HW, (int)HW, C, 1.0f / sqrtf((float)C), q, (int)HW, k,
                (int)HW, 0.0f, S, (int)HW);
    sf_enc_softmax_rows(S, HW, HW);
    /* o[c][i] = sum_j v[c][j] S[i][j] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, (int)HW, (int)HW, 1.0f, v, (int)HW, S, (int)HW, 0.0f, o,
                (int)HW);
    if (m->bf16)
      for (int64_t i = 0; i < C * HW; i++) o[i] = vbf(o[i]);
    if ((rc = conv1x1_frame(&m->proj, o, x->H, x->W, pr))) break;
    add_into(f, pr, C * HW, m->bf16);
  }
done:
  free(xn), free(qkv), free(o), free(S), free(pr);
  return rc;
}

static int down_forward(const vmod *m, vstate *st, vseq *x) {
  vseq y = {0};
  if (vconv_apply(&m->rs, x, &y)) return -1;
  vseq_free(x);
  *x = y;
  if (m->kind != VM_DOWN3D) return 0;
  vslot *s = &st->s[m->slot0];
  int64_t fs = (int64_t)x->C * x->H * x->W;
  if (s->n == 0) {
    /* first chunk: remember it and skip the temporal conv (the first frame passes alone) */
    return slot_update(s, &(vseq){1, x->C, x->H, x->W, vseq_frame(x, x->T - 1)});
  }
  int nin = 1 + x->T;
  const float **list = malloc(sizeof(float *) * nin);
  if (!list) return sf_error("VAE: out of memory");
  list[0] = s->d + (int64_t)(s->n - 1) * fs;
  for (int i = 0; i < x->T; i++) list[1 + i] = vseq_frame(x, i);
  vseq z = {0};
  int rc = run_conv(&m->tc, list, nin, x->H, x->W, 0, &z);
  free(list);
  if (rc) return -1;
  /* the slot keeps only x's last frame */
  float *last = malloc(sizeof(float) * fs);
  if (!last) { vseq_free(&z); return sf_error("VAE: out of memory"); }
  memcpy(last, vseq_frame(x, x->T - 1), sizeof(float) * fs);
  free(s->d);
  s->d = last, s->n = 1, s->rep = 0, s->C = x->C, s->H = x->H, s->W = x->W;
  vseq_free(x);
  *x = z;
  return 0;
}

static int up_forward(const vmod *m, vstate *st, vseq *x) {
  if (m->kind == VM_UP3D) {
    vslot *s = &st->s[m->slot0];
    if (s->n == 0 && !s->rep) {
      s->rep = 1; /* first chunk: no temporal upsampling */
    } else {
      vseq y = {0};
      int was_rep = s->rep;
      vslot old = *s;
      /* the new slot is computed from x before the conv; the conv uses the old slot */
      int rc;
      if (was_rep) rc = vconv_apply(&m->tc, x, &y);
      else rc = conv_with_slot(&m->tc, &old, x, &y);
      if (rc) return -1;
      if (slot_update(s, x)) { vseq_free(&y); return -1; }
      /* [T][2C][H][W] is already [2T][C][H][W]: frame 2t = channels 0..C-1, 2t+1 = channels C..2C-1 */
      y.T *= 2, y.C /= 2;
      vseq_free(x);
      *x = y;
    }
  }
  /* nearest 2x (done inside the conv's frame padding, never materialised), then the 3x3 conv halving
   * the channels */
  vseq y = {0};
  if (vconv_apply_up(&m->rs, x, 1, &y)) return -1;
  vseq_free(x);
  *x = y;
  return 0;
}

int vmod_forward(const vmod *m, vstate *st, vseq *x) {
  switch (m->kind) {
    case VM_RES: return res_forward(m, st, x);
    case VM_ATTN: return attn_forward(m, x);
    case VM_DOWN2D:
    case VM_DOWN3D: return down_forward(m, st, x);
    case VM_UP2D:
    case VM_UP3D: return up_forward(m, st, x);
  }
  return sf_error("VAE: unknown module kind");
}

int vcoder_forward(const vcoder *c, vstate *st, vseq *x) {
  vseq y = {0};
  if (vconv_cached(&c->conv1, &st->s[0], x, &y)) return -1;
  vseq_free(x);
  *x = y;
  for (int i = 0; c->middle_first && i < 3; i++)
    if (vmod_forward(&c->mid[i], st, x)) return -1;
  for (int i = 0; i < c->nmods; i++) {
    if (sf_interrupted()) return sf_error("VAE: interrupted");
    if (vmod_forward(&c->mods[i], st, x)) return -1;
  }
  for (int i = 0; !c->middle_first && i < 3; i++)
    if (vmod_forward(&c->mid[i], st, x)) return -1;
  rms_norm(x, c->head_g, 1, c->bf16, x);
  vseq z = {0};
  if (vconv_cached(&c->head, &st->s[c->nslots - 1], x, &z)) return -1;
  vseq_free(x);
  *x = z;
  return 0;
}
