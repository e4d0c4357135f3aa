/* nn_ops.h — the fused model ops table (`sf_backend.nn`): norms, modulation, 3-D RoPE and attention
 * (full / block-causal / KV-cache slices) with attention capture. The public, checked wrappers live in
 * src/core/nn.h; a backend only executes already-validated calls on its own device.
 *
 * Conventions shared by every op:
 *  - float tensors are f32 or bf16 (f16 where noted); compute accumulates in f32 (RoPE in f64);
 *  - `out` has the shape and dtype of the main input unless stated; out may alias x where noted;
 *  - unless stated, tensors are contiguous (the wrappers make them so);
 *  - bf16 rounding points follow the Self-Forcing bf16 regime described in spec 1.10 (each
 *    elementwise result is rounded to the storage dtype, as PyTorch does op by op). */
#ifndef SF_NN_OPS_H
#define SF_NN_OPS_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What one attention call is allowed to see, and what it should record (capture).
 *
 * Visibility is described per query group (a latent frame of `q_group` tokens): query group g sees
 * key tokens [kv_lo[g], kv_hi[g]). This covers full attention (kv_lo = NULL: all keys), the
 * block-causal training mask (num_frame_per_block, independent first frame, local windows) and the
 * KV-cache path (the caller passes the cache slice [lo, end) as k/v; all visible).
 *
 * Capture (all outputs NULL = off) accumulates, without changing the output by a single bit:
 *   cap_logits[h, gq, gk] += sum over batch, query tokens of group gq and VISIBLE key tokens of key
 *                            group gk (k_group tokens each) of the pre-softmax logit q.k*scale;
 *   cap_probs [h, gq, gk] += the same sum of softmax probabilities.
 * The caller divides by the visible pair counts (known from the visibility ranges) to get means,
 * or by the query count to get the probability mass per key group. Both are f32 contiguous on the
 * op's device, shape [H, n_q_groups, n_k_groups], zero-initialised by the caller.
 * Token level: tok_logits / tok_probs f32 [H, tq1-tq0, tk1-tk0] += value / B for query tokens
 * [tq0, tq1) and key tokens [tk0, tk1) (invisible pairs get NaN written). */
typedef struct sf_attn_desc {
  double scale;              /* softmax scale (1/sqrt(d) for every Wan attention) */
  int64_t q_group;           /* query tokens per group; Lq must be a multiple */
  const int64_t *kv_lo;      /* [n_q_groups] host arrays; NULL = every key visible to every query */
  const int64_t *kv_hi;
  /* capture */
  int64_t k_group;           /* key tokens per capture group (Lk must be a multiple) */
  sf_tensor *cap_logits;     /* may be NULL */
  sf_tensor *cap_probs;      /* may be NULL */
  int64_t tq0, tq1, tk0, tk1;
  sf_tensor *tok_logits;     /* may be NULL */
  sf_tensor *tok_probs;      /* may be NULL */
} sf_attn_desc;

typedef struct sf_nn_ops {
  /* y = (x - mean) * rstd [* w + b] over the last dim D (x viewed [R, D]); w, b NULL or [D].
   * mean/rstd (f32 [R]) are written when non-NULL (for backward). */
  int (*layer_norm)(sf_tensor *out, const sf_tensor *x, const sf_tensor *w, const sf_tensor *b, double eps,
                    sf_tensor *mean, sf_tensor *rstd);
  /* y = round_to_x_dtype(x * rstd) * w over the last dim (spec 1.7.1: normalise in f32, cast back, then
   * scale); w [D] (may be NULL = 1). rstd (f32 [R]) written when non-NULL. */
  int (*rms_norm)(sf_tensor *out, const sf_tensor *x, const sf_tensor *w, double eps, sf_tensor *rstd);
  /* adaLN modulation: x [G, R, D] (G = batch*frames groups of R tokens),
   * shift/scale [G, D] (row stride may be anything, unit stride on D, may be a different float dtype);
   * out = x * (1 + scale[g]) + shift[g]. out may alias x. */
  int (*modulate)(sf_tensor *out, const sf_tensor *x, const sf_tensor *shift, const sf_tensor *scale);
  /* gated residual: out = x + y * gate[g]; x, y [G, R, D], gate [G, D] (strided like shift above).
   * out may alias x. */
  int (*gated_add)(sf_tensor *out, const sf_tensor *x, const sf_tensor *y, const sf_tensor *gate);
  /* Wan 3-D RoPE (spec 1.8) on x [B, L, H, d] (unit stride on d, any other strides), L = F*Hp*Wp tokens in
   * (f, h, w) order, temporal positions f0 .. f0+F-1; interleaved pairs, theta 10000 per axis, computed
   * in f64 and rounded once to out's dtype. out contiguous [B, L, H, d]; may alias x when x is contiguous. */
  int (*rope3d)(sf_tensor *out, const sf_tensor *x, int64_t F, int64_t Hp, int64_t Wp, int64_t f0);
  /* softmax(q k^T * scale) v per head with O(N) memory (online softmax, f32 accumulation).
   * q [B, Lq, H, d], k/v [B, Lk, H, d] (unit stride on d, any other strides), out [B, Lq, H, d]
   * contiguous, dtype of q. lse (f32 [B, H, Lq], natural log of the softmax denominator including the
   * scale) written when non-NULL, for backward. A query group with no visible key gives zeros. */
  int (*attention)(sf_tensor *out, const sf_tensor *q, const sf_tensor *k, const sf_tensor *v,
                   const sf_attn_desc *desc, sf_tensor *lse);
  /* optional (SF_CAP_CHANNEL_NORM; ops/frame_ops.h's sf_channel_norm is the checked entry, with a composed
   * fallback): the Wan VAE's RMS_norm over the channels of frame-major x [T, C, H, W] (f32 contiguous):
   * out = x / max(|x|_C, 1e-12) * sqrt(C) * gamma[c], then SiLU when silu. bf16: every op's output rounded
   * to bf16 as Self-Forcing's bf16 VAE (the sum of squares in f32 or wider). gamma f32 [C]; out may alias x. */
  int (*channel_norm)(sf_tensor *out, const sf_tensor *x, const sf_tensor *gamma, int silu, int bf16);
} sf_nn_ops;

#ifdef __cplusplus
}
#endif
#endif
