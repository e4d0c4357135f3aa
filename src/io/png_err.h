/* png_err.h — libpng error handling shared by the PNG reader and writer: errors keep libpng's message
 * and longjmp back to the caller's setjmp; warnings are dropped. */
#ifndef SF_PNG_ERR_H
#define SF_PNG_ERR_H

#include <png.h>
#include <stdio.h>

typedef struct {
  char msg[256];
} png_err_ctx;

static inline void on_png_error(png_structp png, png_const_charp msg) {
  png_err_ctx *e = png_get_error_ptr(png);
  snprintf(e->msg, sizeof e->msg, "%s", msg);
  png_longjmp(png, 1);
}

static inline void on_png_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

#endif
