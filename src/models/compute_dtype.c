/* compute_dtype.c — see compute_dtype.h */
#include "models/compute_dtype.h"

#include "ops/ops.h"

sf_tensor *sf_compute_round(int lp, sf_tensor *t) {
  if (!t || !lp) return t;
  sf_tensor *a = sf_cast(t, lp == 1 ? SF_BF16 : SF_F16);
  sf_release(t);
  sf_tensor *b = a ? sf_cast(a, SF_F32) : NULL;
  sf_release(a);
  return b;
}

sf_tensor *sf_compute_weight(sf_device dev, int lp, sf_tensor *w) {
  sf_tensor *a = sf_cast(w, SF_F32);
  sf_tensor *b = a ? sf_to_device(a, dev) : NULL;
  sf_release(a);
  return sf_compute_round(lp, b);
}
