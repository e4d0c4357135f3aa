// emu_nccl.cc — NCCL collectives among emu devices in one process. Each collective is three phases
// around a group barrier: post buffers | every rank computes its own output from all inputs, in rank
// order | wait until all have read before anyone may reuse its input (in-place calls are legal).
#include "emu/emu_nccl.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {
struct Group {
  int nranks = 0, joined = 0;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  std::vector<const void *> send;
  int refs = 0;
};

std::mutex g_mu;
std::map<std::string, Group *> g_groups;
uint64_t g_next_id = 1;

void group_barrier(Group *g) {
  std::unique_lock<std::mutex> lk(g->mu);
  uint64_t gen = g->generation;
  if (++g->arrived == g->nranks) {
    g->arrived = 0;
    g->generation++;
    g->cv.notify_all();
  } else {
    g->cv.wait(lk, [&] { return g->generation != gen; });
  }
}

size_t dt_size(ncclDataType_t dt) {
  switch (dt) {
  case ncclInt8: case ncclUint8: return 1;
  case ncclFloat16: case ncclBfloat16: return 2;
  case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
  default: return 8;
  }
}

double ld(const void *p, ncclDataType_t dt, size_t i) {
  switch (dt) {
  case ncclInt8: return ((const int8_t *)p)[i];
  case ncclUint8: return ((const uint8_t *)p)[i];
  case ncclInt32: return ((const int32_t *)p)[i];
  case ncclUint32: return ((const uint32_t *)p)[i];
  case ncclInt64: return (double)((const int64_t *)p)[i];
  case ncclUint64: return (double)((const uint64_t *)p)[i];
  case ncclFloat16: return sf_f16_to_f32(((const uint16_t *)p)[i]);
  case ncclBfloat16: return sf_bf16_to_f32(((const uint16_t *)p)[i]);
  case ncclFloat32: return ((const float *)p)[i];
  default: return ((const double *)p)[i];
  }
}

void st(void *p, ncclDataType_t dt, size_t i, double v) {
  switch (dt) {
  case ncclInt8: ((int8_t *)p)[i] = (int8_t)v; break;
  case ncclUint8: ((uint8_t *)p)[i] = (uint8_t)v; break;
  case ncclInt32: ((int32_t *)p)[i] = (int32_t)v; break;
  case ncclUint32: ((uint32_t *)p)[i] = (uint32_t)v; break;
  case ncclInt64: ((int64_t *)p)[i] = (int64_t)v; break;
  case ncclUint64: ((uint64_t *)p)[i] = (uint64_t)v; break;
  case ncclFloat16: ((uint16_t *)p)[i] = sf_f32_to_f16((float)v); break;
  case ncclBfloat16: ((uint16_t *)p)[i] = sf_f32_to_bf16((float)v); break;
  case ncclFloat32: ((float *)p)[i] = (float)v; break;
  default: ((double *)p)[i] = v; break;
  }
}

/* element i of the reduction over ranks' buffers at element offset `base + i`; integers exact in int64,
 * floats accumulate in the element type's precision (f32 for 16-bit types, as NCCL) */
void reduce_into(Group *g, size_t base, size_t count, void *out, ncclDataType_t dt, ncclRedOp_t op) {
  bool ints = dt <= ncclUint64;
  std::vector<char> tmp(count * dt_size(dt));
  for (size_t i = 0; i < count; i++) {
    if (ints) {
      int64_t acc = (int64_t)ld(g->send[0], dt, base + i);
      for (int r = 1; r < g->nranks; r++) {
        int64_t x = (int64_t)ld(g->send[r], dt, base + i);
        acc = op == ncclProd ? acc * x : op == ncclMax ? (x > acc ? x : acc) : op == ncclMin ? (x < acc ? x : acc) : acc + x;
      }
      if (op == ncclAvg) acc /= g->nranks;
      st(tmp.data(), dt, i, (double)acc);
    } else {
      double acc = ld(g->send[0], dt, base + i);
      for (int r = 1; r < g->nranks; r++) {
        double x = ld(g->send[r], dt, base + i);
        if (op == ncclProd) acc *= x;
        else if (op == ncclMax) acc = (x != x || x > acc) ? x : acc;
        else if (op == ncclMin) acc = (x != x || x < acc) ? x : acc;
        else acc += x;
        if (dt != ncclFloat64) acc = (float)acc;
      }
      if (op == ncclAvg) acc /= g->nranks;
      st(tmp.data(), dt, i, acc);
    }
  }
  memcpy(out, tmp.data(), tmp.size());
}
} // namespace

struct sf_emu_nccl_comm { Group *g; int rank; std::string key; };

extern "C" {

ncclResult_t sf_emu_ncclGetUniqueId(ncclUniqueId *id) {
  memset(id, 0, sizeof *id);
  std::lock_guard<std::mutex> lk(g_mu);
  snprintf(id->internal, sizeof id->internal, "sfwb-emu-nccl-%llu", (unsigned long long)g_next_id++);
  return ncclSuccess;
}

ncclResult_t sf_emu_ncclCommInitRank(ncclComm_t *c, int nranks, ncclUniqueId id, int rank) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  std::string key(id.internal, strnlen(id.internal, sizeof id.internal));
  Group *g;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_groups.find(key);
    if (it == g_groups.end()) {
      g = new Group();
      g->nranks = nranks;
      g->send.assign(nranks, NULL);
      g_groups[key] = g;
    } else {
      g = it->second;
    }
    if (g->nranks != nranks) return ncclInvalidUsage;
    g->refs++;
  }
  group_barrier(g); /* as ncclCommInitRank: returns once every rank has joined */
  *c = new sf_emu_nccl_comm{g, rank, key};
  return ncclSuccess;
}

ncclResult_t sf_emu_ncclCommDestroy(ncclComm_t c) {
  if (!c) return ncclInvalidArgument;
  std::lock_guard<std::mutex> lk(g_mu);
  if (--c->g->refs == 0) {
    g_groups.erase(c->key);
    delete c->g;
  }
  delete c;
  return ncclSuccess;
}

ncclResult_t sf_emu_ncclCommCount(ncclComm_t c, int *n) { *n = c->g->nranks; return ncclSuccess; }
ncclResult_t sf_emu_ncclCommUserRank(ncclComm_t c, int *r) { *r = c->rank; return ncclSuccess; }

ncclResult_t sf_emu_ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t dt, ncclRedOp_t op,
                                  ncclComm_t c, cudaStream_t s) {
  if (!c) return ncclInvalidArgument;
  Group *g = c->g;
  g->send[c->rank] = send;
  group_barrier(g);
  std::vector<char> out(count * dt_size(dt));
  reduce_into(g, 0, count, out.data(), dt, op);
  group_barrier(g); /* everyone has read every input: now outputs may overwrite inputs */
  memcpy(recv, out.data(), out.size());
  return ncclSuccess;
}

ncclResult_t sf_emu_ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t dt,
                                      ncclRedOp_t op, ncclComm_t c, cudaStream_t s) {
  if (!c) return ncclInvalidArgument;
  Group *g = c->g;
  g->send[c->rank] = send;
  group_barrier(g);
  std::vector<char> out(recvcount * dt_size(dt));
  reduce_into(g, (size_t)c->rank * recvcount, recvcount, out.data(), dt, op);
  group_barrier(g);
  memcpy(recv, out.data(), out.size());
  return ncclSuccess;
}

ncclResult_t sf_emu_ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t dt, ncclComm_t c,
                                  cudaStream_t s) {
  if (!c) return ncclInvalidArgument;
  Group *g = c->g;
  size_t nb = sendcount * dt_size(dt);
  g->send[c->rank] = send;
  group_barrier(g);
  std::vector<char> out(nb * g->nranks);
  for (int r = 0; r < g->nranks; r++) memcpy(out.data() + r * nb, g->send[r], nb);
  group_barrier(g);
  memcpy(recv, out.data(), out.size());
  return ncclSuccess;
}

ncclResult_t sf_emu_ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t dt, int root,
                                  ncclComm_t c, cudaStream_t s) {
  if (!c || root < 0 || root >= c->g->nranks) return ncclInvalidArgument;
  Group *g = c->g;
  size_t nb = count * dt_size(dt);
  g->send[c->rank] = send;
  group_barrier(g);
  std::vector<char> out(nb);
  memcpy(out.data(), g->send[root], nb);
  group_barrier(g);
  memcpy(recv, out.data(), nb);
  return ncclSuccess;
}

ncclResult_t sf_emu_ncclGroupStart(void) { return ncclSuccess; }
ncclResult_t sf_emu_ncclGroupEnd(void) { return ncclSuccess; }

const char *sf_emu_ncclGetErrorString(ncclResult_t r) {
  switch (r) {
  case ncclSuccess: return "no error";
  case ncclInvalidArgument: return "invalid argument";
  case ncclInvalidUsage: return "invalid usage (ranks disagree on the communicator size?)";
  default: return "internal error";
  }
}

} // extern "C"
