/* cpu_nn.c — the CPU backend's fused model-op table (a member of sf_cpu_backend, cpu_backend.c). */
#include "core/backend.h"
#include "core/nn_ops.h"
#include "backend/cpu/cpu_nn_util.h"

int sf_cpu_layer_norm(sf_tensor *, const sf_tensor *, const sf_tensor *, const sf_tensor *, double, sf_tensor *, sf_tensor *);
int sf_cpu_rms_norm(sf_tensor *, const sf_tensor *, const sf_tensor *, double, sf_tensor *);
int sf_cpu_modulate(sf_tensor *, const sf_tensor *, const sf_tensor *, const sf_tensor *);
int sf_cpu_gated_add(sf_tensor *, const sf_tensor *, const sf_tensor *, const sf_tensor *);
int sf_cpu_rope3d(sf_tensor *, const sf_tensor *, int64_t, int64_t, int64_t, int64_t);
int sf_cpu_attention(sf_tensor *, const sf_tensor *, const sf_tensor *, const sf_tensor *, const sf_attn_desc *, sf_tensor *);
int sf_cpu_channel_norm(sf_tensor *, const sf_tensor *, const sf_tensor *, int, int);

const sf_nn_ops sf_cpu_nn_ops = {
  .layer_norm = sf_cpu_layer_norm,
  .rms_norm = sf_cpu_rms_norm,
  .modulate = sf_cpu_modulate,
  .gated_add = sf_cpu_gated_add,
  .rope3d = sf_cpu_rope3d,
  .attention = sf_cpu_attention,
  .channel_norm = sf_cpu_channel_norm,
};
