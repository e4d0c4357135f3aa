/* compute_dtype.h — the encoders' reduced-precision compute modes (T5, CLIP): values rounded to bf16 or
 * f16 and kept in f32, so every op sums in f32 as the originals' autocast does. lp: 0 f32, 1 bf16, 2 f16. */
#ifndef SF_MODELS_COMPUTE_DTYPE_H
#define SF_MODELS_COMPUTE_DTYPE_H

#include "core/tensor.h"

/* t rounded to the compute dtype, kept in f32; steals t (NULL passes through; lp 0 returns t) */
sf_tensor *sf_compute_round(int lp, sf_tensor *t);
/* a weight as compute-dtype values in f32 on dev (a new reference) */
sf_tensor *sf_compute_weight(sf_device dev, int lp, sf_tensor *w);

#endif
