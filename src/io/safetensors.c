/* safetensors.c — read (mmap, zero-copy) and write (packed, aligned, atomic) safetensors files. */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/iobuf.h"
#include "io/statedict.h"

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

/* ---- writer ---- */

static void json_escape(sf_buf *b, const char *s) {
  sf_buf_byte(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      sf_buf_byte(b, '\\');
      sf_buf_byte(b, *p);
    } else if (*p < 0x20) {
      char e[8];
      snprintf(e, sizeof e, "\\u%04x", *p);
      sf_buf_str(b, e);
    } else {
      sf_buf_byte(b, *p);
    }
  }
  sf_buf_byte(b, '"');
}

typedef struct {
  const char *name;
  sf_tensor *t; /* CPU contiguous, owned */
  uint64_t nbytes;
} st_item;

/* largest element first keeps every tensor aligned to its element size (as the reference writer) */
static int st_item_cmp(const void *a, const void *b) {
  const st_item *x = a, *y = b;
  size_t ex = sf_dtype_size(x->t->dtype), ey = sf_dtype_size(y->t->dtype);
  if (ex != ey) return ex > ey ? -1 : 1;
  return strcmp(x->name, y->name);
}

int sf_safetensors_save(const char *path, int n, const char *const *names, sf_tensor *const *tensors, int n_meta,
                        const char *const *meta_keys, const char *const *meta_values) {
  st_item *items = calloc(n ? n : 1, sizeof *items);
  if (!items) return sf_error("%s: out of memory", path);
  int rc = 0;
  sf_buf hdr = {0};
  for (int i = 0; i < n; i++) {
    if (!names[i] || !names[i][0] || !strcmp(names[i], "__metadata__")) {
      rc = sf_error("%s: invalid tensor name '%s'", path, names[i] ? names[i] : "(null)");
      goto out;
    }
    for (int j = 0; j < i; j++)
      if (!strcmp(names[i], names[j])) {
        rc = sf_error("%s: tensor name '%s' appears twice", path, names[i]);
        goto out;
      }
    items[i].name = names[i];
    items[i].t = sf_io_cpu_contiguous(tensors[i]);
    if (!items[i].t) {
      sf_error_prefix("%s: tensor '%s': ", path, names[i]);
      rc = -1;
      goto out;
    }
    items[i].nbytes = (uint64_t)sf_numel(items[i].t) * sf_dtype_size(items[i].t->dtype);
  }
  qsort(items, n, sizeof *items, st_item_cmp);
  sf_buf_byte(&hdr, '{');
  int first = 1;
  if (n_meta > 0) {
    sf_buf_str(&hdr, "\"__metadata__\":{");
    for (int i = 0; i < n_meta; i++) {
      if (i) sf_buf_byte(&hdr, ',');
      json_escape(&hdr, meta_keys[i]);
      sf_buf_byte(&hdr, ':');
      json_escape(&hdr, meta_values[i]);
    }
    sf_buf_byte(&hdr, '}');
    first = 0;
  }
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    char tmp[96];
    if (!first) sf_buf_byte(&hdr, ',');
    first = 0;
    json_escape(&hdr, items[i].name);
    snprintf(tmp, sizeof tmp, ":{\"dtype\":\"%s\",\"shape\":[", sf_st_dtype_name(items[i].t->dtype));
    sf_buf_str(&hdr, tmp);
    for (int d = 0; d < items[i].t->ndim; d++) {
      snprintf(tmp, sizeof tmp, d ? ",%lld" : "%lld", (long long)items[i].t->shape[d]);
      sf_buf_str(&hdr, tmp);
    }
    snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
             (unsigned long long)(off + items[i].nbytes));
    sf_buf_str(&hdr, tmp);
    off += items[i].nbytes;
  }
  sf_buf_byte(&hdr, '}');
  while (hdr.n % 8) sf_buf_byte(&hdr, ' '); /* data section starts 8-aligned */
  if (hdr.oom) {
    rc = sf_error("%s: out of memory", path);
    goto out;
  }
  sf_atomic_file af;
  if ((rc = sf_atomic_open(&af, path))) goto out;
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hdr.n >> (8 * i));
  rc = sf_atomic_write(&af, len8, 8);
  if (!rc) rc = sf_atomic_write(&af, hdr.p, hdr.n);
  for (int i = 0; i < n && !rc; i++) rc = sf_atomic_write(&af, sf_data_ptr(items[i].t), items[i].nbytes);
  if (rc) sf_atomic_abort(&af);
  else rc = sf_atomic_commit(&af);
out:
  for (int i = 0; i < n; i++) sf_release(items[i].t);
  free(items);
  sf_buf_free(&hdr);
  return rc;
}
