/* nn.h — public fused model ops (norms, modulation, RoPE, attention + capture): argument checks, result
 * allocation and dispatch to the tensor's backend `nn` table (src/backend/nn_ops.h). Same rules as
 * ops.h: results are new references, inputs borrowed, NULL + sf_last_error() on failure. A backend
 * without the op is an error naming the device. Autograd records these as single nodes. */
#ifndef SF_NN_H
#define SF_NN_H

#include "core/nn_ops.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* LayerNorm over the last dim; w, b NULL (no affine) or [D]. */
sf_tensor *sf_layer_norm(sf_tensor *x, sf_tensor *w, sf_tensor *b, double eps);
/* Wan RMSNorm over the last dim (normalise in f32, round to x's dtype, then * w). w NULL or [D]. */
sf_tensor *sf_rms_norm(sf_tensor *x, sf_tensor *w, double eps);
/* x [B, F*S, D] (or [G, R, D]), shift/scale [B, F, D] or [G, D] with G = B*F: x*(1+scale)+shift per frame. */
sf_tensor *sf_modulate(sf_tensor *x, sf_tensor *shift, sf_tensor *scale);
/* x + y * gate per frame (shapes as sf_modulate). */
sf_tensor *sf_gated_add(sf_tensor *x, sf_tensor *y, sf_tensor *gate);
/* Wan 3-D RoPE on x [B, L, H, d], L = F*Hp*Wp, temporal positions start at f0. */
sf_tensor *sf_rope3d(sf_tensor *x, int64_t F, int64_t Hp, int64_t Wp, int64_t f0);
/* attention q [B, Lq, H, d], k/v [B, Lk, H, d] -> [B, Lq, H, d]; desc NULL = full attention with 1/sqrt(d).
 * lse: optional f32 [B, H, Lq] output (new reference stored in *lse). */
sf_tensor *sf_attention(sf_tensor *q, sf_tensor *k, sf_tensor *v, const sf_attn_desc *desc, sf_tensor **lse);

#ifdef __cplusplus
}
#endif
#endif
