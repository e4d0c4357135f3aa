/* enc_device.h — helpers of the encoders' device forwards (t5_device.c, clip_device.c), which are written
 * with the public tensor ops so they run on every backend. */
#ifndef SF_ENC_DEVICE_H
#define SF_ENC_DEVICE_H

#include "core/ops.h"

/* a weight as an f32 tensor on dev (new reference; NULL for NULL) */
static inline sf_tensor *sf_enc_dev_f32(sf_tensor *w, sf_device dev) {
  if (!w) return NULL;
  sf_tensor *a = sf_cast(w, SF_F32);
  sf_tensor *b = a ? sf_to_device(a, dev) : NULL;
  sf_release(a);
  return b;
}

/* bf16 compute on a device (lp == 1): t rounded to bf16 values, kept in f32 so every op sums in f32 as the
 * reference's kernels do; steals t; any other lp returns t as it is (NULL passes through) */
static inline sf_tensor *sf_enc_round(sf_tensor *t, int lp) {
  if (!t || lp != 1) return t;
  sf_tensor *a = sf_cast(t, SF_BF16);
  sf_release(t);
  sf_tensor *b = a ? sf_cast(a, SF_F32) : NULL;
  sf_release(a);
  return b;
}

/* *x += y, stealing y; -1 (x unchanged) when y is NULL or the add fails */
static inline int sf_enc_add_into(sf_tensor **x, sf_tensor *y) {
  if (!y) return -1;
  sf_tensor *z = sf_add(*x, y);
  sf_release(y);
  if (!z) return -1;
  sf_release(*x);
  *x = z;
  return 0;
}

#endif
