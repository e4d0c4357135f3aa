/* tensor.h — the sfwb tensor: dtypes, devices, refcounted storage, strided views. */
#ifndef SF_TENSOR_H
#define SF_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SF_MAX_DIMS 8

/* f64 is internal (finite-difference gradient checks); the public Lua dtypes are the first seven. */
typedef enum { SF_F32 = 0, SF_BF16, SF_F16, SF_I64, SF_I32, SF_U8, SF_BOOL, SF_F64, SF_NDTYPES } sf_dtype;

typedef enum { SF_DEV_CPU = 0, SF_DEV_CUDA = 1, SF_DEV_EMU = 2, SF_NDEVTYPES } sf_devtype;
typedef struct { int8_t type; int8_t index; } sf_device;

static inline sf_device sf_cpu(void) { sf_device d = {SF_DEV_CPU, 0}; return d; }
static inline bool sf_device_eq(sf_device a, sf_device b) { return a.type == b.type && a.index == b.index; }

/* A refcounted block of memory on one device. `release` frees it (backend free, munmap, ...). */
typedef struct sf_storage {
  int refcount;
  void *data;
  size_t nbytes;
  sf_device device;
  void (*release)(struct sf_storage *s);
  void *ctx; /* owner-specific: mmap region, allocator block, ... */
  /* PyTorch's version counter, shared by every view of the storage: bumped by each in-place write
   * (copy_, fill_, add_, ...); autograd checks that a tensor saved for backward is still at the version
   * it was saved at. last_inplace names the op of the latest bump (a static string). */
  uint32_t version;
  const char *last_inplace;
} sf_storage;

struct sf_node; /* autograd node, src/autograd */

/* A view onto a storage. Tensors are refcounted; Lua userdata hold one reference.
 * shape/stride/offset are in elements; a 0-dim tensor has ndim == 0 and one element. */
typedef struct sf_tensor {
  int refcount;
  sf_storage *storage;
  int64_t offset;
  int ndim;
  int64_t shape[SF_MAX_DIMS];
  int64_t stride[SF_MAX_DIMS];
  sf_dtype dtype;
  /* autograd (owned by src/autograd; NULL/false when unused) */
  bool requires_grad;
  struct sf_tensor *grad;    /* accumulated gradient (owned reference) */
  struct sf_node *grad_fn;   /* node that produced this tensor (owned reference) */
  int output_nr;             /* which output of grad_fn */
  /* views (PyTorch's _base): a view's base is the root tensor of the view chain (owned reference; NULL for
   * a tensor that is not a view — detached aliases are not views). An in-place write through a view gives
   * the base a new history (autograd's CopySlices) and bumps base->hist; a view whose hist differs from its
   * base's takes the base's new history on its next use (src/autograd/ag_inplace.c). */
  struct sf_tensor *base;
  uint32_t hist;
} sf_tensor;

/* ---- dtypes ---- */
size_t sf_dtype_size(sf_dtype dt);
const char *sf_dtype_name(sf_dtype dt);          /* "f32", "bf16", ... */
int sf_dtype_from_name(const char *name, sf_dtype *out); /* accepts torch aliases: float32, float, bfloat16, half, ... */
bool sf_dtype_is_float(sf_dtype dt);
sf_dtype sf_promote(sf_dtype a, sf_dtype b);      /* torch type promotion between tensor dtypes */

/* ---- devices ---- */
const char *sf_device_str(sf_device d, char *buf, size_t n); /* "cpu", "cuda:0", "emu:1" */
int sf_device_parse(const char *s, sf_device *out);          /* error names the accepted forms */

/* ---- lifetime ---- */
sf_storage *sf_storage_new(sf_device dev, size_t nbytes); /* backend allocation, uninitialized */
/* wrap foreign memory (mmap, ...): release(s) is called when the last reference goes */
sf_storage *sf_storage_wrap(sf_device dev, void *data, size_t nbytes, void (*release)(sf_storage *), void *ctx);
void sf_storage_retain(sf_storage *s);
void sf_storage_release(sf_storage *s);

sf_tensor *sf_tensor_new(sf_dtype dt, sf_device dev, int ndim, const int64_t *shape); /* contiguous, uninitialized */
sf_tensor *sf_tensor_from_storage(sf_storage *s, sf_dtype dt, int ndim, const int64_t *shape,
                                  const int64_t *stride /* NULL = contiguous */, int64_t offset);
/* Per-tensor hooks of a higher layer: autograd installs them (sf_autograd_init) so that a freed tensor drops
 * its grad/grad_fn and a view of a tensor that requires grad is recorded. NULL = none (the core alone). */
typedef struct sf_tensor_hooks {
  void (*tensor_freed)(sf_tensor *t);
  void (*record_view)(sf_tensor *v, sf_tensor *base);
} sf_tensor_hooks;
void sf_tensor_set_hooks(const sf_tensor_hooks *h);

sf_tensor *sf_retain(sf_tensor *t);  /* returns t */
void sf_release(sf_tensor *t);       /* NULL-safe */

/* ---- queries ---- */
int64_t sf_numel(const sf_tensor *t);
bool sf_is_contiguous(const sf_tensor *t);
static inline sf_device sf_device_of(const sf_tensor *t) { return t->storage->device; }
/* pointer to element 0 of the view (valid to dereference on CPU only) */
static inline void *sf_data_ptr(const sf_tensor *t) {
  return (char *)t->storage->data + t->offset * (int64_t)sf_dtype_size(t->dtype);
}
const char *sf_shape_str(const sf_tensor *t, char *buf, size_t n); /* "[2, 3, 4]" */
bool sf_same_shape(const sf_tensor *a, const sf_tensor *b);

/* ---- views (share storage; dims are 0-based; negative dims count from the end) ---- */
sf_tensor *sf_view(sf_tensor *t, int ndim, const int64_t *shape);    /* one dim may be -1; needs compatible strides */
/* reshape: a view when possible, else a view of a contiguous copy. The differentiable form (the copy
 * recorded) is ops/ops.h's sf_reshape; this one copies with `contiguous` (the core's: sf_raw_reshape). */
sf_tensor *sf_raw_reshape(sf_tensor *t, int ndim, const int64_t *shape);
sf_tensor *sf_reshape_via(sf_tensor *t, int ndim, const int64_t *shape, sf_tensor *(*contiguous)(sf_tensor *));
sf_tensor *sf_permute(sf_tensor *t, const int *dims);
sf_tensor *sf_transpose(sf_tensor *t, int a, int b);
sf_tensor *sf_narrow(sf_tensor *t, int dim, int64_t start, int64_t len);
sf_tensor *sf_select(sf_tensor *t, int dim, int64_t index);
sf_tensor *sf_unsqueeze(sf_tensor *t, int dim);
sf_tensor *sf_squeeze(sf_tensor *t, int dim); /* dim = SF_ALL_DIMS squeezes every size-1 dim */
sf_tensor *sf_expand(sf_tensor *t, int ndim, const int64_t *shape); /* -1 keeps a size */
sf_tensor *sf_alias(sf_tensor *t);      /* a new view object identical to t (shares storage) */

#define SF_ALL_DIMS (-1000)

/* normalize a possibly negative dim against ndim; -1 and sets an error on out-of-range */
int sf_wrap_dim(int dim, int ndim);

#ifdef __cplusplus
}
#endif
#endif
