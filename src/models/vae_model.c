/* vae_model.c — Wan VAE: builds the module lists from the state dict (architecture read from key names
 * and shapes) and runs the chunked encode (1, 4, 4, ... frames) and per-latent-frame decode (spec §7) on the
 * VAE's device (vae_blocks.c: one forward for every device and dtype). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/backend.h"
#include "core/dispatch.h"
#include "core/half.h"
#include "core/scope.h"
#include "ops/frame_ops.h"
#include "models/vae_internal.h"

static const float WAN_MEAN[16] = {-0.7571f, -0.7089f, -0.9113f, 0.1075f, -0.1745f, 0.9653f, -0.1517f, 1.5508f,
                                   0.4134f,  -0.0715f, 0.5517f,  -0.3632f, -0.1922f, -0.9497f, 0.2503f, -0.2921f};
static const float WAN_STD[16] = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
                                  3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.9160f};

typedef struct { sf_weight_getter get; void *ctx; char name[160]; sf_device dev; } loader;

/* t as f32 contiguous on dev: a CPU f32 checkpoint's tensor is used in place (mmap views stay shared with
 * the page cache); other dtypes and devices get a converted copy */
static sf_tensor *f32_on(sf_tensor *t, sf_device dev) {
  if (t->dtype == SF_F32 && sf_is_contiguous(t) && sf_device_eq(sf_device_of(t), dev)) return sf_retain(t);
  sf_tensor *a = sf_raw_cast(t, SF_F32), *c = a ? sf_raw_contiguous(a) : NULL;
  sf_release(a);
  sf_tensor *d = c ? sf_raw_to_device(c, dev) : NULL;
  sf_release(c);
  return d;
}

typedef enum { CV_CAUSAL3, CV_POINT, CV_DOWN2D, CV_UP2D, CV_TIME_DOWN, CV_TIME_UP, CV_1X1_2D } cvkind;

/* loads `<prefix>.weight` / `.bias` into c with the geometry of its role */
static int load_conv(loader *l, const char *prefix, cvkind kind, vconv *c) {
  char wn[200], bn[200], buf[64];
  snprintf(wn, sizeof wn, "%s.weight", prefix);
  snprintf(bn, sizeof bn, "%s.bias", prefix);
  sf_tensor *w = l->get(l->ctx, wn), *b = l->get(l->ctx, bn);
  if (!w) return sf_error("VAE: state dict has no '%s'", wn);
  int want_nd = (kind == CV_DOWN2D || kind == CV_UP2D || kind == CV_1X1_2D) ? 4 : 5;
  if (w->ndim != want_nd) return sf_error("VAE: '%s' has shape %s, expected %d dims", wn, sf_shape_str(w, buf, sizeof buf), want_nd);
  memset(c, 0, sizeof *c);
  sf_conv_geom *g = &c->g;
  g->cout = (int)w->shape[0], g->cin = (int)w->shape[1];
  g->kt = want_nd == 5 ? (int)w->shape[2] : 1;
  g->kh = (int)w->shape[want_nd - 2], g->kw = (int)w->shape[want_nd - 1];
  g->st = g->sh = g->sw = 1;
  switch (kind) {
    case CV_CAUSAL3: c->causal_t = g->kt - 1, g->pad_top = g->pad_bottom = g->kh / 2, g->pad_left = g->pad_right = g->kw / 2; break;
    case CV_POINT: case CV_1X1_2D: break;
    case CV_DOWN2D: g->sh = g->sw = 2, g->pad_bottom = g->pad_right = 1; break;
    case CV_UP2D: g->pad_top = g->pad_bottom = g->pad_left = g->pad_right = 1; break;
    case CV_TIME_DOWN: g->st = 2; break;
    case CV_TIME_UP: c->causal_t = 2; break;
  }
  if (!b || b->ndim != 1 || b->shape[0] != g->cout) return sf_error("VAE: '%s' missing or not [%d]", bn, g->cout);
  if (!(c->w = f32_on(w, l->dev)) || !(c->b = f32_on(b, l->dev))) return -1;
  return 0;
}

/* a norm's gamma ([C], [C, 1, 1] or [C, 1, 1, 1] in the file) as f32 [C] on the device */
static sf_tensor *load_gamma(loader *l, const char *name, int *C) {
  char buf[64];
  sf_tensor *g = l->get(l->ctx, name);
  if (!g) { sf_error("VAE: state dict has no '%s'", name); return NULL; }
  if (g->ndim < 1 || sf_numel(g) != g->shape[0]) {
    sf_error("VAE: '%s' has shape %s, expected [C] (or [C, 1, 1, 1])", name, sf_shape_str(g, buf, sizeof buf));
    return NULL;
  }
  *C = (int)g->shape[0];
  sf_tensor *d = f32_on(g, l->dev);
  sf_tensor *v = d ? sf_view(d, 1, (int64_t[]){*C}) : NULL;
  sf_release(d);
  return v;
}

static void conv_free(vconv *c) {
  sf_release(c->w), sf_release(c->b);
  c->w = c->b = NULL;
}

static void mod_free(vmod *m) {
  sf_release(m->g0), sf_release(m->g1);
  conv_free(&m->c0), conv_free(&m->c1), conv_free(&m->sc), conv_free(&m->qkv), conv_free(&m->proj);
  conv_free(&m->rs), conv_free(&m->tc);
}

static void coder_free(vcoder *c) {
  conv_free(&c->conv1), conv_free(&c->head);
  for (int i = 0; c->mods && i < c->nmods; i++) mod_free(&c->mods[i]);
  for (int i = 0; i < 3; i++) mod_free(&c->mid[i]);
  free(c->mods), sf_release(c->head_g);
}

/* a module at `p` (e.g. "encoder.downsamples.3"): kind from its keys; takes cache slots from *slot */
static int load_mod(loader *l, const char *p, int up, vmod *m, int *slot) {
  char n[200];
  memset(m, 0, sizeof *m);
  int C;
  snprintf(n, sizeof n, "%s.residual.0.gamma", p);
  if (l->get(l->ctx, n)) {
    m->kind = VM_RES;
    if (!(m->g0 = load_gamma(l, n, &m->cin))) return -1;
    snprintf(n, sizeof n, "%s.residual.2", p);
    if (load_conv(l, n, CV_CAUSAL3, &m->c0)) return -1;
    m->cout = m->c0.g.cout;
    snprintf(n, sizeof n, "%s.residual.3.gamma", p);
    if (!(m->g1 = load_gamma(l, n, &C))) return -1;
    snprintf(n, sizeof n, "%s.residual.6", p);
    if (load_conv(l, n, CV_CAUSAL3, &m->c1)) return -1;
    snprintf(n, sizeof n, "%s.shortcut.weight", p);
    if (l->get(l->ctx, n)) {
      snprintf(n, sizeof n, "%s.shortcut", p);
      if (load_conv(l, n, CV_POINT, &m->sc)) return -1;
    } else if (m->cin != m->cout) {
      return sf_error("VAE: %s changes width %d -> %d but has no shortcut", p, m->cin, m->cout);
    }
    m->slot0 = (*slot)++, m->slot1 = (*slot)++;
    return 0;
  }
  snprintf(n, sizeof n, "%s.to_qkv.weight", p);
  if (l->get(l->ctx, n)) {
    m->kind = VM_ATTN;
    snprintf(n, sizeof n, "%s.norm.gamma", p);
    if (!(m->g0 = load_gamma(l, n, &m->cin))) return -1;
    m->cout = m->cin;
    snprintf(n, sizeof n, "%s.to_qkv", p);
    if (load_conv(l, n, CV_1X1_2D, &m->qkv)) return -1;
    snprintf(n, sizeof n, "%s.proj", p);
    if (load_conv(l, n, CV_1X1_2D, &m->proj)) return -1;
    if (m->qkv.g.cout != 3 * m->cin || m->proj.g.cout != m->cin) return sf_error("VAE: %s attention widths do not match", p);
    return 0;
  }
  snprintf(n, sizeof n, "%s.resample.1.weight", p);
  if (l->get(l->ctx, n)) {
    snprintf(n, sizeof n, "%s.resample.1", p);
    if (load_conv(l, n, up ? CV_UP2D : CV_DOWN2D, &m->rs)) return -1;
    m->cin = m->rs.g.cin, m->cout = m->rs.g.cout;
    snprintf(n, sizeof n, "%s.time_conv.weight", p);
    int temporal = l->get(l->ctx, n) != NULL;
    m->kind = up ? (temporal ? VM_UP3D : VM_UP2D) : (temporal ? VM_DOWN3D : VM_DOWN2D);
    if (temporal) {
      snprintf(n, sizeof n, "%s.time_conv", p);
      if (load_conv(l, n, up ? CV_TIME_UP : CV_TIME_DOWN, &m->tc)) return -1;
      m->slot0 = (*slot)++;
    }
    return 0;
  }
  return 1; /* no module here */
}

static int load_coder(loader *l, const char *name, int up, vcoder *c, int *nmods) {
  char p[160];
  int slot = 0;
  snprintf(p, sizeof p, "%s.conv1", name);
  if (load_conv(l, p, CV_CAUSAL3, &c->conv1)) return -1;
  slot = 1;
  c->middle_first = up;
  int cap = 8;
  c->mods = calloc(cap, sizeof(vmod));
  if (!c->mods) return sf_error("VAE: out of memory");
  for (int i = 0;; i++) {
    if (c->nmods == cap) {
      vmod *nm = realloc(c->mods, sizeof(vmod) * cap * 2);
      if (!nm) return sf_error("VAE: out of memory");
      memset(nm + cap, 0, sizeof(vmod) * cap);
      c->mods = nm, cap *= 2;
    }
    snprintf(p, sizeof p, "%s.%s.%d", name, up ? "upsamples" : "downsamples", i);
    int rc = load_mod(l, p, up, &c->mods[c->nmods], &slot);
    if (rc < 0) { mod_free(&c->mods[c->nmods]); return -1; }
    if (rc > 0) break;
    c->nmods++;
  }
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s.middle.%d", name, i);
    int rc = load_mod(l, p, up, &c->mid[i], &slot);
    if (rc) return rc < 0 ? -1 : sf_error("VAE: state dict has no %s.* module", p);
  }
  int C;
  snprintf(p, sizeof p, "%s.head.0.gamma", name);
  if (!(c->head_g = load_gamma(l, p, &C))) return -1;
  snprintf(p, sizeof p, "%s.head.2", name);
  if (load_conv(l, p, CV_CAUSAL3, &c->head)) return -1;
  c->nslots = slot + 1; /* the head's slot is the last one */
  *nmods = c->nmods;
  return 0;
}

void sf_vae_free(sf_vae *v) {
  if (!v) return;
  coder_free(&v->enc), coder_free(&v->dec);
  conv_free(&v->conv1), conv_free(&v->conv2);
  sf_vae_clear_stream(v);
  free(v);
}

const sf_vae_config *sf_vae_config_of(const sf_vae *v) { return &v->cfg; }

int sf_vae_set_dtype(sf_vae *v, const char *dtype) {
  int on;
  if (!strcmp(dtype, "f32") || !strcmp(dtype, "float32")) on = 0;
  else if (!strcmp(dtype, "bf16") || !strcmp(dtype, "bfloat16")) on = 1;
  else return sf_error("VAE: compute dtype '%s' is not supported (f32 or bf16)", dtype);
  v->bf16 = on;
  return 0;
}

const char *sf_vae_dtype(const sf_vae *v) { return v->bf16 ? "bf16" : "f32"; }

sf_vae *sf_vae_new(sf_weight_getter get, void *ctx, const float *mean, const float *std, sf_device dev) {
  if (!sf_backend_for(dev)) return NULL;
  sf_vae *v = calloc(1, sizeof *v);
  if (!v) { sf_error("VAE: out of memory"); return NULL; }
  v->dev = dev;
  loader l = {get, ctx, {0}, dev};
  if (load_conv(&l, "conv1", CV_POINT, &v->conv1) || load_conv(&l, "conv2", CV_POINT, &v->conv2)) goto fail;
  if (load_coder(&l, "encoder", 0, &v->enc, &v->cfg.enc_mods) || load_coder(&l, "decoder", 1, &v->dec, &v->cfg.dec_mods))
    goto fail;
  sf_vae_config *c = &v->cfg;
  c->z_dim = v->conv2.g.cout;
  c->base_dim = v->enc.conv1.g.cout;
  if (c->z_dim > 64) { sf_error("VAE: z_dim %d is larger than supported (64)", c->z_dim); goto fail; }
  if (v->conv1.g.cout != 2 * c->z_dim || v->enc.head.g.cout != 2 * c->z_dim || v->dec.conv1.g.cin != c->z_dim) {
    sf_error("VAE: encoder head / conv1 / conv2 / decoder.conv1 widths disagree on z_dim %d", c->z_dim);
    goto fail;
  }
  if (v->enc.conv1.g.cin != 3 || v->dec.head.g.cout != 3) { sf_error("VAE: expected 3 pixel channels"); goto fail; }
  for (int i = 0; i < v->enc.nmods; i++)
    if (v->enc.mods[i].kind == VM_DOWN2D || v->enc.mods[i].kind == VM_DOWN3D) {
      if (c->n_resample < 8) c->temporal_down[c->n_resample] = v->enc.mods[i].kind == VM_DOWN3D;
      c->n_resample++;
    }
  for (int i = 0; i < c->z_dim; i++) {
    c->mean[i] = mean ? mean[i] : c->z_dim == 16 ? WAN_MEAN[i] : 0.0f;
    c->std[i] = std ? std[i] : c->z_dim == 16 ? WAN_STD[i] : 1.0f;
  }
  return v;
fail:
  sf_vae_free(v);
  return NULL;
}

void sf_vae_clear_stream(sf_vae *v) {
  for (int i = 0; i < v->nstream; i++) {
    vstate_clear(&v->stream[i]);
    free(v->stream[i].s);
  }
  free(v->stream);
  v->stream = NULL, v->nstream = 0;
}

/* every temporal resample halves/doubles time; spatial stride 2 per resample */
static int spatial_factor(const sf_vae *v) { return 1 << v->cfg.n_resample; }

static inline float bf(float x) { return sf_bf16_to_f32(sf_f32_to_bf16(x)); }

/* the wrapper's scale = [mean, 1 / std] as [1, z, 1, 1] tensors on the device; bf16: [mean.to(bf16),
 * 1.0 / std.to(bf16)], each rounded */
static int latent_scale(const sf_vae *v, sf_tensor **mean, sf_tensor **inv) {
  int z = v->cfg.z_dim;
  int64_t shape[4] = {1, z, 1, 1};
  sf_tensor *m = sf_empty(4, shape, SF_F32, sf_cpu()), *s = m ? sf_empty(4, shape, SF_F32, sf_cpu()) : NULL;
  if (!s) { sf_release(m); return -1; }
  float *pm = sf_data_ptr(m), *ps = sf_data_ptr(s);
  for (int c = 0; c < z; c++) {
    pm[c] = v->bf16 ? bf(v->cfg.mean[c]) : v->cfg.mean[c];
    ps[c] = v->bf16 ? bf(1.0f / bf(v->cfg.std[c])) : 1.0f / v->cfg.std[c];
  }
  *mean = sf_raw_to_device(m, v->dev), *inv = *mean ? sf_raw_to_device(s, v->dev) : NULL;
  sf_release(m), sf_release(s);
  if (!*inv) { sf_release(*mean); return -1; }
  return 0;
}

/* op(a, b), rounded to bf16 when the VAE computes in bf16; a is released (a chain of elementwise steps) */
static sf_tensor *ew(const sf_vae *v, sf_binary_op op, sf_tensor *a, sf_tensor *b) {
  sf_tensor *y = a ? sf_raw_binary(op, a, b) : NULL;
  sf_release(a);
  if (y && v->bf16 && sf_round_bf16_(y)) { sf_release(y); return NULL; }
  return y;
}

/* the encoder over one sample's frames [T, 3, H, W] -> normalised latents [F, z, h, w] */
static sf_tensor *encode_one(sf_vae *v, sf_tensor *frames, sf_tensor *mean, sf_tensor *inv) {
  int T = (int)frames->shape[0], iters = 1 + (T - 1) / 4, z = v->cfg.z_dim, f = spatial_factor(v);
  int64_t h = frames->shape[2] / f, w = frames->shape[3] / f;
  sf_tensor **mu2 = calloc((size_t)iters, sizeof *mu2), *all = NULL, *y = NULL, *out = NULL;
  vstate st = {0};
  if (!mu2 || vstate_init(&st, v->enc.nslots)) { free(mu2); sf_error("VAE: out of memory"); return NULL; }
  int rc = 0;
  for (int i = 0; i < iters && rc == 0; i++) {
    char buf[64];
    sf_tensor *x = sf_narrow(frames, 0, i == 0 ? 0 : 1 + 4 * (i - 1), i == 0 ? 1 : 4);
    rc = x ? vcoder_forward(&v->enc, v->bf16, &st, &x) : -1;
    if (rc == 0 && (x->shape[0] != 1 || x->shape[1] != 2 * z || x->shape[2] != h || x->shape[3] != w))
      rc = sf_error("VAE encode: chunk %d gave %s, expected one latent frame of [%d, %lld, %lld]", i,
                    sf_shape_str(x, buf, sizeof buf), 2 * z, (long long)h, (long long)w);
    if (rc == 0) mu2[i] = x;
    else sf_release(x);
  }
  vstate_clear(&st);
  free(st.s);
  /* conv1 (1x1x1) over all latent frames, keep mu, normalise (mu - mean) * (1 / std) */
  if (rc == 0 && (all = iters == 1 ? sf_retain(mu2[0]) : sf_raw_cat(mu2, iters, 0)))
    y = vconv_apply(&v->conv1, all, 0, v->bf16);
  sf_tensor *mu = y ? sf_narrow(y, 1, 0, z) : NULL;
  if (mu) out = ew(v, SF_BIN_MUL, ew(v, SF_BIN_SUB, mu, mean), inv);
  for (int i = 0; i < iters; i++) sf_release(mu2[i]);
  free(mu2);
  sf_release(all), sf_release(y);
  return out;
}

sf_tensor *sf_vae_encode(sf_vae *v, sf_tensor *video) {
  char buf[64];
  int f = spatial_factor(v), z = v->cfg.z_dim;
  if (video->ndim != 5 || video->shape[1] != 3) {
    sf_error("vae:encode expects video [B, 3, T, H, W], got %s", sf_shape_str(video, buf, sizeof buf));
    return NULL;
  }
  int64_t B = video->shape[0], T = video->shape[2], H = video->shape[3], W = video->shape[4];
  if (B < 1 || T < 1 || H < 1 || W < 1 || H % f || W % f) {
    if (B < 1) { sf_error("VAE encode: an empty batch (B = 0)"); return NULL; }
    sf_error("VAE encode: %lld frames of %lldx%lld (H and W must be multiples of %d)", (long long)T, (long long)H,
             (long long)W, f);
    return NULL;
  }
  sf_tensor *vid = f32_on(video, v->dev), *mean = NULL, *inv = NULL, *out = NULL;
  if (!vid || latent_scale(v, &mean, &inv)) goto done;
  out = sf_empty(5, (int64_t[]){B, 1 + (T - 1) / 4, z, H / f, W / f}, SF_F32, v->dev);
  for (int64_t b = 0; out && b < B; b++) {
    sf_scope S = SF_SCOPE_INIT;
    sf_tensor *xb = SF_OWN(S, sf_select(vid, 0, b));
    sf_tensor *xp = SF_OWN(S, xb ? sf_permute(xb, (int[]){1, 0, 2, 3}) : NULL);
    sf_tensor *frames = SF_OWN(S, xp ? sf_raw_clone(xp) : NULL); /* [T, 3, H, W]: the pixels as frames */
    if (frames && v->bf16 && sf_round_bf16_(frames)) S.failed = true;
    sf_tensor *lat = SF_OWN(S, frames ? encode_one(v, frames, mean, inv) : NULL);
    sf_tensor *dst = SF_OWN(S, lat ? sf_select(out, 0, b) : NULL);
    int rc = dst ? sf_raw_copy_(dst, lat) : -1;
    sf_scope_end(&S);
    if (rc) { sf_release(out); out = NULL; }
  }
done:
  sf_release(vid), sf_release(mean), sf_release(inv);
  return out;
}

/* the decode state of a stream (grown on first use) */
static vstate *stream_state(sf_vae *v, int stream) {
  if (stream >= v->nstream) {
    vstate *ns = realloc(v->stream, sizeof(vstate) * (stream + 1));
    if (!ns) { sf_error("VAE: out of memory"); return NULL; }
    v->stream = ns;
    for (int i = v->nstream; i <= stream; i++) {
      ns[i].s = NULL, ns[i].n = 0;
      if (vstate_init(&ns[i], v->dec.nslots)) return NULL;
      v->nstream = i + 1;
    }
  }
  return &v->stream[stream];
}

/* one sample's latents [F, z, h, w] -> the decoder's outputs, one per latent frame ([1 or 4, 3, H, W] each),
 * in parts[0..F); the total frame count in *T_out */
static int decode_one(sf_vae *v, sf_tensor *lat, vstate *st, sf_tensor *mean, sf_tensor *inv, sf_tensor **parts, int64_t *T_out) {
  char buf[64];
  int64_t F = lat->shape[0], f = spatial_factor(v), H = lat->shape[2] * f, W = lat->shape[3] * f;
  sf_tensor *l = v->bf16 ? sf_raw_clone(lat) : sf_retain(lat);
  if (l && v->bf16 && sf_round_bf16_(l)) { sf_release(l); return -1; } /* bf16 latents */
  sf_tensor *zs = ew(v, SF_BIN_ADD, ew(v, SF_BIN_DIV, l, inv), mean);
  sf_tensor *x = zs ? vconv_apply(&v->conv2, zs, 0, v->bf16) : NULL;
  sf_release(zs);
  if (!x) return -1;
  int rc = 0;
  *T_out = 0;
  /* one latent frame per decoder call: frame 0 of a fresh stream gives 1 pixel frame, the others 4 */
  for (int64_t i = 0; i < F && rc == 0; i++) {
    sf_tensor *one = sf_narrow(x, 0, i, 1);
    rc = one ? vcoder_forward(&v->dec, v->bf16, st, &one) : -1;
    if (rc == 0 && (one->shape[1] != 3 || one->shape[2] != H || one->shape[3] != W))
      rc = sf_error("VAE decode: decoder gave %s frames, expected [T, 3, %lld, %lld]", sf_shape_str(one, buf, sizeof buf),
                    (long long)H, (long long)W);
    if (rc == 0) parts[i] = one, *T_out += one->shape[0];
    else sf_release(one);
  }
  sf_release(x);
  return rc;
}

sf_tensor *sf_vae_decode(sf_vae *v, sf_tensor *latents, int streaming) {
  char buf[64];
  int z = v->cfg.z_dim, f = spatial_factor(v);
  if (latents->ndim != 5 || latents->shape[2] != z) {
    sf_error("vae:decode expects latents [B, F, %d, h, w], got %s", z, sf_shape_str(latents, buf, sizeof buf));
    return NULL;
  }
  int64_t B = latents->shape[0], F = latents->shape[1], h = latents->shape[3], w = latents->shape[4];
  if (B < 1 || F < 1 || h < 1 || w < 1) {
    sf_error("VAE decode: latents %s have no frames, rows or columns", sf_shape_str(latents, buf, sizeof buf));
    return NULL;
  }
  sf_tensor *lat = f32_on(latents, v->dev), *mean = NULL, *inv = NULL, *out = NULL;
  sf_tensor **parts = calloc((size_t)F, sizeof *parts);
  if (!parts) sf_error("VAE: out of memory");
  if (!parts || !lat || latent_scale(v, &mean, &inv)) goto fail;
  for (int64_t b = 0; b < B; b++) {
    vstate local = {0}, *st = streaming ? stream_state(v, (int)b) : &local;
    if (!st || (!streaming && vstate_init(&local, v->dec.nslots))) goto fail;
    sf_tensor *lb = sf_select(lat, 0, b);
    int64_t T = 0;
    int rc = lb ? decode_one(v, lb, st, mean, inv, parts, &T) : -1;
    sf_release(lb);
    if (!streaming) vstate_clear(&local), free(local.s);
    if (rc) goto fail;
    if (!out && !(out = sf_empty(5, (int64_t[]){B, T, 3, h * f, w * f}, SF_F32, v->dev))) goto fail;
    if (out->shape[1] != T) {
      sf_error("vae:decode_chunk: samples of the batch are at different stream positions (call reset)");
      goto fail;
    }
    /* clamped to [-1, 1] into the result, each part released as soon as it is copied */
    int64_t t = 0;
    for (int64_t i = 0; i < F; i++) {
      sf_scope S = SF_SCOPE_INIT;
      sf_tensor *c = SF_OWN(S, sf_raw_unary(SF_UN_CLAMP, parts[i], -1.0, 1.0));
      sf_tensor *ob = SF_OWN(S, sf_select(out, 0, b));
      sf_tensor *dst = SF_OWN(S, ob ? sf_narrow(ob, 0, t, parts[i]->shape[0]) : NULL);
      rc = c && dst ? sf_raw_copy_(dst, c) : -1;
      t += parts[i]->shape[0];
      sf_scope_end(&S);
      sf_release(parts[i]), parts[i] = NULL;
      if (rc) goto fail;
    }
  }
  goto done;
fail:
  sf_release(out), out = NULL;
done:
  for (int64_t i = 0; parts && i < F; i++) sf_release(parts[i]);
  free(parts);
  sf_release(lat), sf_release(mean), sf_release(inv);
  return out;
}
