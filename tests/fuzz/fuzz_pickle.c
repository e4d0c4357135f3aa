/* fuzz_pickle.c — libFuzzer target: the restricted unpickler on arbitrary bytes; the resulting tree is
 * walked (bounded, memo cycles allowed) and tensor views are checked against their storage sizes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/pickle.h"

static size_t budget;

static void walk(const sf_py *o, int depth) {
  if (!o || depth > 50 || budget == 0) return;
  budget--;
  volatile size_t sink = o->len;
  if (o->s) sink += strlen(o->s);
  if (o->type == SF_PY_TENSOR) {
    int64_t ext = o->offset;
    int empty = 0;
    for (int d = 0; d < o->ndim; d++) {
      if (o->shape[d] == 0) empty = 1;
      else ext += (o->shape[d] - 1) * o->stride[d];
    }
    if (!empty && ext >= o->storage->numel) abort(); /* the reader promised to refuse this */
  }
  for (size_t i = 0; i < o->n; i++) walk(o->items[i], depth + 1);
  (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  uint8_t *copy = malloc(n ? n : 1);
  memcpy(copy, data, n);
  sf_py *root;
  sf_pickle *p = sf_pickle_load(copy, n, "fuzz", &root);
  if (p) {
    budget = 100000;
    walk(root, 0);
    sf_pickle_free(p);
  }
  free(copy);
  return 0;
}
