/* test_wan_ref.c — Wan DiT parity with the PyTorch transcription (tests/ref/wan_ref.py) on tiny configs:
 * bidirectional T2V (batch 2) and I2V, causal block-mask training path (plain, independent first frame,
 * local window), KV-cache inference (global, window + sink with eviction, I2V through the cache), and
 * the frame-level attention captures of every call; plus bit-identical outputs with captures on/off. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "core/nn.h"
#include "core/ops.h"
#include "models/wan.h"
#include "sf_test.h"

/* ---- a tiny safetensors reader (F32 only) for the reference files ---- */
typedef struct {
  int n;
  char **names;
  sf_tensor **ts;
} tdict;

static void td_free(tdict *d) {
  for (int i = 0; i < d->n; i++) free(d->names[i]), sf_release(d->ts[i]);
  free(d->names), free(d->ts);
  memset(d, 0, sizeof *d);
}

static char *slurp(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
  s[n] = 0;
  fclose(f);
  if (len) *len = n;
  return s;
}

static int st_read(const char *path, tdict *d) {
  long len;
  char *buf = slurp(path, &len);
  memset(d, 0, sizeof *d);
  if (!buf) return -1;
  uint64_t hl;
  memcpy(&hl, buf, 8);
  char *hdr = malloc(hl + 1);
  memcpy(hdr, buf + 8, hl);
  hdr[hl] = 0;
  cJSON *j = cJSON_Parse(hdr);
  int n = cJSON_GetArraySize(j);
  d->names = calloc((size_t)n, sizeof(char *));
  d->ts = calloc((size_t)n, sizeof(sf_tensor *));
  cJSON *e;
  cJSON_ArrayForEach(e, j) {
    if (!strcmp(e->string, "__metadata__")) continue;
    cJSON *sh = cJSON_GetObjectItem(e, "shape"), *off = cJSON_GetObjectItem(e, "data_offsets");
    int64_t shape[8];
    int nd = cJSON_GetArraySize(sh);
    for (int i = 0; i < nd; i++) shape[i] = (int64_t)cJSON_GetArrayItem(sh, i)->valuedouble;
    sf_tensor *t = sf_empty(nd, shape, SF_F32, sf_cpu());
    long o0 = (long)cJSON_GetArrayItem(off, 0)->valuedouble;
    memcpy(sf_data_ptr(t), buf + 8 + hl + o0, sizeof(float) * (size_t)sf_numel(t));
    d->names[d->n] = strdup(e->string);
    d->ts[d->n++] = t;
  }
  cJSON_Delete(j);
  free(hdr), free(buf);
  return 0;
}

static sf_tensor *td_get(tdict *d, const char *name) {
  for (int i = 0; i < d->n; i++)
    if (!strcmp(d->names[i], name)) return d->ts[i];
  return NULL;
}

/* max |a-b| / max |b| over finite entries; NaN positions must agree (else returns +inf) */
static double rel_err(sf_tensor *a, sf_tensor *b) {
  if (!a || !b || sf_numel(a) != sf_numel(b)) return INFINITY;
  sf_tensor *ah = sf_to_device(a, sf_cpu()), *bh = sf_to_device(b, sf_cpu());
  sf_tensor *ac = sf_contiguous(ah), *bc = sf_contiguous(bh);
  sf_release(ah), sf_release(bh);
  sf_tensor *af = sf_cast(ac, SF_F32), *bf = sf_cast(bc, SF_F32);
  const float *x = sf_data_ptr(af), *y = sf_data_ptr(bf);
  double md = 0, mb = 0;
  for (int64_t i = 0; i < sf_numel(af); i++) {
    if (isnan(x[i]) != isnan(y[i])) { md = INFINITY; break; }
    if (isnan(y[i])) continue;
    md = fmax(md, fabs((double)x[i] - y[i]));
    mb = fmax(mb, fabs((double)y[i]));
  }
  sf_release(ac), sf_release(bc), sf_release(af), sf_release(bf);
  return md / (mb > 0 ? mb : 1);
}

static double worst = 0;
static bool g_emu;
#define TOL 1e-4
static void expect_close(sf_tensor *a, sf_tensor *b, const char *what, const char *cs) {
  double e = rel_err(a, b);
  if (e > worst && isfinite(e)) worst = e;
  if (!(e <= TOL)) {
    fprintf(stderr, "  %s: %s relative error %.3g > %g\n", cs, what, e, TOL);
    sf_test_case_failed = 1;
  }
}

static const char *WHAT[3] = {"logits", "probs", "mass"};

/* runs one reference case end to end */
static void run_case_on(const char *cs, const char *dir, sf_device dev) {
  char path[700];
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  char *mtext = slurp(path, NULL);
  cJSON *man = cJSON_Parse(mtext);
  free(mtext);
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *ctext = slurp(path, NULL);
  sf_wan_config c;
  sf_wan_config_defaults(&c);
  CHECK(sf_wan_config_parse(&c, ctext, path) == 0);
  free(ctext);
  cJSON *causal = cJSON_GetObjectItem(man, "causal");
  if (cJSON_GetArraySize(causal) > 0) {
    c.causal = true;
    c.num_frame_per_block = (int64_t)cJSON_GetObjectItem(causal, "num_frame_per_block")->valuedouble;
    c.independent_first_frame = cJSON_IsTrue(cJSON_GetObjectItem(causal, "independent_first_frame"));
    c.local_attn_size = (int64_t)cJSON_GetObjectItem(causal, "local_attn_size")->valuedouble;
    c.sink_size = (int64_t)cJSON_GetObjectItem(causal, "sink_size")->valuedouble;
  }
  tdict w, d;
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
  CHECK(st_read(path, &w) == 0);
  snprintf(path, sizeof path, "%s/data.safetensors", dir);
  CHECK(st_read(path, &d) == 0);
  sf_tensor *cw = td_get(&w, "img_emb.proj.0.weight");
  if (cw) c.clip_dim = cw->shape[0];
  sf_wan_model *m = sf_wan_new(&c, SF_F32, sf_cpu(), false);
  char dn[32];
  sf_device_str(dev, dn, sizeof dn);
  CHECK(m != NULL);
  if (!m) return;
  CHECK(sf_wan_load_tensors(m, w.n, (const char *const *)w.names, w.ts, true) == 0);
  CHECK(sf_wan_to(m, dev, SF_F32) == 0);
  /* captures: self and cross, three quantities, all layers */
  bool all[64];
  for (int i = 0; i < 64; i++) all[i] = true;
  sf_wan_capture *caps[2][3];
  for (int x = 0; x < 2; x++)
    for (int q = 0; q < 3; q++) caps[x][q] = sf_wan_capture_add(m, all, x == 1, (sf_cap_what)q, SF_CAP_FRAME, NULL);
  const bool i2v = !strcmp(c.model_type, "i2v");
  sf_tensor *ctx = td_get(&d, "context"), *clip = td_get(&d, "clip_fea");
  cJSON *calls = cJSON_GetObjectItem(man, "calls");
  const int B = (int)cJSON_GetObjectItem(man, "B")->valuedouble, F = (int)cJSON_GetObjectItem(man, "F")->valuedouble;
  sf_wan_kv *kv = NULL;
  sf_wan_xcache *xc = NULL;
  cJSON *call;
  int ci = 0;
  cJSON_ArrayForEach(call, calls) {
    sf_wan_fwd_opts o;
    sf_wan_fwd_opts_init(&o);
    cJSON *st = cJSON_GetObjectItem(call, "start");
    if (st) {
      cJSON *kvf = cJSON_GetObjectItem(man, "kv_frames");
      if (!kv) kv = sf_wan_kv_new(m, B, kvf ? (int64_t)kvf->valuedouble : F, 0), xc = sf_wan_xcache_new(m);
      o.kv = kv, o.xcache = xc, o.start_frame = (int64_t)st->valuedouble;
      o.tag.chunk = (int64_t)cJSON_GetObjectItem(call, "chunk")->valuedouble;
      o.tag.step = (int64_t)cJSON_GetObjectItem(call, "step")->valuedouble;
      snprintf(o.tag.pass, sizeof o.tag.pass, "%s", cJSON_GetObjectItem(call, "pass")->valuestring);
    }
    if (i2v) {
      o.clip_fea = clip;
      cJSON *yk = cJSON_GetObjectItem(call, "y");
      o.y = td_get(&d, yk ? yk->valuestring : "y");
    }
    sf_tensor *x = td_get(&d, cJSON_GetObjectItem(call, "x")->valuestring);
    sf_tensor *t = td_get(&d, cJSON_GetObjectItem(call, "t")->valuestring);
    sf_tensor *ref = td_get(&d, cJSON_GetObjectItem(call, "out")->valuestring);
    sf_tensor *out = sf_wan_forward(m, x, t, ctx, &o);
    CHECK(out != NULL);
    char what[160];
    snprintf(what, sizeof what, "%s call %d output", dn, ci);
    if (out) expect_close(out, ref, what, cs);
    sf_release(out);
    if (kv) {
      CHECK(kv->global_end[0] == (int64_t)cJSON_GetObjectItem(call, "global_end")->valuedouble * 1);
      CHECK(kv->local_end[0] == (int64_t)cJSON_GetObjectItem(call, "local_end")->valuedouble);
    }
    /* this call's captures */
    const char *cp = cJSON_GetObjectItem(call, "cap")->valuestring;
    for (int L = 0; L < c.num_layers; L++)
      for (int q = 0; q < 3; q++)
        for (int x2 = 0; x2 < 2; x2++) {
          sf_cap_query cq = {L, o.tag.step, o.tag.chunk, ""};
          snprintf(cq.pass, sizeof cq.pass, "%s", o.tag.pass);
          sf_tensor *got = sf_wan_capture_result(caps[x2][q], &cq, NULL);
          char key[200];
          snprintf(key, sizeof key, "%sL%d_%s_%s", cp, L, x2 ? "cross" : "self", WHAT[q]);
          sf_tensor *rf = td_get(&d, key);
          sf_tensor *rf_img = NULL;
          if (x2 && i2v) {
            /* reference: text and image halves separately; ours: one [H, Fq, n_img + text_len] map */
            snprintf(key, sizeof key, "%sL%d_cross_img_%s", cp, L, WHAT[q]);
            rf_img = td_get(&d, key);
            sf_tensor *merged = sf_clone(rf);
            float *mp = sf_data_ptr(merged);
            const float *ip = sf_data_ptr(rf_img);
            for (int64_t i = 0; i < sf_numel(merged); i++)
              if (isnan(mp[i])) mp[i] = ip[i];
            snprintf(what, sizeof what, "call %d L%d cross %s capture", ci, L, WHAT[q]);
            CHECK(got != NULL);
            if (got) expect_close(got, merged, what, cs);
            sf_release(merged);
          } else {
            snprintf(what, sizeof what, "call %d L%d %s %s capture", ci, L, x2 ? "cross" : "self", WHAT[q]);
            CHECK(got != NULL && rf != NULL);
            if (got && rf) expect_close(got, rf, what, cs);
          }
          sf_release(got);
        }
    if (kv)
      for (int x2 = 0; x2 < 2; x2++)
        for (int q = 0; q < 3; q++) sf_wan_capture_reset(caps[x2][q]);
    ci++;
  }
  if (kv) {
    for (int L = 0; L < c.num_layers; L++) {
      char key[64];
      snprintf(key, sizeof key, "cache_k_%d", L);
      sf_tensor *kk = sf_narrow(kv->k[L], 1, 0, kv->local_end[L]);
      expect_close(kk, td_get(&d, key), "cache keys", cs);
      sf_release(kk);
      snprintf(key, sizeof key, "cache_v_%d", L);
      kk = sf_narrow(kv->v[L], 1, 0, kv->local_end[L]);
      expect_close(kk, td_get(&d, key), "cache values", cs);
      sf_release(kk);
    }
  }
  for (int x = 0; x < 2; x++)
    for (int q = 0; q < 3; q++) sf_wan_capture_free(caps[x][q]);
  sf_wan_kv_free(kv);
  sf_wan_xcache_free(xc);
  sf_wan_free(m);
  td_free(&w), td_free(&d);
  cJSON_Delete(man);
}

static char g_base[512];
static const char *ALL_CASES = "t2v_bidir,i2v_bidir,train,train_indep,train_local,kv,kv_b1,kv_b2,kv_b3,kv_i2v";

/* the reference data of every case, made by one python run (torch imports once) */
static int make_refs(const char *cases) {
  char cmd[1400];
  const char *tmp = getenv("SFWB_TEST_TMP") ? getenv("SFWB_TEST_TMP") : "/tmp";
  snprintf(g_base, sizeof g_base, "%s/wanref-%d", tmp, (int)getpid());
  /* the interpreter with torch: $SFWB_PYTHON as sfwb.testing's (a GPU machine's torch lives in a venv) */
  const char *py = getenv("SFWB_PYTHON") && *getenv("SFWB_PYTHON") ? getenv("SFWB_PYTHON") : "/usr/bin/python3";
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && '%s' tests/ref/wan_ref.py %s,%s '%s'", tmp, py, cases, "t2v_bidir", g_base);
  if (system(cmd) != 0) {
    fprintf(stderr, "reference script failed: %s\n", cmd);
    return -1;
  }
  return 0;
}

static void run_case(const char *cs) {
  char dir[700];
  snprintf(dir, sizeof dir, "%s/%s", g_base, cs);
  run_case_on(cs, dir, sf_cpu());
  if (g_emu) {
    sf_device e;
    sf_device_parse(sf_test_device_name(), &e);
    run_case_on(cs, dir, e);
  }
}

static void t2v_bidir(void) { run_case("t2v_bidir"); }
static void i2v_bidir(void) { run_case("i2v_bidir"); }
static void train_block_causal(void) { run_case("train"); }
static void train_independent_first_frame(void) { run_case("train_indep"); }
static void train_local_window(void) { run_case("train_local"); }
static void kv_global(void) { run_case("kv"); }
static void kv_window_sink_b1(void) { run_case("kv_b1"); }
static void kv_window_sink_b2(void) { run_case("kv_b2"); }
static void kv_i2v(void) { run_case("kv_i2v"); }
static void kv_extension_rope_offset_b3(void) { run_case("kv_b3"); }

/* the output must not change by a single bit when captures are attached (all paths) */
static void capture_keeps_output_bits(void) {
  sf_wan_config c;
  sf_wan_config_defaults(&c);
  c.dim = 48, c.ffn_dim = 64, c.num_heads = 4, c.num_layers = 2, c.text_dim = 24, c.text_len = 8, c.freq_dim = 32;
  c.causal = true, c.num_frame_per_block = 2;
  sf_manual_seed(7);
  sf_wan_model *m = sf_wan_new(&c, SF_F32, sf_cpu(), true);
  CHECK(m != NULL);
  if (!m) return;
  int64_t xs[5] = {1, 16, 4, 4, 6}, ts[2] = {1, 4}, cs[3] = {1, 5, 24};
  sf_tensor *x = sf_randn(5, xs, SF_F32, sf_cpu()), *t = sf_full(2, ts, 500.0, SF_F32, sf_cpu()), *ctx = sf_randn(3, cs, SF_F32, sf_cpu());
  for (int mode = 0; mode < 2; mode++) {
    sf_tensor *outs[2];
    for (int on = 0; on < 2; on++) {
      bool all[2] = {true, true};
      sf_wan_capture *cap[2] = {NULL, NULL};
      if (on) cap[0] = sf_wan_capture_add(m, all, false, SF_CAP_MASS, SF_CAP_FRAME, NULL), cap[1] = sf_wan_capture_add(m, all, true, SF_CAP_PROBS, SF_CAP_QUERY_MEAN, NULL);
      sf_wan_fwd_opts o;
      sf_wan_fwd_opts_init(&o);
      sf_wan_kv *kv = NULL;
      if (mode == 1) kv = sf_wan_kv_new(m, 1, 4, 0), o.kv = kv, o.start_frame = 0;
      outs[on] = sf_wan_forward(m, x, t, ctx, &o);
      CHECK(outs[on] != NULL);
      if (on) {
        /* mass rows sum to one over the visible key frames */
        sf_cap_query q = {1, -1, -1, ""};
        sf_tensor *A = sf_wan_capture_result(cap[0], &q, NULL);
        CHECK(A != NULL);
        if (A) {
          const float *a = sf_data_ptr(A);
          for (int64_t r = 0; r < A->shape[0] * A->shape[1]; r++) {
            double s = 0;
            for (int64_t k = 0; k < A->shape[2]; k++) if (!isnan(a[r * A->shape[2] + k])) s += a[r * A->shape[2] + k];
            CHECK_NEAR(s, 1.0, 1e-5);
          }
          /* block-causal: frame 0 (block 0) cannot see frame 2 -> NaN, never 0 */
          if (mode == 0) CHECK(isnan(a[0 * 4 + 2]));
        }
        sf_release(A);
        sf_wan_capture_remove(cap[0]), sf_wan_capture_remove(cap[1]);
        sf_wan_capture_free(cap[0]), sf_wan_capture_free(cap[1]);
      }
      sf_wan_kv_free(kv);
    }
    if (outs[0] && outs[1]) CHECK(memcmp(sf_data_ptr(outs[0]), sf_data_ptr(outs[1]), sizeof(float) * (size_t)sf_numel(outs[0])) == 0);
    sf_release(outs[0]), sf_release(outs[1]);
  }
  sf_release(x), sf_release(t), sf_release(ctx);
  sf_wan_free(m);
}

/* hand-checked capture: one head, two frames of one token, known q/k */
static void capture_hand_checked(void) {
  int64_t s4[4] = {1, 2, 1, 6};
  sf_tensor *q = sf_zeros(4, s4, SF_F32, sf_cpu()), *k = sf_zeros(4, s4, SF_F32, sf_cpu()), *v = sf_zeros(4, s4, SF_F32, sf_cpu());
  float *qp = sf_data_ptr(q), *kp = sf_data_ptr(k);
  qp[0] = 1, qp[6] = 2;          /* q0 = e0, q1 = 2 e0 */
  kp[0] = 1, kp[6 + 1] = 1;      /* k0 = e0, k1 = e1 */
  int64_t cshape[3] = {1, 2, 2};
  sf_tensor *cl = sf_zeros(3, cshape, SF_F32, sf_cpu()), *cp = sf_zeros(3, cshape, SF_F32, sf_cpu());
  sf_attn_desc d;
  memset(&d, 0, sizeof d);
  sf_tensor *tl = sf_zeros(3, cshape, SF_F32, sf_cpu()), *tp = sf_zeros(3, cshape, SF_F32, sf_cpu());
  d.scale = 1.0, d.q_group = 1, d.k_group = 1, d.cap_logits = cl, d.cap_probs = cp;
  d.tq0 = 0, d.tq1 = 2, d.tk0 = 0, d.tk1 = 2, d.tok_logits = tl, d.tok_probs = tp;
  sf_tensor *o = sf_attention(q, k, v, &d, NULL);
  CHECK(o != NULL);
  const float *TL = sf_data_ptr(tl), *TP = sf_data_ptr(tp);
  CHECK_NEAR(TL[0], 1.0, 1e-6); CHECK_NEAR(TL[1], 0.0, 1e-6); CHECK_NEAR(TL[2], 2.0, 1e-6); CHECK_NEAR(TL[3], 0.0, 1e-6);
  CHECK_NEAR(TP[0], exp(1) / (exp(1) + 1), 1e-6); CHECK_NEAR(TP[3], 1 / (exp(2) + 1), 1e-6);
  sf_release(tl), sf_release(tp);
  const float *L = sf_data_ptr(cl), *P = sf_data_ptr(cp);
  /* logits: q0.k0 = 1, q0.k1 = 0, q1.k0 = 2, q1.k1 = 0 */
  CHECK_NEAR(L[0], 1.0, 1e-6); CHECK_NEAR(L[1], 0.0, 1e-6); CHECK_NEAR(L[2], 2.0, 1e-6); CHECK_NEAR(L[3], 0.0, 1e-6);
  CHECK_NEAR(P[0], exp(1) / (exp(1) + 1), 1e-6); CHECK_NEAR(P[1], 1 / (exp(1) + 1), 1e-6);
  CHECK_NEAR(P[2], exp(2) / (exp(2) + 1), 1e-6); CHECK_NEAR(P[3], 1 / (exp(2) + 1), 1e-6);
  sf_release(o), sf_release(q), sf_release(k), sf_release(v), sf_release(cl), sf_release(cp);
}

/* token-level values reduce to the frame-level ones (random q/k/v, 2 heads, 3 frames of 4 tokens) */
static void tokens_match_frames_on(sf_device dev) {
  sf_manual_seed(3);
  int64_t s4[4] = {1, 12, 2, 8}, c3[3] = {2, 3, 3};
  sf_tensor *q = sf_randn(4, s4, SF_F32, dev), *k = sf_randn(4, s4, SF_F32, dev), *v = sf_randn(4, s4, SF_F32, dev);
  int64_t t3[3] = {2, 12, 12};
  sf_tensor *cl = sf_zeros(3, c3, SF_F32, dev), *cp = sf_zeros(3, c3, SF_F32, dev);
  sf_tensor *tl = sf_zeros(3, t3, SF_F32, dev), *tp = sf_zeros(3, t3, SF_F32, dev);
  int64_t lo[3] = {0, 0, 0}, hi[3] = {4, 8, 12};
  sf_attn_desc d;
  memset(&d, 0, sizeof d);
  d.q_group = 4, d.k_group = 4, d.kv_lo = lo, d.kv_hi = hi, d.cap_logits = cl, d.cap_probs = cp;
  d.tq0 = 0, d.tq1 = 12, d.tk0 = 0, d.tk1 = 12, d.tok_logits = tl, d.tok_probs = tp;
  sf_tensor *o = sf_attention(q, k, v, &d, NULL);
  CHECK(o != NULL);
  sf_tensor *hcl = sf_to_device(cl, sf_cpu()), *hcp = sf_to_device(cp, sf_cpu()), *htl = sf_to_device(tl, sf_cpu()),
            *htp = sf_to_device(tp, sf_cpu());
  const float *L = sf_data_ptr(hcl), *P = sf_data_ptr(hcp), *TL = sf_data_ptr(htl), *TP = sf_data_ptr(htp);
  for (int h = 0; h < 2; h++)
    for (int a = 0; a < 3; a++)
      for (int b = 0; b < 3; b++) {
        double sl = 0, sp = 0;
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) sl += TL[(h * 12 + a * 4 + i) * 12 + b * 4 + j], sp += TP[(h * 12 + a * 4 + i) * 12 + b * 4 + j];
        if (b > a) {
          CHECK(isnan(sl) && isnan(sp));
          continue;
        }
        CHECK_NEAR(sl, L[(h * 3 + a) * 3 + b], 1e-4);
        CHECK_NEAR(sp, P[(h * 3 + a) * 3 + b], 1e-5);
      }
  sf_release(o), sf_release(q), sf_release(k), sf_release(v), sf_release(cl), sf_release(cp), sf_release(tl), sf_release(tp);
  sf_release(hcl), sf_release(hcp), sf_release(htl), sf_release(htp);
}

static void capture_tokens_match_frames(void) {
  tokens_match_frames_on(sf_cpu());
  if (g_emu) {
    sf_device e;
    sf_device_parse(sf_test_device_name(), &e);
    tokens_match_frames_on(e);
  }
}

int main(int argc, char **argv) {
  sf_backends_init();
  sf_device e;
  g_emu = sf_test_device(&e) == 0; /* emu:0, or $SFWB_TEST_DEVICE */
  printf("devices: cpu%s%s\n", g_emu ? " " : "", g_emu ? sf_test_device_name() : "");
  if (argc > 1 && !strcmp(argv[1], "tokens")) {
    RUN(capture_tokens_match_frames);
    TEST_DONE();
  }
  if (make_refs(argc > 1 ? argv[1] : ALL_CASES)) return 1;
  if (argc > 1) {
    run_case(argv[1]);
    printf("worst relative error %.3g\n", worst);
    return sf_test_case_failed;
  }
  RUN(t2v_bidir);
  RUN(i2v_bidir);
  RUN(train_block_causal);
  RUN(train_independent_first_frame);
  RUN(train_local_window);
  RUN(kv_global);
  RUN(kv_window_sink_b1);
  RUN(kv_window_sink_b2);
  RUN(kv_i2v);
  RUN(kv_extension_rope_offset_b3);
  RUN(capture_keeps_output_bits);
  RUN(capture_hand_checked);
  RUN(capture_tokens_match_frames);
  printf("worst relative error over all comparisons: %.3g\n", worst);
  char cmd[800];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_base);
  if (system(cmd)) {}
  TEST_DONE();
}
