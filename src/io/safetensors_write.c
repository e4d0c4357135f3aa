/* safetensors_write.c — the safetensors writer: tensors packed largest element first (so each one is
 * aligned to its element size), header padded to 8 bytes, written to a temp file then renamed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/iobuf.h"
#include "io/safetensors.h"
#include "io/statedict.h"

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
