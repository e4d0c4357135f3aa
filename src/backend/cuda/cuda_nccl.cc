// cuda_nccl.cc — the backend's device services (gpu_api.h): allocator statistics and device
// collectives through NCCL (real build) or the emulated NCCL among emu devices (emu build). The
// unique id travels between ranks by the caller (MPI broadcast in src/dist, or shared memory for
// threads of one process).
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_host.h"

#ifdef SF_EMU
#include "emu/emu_nccl.h"
#else
#include <nccl.h>
#endif

/* identical in the cuda and emu builds (both compile this file): the communicator is kept as void * */
struct sf_gpu_comm {
  void *comm;
  int index; /* device */
  int nranks, rank;
};
#define SF_COMM(c) ((ncclComm_t)(c)->comm)

namespace SF_CUDA_NS {

static int nccl_check(ncclResult_t r, const char *what) {
  if (r == ncclSuccess) return 0;
  return sf_error("%s on %s: NCCL error %d (%s)", what, sf_dev_prefix(), (int)r, ncclGetErrorString(r));
}

static bool nccl_type(sf_dtype dt, ncclDataType_t *t) {
  switch (dt) {
  case SF_F32: *t = ncclFloat32; return true;
  case SF_BF16: *t = ncclBfloat16; return true;
  case SF_F16: *t = ncclFloat16; return true;
  case SF_F64: *t = ncclFloat64; return true;
  case SF_I64: *t = ncclInt64; return true;
  case SF_I32: *t = ncclInt32; return true;
  case SF_U8: case SF_BOOL: *t = ncclUint8; return true;
  default: return false;
  }
}

static ncclRedOp_t nccl_op(sf_dist_op op) {
  switch (op) {
  case SF_DIST_PROD: return ncclProd;
  case SF_DIST_MAX: return ncclMax;
  case SF_DIST_MIN: return ncclMin;
  case SF_DIST_AVG: return ncclAvg;
  default: return ncclSum;
  }
}

static int svc_memory(int index, sf_gpu_mem_stats *out) { return sf_alloc_stats(index, out); }
static int svc_empty(int index) { return sf_alloc_empty_cache(index); }
static int svc_reset_peak(int index) { return sf_alloc_reset_peak(index); }
static int svc_sync(int index) {
  if (sf_dev_enter(index)) return -1;
  /* every stream of the device (its own and the user's), as torch.cuda.synchronize */
  return sf_cuda_check(cudaDeviceSynchronize(), "synchronize");
}

extern bool sf_gemm_allow_tf32;
static void svc_tf32(int on) { sf_gemm_allow_tf32 = on != 0; }

static void *svc_host_alloc(size_t n) {
  void *p = NULL;
  if (sf_cuda_check(cudaMallocHost(&p, n ? n : 1), "allocating pinned host memory")) return NULL;
  return p;
}
static void svc_host_free(void *p) {
  if (p) cudaFreeHost(p);
}
static int svc_copy_async(int index, void *dst, const void *src, size_t n, int to_device) {
  if (!n) return 0;
  if (sf_dev_enter(index)) return -1;
  return sf_cuda_check(cudaMemcpyAsync(dst, src, n, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                       sf_cuda_stream()), "asynchronous copy");
}

static int svc_unique_id(void *id128) {
  ncclUniqueId id;
  if (nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId")) return -1;
  memcpy(id128, &id, sizeof id < 128 ? sizeof id : 128);
  return 0;
}

static sf_gpu_comm *svc_comm_init(const void *id128, int nranks, int rank, int index) {
  if (sf_dev_enter(index)) return NULL;
  ncclUniqueId id;
  memcpy(&id, id128, sizeof id);
  ncclComm_t c;
  if (nccl_check(ncclCommInitRank(&c, nranks, id, rank), "ncclCommInitRank")) return NULL;
  sf_gpu_comm *g = new sf_gpu_comm{(void *)c, index, nranks, rank};
  return g;
}

static void svc_comm_free(sf_gpu_comm *c) {
  if (!c) return;
  ncclCommDestroy(SF_COMM(c));
  delete c;
}

/* collectives are enqueued on the device stream and then awaited, so the caller may read results */
static int finish(sf_gpu_comm *c, ncclResult_t r, const char *what) {
  if (nccl_check(r, what)) return -1;
  return sf_cuda_check(cudaStreamSynchronize(sf_cuda_stream()), what);
}

static int svc_all_reduce(sf_gpu_comm *c, const void *send, void *recv, size_t count, sf_dtype dt, sf_dist_op op) {
  ncclDataType_t t;
  if (!nccl_type(dt, &t)) return sf_error("all_reduce: dtype %s is not supported by NCCL", sf_dtype_name(dt));
  if (sf_dev_enter(c->index)) return -1;
  return finish(c, ncclAllReduce(send, recv, count, t, nccl_op(op), SF_COMM(c), sf_cuda_stream()), "all_reduce");
}

static int svc_reduce_scatter(sf_gpu_comm *c, const void *send, void *recv, size_t count, sf_dtype dt, sf_dist_op op) {
  ncclDataType_t t;
  if (!nccl_type(dt, &t)) return sf_error("reduce_scatter: dtype %s is not supported by NCCL", sf_dtype_name(dt));
  if (sf_dev_enter(c->index)) return -1;
  return finish(c, ncclReduceScatter(send, recv, count, t, nccl_op(op), SF_COMM(c), sf_cuda_stream()), "reduce_scatter");
}

static int svc_all_gather(sf_gpu_comm *c, const void *send, void *recv, size_t count, sf_dtype dt) {
  ncclDataType_t t;
  if (!nccl_type(dt, &t)) return sf_error("all_gather: dtype %s is not supported by NCCL", sf_dtype_name(dt));
  if (sf_dev_enter(c->index)) return -1;
  return finish(c, ncclAllGather(send, recv, count, t, SF_COMM(c), sf_cuda_stream()), "all_gather");
}

static int svc_broadcast(sf_gpu_comm *c, const void *send, void *recv, size_t count, sf_dtype dt, int root) {
  ncclDataType_t t;
  if (!nccl_type(dt, &t)) return sf_error("broadcast: dtype %s is not supported by NCCL", sf_dtype_name(dt));
  if (sf_dev_enter(c->index)) return -1;
  return finish(c, ncclBroadcast(send, recv, count, t, root, SF_COMM(c), sf_cuda_stream()), "broadcast");
}

static int svc_props(int index, sf_gpu_props *out) {
  if (sf_dev_enter(index)) return -1;
  cudaDeviceProp p;
  if (sf_cuda_check(cudaGetDeviceProperties(&p, index), "cudaGetDeviceProperties")) return -1;
  memset(out, 0, sizeof *out);
  snprintf(out->name, sizeof out->name, "%s", p.name);
  out->total_mem = p.totalGlobalMem;
  out->smem_per_block = p.sharedMemPerBlock;
  out->smem_per_block_optin = p.sharedMemPerBlockOptin;
  out->multiprocessors = p.multiProcessorCount;
  out->cc_major = p.major;
  out->cc_minor = p.minor;
  size_t fr = 0, tot = 0;
  if (sf_cuda_check(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo")) return -1;
  out->free_mem = fr;
  return 0;
}

const sf_gpu_ext sf_gpu_services = {svc_memory,     svc_empty,          svc_reset_peak, svc_sync, svc_tf32, svc_host_alloc, svc_host_free, svc_copy_async,
                                    svc_unique_id,  svc_comm_init,      svc_comm_free,  svc_all_reduce,
                                    svc_reduce_scatter, svc_all_gather, svc_broadcast, svc_props,
                                    sf_svc_event_new, sf_svc_event_record, sf_svc_event_elapsed, sf_svc_event_free,
                                    sf_svc_stream_new, sf_svc_stream_default, sf_svc_stream_free, sf_svc_stream_set_current,
                                    sf_svc_stream_synchronize, sf_svc_stream_query, sf_svc_stream_wait_event,
                                    sf_svc_event_record_on, sf_svc_event_synchronize, sf_svc_event_query,
                                    sf_svc_record_stream};

} // namespace SF_CUDA_NS
