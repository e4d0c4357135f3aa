/* iobuf.c — byte buffers, atomic file replacement and CPU-contiguous tensor access for the writers. */
#include "io/iobuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/half.h"
#include "core/dispatch.h"

void sf_buf_put(sf_buf *b, const void *data, size_t n) {
  if (b->oom) return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n) cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, data, n);
  b->n += n;
}
void sf_buf_byte(sf_buf *b, unsigned char c) { sf_buf_put(b, &c, 1); }
void sf_buf_u16(sf_buf *b, uint16_t v) {
  unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
  sf_buf_put(b, x, 2);
}
void sf_buf_u32(sf_buf *b, uint32_t v) {
  unsigned char x[4];
  for (int i = 0; i < 4; i++) x[i] = (unsigned char)(v >> (8 * i));
  sf_buf_put(b, x, 4);
}
void sf_buf_u64(sf_buf *b, uint64_t v) {
  unsigned char x[8];
  for (int i = 0; i < 8; i++) x[i] = (unsigned char)(v >> (8 * i));
  sf_buf_put(b, x, 8);
}
void sf_buf_str(sf_buf *b, const char *s) { sf_buf_put(b, s, strlen(s)); }
void sf_buf_free(sf_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

int sf_atomic_open(sf_atomic_file *a, const char *path) {
  static int counter;
  memset(a, 0, sizeof *a);
  size_t n = strlen(path) + 64;
  a->path = strdup(path);
  a->tmp = malloc(n);
  if (!a->path || !a->tmp) {
    free(a->path);
    free(a->tmp);
    return sf_error("%s: out of memory", path);
  }
  snprintf(a->tmp, n, "%s.tmp-%d-%d", path, (int)getpid(), __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
  a->f = fopen(a->tmp, "wb");
  if (!a->f) {
    int e = errno;
    free(a->path);
    free(a->tmp);
    a->path = a->tmp = NULL;
    return sf_error("%s: cannot create: %s", path, strerror(e));
  }
  return 0;
}

int sf_atomic_write(sf_atomic_file *a, const void *data, size_t n) {
  if (n && fwrite(data, 1, n, a->f) != n) return sf_error("%s: write failed: %s", a->path, strerror(errno));
  return 0;
}

int sf_atomic_commit(sf_atomic_file *a) {
  int rc = 0;
  if (fflush(a->f) != 0) rc = sf_error("%s: write failed: %s", a->path, strerror(errno));
  if (fclose(a->f) != 0 && rc == 0) rc = sf_error("%s: write failed: %s", a->path, strerror(errno));
  a->f = NULL;
  if (rc == 0 && rename(a->tmp, a->path) != 0) rc = sf_error("%s: cannot rename the temporary file into place: %s", a->path, strerror(errno));
  if (rc) unlink(a->tmp);
  free(a->path);
  free(a->tmp);
  a->path = a->tmp = NULL;
  return rc;
}

void sf_atomic_abort(sf_atomic_file *a) {
  if (a->f) fclose(a->f);
  if (a->tmp) unlink(a->tmp);
  free(a->path);
  free(a->tmp);
  memset(a, 0, sizeof *a);
}

sf_tensor *sf_io_cpu_contiguous(sf_tensor *t) {
  sf_tensor *c = sf_raw_to_device(t, sf_cpu());
  if (!c) return NULL;
  sf_tensor *r = sf_raw_contiguous(c);
  sf_release(c);
  return r;
}

double sf_io_get(const sf_tensor *t, int64_t i) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    int64_t n = t->shape[d];
    off += (i % n) * t->stride[d];
    i /= n;
  }
  const char *p = (const char *)t->storage->data + off * (int64_t)sf_dtype_size(t->dtype);
  switch (t->dtype) {
  case SF_F32: { float v; memcpy(&v, p, 4); return v; }
  case SF_F64: { double v; memcpy(&v, p, 8); return v; }
  case SF_BF16: { uint16_t v; memcpy(&v, p, 2); return sf_bf16_to_f32(v); }
  case SF_F16: { uint16_t v; memcpy(&v, p, 2); return sf_f16_to_f32(v); }
  case SF_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
  case SF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
  case SF_U8: return *(const uint8_t *)p;
  case SF_BOOL: return *(const uint8_t *)p ? 1 : 0;
  default: return 0;
  }
}
