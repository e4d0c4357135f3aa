/* tensor.c — storage and tensor lifetime, queries, and the view operations (no data is touched). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/tensor.h"

/* ---- storage ---- */

static void storage_release_backend(sf_storage *s) {
  const sf_backend *b = sf_backend_for(s->device);
  if (b && s->data) b->free(s->device, s->data, s->nbytes);
}

sf_storage *sf_storage_new(sf_device dev, size_t nbytes) {
  const sf_backend *b = sf_backend_for(dev);
  if (!b) return NULL;
  sf_storage *s = calloc(1, sizeof *s);
  if (!s) { sf_error("out of host memory for a storage header"); return NULL; }
  s->data = b->alloc(dev, nbytes);
  if (!s->data && nbytes) { free(s); return NULL; }
  s->refcount = 1;
  s->nbytes = nbytes;
  s->device = dev;
  s->release = storage_release_backend;
  return s;
}

sf_storage *sf_storage_wrap(sf_device dev, void *data, size_t nbytes, void (*release)(sf_storage *), void *ctx) {
  sf_storage *s = calloc(1, sizeof *s);
  if (!s) { sf_error("out of host memory for a storage header"); return NULL; }
  s->refcount = 1;
  s->data = data;
  s->nbytes = nbytes;
  s->device = dev;
  s->release = release;
  s->ctx = ctx;
  return s;
}

void sf_storage_retain(sf_storage *s) { atomic_fetch_add_explicit((_Atomic int *)&s->refcount, 1, memory_order_relaxed); }

void sf_storage_release(sf_storage *s) {
  if (!s) return;
  if (atomic_fetch_sub_explicit((_Atomic int *)&s->refcount, 1, memory_order_acq_rel) != 1) return;
  if (s->release) s->release(s);
  free(s);
}

/* ---- tensors ---- */

static int check_shape(int ndim, const int64_t *shape, int64_t *numel) {
  if (ndim < 0 || ndim > SF_MAX_DIMS) return sf_error("a tensor has at most %d dims, got %d", SF_MAX_DIMS, ndim);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return sf_error("negative size %lld at dim %d", (long long)shape[i], i + 1);
    if (shape[i] && n > INT64_MAX / 16 / shape[i]) return sf_error("tensor size overflows at dim %d", i + 1);
    n *= shape[i];
  }
  *numel = n;
  return 0;
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
}

sf_tensor *sf_tensor_from_storage(sf_storage *s, sf_dtype dt, int ndim, const int64_t *shape, const int64_t *stride,
                                  int64_t offset) {
  int64_t numel;
  if ((unsigned)dt >= SF_NDTYPES) { sf_error("invalid dtype code %d", (int)dt); return NULL; }
  if (check_shape(ndim, shape, &numel)) return NULL;
  sf_tensor *t = calloc(1, sizeof *t);
  if (!t) { sf_error("out of host memory for a tensor header"); return NULL; }
  t->refcount = 1;
  t->storage = s;
  sf_storage_retain(s);
  t->offset = offset;
  t->ndim = ndim;
  t->dtype = dt;
  /* a 0-dim tensor may come with shape == NULL (memcpy of 0 bytes from NULL is still UB) */
  if (ndim > 0) memcpy(t->shape, shape, sizeof(int64_t) * ndim);
  if (ndim > 0 && stride) memcpy(t->stride, stride, sizeof(int64_t) * ndim);
  else contiguous_strides(ndim, shape, t->stride);
  return t;
}

sf_tensor *sf_tensor_new(sf_dtype dt, sf_device dev, int ndim, const int64_t *shape) {
  int64_t numel = 0;
  if ((unsigned)dt >= SF_NDTYPES) { sf_error("invalid dtype code %d", (int)dt); return NULL; }
  if (check_shape(ndim, shape, &numel)) return NULL;
  sf_storage *s = sf_storage_new(dev, (size_t)numel * sf_dtype_size(dt));
  if (!s) return NULL;
  sf_tensor *t = sf_tensor_from_storage(s, dt, ndim, shape, NULL, 0);
  sf_storage_release(s);
  return t;
}

sf_tensor *sf_retain(sf_tensor *t) {
  if (t) atomic_fetch_add_explicit((_Atomic int *)&t->refcount, 1, memory_order_relaxed);
  return t;
}

/* the hooks of a higher layer (autograd installs them; the core never names it) */
static const sf_tensor_hooks *g_hooks;
void sf_tensor_set_hooks(const sf_tensor_hooks *h) { g_hooks = h; }

void sf_release(sf_tensor *t) {
  if (!t) return;
  if (atomic_fetch_sub_explicit((_Atomic int *)&t->refcount, 1, memory_order_acq_rel) != 1) return;
  if (g_hooks) g_hooks->tensor_freed(t);
  sf_release(t->base);
  sf_storage_release(t->storage);
  free(t);
}

int64_t sf_numel(const sf_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

bool sf_is_contiguous(const sf_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] == 1) continue;
    if (t->shape[i] == 0) return true;
    if (t->stride[i] != s) return false;
    s *= t->shape[i];
  }
  return true;
}

const char *sf_shape_str(const sf_tensor *t, char *buf, size_t n) {
  size_t k = 0;
  k += snprintf(buf + k, n - k, "[");
  for (int i = 0; i < t->ndim && k < n; i++) k += snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

bool sf_same_shape(const sf_tensor *a, const sf_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

int sf_wrap_dim(int dim, int ndim) {
  int n = ndim > 0 ? ndim : 1;
  int d = dim < 0 ? dim + n : dim;
  if (d < 0 || d >= n)
    return sf_error("dim %d is out of range for a tensor with %d dim%s (valid: 1..%d, or -%d..-1 from the end)",
                    dim >= 0 ? dim + 1 : dim, ndim, ndim == 1 ? "" : "s", n, n);
  return d;
}

/* ---- views: new tensor objects over the same storage ---- */

static sf_tensor *make_view(sf_tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
  sf_tensor *v = sf_tensor_from_storage(t->storage, t->dtype, ndim, shape, stride, offset);
  if (!v) return NULL;
  v->base = sf_retain(t->base ? t->base : t);
  v->hist = v->base->hist;
  if (g_hooks) g_hooks->record_view(v, t);
  return v;
}

sf_tensor *sf_alias(sf_tensor *t) { return make_view(t, t->ndim, t->shape, t->stride, t->offset); }

/* resolve one -1 in a requested shape against numel */
static int infer_shape(const sf_tensor *t, int ndim, const int64_t *in, int64_t *out) {
  int64_t numel = sf_numel(t), known = 1;
  int infer = -1;
  char buf[128];
  if (ndim > SF_MAX_DIMS) return sf_error("a tensor has at most %d dims, got %d", SF_MAX_DIMS, ndim);
  for (int i = 0; i < ndim; i++) {
    out[i] = in[i];
    if (in[i] == -1) {
      if (infer >= 0) return sf_error("only one dim may be -1 in a view/reshape");
      infer = i;
    } else if (in[i] < 0) {
      return sf_error("invalid size %lld at dim %d of a view/reshape", (long long)in[i], i + 1);
    } else {
      known *= in[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known) goto bad;
    out[infer] = numel / known;
  } else if (known != numel) {
    goto bad;
  }
  return 0;
bad:;
  char req[160];
  size_t k = snprintf(req, sizeof req, "[");
  for (int i = 0; i < ndim && k < sizeof req; i++) k += snprintf(req + k, sizeof req - k, i ? ", %lld" : "%lld", (long long)in[i]);
  if (k < sizeof req) snprintf(req + k, sizeof req - k, "]");
  return sf_error("shape %s is invalid for a tensor of shape %s (%lld elements)", req, sf_shape_str(t, buf, sizeof buf),
                  (long long)numel);
}

/* strides for viewing t as `shape` without copying, as torch's computeStride; false if impossible */
static bool view_strides(const sf_tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
  int64_t numel = sf_numel(t);
  if (numel == 0 || t->ndim == 0) {
    contiguous_strides(ndim, shape, stride);
    return true;
  }
  int view_d = ndim - 1;
  int64_t chunk_base_stride = t->stride[t->ndim - 1], tensor_numel = 1, view_numel = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    tensor_numel *= t->shape[d];
    if (d == 0 || (t->shape[d - 1] != 1 && t->stride[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        stride[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = t->stride[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

sf_tensor *sf_view(sf_tensor *t, int ndim, const int64_t *shape) {
  int64_t sh[SF_MAX_DIMS], st[SF_MAX_DIMS];
  char buf[128];
  if (infer_shape(t, ndim, shape, sh)) return NULL;
  if (!view_strides(t, ndim, sh, st)) {
    sf_error("view of a tensor of shape %s with incompatible strides; use reshape (which copies) or contiguous() first",
             sf_shape_str(t, buf, sizeof buf));
    return NULL;
  }
  return make_view(t, ndim, sh, st, t->offset);
}

/* reshape = a view when the strides allow one, else a view of a contiguous copy. The copy here is the core's
 * (not recorded); ops/ops.c's sf_reshape is the same with a recorded copy. */
static sf_tensor *reshape_with(sf_tensor *t, int ndim, const int64_t *shape, sf_tensor *(*contiguous)(sf_tensor *)) {
  int64_t sh[SF_MAX_DIMS], st[SF_MAX_DIMS];
  if (infer_shape(t, ndim, shape, sh)) return NULL;
  if (view_strides(t, ndim, sh, st)) return make_view(t, ndim, sh, st, t->offset);
  sf_tensor *c = contiguous(t);
  if (!c) return NULL;
  sf_tensor *v = sf_view(c, ndim, sh);
  sf_release(c);
  return v;
}

sf_tensor *sf_raw_reshape(sf_tensor *t, int ndim, const int64_t *shape) { return reshape_with(t, ndim, shape, sf_raw_contiguous); }
sf_tensor *sf_reshape_via(sf_tensor *t, int ndim, const int64_t *shape, sf_tensor *(*contiguous)(sf_tensor *)) {
  return reshape_with(t, ndim, shape, contiguous);
}

sf_tensor *sf_permute(sf_tensor *t, const int *dims) {
  int64_t sh[SF_MAX_DIMS], st[SF_MAX_DIMS];
  bool seen[SF_MAX_DIMS] = {0};
  for (int i = 0; i < t->ndim; i++) {
    int d = sf_wrap_dim(dims[i], t->ndim);
    if (d < 0) return NULL;
    if (seen[d]) { sf_error("permute: dim %d appears twice", d + 1); return NULL; }
    seen[d] = true;
    sh[i] = t->shape[d];
    st[i] = t->stride[d];
  }
  return make_view(t, t->ndim, sh, st, t->offset);
}

sf_tensor *sf_transpose(sf_tensor *t, int a, int b) {
  if (t->ndim == 0) return sf_alias(t);
  int da = sf_wrap_dim(a, t->ndim), db = sf_wrap_dim(b, t->ndim);
  if (da < 0 || db < 0) return NULL;
  int64_t sh[SF_MAX_DIMS], st[SF_MAX_DIMS];
  memcpy(sh, t->shape, sizeof sh);
  memcpy(st, t->stride, sizeof st);
  sh[da] = t->shape[db]; st[da] = t->stride[db];
  sh[db] = t->shape[da]; st[db] = t->stride[da];
  return make_view(t, t->ndim, sh, st, t->offset);
}

sf_tensor *sf_narrow(sf_tensor *t, int dim, int64_t start, int64_t len) {
  if (t->ndim == 0) { sf_error("narrow: cannot narrow a 0-dim tensor"); return NULL; }
  int d = sf_wrap_dim(dim, t->ndim);
  if (d < 0) return NULL;
  if (start < 0) start += t->shape[d];
  if (start < 0 || len < 0 || start + len > t->shape[d]) {
    sf_error("narrow: range [%lld, %lld) is out of bounds for dim %d of size %lld", (long long)start + 1,
             (long long)(start + len) + 1, d + 1, (long long)t->shape[d]);
    return NULL;
  }
  int64_t sh[SF_MAX_DIMS];
  memcpy(sh, t->shape, sizeof sh);
  sh[d] = len;
  return make_view(t, t->ndim, sh, t->stride, t->offset + start * t->stride[d]);
}

sf_tensor *sf_select(sf_tensor *t, int dim, int64_t index) {
  if (t->ndim == 0) { sf_error("select: cannot index a 0-dim tensor"); return NULL; }
  int d = sf_wrap_dim(dim, t->ndim);
  if (d < 0) return NULL;
  int64_t i = index < 0 ? index + t->shape[d] : index;
  if (i < 0 || i >= t->shape[d]) {
    sf_error("index %lld is out of range for dim %d of size %lld (valid: 1..%lld)", (long long)index + 1, d + 1,
             (long long)t->shape[d], (long long)t->shape[d]);
    return NULL;
  }
  int64_t sh[SF_MAX_DIMS], st[SF_MAX_DIMS];
  int k = 0;
  for (int j = 0; j < t->ndim; j++)
    if (j != d) { sh[k] = t->shape[j]; st[k] = t->stride[j]; k++; }
  return make_view(t, t->ndim - 1, sh, st, t->offset + i * t->stride[d]);
}

sf_tensor *sf_unsqueeze(sf_tensor *t, int dim) {
  int d = sf_wrap_dim(dim, t->ndim + 1);
  if (d < 0) return NULL;
  if (t->ndim >= SF_MAX_DIMS) { sf_error("unsqueeze: a tensor has at most %d dims", SF_MAX_DIMS); return NULL; }
  int64_t sh[SF_MAX_DIMS], st[SF_MAX_DIMS];
  for (int j = 0, k = 0; j <= t->ndim; j++) {
    if (j == d) {
      sh[j] = 1;
      st[j] = d < t->ndim ? t->shape[d] * t->stride[d] : 1;
    } else {
      sh[j] = t->shape[k];
      st[j] = t->stride[k];
      k++;
    }
  }
  return make_view(t, t->ndim + 1, sh, st, t->offset);
}

sf_tensor *sf_squeeze(sf_tensor *t, int dim) {
  int64_t sh[SF_MAX_DIMS], st[SF_MAX_DIMS];
  int d = -1, k = 0;
  if (dim != SF_ALL_DIMS) {
    if (t->ndim == 0) return sf_alias(t);
    d = sf_wrap_dim(dim, t->ndim);
    if (d < 0) return NULL;
  }
  for (int j = 0; j < t->ndim; j++) {
    bool drop = t->shape[j] == 1 && (dim == SF_ALL_DIMS || j == d);
    if (!drop) { sh[k] = t->shape[j]; st[k] = t->stride[j]; k++; }
  }
  return make_view(t, k, sh, st, t->offset);
}

sf_tensor *sf_expand(sf_tensor *t, int ndim, const int64_t *shape) {
  char buf[128];
  if (ndim < t->ndim || ndim > SF_MAX_DIMS) {
    sf_error("expand: cannot expand a tensor of shape %s to %d dims", sf_shape_str(t, buf, sizeof buf), ndim);
    return NULL;
  }
  int64_t sh[SF_MAX_DIMS], st[SF_MAX_DIMS];
  int lead = ndim - t->ndim;
  for (int i = 0; i < ndim; i++) {
    int j = i - lead;
    int64_t want = shape[i];
    if (j < 0) {
      if (want < 0) { sf_error("expand: -1 is not allowed for a new leading dim %d", i + 1); return NULL; }
      sh[i] = want;
      st[i] = 0;
    } else if (want == -1 || want == t->shape[j]) {
      sh[i] = t->shape[j];
      st[i] = t->stride[j];
    } else if (t->shape[j] == 1 && want >= 0) {
      sh[i] = want;
      st[i] = 0;
    } else {
      sf_error("expand: size %lld at dim %d cannot expand to %lld (tensor shape %s)", (long long)t->shape[j], j + 1,
               (long long)want, sf_shape_str(t, buf, sizeof buf));
      return NULL;
    }
  }
  return make_view(t, ndim, sh, st, t->offset);
}
