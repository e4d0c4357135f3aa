/* vae_model.c — Wan VAE: builds the module lists from the state dict (architecture read from key names
 * and shapes) and runs the chunked encode (1, 4, 4, ... frames) and per-latent-frame decode (spec §7). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/enc_kernels.h"
#include "models/vae_internal.h"

static const float WAN_MEAN[16] = {-0.7571f, -0.7089f, -0.9113f, 0.1075f, -0.1745f, 0.9653f, -0.1517f, 1.5508f,
                                   0.4134f,  -0.0715f, 0.5517f,  -0.3632f, -0.1922f, -0.9497f, 0.2503f, -0.2921f};
static const float WAN_STD[16] = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
                                  3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.9160f};

typedef struct { sf_weight_getter get; void *ctx; char name[160]; } loader;

/* the weights of a f32 checkpoint are used in place (mmap views stay shared with the page cache);
 * other dtypes are converted into an owned copy */
static float *borrow_or_copy(sf_tensor *t, int64_t n, const char *what, sf_tensor **keep) {
  *keep = NULL;
  if (t->dtype == SF_F32 && sf_is_contiguous(t) && sf_device_of(t).type == SF_DEV_CPU && sf_numel(t) == n) {
    *keep = sf_retain(t);
    return sf_data_ptr(t);
  }
  return sf_enc_f32_copy(t, n, what);
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
  int64_t nw = (int64_t)g->cout * g->cin * g->kt * g->kh * g->kw;
  if (!(c->w = borrow_or_copy(w, nw, wn, &c->wt)) || !(c->b = borrow_or_copy(b, g->cout, bn, &c->bt))) return -1;
  return 0;
}

static float *load_gamma(loader *l, const char *name, int *C) {
  sf_tensor *g = l->get(l->ctx, name);
  if (!g) { sf_error("VAE: state dict has no '%s'", name); return NULL; }
  *C = (int)g->shape[0];
  return sf_enc_f32_copy(g, g->shape[0], name);
}

static void conv_free(vconv *c) {
  if (c->wt) sf_release(c->wt); else free(c->w);
  if (c->bt) sf_release(c->bt); else free(c->b);
  c->w = c->b = NULL, c->wt = c->bt = NULL;
}

static void mod_free(vmod *m) {
  free(m->g0), free(m->g1);
  conv_free(&m->c0), conv_free(&m->c1), conv_free(&m->sc), conv_free(&m->qkv), conv_free(&m->proj);
  conv_free(&m->rs), conv_free(&m->tc);
}

static void coder_free(vcoder *c) {
  conv_free(&c->conv1), conv_free(&c->head);
  for (int i = 0; c->mods && i < c->nmods; i++) mod_free(&c->mods[i]);
  for (int i = 0; i < 3; i++) mod_free(&c->mid[i]);
  free(c->mods), free(c->head_g);
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

static void mod_set_bf16(vmod *m, int on) {
  m->bf16 = on;
  m->c0.bf16 = m->c1.bf16 = m->sc.bf16 = m->qkv.bf16 = m->proj.bf16 = m->rs.bf16 = m->tc.bf16 = on;
}

static void coder_set_bf16(vcoder *c, int on) {
  c->bf16 = c->conv1.bf16 = c->head.bf16 = on;
  for (int i = 0; i < c->nmods; i++) mod_set_bf16(&c->mods[i], on);
  for (int i = 0; i < 3; i++) mod_set_bf16(&c->mid[i], on);
}

int sf_vae_set_dtype(sf_vae *v, const char *dtype) {
  int on;
  if (!strcmp(dtype, "f32") || !strcmp(dtype, "float32")) on = 0;
  else if (!strcmp(dtype, "bf16") || !strcmp(dtype, "bfloat16")) on = 1;
  else return sf_error("VAE: compute dtype '%s' is not supported (f32 or bf16)", dtype);
  v->bf16 = on;
  coder_set_bf16(&v->enc, on), coder_set_bf16(&v->dec, on);
  v->conv1.bf16 = v->conv2.bf16 = on;
  return 0;
}

const char *sf_vae_dtype(const sf_vae *v) { return v->bf16 ? "bf16" : "f32"; }

sf_vae *sf_vae_new(sf_weight_getter get, void *ctx, const float *mean, const float *std) {
  sf_vae *v = calloc(1, sizeof *v);
  if (!v) { sf_error("VAE: out of memory"); return NULL; }
  loader l = {get, ctx, {0}};
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

int sf_vae_encode1(sf_vae *v, const float *video, int T, int H, int W, float **latent, int *F_out) {
  int f = spatial_factor(v);
  if (T < 1 || H % f || W % f) return sf_error("VAE encode: %d frames of %dx%d (H and W must be multiples of %d)", T, H, W, f);
  int iters = 1 + (T - 1) / 4, z = v->cfg.z_dim, h = H / f, w = W / f;
  int64_t HW = (int64_t)H * W, lat_fs = (int64_t)2 * z * h * w;
  float *mu2 = malloc(sizeof(float) * lat_fs * iters);
  vstate st = {0};
  if (!mu2 || vstate_init(&st, v->enc.nslots)) { free(mu2); return sf_error("VAE: out of memory"); }
  int rc = 0;
  for (int i = 0; i < iters && rc == 0; i++) {
    int t0 = i == 0 ? 0 : 1 + 4 * (i - 1), nt = i == 0 ? 1 : 4;
    vseq x = {0};
    if ((rc = vseq_alloc(&x, nt, 3, H, W))) break;
    for (int t = 0; t < nt; t++)
      for (int c = 0; c < 3; c++) memcpy(vseq_frame(&x, t) + c * HW, video + ((int64_t)c * T + t0 + t) * HW, sizeof(float) * HW);
    if (v->bf16) /* the pixels as a bf16 tensor */
      for (int64_t k = 0; k < (int64_t)nt * 3 * HW; k++) x.d[k] = vbf(x.d[k]);
    rc = vcoder_forward(&v->enc, &st, &x);
    if (rc == 0 && (x.T != 1 || x.C != 2 * z || x.H != h || x.W != w))
      rc = sf_error("VAE encode: chunk %d gave [%d, %d, %d, %d], expected one latent frame of [%d, %d, %d]", i, x.T, x.C,
                    x.H, x.W, 2 * z, h, w);
    if (rc == 0) memcpy(mu2 + i * lat_fs, x.d, sizeof(float) * lat_fs);
    vseq_free(&x);
  }
  vstate_clear(&st);
  free(st.s);
  if (rc) { free(mu2); return -1; }
  /* conv1 (1x1x1) over all latent frames, keep mu, normalise (mu - mean) * (1 / std) */
  vseq all = {iters, 2 * z, h, w, mu2}, y = {0};
  rc = vconv_apply(&v->conv1, &all, &y);
  free(mu2);
  if (rc) return -1;
  float *out = malloc(sizeof(float) * (int64_t)iters * z * h * w);
  if (!out) { vseq_free(&y); return sf_error("VAE: out of memory"); }
  int64_t hw = (int64_t)h * w;
  for (int t = 0; t < iters; t++)
    for (int c = 0; c < z; c++) {
      float m = v->cfg.mean[c], inv = 1.0f / v->cfg.std[c];
      const float *src = vseq_frame(&y, t) + c * hw;
      float *dst = out + ((int64_t)t * z + c) * hw;
      if (v->bf16) { /* scale = [mean.to(bf16), 1.0 / std.to(bf16)], each op rounded */
        m = vbf(m), inv = vbf(1.0f / vbf(v->cfg.std[c]));
        for (int64_t p = 0; p < hw; p++) dst[p] = vbf(vbf(src[p] - m) * inv);
      } else {
        for (int64_t p = 0; p < hw; p++) dst[p] = (src[p] - m) * inv;
      }
    }
  vseq_free(&y);
  *latent = out;
  *F_out = iters;
  return 0;
}

int sf_vae_decode1(sf_vae *v, const float *latent, int F, int h, int w, int stream, float **video, int *T_out) {
  int z = v->cfg.z_dim, f = spatial_factor(v);
  if (F < 1) return sf_error("VAE decode: no latent frames");
  vstate local = {0}, *st = &local;
  if (stream >= 0) {
    if (stream >= v->nstream) {
      vstate *ns = realloc(v->stream, sizeof(vstate) * (stream + 1));
      if (!ns) return sf_error("VAE: out of memory");
      for (int i = v->nstream; i <= stream; i++) {
        ns[i].s = NULL, ns[i].n = 0;
        if (vstate_init(&ns[i], v->dec.nslots)) { v->stream = ns, v->nstream = i; return -1; }
      }
      v->stream = ns, v->nstream = stream + 1;
    }
    st = &v->stream[stream];
  } else if (vstate_init(&local, v->dec.nslots)) {
    return -1;
  }
  int64_t hw = (int64_t)h * w, H = (int64_t)h * f, W = (int64_t)w * f;
  vseq zs = {0}, x = {0};
  float *out = NULL;
  int rc = vseq_alloc(&zs, F, z, h, w);
  if (rc == 0) {
    for (int t = 0; t < F; t++)
      for (int c = 0; c < z; c++) {
        float m = v->cfg.mean[c], inv = 1.0f / v->cfg.std[c];
        const float *src = latent + ((int64_t)t * z + c) * hw;
        float *dst = vseq_frame(&zs, t) + c * hw;
        if (v->bf16) { /* bf16 latents, scale = [mean.to(bf16), 1.0 / std.to(bf16)], each op rounded */
          m = vbf(m), inv = vbf(1.0f / vbf(v->cfg.std[c]));
          for (int64_t p = 0; p < hw; p++) dst[p] = vbf(vbf(vbf(src[p]) / inv) + m);
        } else {
          for (int64_t p = 0; p < hw; p++) dst[p] = src[p] / inv + m;
        }
      }
    rc = vconv_apply(&v->conv2, &zs, &x);
  }
  vseq_free(&zs);
  /* one latent frame per decoder call: frame 0 of a fresh stream gives 1 pixel frame, the others 4 */
  int cap = 0, nout = 0;
  int64_t pfs = 3 * H * W;
  for (int i = 0; i < F && rc == 0; i++) {
    vseq one = {0};
    if ((rc = vseq_alloc(&one, 1, z, h, w))) break;
    memcpy(one.d, vseq_frame(&x, i), sizeof(float) * z * hw);
    rc = vcoder_forward(&v->dec, st, &one);
    if (rc == 0 && (one.C != 3 || one.H != H || one.W != W))
      rc = sf_error("VAE decode: decoder gave [%d, %d, %d] frames, expected [3, %lld, %lld]", one.C, one.H, one.W,
                    (long long)H, (long long)W);
    if (rc == 0) {
      if (nout + one.T > cap) {
        cap = (nout + one.T) * 2;
        float *no = realloc(out, sizeof(float) * pfs * cap);
        if (!no) rc = sf_error("VAE: out of memory");
        else out = no;
      }
      if (rc == 0) memcpy(out + nout * pfs, one.d, sizeof(float) * pfs * one.T), nout += one.T;
    }
    vseq_free(&one);
  }
  vseq_free(&x);
  if (st == &local) {
    vstate_clear(&local);
    free(local.s);
  }
  if (rc) { free(out); return -1; }
  *video = out;
  *T_out = nout;
  return 0;
}
