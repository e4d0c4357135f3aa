/* plot_draw.h — cairo primitives shared by the figure layouts (internal to src/io/plot_*.c). */
#ifndef SF_PLOT_DRAW_H
#define SF_PLOT_DRAW_H

#include <cairo.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  cairo_surface_t *surface;
  cairo_t *cr;
  char path[4096], tmp[4160];
  int kind; /* 0 png, 1 svg, 2 pdf */
  int width, height;
} sf_plot_canvas;

/* opens a white canvas of w x h pixels for `path` (.png, .svg, .pdf) */
int sf_plot_canvas_open(sf_plot_canvas *c, const char *path, int w, int h);
/* writes the file (temp name, then rename) and frees the canvas; -1 + error on failure */
int sf_plot_canvas_close(sf_plot_canvas *c);
void sf_plot_canvas_abort(sf_plot_canvas *c);

/* text anchored at (x, y): ha/va 0 = left/top, 0.5 = centre, 1 = right/bottom; angle in degrees */
void sf_plot_text(cairo_t *cr, double x, double y, const char *s, double size, double ha, double va,
                  double angle, int bold);
double sf_plot_text_width(cairo_t *cr, const char *s, double size, int bold);

/* "nice" tick values (steps 1, 2, 5 x 10^k) covering [lo, hi], at most maxn of them; returns count */
int sf_plot_nice_ticks(double lo, double hi, int maxn, double *out);
/* integer tick step for n cells drawn in px pixels */
int sf_plot_index_step(int n, double px);
void sf_plot_fmt(char *buf, size_t n, double v, double step);

/* the data range of the finite values (NaN when there are none) */
void sf_plot_finite_range(const float *v, int64_t n, double *lo, double *hi);

/* a vertical colorbar with ticks and an optional rotated label */
void sf_plot_colorbar(cairo_t *cr, int x, int y, int w, int h, int cmap, double vmin, double vmax,
                      const char *label, double font);
/* matrix cells at integer pixel sizes (cw x ch each); NaN cells grey with hatching */
void sf_plot_matrix(cairo_t *cr, int x, int y, int cw, int ch, const float *m, int rows, int cols, int cmap,
                    double vmin, double vmax, int origin_lower);
/* tick labels for a matrix panel (below and to the left) */
void sf_plot_matrix_ticks(cairo_t *cr, int x, int y, int cw, int ch, int rows, int cols, int x0, int y0,
                          int origin_lower, double font);
/* an RGB u8 [h, w, 3] image scaled into w_px x h_px */
int sf_plot_image(cairo_t *cr, int x, int y, int w_px, int h_px, const uint8_t *rgb, int h, int w);

#endif
