/* plot_draw.c — cairo primitives for the figures: canvas files, text, ticks, colorbars, cells, images. */
#include "io/plot_draw.h"

#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/error.h"
#include "io/plot.h"

#define FONT "DejaVu Sans"

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcasecmp(s + a - b, suf);
}

int sf_plot_canvas_open(sf_plot_canvas *c, const char *path, int w, int h) {
  memset(c, 0, sizeof *c);
  if (!path || !*path) return sf_error("plot: no output path (give path=...)");
  if (w <= 0 || h <= 0 || w > 20000 || h > 20000) return sf_error("plot: figure size %dx%d out of range", w, h);
  if (strlen(path) >= sizeof c->path) return sf_error("plot: path too long");
  snprintf(c->path, sizeof c->path, "%s", path);
  snprintf(c->tmp, sizeof c->tmp, "%s.tmp%d", path, (int)getpid());
  c->width = w;
  c->height = h;
  if (ends_with(path, ".svg")) {
    c->kind = 1;
    c->surface = cairo_svg_surface_create(c->tmp, w, h);
  } else if (ends_with(path, ".pdf")) {
    c->kind = 2;
    c->surface = cairo_pdf_surface_create(c->tmp, w, h);
  } else {
    c->surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  }
  if (cairo_surface_status(c->surface) != CAIRO_STATUS_SUCCESS) {
    int e = sf_error("plot: cannot create %s: %s", path, cairo_status_to_string(cairo_surface_status(c->surface)));
    cairo_surface_destroy(c->surface);
    c->surface = NULL;
    unlink(c->tmp);
    return e;
  }
  c->cr = cairo_create(c->surface);
  cairo_set_source_rgb(c->cr, 1, 1, 1);
  cairo_paint(c->cr);
  return 0;
}

void sf_plot_canvas_abort(sf_plot_canvas *c) {
  if (c->cr) cairo_destroy(c->cr);
  if (c->surface) {
    cairo_surface_finish(c->surface);
    cairo_surface_destroy(c->surface);
  }
  if (c->kind) unlink(c->tmp);
  c->cr = NULL;
  c->surface = NULL;
}

int sf_plot_canvas_close(sf_plot_canvas *c) {
  cairo_status_t st = cairo_status(c->cr);
  cairo_destroy(c->cr);
  c->cr = NULL;
  if (st == CAIRO_STATUS_SUCCESS && c->kind == 0) st = cairo_surface_write_to_png(c->surface, c->tmp);
  cairo_surface_finish(c->surface);
  if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(c->surface);
  cairo_surface_destroy(c->surface);
  c->surface = NULL;
  if (st != CAIRO_STATUS_SUCCESS) {
    unlink(c->tmp);
    return sf_error("plot: writing %s failed: %s", c->path, cairo_status_to_string(st));
  }
  if (rename(c->tmp, c->path) != 0) {
    unlink(c->tmp);
    return sf_error("plot: cannot write %s (rename failed; does the folder exist?)", c->path);
  }
  return 0;
}

static void set_font(cairo_t *cr, double size, int bold) {
  cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

double sf_plot_text_width(cairo_t *cr, const char *s, double size, int bold) {
  if (!s) return 0;
  cairo_text_extents_t e;
  set_font(cr, size, bold);
  cairo_text_extents(cr, s, &e);
  return e.x_advance;
}

void sf_plot_text(cairo_t *cr, double x, double y, const char *s, double size, double ha, double va,
                  double angle, int bold) {
  if (!s || !*s) return;
  cairo_text_extents_t e;
  cairo_font_extents_t fe;
  set_font(cr, size, bold);
  cairo_text_extents(cr, s, &e);
  cairo_font_extents(cr, &fe);
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, angle * M_PI / 180.0);
  /* vertical anchoring by font ascent/descent so labels of one row line up whatever their glyphs */
  double th = fe.ascent + fe.descent;
  cairo_move_to(cr, -ha * e.x_advance, -va * th + fe.ascent);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  cairo_show_text(cr, s);
  cairo_restore(cr);
}

int sf_plot_nice_ticks(double lo, double hi, int maxn, double *out) {
  if (!isfinite(lo) || !isfinite(hi)) return 0;
  if (hi < lo) { double t = lo; lo = hi; hi = t; }
  if (hi == lo) { out[0] = lo; return 1; }
  if (maxn < 2) maxn = 2;
  double raw = (hi - lo) / (maxn - 1);
  double mag = pow(10.0, floor(log10(raw)));
  double steps[] = {1, 2, 2.5, 5, 10};
  double step = 10 * mag;
  for (int i = 0; i < 5; i++)
    if (steps[i] * mag >= raw) { step = steps[i] * mag; break; }
  double first = ceil(lo / step - 1e-9) * step;
  int n = 0;
  for (double v = first; v <= hi + step * 1e-9 && n < maxn + 1; v += step) out[n++] = fabs(v) < step * 1e-9 ? 0 : v;
  return n;
}

int sf_plot_index_step(int n, double px) {
  int maxn = (int)(px / 22.0);
  if (maxn < 2) maxn = 2;
  static const int steps[] = {1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000};
  for (int i = 0; i < 15; i++)
    if ((n + steps[i] - 1) / steps[i] <= maxn) return steps[i];
  return 10000;
}

void sf_plot_fmt(char *buf, size_t n, double v, double step) {
  double a = fabs(step > 0 ? step : v);
  if (v == 0) snprintf(buf, n, "0");
  else if (a >= 1e5 || a < 1e-3) snprintf(buf, n, "%.2g", v);
  else if (a >= 1 && fabs(v - round(v)) < 1e-9) snprintf(buf, n, "%.0f", v);
  else {
    int dec = (int)ceil(-log10(a) + 1e-9);
    if (dec < 1) dec = 1;
    if (dec > 4) dec = 4;
    snprintf(buf, n, "%.*f", dec, v);
  }
}

void sf_plot_finite_range(const float *v, int64_t n, double *lo, double *hi) {
  double a = INFINITY, b = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    float x = v[i];
    if (!isfinite(x)) continue;
    if (x < a) a = x;
    if (x > b) b = x;
  }
  if (a > b) a = b = NAN;
  *lo = a;
  *hi = b;
}

static double unit(double v, double vmin, double vmax) {
  if (isnan(v)) return NAN;
  if (!(vmax > vmin)) return 0.0;
  return (v - vmin) / (vmax - vmin);
}

void sf_plot_colorbar(cairo_t *cr, int x, int y, int w, int h, int cmap, double vmin, double vmax,
                      const char *label, double font) {
  cairo_save(cr);
  cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE);
  for (int i = 0; i < h; i++) {
    uint8_t c[3];
    sf_plot_cmap_rgb(cmap, (h - 1 - i + 0.5) / h, c); /* top = vmax */
    cairo_set_source_rgb(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0);
    cairo_rectangle(cr, x, y + i, w, 1);
    cairo_fill(cr);
  }
  cairo_set_antialias(cr, CAIRO_ANTIALIAS_DEFAULT);
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, x - 0.5, y - 0.5, w + 1, h + 1);
  cairo_stroke(cr);
  double ticks[16];
  int nt = sf_plot_nice_ticks(vmin, vmax, h > 150 ? 7 : 4, ticks);
  double step = nt > 1 ? ticks[1] - ticks[0] : 0;
  for (int i = 0; i < nt; i++) {
    double u = unit(ticks[i], vmin, vmax);
    if (!(u >= -1e-9 && u <= 1 + 1e-9)) continue;
    double ty = y + h - u * h;
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_move_to(cr, x + w, ty);
    cairo_line_to(cr, x + w + 4, ty);
    cairo_stroke(cr);
    char b[32];
    sf_plot_fmt(b, sizeof b, ticks[i], step);
    sf_plot_text(cr, x + w + 6, ty, b, font, 0, 0.5, 0, 0);
  }
  if (label && *label) sf_plot_text(cr, x + w + 50, y + h / 2.0, label, font, 0.5, 0.5, 90, 0);
  cairo_restore(cr);
}

void sf_plot_matrix(cairo_t *cr, int x, int y, int cw, int ch, const float *m, int rows, int cols, int cmap,
                    double vmin, double vmax, int origin_lower) {
  cairo_save(cr);
  cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE);
  int nan_cells = 0;
  for (int r = 0; r < rows; r++) {
    int py = y + (origin_lower ? (rows - 1 - r) : r) * ch;
    for (int c = 0; c < cols; c++) {
      uint8_t rgb[3];
      float v = m[(int64_t)r * cols + c];
      if (isnan(v)) nan_cells++;
      sf_plot_cmap_rgb(cmap, isnan(v) ? NAN : unit(v, vmin, vmax), rgb);
      cairo_set_source_rgb(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
      cairo_rectangle(cr, x + c * cw, py, cw, ch);
      cairo_fill(cr);
    }
  }
  if (nan_cells) {
    /* hatch the invisible cells so they never read as a value (the fork drew them as 0) */
    for (int r = 0; r < rows; r++) {
      int py = y + (origin_lower ? (rows - 1 - r) : r) * ch;
      for (int c = 0; c < cols; c++)
        if (isnan(m[(int64_t)r * cols + c])) cairo_rectangle(cr, x + c * cw, py, cw, ch);
    }
    cairo_clip(cr);
    cairo_set_antialias(cr, CAIRO_ANTIALIAS_DEFAULT);
    cairo_set_source_rgb(cr, 0.62, 0.62, 0.62);
    cairo_set_line_width(cr, 1);
    int W = cols * cw, H = rows * ch;
    for (int d = -H; d < W; d += 7) {
      cairo_move_to(cr, x + d, y + H);
      cairo_line_to(cr, x + d + H, y);
    }
    cairo_stroke(cr);
    cairo_reset_clip(cr);
  }
  cairo_set_antialias(cr, CAIRO_ANTIALIAS_DEFAULT);
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, x - 0.5, y - 0.5, cols * cw + 1, rows * ch + 1);
  cairo_stroke(cr);
  cairo_restore(cr);
}

void sf_plot_matrix_ticks(cairo_t *cr, int x, int y, int cw, int ch, int rows, int cols, int x0, int y0,
                          int origin_lower, double font) {
  char b[32];
  int sx = sf_plot_index_step(cols, cols * cw * 0.8);
  for (int c = 0; c < cols; c++) {
    if ((c + x0) % sx) continue;
    snprintf(b, sizeof b, "%d", c + x0);
    sf_plot_text(cr, x + (c + 0.5) * cw, y + rows * ch + 3, b, font, 0.5, 0, 0, 0);
  }
  int sy = sf_plot_index_step(rows, rows * ch * 1.2);
  for (int r = 0; r < rows; r++) {
    if ((r + y0) % sy) continue;
    snprintf(b, sizeof b, "%d", r + y0);
    int py = origin_lower ? (rows - 1 - r) : r;
    sf_plot_text(cr, x - 4, y + (py + 0.5) * ch, b, font, 1, 0.5, 0, 0);
  }
}

int sf_plot_image(cairo_t *cr, int x, int y, int w_px, int h_px, const uint8_t *rgb, int h, int w) {
  cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(img);
    return sf_error("plot: cannot allocate a %dx%d image", w, h);
  }
  cairo_surface_flush(img);
  unsigned char *d = cairo_image_surface_get_data(img);
  int stride = cairo_image_surface_get_stride(img);
  for (int r = 0; r < h; r++) {
    uint32_t *row = (uint32_t *)(d + (size_t)r * stride);
    for (int c = 0; c < w; c++) {
      const uint8_t *p = rgb + ((size_t)r * w + c) * 3;
      row[c] = ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
    }
  }
  cairo_surface_mark_dirty(img);
  cairo_save(cr);
  cairo_rectangle(cr, x, y, w_px, h_px);
  cairo_clip(cr);
  cairo_translate(cr, x, y);
  cairo_scale(cr, (double)w_px / w, (double)h_px / h);
  cairo_set_source_surface(cr, img, 0, 0);
  /* upscaled frames keep their pixels visible; downscaled ones are filtered */
  cairo_pattern_set_filter(cairo_get_source(cr), w_px >= w ? CAIRO_FILTER_NEAREST : CAIRO_FILTER_GOOD);
  cairo_paint(cr);
  cairo_restore(cr);
  cairo_surface_destroy(img);
  return 0;
}
