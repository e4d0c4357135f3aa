/* ptwrite.c — the .pt writer: pickle protocol 2 bytes for the value tree plus a zip archive
 * (stored members, 64-byte aligned data, CRC-32, zip64 when large) laid out as torch.save does. */
#include "io/pt.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"
#include "io/iobuf.h"
#include "io/statedict.h"

typedef struct {
  sf_storage *storage; /* identity of the source storage (CPU) */
  sf_dtype dtype;
  sf_tensor *data;     /* a tensor whose storage bytes are written (owned) */
} pt_storage_rec;

struct sf_pt_writer {
  sf_buf pkl;
  char kind[128]; /* open containers: 'd' or 'l' */
  int depth;
  int nvalues_top;
  int has_ikey;    /* sf_pt_int_key was called: the next dict value's key is ikey */
  int64_t ikey;
  pt_storage_rec *st;
  int nst, capst;
  int err;
};

sf_pt_writer *sf_pt_writer_new(void) {
  sf_pt_writer *w = calloc(1, sizeof *w);
  if (!w) return sf_error("out of memory"), NULL;
  sf_buf_byte(&w->pkl, 0x80);
  sf_buf_byte(&w->pkl, 2);
  return w;
}

void sf_pt_writer_free(sf_pt_writer *w) {
  if (!w) return;
  for (int i = 0; i < w->nst; i++) sf_release(w->st[i].data);
  free(w->st);
  sf_buf_free(&w->pkl);
  free(w);
}

static void put_unicode(sf_buf *b, const char *s, size_t n) {
  sf_buf_byte(b, 'X');
  sf_buf_u32(b, (uint32_t)n);
  sf_buf_put(b, s, n);
}

static void put_int(sf_buf *b, int64_t v) {
  if (v >= 0 && v < 256) {
    sf_buf_byte(b, 'K');
    sf_buf_byte(b, (unsigned char)v);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    sf_buf_byte(b, 'J');
    sf_buf_u32(b, (uint32_t)(int32_t)v);
  } else {
    sf_buf_byte(b, 0x8a);
    sf_buf_byte(b, 8);
    sf_buf_u64(b, (uint64_t)v);
  }
}

static void put_global(sf_buf *b, const char *mod, const char *name) {
  sf_buf_byte(b, 'c');
  sf_buf_str(b, mod);
  sf_buf_byte(b, '\n');
  sf_buf_str(b, name);
  sf_buf_byte(b, '\n');
}

/* checks the key against the open container and emits it */
static int put_key(sf_pt_writer *w, const char *key) {
  if (w->err) return -1;
  if (w->depth == 0) {
    if (key) return w->err = sf_error(".pt writer: a top-level value takes no key ('%s')", key);
    if (w->nvalues_top++) return w->err = sf_error(".pt writer: more than one top-level value");
    return 0;
  }
  if (w->kind[w->depth - 1] == 'd') {
    if (key && w->has_ikey) return w->err = sf_error(".pt writer: dict value with both an integer key and the key '%s'", key);
    if (w->has_ikey) {
      put_int(&w->pkl, w->ikey);
      w->has_ikey = 0;
      return 0;
    }
    if (!key) return w->err = sf_error(".pt writer: a dict value needs a key");
    put_unicode(&w->pkl, key, strlen(key));
  } else if (key || w->has_ikey) {
    if (!key) return w->err = sf_error(".pt writer: a list item takes no key (integer key %lld)", (long long)w->ikey);
    return w->err = sf_error(".pt writer: a list item takes no key ('%s')", key);
  }
  return 0;
}

static int begin(sf_pt_writer *w, const char *key, char kind) {
  if (put_key(w, key)) return -1;
  if (w->depth >= (int)sizeof w->kind) return w->err = sf_error(".pt writer: nesting deeper than %d", (int)sizeof w->kind);
  w->kind[w->depth++] = kind;
  sf_buf_byte(&w->pkl, kind == 'd' ? '}' : ']');
  sf_buf_byte(&w->pkl, '(');
  return 0;
}

int sf_pt_begin_dict(sf_pt_writer *w, const char *key) { return begin(w, key, 'd'); }

int sf_pt_int_key(sf_pt_writer *w, int64_t key) {
  if (w->err) return -1;
  if (w->depth == 0 || w->kind[w->depth - 1] != 'd') return w->err = sf_error(".pt writer: integer key %lld outside a dict", (long long)key);
  if (w->has_ikey) return w->err = sf_error(".pt writer: integer key %lld given twice before a value", (long long)w->ikey);
  w->has_ikey = 1;
  w->ikey = key;
  return 0;
}
int sf_pt_begin_list(sf_pt_writer *w, const char *key) { return begin(w, key, 'l'); }

int sf_pt_end(sf_pt_writer *w) {
  if (w->err) return -1;
  if (!w->depth) return w->err = sf_error(".pt writer: end without an open dict or list");
  if (w->has_ikey) return w->err = sf_error(".pt writer: integer key %lld without a value", (long long)w->ikey);
  sf_buf_byte(&w->pkl, w->kind[--w->depth] == 'd' ? 'u' : 'e');
  return 0;
}

int sf_pt_int(sf_pt_writer *w, const char *key, int64_t v) {
  if (put_key(w, key)) return -1;
  put_int(&w->pkl, v);
  return 0;
}

int sf_pt_float(sf_pt_writer *w, const char *key, double v) {
  if (put_key(w, key)) return -1;
  uint64_t u;
  memcpy(&u, &v, 8);
  sf_buf_byte(&w->pkl, 'G');
  for (int i = 7; i >= 0; i--) sf_buf_byte(&w->pkl, (unsigned char)(u >> (8 * i)));
  return 0;
}

int sf_pt_bool(sf_pt_writer *w, const char *key, int v) {
  if (put_key(w, key)) return -1;
  sf_buf_byte(&w->pkl, v ? 0x88 : 0x89);
  return 0;
}

int sf_pt_str(sf_pt_writer *w, const char *key, const char *s, size_t len) {
  if (put_key(w, key)) return -1;
  put_unicode(&w->pkl, s, len);
  return 0;
}

int sf_pt_none(sf_pt_writer *w, const char *key) {
  if (put_key(w, key)) return -1;
  sf_buf_byte(&w->pkl, 'N');
  return 0;
}

static const char *storage_type(sf_dtype dt) {
  switch (dt) {
  case SF_F32: return "FloatStorage";
  case SF_F64: return "DoubleStorage";
  case SF_F16: return "HalfStorage";
  case SF_BF16: return "BFloat16Storage";
  case SF_I64: return "LongStorage";
  case SF_I32: return "IntStorage";
  case SF_U8: return "ByteStorage";
  case SF_BOOL: return "BoolStorage";
  default: return NULL;
  }
}

int sf_pt_tensor(sf_pt_writer *w, const char *key, sf_tensor *t) {
  if (w->err) return -1;
  if (!storage_type(t->dtype)) return w->err = sf_error(".pt writer: dtype %s cannot be saved", sf_dtype_name(t->dtype));
  /* CPU tensors keep their storage (shared by views); others become a contiguous CPU copy */
  sf_tensor *src = t;
  int own = 0;
  if (t->storage->device.type != SF_DEV_CPU) {
    src = sf_io_cpu_contiguous(t);
    if (!src) return w->err = -1;
    own = 1;
  }
  int id = -1;
  for (int i = 0; i < w->nst; i++)
    if (w->st[i].storage == src->storage && w->st[i].dtype == src->dtype) id = i;
  if (id < 0) {
    if (w->nst == w->capst) {
      int cap = w->capst ? w->capst * 2 : 64;
      pt_storage_rec *s = realloc(w->st, cap * sizeof *s);
      if (!s) {
        if (own) sf_release(src);
        return w->err = sf_error("out of memory");
      }
      w->st = s;
      w->capst = cap;
    }
    id = w->nst++;
    w->st[id].storage = src->storage;
    w->st[id].dtype = src->dtype;
    w->st[id].data = own ? src : sf_retain(src);
    own = 0;
  }
  if (own) sf_release(src);
  if (put_key(w, key)) return -1;
  sf_buf *b = &w->pkl;
  size_t es = sf_dtype_size(src->dtype);
  char keybuf[32];
  snprintf(keybuf, sizeof keybuf, "%d", id);
  put_global(b, "torch._utils", "_rebuild_tensor_v2");
  sf_buf_byte(b, '(');
  sf_buf_byte(b, '(');
  put_unicode(b, "storage", 7);
  put_global(b, "torch", storage_type(src->dtype));
  put_unicode(b, keybuf, strlen(keybuf));
  put_unicode(b, "cpu", 3);
  put_int(b, (int64_t)(src->storage->nbytes / es));
  sf_buf_byte(b, 't');
  sf_buf_byte(b, 'Q');
  put_int(b, src->offset);
  sf_buf_byte(b, '(');
  for (int d = 0; d < src->ndim; d++) put_int(b, src->shape[d]);
  sf_buf_byte(b, 't');
  sf_buf_byte(b, '(');
  for (int d = 0; d < src->ndim; d++) put_int(b, src->stride[d]);
  sf_buf_byte(b, 't');
  sf_buf_byte(b, t->requires_grad ? 0x88 : 0x89);
  put_global(b, "collections", "OrderedDict");
  sf_buf_byte(b, ')');
  sf_buf_byte(b, 'R');
  sf_buf_byte(b, 't');
  sf_buf_byte(b, 'R');
  return 0;
}

/* ---- zip ---- */

typedef struct {
  char name[64];
  uint32_t crc;
  uint64_t size, lho;
} zrec;

typedef struct {
  sf_atomic_file f;
  uint64_t off;
  zrec *r;
  int n, cap;
  uint64_t z64_limit; /* sizes/offsets at or above this use zip64 fields (tests lower it) */
} zwriter;

static int zw_write(zwriter *z, const void *p, size_t n) {
  if (sf_atomic_write(&z->f, p, n)) return -1;
  z->off += n;
  return 0;
}

static uint32_t crc_of(const unsigned char *p, uint64_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (n) {
    uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, p, k);
    p += k;
    n -= k;
  }
  return (uint32_t)c;
}

static int zw_add(zwriter *z, const char *name, const void *data, uint64_t size) {
  if (z->n == z->cap) {
    int cap = z->cap ? z->cap * 2 : 32;
    zrec *r = realloc(z->r, cap * sizeof *r);
    if (!r) return sf_error("%s: out of memory", z->f.path);
    z->r = r;
    z->cap = cap;
  }
  zrec *r = &z->r[z->n++];
  snprintf(r->name, sizeof r->name, "%s", name);
  r->crc = crc_of(data, size);
  r->size = size;
  r->lho = z->off;
  int z64 = size >= z->z64_limit;
  size_t nlen = strlen(r->name);
  sf_buf h = {0};
  sf_buf_u32(&h, 0x04034b50);
  sf_buf_u16(&h, z64 ? 45 : 20);
  sf_buf_u16(&h, 0);
  sf_buf_u16(&h, 0);
  sf_buf_u16(&h, 0);
  sf_buf_u16(&h, 0x21);
  sf_buf_u32(&h, r->crc);
  sf_buf_u32(&h, z64 ? 0xffffffffu : (uint32_t)size);
  sf_buf_u32(&h, z64 ? 0xffffffffu : (uint32_t)size);
  sf_buf_u16(&h, (uint16_t)nlen);
  size_t fixed = 30 + nlen + (z64 ? 20 : 0);
  /* pad with an 'FB' extra field so the data starts 64-byte aligned, as torch's writer does */
  size_t pad = (64 - (z->off + fixed + 4) % 64) % 64;
  sf_buf_u16(&h, (uint16_t)((z64 ? 20 : 0) + 4 + pad));
  sf_buf_put(&h, r->name, nlen);
  if (z64) {
    sf_buf_u16(&h, 1);
    sf_buf_u16(&h, 16);
    sf_buf_u64(&h, size);
    sf_buf_u64(&h, size);
  }
  sf_buf_u16(&h, 0x4246);
  sf_buf_u16(&h, (uint16_t)pad);
  for (size_t i = 0; i < pad; i++) sf_buf_byte(&h, 'Z');
  int rc = h.oom ? sf_error("%s: out of memory", z->f.path) : zw_write(z, h.p, h.n);
  sf_buf_free(&h);
  if (!rc) rc = zw_write(z, data, size);
  return rc;
}

static int zw_finish(zwriter *z) {
  sf_buf c = {0};
  uint64_t cd_off = z->off;
  for (int i = 0; i < z->n; i++) {
    zrec *r = &z->r[i];
    /* sizes go to the zip64 field whenever the offset does: miniz (torch's reader) bounds-checks the
     32-bit offset field against the archive size unless the size fields are zip64 too */
    int zo = r->lho >= z->z64_limit, zs = r->size >= z->z64_limit || zo;
    size_t nlen = strlen(r->name);
    uint16_t xlen = (zs || zo) ? (uint16_t)(4 + (zs ? 16 : 0) + (zo ? 8 : 0)) : 0;
    sf_buf_u32(&c, 0x02014b50);
    sf_buf_u16(&c, 45);
    sf_buf_u16(&c, xlen ? 45 : 20);
    sf_buf_u16(&c, 0);
    sf_buf_u16(&c, 0);
    sf_buf_u16(&c, 0);
    sf_buf_u16(&c, 0x21);
    sf_buf_u32(&c, r->crc);
    sf_buf_u32(&c, zs ? 0xffffffffu : (uint32_t)r->size);
    sf_buf_u32(&c, zs ? 0xffffffffu : (uint32_t)r->size);
    sf_buf_u16(&c, (uint16_t)nlen);
    sf_buf_u16(&c, xlen);
    sf_buf_u16(&c, 0);
    sf_buf_u16(&c, 0);
    sf_buf_u16(&c, 0);
    sf_buf_u32(&c, 0);
    sf_buf_u32(&c, zo ? 0xffffffffu : (uint32_t)r->lho);
    sf_buf_put(&c, r->name, nlen);
    if (xlen) {
      sf_buf_u16(&c, 1);
      sf_buf_u16(&c, (uint16_t)(xlen - 4));
      if (zs) {
        sf_buf_u64(&c, r->size);
        sf_buf_u64(&c, r->size);
      }
      if (zo) sf_buf_u64(&c, r->lho);
    }
  }
  uint64_t cd_size = c.n;
  int z64 = cd_off >= z->z64_limit || cd_size >= z->z64_limit || z->n >= 0xffff;
  if (z64) {
    uint64_t z64_off = cd_off + cd_size;
    sf_buf_u32(&c, 0x06064b50);
    sf_buf_u64(&c, 44);
    sf_buf_u16(&c, 45);
    sf_buf_u16(&c, 45);
    sf_buf_u32(&c, 0);
    sf_buf_u32(&c, 0);
    sf_buf_u64(&c, (uint64_t)z->n);
    sf_buf_u64(&c, (uint64_t)z->n);
    sf_buf_u64(&c, cd_size);
    sf_buf_u64(&c, cd_off);
    sf_buf_u32(&c, 0x07064b50);
    sf_buf_u32(&c, 0);
    sf_buf_u64(&c, z64_off);
    sf_buf_u32(&c, 1);
  }
  sf_buf_u32(&c, 0x06054b50);
  sf_buf_u16(&c, 0);
  sf_buf_u16(&c, 0);
  sf_buf_u16(&c, z64 ? 0xffff : (uint16_t)z->n);
  sf_buf_u16(&c, z64 ? 0xffff : (uint16_t)z->n);
  sf_buf_u32(&c, z64 ? 0xffffffffu : (uint32_t)cd_size);
  sf_buf_u32(&c, z64 ? 0xffffffffu : (uint32_t)cd_off);
  sf_buf_u16(&c, 0);
  int rc = c.oom ? sf_error("%s: out of memory", z->f.path) : zw_write(z, c.p, c.n);
  sf_buf_free(&c);
  return rc;
}

int sf_pt_writer_save(sf_pt_writer *w, const char *path) {
  if (w->err) return -1;
  if (w->depth || w->nvalues_top != 1) return sf_error("%s: .pt writer: the value tree is incomplete", path);
  sf_buf_byte(&w->pkl, '.');
  if (w->pkl.oom) return sf_error("%s: out of memory", path);
  zwriter z;
  memset(&z, 0, sizeof z);
  z.z64_limit = 0xffffffffu;
  const char *force = getenv("SFWB_ZIP64_LIMIT"); /* tests exercise the zip64 path on small files */
  if (force && atoll(force) > 0) z.z64_limit = (uint64_t)atoll(force);
  if (sf_atomic_open(&z.f, path)) return -1;
  int rc = zw_add(&z, "archive/data.pkl", w->pkl.p, w->pkl.n);
  /* torch >= 2.1 records the storages' byte order; older readers ignore the record */
  if (!rc) rc = zw_add(&z, "archive/byteorder", "little", 6);
  for (int i = 0; i < w->nst && !rc; i++) {
    char name[64];
    snprintf(name, sizeof name, "archive/data/%d", i);
    sf_storage *s = w->st[i].data->storage;
    size_t es = sf_dtype_size(w->st[i].dtype);
    rc = zw_add(&z, name, s->data, (s->nbytes / es) * es);
  }
  if (!rc) rc = zw_add(&z, "archive/version", "3\n", 2);
  if (!rc) rc = zw_finish(&z);
  free(z.r);
  if (rc) {
    sf_atomic_abort(&z.f);
    return -1;
  }
  return sf_atomic_commit(&z.f);
}

int sf_pt_save_flat(const char *path, int n, const char *const *names, sf_tensor *const *tensors) {
  sf_pt_writer *w = sf_pt_writer_new();
  if (!w) return -1;
  int rc = sf_pt_begin_dict(w, NULL);
  for (int i = 0; i < n && !rc; i++) rc = sf_pt_tensor(w, names[i], tensors[i]);
  if (!rc) rc = sf_pt_end(w);
  if (!rc) rc = sf_pt_writer_save(w, path);
  sf_pt_writer_free(w);
  return rc;
}
