// cuda_stream.cc — streams and events of a device, for sfwb.cuda.stream / event: overlapping copies with
// compute, timing, and ordering work across streams (cudaStreamWaitEvent). A thread's work on a device
// goes to its current stream (cuda_device.cc: sf_stream_set_current); the caching allocator keys free
// blocks by the stream they were allocated on (cuda_alloc.cc), so a stream hands its cache back before
// it is destroyed. On emu every stream runs its work at issue, so every query is "done".
#include <mutex>

#include "backend/cuda/cuda_host.h"

/* identical in both builds, as sf_gpu_comm: the handle kept as void * (sf_gpu_stream is in gpu_api.h) */
struct sf_gpu_event {
  void *ev;
  int index;
  bool recorded;
};
#define SF_EV(e) ((cudaEvent_t)(e)->ev)
#define SF_ST(x) ((cudaStream_t)(x)->s)

namespace SF_CUDA_NS {

sf_gpu_event *sf_svc_event_new(int index) {
  if (sf_dev_enter(index)) return NULL;
  cudaEvent_t e;
  if (sf_cuda_check(cudaEventCreate(&e), "cudaEventCreate")) return NULL;
  return new sf_gpu_event{(void *)e, index, false};
}

int sf_svc_event_record_on(sf_gpu_event *e, sf_gpu_stream *s) {
  if (s && s->index != e->index)
    return sf_error("event of %s:%d recorded on a stream of %s:%d", sf_dev_prefix(), e->index, sf_dev_prefix(), s->index);
  if (sf_dev_enter(e->index)) return -1;
  if (sf_cuda_check(cudaEventRecord(SF_EV(e), s ? SF_ST(s) : sf_cuda_stream()), "cudaEventRecord")) return -1;
  e->recorded = true;
  return 0;
}

int sf_svc_event_record(sf_gpu_event *e) { return sf_svc_event_record_on(e, NULL); }

int sf_svc_event_elapsed(sf_gpu_event *a, sf_gpu_event *b, double *ms) {
  if (sf_dev_enter(b->index)) return -1;
  if (sf_cuda_check(cudaEventSynchronize(SF_EV(b)), "cudaEventSynchronize")) return -1;
  float f = 0;
  if (sf_cuda_check(cudaEventElapsedTime(&f, SF_EV(a), SF_EV(b)), "cudaEventElapsedTime")) return -1;
  *ms = f;
  return 0;
}

int sf_svc_event_synchronize(sf_gpu_event *e) {
  if (!e->recorded) return 0; /* as CUDA: waiting for an event never recorded returns at once */
  if (sf_dev_enter(e->index)) return -1;
  return sf_cuda_check(cudaEventSynchronize(SF_EV(e)), "cudaEventSynchronize");
}

static int query(cudaError_t r, const char *what) {
  if (r == cudaSuccess) return 1;
  if (r == cudaErrorNotReady) {
    cudaGetLastError(); /* not an error: clear it */
    return 0;
  }
  return sf_cuda_check(r, what);
}

int sf_svc_event_query(sf_gpu_event *e) {
  if (!e->recorded) return 1;
  if (sf_dev_enter(e->index)) return -1;
  return query(cudaEventQuery(SF_EV(e)), "cudaEventQuery");
}

void sf_svc_event_free(sf_gpu_event *e) {
  if (!e) return;
  cudaEventDestroy(SF_EV(e));
  delete e;
}

sf_gpu_stream *sf_svc_stream_new(int index) {
  if (sf_dev_enter(index)) return NULL;
  cudaStream_t s;
  /* non-blocking, as the device's own stream: no implicit ordering with the legacy default stream */
  if (sf_cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate")) return NULL;
  return new sf_gpu_stream{(void *)s, index, false};
}

sf_gpu_stream *sf_svc_stream_default(int index) {
  static sf_gpu_stream own[SF_GPU_MAX_DEVICES];
  static std::mutex mu;
  cudaStream_t s = sf_dev_stream(index);
  if (!s) return NULL;
  std::lock_guard<std::mutex> lk(mu);
  own[index] = sf_gpu_stream{(void *)s, index, true};
  return &own[index];
}

void sf_svc_stream_free(sf_gpu_stream *s) {
  if (!s || s->own) return;
  if (!sf_dev_enter(s->index)) {
    cudaStreamSynchronize(SF_ST(s));
    sf_alloc_stream_gone(s->index, SF_ST(s));
    cudaStreamDestroy(SF_ST(s));
  }
  delete s;
}

int sf_svc_stream_set_current(int index, sf_gpu_stream *s) {
  if (s && s->index != index)
    return sf_error("a stream of %s:%d cannot be current on %s:%d", sf_dev_prefix(), s->index, sf_dev_prefix(), index);
  return sf_stream_set_current(index, s ? SF_ST(s) : (cudaStream_t)0);
}

int sf_svc_stream_synchronize(sf_gpu_stream *s) {
  if (sf_dev_enter(s->index)) return -1;
  return sf_cuda_check(cudaStreamSynchronize(SF_ST(s)), "cudaStreamSynchronize");
}

int sf_svc_stream_query(sf_gpu_stream *s) {
  if (sf_dev_enter(s->index)) return -1;
  return query(cudaStreamQuery(SF_ST(s)), "cudaStreamQuery");
}

int sf_svc_stream_wait_event(sf_gpu_stream *s, sf_gpu_event *e) {
  if (!e->recorded) return 0; /* as CUDA: a wait on an event never recorded is a no-op */
  if (sf_dev_enter(s->index)) return -1;
  return sf_cuda_check(cudaStreamWaitEvent(SF_ST(s), SF_EV(e), 0), "cudaStreamWaitEvent");
}

int sf_svc_record_stream(int index, void *ptr, sf_gpu_stream *s) {
  if (s->index != index)
    return sf_error("memory of %s:%d recorded on a stream of %s:%d", sf_dev_prefix(), index, sf_dev_prefix(), s->index);
  return sf_alloc_record_stream(index, ptr, SF_ST(s));
}

} // namespace SF_CUDA_NS
