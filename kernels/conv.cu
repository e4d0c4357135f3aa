// conv.cu — 3-D convolution (2-D as kt = 1) as an implicit GEMM: out[co, p] = sum_k w[co, k] * col[k, p]
// with the im2col matrix never stored; each block owns 32 output channels x 32 output positions, stages
// 16-deep slices of the weights and of the gathered input in shared memory, and every one of its 256
// threads accumulates a 2x2 patch in f32. Tiles are visited with a grid-stride loop.
#include "sf_conv_kernels.h"
#include "sf_device.cuh"

namespace SF_CUDA_NS {

#define SF_CONV_TM 32
#define SF_CONV_TN 32
#define SF_CONV_TK 16

__global__ void sf_conv3d_igemm_kernel(sf_k_conv_args a) {
  __shared__ float As[SF_CONV_TK][SF_CONV_TM + 1];
  __shared__ float Bs[SF_CONV_TK][SF_CONV_TN + 1];
  const int64_t K = a.Cin * a.kt * a.kh * a.kw, P = a.To * a.Ho * a.Wo, NP = a.N * P;
  const int64_t tiles_m = (a.Cout + SF_CONV_TM - 1) / SF_CONV_TM, tiles_n = (NP + SF_CONV_TN - 1) / SF_CONV_TN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  for (int64_t tile = blockIdx.x; tile < tiles_m * tiles_n; tile += gridDim.x) {
    const int64_t m0 = (tile / tiles_n) * SF_CONV_TM, n0 = (tile % tiles_n) * SF_CONV_TN;
    float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    for (int64_t k0 = 0; k0 < K; k0 += SF_CONV_TK) {
      for (int i = threadIdx.x; i < SF_CONV_TK * SF_CONV_TM; i += blockDim.x) {
        const int kk = i / SF_CONV_TM, mm = i % SF_CONV_TM;
        const int64_t m = m0 + mm, k = k0 + kk;
        As[kk][mm] = (m < a.Cout && k < K) ? a.w[m * K + k] : 0.0f;
      }
      for (int i = threadIdx.x; i < SF_CONV_TK * SF_CONV_TN; i += blockDim.x) {
        const int kk = i / SF_CONV_TN, nn = i % SF_CONV_TN;
        const int64_t k = k0 + kk, n = n0 + nn;
        float v = 0.0f;
        if (k < K && n < NP) {
          const int64_t dx = k % a.kw, dy = (k / a.kw) % a.kh, dt = (k / (a.kw * a.kh)) % a.kt, ci = k / (a.kw * a.kh * a.kt);
          const int64_t nb = n / P, p = n % P, ox = p % a.Wo, oy = (p / a.Wo) % a.Ho, ot = p / (a.Wo * a.Ho);
          const int64_t t = ot * a.st + dt - a.pt, y = oy * a.sh + dy - a.ph, xx = ox * a.sw + dx - a.pw;
          if (t >= 0 && t < a.T && y >= 0 && y < a.H && xx >= 0 && xx < a.W)
            v = a.x[(((nb * a.Cin + ci) * a.T + t) * a.H + y) * a.W + xx];
        }
        Bs[kk][nn] = v;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < SF_CONV_TK; kk++) {
        const float a0 = As[kk][ty * 2], a1 = As[kk][ty * 2 + 1];
        const float b0 = Bs[kk][tx * 2], b1 = Bs[kk][tx * 2 + 1];
        acc[0][0] += a0 * b0, acc[0][1] += a0 * b1, acc[1][0] += a1 * b0, acc[1][1] += a1 * b1;
      }
      __syncthreads();
    }
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++) {
        const int64_t m = m0 + ty * 2 + i, n = n0 + tx * 2 + j;
        if (m < a.Cout && n < NP) {
          const int64_t nb = n / P, p = n % P;
          a.out[(nb * a.Cout + m) * P + p] = acc[i][j] + (a.b ? a.b[m] : 0.0f);
        }
      }
  }
}

int sf_k_conv3d(const sf_k_conv_args *a) {
  const int64_t NP = a->N * a->To * a->Ho * a->Wo;
  if (NP == 0 || a->Cout == 0) return 0;
  const int64_t tiles = ((a->Cout + SF_CONV_TM - 1) / SF_CONV_TM) * ((NP + SF_CONV_TN - 1) / SF_CONV_TN);
  SF_LAUNCH(sf_conv3d_igemm_kernel, sf_grid_for(tiles, 1), 256, 0, sf_cuda_stream(), *a);
  return sf_cuda_check_launch("conv3d");
}

} // namespace SF_CUDA_NS
