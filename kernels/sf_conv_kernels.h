/* sf_conv_kernels.h — launcher of the implicit-GEMM convolution (kernels/conv.cu), called by the CUDA
 * backend's conv table (src/backend/cuda/cuda_conv.cc). Returns 0, or -1 + sf_error. */
#ifndef SF_CONV_KERNELS_H
#define SF_CONV_KERNELS_H

#include "sf_kernels.h"

namespace SF_CUDA_NS {

struct sf_k_conv_args {
  float *out;                  /* [N, Cout, To, Ho, Wo] contiguous f32 */
  const float *x, *w, *b;      /* x [N, Cin, T, H, W], w [Cout, Cin, kt, kh, kw] contiguous f32; b [Cout] or NULL */
  int64_t N, Cin, T, H, W, Cout, kt, kh, kw, To, Ho, Wo;
  int64_t st, sh, sw, pt, ph, pw; /* strides and symmetric zero padding (torch semantics) */
};

int sf_k_conv3d(const sf_k_conv_args *a);

} // namespace SF_CUDA_NS
#endif
