/* ops.h — the public tensor operations. Each checks its arguments, allocates the result on the inputs'
 * device and dispatches to that device's backend (backend.h). Results are new references (refcount 1);
 * inputs are borrowed. On error: NULL (or -1) with sf_last_error() set; nothing leaks. */
#ifndef SF_OPS_H
#define SF_OPS_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  SF_UN_NEG, SF_UN_ABS, SF_UN_EXP, SF_UN_LOG, SF_UN_SQRT, SF_UN_RSQRT, SF_UN_SIN, SF_UN_COS, SF_UN_TANH,
  SF_UN_SIGMOID, SF_UN_SILU, SF_UN_GELU_TANH, SF_UN_GELU, SF_UN_RELU, SF_UN_RECIP, SF_UN_SQUARE,
  SF_UN_FLOOR, SF_UN_CEIL, SF_UN_ROUND, SF_UN_SIGN, SF_UN_ISNAN, SF_UN_LOGICAL_NOT,
  SF_UN_POW,    /* param p */
  SF_UN_CLAMP,  /* params lo, hi (NaN = unbounded) */
  SF_UN_COUNT
} sf_unary_op;

typedef enum {
  SF_BIN_ADD, SF_BIN_SUB, SF_BIN_MUL, SF_BIN_DIV, SF_BIN_POW, SF_BIN_MAX, SF_BIN_MIN,
  SF_BIN_EQ, SF_BIN_NE, SF_BIN_LT, SF_BIN_LE, SF_BIN_GT, SF_BIN_GE, /* comparisons give bool */
  SF_BIN_AND, SF_BIN_OR,
  SF_BIN_COUNT
} sf_binary_op;

typedef enum {
  SF_RED_SUM, SF_RED_MEAN, SF_RED_MAX, SF_RED_MIN, SF_RED_STD /* unbiased, as torch */,
  SF_RED_NORM /* L2 */, SF_RED_ARGMAX /* i64 */, SF_RED_ARGMIN, SF_RED_PROD,
  SF_RED_COUNT
} sf_reduce_op;

/* ---- creation ---- */
sf_tensor *sf_empty(int ndim, const int64_t *shape, sf_dtype dt, sf_device dev);
sf_tensor *sf_zeros(int ndim, const int64_t *shape, sf_dtype dt, sf_device dev);
sf_tensor *sf_full(int ndim, const int64_t *shape, double v, sf_dtype dt, sf_device dev);
sf_tensor *sf_arange(double start, double end, double step, sf_dtype dt, sf_device dev);
/* counter-based RNG (Philox4x32-10): element i of a draw uses counter (offset + i); identical on every device */
sf_tensor *sf_randn(int ndim, const int64_t *shape, sf_dtype dt, sf_device dev);
sf_tensor *sf_rand(int ndim, const int64_t *shape, sf_dtype dt, sf_device dev);
void sf_manual_seed(uint64_t seed);
/* the global generator: a draw of n elements uses offsets [offset, offset + n) then advances offset */
void sf_rng_state(uint64_t *seed, uint64_t *offset);
void sf_rng_set_state(uint64_t seed, uint64_t offset);

/* ---- data movement ---- */
sf_tensor *sf_to_device(sf_tensor *t, sf_device dev);      /* retains t when already there */
sf_tensor *sf_cast(sf_tensor *t, sf_dtype dt);              /* retains t when already that dtype */
sf_tensor *sf_clone(sf_tensor *t);                          /* contiguous copy */
int sf_copy_(sf_tensor *dst, sf_tensor *src);               /* broadcast src into dst, casting; any devices */
int sf_fill_(sf_tensor *t, double v);
sf_tensor *sf_cat(sf_tensor **ts, int n, int dim);
sf_tensor *sf_stack(sf_tensor **ts, int n, int dim);
double sf_item(sf_tensor *t);                               /* single-element tensor to double (syncs) */

/* ---- elementwise ---- */
sf_tensor *sf_unary(sf_unary_op op, sf_tensor *a, double p0, double p1);
sf_tensor *sf_binary(sf_binary_op op, sf_tensor *a, sf_tensor *b);          /* broadcasting, type promotion */
sf_tensor *sf_binary_scalar(sf_binary_op op, sf_tensor *a, double s, bool scalar_first); /* s op a when scalar_first */
int sf_binary_(sf_binary_op op, sf_tensor *a, sf_tensor *b);                /* in place: a = a op b */
int sf_binary_scalar_(sf_binary_op op, sf_tensor *a, double s);
sf_tensor *sf_where(sf_tensor *cond, sf_tensor *a, sf_tensor *b);

#define sf_add(a, b) sf_binary(SF_BIN_ADD, (a), (b))
#define sf_sub(a, b) sf_binary(SF_BIN_SUB, (a), (b))
#define sf_mul(a, b) sf_binary(SF_BIN_MUL, (a), (b))
#define sf_div(a, b) sf_binary(SF_BIN_DIV, (a), (b))

/* ---- reductions: dim = SF_ALL_DIMS reduces everything to a 0-dim tensor ---- */
sf_tensor *sf_reduce(sf_reduce_op op, sf_tensor *a, int dim, bool keepdim);
sf_tensor *sf_softmax(sf_tensor *a, int dim);
sf_tensor *sf_log_softmax(sf_tensor *a, int dim);

/* ---- linear algebra: [..., M, K] x [..., K, N], batch dims broadcast; 1-D operands as torch.matmul.
 * bf16/f16 inputs compute in f32 and return the input dtype. */
sf_tensor *sf_matmul(sf_tensor *a, sf_tensor *b);
/* y = x W^T + b as torch.nn.functional.linear (W [out, in], b [out] or NULL) */
sf_tensor *sf_linear(sf_tensor *x, sf_tensor *w, sf_tensor *b);

/* ---- comparison helpers ---- */
double sf_max_abs_diff(sf_tensor *a, sf_tensor *b); /* NaN-aware; -1 on error */
int sf_allclose(sf_tensor *a, sf_tensor *b, double rtol, double atol, bool *out);

#ifdef __cplusplus
}
#endif
#endif
