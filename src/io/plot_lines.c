/* plot_lines.c — line plots (profiles over key frames, per-head curves) with bands and a legend. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/plot.h"
#include "io/plot_draw.h"

/* matplotlib's tab10 cycle, so figures look familiar next to the fork's notebooks */
static const unsigned g_cycle[10] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                     0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};

void sf_plot_lines_defaults(sf_plot_lines_opts *o) {
  memset(o, 0, sizeof *o);
  o->legend = 1;
  o->ymin = o->ymax = NAN;
}

static double xval(const sf_plot_series *s, int i, double x0) { return s->x ? s->x[i] : x0 + i; }

static void set_rgb(cairo_t *cr, unsigned c, double a) {
  cairo_set_source_rgba(cr, ((c >> 16) & 255) / 255.0, ((c >> 8) & 255) / 255.0, (c & 255) / 255.0, a);
}

int sf_plot_lines(const char *path, const sf_plot_series *s, int n, const sf_plot_lines_opts *opt,
                  sf_plot_info *info) {
  sf_plot_lines_opts dflt;
  if (!opt) { sf_plot_lines_defaults(&dflt); opt = &dflt; }
  if (n <= 0) return sf_error("plot.lines: no series");
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (int k = 0; k < n; k++) {
    if (s[k].n <= 0 || !s[k].y) return sf_error("plot.lines: series %d is empty", k + 1);
    for (int i = 0; i < s[k].n; i++) {
      double x = xval(&s[k], i, opt->x0), y = s[k].y[i], b = s[k].band ? fabs(s[k].band[i]) : 0;
      if (!isfinite(x) || !isfinite(y)) continue;
      xlo = fmin(xlo, x), xhi = fmax(xhi, x);
      ylo = fmin(ylo, y - (isfinite(b) ? b : 0)), yhi = fmax(yhi, y + (isfinite(b) ? b : 0));
    }
  }
  if (!(xlo <= xhi)) xlo = 0, xhi = 1;
  if (!(ylo <= yhi)) ylo = 0, yhi = 1;
  if (xhi == xlo) xlo -= 0.5, xhi += 0.5;
  if (yhi == ylo) ylo -= 0.5, yhi += 0.5;
  double pad = (yhi - ylo) * 0.05;
  ylo -= pad, yhi += pad;
  if (!isnan(opt->ymin)) ylo = opt->ymin;
  if (!isnan(opt->ymax)) yhi = opt->ymax;

  int W = opt->width > 0 ? opt->width : 640, H = opt->height > 0 ? opt->height : 400;
  int left = 70, right = 16, top = opt->title && *opt->title ? 40 : 14, bottom = 52;
  int pw = W - left - right, ph = H - top - bottom;
  if (pw < 40 || ph < 40) return sf_error("plot.lines: figure %dx%d too small", W, H);

  sf_plot_canvas cv;
  if (sf_plot_canvas_open(&cv, path, W, H)) return -1;
  cairo_t *cr = cv.cr;
#define PX(x) (left + ((x) - xlo) / (xhi - xlo) * pw)
#define PY(y) (top + ph - ((y) - ylo) / (yhi - ylo) * ph)

  double xt[32], yt[32];
  int nx = sf_plot_nice_ticks(xlo, xhi, pw / 60 > 2 ? pw / 60 : 2, xt);
  int ny = sf_plot_nice_ticks(ylo, yhi, ph / 45 > 2 ? ph / 45 : 2, yt);
  /* integer axes (frame ids) get integer ticks only */
  int xint = 1;
  for (int k = 0; k < n && xint; k++)
    for (int i = 0; i < s[k].n; i++)
      if (xval(&s[k], i, opt->x0) != floor(xval(&s[k], i, opt->x0))) { xint = 0; break; }
  cairo_set_line_width(cr, 1);
  char b[32];
  for (int i = 0; i < nx; i++) {
    if (xint && xt[i] != floor(xt[i])) continue;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, floor(PX(xt[i])) + 0.5, top);
    cairo_line_to(cr, floor(PX(xt[i])) + 0.5, top + ph);
    cairo_stroke(cr);
    sf_plot_fmt(b, sizeof b, xt[i], nx > 1 ? xt[1] - xt[0] : 0);
    sf_plot_text(cr, PX(xt[i]), top + ph + 4, b, 10, 0.5, 0, 0, 0);
  }
  for (int i = 0; i < ny; i++) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, left, floor(PY(yt[i])) + 0.5);
    cairo_line_to(cr, left + pw, floor(PY(yt[i])) + 0.5);
    cairo_stroke(cr);
    sf_plot_fmt(b, sizeof b, yt[i], ny > 1 ? yt[1] - yt[0] : 0);
    sf_plot_text(cr, left - 5, PY(yt[i]), b, 10, 1, 0.5, 0, 0);
  }

  cairo_save(cr);
  cairo_rectangle(cr, left, top, pw, ph);
  cairo_clip(cr);
  for (int k = 0; k < n; k++) {
    unsigned col = g_cycle[k % 10];
    const sf_plot_series *q = &s[k];
    if (q->band) { /* band as one polygon per finite run */
      int i = 0;
      while (i < q->n) {
        while (i < q->n && !(isfinite(q->y[i]) && isfinite(q->band[i]))) i++;
        int a = i;
        while (i < q->n && isfinite(q->y[i]) && isfinite(q->band[i])) i++;
        if (i - a < 1) continue;
        for (int j = a; j < i; j++) cairo_line_to(cr, PX(xval(q, j, opt->x0)), PY(q->y[j] + fabs(q->band[j])));
        for (int j = i - 1; j >= a; j--) cairo_line_to(cr, PX(xval(q, j, opt->x0)), PY(q->y[j] - fabs(q->band[j])));
        cairo_close_path(cr);
        set_rgb(cr, col, 0.2);
        cairo_fill(cr);
      }
    }
    set_rgb(cr, col, 1);
    cairo_set_line_width(cr, 2);
    int pen = 0;
    for (int i = 0; i < q->n; i++) {
      double x = xval(q, i, opt->x0), y = q->y[i];
      if (!isfinite(x) || !isfinite(y)) { pen = 0; continue; }
      if (pen) cairo_line_to(cr, PX(x), PY(y));
      else cairo_move_to(cr, PX(x), PY(y));
      pen = 1;
    }
    cairo_stroke(cr);
    if (opt->markers || q->n == 1)
      for (int i = 0; i < q->n; i++) {
        double x = xval(q, i, opt->x0), y = q->y[i];
        if (!isfinite(x) || !isfinite(y)) continue;
        cairo_arc(cr, PX(x), PY(y), 3, 0, 2 * M_PI);
        cairo_fill(cr);
      }
  }
  cairo_restore(cr);
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, left + 0.5, top + 0.5, pw - 1, ph - 1);
  cairo_stroke(cr);

  if (opt->legend) {
    int nl = 0;
    double lw = 0;
    for (int k = 0; k < n; k++)
      if (s[k].label && *s[k].label) nl++, lw = fmax(lw, sf_plot_text_width(cr, s[k].label, 11, 0));
    if (nl) {
      double bx = left + pw - lw - 44, by = top + 8, bh = nl * 17 + 8;
      cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
      cairo_rectangle(cr, bx, by, lw + 36, bh);
      cairo_fill_preserve(cr);
      cairo_set_source_rgb(cr, 0.7, 0.7, 0.7);
      cairo_stroke(cr);
      int row = 0;
      for (int k = 0; k < n; k++) {
        if (!s[k].label || !*s[k].label) continue;
        double ly = by + 12 + row * 17;
        set_rgb(cr, g_cycle[k % 10], 1);
        cairo_set_line_width(cr, 2);
        cairo_move_to(cr, bx + 6, ly);
        cairo_line_to(cr, bx + 24, ly);
        cairo_stroke(cr);
        sf_plot_text(cr, bx + 30, ly, s[k].label, 11, 0, 0.5, 0, 0);
        row++;
      }
    }
  }
  if (opt->title) sf_plot_text(cr, W / 2.0, 10, opt->title, 15, 0.5, 0, 0, 1);
  if (opt->xlabel) sf_plot_text(cr, left + pw / 2.0, H - 22, opt->xlabel, 12, 0.5, 0, 0, 0);
  if (opt->ylabel) sf_plot_text(cr, 8, top + ph / 2.0, opt->ylabel, 12, 0.5, 0, -90, 0);
  if (info) {
    memset(info, 0, sizeof *info);
    info->width = W, info->height = H, info->npanels = 1;
    info->panels[0].x = left, info->panels[0].y = top, info->panels[0].w = pw, info->panels[0].h = ph;
    info->panels[0].vmin = ylo, info->panels[0].vmax = yhi;
  }
#undef PX
#undef PY
  return sf_plot_canvas_close(&cv);
}
