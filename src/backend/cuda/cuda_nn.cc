// cuda_nn.cc — the CUDA backend's fused model-op table (backend/nn_ops.h) over kernels/nn_*.cu, attached to
// the `cuda` / `emu` backend at start-up (built once per device kind like the other host files).
#include "backend/cuda/cuda_host.h"
#include "backend/nn_ops.h"
#include "sf_nn_kernels.h"

namespace SF_CUDA_NS {

static int nn_layer_norm(sf_tensor *out, const sf_tensor *x, const sf_tensor *w, const sf_tensor *b, double eps, sf_tensor *mean,
                         sf_tensor *rstd) {
  if (sf_enter_of(x)) return -1;
  const int64_t D = x->shape[x->ndim - 1], R = D ? sf_numel(x) / D : 0;
  return sf_k_layer_norm(sf_data_ptr(out), sf_ptr_or_null(x), x->dtype, sf_ptr_or_null(w), w ? w->dtype : 0, sf_ptr_or_null(b), b ? b->dtype : 0, R, D, eps,
                         sf_fptr_or_null(mean), sf_fptr_or_null(rstd));
}

static int nn_rms_norm(sf_tensor *out, const sf_tensor *x, const sf_tensor *w, double eps, sf_tensor *rstd) {
  if (sf_enter_of(x)) return -1;
  const int64_t D = x->shape[x->ndim - 1], R = D ? sf_numel(x) / D : 0;
  return sf_k_rms_norm(sf_data_ptr(out), sf_ptr_or_null(x), x->dtype, sf_ptr_or_null(w), w ? w->dtype : 0, R, D, eps, sf_fptr_or_null(rstd));
}

static int nn_modulate(sf_tensor *out, const sf_tensor *x, const sf_tensor *shift, const sf_tensor *scale) {
  if (sf_enter_of(x)) return -1;
  return sf_k_modulate(sf_data_ptr(out), sf_ptr_or_null(x), x->dtype, sf_ptr_or_null(shift), shift->dtype, shift->stride[0], sf_ptr_or_null(scale), scale->dtype,
                       scale->stride[0], x->shape[0], x->shape[1], x->shape[2], 0);
}

static int nn_gated_add(sf_tensor *out, const sf_tensor *x, const sf_tensor *y, const sf_tensor *gate) {
  if (sf_enter_of(x)) return -1;
  return sf_k_modulate(sf_data_ptr(out), sf_ptr_or_null(x), x->dtype, sf_ptr_or_null(gate), gate->dtype, gate->stride[0], sf_ptr_or_null(y), y->dtype, 0,
                       x->shape[0], x->shape[1], x->shape[2], 1);
}

static int nn_rope3d(sf_tensor *out, const sf_tensor *x, int64_t F, int64_t Hp, int64_t Wp, int64_t f0) {
  if (sf_enter_of(x)) return -1;
  return sf_k_rope3d(sf_data_ptr(out), out->dtype, sf_ptr_or_null(x), x->dtype, x->shape[0], x->shape[1], x->shape[2], x->shape[3],
                     x->stride[0], x->stride[1], x->stride[2], F, Hp, Wp, f0, false);
}

static int nn_attention(sf_tensor *out, const sf_tensor *q, const sf_tensor *k, const sf_tensor *v, const sf_attn_desc *desc,
                        sf_tensor *lse) {
  const int dev = sf_device_of(q).index;
  if (sf_enter_of(q)) return -1;
  sf_k_attn_args a = {};
  a.out = sf_data_ptr(out), a.q = sf_ptr_or_null(q), a.k = sf_ptr_or_null(k), a.v = sf_ptr_or_null(v), a.dt = q->dtype;
  a.B = q->shape[0], a.Lq = q->shape[1], a.Lk = k->shape[1], a.H = q->shape[2], a.d = q->shape[3];
  for (int i = 0; i < 3; i++) a.qs[i] = q->stride[i], a.ks[i] = k->stride[i], a.vs[i] = v->stride[i];
  a.scale = (float)desc->scale;
  a.q_group = desc->q_group, a.n_qg = a.Lq / desc->q_group;
  a.k_group = desc->k_group, a.n_kg = a.Lk / desc->k_group;
  a.cap_logits = sf_fptr_or_null(desc->cap_logits), a.cap_probs = sf_fptr_or_null(desc->cap_probs), a.lse = sf_fptr_or_null(lse);
  a.tq0 = desc->tq0, a.tq1 = desc->tq1, a.tk0 = desc->tk0, a.tk1 = desc->tk1;
  a.tok_logits = sf_fptr_or_null(desc->tok_logits), a.tok_probs = sf_fptr_or_null(desc->tok_probs);
  int64_t *dr = nullptr;
  if (desc->kv_lo) {
    const size_t nb = sizeof(int64_t) * (size_t)a.n_qg;
    dr = (int64_t *)sf_alloc_get(dev, 2 * nb);
    if (!dr) return -1;
    int64_t *h = (int64_t *)malloc(2 * nb);
    if (!h) return sf_alloc_put(dev, dr), sf_error("attention: out of host memory");
    memcpy(h, desc->kv_lo, nb);
    memcpy(h + a.n_qg, desc->kv_hi, nb);
    int rc = sf_cuda_check(cudaMemcpyAsync(dr, h, 2 * nb, cudaMemcpyHostToDevice, sf_cuda_stream()), "attention ranges");
    if (!rc) rc = sf_cuda_check(cudaStreamSynchronize(sf_cuda_stream()), "attention ranges");
    free(h);
    if (rc) return sf_alloc_put(dev, dr), -1;
    a.kv_lo = dr, a.kv_hi = dr + a.n_qg;
  }
  /* a capture after the tensor-core kernel reads its log-sum-exp: give it one when the caller did not */
  float *tmp_lse = nullptr;
  if (!a.lse && (a.cap_logits || a.cap_probs || a.tok_logits || a.tok_probs)) {
    tmp_lse = (float *)sf_alloc_get(dev, sizeof(float) * (size_t)(a.B * a.H * a.Lq) + 16);
    if (!tmp_lse) {
      if (dr) sf_alloc_put(dev, dr);
      return -1;
    }
    a.lse = tmp_lse;
  }
  int rc = sf_k_attention(&a);
  if (dr || tmp_lse) {
    /* the caching allocator hands blocks back in stream order only after the kernel is done */
    if (!rc) rc = sf_cuda_check(cudaStreamSynchronize(sf_cuda_stream()), "attention");
    if (dr) sf_alloc_put(dev, dr);
    if (tmp_lse) sf_alloc_put(dev, tmp_lse);
  }
  return rc;
}

const sf_nn_ops sf_gpu_nn_table = {nn_layer_norm, nn_rms_norm, nn_modulate, nn_gated_add, nn_rope3d, nn_attention};

} // namespace SF_CUDA_NS
