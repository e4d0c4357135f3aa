/* safetensors.h — the safetensors header parser (used by statedict.c and the fuzz harness). */
#ifndef SF_IO_SAFETENSORS_H
#define SF_IO_SAFETENSORS_H

#include <stdint.h>

#include "core/tensor.h"
#include "io/mapfile.h"

typedef struct {
  char *name;
  sf_dtype dtype;
  int ndim;
  int64_t shape[SF_MAX_DIMS];
  uint64_t begin, end; /* byte range relative to the data section */
} sf_st_tensor;

typedef struct {
  sf_mapfile *map;
  uint64_t data_off; /* 8 + header length */
  int n;
  sf_st_tensor *t;
  int n_meta;
  char **meta_key, **meta_val;
} sf_st_file;

/* parse the header of an in-memory safetensors image (the mapping's bytes); `what` names it in errors */
int sf_st_parse(sf_st_file *f, const unsigned char *data, size_t size, const char *what);
sf_st_file *sf_st_open(const char *path);
void sf_st_free(sf_st_file *f); /* frees the header tables and releases the mapping */
/* "F32" -> SF_F32 ...; -1 for names sfwb does not hold */
int sf_st_dtype_from_name(const char *s);
const char *sf_st_dtype_name(sf_dtype dt);

#endif
