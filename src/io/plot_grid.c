/* plot_grid.c — the grid figure behind heatmap, head_grid, mosaic and compare: tiles of matrices or
 * images with titles, tick labels, row/column headers, axis labels and shared or per-tile colorbars. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/plot.h"
#include "io/plot_draw.h"

void sf_plot_grid_defaults(sf_plot_grid_opts *o) {
  memset(o, 0, sizeof *o);
  o->vmin = o->vmax = NAN;
  o->shared = 1;
  o->colorbar = 1;
  o->ticks = 1;
}

/* the colour range of some matrix tiles, with the caller's overrides and centring */
static void scale_of(const sf_plot_item *items, int n, const sf_plot_grid_opts *o, double *lo, double *hi) {
  double a = INFINITY, b = -INFINITY;
  for (int i = 0; i < n; i++) {
    if (items[i].kind != SF_PLOT_MATRIX) continue;
    double l, h;
    sf_plot_finite_range(items[i].m, (int64_t)items[i].rows * items[i].cols, &l, &h);
    if (isnan(l)) continue;
    if (l < a) a = l;
    if (h > b) b = h;
  }
  if (a > b) a = 0, b = 1; /* nothing finite: any scale will do, every cell is hatched */
  if (o->center) {
    double m = fmax(fabs(a), fabs(b));
    a = -m, b = m;
  }
  if (!isnan(o->vmin)) a = o->vmin;
  if (!isnan(o->vmax)) b = o->vmax;
  *lo = a;
  *hi = b;
}

#define FONT_TITLE 16
#define FONT_TILE 12
#define FONT_TICK 10
#define FONT_LABEL 13

int sf_plot_grid(const char *path, const sf_plot_item *items, int n, const sf_plot_grid_opts *opt,
                 sf_plot_info *info) {
  sf_plot_grid_opts dflt;
  if (!opt) { sf_plot_grid_defaults(&dflt); opt = &dflt; }
  if (n <= 0) return sf_error("plot: nothing to draw (no tiles)");
  if (n > SF_PLOT_MAX_PANELS) return sf_error("plot: %d tiles, at most %d", n, SF_PLOT_MAX_PANELS);
  int cmap = sf_plot_cmap_index(opt->cmap);
  if (cmap < 0) return -1;
  for (int i = 0; i < n; i++) {
    const sf_plot_item *it = &items[i];
    if (it->kind == SF_PLOT_MATRIX && (!it->m || it->rows <= 0 || it->cols <= 0))
      return sf_error("plot: tile %d: empty matrix", i + 1);
    if (it->kind == SF_PLOT_RGB && (!it->rgb || it->h <= 0 || it->w <= 0))
      return sf_error("plot: tile %d: empty image", i + 1);
  }

  int ncols = opt->ncol_titles > 0 ? opt->ncol_titles : opt->ncols;
  if (ncols <= 0) ncols = n <= 4 ? n : (int)ceil(sqrt((double)n));
  if (ncols > n) ncols = n;
  int nrows = (n + ncols - 1) / ncols;
  int T = opt->tile > 0 ? opt->tile : (n == 1 ? 480 : (int)fmin(280, fmax(110, 1100.0 / ncols)));

  int any_matrix = 0, any_title = 0, any_caption = 0;
  int pw[SF_PLOT_MAX_PANELS], ph[SF_PLOT_MAX_PANELS], cell[SF_PLOT_MAX_PANELS], cellh[SF_PLOT_MAX_PANELS];
  for (int i = 0; i < n; i++) {
    const sf_plot_item *it = &items[i];
    if (it->title && *it->title) any_title = 1;
    if (it->caption && *it->caption) any_caption = 1;
    if (it->kind == SF_PLOT_MATRIX) {
      any_matrix = 1;
      /* square cells, unless the matrix is very elongated (cross-attention: frames x 512 text tokens):
       * then the long side fills the tile and the short side a third of it */
      double ratio = (double)it->cols / it->rows;
      if (ratio > 3) {
        cell[i] = T / it->cols > 0 ? T / it->cols : 1;
        cellh[i] = (T / 3) / it->rows > cell[i] ? (T / 3) / it->rows : cell[i];
      } else if (ratio < 1.0 / 3) {
        cellh[i] = T / it->rows > 0 ? T / it->rows : 1;
        cell[i] = (T / 3) / it->cols > cellh[i] ? (T / 3) / it->cols : cellh[i];
      } else {
        int big = it->rows > it->cols ? it->rows : it->cols;
        cell[i] = cellh[i] = T / big > 0 ? T / big : 1;
      }
      pw[i] = it->cols * cell[i];
      ph[i] = it->rows * cellh[i];
    } else {
      double s = fmin((double)T / it->w, (double)T / it->h);
      cell[i] = cellh[i] = 0;
      pw[i] = (int)fmax(1, lround(it->w * s));
      ph[i] = (int)fmax(1, lround(it->h * s));
    }
  }
  double lo_all = 0, hi_all = 1;
  if (any_matrix) scale_of(items, n, opt, &lo_all, &hi_all);
  int per_tile_cb = any_matrix && opt->colorbar && !opt->shared;
  int shared_cb = any_matrix && opt->colorbar && opt->shared;

  int colw[SF_PLOT_MAX_PANELS] = {0}, rowh[SF_PLOT_MAX_PANELS] = {0};
  for (int i = 0; i < n; i++) {
    int r = i / ncols, c = i % ncols;
    if (pw[i] > colw[c]) colw[c] = pw[i];
    if (ph[i] > rowh[r]) rowh[r] = ph[i];
  }

  /* margins: measured on a scratch surface so long labels never get cut off */
  cairo_surface_t *scratch = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 4, 4);
  cairo_t *m = cairo_create(scratch);
  int tick_left = any_matrix && opt->ticks ? (int)sf_plot_text_width(m, "8888", FONT_TICK, 0) + 6 : 0;
  int tick_bottom = any_matrix && opt->ticks ? 15 : 0;
  int title_h = any_title ? 18 : 0, caption_h = any_caption ? 16 : 0;
  int tile_right = per_tile_cb ? 66 : 0;
  int rowlab_w = 0;
  for (int r = 0; r < opt->nrow_labels; r++) {
    int w = (int)sf_plot_text_width(m, opt->row_labels[r], FONT_TILE, 0);
    if (w > rowlab_w) rowlab_w = w;
  }
  int title_w = opt->title ? (int)sf_plot_text_width(m, opt->title, FONT_TITLE, 1) : 0;
  cairo_destroy(m);
  cairo_surface_destroy(scratch);

  int gap_x = 16, gap_y = 12;
  int left = 10 + (opt->ylabel && *opt->ylabel ? 22 : 0) + (rowlab_w ? rowlab_w + 10 : 0);
  int top = 10 + (opt->title && *opt->title ? 30 : 0) + (opt->ncol_titles > 0 ? 22 : 0);
  int right = 12 + (shared_cb ? 14 + 16 + 52 + (opt->cbar_label && *opt->cbar_label ? 20 : 0) : 0);
  int bottom = 8 + (opt->xlabel && *opt->xlabel ? 24 : 0);

  int colx[SF_PLOT_MAX_PANELS], rowy[SF_PLOT_MAX_PANELS];
  int x = left;
  for (int c = 0; c < ncols; c++) {
    colx[c] = x + tick_left;
    x += tick_left + colw[c] + tile_right + gap_x;
  }
  int grid_right = x - gap_x;
  int y = top;
  for (int r = 0; r < nrows; r++) {
    rowy[r] = y + title_h;
    y += title_h + rowh[r] + tick_bottom + caption_h + gap_y;
  }
  int grid_bottom = y - gap_y;
  int W = grid_right + right, H = grid_bottom + bottom;
  if (W < title_w + 20) W = title_w + 20;

  sf_plot_canvas cv;
  if (sf_plot_canvas_open(&cv, path, W, H)) return -1;
  cairo_t *cr = cv.cr;
  if (info) {
    memset(info, 0, sizeof *info);
    info->width = W;
    info->height = H;
    info->npanels = n;
  }

  for (int i = 0; i < n; i++) {
    const sf_plot_item *it = &items[i];
    int r = i / ncols, c = i % ncols;
    int px = colx[c] + (colw[c] - pw[i]) / 2, py = rowy[r];
    double lo = lo_all, hi = hi_all;
    if (it->kind == SF_PLOT_MATRIX) {
      if (!opt->shared) scale_of(it, 1, opt, &lo, &hi);
      sf_plot_matrix(cr, px, py, cell[i], cellh[i], it->m, it->rows, it->cols, cmap, lo, hi, opt->origin_lower);
      if (opt->ticks)
        sf_plot_matrix_ticks(cr, px, py, cell[i], cellh[i], it->rows, it->cols, opt->x0, opt->y0,
                             opt->origin_lower, FONT_TICK);
      if (per_tile_cb)
        sf_plot_colorbar(cr, colx[c] + colw[c] + 8, py, 10, ph[i], cmap, lo, hi, NULL, FONT_TICK);
    } else {
      if (sf_plot_image(cr, px, py, pw[i], ph[i], it->rgb, it->h, it->w)) {
        sf_plot_canvas_abort(&cv);
        return -1;
      }
    }
    if (it->title) sf_plot_text(cr, px + pw[i] / 2.0, py - 3, it->title, FONT_TILE, 0.5, 1, 0, 0);
    if (it->caption)
      sf_plot_text(cr, px + pw[i] / 2.0, py + rowh[r] + tick_bottom + 2, it->caption, FONT_TICK, 0.5, 0, 0, 0);
    if (info) {
      sf_plot_panel *p = &info->panels[i];
      p->x = px, p->y = py, p->w = pw[i], p->h = ph[i];
      p->rows = it->kind == SF_PLOT_MATRIX ? it->rows : it->h;
      p->cols = it->kind == SF_PLOT_MATRIX ? it->cols : it->w;
      p->vmin = it->kind == SF_PLOT_MATRIX ? lo : NAN;
      p->vmax = it->kind == SF_PLOT_MATRIX ? hi : NAN;
    }
  }

  if (opt->title && *opt->title) sf_plot_text(cr, W / 2.0, 10, opt->title, FONT_TITLE, 0.5, 0, 0, 1);
  for (int c = 0; c < opt->ncol_titles && c < ncols; c++)
    sf_plot_text(cr, colx[c] + colw[c] / 2.0, top - 4 - (title_h ? 0 : 0), opt->col_titles[c], FONT_LABEL, 0.5, 1,
                 0, 1);
  for (int r = 0; r < opt->nrow_labels && r < nrows; r++)
    sf_plot_text(cr, colx[0] - tick_left - 6, rowy[r] + rowh[r] / 2.0, opt->row_labels[r], FONT_TILE, 1, 0.5, 0, 0);
  if (opt->xlabel && *opt->xlabel)
    sf_plot_text(cr, (left + grid_right) / 2.0, grid_bottom + 6, opt->xlabel, FONT_LABEL, 0.5, 0, 0, 0);
  if (opt->ylabel && *opt->ylabel)
    sf_plot_text(cr, 10, (top + grid_bottom) / 2.0, opt->ylabel, FONT_LABEL, 0.5, 0, -90, 0);
  if (shared_cb) {
    int cy = top + title_h, ch = grid_bottom - tick_bottom - caption_h - cy;
    if (ch < 40) ch = 40;
    sf_plot_colorbar(cr, grid_right + 14, cy, 16, ch, cmap, lo_all, hi_all, opt->cbar_label, FONT_TICK + 1);
  }
  return sf_plot_canvas_close(&cv);
}
