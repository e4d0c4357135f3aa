/* png_read.c — PNG decoding through libpng (setjmp-guarded, never aborts): any PNG to u8 [H, W, 3]. */
#include "io/image.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/png_err.h"

typedef struct {
  const unsigned char *p;
  size_t n, pos;
} mem_src;

static void mem_read(png_structp png, png_bytep out, png_size_t len) {
  mem_src *m = png_get_io_ptr(png);
  if (m->n - m->pos < len) png_error(png, "truncated PNG data");
  memcpy(out, m->p + m->pos, len);
  m->pos += len;
}

/* shared reader: exactly one of f / mem is set */
static sf_tensor *png_read_any(FILE *f, mem_src *mem, const char *what) {
  png_err_ctx ectx = {{0}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ectx, on_png_error, on_png_warning);
  if (!png) return sf_error("%s: out of memory", what), NULL;
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return sf_error("%s: out of memory", what), NULL;
  }
  sf_tensor *volatile out = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(png_jmpbuf(png))) {
    sf_error("%s: not a readable PNG: %s", what, ectx.msg[0] ? ectx.msg : "corrupt data");
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    sf_release(out);
    return NULL;
  }
  png_set_user_limits(png, 1u << 15, 1u << 15);
  png_set_chunk_malloc_max(png, 64u << 20);
  if (f) png_init_io(png, f);
  else png_set_read_fn(png, mem, mem_read);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int ct = png_get_color_type(png, info), bd = png_get_bit_depth(png, info);
  if ((uint64_t)w * h > (1u << 26)) png_error(png, "image too large (over 64 Mpixels)");
  if (bd == 16) png_set_strip_16(png);
  if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  if (ct & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png), png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != (size_t)w * 3) png_error(png, "unexpected pixel layout after conversion");
  int64_t shape[3] = {h, w, 3};
  out = sf_tensor_new(SF_U8, sf_cpu(), 3, shape);
  if (!out) png_error(png, "out of memory for the pixels");
  rows = malloc(sizeof(png_bytep) * (h ? h : 1));
  if (!rows) png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < h; y++) rows[y] = (png_bytep)sf_data_ptr(out) + (size_t)y * w * 3;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  return out;
}

sf_tensor *sf_png_read(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return sf_error("%s: cannot open: %s", path, strerror(errno)), NULL;
  unsigned char sig[8];
  if (fread(sig, 1, 8, f) != 8 || png_sig_cmp(sig, 0, 8)) {
    fclose(f);
    return sf_error("%s: not a PNG file (wrong signature)", path), NULL;
  }
  rewind(f);
  sf_tensor *t = png_read_any(f, NULL, path);
  fclose(f);
  return t;
}

sf_tensor *sf_png_read_mem(const void *data, size_t n, const char *what) {
  if (n < 8 || png_sig_cmp((png_const_bytep)data, 0, 8)) return sf_error("%s: not a PNG (wrong signature)", what), NULL;
  mem_src m = {data, n, 0};
  return png_read_any(NULL, &m, what);
}
