/* fuzz_png.c — libFuzzer target: PNG decoding (libpng behind sf_png_read_mem) on arbitrary bytes. */
#include <stdint.h>

#include "io/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  sf_tensor *t = sf_png_read_mem(data, n, "fuzz");
  if (t) {
    volatile uint8_t sink = 0;
    int64_t k = sf_numel(t);
    if (k > 0) sink ^= ((const uint8_t *)sf_data_ptr(t))[k - 1];
    (void)sink;
    sf_release(t);
  }
  return 0;
}
