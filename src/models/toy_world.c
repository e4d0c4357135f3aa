/* toy_world.c — rasterizing and detecting the toy world's balls (see toy_world.h). */
#include "models/toy_world.h"

#include <math.h>

static float to_unit(float v255) {
  float q = floorf(v255 + 0.5f); /* the u8 level a video file would store */
  if (q < 0) q = 0;
  if (q > 255) q = 255;
  return (q / 255.0f - 0.5f) / 0.5f;
}

void sf_toy_render(float *out, int64_t frames, int64_t H, int64_t W, const float bg[3], const sf_toy_ball *balls,
                   int nballs, int ss) {
  if (ss < 1) ss = 1;
  const float inv = 1.0f / (float)(ss * ss);
  const int64_t plane = H * W;
  for (int64_t f = 0; f < frames; f++) {
    float *o = out + f * 3 * plane;
    for (int64_t i = 0; i < plane; i++)
      for (int c = 0; c < 3; c++) o[c * plane + i] = bg[c];
    for (int b = 0; b < nballs; b++) {
      const sf_toy_ball *bl = &balls[b];
      const float cx = bl->x[f], cy = bl->y[f], r = bl->radius, r2 = r * r;
      int64_t i0 = (int64_t)floorf(cy - r) - 1, i1 = (int64_t)ceilf(cy + r) + 1;
      int64_t j0 = (int64_t)floorf(cx - r) - 1, j1 = (int64_t)ceilf(cx + r) + 1;
      if (i0 < 0) i0 = 0;
      if (j0 < 0) j0 = 0;
      if (i1 > H) i1 = H;
      if (j1 > W) j1 = W;
      for (int64_t i = i0; i < i1; i++)
        for (int64_t j = j0; j < j1; j++) {
          int hits = 0;
          for (int si = 0; si < ss; si++) {
            float dy = (float)i + ((float)si + 0.5f) / (float)ss - cy;
            for (int sj = 0; sj < ss; sj++) {
              float dx = (float)j + ((float)sj + 0.5f) / (float)ss - cx;
              hits += dx * dx + dy * dy <= r2;
            }
          }
          if (!hits) continue;
          float a = (float)hits * inv;
          for (int c = 0; c < 3; c++) {
            float *p = &o[c * plane + i * W + j];
            *p = *p * (1 - a) + bl->rgb[c] * a;
          }
        }
    }
    for (int64_t i = 0; i < 3 * plane; i++) o[i] = to_unit(o[i]);
  }
}

/* keeps blobs[0..*n) sorted by area, largest first, at most cap of them */
static void keep_blob(sf_toy_blob *blobs, int *n, int cap, sf_toy_blob b) {
  int k;
  if (*n < cap) {
    k = (*n)++;
  } else {
    if (cap <= 0 || blobs[cap - 1].area >= b.area) return;
    k = cap - 1;
  }
  while (k > 0 && blobs[k - 1].area < b.area) {
    blobs[k] = blobs[k - 1];
    k--;
  }
  blobs[k] = b;
}

int sf_toy_detect(const float *frame, int64_t cs, int64_t hs, int64_t ws, int64_t H, int64_t W,
                  const float (*palette)[3], int npal, float tol, int64_t min_area, sf_toy_blob *blobs, int max_blobs,
                  int32_t *work) {
  int32_t *cls = work, *stack = work + H * W;
  const float tol2 = tol * tol;
  for (int64_t i = 0; i < H; i++)
    for (int64_t j = 0; j < W; j++) {
      float rgb[3];
      for (int c = 0; c < 3; c++) rgb[c] = (frame[c * cs + i * hs + j * ws] * 0.5f + 0.5f) * 255.0f;
      int best = -1;
      float bd = tol2;
      for (int k = 0; k < npal; k++) {
        float d = 0;
        for (int c = 0; c < 3; c++) d += (rgb[c] - palette[k][c]) * (rgb[c] - palette[k][c]);
        if (d <= bd) {
          bd = d;
          best = k;
        }
      }
      cls[i * W + j] = best;
    }
  int total = 0, kept = 0;
  for (int64_t s = 0; s < H * W; s++) {
    int k = cls[s];
    if (k < 0) continue;
    /* flood fill of colour k from s; visited pixels become -2 */
    int64_t top = 0, area = 0;
    double sx = 0, sy = 0;
    stack[top++] = (int32_t)s;
    cls[s] = -2;
    while (top > 0) {
      int64_t p = stack[--top], i = p / W, j = p % W;
      area++;
      sx += (double)j + 0.5;
      sy += (double)i + 0.5;
      const int64_t nb[4] = {i > 0 ? p - W : -1, i + 1 < H ? p + W : -1, j > 0 ? p - 1 : -1, j + 1 < W ? p + 1 : -1};
      for (int q = 0; q < 4; q++)
        if (nb[q] >= 0 && cls[nb[q]] == k) {
          cls[nb[q]] = -2;
          stack[top++] = (int32_t)nb[q];
        }
    }
    if (area < min_area) continue;
    total++;
    sf_toy_blob b = {k, area, sx / (double)area, sy / (double)area};
    keep_blob(blobs, &kept, max_blobs, b);
  }
  return total;
}
