/* safetensors.c — the safetensors header parser over an mmapped file (tensors are zero-copy views). */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const struct { const char *name; sf_dtype dt; } st_dtypes[] = {
    {"F32", SF_F32}, {"BF16", SF_BF16}, {"F16", SF_F16}, {"I64", SF_I64}, {"I32", SF_I32},
    {"U8", SF_U8},   {"BOOL", SF_BOOL}, {"F64", SF_F64},
};

int sf_st_dtype_from_name(const char *s) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
    if (!strcmp(s, st_dtypes[i].name)) return (int)st_dtypes[i].dt;
  return -1;
}

const char *sf_st_dtype_name(sf_dtype dt) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
    if (st_dtypes[i].dt == dt) return st_dtypes[i].name;
  return "?";
}

static void st_clear(sf_st_file *f) {
  for (int i = 0; i < f->n; i++) free(f->t[i].name);
  free(f->t);
  for (int i = 0; i < f->n_meta; i++) {
    free(f->meta_key[i]);
    free(f->meta_val[i]);
  }
  free(f->meta_key);
  free(f->meta_val);
  f->t = NULL;
  f->meta_key = f->meta_val = NULL;
  f->n = f->n_meta = 0;
}

void sf_st_free(sf_st_file *f) {
  if (!f) return;
  st_clear(f);
  sf_mapfile_release(f->map);
  free(f);
}

/* a JSON number that is an exact non-negative integer below 2^53 */
static int json_uint(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return -1;
  double v = j->valuedouble;
  if (!(v >= 0) || v > 9007199254740992.0 || floor(v) != v) return -1;
  *out = (uint64_t)v;
  return 0;
}

static int parse_meta(sf_st_file *f, const cJSON *meta, const char *what) {
  if (f->meta_key) return sf_error("%s: the header holds __metadata__ twice", what);
  if (cJSON_IsNull(meta)) return 0;
  if (!cJSON_IsObject(meta)) return sf_error("%s: __metadata__ is not a JSON object", what);
  int n = cJSON_GetArraySize(meta);
  f->meta_key = calloc(n ? n : 1, sizeof(char *));
  f->meta_val = calloc(n ? n : 1, sizeof(char *));
  if (!f->meta_key || !f->meta_val) return sf_error("%s: out of memory", what);
  for (const cJSON *m = meta->child; m; m = m->next) {
    if (!cJSON_IsString(m)) return sf_error("%s: __metadata__ value of '%s' is not a string", what, m->string);
    f->meta_key[f->n_meta] = strdup(m->string);
    f->meta_val[f->n_meta] = strdup(m->valuestring);
    f->n_meta++;
  }
  return 0;
}

static int parse_tensor(sf_st_tensor *t, const cJSON *e, uint64_t data_size, const char *what) {
  const char *name = e->string;
  if (!cJSON_IsObject(e)) return sf_error("%s: header entry '%s' is not an object", what, name);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!cJSON_IsString(dt)) return sf_error("%s: tensor '%s' has no string \"dtype\"", what, name);
  int d = sf_st_dtype_from_name(dt->valuestring);
  if (d < 0)
    return sf_error("%s: tensor '%s' has dtype %s, which sfwb does not support (F32 BF16 F16 I64 I32 U8 BOOL F64)",
                    what, name, dt->valuestring);
  t->dtype = (sf_dtype)d;
  if (!cJSON_IsArray(sh)) return sf_error("%s: tensor '%s' has no \"shape\" array", what, name);
  int nd = cJSON_GetArraySize(sh);
  if (nd > SF_MAX_DIMS) return sf_error("%s: tensor '%s' has %d dims (sfwb holds at most %d)", what, name, nd, SF_MAX_DIMS);
  t->ndim = nd;
  uint64_t numel = 1;
  int i = 0;
  for (const cJSON *s = sh->child; s; s = s->next, i++) {
    uint64_t v;
    if (json_uint(s, &v)) return sf_error("%s: tensor '%s' has a shape entry that is not a non-negative integer", what, name);
    t->shape[i] = (int64_t)v;
    if (v && numel > (UINT64_C(1) << 62) / v) return sf_error("%s: tensor '%s' shape overflows", what, name);
    numel *= v;
  }
  if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || json_uint(of->child, &t->begin) ||
      json_uint(of->child->next, &t->end))
    return sf_error("%s: tensor '%s' has no valid \"data_offsets\" [begin, end]", what, name);
  if (t->begin > t->end) return sf_error("%s: tensor '%s' has data_offsets begin %llu > end %llu", what, name,
                                         (unsigned long long)t->begin, (unsigned long long)t->end);
  if (t->end > data_size)
    return sf_error("%s: tensor '%s' data_offsets end %llu lies past the end of the file (data section is %llu bytes; truncated file?)",
                    what, name, (unsigned long long)t->end, (unsigned long long)data_size);
  uint64_t want = numel * sf_dtype_size(t->dtype);
  if (t->end - t->begin != want)
    return sf_error("%s: tensor '%s' holds %llu bytes but shape and dtype %s need %llu", what, name,
                    (unsigned long long)(t->end - t->begin), dt->valuestring, (unsigned long long)want);
  t->name = strdup(name);
  return t->name ? 0 : sf_error("%s: out of memory", what);
}

/* The format requires the data section to be indexed entirely: tensors in order of their offsets, each
 * starting where the previous ends (no overlap: two names must never alias one byte range; no gap),
 * the last ending at the end of the file. */
static const sf_st_tensor *g_sort_base;
static int by_offsets(const void *a, const void *b) {
  const sf_st_tensor *x = &g_sort_base[*(const int *)a], *y = &g_sort_base[*(const int *)b];
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

static int check_layout(const sf_st_file *f, uint64_t data_size, const char *what) {
  int *ix = malloc(sizeof(int) * (size_t)(f->n ? f->n : 1));
  if (!ix) return sf_error("%s: out of memory", what);
  for (int i = 0; i < f->n; i++) ix[i] = i;
  g_sort_base = f->t;
  qsort(ix, (size_t)f->n, sizeof *ix, by_offsets);
  uint64_t at = 0;
  int rc = 0;
  const sf_st_tensor *prev = NULL;
  for (int k = 0; k < f->n && !rc; k++) {
    const sf_st_tensor *t = &f->t[ix[k]];
    if (t->begin < at)
      rc = sf_error("%s: tensors '%s' and '%s' overlap (bytes %llu..%llu and %llu..%llu of the data section); "
                    "the safetensors format gives each tensor its own range", what, prev->name, t->name,
                    (unsigned long long)prev->begin, (unsigned long long)prev->end, (unsigned long long)t->begin,
                    (unsigned long long)t->end);
    else if (t->begin > at)
      rc = sf_error("%s: %llu unindexed bytes before tensor '%s' (data_offsets %llu, previous tensor ends at %llu); "
                    "the safetensors format allows no gaps", what, (unsigned long long)(t->begin - at), t->name,
                    (unsigned long long)t->begin, (unsigned long long)at);
    at = t->end;
    prev = t;
  }
  if (!rc && at != data_size)
    rc = sf_error("%s: the tensors cover %llu bytes of a %llu-byte data section (trailing bytes); "
                  "the safetensors format indexes the whole buffer", what, (unsigned long long)at,
                  (unsigned long long)data_size);
  free(ix);
  return rc;
}

int sf_st_parse(sf_st_file *f, const unsigned char *data, size_t size, const char *what) {
  if (size < 8) return sf_error("%s: not a safetensors file (%zu bytes, shorter than the 8-byte header length)", what, size);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)data[i] << (8 * i);
  if (hlen > size - 8)
    return sf_error("%s: header length %llu exceeds the file size %zu (truncated or not a safetensors file)", what,
                    (unsigned long long)hlen, size);
  if (hlen > (100u << 20)) return sf_error("%s: header length %llu is over the 100 MB safetensors limit", what, (unsigned long long)hlen);
  if (hlen < 2 || data[8] != '{') return sf_error("%s: not a safetensors file (header does not start with '{')", what);
  cJSON *root = cJSON_ParseWithLength((const char *)data + 8, (size_t)hlen);
  if (!root) return sf_error("%s: header is not valid JSON", what);
  int rc = 0;
  if (!cJSON_IsObject(root)) {
    rc = sf_error("%s: header is not a JSON object", what);
    goto out;
  }
  f->data_off = 8 + hlen;
  uint64_t data_size = size - f->data_off;
  int n = cJSON_GetArraySize(root);
  f->t = calloc(n ? n : 1, sizeof *f->t);
  if (!f->t) {
    rc = sf_error("%s: out of memory", what);
    goto out;
  }
  for (const cJSON *e = root->child; e; e = e->next) {
    if (!e->string) {
      rc = sf_error("%s: header entry without a name", what);
      goto out;
    }
    if (!strcmp(e->string, "__metadata__")) {
      if ((rc = parse_meta(f, e, what))) goto out;
      continue;
    }
    if ((rc = parse_tensor(&f->t[f->n], e, data_size, what))) goto out;
    f->n++;
  }
  rc = check_layout(f, data_size, what);
out:
  cJSON_Delete(root);
  if (rc) st_clear(f);
  return rc;
}

sf_st_file *sf_st_open(const char *path) {
  sf_mapfile *m = sf_mapfile_open(path);
  if (!m) return NULL;
  sf_st_file *f = calloc(1, sizeof *f);
  if (!f) {
    sf_mapfile_release(m);
    return sf_error("%s: out of memory", path), NULL;
  }
  f->map = m;
  if (sf_st_parse(f, m->base, m->size, path)) {
    sf_st_free(f);
    return NULL;
  }
  return f;
}
