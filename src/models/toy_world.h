/* toy_world.h — the bouncing-balls world's pixel work: rasterize balls into frames, and find coloured
 * balls in frames (the measurement side). Scene sampling, trajectories and prompts live in Lua
 * (lua/sfwb/toy_world.lua); only the per-pixel loops are here. */
#ifndef SF_TOY_WORLD_H
#define SF_TOY_WORLD_H

#include <stdint.h>

typedef struct {
  float rgb[3];    /* 0..255 */
  float radius;    /* px */
  const float *x;  /* [frames] centre, px from the left edge (pixel j covers [j, j+1)) */
  const float *y;  /* [frames] centre, px from the top edge */
} sf_toy_ball;

/* Draws `nballs` balls (in order, later over earlier) on a constant background into out
 * [frames, 3, H, W] as the video tensors hold them: u8 levels mapped to [-1, 1] as
 * (v / 255 - 0.5) / 0.5. Edges are anti-aliased by ss x ss sub-samples per pixel. */
void sf_toy_render(float *out, int64_t frames, int64_t H, int64_t W, const float bg[3], const sf_toy_ball *balls,
                   int nballs, int ss);

typedef struct {
  int colour;  /* 0-based palette index */
  int64_t area;
  double x, y; /* centroid, same coordinates as sf_toy_ball */
} sf_toy_blob;

/* One frame [3, H, W] in [-1, 1] (element strides cs, hs, ws): every pixel whose RGB (0..255) lies
 * within `tol` (Euclidean) of a palette colour is that colour's; 4-connected regions of one colour with
 * at least min_area pixels are blobs. Writes up to max_blobs blobs (largest first) and returns how many
 * there are in all, or -1 when out of memory. `work` must hold 2 * H * W int32. */
int sf_toy_detect(const float *frame, int64_t cs, int64_t hs, int64_t ws, int64_t H, int64_t W,
                  const float (*palette)[3], int npal, float tol, int64_t min_area, sf_toy_blob *blobs, int max_blobs,
                  int32_t *work);

#endif
