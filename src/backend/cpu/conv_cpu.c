/* conv_cpu.c — CPU convolutions: an im2col + SGEMM kernel over frame lists (used directly by the VAE)
 * and the tensor-level conv2d/conv3d of the `conv` op table. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/conv_ops.h"
#include "core/error.h"
#include "core/ops.h"
#include "models/enc_kernels.h" /* SF_PAR_MIN */

/* columns are built in tiles of whole output rows so the buffer stays under this many floats */
#define SF_CONV_TILE_FLOATS ((size_t)16 << 20)

/* columns of one 2-D frame for output rows [r0, r0 + nr): row k = (ci, dy, dx), nr * Wo columns */
static void im2col2d(const sf_conv_geom *g, const float *f, int H, int W, int r0, int nr, int Wo, float *col) {
  int64_t HW = (int64_t)H * W, TP = (int64_t)nr * Wo, K2 = (int64_t)g->cin * g->kh * g->kw;
  for (int64_t k = 0; k < K2; k++) {
    int dx = (int)(k % g->kw), dy = (int)((k / g->kw) % g->kh), ci = (int)(k / g->kw / g->kh);
    const float *src = f + ci * HW;
    float *dst = col + k * TP;
    for (int oy = 0; oy < nr; oy++) {
      int iy = (r0 + oy) * g->sh + dy - g->pad_top;
      float *d = dst + (int64_t)oy * Wo;
      if (iy < 0 || iy >= H) {
        memset(d, 0, sizeof(float) * Wo);
        continue;
      }
      const float *srow = src + (int64_t)iy * W;
      for (int ox = 0; ox < Wo; ox++) {
        int ix = ox * g->sw + dx - g->pad_left;
        d[ox] = (ix >= 0 && ix < W) ? srow[ix] : 0.0f;
      }
    }
  }
}

/* Temporal kernels with stride 1: each input frame is unrolled once and multiplied by the weight slice of
 * every tap that reads it (instead of once per output frame and tap), and zero frames (causal padding)
 * cost nothing. Same sums as the plain path, accumulated tap by tap. */
static int conv_frames_reuse(const sf_conv_geom *g, const float *const *frames, int nin, int H, int W,
                             const float *w, const float *b, float *out, int To, int Ho, int Wo) {
  int64_t P = (int64_t)Ho * Wo, K2 = (int64_t)g->cin * g->kh * g->kw, khw = (int64_t)g->kh * g->kw;
  size_t per_row = (size_t)K2 * Wo;
  int rows = (int)(SF_CONV_TILE_FLOATS / (per_row ? per_row : 1));
  if (rows < 1) rows = 1;
  if (rows > Ho) rows = Ho;
  float *wr = malloc(sizeof(float) * g->kt * g->cout * K2), *col = malloc(sizeof(float) * per_row * rows);
  if (!wr || !col) {
    free(wr), free(col);
    return sf_error("conv: out of memory for a %lld x %d column tile", (long long)K2, Wo * rows);
  }
  for (int co = 0; co < g->cout; co++)
    for (int ci = 0; ci < g->cin; ci++)
      for (int dt = 0; dt < g->kt; dt++)
        memcpy(wr + ((int64_t)dt * g->cout + co) * K2 + ci * khw, w + (((int64_t)co * g->cin + ci) * g->kt + dt) * khw,
               sizeof(float) * khw);
  memset(out, 0, sizeof(float) * To * g->cout * P);
  for (int r0 = 0; r0 < Ho; r0 += rows) {
    int nr = Ho - r0 < rows ? Ho - r0 : rows;
    int64_t TP = (int64_t)nr * Wo;
    for (int i = 0; i < nin; i++) {
      if (!frames[i]) continue;
      int lo = i - g->kt + 1 > 0 ? i - g->kt + 1 : 0, hi = i < To - 1 ? i : To - 1;
      if (lo > hi) continue;
      im2col2d(g, frames[i], H, W, r0, nr, Wo, col);
      for (int to = lo; to <= hi; to++) {
        int dt = i - to;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, (int)TP, (int)K2, 1.0f,
                    wr + (int64_t)dt * g->cout * K2, (int)K2, col, (int)TP, 1.0f,
                    out + (int64_t)to * g->cout * P + (int64_t)r0 * Wo, (int)P);
      }
    }
  }
  if (b)
    for (int to = 0; to < To; to++)
      for (int c = 0; c < g->cout; c++) {
        float *o = out + ((int64_t)to * g->cout + c) * P;
        for (int64_t p = 0; p < P; p++) o[p] += b[c];
      }
  free(wr), free(col);
  return 0;
}

int sf_conv3d_frames_f32(const sf_conv_geom *g, const float *const *frames, int nin, int H, int W, const float *w,
                         const float *b, float *out) {
  int Ho = sf_conv_out_h(g, H), Wo = sf_conv_out_w(g, W), To = sf_conv_out_t(g, nin);
  if (Ho <= 0 || Wo <= 0 || To <= 0)
    return sf_error("conv: input %d frames of %dx%d is too small for kernel %dx%dx%d", nin, H, W, g->kt, g->kh, g->kw);
  if (g->kt > 1 && g->st == 1) return conv_frames_reuse(g, frames, nin, H, W, w, b, out, To, Ho, Wo);
  int64_t P = (int64_t)Ho * Wo, HW = (int64_t)H * W;
  int64_t K = (int64_t)g->cin * g->kt * g->kh * g->kw;
  int pointwise = g->kt == 1 && g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && !g->pad_top &&
                  !g->pad_bottom && !g->pad_left && !g->pad_right;
  float *col = NULL;
  int rows_per_tile = Ho;
  if (!pointwise) {
    size_t per_row = (size_t)K * Wo;
    rows_per_tile = (int)(SF_CONV_TILE_FLOATS / (per_row ? per_row : 1));
    if (rows_per_tile < 1) rows_per_tile = 1;
    if (rows_per_tile > Ho) rows_per_tile = Ho;
    col = malloc(sizeof(float) * per_row * rows_per_tile);
    if (!col) return sf_error("conv: out of memory for a %lld x %d column tile", (long long)K, Wo * rows_per_tile);
  }
  for (int to = 0; to < To; to++) {
    float *o = out + (int64_t)to * g->cout * P;
    if (pointwise) {
      const float *f = frames[to * g->st];
      if (f) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, (int)P, g->cin, 1.0f, w, g->cin, f, (int)HW,
                    0.0f, o, (int)P);
      } else {
        memset(o, 0, sizeof(float) * g->cout * P);
      }
    } else {
      for (int r0 = 0; r0 < Ho; r0 += rows_per_tile) {
        int nr = Ho - r0 < rows_per_tile ? Ho - r0 : rows_per_tile;
        int64_t TP = (int64_t)nr * Wo;
#pragma omp parallel for schedule(static) if((int64_t)(K * TP) > SF_PAR_MIN)
        for (int64_t k = 0; k < K; k++) {
          int dx = (int)(k % g->kw), dy = (int)((k / g->kw) % g->kh), dt = (int)((k / g->kw / g->kh) % g->kt);
          int ci = (int)(k / g->kw / g->kh / g->kt);
          const float *f = frames[to * g->st + dt];
          float *dst = col + k * TP;
          if (!f) {
            memset(dst, 0, sizeof(float) * TP);
            continue;
          }
          const float *src = f + ci * HW;
          for (int oy = 0; oy < nr; oy++) {
            int iy = (r0 + oy) * g->sh + dy - g->pad_top;
            float *d = dst + (int64_t)oy * Wo;
            if (iy < 0 || iy >= H) {
              memset(d, 0, sizeof(float) * Wo);
              continue;
            }
            const float *srow = src + (int64_t)iy * W;
            if (g->sw == 1) {
              int off = dx - g->pad_left;
              for (int ox = 0; ox < Wo; ox++) {
                int ix = ox + off;
                d[ox] = (ix >= 0 && ix < W) ? srow[ix] : 0.0f;
              }
            } else {
              for (int ox = 0; ox < Wo; ox++) {
                int ix = ox * g->sw + dx - g->pad_left;
                d[ox] = (ix >= 0 && ix < W) ? srow[ix] : 0.0f;
              }
            }
          }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, (int)TP, (int)K, 1.0f, w, (int)K, col,
                    (int)TP, 0.0f, o + (int64_t)r0 * Wo, (int)P);
      }
    }
    if (b) {
#pragma omp parallel for schedule(static) if((int64_t)((int64_t)g->cout * P) > SF_PAR_MIN)
      for (int c = 0; c < g->cout; c++)
        for (int64_t p = 0; p < P; p++) o[c * P + p] += b[c];
    }
  }
  free(col);
  return 0;
}

/* ---- tensor level ---- */
static sf_tensor *f32_contig(sf_tensor *t) {
  sf_tensor *a = sf_cast(t, SF_F32);
  sf_tensor *c = a ? sf_contiguous(a) : NULL;
  sf_release(a);
  return c;
}

static sf_tensor *conv_nd(int nd, sf_tensor *x, sf_tensor *w, sf_tensor *b, const int *stride, const int *pad) {
  char bx[64], bw[64];
  if (x->ndim != nd + 2 || w->ndim != nd + 2 || x->shape[1] != w->shape[1])
    { sf_error("conv%dd: input %s and weight %s do not match", nd, sf_shape_str(x, bx, sizeof bx), sf_shape_str(w, bw, sizeof bw)); return NULL; }
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) { sf_error("conv%dd: bias must be [%lld]", nd, (long long)w->shape[0]); return NULL; }
  sf_conv_geom g = {0};
  g.cin = (int)w->shape[1], g.cout = (int)w->shape[0];
  g.kt = nd == 3 ? (int)w->shape[2] : 1;
  g.kh = (int)w->shape[nd], g.kw = (int)w->shape[nd + 1];
  g.st = nd == 3 ? stride[0] : 1;
  g.sh = stride[nd - 2], g.sw = stride[nd - 1];
  int pt = nd == 3 ? pad[0] : 0;
  g.pad_top = g.pad_bottom = pad[nd - 2];
  g.pad_left = g.pad_right = pad[nd - 1];
  if (g.st < 1 || g.sh < 1 || g.sw < 1 || pt < 0 || g.pad_top < 0 || g.pad_left < 0) { sf_error("conv%dd: strides must be >= 1 and padding >= 0", nd); return NULL; }
  int64_t N = x->shape[0], T = nd == 3 ? x->shape[2] : 1, H = x->shape[nd], W = x->shape[nd + 1];
  int nin = (int)(T + 2 * pt);
  int To = sf_conv_out_t(&g, nin), Ho = sf_conv_out_h(&g, (int)H), Wo = sf_conv_out_w(&g, (int)W);
  if (To <= 0 || Ho <= 0 || Wo <= 0) { sf_error("conv%dd: input %s is smaller than the kernel", nd, sf_shape_str(x, bx, sizeof bx)); return NULL; }
  sf_tensor *xc = f32_contig(x), *wc = xc ? f32_contig(w) : NULL, *bc = (wc && b) ? f32_contig(b) : NULL;
  /* the kernel wants frame-major [T][C][H][W]; torch layout is [C][T][H][W]: transpose per sample */
  int64_t HW = H * W, cin = g.cin;
  int64_t nfr = T * cin * HW;
  float *fr = malloc(sizeof(float) * (size_t)(nfr > 0 ? nfr : 1));
  float *ob = malloc(sizeof(float) * (size_t)To * g.cout * Ho * Wo);
  const float **list = malloc(sizeof(float *) * nin);
  int64_t oshape[5] = {N, g.cout, To, Ho, Wo};
  if (nd == 2) oshape[2] = Ho, oshape[3] = Wo;
  sf_tensor *out = (xc && wc && (!b || bc) && fr && ob && list) ? sf_empty(nd + 2, oshape, SF_F32, sf_cpu()) : NULL;
  if (!out) { if (!(fr && ob && list)) sf_error("conv%dd: out of memory", nd); goto done; }
  for (int64_t n = 0; n < N; n++) {
    const float *xs = (const float *)sf_data_ptr(xc) + n * cin * T * HW;
    for (int64_t c = 0; c < cin; c++)
      for (int64_t t = 0; t < T; t++) memcpy(fr + (t * cin + c) * HW, xs + (c * T + t) * HW, sizeof(float) * HW);
    for (int i = 0; i < nin; i++) list[i] = (i < pt || i >= pt + T) ? NULL : fr + (i - pt) * cin * HW;
    if (sf_conv3d_frames_f32(&g, list, nin, (int)H, (int)W, sf_data_ptr(wc), bc ? sf_data_ptr(bc) : NULL, ob)) {
      sf_release(out);
      out = NULL;
      goto done;
    }
    float *os = (float *)sf_data_ptr(out) + n * g.cout * To * Ho * Wo;
    int64_t P = (int64_t)Ho * Wo;
    for (int64_t c = 0; c < g.cout; c++)
      for (int64_t t = 0; t < To; t++) memcpy(os + (c * To + t) * P, ob + (t * g.cout + c) * P, sizeof(float) * P);
  }
done:
  free(fr), free(ob), free(list);
  sf_release(xc), sf_release(wc), sf_release(bc);
  return out;
}

static sf_tensor *cpu_conv3d(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[3], const int pad[3]) {
  return conv_nd(3, x, w, b, stride, pad);
}
static sf_tensor *cpu_conv2d(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[2], const int pad[2]) {
  return conv_nd(2, x, w, b, stride, pad);
}

const sf_conv_ops sf_cpu_conv_ops = {cpu_conv3d, cpu_conv2d};

const sf_conv_ops *sf_conv_ops_for(const sf_tensor *x) {
  sf_backend *be = sf_backend_of(x);
  if (!be) return NULL;
  if (be->conv) return be->conv;
  if (sf_device_of(x).type == SF_DEV_CPU) return &sf_cpu_conv_ops;
  sf_error("conv: the %s backend has no convolution ops", be->name);
  return NULL;
}

sf_tensor *sf_conv3d(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[3], const int pad[3]) {
  if (!sf_device_eq(sf_device_of(x), sf_device_of(w)) || (b && !sf_device_eq(sf_device_of(x), sf_device_of(b)))) {
    sf_error("conv3d: input, weight and bias must be on one device");
    return NULL;
  }
  const sf_conv_ops *ops = sf_conv_ops_for(x);
  return ops ? ops->conv3d(x, w, b, stride, pad) : NULL;
}

sf_tensor *sf_conv2d(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[2], const int pad[2]) {
  if (!sf_device_eq(sf_device_of(x), sf_device_of(w)) || (b && !sf_device_eq(sf_device_of(x), sf_device_of(b)))) {
    sf_error("conv2d: input, weight and bias must be on one device");
    return NULL;
  }
  const sf_conv_ops *ops = sf_conv_ops_for(x);
  return ops ? ops->conv2d(x, w, b, stride, pad) : NULL;
}
