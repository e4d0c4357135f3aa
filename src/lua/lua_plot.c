/* lua_plot.c — sfwb.plot: heatmap, head_grid, mosaic, lines and compare over tensors (cairo, src/io/plot_*). */
#include <cairo.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/ops.h"
#include "io/plot.h"
#include "lua/lua_tensor.h"

/* Everything a call allocates goes into one arena freed before returning or raising, so a Lua error
 * never leaks a tensor or a buffer. */
typedef struct {
  sf_tensor *t[1024];
  int nt;
  void *p[1024];
  int np;
} arena;

static void arena_free(arena *a) {
  for (int i = 0; i < a->nt; i++) sf_release(a->t[i]);
  for (int i = 0; i < a->np; i++) free(a->p[i]);
  a->nt = a->np = 0;
}

static int fail(lua_State *L, arena *a, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  arena_free(a);
  free(a);
  return luaL_error(L, "%s", msg);
}
#define FAIL(...) return fail(L, A, __VA_ARGS__)

static void *amalloc(arena *a, size_t n) {
  if (a->np >= 1024) return NULL;
  void *p = calloc(1, n ? n : 1);
  if (p) a->p[a->np++] = p;
  return p;
}

/* a contiguous f32 CPU copy (or view) of a tensor; NULL + sf error */
static sf_tensor *as_f32(arena *a, sf_tensor *t) {
  if (a->nt + 3 >= 1024) { sf_error("plot: too many tensors"); return NULL; }
  sf_tensor *c = sf_to_device(t, sf_cpu());
  if (!c) return NULL;
  a->t[a->nt++] = c;
  sf_tensor *f = sf_cast(c, SF_F32);
  if (!f) return NULL;
  a->t[a->nt++] = f;
  sf_tensor *g = sf_contiguous(f);
  if (!g) return NULL;
  a->t[a->nt++] = g;
  return g;
}

/* ---- option readers (the options table is at index `o`, or absent) ---- */
static const char *opt_str(lua_State *L, int o, const char *k, const char *dflt) {
  if (!o) return dflt;
  lua_getfield(L, o, k);
  const char *s = lua_isstring(L, -1) ? lua_tostring(L, -1) : dflt;
  lua_pop(L, 1); /* the string stays alive: it is held by the options table */
  return s;
}
static double opt_num(lua_State *L, int o, const char *k, double dflt) {
  if (!o) return dflt;
  lua_getfield(L, o, k);
  double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}
static int opt_bool(lua_State *L, int o, const char *k, int dflt) {
  if (!o) return dflt;
  lua_getfield(L, o, k);
  int v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* the options table (an empty one when absent: the figure is then returned and shown in a notebook) */
static int check_opts(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) {
    if (lua_gettop(L) < idx) lua_settop(L, idx);
    lua_newtable(L);
    lua_replace(L, idx);
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  return lua_absindex(L, idx);
}

/* without path=, a figure is drawn to a temp PNG and read back: {width, height, panels, png = bytes},
 * which lua/sfwb/display.lua shows inline in a notebook (the sfwb Jupyter kernel) */
typedef struct {
  char tmp[4200];
  int is_tmp;
} figpath;

static const char *figure_path(lua_State *L, int o, figpath *fp) {
  static unsigned counter;
  const char *path = opt_str(L, o, "path", NULL);
  fp->is_tmp = !path;
  if (path) return path;
  const char *dir = getenv("TMPDIR");
  snprintf(fp->tmp, sizeof fp->tmp, "%s/sfwb-figure-%d-%u.png", dir && *dir ? dir : "/tmp", (int)getpid(), counter++);
  return fp->tmp;
}

/* the grid options shared by heatmap/head_grid/mosaic/compare */
static void read_grid_opts(lua_State *L, int o, sf_plot_grid_opts *g) {
  sf_plot_grid_defaults(g);
  g->title = opt_str(L, o, "title", NULL);
  g->xlabel = opt_str(L, o, "xlabel", NULL);
  g->ylabel = opt_str(L, o, "ylabel", NULL);
  g->cmap = opt_str(L, o, "cmap", NULL);
  g->cbar_label = opt_str(L, o, "cbar_label", opt_str(L, o, "clabel", NULL));
  g->vmin = opt_num(L, o, "vmin", NAN);
  g->vmax = opt_num(L, o, "vmax", NAN);
  g->center = opt_bool(L, o, "center", 0);
  g->colorbar = opt_bool(L, o, "colorbar", 1);
  g->ticks = opt_bool(L, o, "ticks", 1);
  const char *origin = opt_str(L, o, "origin", "upper");
  g->origin_lower = !strcmp(origin, "lower");
  g->ncols = (int)opt_num(L, o, "cols", 0);
  g->tile = (int)opt_num(L, o, "tile", opt_num(L, o, "size", 0));
  g->x0 = (int)opt_num(L, o, "x0", 0);
  g->y0 = (int)opt_num(L, o, "y0", 0);
  /* scale = "shared" | "panel" | {lo, hi} */
  lua_getfield(L, o, "scale");
  if (lua_type(L, -1) == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    g->shared = !(strcmp(s, "panel") == 0 || strcmp(s, "layer") == 0 || strcmp(s, "tile") == 0);
  } else if (lua_istable(L, -1)) {
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    if (lua_isnumber(L, -2) && lua_isnumber(L, -1)) g->vmin = lua_tonumber(L, -2), g->vmax = lua_tonumber(L, -1);
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  lua_getfield(L, o, "shared");
  if (lua_isboolean(L, -1)) g->shared = lua_toboolean(L, -1);
  lua_pop(L, 1);
}

static void push_info(lua_State *L, const char *path, const sf_plot_info *info) {
  lua_newtable(L);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  lua_pushinteger(L, info->width);
  lua_setfield(L, -2, "width");
  lua_pushinteger(L, info->height);
  lua_setfield(L, -2, "height");
  lua_newtable(L);
  for (int i = 0; i < info->npanels; i++) {
    const sf_plot_panel *p = &info->panels[i];
    lua_newtable(L);
    lua_pushinteger(L, p->x); lua_setfield(L, -2, "x");
    lua_pushinteger(L, p->y); lua_setfield(L, -2, "y");
    lua_pushinteger(L, p->w); lua_setfield(L, -2, "w");
    lua_pushinteger(L, p->h); lua_setfield(L, -2, "h");
    lua_pushinteger(L, p->rows); lua_setfield(L, -2, "rows");
    lua_pushinteger(L, p->cols); lua_setfield(L, -2, "cols");
    if (!isnan(p->vmin)) { lua_pushnumber(L, p->vmin); lua_setfield(L, -2, "vmin"); }
    if (!isnan(p->vmax)) { lua_pushnumber(L, p->vmax); lua_setfield(L, -2, "vmax"); }
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "panels");
}

static void push_figure(lua_State *L, int o, const char *path, const sf_plot_info *info, const figpath *fp) {
  int show = opt_bool(L, o, "show", 1); /* show=false: returned only (e.g. for sfwb.display(fig, {id=, update=})) */
  push_info(L, fp->is_tmp ? NULL : path, info);
  if (!fp->is_tmp) return;
  FILE *f = fopen(fp->tmp, "rb");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t n;
  char chunk[8192];
  while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0) luaL_addlstring(&b, chunk, n);
  if (f) fclose(f);
  unlink(fp->tmp);
  luaL_pushresult(&b);
  lua_setfield(L, -2, "png");
  lua_getglobal(L, "require");
  lua_pushstring(L, "sfwb.display");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "figure");
  lua_pushvalue(L, -3);
  lua_pushboolean(L, show);
  lua_call(L, 2, 1); /* the figure (shown now when a notebook runs us) */
  lua_replace(L, -3);
  lua_pop(L, 1);
}

/* a tensor as one tile: 2-D -> matrix; [H,W,3] u8 or [3,H,W] float in [-1,1] -> image.
 * Returns 0, or -1 with an sf error. */
static int tile_from_tensor(arena *a, sf_tensor *t, sf_plot_item *it, int allow_image) {
  memset(it, 0, sizeof *it);
  if (t->ndim == 2) {
    sf_tensor *f = as_f32(a, t);
    if (!f) return -1;
    it->kind = SF_PLOT_MATRIX;
    it->m = sf_data_ptr(f);
    it->rows = (int)t->shape[0];
    it->cols = (int)t->shape[1];
    return 0;
  }
  if (allow_image && t->ndim == 3 && (t->shape[2] == 3 || t->shape[0] == 3)) {
    int chw = t->shape[2] != 3 || (t->shape[0] == 3 && t->dtype != SF_U8);
    int h = (int)(chw ? t->shape[1] : t->shape[0]), w = (int)(chw ? t->shape[2] : t->shape[1]);
    sf_tensor *f = as_f32(a, t);
    if (!f) return -1;
    const float *src = sf_data_ptr(f);
    uint8_t *rgb = amalloc(a, (size_t)h * w * 3);
    if (!rgb) return sf_error("plot: out of memory for a %dx%d image", h, w);
    int is_u8 = t->dtype == SF_U8;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int c = 0; c < 3; c++) {
          float v = chw ? src[((size_t)c * h + y) * w + x] : src[((size_t)y * w + x) * 3 + c];
          double u = is_u8 ? v : (v * 0.5 + 0.5) * 255.0; /* [-1,1] pixels as the pipelines produce them */
          if (!(u >= 0)) u = 0;
          if (u > 255) u = 255;
          rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)lround(u);
        }
    it->kind = SF_PLOT_RGB;
    it->rgb = rgb;
    it->h = h;
    it->w = w;
    return 0;
  }
  char b[128];
  return sf_error("plot: expected a 2-D matrix%s, got a tensor of shape %s", allow_image ? " or an image ([H,W,3] u8 / [3,H,W] in [-1,1])" : "",
                  sf_shape_str(t, b, sizeof b));
}

/* sfwb.plot.heatmap(t [H, W], {path=, title=, xlabel=, ylabel=, cmap=, vmin=, vmax=, colorbar=, ...}) */
static int l_heatmap(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  int o = check_opts(L, 2);
  arena *A = calloc(1, sizeof *A);
  sf_plot_item it;
  if (t->ndim != 2) {
    char b[128];
    FAIL("plot.heatmap: expected a 2-D tensor [rows, cols], got %s", sf_shape_str(t, b, sizeof b));
  }
  if (tile_from_tensor(A, t, &it, 0)) FAIL("%s", sf_last_error());
  sf_plot_grid_opts g;
  read_grid_opts(L, o, &g);
  figpath fp;
  const char *path = figure_path(L, o, &fp);
  sf_plot_info info;
  if (sf_plot_grid(path, &it, 1, &g, &info)) FAIL("plot.heatmap: %s", sf_last_error());
  arena_free(A);
  free(A);
  push_figure(L, o, path, &info, &fp);
  return 1;
}

/* sfwb.plot.head_grid(t [heads, Fq, Fk], {path=, cols=, scale="shared"|"panel"|{lo,hi}, titles=, ...}) */
static int l_head_grid(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  int o = check_opts(L, 2);
  arena *A = calloc(1, sizeof *A);
  char b[128];
  if (t->ndim != 3 && t->ndim != 2)
    FAIL("plot.head_grid: expected [heads, Fq, Fk], got %s", sf_shape_str(t, b, sizeof b));
  int H = t->ndim == 3 ? (int)t->shape[0] : 1;
  if (H > SF_PLOT_MAX_PANELS) FAIL("plot.head_grid: %d heads, at most %d panels", H, SF_PLOT_MAX_PANELS);
  sf_tensor *f = as_f32(A, t);
  if (!f) FAIL("plot.head_grid: %s", sf_last_error());
  int R = (int)t->shape[t->ndim - 2], C = (int)t->shape[t->ndim - 1];
  sf_plot_item *items = amalloc(A, sizeof(sf_plot_item) * H);
  char *titles = amalloc(A, (size_t)H * 64);
  const char *fmt = opt_str(L, o, "title_format", "head %d");
  lua_getfield(L, o, "titles");
  int has_titles = lua_istable(L, -1);
  for (int h = 0; h < H; h++) {
    items[h].kind = SF_PLOT_MATRIX;
    items[h].m = (const float *)sf_data_ptr(f) + (size_t)h * R * C;
    items[h].rows = R;
    items[h].cols = C;
    if (has_titles) {
      lua_rawgeti(L, -1, h + 1);
      snprintf(titles + h * 64, 64, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
      lua_pop(L, 1);
    } else {
      snprintf(titles + h * 64, 64, fmt, h);
    }
    items[h].title = titles + h * 64;
  }
  lua_pop(L, 1);
  sf_plot_grid_opts g;
  read_grid_opts(L, o, &g);
  if (!g.xlabel) g.xlabel = "key frame";
  if (!g.ylabel) g.ylabel = "query frame";
  figpath fp;
  const char *path = figure_path(L, o, &fp);
  sf_plot_info info;
  if (sf_plot_grid(path, items, H, &g, &info)) FAIL("plot.head_grid: %s", sf_last_error());
  arena_free(A);
  free(A);
  push_figure(L, o, path, &info, &fp);
  return 1;
}

/* sfwb.plot.mosaic({t1, {t2, title=, caption=}, ...}, {path=, cols=, shared=true, titles=, ...}) */
static int l_mosaic(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int o = check_opts(L, 2);
  int n = (int)lua_rawlen(L, 1);
  arena *A = calloc(1, sizeof *A);
  if (n <= 0) FAIL("plot.mosaic: no items");
  if (n > SF_PLOT_MAX_PANELS) FAIL("plot.mosaic: %d items, at most %d", n, SF_PLOT_MAX_PANELS);
  sf_plot_item *items = amalloc(A, sizeof(sf_plot_item) * n);
  lua_getfield(L, o, "titles");
  int tt = lua_gettop(L);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    int e = lua_gettop(L);
    sf_tensor *t = sf_lua_to_tensor(L, e);
    const char *title = NULL, *caption = NULL;
    if (!t && lua_istable(L, e)) {
      lua_rawgeti(L, e, 1);
      t = sf_lua_to_tensor(L, -1);
      lua_pop(L, 1);
      lua_getfield(L, e, "title");
      title = lua_tostring(L, -1);
      lua_pop(L, 1);
      lua_getfield(L, e, "caption");
      caption = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
    if (!t) FAIL("plot.mosaic: item %d is not a tensor (or {tensor, title=})", i + 1);
    if (tile_from_tensor(A, t, &items[i], 1)) FAIL("plot.mosaic: item %d: %s", i + 1, sf_last_error());
    if (!title && lua_istable(L, tt)) {
      lua_rawgeti(L, tt, i + 1);
      title = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
    items[i].title = title; /* kept alive by the items/options tables */
    items[i].caption = caption;
    lua_settop(L, tt);
  }
  lua_pop(L, 1);
  sf_plot_grid_opts g;
  read_grid_opts(L, o, &g);
  figpath fp;
  const char *path = figure_path(L, o, &fp);
  sf_plot_info info;
  if (sf_plot_grid(path, items, n, &g, &info)) FAIL("plot.mosaic: %s", sf_last_error());
  arena_free(A);
  free(A);
  push_figure(L, o, path, &info, &fp);
  return 1;
}

/* a numeric series from a tensor (any shape, flattened) or a Lua array; NaN for nil/holes */
static double *series_values(lua_State *L, arena *A, int idx, int *n) {
  sf_tensor *t = sf_lua_to_tensor(L, idx);
  if (t) {
    sf_tensor *f = as_f32(A, t);
    if (!f) return NULL;
    *n = (int)sf_numel(f);
    double *v = amalloc(A, sizeof(double) * (*n));
    const float *s = sf_data_ptr(f);
    for (int i = 0; i < *n; i++) v[i] = s[i];
    return v;
  }
  if (lua_istable(L, idx)) {
    *n = (int)lua_rawlen(L, idx);
    double *v = amalloc(A, sizeof(double) * (*n));
    for (int i = 0; i < *n; i++) {
      lua_rawgeti(L, idx, i + 1);
      v[i] = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : NAN;
      lua_pop(L, 1);
    }
    return v;
  }
  sf_error("expected a tensor or a list of numbers");
  return NULL;
}

/* sfwb.plot.lines({{y=, x=, band=, label=}, ...} | t [n_series, n], {path=, title=, xlabel=, ylabel=, labels=}) */
static int l_lines(lua_State *L) {
  int o = check_opts(L, 2);
  arena *A = calloc(1, sizeof *A);
  sf_plot_series *s = NULL;
  int n = 0;
  sf_tensor *t = sf_lua_to_tensor(L, 1);
  lua_getfield(L, o, "labels");
  int lab = lua_gettop(L);
  if (t) {
    if (t->ndim != 1 && t->ndim != 2) FAIL("plot.lines: expected [n] or [series, n]");
    sf_tensor *f = as_f32(A, t);
    if (!f) FAIL("plot.lines: %s", sf_last_error());
    n = t->ndim == 2 ? (int)t->shape[0] : 1;
    int len = (int)t->shape[t->ndim - 1];
    s = amalloc(A, sizeof *s * (n > 0 ? n : 1));
    for (int k = 0; k < n; k++) {
      double *v = amalloc(A, sizeof(double) * len);
      for (int i = 0; i < len; i++) v[i] = ((const float *)sf_data_ptr(f))[(size_t)k * len + i];
      s[k].y = v, s[k].n = len;
      if (lua_istable(L, lab)) {
        lua_rawgeti(L, lab, k + 1);
        s[k].label = lua_tostring(L, -1);
        lua_pop(L, 1);
      }
    }
  } else if (lua_istable(L, 1)) {
    n = (int)lua_rawlen(L, 1);
    s = amalloc(A, sizeof *s * (n > 0 ? n : 1));
    for (int k = 0; k < n; k++) {
      lua_rawgeti(L, 1, k + 1);
      int e = lua_gettop(L);
      if (!lua_istable(L, e) || sf_lua_to_tensor(L, e)) {
        /* a bare tensor / list of numbers is a series on its own */
        s[k].y = series_values(L, A, e, &s[k].n);
        if (!s[k].y) FAIL("plot.lines: series %d: %s", k + 1, sf_last_error());
      } else {
        lua_getfield(L, e, "y");
        if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_rawgeti(L, e, 1); }
        s[k].y = series_values(L, A, lua_gettop(L), &s[k].n);
        if (!s[k].y) FAIL("plot.lines: series %d y: %s", k + 1, sf_last_error());
        lua_pop(L, 1);
        int m;
        lua_getfield(L, e, "x");
        if (!lua_isnil(L, -1)) {
          s[k].x = series_values(L, A, lua_gettop(L), &m);
          if (!s[k].x || m != s[k].n) FAIL("plot.lines: series %d: x has %d values for %d y values", k + 1, m, s[k].n);
        }
        lua_pop(L, 1);
        lua_getfield(L, e, "band");
        if (!lua_isnil(L, -1)) {
          s[k].band = series_values(L, A, lua_gettop(L), &m);
          if (!s[k].band || m != s[k].n) FAIL("plot.lines: series %d: band has %d values for %d", k + 1, m, s[k].n);
        }
        lua_pop(L, 1);
        lua_getfield(L, e, "label");
        s[k].label = lua_tostring(L, -1);
        lua_pop(L, 1);
      }
      if (!s[k].label && lua_istable(L, lab)) {
        lua_rawgeti(L, lab, k + 1);
        s[k].label = lua_tostring(L, -1);
        lua_pop(L, 1);
      }
      lua_settop(L, lab);
    }
  } else {
    FAIL("plot.lines: expected a list of series or a tensor");
  }
  sf_plot_lines_opts lo;
  sf_plot_lines_defaults(&lo);
  lo.title = opt_str(L, o, "title", NULL);
  lo.xlabel = opt_str(L, o, "xlabel", NULL);
  lo.ylabel = opt_str(L, o, "ylabel", NULL);
  lo.width = (int)opt_num(L, o, "width", 0);
  lo.height = (int)opt_num(L, o, "height", 0);
  lo.markers = opt_bool(L, o, "markers", 0);
  lo.legend = opt_bool(L, o, "legend", 1);
  lo.ymin = opt_num(L, o, "ymin", NAN);
  lo.ymax = opt_num(L, o, "ymax", NAN);
  lo.x0 = opt_num(L, o, "x0", 0);
  figpath fp;
  const char *path = figure_path(L, o, &fp);
  sf_plot_info info;
  if (sf_plot_lines(path, s, n, &lo, &info)) FAIL("plot.lines: %s", sf_last_error());
  arena_free(A);
  free(A);
  push_figure(L, o, path, &info, &fp);
  return 1;
}

/* one frame of a video tensor: [F,3,H,W] / [B,F,3,H,W] (batch 1) / [3,H,W] / [H,W,3] u8 / [F,H,W,3] u8 */
static sf_tensor *frame_of(arena *A, sf_tensor *v, int f, int *nframes) {
  sf_tensor *x = v;
  if (x->ndim == 5) {
    x = sf_select(x, 0, 0);
    if (!x) return NULL;
    A->t[A->nt++] = x;
  }
  if (x->ndim == 3) { *nframes = 1; return x; }
  if (x->ndim != 4) { sf_error("expected a video [F,3,H,W] or an image"); return NULL; }
  *nframes = (int)x->shape[0];
  if (f < 0 || f >= x->shape[0]) { sf_error("frame %d out of range (video has %lld)", f, (long long)x->shape[0]); return NULL; }
  sf_tensor *y = sf_select(x, 0, f);
  if (!y) return NULL;
  A->t[A->nt++] = y;
  return y;
}

/* sfwb.plot.compare({videoA, videoB, ...}, {path=, labels={"A","B"}, frames={0, 8}, diff=true, captions=}) */
static int l_compare(lua_State *L) {
  /* compare(A, B, ..., opts) is the same as compare({A, B, ...}, opts) */
  if (sf_lua_to_tensor(L, 1)) {
    int top = lua_gettop(L), n = 0;
    lua_newtable(L);
    while (n < top && sf_lua_to_tensor(L, n + 1)) {
      lua_pushvalue(L, n + 1);
      lua_rawseti(L, -2, ++n);
    }
    if (n < top) lua_pushvalue(L, n + 1); else lua_pushnil(L);
    lua_replace(L, 2);
    lua_replace(L, 1);
    lua_settop(L, 2);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  int o = check_opts(L, 2);
  int nv = (int)lua_rawlen(L, 1);
  arena *A = calloc(1, sizeof *A);
  if (nv < 1 || nv > 16) FAIL("plot.compare: give 1..16 videos/images, got %d", nv);
  sf_tensor *v[16];
  for (int i = 0; i < nv; i++) {
    lua_rawgeti(L, 1, i + 1);
    v[i] = sf_lua_to_tensor(L, -1);
    lua_pop(L, 1);
    if (!v[i]) FAIL("plot.compare: item %d is not a tensor", i + 1);
  }
  int nf0 = 1;
  if (!frame_of(A, v[0], 0, &nf0)) FAIL("plot.compare: %s", sf_last_error());
  int frames[64], nfr = 0;
  lua_getfield(L, o, "frames");
  if (lua_istable(L, -1)) {
    for (int i = 1; i <= (int)lua_rawlen(L, -1) && nfr < 64; i++) {
      lua_rawgeti(L, -1, i);
      frames[nfr++] = (int)lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
  } else {
    int k = nf0 < 4 ? nf0 : 4; /* evenly spaced, first and last included */
    for (int i = 0; i < k; i++) frames[nfr++] = k == 1 ? 0 : (int)lround((double)i * (nf0 - 1) / (k - 1));
  }
  lua_pop(L, 1);
  int diff = opt_bool(L, o, "diff", nv == 2);
  int ncol = nv + (diff && nv == 2 ? 1 : 0);
  sf_plot_item *items = amalloc(A, sizeof(sf_plot_item) * ncol * nfr);
  char **rowlab = amalloc(A, sizeof(char *) * nfr);
  lua_getfield(L, o, "captions"); /* captions[row][col] */
  int cap = lua_gettop(L);
  for (int r = 0; r < nfr; r++) {
    rowlab[r] = amalloc(A, 32);
    snprintf(rowlab[r], 32, "frame %d", frames[r]);
    for (int c = 0; c < nv; c++) {
      int nf;
      sf_tensor *fr = frame_of(A, v[c], frames[r], &nf);
      if (!fr) FAIL("plot.compare: item %d: %s", c + 1, sf_last_error());
      if (tile_from_tensor(A, fr, &items[r * ncol + c], 1)) FAIL("plot.compare: item %d: %s", c + 1, sf_last_error());
      if (items[r * ncol + c].kind != SF_PLOT_RGB) FAIL("plot.compare: item %d is not an image/video", c + 1);
    }
    if (ncol > nv) { /* |A - B| amplified so small differences are visible; exact zeros stay black */
      sf_plot_item *a = &items[r * ncol], *b = &items[r * ncol + 1], *d = &items[r * ncol + 2];
      if (a->h != b->h || a->w != b->w) FAIL("plot.compare: frames differ in size (%dx%d vs %dx%d)", a->h, a->w, b->h, b->w);
      uint8_t *rgb = amalloc(A, (size_t)a->h * a->w * 3);
      for (size_t i = 0; i < (size_t)a->h * a->w * 3; i++) {
        int dv = abs((int)a->rgb[i] - (int)b->rgb[i]) * 4;
        rgb[i] = (uint8_t)(dv > 255 ? 255 : dv);
      }
      *d = (sf_plot_item){.kind = SF_PLOT_RGB, .rgb = rgb, .h = a->h, .w = a->w};
    }
    if (lua_istable(L, cap)) {
      lua_rawgeti(L, cap, r + 1);
      if (lua_istable(L, -1))
        for (int c = 0; c < ncol; c++) {
          lua_rawgeti(L, -1, c + 1);
          items[r * ncol + c].caption = lua_tostring(L, -1);
          lua_pop(L, 1);
        }
      else if (lua_isstring(L, -1)) items[r * ncol + ncol - 1].caption = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  }
  const char *labels[17];
  lua_getfield(L, o, "labels");
  for (int c = 0; c < nv; c++) {
    labels[c] = NULL;
    if (lua_istable(L, -1)) {
      lua_rawgeti(L, -1, c + 1);
      labels[c] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
    if (!labels[c]) labels[c] = c == 0 ? "A" : c == 1 ? "B" : "";
  }
  if (ncol > nv) labels[nv] = "|A - B| x4";
  sf_plot_grid_opts g;
  read_grid_opts(L, o, &g);
  g.col_titles = labels;
  g.ncol_titles = ncol;
  g.row_labels = (const char *const *)rowlab;
  g.nrow_labels = nfr;
  figpath fp;
  const char *path = figure_path(L, o, &fp);
  sf_plot_info info;
  if (sf_plot_grid(path, items, ncol * nfr, &g, &info)) FAIL("plot.compare: %s", sf_last_error());
  arena_free(A);
  free(A);
  push_figure(L, o, path, &info, &fp);
  return 1;
}

/* sfwb.plot.colormap(name, u) -> r, g, b (0..255): the exact colours the figures use */
static int l_colormap(lua_State *L) {
  int c = sf_plot_cmap_index(luaL_optstring(L, 1, "viridis"));
  if (c < 0) return luaL_error(L, "%s", sf_last_error());
  uint8_t rgb[3];
  sf_plot_cmap_rgb(c, luaL_checknumber(L, 2), rgb);
  lua_pushinteger(L, rgb[0]);
  lua_pushinteger(L, rgb[1]);
  lua_pushinteger(L, rgb[2]);
  return 3;
}

/* sfwb.plot.pixel(path, x, y) -> r, g, b and sfwb.plot.size(path) -> w, h: read a PNG back (tests, notebooks) */
static cairo_surface_t *open_png(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  cairo_surface_t *s = cairo_image_surface_create_from_png(path);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(s);
    luaL_error(L, "plot: cannot read PNG %s", path);
  }
  return s;
}
static int l_pixel(lua_State *L) {
  cairo_surface_t *s = open_png(L);
  int x = (int)luaL_checkinteger(L, 2), y = (int)luaL_checkinteger(L, 3);
  int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
  if (x < 0 || y < 0 || x >= w || y >= h) {
    cairo_surface_destroy(s);
    return luaL_error(L, "plot.pixel: (%d, %d) outside the %dx%d image", x, y, w, h);
  }
  uint32_t v = *(uint32_t *)(cairo_image_surface_get_data(s) + (size_t)y * cairo_image_surface_get_stride(s) + 4 * x);
  cairo_surface_destroy(s);
  lua_pushinteger(L, (v >> 16) & 255);
  lua_pushinteger(L, (v >> 8) & 255);
  lua_pushinteger(L, v & 255);
  return 3;
}
static int l_size(lua_State *L) {
  cairo_surface_t *s = open_png(L);
  lua_pushinteger(L, cairo_image_surface_get_width(s));
  lua_pushinteger(L, cairo_image_surface_get_height(s));
  cairo_surface_destroy(s);
  return 2;
}

void sf_lua_register_plot(lua_State *L) {
  static const luaL_Reg fns[] = {{"heatmap", l_heatmap}, {"head_grid", l_head_grid}, {"mosaic", l_mosaic},
                                 {"lines", l_lines},     {"compare", l_compare},     {"colormap", l_colormap},
                                 {"pixel", l_pixel},     {"size", l_size},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  lua_setfield(L, -2, "plot");
}
