/* ops.h — the public, differentiable tensor operations: the core's dispatch (core/dispatch.h: checks,
 * allocation, the device backend) plus autograd recording when an input requires grad (PyTorch's
 * VariableType layer). Creation and the op kinds come from core/dispatch.h. Results are new references
 * (refcount 1); inputs are borrowed. On error: NULL (or -1) with sf_last_error() set; nothing leaks. */
#ifndef SF_OPS_H
#define SF_OPS_H

#include "core/dispatch.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- data movement ---- */
sf_tensor *sf_contiguous(sf_tensor *t); /* retains and returns t when already contiguous */
sf_tensor *sf_reshape(sf_tensor *t, int ndim, const int64_t *shape); /* view when possible, else a recorded copy */
sf_tensor *sf_to_device(sf_tensor *t, sf_device dev);      /* retains t when already there */
sf_tensor *sf_cast(sf_tensor *t, sf_dtype dt);              /* retains t when already that dtype */
sf_tensor *sf_clone(sf_tensor *t);                          /* contiguous copy */
int sf_copy_(sf_tensor *dst, sf_tensor *src);               /* broadcast src into dst, casting; any devices */
int sf_fill_(sf_tensor *t, double v);
sf_tensor *sf_cat(sf_tensor **ts, int n, int dim);
sf_tensor *sf_stack(sf_tensor **ts, int n, int dim);

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
