/* wan_model.c — Wan DiT config, the parameter table (original state-dict names and shapes), creation,
 * clone and device/dtype conversion. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "core/error.h"
#include "ops/ops.h"
#include "models/wan.h"
#include "models/wan_internal.h"

void sf_wan_config_defaults(sf_wan_config *c) {
  memset(c, 0, sizeof *c);
  strcpy(c->model_type, "t2v");
  c->dim = 2048, c->ffn_dim = 8192, c->freq_dim = 256, c->in_dim = 16, c->out_dim = 16;
  c->num_heads = 16, c->num_layers = 32, c->text_dim = 4096, c->text_len = 512, c->eps = 1e-6;
  c->clip_dim = 1280;
  c->local_attn_size = -1, c->sink_size = 0, c->num_frame_per_block = 1;
}

int sf_wan_config_parse(sf_wan_config *c, const char *text, const char *origin) {
  cJSON *j = cJSON_Parse(text);
  if (!j || !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return sf_error("%s: not a JSON object", origin);
  }
  static const struct { const char *key; size_t off; } ints[] = {
    {"dim", offsetof(sf_wan_config, dim)},           {"ffn_dim", offsetof(sf_wan_config, ffn_dim)},
    {"freq_dim", offsetof(sf_wan_config, freq_dim)}, {"in_dim", offsetof(sf_wan_config, in_dim)},
    {"out_dim", offsetof(sf_wan_config, out_dim)},   {"num_heads", offsetof(sf_wan_config, num_heads)},
    {"num_layers", offsetof(sf_wan_config, num_layers)}, {"text_dim", offsetof(sf_wan_config, text_dim)},
    {"text_len", offsetof(sf_wan_config, text_len)}, {"clip_dim", offsetof(sf_wan_config, clip_dim)},
    {"local_attn_size", offsetof(sf_wan_config, local_attn_size)}, {"sink_size", offsetof(sf_wan_config, sink_size)},
    {"num_frame_per_block", offsetof(sf_wan_config, num_frame_per_block)},
  };
  int rc = 0;
  for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !rc; i++) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, ints[i].key);
    if (!v) continue;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
      rc = sf_error("%s: \"%s\" must be an integer", origin, ints[i].key);
    else
      *(int64_t *)((char *)c + ints[i].off) = (int64_t)v->valuedouble;
  }
  cJSON *v;
  if (!rc && (v = cJSON_GetObjectItemCaseSensitive(j, "eps"))) {
    if (!cJSON_IsNumber(v)) rc = sf_error("%s: \"eps\" must be a number", origin);
    else c->eps = v->valuedouble;
  }
  if (!rc && (v = cJSON_GetObjectItemCaseSensitive(j, "model_type"))) {
    if (!cJSON_IsString(v) || (strcmp(v->valuestring, "t2v") && strcmp(v->valuestring, "i2v")))
      rc = sf_error("%s: \"model_type\" must be \"t2v\" or \"i2v\" (flf2v is not supported)", origin);
    else
      snprintf(c->model_type, sizeof c->model_type, "%s", v->valuestring);
  }
  cJSON_Delete(j);
  return rc;
}

int sf_wan_config_check(const sf_wan_config *c) {
  if (c->dim <= 0 || c->num_heads <= 0 || c->dim % c->num_heads)
    return sf_error("wan config: dim %lld must be a positive multiple of num_heads %lld", (long long)c->dim, (long long)c->num_heads);
  int64_t d = c->dim / c->num_heads;
  if (d % 2 || d < 6) return sf_error("wan config: head dim %lld must be even and >= 6 (3-D RoPE)", (long long)d);
  if (c->freq_dim <= 0 || c->freq_dim % 2) return sf_error("wan config: freq_dim %lld must be even", (long long)c->freq_dim);
  if (c->num_layers <= 0 || c->ffn_dim <= 0 || c->in_dim <= 0 || c->out_dim <= 0 || c->text_dim <= 0 || c->text_len <= 0)
    return sf_error("wan config: num_layers, ffn_dim, in_dim, out_dim, text_dim, text_len must be positive");
  if (c->num_frame_per_block <= 0) return sf_error("wan config: num_frame_per_block must be >= 1");
  if (c->local_attn_size != -1 && c->local_attn_size < c->sink_size + c->num_frame_per_block)
    return sf_error("wan config: local_attn_size %lld must be -1 or >= sink_size %lld + num_frame_per_block %lld",
                    (long long)c->local_attn_size, (long long)c->sink_size, (long long)c->num_frame_per_block);
  if (c->sink_size < 0) return sf_error("wan config: sink_size must be >= 0");
  return 0;
}

/* ---- parameter table ---- */

static int add_param(sf_wan_param_spec **v, int *n, int *cap, const char *name, int ndim, int64_t a, int64_t b, int64_t c,
                     int64_t d, int64_t e, int kind, int64_t fan) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 64;
    sf_wan_param_spec *nv = realloc(*v, sizeof **v * (size_t)*cap);
    if (!nv) return sf_error("wan: out of memory");
    *v = nv;
  }
  sf_wan_param_spec *p = &(*v)[(*n)++];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  p->ndim = ndim;
  int64_t s[5] = {a, b, c, d, e};
  memcpy(p->shape, s, sizeof s);
  p->kind = kind;
  p->fan_in = fan;
  return 0;
}

int sf_wan_param_specs(const sf_wan_config *c, sf_wan_param_spec **out, int *count) {
  sf_wan_param_spec *v = NULL;
  int n = 0, cap = 0, rc = 0;
  const int64_t D = c->dim, F = c->ffn_dim;
  char nm[sizeof ((sf_wan_param_spec *)0)->name]; /* the table's name size: no truncation */
#define P2(name, o, i) rc |= add_param(&v, &n, &cap, name, 2, o, i, 0, 0, 0, SF_PK_WEIGHT, i)
#define PB(name, o) rc |= add_param(&v, &n, &cap, name, 1, o, 0, 0, 0, 0, SF_PK_BIAS, 0)
#define PN(name, o) rc |= add_param(&v, &n, &cap, name, 1, o, 0, 0, 0, 0, SF_PK_NORM, 0)
  rc |= add_param(&v, &n, &cap, "patch_embedding.weight", 5, D, c->in_dim, 1, 2, 2, SF_PK_WEIGHT, c->in_dim * 4);
  PB("patch_embedding.bias", D);
  P2("text_embedding.0.weight", D, c->text_dim); PB("text_embedding.0.bias", D);
  P2("text_embedding.2.weight", D, D); PB("text_embedding.2.bias", D);
  P2("time_embedding.0.weight", D, c->freq_dim); PB("time_embedding.0.bias", D);
  P2("time_embedding.2.weight", D, D); PB("time_embedding.2.bias", D);
  P2("time_projection.1.weight", 6 * D, D); PB("time_projection.1.bias", 6 * D);
  const bool i2v = !strcmp(c->model_type, "i2v");
  for (int64_t i = 0; i < c->num_layers; i++) {
#define NM(fmt) (snprintf(nm, sizeof nm, "blocks.%lld." fmt, (long long)i), nm)
    rc |= add_param(&v, &n, &cap, NM("modulation"), 3, 1, 6, D, 0, 0, SF_PK_MOD, D);
    const char *att[2] = {"self_attn", "cross_attn"};
    for (int a = 0; a < 2; a++) {
      const char *qkvo[4] = {"q", "k", "v", "o"};
      for (int q = 0; q < 4; q++) {
        snprintf(nm, sizeof nm, "blocks.%lld.%s.%s.weight", (long long)i, att[a], qkvo[q]);
        P2(nm, D, D);
        snprintf(nm, sizeof nm, "blocks.%lld.%s.%s.bias", (long long)i, att[a], qkvo[q]);
        PB(nm, D);
      }
      snprintf(nm, sizeof nm, "blocks.%lld.%s.norm_q.weight", (long long)i, att[a]);
      PN(nm, D);
      snprintf(nm, sizeof nm, "blocks.%lld.%s.norm_k.weight", (long long)i, att[a]);
      PN(nm, D);
    }
    if (i2v) {
      P2(NM("cross_attn.k_img.weight"), D, D); PB(NM("cross_attn.k_img.bias"), D);
      P2(NM("cross_attn.v_img.weight"), D, D); PB(NM("cross_attn.v_img.bias"), D);
      PN(NM("cross_attn.norm_k_img.weight"), D);
    }
    PN(NM("norm3.weight"), D); PB(NM("norm3.bias"), D);
    P2(NM("ffn.0.weight"), F, D); PB(NM("ffn.0.bias"), F);
    P2(NM("ffn.2.weight"), D, F); PB(NM("ffn.2.bias"), D);
#undef NM
  }
  rc |= add_param(&v, &n, &cap, "head.modulation", 3, 1, 2, D, 0, 0, SF_PK_MOD, D);
  P2("head.head.weight", c->out_dim * 4, D); PB("head.head.bias", c->out_dim * 4);
  if (i2v) {
    const int64_t C = c->clip_dim;
    PN("img_emb.proj.0.weight", C); PB("img_emb.proj.0.bias", C);
    P2("img_emb.proj.1.weight", C, C); PB("img_emb.proj.1.bias", C);
    P2("img_emb.proj.3.weight", D, C); PB("img_emb.proj.3.bias", D);
    PN("img_emb.proj.4.weight", D); PB("img_emb.proj.4.bias", D);
  }
#undef P2
#undef PB
#undef PN
  if (rc) {
    free(v);
    return -1;
  }
  *out = v;
  *count = n;
  return 0;
}

static uint32_t hash_str(const char *s) {
  uint32_t h = 2166136261u;
  while (*s) h = (h ^ (uint8_t)*s++) * 16777619u;
  return h;
}

static int build_hash(sf_wan_model *m) {
  m->hash_size = 1;
  while (m->hash_size < 2 * m->nparams + 1) m->hash_size *= 2;
  m->hash = malloc(sizeof(int) * (size_t)m->hash_size);
  if (!m->hash) return sf_error("wan: out of memory");
  for (int i = 0; i < m->hash_size; i++) m->hash[i] = -1;
  for (int i = 0; i < m->nparams; i++) {
    uint32_t h = hash_str(m->names[i]) & (uint32_t)(m->hash_size - 1);
    while (m->hash[h] >= 0) h = (h + 1) & (uint32_t)(m->hash_size - 1);
    m->hash[h] = i;
  }
  return 0;
}

int sf_wan_param_index(const sf_wan_model *m, const char *name) {
  uint32_t h = hash_str(name) & (uint32_t)(m->hash_size - 1);
  while (m->hash[h] >= 0) {
    if (!strcmp(m->names[m->hash[h]], name)) return m->hash[h];
    h = (h + 1) & (uint32_t)(m->hash_size - 1);
  }
  return -1;
}

sf_tensor *sf_wan_param(const sf_wan_model *m, const char *name) {
  int i = sf_wan_param_index(m, name);
  return i < 0 ? NULL : m->params[i];
}

sf_tensor *sf_wan_paramf(const sf_wan_model *m, const char *fmt, long long i) {
  char nm[160];
  snprintf(nm, sizeof nm, fmt, i);
  sf_tensor *t = sf_wan_param(m, nm);
  if (!t) sf_error("wan: parameter %s is missing", nm);
  return t;
}

static sf_wan_model *alloc_model(const sf_wan_config *c, sf_dtype dt, sf_device dev, sf_wan_param_spec **specs, int *n) {
  if (sf_wan_config_check(c)) return NULL;
  if (dt != SF_F32 && dt != SF_BF16) return sf_error("wan: dtype must be f32 or bf16, got %s", sf_dtype_name(dt)), NULL;
  if (sf_wan_param_specs(c, specs, n)) return NULL;
  sf_wan_model *m = calloc(1, sizeof *m);
  if (!m) return sf_error("wan: out of memory"), NULL;
  m->refcount = 1;
  m->cfg = *c;
  m->dtype = dt;
  m->device = dev;
  m->nparams = *n;
  m->names = calloc((size_t)*n, sizeof(char *));
  m->params = calloc((size_t)*n, sizeof(sf_tensor *));
  if (!m->names || !m->params) {
    sf_wan_free(m);
    return sf_error("wan: out of memory"), NULL;
  }
  for (int i = 0; i < *n; i++) m->names[i] = wan_strdup((*specs)[i].name);
  if (build_hash(m)) {
    sf_wan_free(m);
    return NULL;
  }
  return m;
}

sf_wan_model *sf_wan_new(const sf_wan_config *c, sf_dtype dt, sf_device dev, bool init) {
  sf_wan_param_spec *specs = NULL;
  int n = 0;
  sf_wan_model *m = alloc_model(c, dt, dev, &specs, &n);
  if (!m) return NULL;
  for (int i = 0; i < n; i++) {
    const sf_wan_param_spec *p = &specs[i];
    sf_tensor *t = NULL;
    if (!init) t = sf_empty(p->ndim, p->shape, dt, dev);
    else if (p->kind == SF_PK_BIAS) t = sf_zeros(p->ndim, p->shape, dt, dev);
    else if (p->kind == SF_PK_NORM) t = sf_full(p->ndim, p->shape, 1.0, dt, dev);
    else {
      sf_tensor *r = sf_randn(p->ndim, p->shape, SF_F32, dev);
      t = r ? sf_binary_scalar(SF_BIN_MUL, r, 1.0 / sqrt((double)(p->fan_in > 0 ? p->fan_in : 1)), false) : NULL;
      sf_release(r);
      if (t && dt != SF_F32) {
        sf_tensor *u = sf_cast(t, dt);
        sf_release(t);
        t = u;
      }
    }
    if (!t) {
      free(specs);
      sf_wan_free(m);
      return NULL;
    }
    m->params[i] = t;
  }
  free(specs);
  snprintf(m->provenance, sizeof m->provenance, "random init");
  return m;
}

sf_wan_model *sf_wan_retain(sf_wan_model *m) {
  if (m) m->refcount++;
  return m;
}

void sf_wan_free(sf_wan_model *m) {
  if (!m || --m->refcount > 0) return;
  while (m->captures) sf_wan_capture_remove(m->captures);
  if (m->block_hook_free) m->block_hook_free(m->block_hook_ud);
  for (int i = 0; i < m->nparams; i++) {
    if (m->names) free(m->names[i]);
    if (m->params) sf_release(m->params[i]);
  }
  free(m->names), free(m->params), free(m->hash);
  free(m);
}

sf_wan_model *sf_wan_clone(const sf_wan_model *m) {
  sf_wan_param_spec *specs = NULL;
  int n = 0;
  sf_wan_model *c = alloc_model(&m->cfg, m->dtype, m->device, &specs, &n);
  free(specs);
  if (!c) return NULL;
  /* new leaves: no graph may connect the copy to the source (EMA and raw weights train apart) */
  const bool g = sf_set_grad_enabled(false);
  for (int i = 0; i < n; i++) {
    sf_tensor *src = sf_wan_param(m, c->names[i]);
    c->params[i] = src ? sf_clone(src) : NULL;
    if (!c->params[i]) {
      if (!src) sf_error("wan clone: parameter %s missing in the source", c->names[i]);
      sf_set_grad_enabled(g);
      sf_wan_free(c);
      return NULL;
    }
    c->params[i]->requires_grad = src->requires_grad;
  }
  /* parameters beyond the config's set (LoRA adapters) */
  for (int i = 0; i < m->nparams; i++) {
    if (sf_wan_param_index(c, m->names[i]) >= 0) continue;
    sf_tensor *t = sf_clone(m->params[i]);
    if (!t || sf_wan_set_param(c, m->names[i], t)) {
      sf_set_grad_enabled(g);
      sf_wan_free(c);
      return NULL;
    }
    t->requires_grad = m->params[i]->requires_grad;
  }
  sf_set_grad_enabled(g);
  snprintf(c->provenance, sizeof c->provenance, "%s", m->provenance);
  c->autocast = m->autocast;
  c->lora_rank = m->lora_rank, c->lora_scale = m->lora_scale, c->lora_dropout = m->lora_dropout;
  return c;
}

int sf_wan_set_param(sf_wan_model *m, const char *name, sf_tensor *t) {
  if (!t) return -1;
  const int j = sf_wan_param_index(m, name);
  if (j >= 0) {
    sf_release(m->params[j]);
    m->params[j] = t;
    return 0;
  }
  char *nm = wan_strdup(name);
  char **names = nm ? realloc(m->names, sizeof(char *) * (size_t)(m->nparams + 1)) : NULL;
  if (names) m->names = names;
  sf_tensor **ps = names ? realloc(m->params, sizeof(sf_tensor *) * (size_t)(m->nparams + 1)) : NULL;
  if (ps) m->params = ps;
  if (!ps) {
    free(nm), sf_release(t);
    return sf_error("wan: out of memory");
  }
  m->names[m->nparams] = nm;
  m->params[m->nparams] = t;
  m->nparams++;
  free(m->hash);
  return build_hash(m);
}

int sf_wan_drop_params(sf_wan_model *m, const char *part) {
  int n = 0, k = 0;
  for (int i = 0; i < m->nparams; i++) {
    if (strstr(m->names[i], part)) {
      free(m->names[i]), sf_release(m->params[i]);
      n++;
    } else {
      m->names[k] = m->names[i], m->params[k] = m->params[i];
      k++;
    }
  }
  m->nparams = k;
  free(m->hash);
  return build_hash(m) ? -1 : n;
}

int sf_wan_to(sf_wan_model *m, sf_device dev, sf_dtype dt) {
  if (dt != SF_F32 && dt != SF_BF16) return sf_error("wan: dtype must be f32 or bf16, got %s", sf_dtype_name(dt));
  sf_tensor **nt = calloc((size_t)m->nparams, sizeof *nt);
  if (!nt) return sf_error("wan: out of memory");
  const bool g = sf_set_grad_enabled(false); /* converted parameters are new leaves */
  for (int i = 0; i < m->nparams; i++) {
    sf_tensor *a = sf_to_device(m->params[i], dev);
    nt[i] = a ? sf_cast(a, dt) : NULL;
    sf_release(a);
    if (!nt[i]) {
      sf_set_grad_enabled(g);
      for (int j = 0; j < i; j++) sf_release(nt[j]);
      free(nt);
      return -1;
    }
  }
  sf_set_grad_enabled(g);
  for (int i = 0; i < m->nparams; i++) {
    nt[i]->requires_grad = m->params[i]->requires_grad;
    sf_release(m->params[i]);
    m->params[i] = nt[i];
  }
  free(nt);
  m->device = dev;
  m->dtype = dt;
  return 0;
}
