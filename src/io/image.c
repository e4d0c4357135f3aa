/* image.c — PNG writing through libpng and the u8 <-> [-1, 1] float conversions. */
#include "io/image.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/png_err.h"
#include "core/dispatch.h"
#include "io/iobuf.h"

int sf_png_write(const char *path, sf_tensor *img) {
  if (img->ndim != 3 || img->dtype != SF_U8 || (img->shape[2] != 1 && img->shape[2] != 3 && img->shape[2] != 4)) {
    char b[64];
    return sf_error("%s: PNG pixels must be u8 [H, W, C] with C = 1, 3 or 4, got %s %s", path, sf_dtype_name(img->dtype),
                    sf_shape_str(img, b, sizeof b));
  }
  if (img->shape[0] < 1 || img->shape[1] < 1 || img->shape[0] > 65535 || img->shape[1] > 65535)
    return sf_error("%s: image size %lldx%lld is outside 1..65535", path, (long long)img->shape[1], (long long)img->shape[0]);
  sf_tensor *c = sf_io_cpu_contiguous(img);
  if (!c) return -1;
  sf_atomic_file af;
  if (sf_atomic_open(&af, path)) {
    sf_release(c);
    return -1;
  }
  png_err_ctx ectx = {{0}};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ectx, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  png_bytep *volatile rows = NULL;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    sf_error("%s: PNG write failed: %s", path, ectx.msg[0] ? ectx.msg : "out of memory");
    if (png) png_destroy_write_struct(&png, info ? &info : NULL);
    free(rows);
    sf_release(c);
    sf_atomic_abort(&af);
    return -1;
  }
  int h = (int)c->shape[0], w = (int)c->shape[1], ch = (int)c->shape[2];
  png_init_io(png, af.f);
  png_set_IHDR(png, info, w, h, 8, ch == 1 ? PNG_COLOR_TYPE_GRAY : ch == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, 3);
  png_write_info(png, info);
  rows = malloc(sizeof(png_bytep) * h);
  if (!rows) png_error(png, "out of memory");
  for (int y = 0; y < h; y++) rows[y] = (png_bytep)sf_data_ptr(c) + (size_t)y * w * ch;
  png_write_image(png, rows);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(rows);
  sf_release(c);
  return sf_atomic_commit(&af);
}

sf_tensor *sf_image_u8_to_float(sf_tensor *hwc) {
  if (hwc->ndim != 3 || hwc->dtype != SF_U8) {
    char b[64];
    return sf_error("image: expected u8 [H, W, C], got %s %s", sf_dtype_name(hwc->dtype), sf_shape_str(hwc, b, sizeof b)), NULL;
  }
  sf_tensor *c = sf_io_cpu_contiguous(hwc);
  if (!c) return NULL;
  int64_t H = c->shape[0], W = c->shape[1], C = c->shape[2];
  int64_t shape[3] = {C, H, W};
  sf_tensor *out = sf_tensor_new(SF_F32, sf_cpu(), 3, shape);
  if (!out) {
    sf_release(c);
    return NULL;
  }
  const uint8_t *src = sf_data_ptr(c);
  float *dst = sf_data_ptr(out);
  for (int64_t y = 0; y < H; y++)
    for (int64_t x = 0; x < W; x++)
      for (int64_t k = 0; k < C; k++) {
        volatile float v = (float)src[(y * W + x) * C + k] / 255.0f; /* f32 rounding at each step, as torch */
        v = v - 0.5f;
        dst[(k * H + y) * W + x] = v / 0.5f;
      }
  sf_release(c);
  return out;
}

sf_tensor *sf_image_float_to_u8(sf_tensor *chw) {
  if (chw->ndim != 3 || !sf_dtype_is_float(chw->dtype)) {
    char b[64];
    return sf_error("image: expected a float [C, H, W] tensor in [-1, 1], got %s %s", sf_dtype_name(chw->dtype),
                    sf_shape_str(chw, b, sizeof b)), NULL;
  }
  sf_tensor *c0 = sf_io_cpu_contiguous(chw);
  if (!c0) return NULL;
  sf_tensor *c = sf_raw_cast(c0, SF_F32);
  sf_release(c0);
  if (!c) return NULL;
  int64_t C = c->shape[0], H = c->shape[1], W = c->shape[2];
  int64_t shape[3] = {H, W, C};
  sf_tensor *out = sf_tensor_new(SF_U8, sf_cpu(), 3, shape);
  if (!out) {
    sf_release(c);
    return NULL;
  }
  const float *src = sf_data_ptr(c);
  uint8_t *dst = sf_data_ptr(out);
  for (int64_t k = 0; k < C; k++)
    for (int64_t y = 0; y < H; y++)
      for (int64_t x = 0; x < W; x++) {
        float v = src[(k * H + y) * W + x] * 0.5f + 0.5f;
        v = v < 0 ? 0 : v > 1 ? 1 : v; /* NaN stays NaN and maps to 0 below */
        float s = v * 255.0f;
        dst[(y * W + x) * C + k] = s >= 0 ? (uint8_t)s : 0;
      }
  sf_release(c);
  return out;
}
