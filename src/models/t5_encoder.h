/* t5_encoder.h — the umT5 encoder (Wan's T5Encoder): architecture read from the weights' shapes. */
#ifndef SF_T5_ENCODER_H
#define SF_T5_ENCODER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* borrowed tensor for a state-dict key, NULL when absent */
typedef sf_tensor *(*sf_weight_getter)(void *ctx, const char *name);

typedef struct {
  int64_t vocab, dim, dim_attn, dim_ffn, num_heads, num_layers, num_buckets, max_dist;
  bool shared_pos; /* one relative-bias table for all layers (T5) instead of one per layer (umT5) */
  float eps;
} sf_t5_config;

typedef struct sf_t5 sf_t5;

/* reads token_embedding.weight, blocks.{i}.*, norm.weight (and pos_embedding.* when shared);
 * keeps references to the tensors (any of f32/bf16/f16, converted to f32 per matrix at use) */
sf_t5 *sf_t5_new(sf_weight_getter get, void *ctx);
void sf_t5_free(sf_t5 *m);
const sf_t5_config *sf_t5_config_of(const sf_t5 *m);

/* the encoder (t5_forward.c, one forward for every device): f32 [B, L, dim] on dev = encoder(ids [B, L],
 * mask [B, L] (0 = padding key) or NULL); raw output, no zeroing. The weights go to dev one matrix at a time. */
sf_tensor *sf_t5_forward(sf_t5 *m, const int64_t *ids, const int64_t *mask, int64_t B, int64_t L, sf_device dev);
/* blocks [first, first+count) over x f32 [B, L, dim] on its device (no embedding, no final norm): a new tensor */
sf_tensor *sf_t5_blocks(sf_t5 *m, int first, int count, sf_tensor *x, const int64_t *mask);
/* compute dtype "f32" (default), "bf16" or "f16": the model after `.to(dtype)` as the reference runs it —
 * weights and every op output rounded to dtype, sums in f32, T5's fp16_clamp after each residual add in f16
 * (on every device). -1 + sf_error on other names. */
int sf_t5_set_dtype(sf_t5 *m, const char *dtype);
const char *sf_t5_dtype(const sf_t5 *m);

#ifdef __cplusplus
}
#endif
#endif
