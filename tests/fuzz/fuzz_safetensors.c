/* fuzz_safetensors.c — libFuzzer target: the safetensors header parser on arbitrary bytes; every
 * accepted tensor's byte range is touched, so a bounds bug is an ASan report. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  uint8_t *copy = malloc(n ? n : 1); /* exact size: overreads hit the redzone */
  memcpy(copy, data, n);
  sf_st_file *f = calloc(1, sizeof *f);
  if (sf_st_parse(f, copy, n, "fuzz") == 0) {
    volatile uint8_t sink = 0;
    for (int i = 0; i < f->n; i++) {
      const sf_st_tensor *t = &f->t[i];
      if (t->end > t->begin) {
        sink ^= copy[f->data_off + t->begin];
        sink ^= copy[f->data_off + t->end - 1];
      }
      for (int m = 0; m < f->n_meta; m++) sink ^= (uint8_t)strlen(f->meta_key[m]);
    }
    (void)sink;
  }
  sf_st_free(f);
  free(copy);
  return 0;
}
