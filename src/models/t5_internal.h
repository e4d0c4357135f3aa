/* t5_internal.h — the umT5 encoder's weights, shared by the loader (t5_encoder.c) and the forward
 * (t5_forward.c). */
#ifndef SF_T5_INTERNAL_H
#define SF_T5_INTERNAL_H

#include "models/t5_encoder.h"

typedef struct {
  sf_tensor *norm1, *norm2, *q, *k, *v, *o, *gate, *fc1, *fc2, *rel;
} sf_t5_block;

struct sf_t5 {
  sf_t5_config cfg;
  sf_tensor *emb, *norm, *rel_shared;
  sf_t5_block *blocks;
  int lp; /* compute dtype: 0 f32, 1 bf16, 2 f16 (activations rounded at the reference's op outputs) */
};

/* T5 bidirectional bucket of rel = key - query (float32 log as the reference) */
int64_t sf_t5_bucket(int64_t rel, int64_t num_buckets, int64_t max_dist);
/* f32 embedding rows of n ids into out [n, dim] (checks the ids) */
int sf_t5_embed(sf_t5 *m, const int64_t *ids, int64_t n, float *out);

#endif
