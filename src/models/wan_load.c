/* wan_load.c — loading Wan DiT weights: an official model folder (config.json + safetensors, sharded or
 * not), state dicts with wrapper prefixes, and Self-Forcing generator checkpoints (.pt) — strict key and
 * shape checks reported in one error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/autograd.h"
#include "core/error.h"
#include "ops/ops.h"
#include "io/statedict.h"
#include "models/wan.h"
#include "models/wan_internal.h"

void sf_wan_strip_name(char *name) {
  static const char *frags[] = {"_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod."};
  for (size_t f = 0; f < sizeof frags / sizeof frags[0]; f++) {
    size_t n = strlen(frags[f]);
    char *p;
    while ((p = strstr(name, frags[f]))) memmove(p, p + n, strlen(p + n) + 1);
  }
  if (!strncmp(name, "model.", 6)) memmove(name, name + 6, strlen(name + 6) + 1);
}

/* appends to a bounded report list */
typedef struct {
  char buf[1400];
  int n;
} namelist;

static void nl_add(namelist *l, const char *s) {
  l->n++;
  size_t len = strlen(l->buf);
  if (l->n > 8) {
    if (l->n == 9 && len + 6 < sizeof l->buf) strcat(l->buf, ", ...");
    return;
  }
  snprintf(l->buf + len, sizeof l->buf - len, "%s%s", l->n > 1 ? ", " : "", s);
}

static void shape_of(char *buf, size_t n, int ndim, const int64_t *shape) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

/* match `names` (already stripped) against the model's specs; fills map[spec] = index into names */
static int check_keys(const char *origin, const sf_wan_param_spec *specs, int nspec, int n, char **names, const int *ndims,
                      const int64_t (*shapes)[SF_MAX_DIMS], int *map, bool strict) {
  namelist missing = {{0}, 0}, unexpected = {{0}, 0}, misshaped = {{0}, 0};
  char *used = calloc((size_t)(n + 1), 1);
  if (!used) return sf_error("%s: out of memory", origin);
  for (int s = 0; s < nspec; s++) {
    map[s] = -1;
    for (int i = 0; i < n; i++)
      if (!strcmp(specs[s].name, names[i])) {
        map[s] = i;
        used[i] = 1;
        break;
      }
    if (map[s] < 0) {
      nl_add(&missing, specs[s].name);
      continue;
    }
    const int i = map[s];
    bool ok = ndims[i] == specs[s].ndim;
    for (int d = 0; ok && d < specs[s].ndim; d++) ok = shapes[i][d] == specs[s].shape[d];
    if (!ok) {
      char a[80], b[80], line[260];
      shape_of(a, sizeof a, ndims[i], shapes[i]);
      shape_of(b, sizeof b, specs[s].ndim, specs[s].shape);
      snprintf(line, sizeof line, "%s %s (expected %s)", specs[s].name, a, b);
      nl_add(&misshaped, line);
    }
  }
  for (int i = 0; i < n; i++)
    if (!used[i]) nl_add(&unexpected, names[i]);
  free(used);
  if (misshaped.n || (strict && (missing.n || unexpected.n))) {
    char msg[4600];
    int k = snprintf(msg, sizeof msg, "%s does not match the Wan model:", origin);
    if (missing.n && strict) k += snprintf(msg + k, sizeof msg - k, " %d missing key(s): %s;", missing.n, missing.buf);
    if (unexpected.n && strict && k < (int)sizeof msg) k += snprintf(msg + k, sizeof msg - k, " %d unexpected key(s): %s;", unexpected.n, unexpected.buf);
    if (misshaped.n && k < (int)sizeof msg) snprintf(msg + k, sizeof msg - k, " %d mis-shaped key(s): %s;", misshaped.n, misshaped.buf);
    return sf_error("%s", msg);
  }
  return 0;
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) free(s), s = NULL;
  if (s) s[n] = 0;
  fclose(f);
  return s;
}

sf_wan_model *sf_wan_load(const char *dir, const sf_wan_config *over, sf_dtype dt, sf_device dev) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *text = read_text(path);
  if (!text) return sf_error("wan load: cannot read %s (a Wan model folder holds config.json and diffusion_pytorch_model*.safetensors)", path), NULL;
  sf_wan_config c;
  sf_wan_config_defaults(&c);
  int rc = sf_wan_config_parse(&c, text, path);
  free(text);
  if (rc) return NULL;
  if (over) {
    c.causal = over->causal, c.local_attn_size = over->local_attn_size, c.sink_size = over->sink_size;
    c.num_frame_per_block = over->num_frame_per_block, c.independent_first_frame = over->independent_first_frame;
  }
  /* the official names first (a folder may hold other files), then whatever the folder has */
  static const char *cands[] = {"diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors"};
  snprintf(path, sizeof path, "%s", dir);
  for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
    char p2[4096];
    snprintf(p2, sizeof p2, "%s/%s", dir, cands[i]);
    FILE *f = fopen(p2, "rb");
    if (f) {
      fclose(f);
      snprintf(path, sizeof path, "%s", p2);
      break;
    }
  }
  sf_statedict *sd = sf_statedict_open(path);
  if (!sd) return NULL;
  /* i2v: the CLIP width comes from the weights */
  const sf_sd_entry *ce = sf_statedict_find(sd, "img_emb.proj.0.weight");
  if (ce && ce->ndim == 1) c.clip_dim = ce->shape[0];
  sf_wan_model *m = NULL;
  sf_wan_param_spec *specs = NULL;
  int nspec = 0, n = sf_statedict_count(sd), nt = 0;
  char **names = calloc((size_t)n + 1, sizeof(char *));
  int *ndims = calloc((size_t)n + 1, sizeof(int)), *map = NULL, *entry_of = calloc((size_t)n + 1, sizeof(int));
  int64_t (*shapes)[SF_MAX_DIMS] = calloc((size_t)n + 1, sizeof *shapes);
  if (!names || !ndims || !shapes || !entry_of) { sf_error("wan load: out of memory"); goto done; }
  for (int i = 0; i < n; i++) {
    const sf_sd_entry *e = sf_statedict_entry(sd, i);
    if (e->kind != SF_SD_TENSOR) continue;
    names[nt] = wan_strdup(e->name);
    if (!names[nt]) { sf_error("wan load: out of memory"); goto done; }
    sf_wan_strip_name(names[nt]);
    ndims[nt] = e->ndim;
    memcpy(shapes[nt], e->shape, sizeof shapes[nt]);
    entry_of[nt++] = i;
  }
  if (sf_wan_config_check(&c) || sf_wan_param_specs(&c, &specs, &nspec)) goto done;
  map = malloc(sizeof(int) * (size_t)nspec);
  if (!map) { sf_error("wan load: out of memory"); goto done; }
  if (check_keys(sf_statedict_path(sd), specs, nspec, nt, names, ndims, (const int64_t(*)[SF_MAX_DIMS])shapes, map, true)) goto done;
  m = sf_wan_new(&c, dt, dev, false);
  if (!m) goto done;
  for (int s = 0; s < nspec; s++) {
    sf_tensor *t = sf_statedict_get_entry(sd, sf_statedict_entry(sd, entry_of[map[s]]));
    sf_tensor *a = t ? sf_to_device(t, dev) : NULL;
    sf_tensor *b = a ? sf_cast(a, dt) : NULL;
    sf_release(t), sf_release(a);
    int k = b ? sf_wan_param_index(m, specs[s].name) : -1;
    if (k < 0) {
      sf_release(b);
      sf_wan_free(m);
      m = NULL;
      goto done;
    }
    sf_release(m->params[k]);
    m->params[k] = b;
  }
  snprintf(m->provenance, sizeof m->provenance, "%s", sf_statedict_path(sd));
done:
  for (int i = 0; names && i < nt; i++) free(names[i]);
  free(names), free(ndims), free(shapes), free(map), free(entry_of), free(specs);
  sf_statedict_close(sd);
  return m;
}

int sf_wan_load_tensors(sf_wan_model *m, int n, const char *const *in_names, sf_tensor *const *ts, bool strict) {
  sf_wan_param_spec *specs = NULL;
  int nspec = 0, rc = -1;
  char **names = calloc((size_t)n + 1, sizeof(char *));
  int *ndims = calloc((size_t)n + 1, sizeof(int)), *map = NULL, *idx = NULL;
  int64_t (*shapes)[SF_MAX_DIMS] = calloc((size_t)n + 1, sizeof *shapes);
  if (!names || !ndims || !shapes) { sf_error("wan load_state_dict: out of memory"); goto done; }
  for (int i = 0; i < n; i++) {
    names[i] = wan_strdup(in_names[i]);
    if (!names[i]) { sf_error("wan load_state_dict: out of memory"); goto done; }
    sf_wan_strip_name(names[i]);
    ndims[i] = ts[i]->ndim;
    memcpy(shapes[i], ts[i]->shape, sizeof shapes[i]);
  }
  if (sf_wan_param_specs(&m->cfg, &specs, &nspec)) goto done;
  map = malloc(sizeof(int) * (size_t)nspec);
  idx = malloc(sizeof(int) * (size_t)(n + 1));
  if (!map || !idx) { sf_error("wan load_state_dict: out of memory"); goto done; }
  /* parameters the model holds beyond its config's set (LoRA adapters, the GAN discriminator heads added with
   * _set_param) load by name, shape-checked; the rest goes through the config's key check */
  int nc = 0;
  for (int i = 0; i < n; i++) {
    bool in_spec = false;
    for (int s = 0; s < nspec && !in_spec; s++) in_spec = !strcmp(specs[s].name, names[i]);
    const int j = in_spec ? -1 : sf_wan_param_index(m, names[i]);
    if (j >= 0) {
      char b1[64], b2[64];
      if (!sf_same_shape(m->params[j], ts[i])) {
        sf_error("wan load_state_dict: %s has shape %s, the model's is %s", names[i], sf_shape_str(ts[i], b1, sizeof b1),
                 sf_shape_str(m->params[j], b2, sizeof b2));
        goto done;
      }
      continue;
    }
    idx[nc] = i;
    if (nc != i) {
      char *tmp = names[nc];
      names[nc] = names[i], names[i] = tmp;
      ndims[nc] = ndims[i];
      memcpy(shapes[nc], shapes[i], sizeof shapes[nc]);
    }
    nc++;
  }
  if (check_keys("state dict", specs, nspec, nc, names, ndims, (const int64_t(*)[SF_MAX_DIMS])shapes, map, strict)) goto done;
  /* loading weights is not part of any graph (torch's load_state_dict copies under no_grad), so it
   * works on parameters that require grad */
  bool grad_was = sf_set_grad_enabled(false);
  int s;
  for (s = 0; s < nspec; s++) {
    if (map[s] < 0) continue;
    sf_tensor *p = sf_wan_param(m, specs[s].name);
    if (!p || sf_copy_(p, ts[idx[map[s]]])) break;
  }
  bool ok = s == nspec;
  for (int i = 0; ok && i < n; i++) {
    bool in_spec = false;
    for (int k = 0; k < nspec && !in_spec; k++) in_spec = !strcmp(specs[k].name, in_names[i]);
    char nm[256];
    snprintf(nm, sizeof nm, "%s", in_names[i]);
    sf_wan_strip_name(nm);
    if (in_spec) continue;
    for (int k = 0; k < nspec && !in_spec; k++) in_spec = !strcmp(specs[k].name, nm);
    const int j = in_spec ? -1 : sf_wan_param_index(m, nm);
    if (j >= 0 && sf_copy_(m->params[j], ts[i])) ok = false;
  }
  sf_set_grad_enabled(grad_was);
  if (!ok) goto done;
  rc = 0;
done:
  free(idx);
  for (int i = 0; names && i < n; i++) free(names[i]);
  free(names), free(ndims), free(shapes), free(map), free(specs);
  return rc;
}

int sf_wan_load_checkpoint(sf_wan_model *m, const char *path, bool ema, int *n_loaded, char *key_used, size_t key_n) {
  const char *key = ema ? "generator_ema" : "generator";
  sf_statedict *sd = sf_statedict_open(path);
  if (!sd) {
    sf_error_prefix("load_checkpoint %s: ", path);
    return -1;
  }
  const int n = sf_statedict_count(sd);
  const size_t kl = strlen(key);
  const char **names = calloc((size_t)n + 1, sizeof(char *));
  sf_tensor **ts = calloc((size_t)n + 1, sizeof(sf_tensor *));
  int cnt = 0, rc = -1;
  namelist tops = {{0}, 0};
  if (!names || !ts) { sf_error("load_checkpoint: out of memory"); goto done; }
  for (int i = 0; i < n; i++) {
    const sf_sd_entry *e = sf_statedict_entry(sd, i);
    if (e->kind == SF_SD_TENSOR && !strncmp(e->name, key, kl) && e->name[kl] == '.') {
      ts[cnt] = sf_statedict_get_entry(sd, e);
      if (!ts[cnt]) goto done;
      names[cnt++] = e->name + kl + 1;
    } else {
      char top[64];
      snprintf(top, sizeof top, "%s", e->name);
      char *dot = strchr(top, '.');
      if (dot) *dot = 0;
      if (!strstr(tops.buf, top)) nl_add(&tops, top);
    }
  }
  if (!cnt) {
    sf_error("load_checkpoint %s: no '%s' entry (the file holds: %s)%s", path, key, tops.n ? tops.buf : "nothing",
             ema ? "; use {ema=false} for the raw generator" : "");
    goto done;
  }
  if (sf_wan_load_tensors(m, cnt, names, ts, true)) {
    sf_error_prefix("load_checkpoint %s ['%s']: ", path, key);
    goto done;
  }
  if (n_loaded) *n_loaded = cnt;
  if (key_used) snprintf(key_used, key_n, "%s", key);
  snprintf(m->provenance, sizeof m->provenance, "%s [%s]", path, key);
  rc = 0;
done:
  for (int i = 0; ts && i < cnt; i++) sf_release(ts[i]);
  free(names), free(ts);
  sf_statedict_close(sd);
  return rc;
}
