/* iobuf.h — small helpers shared by the file writers: a growable byte buffer, atomic file
 * replacement (write to a temp name, then rename) and CPU-contiguous views of any tensor. */
#ifndef SF_IO_IOBUF_H
#define SF_IO_IOBUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/tensor.h"

typedef struct {
  unsigned char *p;
  size_t n, cap;
  int oom;
} sf_buf;

void sf_buf_put(sf_buf *b, const void *data, size_t n);
void sf_buf_byte(sf_buf *b, unsigned char c);
void sf_buf_u16(sf_buf *b, uint16_t v);
void sf_buf_u32(sf_buf *b, uint32_t v);
void sf_buf_u64(sf_buf *b, uint64_t v);
void sf_buf_str(sf_buf *b, const char *s);
void sf_buf_free(sf_buf *b);

/* the atomic writer: fopen of "<path>.tmp-<pid>-<n>"; commit renames onto path, abort unlinks */
typedef struct {
  FILE *f;
  char *path, *tmp;
} sf_atomic_file;
int sf_atomic_open(sf_atomic_file *a, const char *path);
int sf_atomic_write(sf_atomic_file *a, const void *data, size_t n); /* error names the path */
int sf_atomic_commit(sf_atomic_file *a);
void sf_atomic_abort(sf_atomic_file *a);

/* a contiguous CPU tensor with t's values (t itself, retained, when it already is one) */
sf_tensor *sf_io_cpu_contiguous(sf_tensor *t);
/* element i (row-major order over t's shape) of a CPU tensor of any dtype, as double */
double sf_io_get(const sf_tensor *t, int64_t i);

#endif
