/* cpu_internal.h — helpers shared by the CPU backend's files: the strided iterator, dtype
 * gather/scatter into compute buffers, and the threading threshold. Not a public header. */
#ifndef SF_CPU_INTERNAL_H
#define SF_CPU_INTERNAL_H

#include <stdint.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_pool.h"
#include "core/error.h"

/* loops over fewer elements stay on one thread: below this the fork/join costs more than it saves */
#define SF_CPU_PAR_MIN 32768
/* elements per compute chunk: buffers of this size live on the stack and stay in L1 */
#define SF_CPU_CHUNK 1024

/* Compute domains: every dtype is computed as float (f32/bf16/f16, as torch does for the halves),
 * double (f64) or int64 (integers and bool). Kernels exist once per domain, not per dtype. */
typedef enum { SF_DOM_F = 0, SF_DOM_D, SF_DOM_I } sf_cpu_dom;

static inline sf_cpu_dom sf_cpu_domain(sf_dtype dt) {
  switch (dt) {
  case SF_F32: case SF_BF16: case SF_F16: return SF_DOM_F;
  case SF_F64: return SF_DOM_D;
  default: return SF_DOM_I;
  }
}

/* ---- strided iteration over up to 4 same-shape operands (operand 0 is the output) ---- */
#define SF_CPU_MAXOPS 4
typedef struct {
  int nops, ndim;
  int64_t numel;
  int64_t shape[SF_MAX_DIMS];
  int64_t stride[SF_CPU_MAXOPS][SF_MAX_DIMS]; /* in elements */
  char *base[SF_CPU_MAXOPS];
  int esz[SF_CPU_MAXOPS];
} sf_cpu_iter;

/* a contiguous run of n elements: operand k starts at p[k] and steps s[k] elements */
typedef void (*sf_cpu_seg_fn)(void *ctx, char *const *p, const int64_t *s, int64_t n);

/* operands given as tensors: all must have ts[0]'s shape */
void sf_cpu_iter_init(sf_cpu_iter *it, int nops, const sf_tensor *const *ts);
/* operands given as raw arrays (reductions build iterators over the kept dims) */
void sf_cpu_iter_init_raw(sf_cpu_iter *it, int nops, int ndim, const int64_t *shape,
                          const int64_t (*strides)[SF_MAX_DIMS], char *const *base, const int *esz);
/* operands {out, a} over a's dims with `dim` collapsed to size 1: one step per row along dim (reductions,
 * softmax); out has a's rank */
void sf_cpu_iter_init_rows(sf_cpu_iter *it, const sf_tensor *out, const sf_tensor *a, int dim);
/* calls fn over every element, split across threads when numel >= par_min */
void sf_cpu_iter_run(const sf_cpu_iter *it, sf_cpu_seg_fn fn, void *ctx, int64_t par_min);

/* ---- gather/scatter between a strided dtype array and a compute buffer (n elements) ---- */
void sf_cpu_load_f(sf_dtype dt, const char *p, int64_t s, int64_t n, float *buf);
void sf_cpu_load_d(sf_dtype dt, const char *p, int64_t s, int64_t n, double *buf);
void sf_cpu_load_i(sf_dtype dt, const char *p, int64_t s, int64_t n, int64_t *buf);
void sf_cpu_store_f(sf_dtype dt, char *p, int64_t s, int64_t n, const float *buf);
void sf_cpu_store_d(sf_dtype dt, char *p, int64_t s, int64_t n, const double *buf);
void sf_cpu_store_i(sf_dtype dt, char *p, int64_t s, int64_t n, const int64_t *buf);

/* float -> int64 without UB: out-of-range and NaN give INT64_MIN (what x86 cvttsd2si yields, as torch) */
static inline int64_t sf_cpu_d2i(double x) {
  if (x >= -9223372036854775808.0 && x < 9223372036854775808.0) return (int64_t)x;
  return INT64_MIN;
}

static inline int32_t sf_cpu_d2i32(double x) {
  if (x > -2147483649.0 && x < 2147483648.0) return (int32_t)x;
  return INT32_MIN;
}


/* memory (cpu_alloc.c): large blocks are recycled; flush returns the cached ones to the OS */
void *sf_cpu_alloc(sf_device dev, size_t nbytes);
void sf_cpu_free(sf_device dev, void *p, size_t nbytes);
void sf_cpu_cache_flush(void);

/* the CPU's op tables (cpu_nn.c, cpu_train.c) and its capability answers */
extern const struct sf_nn_ops sf_cpu_nn_ops;
extern const struct sf_train_ops sf_cpu_train_ops;
bool sf_cpu_fuses_unary_bwd(int op);
bool sf_cpu_can_matmul_acc(const sf_tensor *out, const sf_tensor *a, const sf_tensor *b);

/* the op entry points (one file each) */
int sf_cpu_copy(sf_tensor *dst, const sf_tensor *src);
int sf_cpu_fill(sf_tensor *t, double v);
int sf_cpu_unary(sf_unary_op op, sf_tensor *out, const sf_tensor *a, double p0, double p1);
int sf_cpu_binary(sf_binary_op op, sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
int sf_cpu_binary_scalar(sf_binary_op op, sf_tensor *out, const sf_tensor *a, double s, bool scalar_first);
int sf_cpu_where(sf_tensor *out, const sf_tensor *cond, const sf_tensor *a, const sf_tensor *b);
int sf_cpu_reduce(sf_reduce_op op, sf_tensor *out, const sf_tensor *a, int dim);
int sf_cpu_softmax(sf_tensor *out, const sf_tensor *a, int dim, bool log);
int sf_cpu_matmul(sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
/* bf16 x bf16 -> f32/bf16 through oneDNN (cpu_dnnl.c): 0 done, -1 error, 1 not taken (no oneDNN, other dtypes/layouts) */
int sf_cpu_matmul_dnnl(sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
int sf_cpu_random(sf_tensor *out, uint64_t seed, uint64_t offset, int kind);

#endif
