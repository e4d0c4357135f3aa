/* pickle.h — a restricted unpickler for torch.save's data.pkl: builds a tree of plain values and
 * tensor descriptions; it never imports or calls anything. Only the globals torch.save emits for
 * state dicts are known (see pickle.c); any other global is an error that names it. */
#ifndef SF_IO_PICKLE_H
#define SF_IO_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef enum {
  SF_PY_NONE, SF_PY_BOOL, SF_PY_INT, SF_PY_FLOAT, SF_PY_STR, SF_PY_BYTES,
  SF_PY_TUPLE, SF_PY_LIST, SF_PY_DICT,
  SF_PY_GLOBAL,  /* a known global not yet applied (callable / storage type) */
  SF_PY_STORAGE, /* a persistent storage reference: key, dtype, element count */
  SF_PY_TENSOR,
} sf_py_type;

typedef struct sf_py sf_py;
struct sf_py {
  sf_py_type type;
  int64_t i;       /* INT, BOOL; GLOBAL: which global (pickle.c's table) */
  double f;
  char *s;         /* STR, BYTES (NUL-terminated too), STORAGE key */
  size_t len;
  sf_py **items;   /* TUPLE/LIST items; DICT: key0, value0, key1, value1, ... */
  size_t n, cap;
  /* STORAGE */
  sf_dtype dtype;
  int64_t numel;   /* elements of dtype */
  int storage_id;  /* 0-based, distinct per key in one pickle */
  /* TENSOR */
  sf_py *storage;
  int64_t offset;
  int ndim;
  int64_t shape[SF_MAX_DIMS], stride[SF_MAX_DIMS];
  bool requires_grad;
};

typedef struct sf_pickle sf_pickle; /* owns every sf_py it made (freed together) */

/* Unpickle `data`; `what` (file name) prefixes errors. Returns NULL + error. *root is the top value. */
sf_pickle *sf_pickle_load(const unsigned char *data, size_t n, const char *what, sf_py **root);
void sf_pickle_free(sf_pickle *p);
int sf_pickle_storage_count(const sf_pickle *p);
sf_py *sf_pickle_storage(const sf_pickle *p, int id);

#endif
