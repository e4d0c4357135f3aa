/* lua_fft.c — sfwb.fft: discrete Fourier transforms of tensors through FFTW (Debian libfftw3-dev), as
 * torch.fft: fft, ifft, rfft, irfft along one dim with n= (zero-pad / truncate) and norm= ("backward",
 * "ortho", "forward"), fftfreq / rfftfreq. Complex values are a trailing dim of 2 (re, im), the layout of
 * torch.view_as_real. Computed in f64 on the CPU; f64 in -> f64 out, any other float -> f32. */
#include <complex.h>
#include <fftw3.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "lua/lua_tensor.h"
#include "lua/lua_tensor_impl.h"

enum { K_FFT, K_IFFT, K_RFFT, K_IRFFT };
static const char *const kind_name[] = {"fft", "ifft", "rfft", "irfft"};

typedef struct {
  int dim;        /* 0-based logical dim (complex inputs: not counting the trailing 2) */
  long n;         /* signal length; -1 = from the input */
  int norm;       /* 0 backward, 1 ortho, 2 forward */
  int complex_in; /* the input carries a trailing (re, im) dim */
} fft_opts;


/* a contiguous f64 CPU copy with the logical dim `d` swapped to the last logical position */
static sf_tensor *prepare(sf_tensor *t, int d, int lnd) {
  sf_tensor *c = sf_to_device(t, sf_cpu());
  if (!c) return NULL;
  sf_tensor *f = sf_cast(c, SF_F64);
  sf_release(c);
  if (!f) return NULL;
  sf_tensor *s = d == lnd - 1 ? sf_retain(f) : sf_transpose(f, d, lnd - 1);
  sf_release(f);
  if (!s) return NULL;
  sf_tensor *g = sf_contiguous(s);
  sf_release(s);
  return g;
}

static int fft_call(lua_State *L, int kind) {
  sf_tensor *x = sf_lua_check_tensor(L, 1);
  fft_opts o = {.dim = -1, .n = -1, .norm = 0, .complex_in = kind == K_IFFT || kind == K_IRFFT};
  int lnd;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "complex");
    if (!lua_isnil(L, -1)) o.complex_in = lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, 2)) {
    return sf_lua_errorf(L, "sfwb.fft.%s: the second argument is an options table {dim=, n=, norm=}", kind_name[kind]);
  }
  if (kind == K_RFFT) o.complex_in = 0;
  if (!sf_dtype_is_float(x->dtype)) return sf_lua_errorf(L, "sfwb.fft.%s: needs a float tensor, got %s", kind_name[kind], sf_dtype_name(x->dtype));
  if (o.complex_in && (x->ndim < 2 || x->shape[x->ndim - 1] != 2)) {
    char b[128];
    return sf_lua_errorf(L, "sfwb.fft.%s: a complex input has a trailing dim of 2 (re, im), got shape %s", kind_name[kind],
                sf_shape_str(x, b, sizeof b));
  }
  lnd = x->ndim - (o.complex_in ? 1 : 0);
  if (lnd < 1) return sf_lua_errorf(L, "sfwb.fft.%s: needs at least one dim to transform", kind_name[kind]);
  long d = -1;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "dim");
    if (!lua_isnil(L, -1)) d = (long)luaL_checkinteger(L, -1);
    lua_getfield(L, 2, "n");
    if (!lua_isnil(L, -1)) o.n = (long)luaL_checkinteger(L, -1);
    lua_getfield(L, 2, "norm");
    const char *nm = lua_isnil(L, -1) ? "backward" : luaL_checkstring(L, -1);
    if (!strcmp(nm, "backward")) o.norm = 0;
    else if (!strcmp(nm, "ortho")) o.norm = 1;
    else if (!strcmp(nm, "forward")) o.norm = 2;
    else return sf_lua_errorf(L, "sfwb.fft.%s: norm must be \"backward\", \"ortho\" or \"forward\", got \"%s\"", kind_name[kind], nm);
    lua_pop(L, 3);
  }
  /* dims are 1-based as everywhere in sfwb; negative count from the end */
  if (d == 0 || d > lnd || d < -lnd) return sf_lua_errorf(L, "sfwb.fft.%s: dim %ld is out of range for %d dims", kind_name[kind], d, lnd);
  o.dim = (int)(d > 0 ? d - 1 : lnd + d);
  long len = (long)x->shape[o.dim];
  long n = o.n > 0 ? o.n : (kind == K_IRFFT ? 2 * (len - 1) : len);
  if (o.n == 0 || o.n < -1 || n < 1) return sf_lua_errorf(L, "sfwb.fft.%s: invalid signal length n=%ld", kind_name[kind], o.n > 0 ? o.n : n);

  sf_tensor *p = prepare(x, o.dim, lnd);
  if (!p) return sf_lua_errorf(L, "sfwb.fft.%s: %s", kind_name[kind], sf_last_error());
  int64_t rows = 1;
  for (int i = 0; i < lnd - 1; i++) rows *= p->shape[i];
  const double *src = sf_data_ptr(p);
  int out_complex = kind != K_IRFFT;
  long in_len = kind == K_IRFFT ? n / 2 + 1 : n;          /* entries the transform reads per row */
  long out_len = kind == K_RFFT ? n / 2 + 1 : n;           /* entries it writes */
  size_t in_elems = (size_t)rows * in_len, out_elems = (size_t)rows * out_len;
  fftw_complex *cin = NULL, *cout = NULL;
  double *rin = NULL, *rout = NULL;
  int in_is_complex = kind != K_RFFT;
  if (in_is_complex) cin = fftw_alloc_complex(in_elems ? in_elems : 1);
  else rin = fftw_alloc_real(in_elems ? in_elems : 1);
  if (out_complex) cout = fftw_alloc_complex(out_elems ? out_elems : 1);
  else rout = fftw_alloc_real(out_elems ? out_elems : 1);
  if ((in_is_complex ? !cin : !rin) || (out_complex ? !cout : !rout)) {
    fftw_free(cin), fftw_free(rin), fftw_free(cout), fftw_free(rout);
    sf_release(p);
    return sf_lua_errorf(L, "sfwb.fft.%s: out of memory", kind_name[kind]);
  }
  /* copy rows in, zero-padded or truncated to the length the transform reads */
  for (int64_t r = 0; r < rows; r++)
    for (long i = 0; i < in_len; i++) {
      int inside = i < len;
      if (in_is_complex) {
        double re = 0, im = 0;
        if (inside) {
          if (o.complex_in) re = src[(r * len + i) * 2], im = src[(r * len + i) * 2 + 1];
          else re = src[r * len + i];
        }
        cin[r * in_len + i] = re + I * im;
      } else {
        rin[r * in_len + i] = inside ? src[r * len + i] : 0.0;
      }
    }
  sf_release(p);
  int nn = (int)n;
  fftw_plan plan;
  if (kind == K_RFFT) plan = fftw_plan_many_dft_r2c(1, &nn, (int)rows, rin, NULL, 1, (int)in_len, cout, NULL, 1, (int)out_len, FFTW_ESTIMATE);
  else if (kind == K_IRFFT) plan = fftw_plan_many_dft_c2r(1, &nn, (int)rows, cin, NULL, 1, (int)in_len, rout, NULL, 1, (int)out_len, FFTW_ESTIMATE);
  else plan = fftw_plan_many_dft(1, &nn, (int)rows, cin, NULL, 1, (int)in_len, cout, NULL, 1, (int)out_len,
                                 kind == K_FFT ? FFTW_FORWARD : FFTW_BACKWARD, FFTW_ESTIMATE);
  if (!plan) {
    fftw_free(cin), fftw_free(rin), fftw_free(cout), fftw_free(rout);
    return sf_lua_errorf(L, "sfwb.fft.%s: FFTW could not plan a transform of length %ld", kind_name[kind], n);
  }
  fftw_execute(plan);
  fftw_destroy_plan(plan);
  int inverse = kind == K_IFFT || kind == K_IRFFT;
  double scale = o.norm == 1 ? 1.0 / sqrt((double)n) : (o.norm == 0) == inverse ? 1.0 / (double)n : 1.0;

  /* the result with the transformed dim back in place: shape of p with the last logical dim = out_len */
  int ond = lnd + (out_complex ? 1 : 0);
  int64_t shape[16];
  if (ond > 16) return sf_lua_errorf(L, "sfwb.fft: too many dims");
  for (int i = 0; i < lnd; i++) shape[i] = x->shape[i];
  shape[o.dim] = x->shape[lnd - 1]; /* prepare() swapped o.dim and the last logical dim */
  shape[lnd - 1] = out_len;
  if (out_complex) shape[lnd] = 2;
  sf_tensor *res = sf_empty(ond, shape, SF_F64, sf_cpu());
  if (!res) {
    fftw_free(cin), fftw_free(rin), fftw_free(cout), fftw_free(rout);
    return sf_lua_errorf(L, "sfwb.fft.%s: %s", kind_name[kind], sf_last_error());
  }
  double *dst = sf_data_ptr(res);
  if (out_complex)
    for (size_t i = 0; i < out_elems; i++) dst[2 * i] = creal(cout[i]) * scale, dst[2 * i + 1] = cimag(cout[i]) * scale;
  else
    for (size_t i = 0; i < out_elems; i++) dst[i] = rout[i] * scale;
  fftw_free(cin), fftw_free(rin), fftw_free(cout), fftw_free(rout);
  sf_tensor *back = o.dim == lnd - 1 ? sf_retain(res) : sf_transpose(res, o.dim, lnd - 1);
  sf_release(res);
  if (!back) return sf_lua_errorf(L, "sfwb.fft.%s: %s", kind_name[kind], sf_last_error());
  sf_tensor *cont = sf_contiguous(back);
  sf_release(back);
  if (!cont) return sf_lua_errorf(L, "sfwb.fft.%s: %s", kind_name[kind], sf_last_error());
  sf_tensor *out = x->dtype == SF_F64 ? sf_retain(cont) : sf_cast(cont, SF_F32);
  sf_release(cont);
  sf_lua_push_tensor(L, out);
  return 1;
}

static int l_fft(lua_State *L) { return fft_call(L, K_FFT); }
static int l_ifft(lua_State *L) { return fft_call(L, K_IFFT); }
static int l_rfft(lua_State *L) { return fft_call(L, K_RFFT); }
static int l_irfft(lua_State *L) { return fft_call(L, K_IRFFT); }

/* fftfreq(n, d=1) / rfftfreq(n, d=1): the sample frequencies, f32 as torch's default */
static int freq(lua_State *L, int real) {
  lua_Integer n = luaL_checkinteger(L, 1);
  double dd = luaL_optnumber(L, 2, 1.0);
  if (n < 1) return sf_lua_errorf(L, "sfwb.fft.%s: n must be >= 1, got %lld", real ? "rfftfreq" : "fftfreq", (long long)n);
  if (!(dd != 0)) return sf_lua_errorf(L, "sfwb.fft: the sample spacing d must not be 0");
  int64_t m = real ? n / 2 + 1 : n;
  sf_tensor *t = sf_empty(1, &m, SF_F32, sf_cpu());
  if (!t) return sf_lua_errorf(L, "sfwb.fft: %s", sf_last_error());
  float *p = sf_data_ptr(t);
  for (int64_t i = 0; i < m; i++) {
    int64_t k = real || i < (n + 1) / 2 ? i : i - n;
    p[i] = (float)((double)k / ((double)n * dd));
  }
  sf_lua_push_tensor(L, t);
  return 1;
}
static int l_fftfreq(lua_State *L) { return freq(L, 0); }
static int l_rfftfreq(lua_State *L) { return freq(L, 1); }

void sf_lua_register_fft(lua_State *L) {
  static const luaL_Reg fns[] = {{"fft", l_fft},     {"ifft", l_ifft},         {"rfft", l_rfft},
                                 {"irfft", l_irfft}, {"fftfreq", l_fftfreq}, {"rfftfreq", l_rfftfreq},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  lua_setfield(L, -2, "fft");
}
