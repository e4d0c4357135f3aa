// cuda_conv.cc — the CUDA backend's convolution table (backend/conv_ops.h) over kernels/conv.cu, attached to
// the `cuda` / `emu` backend at start-up like the nn table.
#include "backend/conv_ops.h"
#include "backend/cuda/cuda_host.h"
#include "core/error.h"
#include "core/ops.h"
#include "sf_conv_kernels.h"

namespace SF_CUDA_NS {

static sf_tensor *f32c(sf_tensor *t) {
  sf_tensor *a = sf_cast(t, SF_F32);
  sf_tensor *c = a ? sf_contiguous(a) : nullptr;
  sf_release(a);
  return c;
}

static sf_tensor *conv_nd(int nd, sf_tensor *x, sf_tensor *w, sf_tensor *b, const int *stride, const int *pad) {
  char bx[64], bw[64];
  if (x->ndim != nd + 2 || w->ndim != nd + 2 || x->shape[1] != w->shape[1]) {
    sf_error("conv%dd: input %s and weight %s do not match", nd, sf_shape_str(x, bx, sizeof bx), sf_shape_str(w, bw, sizeof bw));
    return nullptr;
  }
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
    sf_error("conv%dd: bias must be [%lld]", nd, (long long)w->shape[0]);
    return nullptr;
  }
  sf_k_conv_args a = {};
  a.N = x->shape[0], a.Cin = x->shape[1], a.Cout = w->shape[0];
  a.T = nd == 3 ? x->shape[2] : 1, a.H = x->shape[nd], a.W = x->shape[nd + 1];
  a.kt = nd == 3 ? w->shape[2] : 1, a.kh = w->shape[nd], a.kw = w->shape[nd + 1];
  a.st = nd == 3 ? stride[0] : 1, a.sh = stride[nd - 2], a.sw = stride[nd - 1];
  a.pt = nd == 3 ? pad[0] : 0, a.ph = pad[nd - 2], a.pw = pad[nd - 1];
  if (a.st < 1 || a.sh < 1 || a.sw < 1 || a.pt < 0 || a.ph < 0 || a.pw < 0) {
    sf_error("conv%dd: strides must be >= 1 and padding >= 0", nd);
    return nullptr;
  }
  a.To = (a.T + 2 * a.pt - a.kt) / a.st + 1, a.Ho = (a.H + 2 * a.ph - a.kh) / a.sh + 1, a.Wo = (a.W + 2 * a.pw - a.kw) / a.sw + 1;
  if (a.T + 2 * a.pt < a.kt || a.H + 2 * a.ph < a.kh || a.W + 2 * a.pw < a.kw) {
    sf_error("conv%dd: input %s is smaller than the kernel", nd, sf_shape_str(x, bx, sizeof bx));
    return nullptr;
  }
  sf_tensor *xc = f32c(x), *wc = xc ? f32c(w) : nullptr, *bc = (wc && b) ? f32c(b) : nullptr;
  int64_t shape[5] = {a.N, a.Cout, a.To, a.Ho, a.Wo};
  if (nd == 2) shape[2] = a.Ho, shape[3] = a.Wo;
  sf_tensor *out = (xc && wc && (!b || bc)) ? sf_empty(nd + 2, shape, SF_F32, sf_device_of(x)) : nullptr;
  if (out) {
    a.out = (float *)sf_data_ptr(out), a.x = (const float *)sf_data_ptr(xc), a.w = (const float *)sf_data_ptr(wc);
    a.b = bc ? (const float *)sf_data_ptr(bc) : nullptr;
    if (sf_dev_enter(sf_device_of(x).index) || sf_k_conv3d(&a)) {
      sf_release(out);
      out = nullptr;
    }
  }
  sf_release(xc), sf_release(wc), sf_release(bc);
  return out;
}

static sf_tensor *conv3d(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[3], const int pad[3]) {
  return conv_nd(3, x, w, b, stride, pad);
}
static sf_tensor *conv2d(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[2], const int pad[2]) {
  return conv_nd(2, x, w, b, stride, pad);
}

const sf_conv_ops sf_gpu_conv_table = {conv3d, conv2d};

} // namespace SF_CUDA_NS
