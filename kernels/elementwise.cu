// elementwise.cu — unary, binary (tensor or scalar operand) and where over strided, broadcast views.
// Float dtypes compute in f32 (f64 for f64), integers and bool in int64, as the CPU backend.
#include "sf_device.cuh"

namespace SF_CUDA_NS {

template <class F> __device__ __forceinline__ F sf_unary_f(int op, F x, F p0, F p1) {
  switch (op) {
  case SF_UN_NEG: return -x;
  case SF_UN_ABS: return fabs(x);
  case SF_UN_EXP: return exp(x);
  case SF_UN_LOG: return log(x);
  case SF_UN_SQRT: return sqrt(x);
  case SF_UN_RSQRT: return (F)1 / sqrt(x);
  case SF_UN_SIN: return sin(x);
  case SF_UN_COS: return cos(x);
  case SF_UN_TANH: return tanh(x);
  case SF_UN_SIGMOID: return (F)1 / ((F)1 + exp(-x));
  case SF_UN_SILU: return x / ((F)1 + exp(-x));
  case SF_UN_GELU_TANH: {
    F c = (F)0.7978845608028654; /* sqrt(2/pi) */
    return (F)0.5 * x * ((F)1 + tanh(c * (x + (F)0.044715 * x * x * x)));
  }
  case SF_UN_GELU: return (F)0.5 * x * ((F)1 + erf(x * (F)0.7071067811865476));
  case SF_UN_RELU: return x > (F)0 ? x : (x != x ? x : (F)0);
  case SF_UN_RECIP: return (F)1 / x;
  case SF_UN_SQUARE: return x * x;
  case SF_UN_FLOOR: return floor(x);
  case SF_UN_CEIL: return ceil(x);
  case SF_UN_ROUND: return rint(x); /* half to even, as torch.round */
  case SF_UN_SIGN: return x > (F)0 ? (F)1 : (x < (F)0 ? (F)-1 : x);
  case SF_UN_POW: return pow(x, p0);
  case SF_UN_CLAMP: {
    F r = x;
    if (p0 == p0 && r < p0) r = p0;
    if (p1 == p1 && r > p1) r = p1;
    return r;
  }
  default: return x;
  }
}

__device__ __forceinline__ int64_t sf_unary_i(int op, int64_t x, double p0, double p1) {
  switch (op) {
  case SF_UN_NEG: return -x;
  case SF_UN_ABS: return x < 0 ? -x : x;
  case SF_UN_RELU: return x > 0 ? x : 0;
  case SF_UN_SQUARE: return x * x;
  case SF_UN_SIGN: return (x > 0) - (x < 0);
  case SF_UN_CLAMP: {
    int64_t r = x;
    if (p0 == p0 && (double)r < p0) r = (int64_t)ceil(p0);
    if (p1 == p1 && (double)r > p1) r = (int64_t)floor(p1);
    return r;
  }
  default: return x; /* floor/ceil/round of an integer */
  }
}

// cls: 0 f32 compute, 1 f64 compute, 2 int64 compute
__global__ void sf_unary_kernel(int op, void *out, int dt_out, const void *a, int dt_a, double p0, double p1, int cls,
                                sf_kiter it) {
  SF_GRID_STRIDE_LOOP(i, it.n) {
    int64_t off[2];
    sf_offsets<2>(it, i, off);
    if (op == SF_UN_ISNAN) {
      double x = sf_ld_f64(a, dt_a, off[1]);
      sf_st_i64(out, dt_out, off[0], x != x);
    } else if (op == SF_UN_LOGICAL_NOT) {
      sf_st_i64(out, dt_out, off[0], sf_ld_f64(a, dt_a, off[1]) == 0.0);
    } else if (cls == 0) {
      sf_st_f32(out, dt_out, off[0], sf_unary_f<float>(op, sf_ld_f32(a, dt_a, off[1]), (float)p0, (float)p1));
    } else if (cls == 1) {
      sf_st_f64(out, dt_out, off[0], sf_unary_f<double>(op, sf_ld_f64(a, dt_a, off[1]), p0, p1));
    } else {
      sf_st_i64(out, dt_out, off[0], sf_unary_i(op, sf_ld_i64(a, dt_a, off[1]), p0, p1));
    }
  }
}

template <class F> __device__ __forceinline__ F sf_binary_f(int op, F x, F y) {
  switch (op) {
  case SF_BIN_ADD: return x + y;
  case SF_BIN_SUB: return x - y;
  case SF_BIN_MUL: return x * y;
  case SF_BIN_DIV: return x / y;
  case SF_BIN_POW: return pow(x, y);
  case SF_BIN_MAX: return (x != x || y != y) ? x + y : (x > y ? x : y); /* NaN propagates, as torch.maximum */
  case SF_BIN_MIN: return (x != x || y != y) ? x + y : (x < y ? x : y);
  case SF_BIN_EQ: return x == y;
  case SF_BIN_NE: return x != y;
  case SF_BIN_LT: return x < y;
  case SF_BIN_LE: return x <= y;
  case SF_BIN_GT: return x > y;
  case SF_BIN_GE: return x >= y;
  case SF_BIN_AND: return (x != (F)0) && (y != (F)0);
  case SF_BIN_OR: return (x != (F)0) || (y != (F)0);
  default: return x;
  }
}

__device__ __forceinline__ int64_t sf_binary_i(int op, int64_t x, int64_t y) {
  switch (op) {
  case SF_BIN_ADD: return x + y;
  case SF_BIN_SUB: return x - y;
  case SF_BIN_MUL: return x * y;
  case SF_BIN_DIV: return y ? x / y : 0;
  case SF_BIN_POW: {
    if (y < 0) return x == 1 ? 1 : (x == -1 ? ((y & 1) ? -1 : 1) : 0);
    int64_t r = 1;
    while (y) { if (y & 1) r *= x; x *= x; y >>= 1; }
    return r;
  }
  case SF_BIN_MAX: return x > y ? x : y;
  case SF_BIN_MIN: return x < y ? x : y;
  case SF_BIN_EQ: return x == y;
  case SF_BIN_NE: return x != y;
  case SF_BIN_LT: return x < y;
  case SF_BIN_LE: return x <= y;
  case SF_BIN_GT: return x > y;
  case SF_BIN_GE: return x >= y;
  case SF_BIN_AND: return x && y;
  case SF_BIN_OR: return x || y;
  default: return x;
  }
}

// b == NULL: the scalar s takes b's place (or a's when scalar_first)
__global__ void sf_binary_kernel(int op, void *out, int dt_out, const void *a, const void *b, int dt_in, double s,
                                 int scalar_first, int cls, sf_kiter it) {
  SF_GRID_STRIDE_LOOP(i, it.n) {
    int64_t off[3];
    sf_offsets<3>(it, i, off);
    if (cls == 0) {
      float x = sf_ld_f32(a, dt_in, off[1]), y = b ? sf_ld_f32(b, dt_in, off[2]) : (float)s;
      if (!b && scalar_first) { float t = x; x = y; y = t; }
      sf_st_f32(out, dt_out, off[0], sf_binary_f<float>(op, x, y));
    } else if (cls == 1) {
      double x = sf_ld_f64(a, dt_in, off[1]), y = b ? sf_ld_f64(b, dt_in, off[2]) : s;
      if (!b && scalar_first) { double t = x; x = y; y = t; }
      sf_st_f64(out, dt_out, off[0], sf_binary_f<double>(op, x, y));
    } else {
      int64_t x = sf_ld_i64(a, dt_in, off[1]), y = b ? sf_ld_i64(b, dt_in, off[2]) : (int64_t)s;
      if (!b && scalar_first) { int64_t t = x; x = y; y = t; }
      sf_st_i64(out, dt_out, off[0], sf_binary_i(op, x, y));
    }
  }
}

__global__ void sf_where_kernel(void *out, const void *cond, int dt_cond, const void *a, const void *b, int elem,
                                sf_kiter it) {
  SF_GRID_STRIDE_LOOP(i, it.n) {
    int64_t off[4];
    sf_offsets<4>(it, i, off);
    bool c = sf_ld_i64(cond, dt_cond, off[1]) != 0;
    const void *src = c ? a : b;
    int64_t so = c ? off[2] : off[3];
    switch (elem) {
    case 1: ((uint8_t *)out)[off[0]] = ((const uint8_t *)src)[so]; break;
    case 2: ((uint16_t *)out)[off[0]] = ((const uint16_t *)src)[so]; break;
    case 4: ((uint32_t *)out)[off[0]] = ((const uint32_t *)src)[so]; break;
    default: ((uint64_t *)out)[off[0]] = ((const uint64_t *)src)[so]; break;
    }
  }
}

static int sf_compute_class(sf_dtype dt) {
  return dt == SF_F64 ? 1 : (dt == SF_F32 || dt == SF_BF16 || dt == SF_F16) ? 0 : 2;
}

int sf_k_unary(sf_unary_op op, void *out, sf_dtype dt_out, const void *a, sf_dtype dt_a, double p0, double p1,
               const sf_kiter *it) {
  if (it->n == 0) return 0;
  SF_LAUNCH(sf_unary_kernel, sf_grid_for(it->n, 256), 256, 0, sf_cuda_stream(), (int)op, out, (int)dt_out, a, (int)dt_a,
            p0, p1, sf_compute_class(dt_a), *it);
  return sf_cuda_check_launch("unary");
}

int sf_k_binary(sf_binary_op op, void *out, sf_dtype dt_out, const void *a, const void *b, sf_dtype dt_in, double s,
                bool scalar_first, const sf_kiter *it) {
  if (it->n == 0) return 0;
  SF_LAUNCH(sf_binary_kernel, sf_grid_for(it->n, 256), 256, 0, sf_cuda_stream(), (int)op, out, (int)dt_out, a, b,
            (int)dt_in, s, (int)scalar_first, sf_compute_class(dt_in), *it);
  return sf_cuda_check_launch("binary");
}

int sf_k_where(void *out, const void *cond, sf_dtype dt_cond, const void *a, const void *b, size_t elem,
               const sf_kiter *it) {
  if (it->n == 0) return 0;
  SF_LAUNCH(sf_where_kernel, sf_grid_for(it->n, 256), 256, 0, sf_cuda_stream(), out, cond, (int)dt_cond, a, b,
            (int)elem, *it);
  return sf_cuda_check_launch("where");
}

} // namespace SF_CUDA_NS
