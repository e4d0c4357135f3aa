/* dispatch.h — the core's dispatch of tensor operations to the device backends (core/backend.h), without
 * autograd: checked shapes, broadcasting, type promotion, result allocation. Creation and the global RNG
 * live here too. The differentiable public operations (src/ops/ops.h) are these plus autograd recording;
 * layers below ops (backends, autograd, io) call these `sf_raw_*` forms. Results are new references;
 * inputs are borrowed; on error NULL (or -1) with sf_last_error() set. */
#ifndef SF_DISPATCH_H
#define SF_DISPATCH_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every unary op, once (docs/adding_an_op.md): X(ID, name, float_result, method)
 *   ID           SF_UN_<ID>
 *   name         the op's name in messages, autograd node names and Lua (t:<name>() when method is 1)
 *   float_result 1: an integer input gives an f32 result, as torch (exp(int) is float)
 *   method       1: a Tensor method of that name taking no argument (lua_tensor_math.c); 0: bound by hand */
#define SF_UNARY_OPS(X)                                                                                    \
  X(NEG, "neg", 0, 1) X(ABS, "abs", 0, 1) X(EXP, "exp", 1, 1) X(LOG, "log", 1, 1) X(SQRT, "sqrt", 1, 1)     \
  X(RSQRT, "rsqrt", 1, 1) X(SIN, "sin", 1, 1) X(COS, "cos", 1, 1) X(TANH, "tanh", 1, 1)                     \
  X(SIGMOID, "sigmoid", 1, 1) X(SILU, "silu", 1, 1) X(GELU_TANH, "gelu_tanh", 1, 0) X(GELU, "gelu", 1, 0)  \
  X(RELU, "relu", 0, 1) X(RECIP, "reciprocal", 1, 1) X(SQUARE, "square", 0, 1) X(FLOOR, "floor", 0, 1)      \
  X(CEIL, "ceil", 0, 1) X(ROUND, "round", 0, 1) X(SIGN, "sign", 0, 1) X(ISNAN, "isnan", 0, 1)               \
  X(LOGICAL_NOT, "logical_not", 0, 1)                                                                       \
  X(POW, "pow", 1, 0)   /* param p */                                                                     \
  X(CLAMP, "clamp", 0, 0) /* params lo, hi (NaN = unbounded) */

typedef enum {
#define SF_UN_ENUM(id, name, fl, m) SF_UN_##id,
  SF_UNARY_OPS(SF_UN_ENUM)
#undef SF_UN_ENUM
  SF_UN_COUNT
} sf_unary_op;

/* every binary op, once: X(ID, name); EQ..GE are comparisons (bool results) */
#define SF_BINARY_OPS(X)                                                                                     \
  X(ADD, "add") X(SUB, "sub") X(MUL, "mul") X(DIV, "div") X(POW, "pow") X(MAX, "maximum") X(MIN, "minimum")  \
  X(EQ, "eq") X(NE, "ne") X(LT, "lt") X(LE, "le") X(GT, "gt") X(GE, "ge") X(AND, "logical_and")             \
  X(OR, "logical_or")

typedef enum {
#define SF_BIN_ENUM(id, name) SF_BIN_##id,
  SF_BINARY_OPS(SF_BIN_ENUM)
#undef SF_BIN_ENUM
  SF_BIN_COUNT
} sf_binary_op;

/* every reduction, once: X(ID, name); STD is unbiased (torch), NORM is L2, ARGMAX/ARGMIN give i64 */
#define SF_REDUCE_OPS(X)                                                                                     \
  X(SUM, "sum") X(MEAN, "mean") X(MAX, "max") X(MIN, "min") X(STD, "std") X(NORM, "norm") X(ARGMAX, "argmax") \
  X(ARGMIN, "argmin") X(PROD, "prod")

typedef enum {
#define SF_RED_ENUM(id, name) SF_RED_##id,
  SF_REDUCE_OPS(SF_RED_ENUM)
#undef SF_RED_ENUM
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

/* ---- the same operations as ops/ops.h, never recorded by autograd ---- */
sf_tensor *sf_raw_to_device(sf_tensor *t, sf_device dev);
sf_tensor *sf_raw_cast(sf_tensor *t, sf_dtype dt);
sf_tensor *sf_raw_clone(sf_tensor *t);
sf_tensor *sf_raw_contiguous(sf_tensor *t); /* retains and returns t when already contiguous */
int sf_raw_copy_(sf_tensor *dst, sf_tensor *src);
int sf_raw_fill_(sf_tensor *t, double v);
sf_tensor *sf_raw_cat(sf_tensor **ts, int n, int dim);
double sf_item(sf_tensor *t);                 /* single-element tensor to double (syncs) */
sf_tensor *sf_raw_unary(sf_unary_op op, sf_tensor *a, double p0, double p1);
sf_tensor *sf_raw_binary(sf_binary_op op, sf_tensor *a, sf_tensor *b);
sf_tensor *sf_raw_binary_scalar(sf_binary_op op, sf_tensor *a, double s, bool scalar_first);
int sf_raw_binary_(sf_binary_op op, sf_tensor *a, sf_tensor *b);
int sf_raw_binary_scalar_(sf_binary_op op, sf_tensor *a, double s);
sf_tensor *sf_raw_where(sf_tensor *cond, sf_tensor *a, sf_tensor *b);
sf_tensor *sf_raw_reduce(sf_reduce_op op, sf_tensor *a, int dim, bool keepdim);
sf_tensor *sf_raw_softmax(sf_tensor *a, int dim, bool log);
sf_tensor *sf_raw_matmul(sf_tensor *a, sf_tensor *b);
sf_tensor *sf_raw_linear(sf_tensor *x, sf_tensor *w, sf_tensor *b);
/* the name of an op for messages and autograd nodes ("neg", "add", "sum", ...) */
const char *sf_unary_op_name(sf_unary_op op);
bool sf_unary_op_float_result(sf_unary_op op);
const char *sf_binary_op_name(sf_binary_op op);
const char *sf_reduce_op_name(sf_reduce_op op);

#define sf_raw_add(a, b) sf_raw_binary(SF_BIN_ADD, (a), (b))
#define sf_raw_sub(a, b) sf_raw_binary(SF_BIN_SUB, (a), (b))
#define sf_raw_mul(a, b) sf_raw_binary(SF_BIN_MUL, (a), (b))
#define sf_raw_div(a, b) sf_raw_binary(SF_BIN_DIV, (a), (b))

#ifdef __cplusplus
}
#endif
#endif
