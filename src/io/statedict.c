/* statedict.c — open safetensors / sharded safetensors / torch.save zips as one name -> entry map;
 * tensor data is materialized lazily (mmap views; inflated copies only for compressed members). */
#include "io/statedict.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "io/mapfile.h"
#include "io/pickle.h"
#include "io/safetensors.h"
#include "io/zipread.h"

struct sf_statedict {
  char *path;
  const char *format;
  sf_sd_entry *e;
  int n, cap;
  int *hash; /* open addressing: entry index + 1, 0 = empty */
  int hcap;
  /* safetensors shards */
  sf_st_file **st;
  int nst;
  /* torch zip */
  sf_mapfile *map;
  sf_zip zip;
  sf_pickle *pk;
  char *prefix;
  sf_py **pt_tensors;
  int npt, cappt;
  sf_storage **pt_storage; /* lazily filled, one per pickle storage */
  /* metadata */
  char **mkey, **mval;
  int nmeta;
};

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int hash_rebuild(sf_statedict *sd) {
  int cap = 64;
  while (cap < sd->n * 2 + 2) cap *= 2;
  int *h = calloc(cap, sizeof *h);
  if (!h) return sf_error("%s: out of memory", sd->path);
  free(sd->hash);
  sd->hash = h;
  sd->hcap = cap;
  for (int i = 0; i < sd->n; i++) {
    uint64_t k = hash_str(sd->e[i].name) & (cap - 1);
    while (h[k]) k = (k + 1) & (cap - 1);
    h[k] = i + 1;
  }
  return 0;
}

static int find_index(const sf_statedict *sd, const char *name) {
  if (!sd->hcap) return -1;
  uint64_t k = hash_str(name) & (sd->hcap - 1);
  while (sd->hash[k]) {
    int i = sd->hash[k] - 1;
    if (!strcmp(sd->e[i].name, name)) return i;
    k = (k + 1) & (sd->hcap - 1);
  }
  return -1;
}

/* adds (or, for a repeated name, replaces: later wins as in a Python dict) an entry; takes `name` */
static sf_sd_entry *add_entry(sf_statedict *sd, char *name) {
  if (!name) return sf_error("%s: out of memory", sd->path), NULL;
  int i = find_index(sd, name);
  if (i >= 0) {
    free(name);
    char *keep = (char *)sd->e[i].name;
    memset(&sd->e[i], 0, sizeof sd->e[i]);
    sd->e[i].name = keep;
    return &sd->e[i];
  }
  if (sd->n == sd->cap) {
    int cap = sd->cap ? sd->cap * 2 : 64;
    sf_sd_entry *e = realloc(sd->e, cap * sizeof *e);
    if (!e) {
      free(name);
      return sf_error("%s: out of memory", sd->path), NULL;
    }
    sd->e = e;
    sd->cap = cap;
  }
  sf_sd_entry *e = &sd->e[sd->n++];
  memset(e, 0, sizeof *e);
  e->name = name;
  if (sd->n * 2 + 2 > sd->hcap) {
    if (hash_rebuild(sd)) return NULL;
  } else {
    uint64_t k = hash_str(name) & (sd->hcap - 1);
    while (sd->hash[k]) k = (k + 1) & (sd->hcap - 1);
    sd->hash[k] = sd->n;
  }
  return e;
}

static int add_meta(sf_statedict *sd, const char *k, const char *v) {
  for (int i = 0; i < sd->nmeta; i++)
    if (!strcmp(sd->mkey[i], k)) return 0;
  char **a = realloc(sd->mkey, (sd->nmeta + 1) * sizeof *a);
  if (!a) return sf_error("%s: out of memory", sd->path);
  sd->mkey = a;
  char **b = realloc(sd->mval, (sd->nmeta + 1) * sizeof *b);
  if (!b) return sf_error("%s: out of memory", sd->path);
  sd->mval = b;
  sd->mkey[sd->nmeta] = strdup(k);
  sd->mval[sd->nmeta] = strdup(v);
  sd->nmeta++;
  return 0;
}

void sf_statedict_close(sf_statedict *sd) {
  if (!sd) return;
  for (int i = 0; i < sd->n; i++) free((char *)sd->e[i].name);
  free(sd->e);
  free(sd->hash);
  for (int i = 0; i < sd->nst; i++) sf_st_free(sd->st[i]);
  free(sd->st);
  if (sd->pk) {
    for (int i = 0; i < sf_pickle_storage_count(sd->pk); i++) sf_storage_release(sd->pt_storage[i]);
    sf_pickle_free(sd->pk);
  }
  free(sd->pt_storage);
  free(sd->pt_tensors);
  sf_zip_free(&sd->zip);
  sf_mapfile_release(sd->map);
  free(sd->prefix);
  for (int i = 0; i < sd->nmeta; i++) {
    free(sd->mkey[i]);
    free(sd->mval[i]);
  }
  free(sd->mkey);
  free(sd->mval);
  free(sd->path);
  free(sd);
}

/* ---- safetensors ---- */

static int add_shard(sf_statedict *sd, const char *file) {
  sf_st_file *f = sf_st_open(file);
  if (!f) return -1;
  sf_st_file **st = realloc(sd->st, (sd->nst + 1) * sizeof *st);
  if (!st) {
    sf_st_free(f);
    return sf_error("%s: out of memory", sd->path);
  }
  sd->st = st;
  sd->st[sd->nst] = f;
  int src = sd->nst++;
  for (int i = 0; i < f->n; i++) {
    sf_sd_entry *e = add_entry(sd, strdup(f->t[i].name));
    if (!e) return -1;
    e->kind = SF_SD_TENSOR;
    e->dtype = f->t[i].dtype;
    e->ndim = f->t[i].ndim;
    memcpy(e->shape, f->t[i].shape, sizeof e->shape);
    e->src = src;
    e->aux = i;
  }
  for (int i = 0; i < f->n_meta; i++)
    if (add_meta(sd, f->meta_key[i], f->meta_val[i])) return -1;
  return 0;
}

static char *read_small_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return sf_error("%s: cannot open: %s", path, strerror(errno)), NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
    if (n == cap) {
      if (cap >= ((size_t)256 << 20)) {
        free(buf);
        buf = NULL;
        sf_error("%s: too large for an index file", path);
        break;
      }
      char *b = realloc(buf, cap * 2);
      if (!b) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = b;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf) {
    *len = n;
  }
  return buf;
}

static int open_index(sf_statedict *sd, const char *path) {
  size_t len;
  char *txt = read_small_file(path, &len);
  if (!txt) return -1;
  cJSON *root = cJSON_ParseWithLength(txt, len);
  free(txt);
  if (!root) return sf_error("%s: not valid JSON", path);
  int rc = 0;
  const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (!cJSON_IsObject(wm)) {
    rc = sf_error("%s: no \"weight_map\" object (not a safetensors index)", path);
    goto out;
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) slash[1] = 0;
  else dir[0] = 0;
  /* shards in order of first mention */
  const char **files = calloc(cJSON_GetArraySize(wm) + 1, sizeof *files);
  int nf = 0;
  for (const cJSON *e = wm->child; e && !rc; e = e->next) {
    if (!cJSON_IsString(e)) {
      rc = sf_error("%s: weight_map entry '%s' is not a file name", path, e->string);
      break;
    }
    int seen = 0;
    for (int i = 0; i < nf; i++) seen |= !strcmp(files[i], e->valuestring);
    if (seen) continue;
    if (strchr(e->valuestring, '/') || !strcmp(e->valuestring, "..")) {
      rc = sf_error("%s: shard name '%s' must be a plain file name", path, e->valuestring);
      break;
    }
    files[nf++] = e->valuestring;
    char full[8192];
    snprintf(full, sizeof full, "%s%s", dir, e->valuestring);
    if (add_shard(sd, full)) {
      sf_error_prefix("%s: shard: ", path);
      rc = -1;
    }
  }
  free(files);
  for (const cJSON *e = wm->child; e && !rc; e = e->next) {
    int i = find_index(sd, e->string);
    if (i < 0) {
      rc = sf_error("%s: weight_map lists '%s' in %s, but that shard does not hold it", path, e->string, e->valuestring);
      break;
    }
  }
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
  if (!rc && cJSON_IsObject(meta))
    for (const cJSON *m = meta->child; m && !rc; m = m->next) {
      char num[64];
      if (cJSON_IsString(m)) rc = add_meta(sd, m->string, m->valuestring);
      else if (cJSON_IsNumber(m)) {
        snprintf(num, sizeof num, "%.17g", m->valuedouble);
        rc = add_meta(sd, m->string, num);
      }
    }
out:
  cJSON_Delete(root);
  return rc;
}

/* ---- torch zip ---- */

static char *join_name(const char *prefix, const char *key) {
  size_t a = strlen(prefix), b = strlen(key);
  char *s = malloc(a + b + 2);
  if (!s) return NULL;
  memcpy(s, prefix, a);
  if (a) s[a++] = '.';
  memcpy(s + a, key, b + 1);
  return s;
}

static int flatten(sf_statedict *sd, sf_py *o, const char *name, int depth) {
  if (depth > 64) return sf_error("%s: data.pkl nests deeper than 64 levels (or refers to itself) at '%s'", sd->path, name);
  switch (o->type) {
  case SF_PY_DICT:
    for (size_t i = 0; i + 1 < o->n; i += 2) {
      sf_py *k = o->items[i];
      char kb[64];
      const char *ks;
      if (k->type == SF_PY_STR) ks = k->s;
      else if (k->type == SF_PY_INT) snprintf(kb, sizeof kb, "%lld", (long long)k->i), ks = kb;
      else if (k->type == SF_PY_BOOL) ks = k->i ? "True" : "False";
      else return sf_error("%s: dict key under '%s' is not a string or integer", sd->path, name);
      char *sub = join_name(name, ks);
      if (!sub) return sf_error("%s: out of memory", sd->path);
      int rc = flatten(sd, o->items[i + 1], sub, depth + 1);
      free(sub);
      if (rc) return rc;
    }
    return 0;
  case SF_PY_LIST:
  case SF_PY_TUPLE:
    for (size_t i = 0; i < o->n; i++) {
      char kb[32];
      snprintf(kb, sizeof kb, "%zu", i);
      char *sub = join_name(name, kb);
      if (!sub) return sf_error("%s: out of memory", sd->path);
      int rc = flatten(sd, o->items[i], sub, depth + 1);
      free(sub);
      if (rc) return rc;
    }
    return 0;
  default: break;
  }
  sf_sd_entry *e = add_entry(sd, strdup(name));
  if (!e) return -1;
  switch (o->type) {
  case SF_PY_TENSOR:
    e->kind = SF_SD_TENSOR;
    e->dtype = o->dtype;
    e->ndim = o->ndim;
    memcpy(e->shape, o->shape, sizeof e->shape);
    if (sd->npt == sd->cappt) {
      int cap = sd->cappt ? sd->cappt * 2 : 64;
      sf_py **t = realloc(sd->pt_tensors, cap * sizeof *t);
      if (!t) return sf_error("%s: out of memory", sd->path);
      sd->pt_tensors = t;
      sd->cappt = cap;
    }
    e->src = -1;
    e->aux = sd->npt;
    sd->pt_tensors[sd->npt++] = o;
    return 0;
  case SF_PY_INT: e->kind = SF_SD_INT; e->i = o->i; return 0;
  case SF_PY_BOOL: e->kind = SF_SD_BOOL; e->i = o->i; return 0;
  case SF_PY_FLOAT: e->kind = SF_SD_FLOAT; e->f = o->f; return 0;
  case SF_PY_STR:
  case SF_PY_BYTES: e->kind = SF_SD_STRING; e->str = o->s; e->str_len = o->len; return 0;
  case SF_PY_NONE: e->kind = SF_SD_NONE; return 0;
  default: return sf_error("%s: '%s' holds a value sfwb cannot represent", sd->path, name);
  }
}

static int open_pt(sf_statedict *sd) {
  sd->map = sf_mapfile_open(sd->path);
  if (!sd->map) return -1;
  if (sf_zip_parse(&sd->zip, sd->map->base, sd->map->size, sd->path)) return -1;
  const sf_zip_member *pkl = NULL;
  for (int i = 0; i < sd->zip.n; i++) {
    const char *nm = sd->zip.m[i].name;
    size_t l = strlen(nm);
    if (l >= 8 && !strcmp(nm + l - 8, "data.pkl") && (l == 8 || nm[l - 9] == '/') &&
        (!pkl || strlen(pkl->name) > l))
      pkl = &sd->zip.m[i];
  }
  if (!pkl) return sf_error("%s: zip archive without data.pkl (not a torch.save file)", sd->path);
  size_t pl = strlen(pkl->name) - 8;
  sd->prefix = malloc(pl + 1);
  if (!sd->prefix) return sf_error("%s: out of memory", sd->path);
  memcpy(sd->prefix, pkl->name, pl);
  sd->prefix[pl] = 0;
  const unsigned char *bytes;
  int owned;
  if (sf_zip_read(pkl, sd->map->base, sd->map->size, sd->path, &bytes, &owned)) return -1;
  sf_py *root;
  sd->pk = sf_pickle_load(bytes, pkl->size, sd->path, &root);
  if (owned) free((void *)bytes);
  if (!sd->pk) return -1;
  int ns = sf_pickle_storage_count(sd->pk);
  sd->pt_storage = calloc(ns ? ns : 1, sizeof *sd->pt_storage);
  if (!sd->pt_storage) return sf_error("%s: out of memory", sd->path);
  return flatten(sd, root, "", 0);
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int name_sort(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* a model folder: its safetensors index, else its only .safetensors file */
static int open_dir(sf_statedict *sd) {
  DIR *d = opendir(sd->path);
  if (!d) return sf_error("%s: cannot open folder: %s", sd->path, strerror(errno));
  char *index = NULL, *single[2] = {NULL, NULL};
  int nsingle = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l > 23 && !strcmp(de->d_name + l - 23, ".safetensors.index.json")) {
      if (!index || strcmp(de->d_name, index) < 0) {
        free(index);
        index = strdup(de->d_name);
      }
    } else if (l > 12 && !strcmp(de->d_name + l - 12, ".safetensors")) {
      if (nsingle < 2) single[nsingle] = strdup(de->d_name);
      nsingle++;
    }
  }
  closedir(d);
  char full[8192];
  int rc;
  if (index) {
    snprintf(full, sizeof full, "%s/%s", sd->path, index);
    sd->format = "safetensors-sharded";
    rc = open_index(sd, full);
  } else if (nsingle == 1) {
    snprintf(full, sizeof full, "%s/%s", sd->path, single[0]);
    sd->format = "safetensors";
    rc = add_shard(sd, full);
  } else if (nsingle == 0) {
    rc = sf_error("%s: folder holds no .safetensors file or *.safetensors.index.json", sd->path);
  } else {
    if (nsingle == 2) qsort(single, 2, sizeof *single, name_sort);
    rc = sf_error("%s: folder holds several .safetensors files (%s, %s, ...) but no index.json; open one file", sd->path,
                  single[0], single[1]);
  }
  free(index);
  free(single[0]);
  free(single[1]);
  return rc;
}

sf_statedict *sf_statedict_open(const char *path) {
  sf_statedict *sd = calloc(1, sizeof *sd);
  if (!sd || !(sd->path = strdup(path))) {
    free(sd);
    return sf_error("%s: out of memory", path), NULL;
  }
  int rc;
  if (is_dir(path)) {
    rc = open_dir(sd);
  } else {
    unsigned char head[16] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) {
      sf_error("%s: cannot open: %s", path, strerror(errno));
      sf_statedict_close(sd);
      return NULL;
    }
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    if (got >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) {
      sd->format = "pt";
      rc = open_pt(sd);
    } else if (got >= 4 && head[0] == 0x80 && head[1] == 0x02 && head[2] == 0x8a) {
      rc = sf_error("%s: legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a current torch", path);
    } else if (got >= 9 && head[8] == '{') {
      /* before the JSON test: the 8-byte header length may itself begin with '{', ' ' or '\n' */
      sd->format = "safetensors";
      rc = add_shard(sd, path);
    } else if (got >= 1 && (head[0] == '{' || head[0] == ' ' || head[0] == '\n' || head[0] == '\r' || head[0] == '\t')) {
      sd->format = "safetensors-sharded";
      rc = open_index(sd, path);
    } else {
      rc = sf_error("%s: unknown checkpoint format (neither safetensors, a safetensors index, nor a torch.save zip)", path);
    }
  }
  if (rc) {
    sf_statedict_close(sd);
    return NULL;
  }
  return sd;
}

const char *sf_statedict_path(const sf_statedict *sd) { return sd->path; }
const char *sf_statedict_format(const sf_statedict *sd) { return sd->format; }
int sf_statedict_count(const sf_statedict *sd) { return sd->n; }
const sf_sd_entry *sf_statedict_entry(const sf_statedict *sd, int i) { return i >= 0 && i < sd->n ? &sd->e[i] : NULL; }
const sf_sd_entry *sf_statedict_find(const sf_statedict *sd, const char *name) {
  int i = find_index(sd, name);
  return i < 0 ? NULL : &sd->e[i];
}

static void free_ctx_release(sf_storage *s) { free(s->ctx); }

static sf_storage *pt_storage(sf_statedict *sd, sf_py *st) {
  if (sd->pt_storage[st->storage_id]) return sd->pt_storage[st->storage_id];
  char name[1024];
  snprintf(name, sizeof name, "%sdata/%s", sd->prefix, st->s);
  const sf_zip_member *m = sf_zip_find(&sd->zip, name);
  if (!m) return sf_error("%s: storage '%s' is missing from the archive (expected member %s)", sd->path, st->s, name), NULL;
  uint64_t nbytes = (uint64_t)st->numel * sf_dtype_size(st->dtype);
  if (m->size < nbytes)
    return sf_error("%s: storage '%s' holds %llu bytes but %llu are needed (truncated?)", sd->path, st->s,
                    (unsigned long long)m->size, (unsigned long long)nbytes), NULL;
  sf_storage *s;
  if (m->method == 0) {
    /* the whole member is checked against its CRC-32 when the storage is first used */
    if (sf_zip_check_crc(m, sd->map->base + m->data_off, m->size, sd->path)) return NULL;
    s = sf_mapfile_storage(sd->map, m->data_off, nbytes);
  } else {
    const unsigned char *bytes;
    int owned;
    if (sf_zip_read(m, sd->map->base, sd->map->size, sd->path, &bytes, &owned)) return NULL;
    s = sf_storage_wrap(sf_cpu(), (void *)bytes, nbytes, owned ? free_ctx_release : NULL, owned ? (void *)bytes : NULL);
    if (!s && owned) free((void *)bytes);
  }
  sd->pt_storage[st->storage_id] = s;
  return s;
}

/* Kernels may assume element-aligned data; files whose header or member padding leaves a tensor at
 * an odd address (other writers do not always pad) get a private aligned copy instead of the view. */
static sf_tensor *aligned_or_copy(sf_tensor *t) {
  if (!t || !t->storage->data || ((uintptr_t)t->storage->data % sf_dtype_size(t->dtype)) == 0) return t;
  size_t es = sf_dtype_size(t->dtype);
  sf_storage *c = sf_storage_new(sf_cpu(), t->storage->nbytes / es * es);
  if (!c) {
    sf_release(t);
    return NULL;
  }
  memcpy(c->data, t->storage->data, c->nbytes);
  sf_tensor *r = sf_tensor_from_storage(c, t->dtype, t->ndim, t->shape, t->stride, t->offset);
  sf_storage_release(c);
  sf_release(t);
  return r;
}

sf_tensor *sf_statedict_get_entry(sf_statedict *sd, const sf_sd_entry *e) {
  if (!e) return sf_error("%s: no such entry", sd->path), NULL;
  if (e->kind != SF_SD_TENSOR) return sf_error("%s: '%s' is not a tensor", sd->path, e->name), NULL;
  sf_tensor *t;
  if (e->src >= 0) {
    sf_st_file *f = sd->st[e->src];
    const sf_st_tensor *st = &f->t[e->aux];
    sf_storage *s = sf_mapfile_storage(f->map, f->data_off + st->begin, st->end - st->begin);
    if (!s) return NULL;
    t = sf_tensor_from_storage(s, st->dtype, st->ndim, st->shape, NULL, 0);
    sf_storage_release(s);
    t = aligned_or_copy(t);
  } else {
    sf_py *pt = sd->pt_tensors[e->aux];
    sf_storage *s = pt_storage(sd, pt->storage);
    if (!s) return NULL;
    t = sf_tensor_from_storage(s, pt->dtype, pt->ndim, pt->shape, pt->stride, pt->offset);
    t = aligned_or_copy(t);
  }
  if (!t) sf_error_prefix("%s: '%s': ", sd->path, e->name);
  return t;
}

sf_tensor *sf_statedict_get(sf_statedict *sd, const char *name) {
  const sf_sd_entry *e = sf_statedict_find(sd, name);
  if (!e) return sf_error("%s: no tensor named '%s' (the file holds %d entries)", sd->path, name, sd->n), NULL;
  return sf_statedict_get_entry(sd, e);
}

const char *sf_statedict_metadata(const sf_statedict *sd, const char *key) {
  for (int i = 0; i < sd->nmeta; i++)
    if (!strcmp(sd->mkey[i], key)) return sd->mval[i];
  return NULL;
}
int sf_statedict_metadata_count(const sf_statedict *sd) { return sd->nmeta; }
int sf_statedict_metadata_at(const sf_statedict *sd, int i, const char **key, const char **value) {
  if (i < 0 || i >= sd->nmeta) return sf_error("metadata index %d out of range", i);
  *key = sd->mkey[i];
  *value = sd->mval[i];
  return 0;
}
