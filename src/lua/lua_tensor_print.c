/* lua_tensor_print.c — tostring(t) with torch-like formatting, t:item() and t:totable(). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "lua/lua_tensor_impl.h"

#define EDGE 3          /* elements shown at each end of a summarized dim (torch's edgeitems) */
#define THRESHOLD 1000  /* tensors with more elements are summarized (torch's threshold) */
#define LINE_WIDTH 80

/* a growable string: the excerpt is built without Lua calls so nothing can raise halfway */
typedef struct {
  char *s;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = (char *)realloc(b->s, cap);
    if (!p) { b->oom = 1; return; }
    b->s = p;
    b->cap = cap;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_pad(sbuf *b, int n) { for (int i = 0; i < n; i++) sb_put(b, " ", 1); }
static size_t sb_col(const sbuf *b) {
  size_t i = b->n;
  while (i > 0 && b->s[i - 1] != '\n') i--;
  return b->n - i;
}

typedef struct {
  const sf_tensor *t;
  int summarize;
  /* float format */
  int is_float, int_mode, sci;
  double max_abs, min_abs;
  int width;
} fmt_state;

static int fmt_elem(const fmt_state *f, int64_t off, char *buf, size_t n) {
  const sf_tensor *t = f->t;
  if (t->dtype == SF_BOOL) return snprintf(buf, n, "%s", sf_lua_elem_int(t, off) ? "true" : "false");
  if (!f->is_float) return snprintf(buf, n, "%lld", (long long)sf_lua_elem_int(t, off));
  double v = sf_lua_elem_double(t, off);
  if (isnan(v)) return snprintf(buf, n, "nan");
  if (isinf(v)) return snprintf(buf, n, v > 0 ? "inf" : "-inf");
  if (f->sci) return snprintf(buf, n, "%.4e", v);
  if (f->int_mode) return snprintf(buf, n, "%.0f.", v);
  return snprintf(buf, n, "%.4f", v);
}

/* calls fn on every shown element (in order), -1 marks an elided run in dim d */
typedef void (*visit_fn)(fmt_state *f, int64_t off);
static void visit(fmt_state *f, int d, int64_t off, visit_fn fn) {
  const sf_tensor *t = f->t;
  if (d == t->ndim) { fn(f, off); return; }
  int64_t n = t->shape[d];
  for (int64_t i = 0; i < n; i++) {
    if (f->summarize && n > 2 * EDGE && i == EDGE) i = n - EDGE;
    visit(f, d + 1, off + i * t->stride[d], fn);
  }
}

static void stat_elem(fmt_state *f, int64_t off) {
  if (!f->is_float) return;
  double v = sf_lua_elem_double(f->t, off);
  if (!isfinite(v)) return;
  double a = fabs(v);
  if (a > f->max_abs) f->max_abs = a;
  if (a > 0 && a < f->min_abs) f->min_abs = a;
  if (v != floor(v)) f->int_mode = 0;
}

static void width_elem(fmt_state *f, int64_t off) {
  char buf[64];
  int w = fmt_elem(f, off, buf, sizeof buf);
  if (w > f->width) f->width = w;
}

static void render(fmt_state *f, sbuf *b, int d, int64_t off) {
  const sf_tensor *t = f->t;
  char buf[64];
  if (d == t->ndim) {
    int w = fmt_elem(f, off, buf, sizeof buf);
    sb_pad(b, f->width - w);
    sb_str(b, buf);
    return;
  }
  sb_str(b, "[");
  int64_t n = t->shape[d];
  for (int64_t i = 0; i < n; i++) {
    int elide = f->summarize && n > 2 * EDGE && i == EDGE;
    if (i > 0) {
      if (d == t->ndim - 1) {
        /* wrap long rows under the first element of the row */
        if (sb_col(b) + 2 + (size_t)(elide ? 3 : f->width) + 1 > LINE_WIDTH) {
          sb_str(b, ",\n");
          sb_pad(b, d + 1);
        } else {
          sb_str(b, ", ");
        }
      } else {
        sb_str(b, ",");
        for (int k = 0; k < t->ndim - 1 - d; k++) sb_str(b, "\n");
        sb_pad(b, d + 1);
      }
    }
    if (elide) {
      sb_str(b, "...");
      i = n - EDGE - 1;
      continue;
    }
    render(f, b, d + 1, off + i * t->stride[d]);
  }
  sb_str(b, "]");
}

int sf_lua_tensor_tostring(lua_State *L) {
  sf_lua_tensor_ud *u = (sf_lua_tensor_ud *)luaL_checkudata(L, 1, SF_TENSOR_MT);
  if (!u->t) {
    lua_pushstring(L, "[sfwb.Tensor (freed)]");
    return 1;
  }
  sf_tensor *t = u->t;
  char shape[128], dev[32];
  sf_lua_shape_str(t, shape, sizeof shape);
  sf_device_str(sf_device_of(t), dev, sizeof dev);
  sf_tensor *c = sf_lua_push_cpu_copy(L, t); /* a view: strides are kept */
  fmt_state f;
  memset(&f, 0, sizeof f);
  f.t = c;
  f.summarize = sf_numel(c) > THRESHOLD;
  f.is_float = sf_dtype_is_float(c->dtype);
  f.int_mode = 1;
  f.min_abs = INFINITY;
  if (sf_numel(c) > 0) {
    visit(&f, 0, c->offset, stat_elem);
    if (f.is_float && f.max_abs > 0 &&
        (f.max_abs >= 1e8 || (!f.int_mode && (f.min_abs < 1e-4 || f.max_abs / f.min_abs > 1e5))))
      f.sci = 1;
    if (f.int_mode && f.max_abs >= 1e8) f.int_mode = 0;
    visit(&f, 0, c->offset, width_elem);
  }
  sbuf b = {0};
  if (sf_numel(c) == 0) sb_str(&b, "[]");
  else render(&f, &b, 0, c->offset);
  char foot[256];
  snprintf(foot, sizeof foot, "\n[sfwb.Tensor %s %s %s%s]", sf_dtype_name(t->dtype), shape, dev,
           t->requires_grad ? ", requires_grad" : "");
  sb_str(&b, foot);
  if (b.oom) {
    free(b.s);
    return sf_lua_errorf(L, "tostring: out of memory");
  }
  lua_pushlstring(L, b.s, b.n);
  free(b.s);
  return 1;
}

/* ---- item / totable ---- */

static int m_item(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  if (sf_numel(t) != 1) {
    char s[96];
    return sf_lua_errorf(L, "item: a Tensor with %lld elements (shape %s) cannot be converted to a number",
                      (long long)sf_numel(t), sf_lua_shape_str(t, s, sizeof s));
  }
  sf_tensor *c = sf_lua_push_cpu_copy(L, t);
  sf_lua_push_elem(L, c, c->offset);
  return 1;
}

static void push_nested(lua_State *L, const sf_tensor *t, int d, int64_t off) {
  if (d == t->ndim) {
    sf_lua_push_elem(L, t, off);
    return;
  }
  luaL_checkstack(L, 3, "totable");
  int64_t n = t->shape[d];
  lua_createtable(L, n > 1 << 24 ? 0 : (int)n, 0);
  for (int64_t i = 0; i < n; i++) {
    push_nested(L, t, d + 1, off + i * t->stride[d]);
    lua_rawseti(L, -2, (lua_Integer)(i + 1));
  }
}

static int m_totable(lua_State *L) {
  sf_tensor *t = sf_lua_check_tensor(L, 1);
  sf_tensor *c = sf_lua_push_cpu_copy(L, t);
  push_nested(L, c, 0, c->offset);
  return 1;
}

static const luaL_Reg print_methods[] = {
    {"item", m_item}, {"totable", m_totable}, {"tolist", m_totable}, {NULL, NULL}};

void sf_lua_tensor_register_print_methods(lua_State *L) { luaL_setfuncs(L, print_methods, 0); }
