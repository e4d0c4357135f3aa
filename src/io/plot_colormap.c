/* plot_colormap.c — 256-entry colormap tables built from published colour stops. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "io/plot.h"

/* Evenly spaced stops, linearly interpolated to 256 entries. viridis/magma/inferno: the 9-colour
 * palettes of the (CC0) matplotlib maps; RdBu: the ColorBrewer 11-class diverging scheme. */
typedef struct { const char *name; int nstops; unsigned stops[11]; int reversed; } cmap_def;

static const cmap_def g_defs[] = {
  {"viridis", 9, {0x440154, 0x472D7B, 0x3B528B, 0x2C728E, 0x21908C, 0x27AD81, 0x5DC863, 0xAADC32, 0xFDE725}, 0},
  {"magma", 9, {0x000004, 0x1D1147, 0x51127C, 0x822681, 0xB63679, 0xE65164, 0xFB8861, 0xFEC287, 0xFCFDBF}, 0},
  {"inferno", 9, {0x000004, 0x1F0C48, 0x550F6D, 0x88226A, 0xBA3655, 0xE35932, 0xF98C0A, 0xF9C932, 0xFCFFA4}, 0},
  {"RdBu", 11, {0x67001F, 0xB2182B, 0xD6604D, 0xF4A582, 0xFDDBC7, 0xF7F7F7, 0xD1E5F0, 0x92C5DE, 0x4393C3,
                0x2166AC, 0x053061}, 0},
  {"RdBu_r", 11, {0x67001F, 0xB2182B, 0xD6604D, 0xF4A582, 0xFDDBC7, 0xF7F7F7, 0xD1E5F0, 0x92C5DE, 0x4393C3,
                  0x2166AC, 0x053061}, 1},
  {"gray", 2, {0x000000, 0xFFFFFF}, 0},
  {"Greys", 2, {0xFFFFFF, 0x000000}, 0},
};
#define NDEFS ((int)(sizeof g_defs / sizeof g_defs[0]))

static uint8_t g_lut[NDEFS][256][3];
static int g_built;

static void build_luts(void) {
  for (int c = 0; c < NDEFS; c++) {
    const cmap_def *d = &g_defs[c];
    for (int i = 0; i < 256; i++) {
      double u = i / 255.0;
      if (d->reversed) u = 1.0 - u;
      double pos = u * (d->nstops - 1);
      int a = (int)floor(pos);
      if (a >= d->nstops - 1) a = d->nstops - 2;
      double f = pos - a;
      for (int k = 0; k < 3; k++) {
        int sh = 16 - 8 * k;
        double ca = (d->stops[a] >> sh) & 0xFF, cb = (d->stops[a + 1] >> sh) & 0xFF;
        g_lut[c][i][k] = (uint8_t)lround(ca + (cb - ca) * f);
      }
    }
  }
  g_built = 1;
}

const char *sf_plot_cmap_names(void) { return "viridis, magma, inferno, RdBu_r, RdBu, gray, Greys"; }

int sf_plot_cmap_index(const char *name) {
  if (!g_built) build_luts();
  if (!name) return 0;
  for (int c = 0; c < NDEFS; c++)
    if (!strcmp(g_defs[c].name, name)) return c;
  return sf_error("plot: unknown colormap '%s' (known: %s)", name, sf_plot_cmap_names());
}

void sf_plot_cmap_rgb(int cmap, double u, uint8_t rgb[3]) {
  if (!g_built) build_luts();
  if (isnan(u)) { rgb[0] = rgb[1] = rgb[2] = 0xD9; return; }
  int i = (int)floor(u * 256.0);
  if (i < 0) i = 0;
  if (i > 255) i = 255;
  if (cmap < 0 || cmap >= NDEFS) cmap = 0;
  memcpy(rgb, g_lut[cmap][i], 3);
}
