/* conv_cpu.c — CPU convolutions: an im2col + SGEMM kernel over frame lists (used directly by the VAE)
 * and the tensor-level conv2d/conv3d of the `conv` op table. */
#include <cblas.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "backend/conv_ops.h"
#include "backend/cpu/cpu_pool.h"
#include "core/error.h"
#include "core/half.h"
#include "core/dispatch.h"

/* columns are built in tiles of whole output rows so the buffer stays under this many floats */
#define SF_CONV_TILE_FLOATS ((size_t)16 << 20)

/* one im2col row: the [H, W] plane src (NULL: a zero frame) seen through kernel tap (dy, dx), for output
 * rows [r0, r0 + nr), nr * Wo values into dst */
static void im2col_tap(const sf_conv_geom *g, const float *src, int H, int W, int dy, int dx, int r0, int nr, int Wo,
                       float *dst) {
  if (!src) {
    memset(dst, 0, sizeof(float) * (size_t)nr * Wo);
    return;
  }
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

/* columns of one 2-D frame for output rows [r0, r0 + nr): row k = (ci, dy, dx), nr * Wo columns */
static void im2col2d(const sf_conv_geom *g, const float *f, int H, int W, int r0, int nr, int Wo, float *col) {
  int64_t HW = (int64_t)H * W, TP = (int64_t)nr * Wo, K2 = (int64_t)g->cin * g->kh * g->kw;
  for (int64_t k = 0; k < K2; k++) {
    int dx = (int)(k % g->kw), dy = (int)((k / g->kw) % g->kh), ci = (int)(k / g->kw / g->kh);
    im2col_tap(g, f + ci * HW, H, W, dy, dx, r0, nr, Wo, col + k * TP);
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

/* ---- stride-1 convolutions as shifted GEMMs ----
 * Each input frame is copied once into a zero-padded frame [cin][Hp][Wp] (nearest-2x upsampled on the
 * way when asked). For a spatial tap (dy, dx) the inputs of every output position are then that padded
 * frame shifted by dy * Wp + dx, so the tap is one GEMM with K = cin over all positions at once,
 * computed on a "wide" output grid of Ho rows of Wp columns whose last Wp - Wo columns are junk and are
 * dropped at the end. No im2col matrix (9x the frame) is written and re-read (a variant folding the 3
 * dx taps into K, 3x the frame, measured slower: more packing traffic). The temporal taps that read the
 * same input frame are stacked along M (weights stored tap-reversed), and because consecutive output
 * frames are consecutive in memory, one GEMM accumulates into all the output frames the input frame
 * feeds: M = taps * cout, which also amortises the packing of the big operand.
 * Positions are cut into chunks of about 2 MB of input rows (the size of L2 here; 1 MB measured 4 %
 * slower: OpenBLAS re-packs the weights per chunk) so that the kh * kw shifted GEMMs of a chunk re-read
 * it from L2; the pool's threads take chunks in turn, each a single-threaded SGEMM (OpenBLAS's
 * own threads are set to 1 meanwhile): one hand-off per input frame instead of OpenBLAS's per-call
 * synchronisation, and a busy core only delays the chunks it holds. */

size_t sf_conv_prep_floats(const sf_conv_geom *g) { return (size_t)g->kh * g->kw * g->kt * g->cout * g->cin; }

typedef struct { const sf_conv_geom *g; const float *w; float *wp; int bf16; } prep_job;

/* round to the nearest bf16 value (even on ties), kept as f32; NaN stays NaN */
static inline float bf16_round(float x) { return sf_bf16_to_f32(sf_f32_to_bf16(x)); }

/* layout [dy][dx][kt, reversed][cout][cin]; output channels [t*cout/nt, (t+1)*cout/nt): each reads its
 * contiguous [cin][kt][kh][kw] block (cache resident) and writes runs of cin floats */
static void prep_worker(void *ctx, int t, int nt) {
  const prep_job *j = ctx;
  const sf_conv_geom *g = j->g;
  int khw = g->kh * g->kw, kt = g->kt, taps = kt * khw;
  for (int co = (int)((int64_t)g->cout * t / nt); co < (int)((int64_t)g->cout * (t + 1) / nt); co++) {
    const float *blk = j->w + (int64_t)co * g->cin * taps;
    for (int dt = 0; dt < kt; dt++)
      for (int s = 0; s < khw; s++) {
        float *dst = j->wp + (((int64_t)s * kt + (kt - 1 - dt)) * g->cout + co) * g->cin;
        const float *src = blk + dt * khw + s;
        for (int ci = 0; ci < g->cin; ci++) dst[ci] = src[(int64_t)ci * taps];
        if (j->bf16)
          for (int ci = 0; ci < g->cin; ci++) dst[ci] = bf16_round(dst[ci]);
      }
  }
}

void sf_conv_prep_weights(const sf_conv_geom *g, const float *w, int flags, float *wp) {
  prep_job j = {g, w, wp, (flags & SF_CONV_BF16) != 0};
  sf_cpu_parallel(sf_cpu_threads((int64_t)sf_conv_prep_floats(g), (int64_t)1 << 16), prep_worker, &j);
}

static int shifted_ok(const sf_conv_geom *g) { return g->st == 1 && g->sh == 1 && g->sw == 1; }

int64_t sf_conv_frames_out_floats(const sf_conv_geom *g, int nin, int H, int W, int up2) {
  if (up2) H *= 2, W *= 2;
  int64_t To = sf_conv_out_t(g, nin), Ho = sf_conv_out_h(g, H), Wo = sf_conv_out_w(g, W);
  int64_t Wp = shifted_ok(g) ? W + g->pad_left + g->pad_right : Wo;
  return To * g->cout * Ho * (Wp > Wo ? Wp : Wo);
}

typedef struct {
  const float *f;
  float *xp;
  int cin, H, W, Hp, Wp, pt, pl, up2;
  float *rowbuf; /* one padded row per thread */
} pad_job;

/* channels [c0, c1) of the padded frame; rowbuf holds one padded row */
static void pad_channels(const pad_job *j, int c0, int c1, float *rowbuf) {
  int Hi = j->up2 ? 2 * j->H : j->H, Wi = j->up2 ? 2 * j->W : j->W, Wp = j->Wp;
  int64_t HpWp = (int64_t)j->Hp * Wp;
  for (int c = c0; c < c1; c++) {
    const float *src = j->f + (int64_t)c * j->H * j->W;
    float *dst = j->xp + c * HpWp;
    for (int py = 0; py < j->Hp; py++) {
      int y = py - j->pt;
      float *d = dst + (int64_t)py * Wp;
      if (y < 0 || y >= Hi) {
        memset(d, 0, sizeof(float) * Wp);
        continue;
      }
      const float *s = src + (int64_t)(j->up2 ? y >> 1 : y) * j->W;
      if (!j->up2) {
        for (int x = 0; x < j->pl; x++) d[x] = 0.0f;
        memcpy(d + j->pl, s, sizeof(float) * j->W);
        for (int x = j->pl + Wi; x < Wp; x++) d[x] = 0.0f;
        continue;
      }
      if (y & 1) { /* the row above was the same source row */
        memcpy(d, d - Wp, sizeof(float) * Wp);
        continue;
      }
      float *e = rowbuf + j->pl;
      for (int x = 0; x < j->pl; x++) rowbuf[x] = 0.0f;
      for (int x = 0; x < j->W; x++) e[2 * x] = e[2 * x + 1] = s[x];
      for (int x = j->pl + Wi; x < Wp; x++) rowbuf[x] = 0.0f;
      memcpy(d, rowbuf, sizeof(float) * Wp);
    }
  }
}

static void pad_worker(void *ctx, int t, int nt) {
  const pad_job *j = ctx;
  pad_channels(j, (int)((int64_t)j->cin * t / nt), (int)((int64_t)j->cin * (t + 1) / nt), j->rowbuf + (int64_t)t * j->Wp);
}

typedef struct {
  const float *A, *X;
  float *C;
  int M, K, kh, kw, Wp;
  int64_t lda_tap, HpWp, HoWp, N, chunk;
  atomic_int next;
} gemm_job;

static void gemm_worker(void *ctx, int t, int nt) {
  gemm_job *j = ctx;
  for (;;) {
    int64_t n0 = (int64_t)atomic_fetch_add(&j->next, 1) * j->chunk;
    if (n0 >= j->N) break;
    int n = (int)(j->N - n0 < j->chunk ? j->N - n0 : j->chunk);
    for (int dy = 0; dy < j->kh; dy++)
      for (int dx = 0; dx < j->kw; dx++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->M, n, j->K, 1.0f, j->A + (dy * j->kw + dx) * j->lda_tap,
                    j->K, j->X + (int64_t)dy * j->Wp + dx + n0, (int)j->HpWp, 1.0f, j->C + n0, (int)j->HoWp);
  }
}

typedef struct { float *out; const float *b; int64_t planes; int Ho, Wo, Wp, cout, bf16; } compact_job;

/* planes (frame, channel) [t*n/nt, (t+1)*n/nt): rows of Wp -> rows of Wo, + bias. Forward order: a row's
 * destination never passes its own unread source. */
static void compact_worker(void *ctx, int t, int nt) {
  const compact_job *j = ctx;
  for (int64_t pl = j->planes * t / nt; pl < j->planes * (t + 1) / nt; pl++) {
    float bb = j->b ? j->b[pl % j->cout] : 0.0f;
    if (j->bf16) bb = bf16_round(bb);
    for (int64_t r = pl * j->Ho; r < (pl + 1) * j->Ho; r++) {
      const float *s = j->out + r * j->Wp;
      float *d = j->out + r * j->Wo;
      for (int x = 0; x < j->Wo; x++) d[x] = s[x] + bb;
      if (j->bf16)
        for (int x = 0; x < j->Wo; x++) d[x] = bf16_round(d[x]);
    }
  }
}

static int conv_shifted(const sf_conv_geom *g, const float *const *frames, int nin, int H, int W, int flags,
                        const float *wp, const float *b, float *out) {
  int up2 = (flags & SF_CONV_UP2) != 0, bf16 = (flags & SF_CONV_BF16) != 0;
  int Hi = up2 ? 2 * H : H, Wi = up2 ? 2 * W : W, kt = g->kt, K = g->cin;
  int Hp = Hi + g->pad_top + g->pad_bottom, Wp = Wi + g->pad_left + g->pad_right;
  int To = sf_conv_out_t(g, nin), Ho = Hp - g->kh + 1, Wo = Wp - g->kw + 1;
  int64_t HoWp = (int64_t)Ho * Wp, HpWp = (int64_t)Hp * Wp, N = (int64_t)(Ho - 1) * Wp + Wo;
  int direct = !up2 && Hp == H && Wp == W; /* no padding: the frames are the padded frames */
  int pad_nt = sf_cpu_threads((int64_t)K * HpWp, (int64_t)1 << 16);
  float *xp = direct ? NULL : malloc(sizeof(float) * ((int64_t)K * HpWp + (int64_t)pad_nt * Wp));
  if (!direct && !xp) return sf_error("conv: out of memory for a padded frame [%d, %d, %d]", K, Hp, Wp);
  memset(out, 0, sizeof(float) * To * g->cout * HoWp);
  /* chunks of ~2 MB of input rows (>= 256 positions); with threads, at least ~3 chunks per thread */
  int64_t chunk = ((int64_t)1 << 19) / K;
  if (chunk < 256) chunk = 256;
  int nt = sf_cpu_threads(N * (int64_t)g->cout * K / 64, (int64_t)1 << 16);
  if (nt > 1 && chunk * 3 * nt > N) chunk = N / (3 * nt);
  chunk = (chunk + 63) / 64 * 64;
  if (chunk < 128) chunk = 128;
  if (chunk >= N) chunk = N, nt = 1;
  int blas_nt = nt > 1 ? openblas_get_num_threads() : 0;
  if (nt > 1) openblas_set_num_threads(1);
  for (int i = 0; i < nin; i++) {
    if (!frames[i]) continue;
    int lo = i - kt + 1 > 0 ? i - kt + 1 : 0, hi = i < To - 1 ? i : To - 1;
    if (lo > hi) continue;
    const float *x = frames[i];
    if (!direct) {
      pad_job pj = {frames[i], xp, K, H, W, Hp, Wp, g->pad_top, g->pad_left, up2, xp + (int64_t)K * HpWp};
      sf_cpu_parallel(pad_nt, pad_worker, &pj);
      x = xp;
    }
    gemm_job gj = {.A = wp + (int64_t)(kt - 1 - i + lo) * g->cout * K, .X = x, .C = out + (int64_t)lo * g->cout * HoWp,
                   .M = (hi - lo + 1) * g->cout, .K = K, .kh = g->kh, .kw = g->kw, .Wp = Wp,
                   .lda_tap = (int64_t)kt * g->cout * K, .HpWp = HpWp, .HoWp = HoWp, .N = N, .chunk = chunk};
    atomic_init(&gj.next, 0);
    if (nt > 1) sf_cpu_parallel(nt, gemm_worker, &gj);
    else gemm_worker(&gj, 0, 1);
  }
  if (nt > 1) openblas_set_num_threads(blas_nt);
  free(xp);
  /* wide rows -> compact rows, plus bias */
  if (Wp != Wo || b || bf16) {
    compact_job cj = {out, b, (int64_t)To * g->cout, Ho, Wo, Wp, g->cout, bf16};
    if (Wp == Wo) sf_cpu_parallel(sf_cpu_threads(cj.planes * Ho * Wo, (int64_t)1 << 17), compact_worker, &cj);
    else compact_worker(&cj, 0, 1); /* in place: serial (a row's destination may overlap an earlier row's source) */
  }
  return 0;
}

static int conv_strided(const sf_conv_geom *g, const float *const *frames, int nin, int H, int W, const float *w,
                        const float *b, float *out, int To, int Ho, int Wo);

int sf_conv3d_frames_f32x(const sf_conv_geom *g, const float *const *frames, int nin, int H, int W, int flags,
                          const float *w, const float *wp, const float *b, float *out) {
  int up2 = (flags & SF_CONV_UP2) != 0;
  int Ho = sf_conv_out_h(g, up2 ? 2 * H : H), Wo = sf_conv_out_w(g, up2 ? 2 * W : W), To = sf_conv_out_t(g, nin);
  if (Ho <= 0 || Wo <= 0 || To <= 0)
    return sf_error("conv: input %d frames of %dx%d is too small for kernel %dx%dx%d", nin, H, W, g->kt, g->kh, g->kw);
  if (shifted_ok(g)) {
    if (wp) return conv_shifted(g, frames, nin, H, W, flags, wp, b, out);
    float *tmp = malloc(sizeof(float) * (sf_conv_prep_floats(g) ? sf_conv_prep_floats(g) : 1));
    if (!tmp) return sf_error("conv: out of memory for %zu weights", sf_conv_prep_floats(g));
    sf_conv_prep_weights(g, w, flags, tmp);
    int rc = conv_shifted(g, frames, nin, H, W, flags, tmp, b, out);
    free(tmp);
    return rc;
  }
  if (up2) return sf_error("conv: upsampled input needs stride 1");
  if (!(flags & SF_CONV_BF16)) return conv_strided(g, frames, nin, H, W, w, b, out, To, Ho, Wo);
  /* bf16 on the strided path: rounded copies of the weights and bias, output rounded */
  size_t nw = (size_t)g->cout * g->cin * g->kt * g->kh * g->kw;
  float *wr = malloc(sizeof(float) * (nw + g->cout));
  if (!wr) return sf_error("conv: out of memory for %zu weights", nw);
  for (size_t i = 0; i < nw; i++) wr[i] = bf16_round(w[i]);
  for (int i = 0; b && i < g->cout; i++) wr[nw + i] = bf16_round(b[i]);
  int rc = conv_strided(g, frames, nin, H, W, wr, b ? wr + nw : NULL, out, To, Ho, Wo);
  free(wr);
  if (rc) return rc;
  int64_t n = (int64_t)To * g->cout * Ho * Wo;
  for (int64_t i = 0; i < n; i++) out[i] = bf16_round(out[i]);
  return 0;
}

/* strides > 1: im2col tiles + SGEMM */
static int conv_strided(const sf_conv_geom *g, const float *const *frames, int nin, int H, int W, const float *w,
                        const float *b, float *out, int To, int Ho, int Wo) {
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
          im2col_tap(g, f ? f + ci * HW : NULL, H, W, dy, dx, r0, nr, Wo, col + k * TP);
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

int sf_conv3d_frames_f32(const sf_conv_geom *g, const float *const *frames, int nin, int H, int W, const float *w,
                         const float *b, float *out) {
  return sf_conv3d_frames_f32x(g, frames, nin, H, W, 0, w, NULL, b, out);
}

/* ---- tensor level ---- */
static sf_tensor *f32_contig(sf_tensor *t) {
  sf_tensor *a = sf_raw_cast(t, SF_F32);
  sf_tensor *c = a ? sf_raw_contiguous(a) : NULL;
  sf_release(a);
  return c;
}

static sf_tensor *conv_nd(int nd, sf_tensor *x, sf_tensor *w, sf_tensor *b, const int *stride, const int *pad, int flags) {
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
  float *ob = malloc(sizeof(float) * (size_t)sf_conv_frames_out_floats(&g, nin, (int)H, (int)W, 0));
  const float **list = malloc(sizeof(float *) * nin);
  int64_t oshape[5] = {N, g.cout, To, Ho, Wo};
  if (nd == 2) oshape[2] = Ho, oshape[3] = Wo;
  sf_tensor *out = (xc && wc && (!b || bc) && fr && ob && list) ? sf_empty(nd + 2, oshape, SF_F32, sf_cpu()) : NULL;
  if (!out) { if (!(fr && ob && list)) sf_error("conv%dd: out of memory", nd); goto done; }
  for (int64_t n = 0; n < N; n++) {
    const float *xs = (const float *)sf_data_ptr(xc) + n * cin * T * HW;
    for (int64_t c = 0; c < cin; c++)
      for (int64_t t = 0; t < T; t++) memcpy(fr + (t * cin + c) * HW, xs + (c * T + t) * HW, sizeof(float) * HW);
    if (flags & SF_CONV_BF16) /* the kernel takes bf16 inputs as given: round them here */
      for (int64_t i = 0; i < nfr; i++) fr[i] = bf16_round(fr[i]);
    for (int i = 0; i < nin; i++) list[i] = (i < pt || i >= pt + T) ? NULL : fr + (i - pt) * cin * HW;
    if (sf_conv3d_frames_f32x(&g, list, nin, (int)H, (int)W, flags, sf_data_ptr(wc), NULL, bc ? sf_data_ptr(bc) : NULL, ob)) {
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
  if (x->dtype == SF_F64) return sf_conv_f64_cpu(3, x, w, b, stride, pad);
  return conv_nd(3, x, w, b, stride, pad, 0);
}
static sf_tensor *cpu_conv2d(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[2], const int pad[2]) {
  if (x->dtype == SF_F64) return sf_conv_f64_cpu(2, x, w, b, stride, pad);
  return conv_nd(2, x, w, b, stride, pad, 0);
}

sf_tensor *sf_conv_cpu_flags(int nd, sf_tensor *x, sf_tensor *w, sf_tensor *b, const int *stride, const int *pad, int flags) {
  if (nd != 2 && nd != 3) { sf_error("conv: %d-d convolution (2 or 3)", nd); return NULL; }
  if (sf_device_of(x).type != SF_DEV_CPU || sf_device_of(w).type != SF_DEV_CPU || (b && sf_device_of(b).type != SF_DEV_CPU)) {
    sf_error("conv: the flagged (bf16) kernel runs on the cpu");
    return NULL;
  }
  return conv_nd(nd, x, w, b, stride, pad, flags & SF_CONV_BF16);
}

static void free_data(sf_storage *s) { free(s->data); }

/* the frame-list convolution on tensors (conv_ops.h's conv_frames): the parts' frames are passed to the kernel
 * by pointer, so a causal cache or zero frames in front cost no copy. The result tensor's storage holds the
 * kernel's little extra (sf_conv_frames_out_floats). It is plain malloc, not cpu_alloc.c's recycled blocks:
 * a VAE's activations change size at every layer, so recycled blocks would mostly sit unused beside the live
 * ones (+110 MB of peak on bench_encoders' decode). */
static sf_tensor *cpu_conv_frames(const sf_conv_geom *g, int nzero, sf_tensor *const *parts, int nparts, int flags,
                                  sf_tensor *w, sf_tensor *b) {
  int up2 = (flags & SF_CONV_UP2) != 0;
  int64_t C = parts[0]->shape[1], H = parts[0]->shape[2], W = parts[0]->shape[3];
  int nin = nzero;
  for (int i = 0; i < nparts; i++) nin += (int)parts[i]->shape[0];
  int To = sf_conv_out_t(g, nin), Ho = sf_conv_out_h(g, (int)(up2 ? 2 * H : H)), Wo = sf_conv_out_w(g, (int)(up2 ? 2 * W : W));
  if (To <= 0 || Ho <= 0 || Wo <= 0) {
    sf_error("conv: %d frames of %lldx%lld are too few for a %dx%dx%d conv", nin, (long long)H, (long long)W, g->kt, g->kh, g->kw);
    return NULL;
  }
  const float **list = malloc(sizeof(float *) * (size_t)nin);
  if (!list) { sf_error("conv: out of memory"); return NULL; }
  int k = 0;
  for (int i = 0; i < nzero; i++) list[k++] = NULL;
  for (int i = 0; i < nparts; i++)
    for (int64_t t = 0; t < parts[i]->shape[0]; t++) list[k++] = (const float *)sf_data_ptr(parts[i]) + t * C * H * W;
  size_t n = (size_t)sf_conv_frames_out_floats(g, nin, (int)H, (int)W, up2);
  float *d = malloc(sizeof(float) * (n ? n : 1));
  sf_storage *st = d ? sf_storage_wrap(sf_cpu(), d, sizeof(float) * n, free_data, NULL) : NULL;
  sf_tensor *out = NULL;
  if (!d) sf_error("conv: out of memory for %d frames of [%d, %d, %d]", To, g->cout, Ho, Wo);
  if (!st) free(d);
  if (st && !sf_conv3d_frames_f32x(g, list, nin, (int)H, (int)W, flags & (SF_CONV_UP2 | SF_CONV_BF16), sf_data_ptr(w), NULL,
                                   b ? sf_data_ptr(b) : NULL, d)) {
    int64_t shape[4] = {To, g->cout, Ho, Wo};
    out = sf_tensor_from_storage(st, SF_F32, 4, shape, NULL, 0);
  }
  sf_storage_release(st);
  free(list);
  return out;
}

const sf_conv_ops sf_cpu_conv_ops = {cpu_conv3d, cpu_conv2d, cpu_conv_frames};
