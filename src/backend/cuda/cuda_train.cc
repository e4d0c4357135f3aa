// cuda_train.cc — the CUDA backend's training table (backend/train_ops.h) over kernels/train.cu, attached
// to the `cuda` / `emu` backend at start-up like the nn table.
#include <math.h>

#include "backend/cuda/cuda_host.h"
#include "backend/train_ops.h"
#include "sf_nn_kernels.h"
#include "sf_train_kernels.h"

namespace SF_CUDA_NS {

static int need_f32(const sf_tensor *t, const char *op) {
  return t && t->dtype != SF_F32 ? sf_error("%s: %s gradients must be f32 on this device", op, sf_dtype_name(t->dtype)) : 0;
}

static int tr_layer_norm_bwd(sf_tensor *dx, sf_tensor *dw, sf_tensor *db, const sf_tensor *dy, const sf_tensor *x,
                             const sf_tensor *w, double eps) {
  if (sf_enter_of(x) || need_f32(dx, "layer_norm backward") || need_f32(dw, "layer_norm backward") || need_f32(db, "layer_norm backward"))
    return -1;
  const int64_t D = x->shape[x->ndim - 1], R = D ? sf_numel(x) / D : 0;
  return sf_k_norm_bwd(sf_fptr_or_null(dx), sf_fptr_or_null(dw), sf_fptr_or_null(db), sf_data_ptr(dy), dy->dtype, sf_data_ptr(x), x->dtype,
                       w ? sf_data_ptr(w) : nullptr, w ? w->dtype : 0, R, D, eps, 0);
}

static int tr_rms_norm_bwd(sf_tensor *dx, sf_tensor *dw, const sf_tensor *dy, const sf_tensor *x, const sf_tensor *w, double eps) {
  if (sf_enter_of(x) || need_f32(dx, "rms_norm backward") || need_f32(dw, "rms_norm backward")) return -1;
  const int64_t D = x->shape[x->ndim - 1], R = D ? sf_numel(x) / D : 0;
  return sf_k_norm_bwd(sf_fptr_or_null(dx), sf_fptr_or_null(dw), nullptr, sf_data_ptr(dy), dy->dtype, sf_data_ptr(x), x->dtype,
                       w ? sf_data_ptr(w) : nullptr, w ? w->dtype : 0, R, D, eps, 1);
}

static int tr_rope3d_bwd(sf_tensor *dx, const sf_tensor *dy, int64_t F, int64_t Hp, int64_t Wp, int64_t f0) {
  if (sf_enter_of(dy) || need_f32(dx, "rope3d backward")) return -1;
  /* the transpose of a rotation is the rotation by -theta: the forward's kernel, inverted */
  return sf_k_rope3d(sf_fptr_or_null(dx), SF_F32, sf_data_ptr(dy), dy->dtype, dy->shape[0], dy->shape[1], dy->shape[2], dy->shape[3],
                     dy->stride[0], dy->stride[1], dy->stride[2], F, Hp, Wp, f0, true);
}

static int tr_attention_bwd(sf_tensor *dq, sf_tensor *dk, sf_tensor *dv, const sf_tensor *dout, const sf_tensor *q,
                            const sf_tensor *k, const sf_tensor *v, const sf_tensor *out, const sf_tensor *lse,
                            const sf_attn_desc *desc) {
  const int dev = sf_device_of(q).index;
  if (sf_enter_of(q) || need_f32(dq, "attention backward") || need_f32(dk, "attention backward") || need_f32(dv, "attention backward"))
    return -1;
  sf_k_attn_bwd_args a = {};
  a.dq = sf_fptr_or_null(dq), a.dk = sf_fptr_or_null(dk), a.dv = sf_fptr_or_null(dv);
  a.q = sf_data_ptr(q), a.k = sf_data_ptr(k), a.v = sf_data_ptr(v), a.o = sf_data_ptr(out), a.dout = sf_data_ptr(dout);
  a.dt = q->dtype, a.odt = out->dtype, a.gdt = dout->dtype;
  a.B = q->shape[0], a.Lq = q->shape[1], a.Lk = k->shape[1], a.H = q->shape[2], a.d = q->shape[3];
  for (int i = 0; i < 3; i++)
    a.qs[i] = q->stride[i], a.ks[i] = k->stride[i], a.vs[i] = v->stride[i], a.os[i] = out->stride[i], a.gs[i] = dout->stride[i];
  a.scale = (float)(desc && desc->scale > 0 ? desc->scale : 1.0 / sqrt((double)a.d));
  a.q_group = desc && desc->q_group > 0 ? desc->q_group : a.Lq;
  a.n_qg = a.Lq / a.q_group;
  a.lse = (const float *)sf_data_ptr(lse);
  const size_t nr = sizeof(int64_t) * (size_t)a.n_qg, nd = sizeof(float) * (size_t)(a.B * a.H * a.Lq);
  char *scratch = (char *)sf_alloc_get(dev, nd + (desc && desc->kv_lo ? 2 * nr : 0) + 16);
  if (!scratch) return -1;
  a.delta = (float *)scratch;
  int rc = 0;
  if (desc && desc->kv_lo) {
    int64_t *dr = (int64_t *)(scratch + ((nd + 15) & ~(size_t)15));
    int64_t *h = (int64_t *)malloc(2 * nr);
    if (!h) return sf_alloc_put(dev, scratch), sf_error("attention backward: out of host memory");
    memcpy(h, desc->kv_lo, nr);
    memcpy(h + a.n_qg, desc->kv_hi, nr);
    rc = sf_cuda_check(cudaMemcpyAsync(dr, h, 2 * nr, cudaMemcpyHostToDevice, sf_cuda_stream()), "attention backward ranges");
    if (!rc) rc = sf_cuda_check(cudaStreamSynchronize(sf_cuda_stream()), "attention backward ranges");
    free(h);
    a.kv_lo = dr, a.kv_hi = dr + a.n_qg;
  }
  if (!rc) rc = sf_k_attention_bwd(&a);
  if (!rc) rc = sf_cuda_check(cudaStreamSynchronize(sf_cuda_stream()), "attention backward");
  sf_alloc_put(dev, scratch);
  return rc;
}

static int tr_adamw(sf_tensor *param, sf_tensor *master, const sf_tensor *grad, sf_tensor *m, sf_tensor *v, double lr, double beta1,
                    double beta2, double eps, double wd, double bc1, double bc2) {
  if (sf_enter_of(param)) return -1;
  return sf_k_adamw(sf_data_ptr(param), param->dtype, sf_fptr_or_null(master), sf_data_ptr(grad), grad->dtype, sf_fptr_or_null(m), sf_fptr_or_null(v),
                    sf_numel(param), (float)(1.0 - lr * wd), (float)beta1, (float)beta2, (float)(1.0 - beta1),
                    (float)(1.0 - beta2), (float)(lr / bc1), (float)sqrt(bc2), (float)eps);
}

static int tr_sum_sq(const sf_tensor *t, double *out) {
  const int dev = sf_device_of(t).index;
  if (sf_enter_of(t)) return -1;
  double *d = (double *)sf_alloc_get(dev, sizeof(double));
  if (!d) return -1;
  int rc = sf_k_sum_sq(d, sf_data_ptr(t), t->dtype, sf_numel(t));
  if (!rc) rc = sf_cuda_check(cudaMemcpyAsync(out, d, sizeof(double), cudaMemcpyDeviceToHost, sf_cuda_stream()), "sum_sq");
  if (!rc) rc = sf_cuda_check(cudaStreamSynchronize(sf_cuda_stream()), "sum_sq");
  sf_alloc_put(dev, d);
  return rc;
}

static int tr_ema(sf_tensor *shadow, const sf_tensor *param, double decay) {
  if (sf_enter_of(shadow)) return -1;
  return sf_k_ema(sf_fptr_or_null(shadow), sf_data_ptr(param), param->dtype, sf_numel(shadow), (float)decay, (float)(1.0 - decay));
}

bool sf_gpu_fuses_unary_bwd(int op) {
  return op == SF_UN_GELU_TANH || op == SF_UN_SILU || op == SF_UN_TANH || op == SF_UN_SIGMOID;
}

static int tr_unary_bwd(int op, sf_tensor *dx, const sf_tensor *dy, const sf_tensor *x) {
  if (!sf_gpu_fuses_unary_bwd(op)) return sf_error("unary_bwd: op %d is not fused on this device", op);
  if (sf_enter_of(x)) return -1;
  return sf_k_unary_bwd(op, sf_data_ptr(dx), dx->dtype, sf_data_ptr(dy), dy->dtype, sf_data_ptr(x), x->dtype, sf_numel(x));
}

const sf_train_ops sf_gpu_train_table = {tr_layer_norm_bwd, tr_rms_norm_bwd, tr_rope3d_bwd, tr_attention_bwd, tr_adamw, tr_sum_sq, tr_ema,
                                         tr_unary_bwd, nullptr, sf_gemm_bias};

} // namespace SF_CUDA_NS
