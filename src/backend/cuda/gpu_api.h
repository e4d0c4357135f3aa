/* gpu_api.h — device-level services of the CUDA backend beyond the op table, for `cuda:N` and `emu:N`
 * alike: caching-allocator statistics, emptying the cache, synchronizing, and device collectives
 * (NCCL, or the emulated NCCL among emu devices) used by sfwb.dist. Plain C interface. */
#ifndef SF_GPU_API_H
#define SF_GPU_API_H

#include <stdbool.h>
#include <stddef.h>

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  size_t allocated; /* bytes in live blocks (rounded to size classes) */
  size_t reserved;  /* allocated + cached free blocks */
  size_t peak;      /* max of allocated since start (or reset) */
  size_t cached_blocks;
} sf_gpu_mem_stats;

/* what the device says of itself (cudaGetDeviceProperties, cudaMemGetInfo) */
typedef struct {
  char name[256];
  size_t total_mem, free_mem;
  size_t smem_per_block, smem_per_block_optin; /* static/default and opt-in dynamic shared memory limits */
  int multiprocessors, cc_major, cc_minor;
} sf_gpu_props;

/* a timing event on a device's stream (cudaEvent_t; emu records in issue order = completion order) */
typedef struct sf_gpu_event sf_gpu_event;
/* a stream of a device (cudaStream_t kept as void *): the device's own one, or one the user made */
typedef struct sf_gpu_stream {
  void *s;
  int index;
  bool own; /* the device's own stream: never destroyed */
} sf_gpu_stream;

typedef enum { SF_DIST_SUM = 0, SF_DIST_PROD, SF_DIST_MAX, SF_DIST_MIN, SF_DIST_AVG } sf_dist_op;

/* one communicator: a rank's view of a group of devices */
typedef struct sf_gpu_comm sf_gpu_comm;

typedef struct sf_gpu_ext {
  int (*memory)(int index, sf_gpu_mem_stats *out);
  int (*empty_cache)(int index);
  int (*reset_peak)(int index);
  int (*synchronize)(int index);
  void (*set_allow_tf32)(int on); /* f32 GEMMs may round inputs to TF32 (as torch.backends.cuda.matmul.allow_tf32) */
  /* pinned (page-locked) host memory and copies that only enqueue on the device's stream: the host
   * buffer must stay alive and untouched until synchronize(index) */
  void *(*host_alloc)(size_t nbytes);
  void (*host_free)(void *p);
  int (*copy_async)(int index, void *dst, const void *src, size_t nbytes, int to_device);
  /* collectives on contiguous device buffers of `count` elements of dtype dt (count is per rank's
   * input for reduce_scatter: recv holds count elements, send count*nranks; all_gather: send holds
   * count, recv count*nranks) */
  int (*comm_unique_id)(void *id128);          /* 128 bytes, to broadcast to every rank */
  sf_gpu_comm *(*comm_init)(const void *id128, int nranks, int rank, int index);
  void (*comm_free)(sf_gpu_comm *c);
  int (*all_reduce)(sf_gpu_comm *c, const void *send, void *recv, size_t count, sf_dtype dt, sf_dist_op op);
  int (*reduce_scatter)(sf_gpu_comm *c, const void *send, void *recv, size_t count, sf_dtype dt, sf_dist_op op);
  int (*all_gather)(sf_gpu_comm *c, const void *send, void *recv, size_t count, sf_dtype dt);
  int (*broadcast)(sf_gpu_comm *c, const void *send, void *recv, size_t count, sf_dtype dt, int root);
  int (*props)(int index, sf_gpu_props *out);
  /* events: record enqueues on the device's stream; elapsed_ms waits for `end` and gives end - start */
  sf_gpu_event *(*event_new)(int index);
  int (*event_record)(sf_gpu_event *e);
  int (*event_elapsed_ms)(sf_gpu_event *start, sf_gpu_event *end, double *ms);
  void (*event_free)(sf_gpu_event *e);
  /* streams: a thread's work on a device (launches, copies, GEMMs, collectives, allocations) goes to its
   * current stream, the device's own unless set_current chose another (NULL = the own one again).
   * stream_free waits for the stream's work and hands its cached blocks back; the own stream is never freed */
  sf_gpu_stream *(*stream_new)(int index);
  sf_gpu_stream *(*stream_default)(int index);
  void (*stream_free)(sf_gpu_stream *s);
  int (*stream_set_current)(int index, sf_gpu_stream *s);
  int (*stream_synchronize)(sf_gpu_stream *s);
  int (*stream_query)(sf_gpu_stream *s); /* 1 all done, 0 work pending, -1 error */
  int (*stream_wait_event)(sf_gpu_stream *s, sf_gpu_event *e); /* later work on s waits for e (no host wait) */
  int (*event_record_on)(sf_gpu_event *e, sf_gpu_stream *s);   /* s NULL = the current stream */
  int (*event_synchronize)(sf_gpu_event *e);
  int (*event_query)(sf_gpu_event *e); /* 1 done (or never recorded), 0 pending, -1 error */
  /* device memory at ptr (a live block) is also used on s: not reused before s's work up to its release is done */
  int (*record_stream)(int index, void *ptr, sf_gpu_stream *s);
} sf_gpu_ext;

void sf_gpu_register(sf_devtype type, const sf_gpu_ext *ext);
const sf_gpu_ext *sf_gpu_ext_for(sf_devtype type); /* NULL + sf_error when absent */

#ifdef __cplusplus
}
#endif
#endif
