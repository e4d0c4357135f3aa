/* test_plot.c — figures: PNG sizes, colours of known cells read back from the file, NaN hatching,
 * origin, shared vs per-tile scales, images, lines, SVG output and error messages. */
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/error.h"
#include "io/plot.h"

static int npass, nfail;
#define CHECK(c, ...)                                                            \
  do {                                                                           \
    if (c) npass++;                                                              \
    else { nfail++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } \
  } while (0)

static char tmpdir[256];

typedef struct { cairo_surface_t *s; int w, h; } png_t;
static png_t load_png(const char *path) {
  png_t p = {cairo_image_surface_create_from_png(path), 0, 0};
  if (cairo_surface_status(p.s) == CAIRO_STATUS_SUCCESS) {
    p.w = cairo_image_surface_get_width(p.s);
    p.h = cairo_image_surface_get_height(p.s);
  }
  return p;
}
static void pixel(png_t *p, int x, int y, uint8_t rgb[3]) {
  uint32_t v = *(uint32_t *)(cairo_image_surface_get_data(p->s) + (size_t)y * cairo_image_surface_get_stride(p->s) + 4 * x);
  rgb[0] = (v >> 16) & 255, rgb[1] = (v >> 8) & 255, rgb[2] = v & 255;
}
static int same(const uint8_t a[3], const uint8_t b[3], int tol) {
  return abs(a[0] - b[0]) <= tol && abs(a[1] - b[1]) <= tol && abs(a[2] - b[2]) <= tol;
}
/* centre pixel of cell (r, c) of panel p, origin upper or lower */
static void cell_px(const sf_plot_panel *p, int r, int c, int lower, int *x, int *y) {
  int cw = p->w / p->cols, ch = p->h / p->rows;
  *x = p->x + c * cw + cw / 2;
  *y = p->y + (lower ? p->rows - 1 - r : r) * ch + ch / 2;
}
static void expect_cell(png_t *png, const sf_plot_panel *p, int r, int c, int lower, int cmap, double v) {
  int x, y;
  uint8_t got[3], want[3];
  cell_px(p, r, c, lower, &x, &y);
  pixel(png, x, y, got);
  sf_plot_cmap_rgb(cmap, (v - p->vmin) / (p->vmax - p->vmin), want);
  CHECK(same(got, want, 0), "cell (%d,%d)=%g at (%d,%d): got %d,%d,%d want %d,%d,%d", r, c, v, x, y, got[0], got[1],
        got[2], want[0], want[1], want[2]);
}

static void test_colormaps(void) {
  uint8_t a[3], b[3];
  int v = sf_plot_cmap_index("viridis");
  CHECK(v == 0, "viridis index");
  sf_plot_cmap_rgb(v, 0.0, a);
  CHECK(a[0] == 0x44 && a[1] == 0x01 && a[2] == 0x54, "viridis(0) = #440154, got %02x%02x%02x", a[0], a[1], a[2]);
  sf_plot_cmap_rgb(v, 1.0, a);
  CHECK(a[0] == 0xFD && a[1] == 0xE7 && a[2] == 0x25, "viridis(1) = #FDE725");
  int rb = sf_plot_cmap_index("RdBu_r");
  sf_plot_cmap_rgb(rb, 0.0, a);
  sf_plot_cmap_rgb(rb, 1.0, b);
  CHECK(a[2] > a[0] && b[0] > b[2], "RdBu_r goes blue -> red");
  CHECK(sf_plot_cmap_index("nope") == -1 && strstr(sf_last_error(), "nope") && strstr(sf_last_error(), "viridis"),
        "unknown colormap error names it and the known ones: %s", sf_last_error());
}

static void test_heatmap(void) {
  float m[4 * 5];
  for (int i = 0; i < 20; i++) m[i] = (float)i;
  m[4] = NAN; /* row 0, col 4 */
  char path[512];
  snprintf(path, sizeof path, "%s/heat.png", tmpdir);
  sf_plot_item it = {.kind = SF_PLOT_MATRIX, .m = m, .rows = 4, .cols = 5, .title = "t"};
  sf_plot_grid_opts o;
  sf_plot_grid_defaults(&o);
  o.title = "a heatmap";
  o.xlabel = "key frame";
  o.ylabel = "query frame";
  o.cbar_label = "logit";
  sf_plot_info info;
  CHECK(sf_plot_grid(path, &it, 1, &o, &info) == 0, "heatmap: %s", sf_last_error());
  png_t png = load_png(path);
  CHECK(png.w == info.width && png.h == info.height && png.w > 400, "png size %dx%d vs info %dx%d", png.w, png.h,
        info.width, info.height);
  const sf_plot_panel *p = &info.panels[0];
  CHECK(p->vmin == 0 && p->vmax == 19, "auto scale over finite values: %g..%g", p->vmin, p->vmax);
  CHECK(p->w % 5 == 0 && p->h % 4 == 0 && p->w / 5 == p->h / 4, "square integer cells");
  expect_cell(&png, p, 0, 0, 0, 0, 0);
  expect_cell(&png, p, 3, 3, 0, 0, 18);
  expect_cell(&png, p, 2, 1, 0, 0, 11);
  expect_cell(&png, p, 3, 4, 0, 0, 19);
  int x, y;
  uint8_t g[3], cnt_grey = 0;
  cell_px(p, 0, 4, 0, &x, &y);
  for (int dx = -3; dx <= 3; dx += 3) {
    pixel(&png, x + dx, y, g);
    cnt_grey += g[0] == g[1] && g[1] == g[2] && g[0] > 120 && g[0] < 230;
  }
  CHECK(cnt_grey == 3, "NaN cell drawn grey (hatched)");
  /* somewhere in the NaN cell there is both the fill and a hatch line */
  int lo = 255, hi = 0, cw = p->w / 5;
  for (int dy = 0; dy < cw; dy++)
    for (int dx = 0; dx < cw; dx++) {
      pixel(&png, p->x + 4 * cw + dx, p->y + dy, g);
      if (g[0] < lo) lo = g[0];
      if (g[0] > hi) hi = g[0];
    }
  CHECK(hi - lo > 40, "NaN cell is hatched (grey levels %d..%d)", lo, hi);
  cairo_surface_destroy(png.s);

  /* origin lower + explicit scale: row 0 is drawn at the bottom */
  o.origin_lower = 1;
  o.vmin = -10, o.vmax = 30;
  o.cmap = "magma";
  CHECK(sf_plot_grid(path, &it, 1, &o, &info) == 0, "heatmap lower: %s", sf_last_error());
  png = load_png(path);
  CHECK(info.panels[0].vmin == -10 && info.panels[0].vmax == 30, "explicit vmin/vmax");
  expect_cell(&png, &info.panels[0], 0, 0, 1, sf_plot_cmap_index("magma"), 0);
  expect_cell(&png, &info.panels[0], 3, 2, 1, sf_plot_cmap_index("magma"), 17);
  cairo_surface_destroy(png.s);
}

static void test_grid_scales(void) {
  float a[9], b[9], c[9];
  for (int i = 0; i < 9; i++) a[i] = i, b[i] = 10 + i, c[i] = -i;
  sf_plot_item it[3] = {{.kind = SF_PLOT_MATRIX, .m = a, .rows = 3, .cols = 3, .title = "head 0"},
                        {.kind = SF_PLOT_MATRIX, .m = b, .rows = 3, .cols = 3, .title = "head 1"},
                        {.kind = SF_PLOT_MATRIX, .m = c, .rows = 3, .cols = 3, .title = "head 2"}};
  char path[512];
  snprintf(path, sizeof path, "%s/grid.png", tmpdir);
  sf_plot_grid_opts o;
  sf_plot_grid_defaults(&o);
  o.cmap = "RdBu_r";
  o.center = 1;
  sf_plot_info info;
  CHECK(sf_plot_grid(path, it, 3, &o, &info) == 0, "grid: %s", sf_last_error());
  CHECK(info.npanels == 3 && info.panels[0].vmin == -18 && info.panels[2].vmax == 18, "shared centred scale %g..%g",
        info.panels[0].vmin, info.panels[0].vmax);
  png_t png = load_png(path);
  int rb = sf_plot_cmap_index("RdBu_r");
  expect_cell(&png, &info.panels[1], 2, 2, 0, rb, 18);
  expect_cell(&png, &info.panels[2], 1, 1, 0, rb, -4);
  CHECK(info.panels[1].x > info.panels[0].x + info.panels[0].w, "tiles side by side");
  cairo_surface_destroy(png.s);

  o.shared = 0;
  o.center = 0;
  o.cmap = "viridis";
  o.ncols = 2;
  CHECK(sf_plot_grid(path, it, 3, &o, &info) == 0, "grid per tile: %s", sf_last_error());
  CHECK(info.panels[1].vmin == 10 && info.panels[1].vmax == 18, "per-tile scale");
  CHECK(info.panels[2].y > info.panels[0].y, "two columns wrap to a second row");
  png = load_png(path);
  expect_cell(&png, &info.panels[1], 0, 0, 0, 0, 10);
  expect_cell(&png, &info.panels[2], 2, 2, 0, 0, -8);
  cairo_surface_destroy(png.s);
}

static void test_images_and_compare(void) {
  uint8_t img[8 * 12 * 3];
  for (int r = 0; r < 8; r++)
    for (int c = 0; c < 12; c++) {
      uint8_t *p = img + (r * 12 + c) * 3;
      p[0] = c < 6 ? 250 : 10, p[1] = r < 4 ? 200 : 30, p[2] = 77;
    }
  const char *cols[2] = {"A", "B"}, *rows[2] = {"frame 0", "frame 4"};
  sf_plot_item it[4];
  for (int i = 0; i < 4; i++) it[i] = (sf_plot_item){.kind = SF_PLOT_RGB, .rgb = img, .h = 8, .w = 12, .caption = "psnr 30.1"};
  sf_plot_grid_opts o;
  sf_plot_grid_defaults(&o);
  o.col_titles = cols, o.ncol_titles = 2, o.row_labels = rows, o.nrow_labels = 2;
  o.title = "A vs B";
  o.tile = 120;
  char path[512];
  snprintf(path, sizeof path, "%s/cmp.png", tmpdir);
  sf_plot_info info;
  CHECK(sf_plot_grid(path, it, 4, &o, &info) == 0, "compare grid: %s", sf_last_error());
  CHECK(info.panels[0].w == 120 && info.panels[0].h == 80, "image scaled to tile keeping aspect: %dx%d",
        info.panels[0].w, info.panels[0].h);
  png_t png = load_png(path);
  uint8_t g[3], w1[3] = {250, 200, 77}, w2[3] = {10, 30, 77};
  const sf_plot_panel *p = &info.panels[3];
  pixel(&png, p->x + 5, p->y + 5, g);
  CHECK(same(g, w1, 0), "image top-left pixel %d,%d,%d", g[0], g[1], g[2]);
  pixel(&png, p->x + p->w - 5, p->y + p->h - 5, g);
  CHECK(same(g, w2, 0), "image bottom-right pixel");
  cairo_surface_destroy(png.s);
}

static void test_lines_svg_errors(void) {
  double y1[20], y2[20], band[20];
  for (int i = 0; i < 20; i++) y1[i] = 2.0, y2[i] = sin(i * 0.5), band[i] = 0.2;
  y2[7] = NAN;
  sf_plot_series s[2] = {{.y = y1, .n = 20, .label = "flat"}, {.y = y2, .band = band, .n = 20, .label = "sine"}};
  sf_plot_lines_opts o;
  sf_plot_lines_defaults(&o);
  o.title = "profiles";
  o.xlabel = "key frame";
  o.ylabel = "mean logit";
  char path[512];
  snprintf(path, sizeof path, "%s/lines.png", tmpdir);
  sf_plot_info info;
  CHECK(sf_plot_lines(path, s, 2, &o, &info) == 0, "lines: %s", sf_last_error());
  png_t png = load_png(path);
  CHECK(png.w == 640 && png.h == 400, "lines default size %dx%d", png.w, png.h);
  /* the flat line at y = 2 sits at a known height; find a tab10 blue pixel in that column */
  const sf_plot_panel *p = &info.panels[0];
  int yline = (int)lround(p->y + p->h - (2.0 - p->vmin) / (p->vmax - p->vmin) * p->h), found = 0;
  uint8_t blue[3] = {0x1f, 0x77, 0xb4}, g[3];
  for (int dy = -2; dy <= 2; dy++) {
    pixel(&png, p->x + p->w / 3, yline + dy, g);
    found |= same(g, blue, 30);
  }
  CHECK(found, "line drawn in the first cycle colour at its value");
  cairo_surface_destroy(png.s);

  snprintf(path, sizeof path, "%s/lines.svg", tmpdir);
  CHECK(sf_plot_lines(path, s, 2, &o, NULL) == 0, "svg: %s", sf_last_error());
  FILE *f = fopen(path, "rb");
  char head[64] = {0};
  if (f) { fread(head, 1, sizeof head - 1, f); fclose(f); }
  CHECK(strstr(head, "<?xml") || strstr(head, "<svg"), "svg file written: %.20s", head);

  float m[4] = {1, 2, 3, 4};
  sf_plot_item it = {.kind = SF_PLOT_MATRIX, .m = m, .rows = 2, .cols = 2};
  CHECK(sf_plot_grid("/nonexistent-dir/x.png", &it, 1, NULL, NULL) == -1 && strstr(sf_last_error(), "x.png"),
        "unwritable path names the file: %s", sf_last_error());
  CHECK(access("/nonexistent-dir", F_OK) != 0, "nothing created");
  CHECK(sf_plot_grid(path, &it, 0, NULL, NULL) == -1, "zero tiles refused");
  sf_plot_grid_opts go;
  sf_plot_grid_defaults(&go);
  go.cmap = "jet";
  CHECK(sf_plot_grid(path, &it, 1, &go, NULL) == -1 && strstr(sf_last_error(), "jet"), "unknown cmap");
  /* all-NaN matrix still draws */
  float nn[4] = {NAN, NAN, NAN, NAN};
  it.m = nn;
  snprintf(path, sizeof path, "%s/nan.png", tmpdir);
  CHECK(sf_plot_grid(path, &it, 1, NULL, NULL) == 0, "all-NaN: %s", sf_last_error());
}

int main(void) {
  sf_backends_init();
  const char *base = getenv("SFWB_TEST_TMP");
  snprintf(tmpdir, sizeof tmpdir, "%s/test_plot-%d", base ? base : "/tmp/sfwb-test", (int)getpid());
  char cmd[400];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmpdir);
  if (system(cmd) != 0) return 1;
  test_colormaps();
  test_heatmap();
  test_grid_scales();
  test_images_and_compare();
  test_lines_svg_errors();
  printf("%d passed, %d failed\n", npass, nfail);
  return nfail ? 1 : 0;
}
