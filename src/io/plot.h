/* plot.h — figures drawn with cairo from plain float/u8 buffers: heatmap grids, mosaics, lines. */
#ifndef SF_PLOT_H
#define SF_PLOT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- colormaps: 256-entry tables as matplotlib's (value -> index floor(u*256), clamped) ---- */
/* names: viridis, magma, inferno, RdBu_r, RdBu, gray, Greys; NULL -> viridis. -1 + error if unknown */
int sf_plot_cmap_index(const char *name);
/* rgb in 0..255 of the colour for u in [0,1] (clamped); NaN gives the NaN fill colour */
void sf_plot_cmap_rgb(int cmap, double u, uint8_t rgb[3]);
const char *sf_plot_cmap_names(void); /* "viridis, magma, ..." for error messages */

/* ---- one tile of a grid: a matrix (coloured through the colormap) or an RGB image ---- */
enum { SF_PLOT_MATRIX = 0, SF_PLOT_RGB = 1 };
typedef struct {
  int kind;
  const float *m; int rows, cols;   /* SF_PLOT_MATRIX: row-major [rows, cols]; NaN = invisible cell */
  const uint8_t *rgb; int h, w;     /* SF_PLOT_RGB: [h, w, 3] */
  const char *title;                /* tile title (may be NULL) */
  const char *caption;              /* small text under the tile (may be NULL) */
} sf_plot_item;

/* where things landed, for callers that annotate or test pixels (all in figure pixels) */
#define SF_PLOT_MAX_PANELS 256
typedef struct { int x, y, w, h, rows, cols; double vmin, vmax; } sf_plot_panel;
typedef struct {
  int width, height, npanels;
  sf_plot_panel panels[SF_PLOT_MAX_PANELS]; /* cell (r, c) of a matrix tile covers
                                               [x + c*w/cols, +w/cols) x [y + r*h/rows, ...) (origin upper) */
} sf_plot_info;

typedef struct {
  const char *title, *xlabel, *ylabel, *cmap, *cbar_label;
  double vmin, vmax;       /* NaN = from the finite data */
  int center;              /* scale symmetric around 0 */
  int shared;              /* 1: one scale and one colorbar for all matrix tiles; 0: one per tile */
  int colorbar;            /* draw colorbar(s) */
  int origin_lower;        /* row 0 at the bottom */
  int ncols;               /* grid columns; 0 = auto */
  int tile;                /* target tile side in pixels; 0 = auto */
  int x0, y0;              /* number of the first column / row on the tick labels */
  int ticks;               /* tick labels on matrix tiles */
  const char *const *col_titles; int ncol_titles; /* headers above the grid columns */
  const char *const *row_labels; int nrow_labels; /* labels left of the grid rows */
} sf_plot_grid_opts;

void sf_plot_grid_defaults(sf_plot_grid_opts *o);
/* writes .png (default), .svg or .pdf by the path's extension; temp file + rename */
int sf_plot_grid(const char *path, const sf_plot_item *items, int n, const sf_plot_grid_opts *o,
                 sf_plot_info *info);

/* ---- line plots ---- */
typedef struct {
  const double *x;     /* NULL = 0..n-1 (+ x0 of the options) */
  const double *y;     /* NaN breaks the line */
  const double *band;  /* optional +-band around y (e.g. std); NULL = none */
  int n;
  const char *label;
} sf_plot_series;

typedef struct {
  const char *title, *xlabel, *ylabel;
  int width, height;   /* 0 = 640 x 400 */
  int markers;         /* dots at the points */
  int legend;
  double ymin, ymax;   /* NaN = auto */
  double x0;           /* first x when a series has no x */
} sf_plot_lines_opts;

void sf_plot_lines_defaults(sf_plot_lines_opts *o);
int sf_plot_lines(const char *path, const sf_plot_series *s, int n, const sf_plot_lines_opts *o,
                  sf_plot_info *info);

#ifdef __cplusplus
}
#endif
#endif
