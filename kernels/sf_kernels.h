/* sf_kernels.h — what the CUDA host code (src/backend/cuda) and the kernels (kernels/NAME.cu) share:
 * the namespace that keeps the `cuda` and `emu` builds of the same source apart in one binary, the
 * strided-iteration descriptor, and the launcher entry points (each returns 0, or -1 + sf_error). */
#ifndef SF_KERNELS_H
#define SF_KERNELS_H

#include <stdint.h>

#include "core/error.h"
#include "core/dispatch.h"
#include "core/tensor.h"
#include "sf_launch.h"

#if !defined(SF_EMU)
#include <cuda_runtime.h>
#endif

/* every symbol of the host code and kernels lives in this namespace: sf_emu_dev for `emu`, sf_cuda_dev
 * for the real device, so both builds of one source link into one program */
#ifdef SF_EMU
#define SF_CUDA_NS sf_emu_dev
#else
#define SF_CUDA_NS sf_cuda_dev
#endif

/* fewer, longer-lived threads on the emulator: every kernel uses grid-stride loops, so the grid size
 * does not change results, and each emulated thread costs a fiber */
#ifdef SF_EMU
#define SF_MAX_GRID 64
#else
#define SF_MAX_GRID 8192
#endif

namespace SF_CUDA_NS {

/* up to 4 operands walked together over one shape; dims are coalesced by the host (innermost last) */
#define SF_KMAX_OPS 4
struct sf_kiter {
  int ndim;
  int64_t n; /* number of elements */
  int64_t shape[SF_MAX_DIMS];
  int64_t stride[SF_KMAX_OPS][SF_MAX_DIMS];
};

/* host: fill `it` from tensors of the same shape (ts[0] gives the shape), drop size-1 dims and merge
 * dims that are contiguous for every operand. Returns 0, or -1 when there are too many operands. */
int sf_kiter_make(sf_kiter *it, const sf_tensor *const *ts, int nops);
/* host: the same with an explicit shape and per-operand strides */
void sf_kiter_make_raw(sf_kiter *it, int ndim, const int64_t *shape, const int64_t *const *strides, int nops);

/* error check after a launch or runtime call; names the op */
int sf_cuda_check(cudaError_t e, const char *what);
int sf_cuda_check_launch(const char *what);
cudaStream_t sf_cuda_stream(void); /* the current device's stream */

/* ---- launchers (kernels/NAME.cu) ---- */
int sf_k_copy(void *dst, sf_dtype dt_dst, const void *src, sf_dtype dt_src, const sf_kiter *it);
int sf_k_fill(void *dst, sf_dtype dt, double v, const sf_kiter *it);
int sf_k_unary(sf_unary_op op, void *out, sf_dtype dt_out, const void *a, sf_dtype dt_a, double p0, double p1,
               const sf_kiter *it);
/* b == NULL: scalar s (s op a when scalar_first) */
int sf_k_binary(sf_binary_op op, void *out, sf_dtype dt_out, const void *a, const void *b, sf_dtype dt_in, double s,
                bool scalar_first, const sf_kiter *it);
int sf_k_where(void *out, const void *cond, sf_dtype dt_cond, const void *a, const void *b, size_t elem,
               const sf_kiter *it);
/* rows: `it` walks the outer (non-reduced) dims of a (operand 0) and out (operand 1);
 * each row has R elements at stride rs in a (and stride os in out for softmax) */
int sf_k_reduce(sf_reduce_op op, void *out, sf_dtype dt_out, const void *a, sf_dtype dt_a, int64_t R, int64_t rs,
                const sf_kiter *it);
int sf_k_softmax(void *out, const void *a, sf_dtype dt, int64_t R, int64_t rs, int64_t os, bool log,
                 const sf_kiter *it);
int sf_k_random(void *out, sf_dtype dt, int64_t n, uint64_t seed, uint64_t offset, int kind);

} // namespace SF_CUDA_NS

#endif
