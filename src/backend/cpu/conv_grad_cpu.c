/* conv_grad_cpu.c — convolution backward on the CPU (input, weight and bias gradients of
 * torch.nn.functional.conv3d/conv2d with zero padding and strides), and the f64 forward that gradient
 * checks difference. Both work per (sample, output frame, temporal tap): the input frame the tap reads
 * is unrolled (im2col, rows (ci, dy, dx)) and multiplied in f64 (DGEMM): a training step of the tiny
 * models this serves is dominated by the forward, and f64 keeps the gradient free of accumulation-order
 * error. f32 tensors are widened on the way in and the gradients rounded to f32 once on the way out. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backend/conv_ops.h"
#include "core/error.h"
#include "core/ops.h"

typedef struct {
  int64_t N, cin, cout, T, H, W, kt, kh, kw, st, sh, sw, pt, ph, pw, To, Ho, Wo;
} conv_dims;

static int dims_of(int nd, const sf_tensor *x, const sf_tensor *w, const int *stride, const int *pad, conv_dims *d,
                   const char *what) {
  char bx[64], bw[64];
  if ((nd != 2 && nd != 3) || x->ndim != nd + 2 || w->ndim != nd + 2 || x->shape[1] != w->shape[1]) {
    sf_error("%s: input %s and weight %s do not match", what, sf_shape_str(x, bx, sizeof bx), sf_shape_str(w, bw, sizeof bw));
    return -1;
  }
  memset(d, 0, sizeof *d);
  d->N = x->shape[0], d->cin = w->shape[1], d->cout = w->shape[0];
  d->T = nd == 3 ? x->shape[2] : 1, d->kt = nd == 3 ? w->shape[2] : 1;
  d->H = x->shape[nd], d->W = x->shape[nd + 1], d->kh = w->shape[nd], d->kw = w->shape[nd + 1];
  d->st = nd == 3 ? stride[0] : 1, d->sh = stride[nd - 2], d->sw = stride[nd - 1];
  d->pt = nd == 3 ? pad[0] : 0, d->ph = pad[nd - 2], d->pw = pad[nd - 1];
  if (d->st < 1 || d->sh < 1 || d->sw < 1 || d->pt < 0 || d->ph < 0 || d->pw < 0) {
    sf_error("%s: strides must be >= 1 and padding >= 0", what);
    return -1;
  }
  d->To = (d->T + 2 * d->pt - d->kt) / d->st + 1;
  d->Ho = (d->H + 2 * d->ph - d->kh) / d->sh + 1;
  d->Wo = (d->W + 2 * d->pw - d->kw) / d->sw + 1;
  if (d->T + 2 * d->pt < d->kt || d->H + 2 * d->ph < d->kh || d->W + 2 * d->pw < d->kw) {
    sf_error("%s: input %s is smaller than the kernel", what, sf_shape_str(x, bx, sizeof bx));
    return -1;
  }
  return 0;
}

/* rows (ci, dy, dx) x columns (oy, ox) of input frame ti of one sample; x0 points at [ci=0, t=0] */
static void im2col(const conv_dims *d, const double *x0, int64_t ti, double *col) {
  const int64_t P = d->Ho * d->Wo, HW = d->H * d->W;
  for (int64_t ci = 0; ci < d->cin; ci++) {
    const double *plane = x0 + (ci * d->T + ti) * HW;
    for (int64_t dy = 0; dy < d->kh; dy++)
      for (int64_t dx = 0; dx < d->kw; dx++) {
        double *c = col + ((ci * d->kh + dy) * d->kw + dx) * P;
        for (int64_t oy = 0; oy < d->Ho; oy++) {
          int64_t iy = oy * d->sh + dy - d->ph;
          for (int64_t ox = 0; ox < d->Wo; ox++) {
            int64_t ix = ox * d->sw + dx - d->pw;
            c[oy * d->Wo + ox] = (iy >= 0 && iy < d->H && ix >= 0 && ix < d->W) ? plane[iy * d->W + ix] : 0.0;
          }
        }
      }
  }
}

/* the transpose of im2col: adds the columns back into input frame ti */
static void col2im_add(const conv_dims *d, const double *col, int64_t ti, double *g0) {
  const int64_t P = d->Ho * d->Wo, HW = d->H * d->W;
  for (int64_t ci = 0; ci < d->cin; ci++) {
    double *plane = g0 + (ci * d->T + ti) * HW;
    for (int64_t dy = 0; dy < d->kh; dy++)
      for (int64_t dx = 0; dx < d->kw; dx++) {
        const double *c = col + ((ci * d->kh + dy) * d->kw + dx) * P;
        for (int64_t oy = 0; oy < d->Ho; oy++) {
          int64_t iy = oy * d->sh + dy - d->ph;
          if (iy < 0 || iy >= d->H) continue;
          for (int64_t ox = 0; ox < d->Wo; ox++) {
            int64_t ix = ox * d->sw + dx - d->pw;
            if (ix >= 0 && ix < d->W) plane[iy * d->W + ix] += c[oy * d->Wo + ox];
          }
        }
      }
  }
}

/* a contiguous f64 copy (new reference) */
static sf_tensor *f64_of(sf_tensor *t) {
  sf_tensor *a = sf_cast(t, SF_F64);
  sf_tensor *c = a ? sf_contiguous(a) : NULL;
  sf_release(a);
  return c;
}

/* weights [cout, cin, kt, kh, kw] <-> per-tap matrices [kt][cout][cin * kh * kw] */
static void weights_by_tap(const conv_dims *d, const double *w, double *wr, int to_taps) {
  const int64_t khw = d->kh * d->kw, K2 = d->cin * khw;
  for (int64_t co = 0; co < d->cout; co++)
    for (int64_t ci = 0; ci < d->cin; ci++)
      for (int64_t dt = 0; dt < d->kt; dt++) {
        double *a = wr + (dt * d->cout + co) * K2 + ci * khw;
        double *b = (double *)w + ((co * d->cin + ci) * d->kt + dt) * khw;
        if (to_taps) memcpy(a, b, sizeof(double) * (size_t)khw);
        else memcpy(b, a, sizeof(double) * (size_t)khw);
      }
}

sf_tensor *sf_conv_f64_cpu(int nd, sf_tensor *x, sf_tensor *w, sf_tensor *b, const int *stride, const int *pad) {
  conv_dims d;
  if (dims_of(nd, x, w, stride, pad, &d, nd == 3 ? "conv3d" : "conv2d")) return NULL;
  if (b && (b->ndim != 1 || b->shape[0] != d.cout)) {
    sf_error("conv%dd: bias must be [%lld]", nd, (long long)d.cout);
    return NULL;
  }
  const int64_t P = d.Ho * d.Wo, K2 = d.cin * d.kh * d.kw;
  int64_t oshape[5] = {d.N, d.cout, d.To, d.Ho, d.Wo};
  if (nd == 2) oshape[2] = d.Ho, oshape[3] = d.Wo;
  sf_tensor *xc = f64_of(x), *wc = xc ? f64_of(w) : NULL, *bc = (wc && b) ? f64_of(b) : NULL;
  sf_tensor *out = (xc && wc && (!b || bc)) ? sf_zeros(nd + 2, oshape, SF_F64, sf_cpu()) : NULL;
  double *wr = malloc(sizeof(double) * (size_t)(d.kt * d.cout * K2)), *col = malloc(sizeof(double) * (size_t)(K2 * P));
  if (!out || !wr || !col) {
    if (!wr || !col) sf_error("conv%dd (f64): out of memory", nd);
    sf_release(out);
    out = NULL;
    goto done;
  }
  weights_by_tap(&d, sf_data_ptr(wc), wr, 1);
  const int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  const double *xs = sf_data_ptr(xc), *bs = bc ? sf_data_ptr(bc) : NULL;
  double *os = sf_data_ptr(out);
  for (int64_t n = 0; n < d.N; n++)
    for (int64_t to = 0; to < d.To; to++) {
      /* out[n, :, to] is [cout] planes T apart: a GEMM with ldc = To * P */
      double *o = os + n * d.cout * d.To * P + to * P;
      for (int64_t dt = 0; dt < d.kt; dt++) {
        int64_t ti = to * d.st + dt - d.pt;
        if (ti < 0 || ti >= d.T) continue;
        im2col(&d, xs + n * d.cin * d.T * d.H * d.W, ti, col);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d.cout, (int)P, (int)K2, 1.0, wr + dt * d.cout * K2,
                    (int)K2, col, (int)P, 1.0, o, (int)(d.To * P));
      }
      if (bs)
        for (int64_t co = 0; co < d.cout; co++)
          for (int64_t p = 0; p < P; p++) o[co * d.To * P + p] += bs[co];
    }
  openblas_set_num_threads(blas_threads);
done:
  free(wr), free(col);
  sf_release(xc), sf_release(wc), sf_release(bc);
  return out;
}

int sf_conv_backward_cpu(int nd, sf_tensor *x, sf_tensor *w, sf_tensor *gout, const int *stride, const int *pad,
                         sf_tensor **gx, sf_tensor **gw, sf_tensor **gb) {
  conv_dims d;
  if (gx) *gx = NULL;
  if (gw) *gw = NULL;
  if (gb) *gb = NULL;
  if (dims_of(nd, x, w, stride, pad, &d, nd == 3 ? "conv3d backward" : "conv2d backward")) return -1;
  if (sf_device_of(x).type != SF_DEV_CPU || sf_device_of(w).type != SF_DEV_CPU || sf_device_of(gout).type != SF_DEV_CPU)
    return sf_error("conv%dd backward: runs on the cpu only (the tensors are on another device)", nd);
  const int64_t P = d.Ho * d.Wo, K2 = d.cin * d.kh * d.kw;
  const sf_dtype gdt = x->dtype == SF_F64 ? SF_F64 : SF_F32;
  sf_tensor *xc = f64_of(x), *wc = xc ? f64_of(w) : NULL, *gc = wc ? f64_of(gout) : NULL;
  sf_tensor *gx64 = (gc && gx) ? sf_zeros(x->ndim, x->shape, SF_F64, sf_cpu()) : NULL;
  double *wr = malloc(sizeof(double) * (size_t)(d.kt * d.cout * K2));
  double *gwr = gw ? calloc((size_t)(d.kt * d.cout * K2), sizeof(double)) : NULL;
  double *col = malloc(sizeof(double) * (size_t)(K2 * P)), *gcol = gx ? malloc(sizeof(double) * (size_t)(K2 * P)) : NULL;
  int rc = -1;
  if (!gc || (gx && !gx64)) goto done;
  if (!wr || !col || (gw && !gwr) || (gx && !gcol)) {
    sf_error("conv%dd backward: out of memory", nd);
    goto done;
  }
  int64_t oshape_n = gc->ndim == nd + 2 ? gc->shape[1] : -1;
  if (oshape_n != d.cout || sf_numel(gc) != d.N * d.cout * d.To * P) {
    char b1[64];
    sf_error("conv%dd backward: the output gradient %s does not have the output's shape", nd,
             sf_shape_str(gout, b1, sizeof b1));
    goto done;
  }
  weights_by_tap(&d, sf_data_ptr(wc), wr, 1);
  /* small GEMMs (M = cout or K = cout): OpenBLAS's own threads cost far more than they bring, and on a
   * shared machine their spin-waits made a tiny VAE's backward 40x slower; one thread here */
  const int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  const double *xs = sf_data_ptr(xc), *gs = sf_data_ptr(gc);
  double *gxs = gx64 ? sf_data_ptr(gx64) : NULL;
  /* per input frame: unrolled once for every tap that reads it, and its column gradient summed over
   * those taps before one fold back */
  for (int64_t n = 0; n < d.N; n++)
    for (int64_t ti = 0; ti < d.T; ti++) {
      int have_col = 0, have_gcol = 0;
      for (int64_t dt = 0; dt < d.kt; dt++) {
        int64_t num = ti + d.pt - dt;
        if (num < 0 || num % d.st) continue;
        int64_t to = num / d.st;
        if (to >= d.To) continue;
        const double *g = gs + n * d.cout * d.To * P + to * P; /* [cout] rows, To * P apart */
        if (gwr) { /* dW_dt += G [cout, P] @ col^T [P, K2] */
          if (!have_col) im2col(&d, xs + n * d.cin * d.T * d.H * d.W, ti, col), have_col = 1;
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d.cout, (int)K2, (int)P, 1.0, g, (int)(d.To * P), col,
                      (int)P, 1.0, gwr + dt * d.cout * K2, (int)K2);
        }
        if (gxs) { /* dcol += W_dt^T [K2, cout] @ G [cout, P] */
          cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K2, (int)P, (int)d.cout, 1.0, wr + dt * d.cout * K2,
                      (int)K2, g, (int)(d.To * P), have_gcol ? 1.0 : 0.0, gcol, (int)P);
          have_gcol = 1;
        }
      }
      if (have_gcol) col2im_add(&d, gcol, ti, gxs + n * d.cin * d.T * d.H * d.W);
    }
  openblas_set_num_threads(blas_threads);
  if (gx) {
    *gx = sf_cast(gx64, gdt);
    if (!*gx) goto done;
  }
  if (gw) {
    sf_tensor *w64 = sf_zeros(w->ndim, w->shape, SF_F64, sf_cpu());
    if (!w64) goto done;
    weights_by_tap(&d, sf_data_ptr(w64), gwr, 0);
    *gw = sf_cast(w64, gdt);
    sf_release(w64);
    if (!*gw) goto done;
  }
  if (gb) {
    int64_t bs = d.cout;
    sf_tensor *b64 = sf_zeros(1, &bs, SF_F64, sf_cpu());
    if (!b64) goto done;
    double *bp = sf_data_ptr(b64);
    for (int64_t n = 0; n < d.N; n++)
      for (int64_t co = 0; co < d.cout; co++) {
        const double *g = gs + (n * d.cout + co) * d.To * P;
        for (int64_t i = 0; i < d.To * P; i++) bp[co] += g[i];
      }
    *gb = sf_cast(b64, gdt);
    sf_release(b64);
    if (!*gb) goto done;
  }
  rc = 0;
done:
  if (rc) {
    if (gx) sf_release(*gx), *gx = NULL;
    if (gw) sf_release(*gw), *gw = NULL;
    if (gb) sf_release(*gb), *gb = NULL;
  }
  free(wr), free(gwr), free(col), free(gcol);
  sf_release(xc), sf_release(wc), sf_release(gc), sf_release(gx64);
  return rc;
}
