// emu_nccl.cc — NCCL collectives among emu devices in one process. Each collective is three phases
// around a group barrier: post buffers | every rank computes its own output from all inputs, in rank
// order | wait until all have read before anyone may reuse its input (in-place calls are legal).
// A barrier that cannot complete — a rank left the communicator (its thread failed) or the others
// did not arrive within SFWB_DIST_TIMEOUT seconds (default 600) — fails with the missing ranks named
// (ncclSystemError; the message by ncclGetErrorString on the failing thread), never hangs.
#include "emu/emu_nccl.h"

#include <chrono>
#include <condition_variable>
#include <cstdlib>
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
  std::vector<char> here; /* who has arrived at the current barrier */
  int refs = 0;
  int left = -1; /* the first rank that left (destroyed its communicator) */
};

thread_local std::string t_err;

double timeout_s() {
  const char *s = getenv("SFWB_DIST_TIMEOUT");
  double v = s ? atof(s) : 0;
  return v > 0 ? v : 600;
}

std::mutex g_mu;
std::map<std::string, Group *> g_groups;
uint64_t g_next_id = 1;

/* 0, or -1 with t_err naming the ranks that never arrived */
int group_barrier(Group *g, int rank, const char *op) {
  std::unique_lock<std::mutex> lk(g->mu);
  uint64_t gen = g->generation;
  if (g->left >= 0) {
    t_err = std::string(op) + ": rank " + std::to_string(g->left) + " has left the communicator";
    return -1;
  }
  g->here[rank] = 1;
  if (++g->arrived == g->nranks) {
    g->arrived = 0;
    g->generation++;
    std::fill(g->here.begin(), g->here.end(), 0);
    g->cv.notify_all();
    return 0;
  }
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s());
  bool ok = g->cv.wait_until(lk, until, [&] { return g->generation != gen || g->left >= 0; });
  if (g->generation != gen) return 0;
  std::string who;
  for (int r = 0; r < g->nranks; r++)
    if (!g->here[r]) who += (who.empty() ? "" : ", ") + std::to_string(r);
  t_err = std::string(op) + (ok ? ": rank " + std::to_string(g->left) + " left the communicator"
                                : ": timed out after " + std::to_string((int)timeout_s()) + " s") +
          "; rank(s) " + who + " never joined (emulated NCCL)";
  g->here[rank] = 0;
  g->arrived--;
  return -1;
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
      g->here.assign(nranks, 0);
      g_groups[key] = g;
    } else {
      g = it->second;
    }
    if (g->nranks != nranks) return ncclInvalidUsage;
    g->refs++;
  }
  /* as ncclCommInitRank: returns once every rank has joined */
  if (group_barrier(g, rank, "ncclCommInitRank")) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (--g->refs == 0) { g_groups.erase(key); delete g; }
    return ncclSystemError;
  }
  *c = new sf_emu_nccl_comm{g, rank, key};
  return ncclSuccess;
}

ncclResult_t sf_emu_ncclCommDestroy(ncclComm_t c) {
  if (!c) return ncclInvalidArgument;
  {
    std::lock_guard<std::mutex> lk(c->g->mu); /* ranks waiting for this one fail now, not at the timeout */
    if (c->g->left < 0) c->g->left = c->rank;
    c->g->cv.notify_all();
  }
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
  if (group_barrier(g, c->rank, "ncclAllReduce")) return ncclSystemError;
  std::vector<char> out(count * dt_size(dt));
  reduce_into(g, 0, count, out.data(), dt, op);
  if (group_barrier(g, c->rank, "ncclAllReduce")) return ncclSystemError; /* everyone has read every input: now outputs may overwrite inputs */
  memcpy(recv, out.data(), out.size());
  return ncclSuccess;
}

ncclResult_t sf_emu_ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t dt,
                                      ncclRedOp_t op, ncclComm_t c, cudaStream_t s) {
  if (!c) return ncclInvalidArgument;
  Group *g = c->g;
  g->send[c->rank] = send;
  if (group_barrier(g, c->rank, "ncclReduceScatter")) return ncclSystemError;
  std::vector<char> out(recvcount * dt_size(dt));
  reduce_into(g, (size_t)c->rank * recvcount, recvcount, out.data(), dt, op);
  if (group_barrier(g, c->rank, "ncclReduceScatter")) return ncclSystemError;
  memcpy(recv, out.data(), out.size());
  return ncclSuccess;
}

ncclResult_t sf_emu_ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t dt, ncclComm_t c,
                                  cudaStream_t s) {
  if (!c) return ncclInvalidArgument;
  Group *g = c->g;
  size_t nb = sendcount * dt_size(dt);
  g->send[c->rank] = send;
  if (group_barrier(g, c->rank, "ncclAllGather")) return ncclSystemError;
  std::vector<char> out(nb * g->nranks);
  for (int r = 0; r < g->nranks; r++) memcpy(out.data() + r * nb, g->send[r], nb);
  if (group_barrier(g, c->rank, "ncclAllGather")) return ncclSystemError;
  memcpy(recv, out.data(), out.size());
  return ncclSuccess;
}

ncclResult_t sf_emu_ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t dt, int root,
                                  ncclComm_t c, cudaStream_t s) {
  if (!c || root < 0 || root >= c->g->nranks) return ncclInvalidArgument;
  Group *g = c->g;
  size_t nb = count * dt_size(dt);
  g->send[c->rank] = send;
  if (group_barrier(g, c->rank, "ncclBroadcast")) return ncclSystemError;
  std::vector<char> out(nb);
  memcpy(out.data(), g->send[root], nb);
  if (group_barrier(g, c->rank, "ncclBroadcast")) return ncclSystemError;
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
  case ncclSystemError: return t_err.empty() ? "system error" : t_err.c_str();
  default: return "internal error";
  }
}

} // extern "C"
