/* dist.c — sfwb.dist collectives: MPI for CPU tensors across processes, the CUDA backend's NCCL (real or
 * emulated) for device tensors, and an in-process world of threads bound to emu devices for CI. */
#include "dist/dist.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"
#include "ops/ops.h"
#include "dist/dist_guard.h"

#ifdef SFWB_HAVE_MPI
#include <mpi.h>
#endif

/* process world (MPI launcher or a single rank) */
static int g_init, g_mpi, g_rank, g_world = 1;
static sf_gpu_comm *g_comm[SF_NDEVTYPES][16]; /* device communicators, created on first use */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

/* thread world (sf_dist_run_threads) overrides the process world for its threads */
static _Thread_local int t_active, t_rank, t_world;
static _Thread_local sf_gpu_comm *t_comm;

static int launched_by_mpi(void) {
  const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i])) return 1;
  return 0;
}

#ifdef SFWB_HAVE_MPI
/* a world whose collectives failed cannot finalize (MPI_Finalize waits for the missing ranks): abort the
 * job instead, so every rank ends now with the error already printed */
static void finalize_mpi(void) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin) return;
  if (sf_dist_broken()) {
    fflush(NULL);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
}
#endif

int sf_dist_init(void) {
  pthread_mutex_lock(&g_mu);
  if (!g_init) {
    g_init = 1;
#ifdef SFWB_HAVE_MPI
    if (launched_by_mpi()) {
      int inited = 0, provided = 0;
      MPI_Initialized(&inited);
      if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        pthread_mutex_unlock(&g_mu);
        return sf_error("sfwb.dist: MPI_Init failed");
      }
      if (!inited) atexit(finalize_mpi);
      MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
      MPI_Comm_size(MPI_COMM_WORLD, &g_world);
      g_mpi = 1;
    }
#endif
  }
  pthread_mutex_unlock(&g_mu);
  return 0;
}

int sf_dist_rank(void) { sf_dist_init(); return t_active ? t_rank : g_rank; }
int sf_dist_world_size(void) { sf_dist_init(); return t_active ? t_world : g_world; }
bool sf_dist_using_mpi(void) { sf_dist_init(); return g_mpi && !t_active; }

int sf_dist_op_parse(const char *name, sf_dist_op *op) {
  static const char *names[] = {"sum", "prod", "max", "min", "avg"};
  for (int i = 0; i < 5; i++)
    if (!strcmp(name, names[i])) { *op = (sf_dist_op)i; return 0; }
  return sf_error("sfwb.dist: unknown reduction '%s' (sum, prod, max, min, avg)", name);
}

/* ---------------- who carries the collective ---------------- */

enum { VIA_NONE, VIA_MPI, VIA_GPU };

/* a process group (sf_dist_split): an MPI communicator over some ranks of the process world, and the
 * NCCL communicators of its members' devices, made on first use as the world's are */
struct sf_dist_group {
  int rank, size;
  int *world_ranks; /* [size]: world rank of each group rank */
  int64_t seq;      /* the group's collective calls (the guard's count) */
  sf_gpu_comm *gpu[SF_NDEVTYPES][16];
#ifdef SFWB_HAVE_MPI
  MPI_Comm comm;
#endif
};

/* who carries a collective, over which ranks: size, and on MPI the communicator and its guard count */
typedef struct {
  int via;
  const sf_gpu_ext *ext;
  sf_gpu_comm *comm;
  int size;
#ifdef SFWB_HAVE_MPI
  MPI_Comm mpi;
  int64_t *seq;
  const int *wr;
#endif
} carrier;

static int carrier_for_in(sf_dist_group *g, const sf_tensor *t, carrier *c) {
  memset(c, 0, sizeof *c);
  sf_device d = sf_device_of(t);
  c->size = g ? g->size : sf_dist_world_size();
#ifdef SFWB_HAVE_MPI
  c->mpi = g ? g->comm : MPI_COMM_WORLD;
  c->seq = g ? &g->seq : NULL;
  c->wr = g ? g->world_ranks : NULL;
#endif
  if (t_active) { /* in-process world: CPU and emu tensors meet in the emulated NCCL */
    if (g) return sf_error("sfwb.dist: process groups need an MPI world (one process per rank), not an in-process one");
    if (d.type == SF_DEV_CUDA) return sf_error("sfwb.dist: cuda tensors in an in-process (emu) world");
    c->via = VIA_GPU;
    c->ext = sf_gpu_ext_for(SF_DEV_EMU);
    c->comm = t_comm;
    return c->ext ? 0 : -1;
  }
  if (c->size == 1) { c->via = VIA_NONE; return 0; }
  /* CPU tensors, and emu tensors across processes: the emulator's device memory is host memory, so its
   * NCCL between processes is MPI on that memory (same guards, same reductions as the CPU) */
  if (d.type == SF_DEV_CPU || d.type == SF_DEV_EMU) {
    c->via = VIA_MPI;
    return 0;
  }
#ifdef SFWB_HAVE_MPI
  /* device tensors across processes: NCCL with the unique id broadcast from rank 0 over MPI */
  if (d.index < 0 || d.index >= 16) return sf_error("sfwb.dist: device index %d out of range", d.index);
  const sf_gpu_ext *x = sf_gpu_ext_for((sf_devtype)d.type);
  if (!x) return -1;
  pthread_mutex_lock(&g_mu);
  sf_gpu_comm **slot = g ? &g->gpu[d.type][d.index] : &g_comm[d.type][d.index];
  sf_gpu_comm *comm = *slot;
  if (!comm) {
    char id[128] = {0};
    int grank = g ? g->rank : g_rank;
    int rc = grank == 0 ? x->comm_unique_id(id) : 0;
    MPI_Bcast(&rc, 1, MPI_INT, 0, c->mpi);
    if (rc == 0) MPI_Bcast(id, 128, MPI_BYTE, 0, c->mpi);
    comm = rc == 0 ? x->comm_init(id, c->size, grank, d.index) : NULL;
    *slot = comm;
  }
  pthread_mutex_unlock(&g_mu);
  if (!comm) return sf_error_prefix("sfwb.dist: creating the NCCL communicator: "), -1;
  c->via = VIA_GPU;
  c->ext = x;
  c->comm = comm;
  return 0;
#else
  return sf_error("sfwb.dist: this build has no MPI");
#endif
}

#ifdef SFWB_HAVE_MPI
static MPI_Datatype mpi_type(sf_dtype dt) {
  switch (dt) {
  case SF_F32: return MPI_FLOAT;
  case SF_F64: return MPI_DOUBLE;
  case SF_I64: return MPI_INT64_T;
  case SF_I32: return MPI_INT32_T;
  case SF_U8: case SF_BOOL: return MPI_UINT8_T;
  default: return MPI_DATATYPE_NULL; /* bf16/f16: reduced through f32 */
  }
}
static MPI_Op mpi_op(sf_dist_op op) {
  switch (op) {
  case SF_DIST_PROD: return MPI_PROD;
  case SF_DIST_MAX: return MPI_MAX;
  case SF_DIST_MIN: return MPI_MIN;
  default: return MPI_SUM;
  }
}
static int mpi_check(int rc, const char *what) {
  if (rc == MPI_SUCCESS) return 0;
  char msg[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(rc, msg, &n);
  return sf_error("sfwb.dist: %s failed: %s", what, msg);
}
#endif

#ifdef SFWB_HAVE_MPI
#define AGREE(c, ...) agree(c, __VA_ARGS__)
#else
#define AGREE(c, ...) sf_error("sfwb.dist: this build has no MPI")
#endif

static int check_op_dtype(sf_dist_op op, sf_dtype dt) {
  if (op == SF_DIST_AVG && !sf_dtype_is_float(dt)) return sf_error("sfwb.dist: avg needs a float tensor, got %s", sf_dtype_name(dt));
  return 0;
}

#ifdef SFWB_HAVE_MPI
/* the guard's agreement among the carrier's ranks */
static int agree(const carrier *c, const char *op, sf_dtype dt, size_t count, int root) {
  return c->seq ? sf_dist_guard_agree_in(c->mpi, c->seq, c->wr, op, dt, count, root) : sf_dist_guard_agree(op, dt, count, root);
}
#endif

/* a reduction carried by MPI on a contiguous CPU tensor (bf16/f16 via an f32 copy) */
static int mpi_reduce(const carrier *c, const char *what, sf_tensor *send, sf_tensor *recv, sf_dist_op op, int scatter) {
#ifdef SFWB_HAVE_MPI
  if (send->dtype == SF_BF16 || send->dtype == SF_F16) {
    sf_tensor *s32 = sf_cast(send, SF_F32), *r32 = s32 ? sf_cast(recv, SF_F32) : NULL;
    int rc = r32 ? mpi_reduce(c, what, s32, r32, op, scatter) : -1;
    if (!rc) rc = sf_copy_(recv, r32);
    sf_release(s32);
    sf_release(r32);
    return rc;
  }
  if (sf_numel(recv) > 0x7fffffff) return sf_error("sfwb.dist.%s: tensors over 2^31 elements are not supported on MPI", what);
  int count = (int)sf_numel(recv);
  void *sp = send == recv ? MPI_IN_PLACE : sf_data_ptr(send);
  MPI_Request rq;
  int rc = scatter ? MPI_Ireduce_scatter_block(sf_data_ptr(send), sf_data_ptr(recv), count, mpi_type(send->dtype), mpi_op(op), c->mpi, &rq)
                   : MPI_Iallreduce(sp, sf_data_ptr(recv), count, mpi_type(send->dtype), mpi_op(op), c->mpi, &rq);
  if (mpi_check(rc, what) || sf_dist_guard_wait(&rq, what)) return -1;
  if (op == SF_DIST_AVG) return sf_binary_scalar_(SF_BIN_DIV, recv, (double)c->size);
  return 0;
#else
  (void)c, (void)what, (void)send, (void)recv, (void)op, (void)scatter;
  return sf_error("sfwb.dist: this build has no MPI");
#endif
}

int sf_dist_all_reduce(sf_tensor *t, sf_dist_op op) { return sf_dist_all_reduce_in(NULL, t, op); }

int sf_dist_all_reduce_in(sf_dist_group *g, sf_tensor *t, sf_dist_op op) {
  carrier c;
  if (sf_dist_init() || check_op_dtype(op, t->dtype) || carrier_for_in(g, t, &c)) return -1;
  if (c.via == VIA_NONE) return 0;
  sf_tensor *w = sf_contiguous(t);
  if (!w) return -1;
  int rc = c.via == VIA_MPI ? (AGREE(&c, "all_reduce", w->dtype, (size_t)sf_numel(w), (int)op) ? -1 : mpi_reduce(&c, "all_reduce", w, w, op, 0))
                            : c.ext->all_reduce(c.comm, sf_data_ptr(w), sf_data_ptr(w), (size_t)sf_numel(w), w->dtype, op);
  if (!rc && w != t) rc = sf_copy_(t, w);
  sf_release(w);
  return rc;
}

int sf_dist_broadcast(sf_tensor *t, int root) {
  carrier c;
  if (sf_dist_init() || carrier_for_in(NULL, t, &c)) return -1;
  int world = sf_dist_world_size();
  if (root < 0 || root >= world) return sf_error("sfwb.dist.broadcast: root %d outside [0, %d)", root, world);
  if (c.via == VIA_NONE) return 0;
  sf_tensor *w = sf_contiguous(t);
  if (!w) return -1;
  int rc;
  if (c.via == VIA_MPI) {
#ifdef SFWB_HAVE_MPI
    size_t nb = (size_t)sf_numel(w) * sf_dtype_size(w->dtype);
    MPI_Request rq;
    rc = nb > 0x7fffffff ? sf_error("sfwb.dist.broadcast: tensors over 2 GB are not supported on MPI")
         : sf_dist_guard_agree("broadcast", w->dtype, (size_t)sf_numel(w), root) ? -1
         : mpi_check(MPI_Ibcast(sf_data_ptr(w), (int)nb, MPI_BYTE, root, MPI_COMM_WORLD, &rq), "broadcast") ? -1
         : sf_dist_guard_wait(&rq, "broadcast");
#else
    rc = -1;
#endif
  } else {
    rc = c.ext->broadcast(c.comm, sf_data_ptr(w), sf_data_ptr(w), (size_t)sf_numel(w), w->dtype, root);
  }
  if (!rc && w != t) rc = sf_copy_(t, w);
  sf_release(w);
  return rc;
}

sf_tensor *sf_dist_all_gather(sf_tensor *t) { return sf_dist_all_gather_in(NULL, t); }

sf_tensor *sf_dist_all_gather_in(sf_dist_group *g, sf_tensor *t) {
  carrier c;
  if (sf_dist_init() || carrier_for_in(g, t, &c)) return NULL;
  int world = c.size;
  int64_t sh[SF_MAX_DIMS];
  int nd = t->ndim ? t->ndim : 1;
  if (t->ndim) memcpy(sh, t->shape, sizeof(int64_t) * t->ndim);
  else sh[0] = 1;
  sh[0] *= world;
  sf_tensor *w = sf_contiguous(t);
  sf_tensor *out = w ? sf_tensor_new(t->dtype, sf_device_of(t), nd, sh) : NULL;
  int rc = out ? 0 : -1;
  size_t n = (size_t)sf_numel(t);
  if (!rc && c.via == VIA_NONE) rc = sf_copy_(out, w);
  else if (!rc && c.via == VIA_MPI) {
#ifdef SFWB_HAVE_MPI
    size_t nb = n * sf_dtype_size(t->dtype);
    MPI_Request rq;
    rc = nb > 0x7fffffff ? sf_error("sfwb.dist.all_gather: tensors over 2 GB are not supported on MPI")
         : AGREE(&c, "all_gather", t->dtype, n, 0) ? -1
         : mpi_check(MPI_Iallgather(sf_data_ptr(w), (int)nb, MPI_BYTE, sf_data_ptr(out), (int)nb, MPI_BYTE, c.mpi, &rq), "all_gather") ? -1
         : sf_dist_guard_wait(&rq, "all_gather");
#endif
  } else if (!rc) {
    rc = c.ext->all_gather(c.comm, sf_data_ptr(w), sf_data_ptr(out), n, t->dtype);
  }
  sf_release(w);
  if (rc) { sf_release(out); return NULL; }
  return out;
}

sf_tensor *sf_dist_reduce_scatter(sf_tensor *t, sf_dist_op op) { return sf_dist_reduce_scatter_in(NULL, t, op); }

sf_tensor *sf_dist_reduce_scatter_in(sf_dist_group *g, sf_tensor *t, sf_dist_op op) {
  carrier c;
  if (sf_dist_init() || check_op_dtype(op, t->dtype) || carrier_for_in(g, t, &c)) return NULL;
  int world = c.size;
  char b[128];
  if (t->ndim == 0 || t->shape[0] % world) {
    sf_error("sfwb.dist.reduce_scatter: dim 1 of %s must be a multiple of the number of ranks %d", sf_shape_str(t, b, sizeof b), world);
    return NULL;
  }
  int64_t sh[SF_MAX_DIMS];
  memcpy(sh, t->shape, sizeof(int64_t) * t->ndim);
  sh[0] /= world;
  sf_tensor *w = sf_contiguous(t);
  sf_tensor *out = w ? sf_tensor_new(t->dtype, sf_device_of(t), t->ndim, sh) : NULL;
  int rc = out ? 0 : -1;
  if (!rc && c.via == VIA_NONE) rc = sf_copy_(out, w);
  else if (!rc && c.via == VIA_MPI)
    rc = AGREE(&c, "reduce_scatter", t->dtype, (size_t)sf_numel(w), (int)op) ? -1 : mpi_reduce(&c, "reduce_scatter", w, out, op, 1);
  else if (!rc) rc = c.ext->reduce_scatter(c.comm, sf_data_ptr(w), sf_data_ptr(out), (size_t)sf_numel(out), t->dtype, op);
  sf_release(w);
  if (rc) { sf_release(out); return NULL; }
  return out;
}

int sf_dist_barrier(void) {
  if (sf_dist_init()) return -1;
  if (t_active) {
    int64_t one = 1;
    sf_tensor *x = sf_zeros(1, &one, SF_F32, sf_cpu());
    int rc = x ? sf_dist_all_reduce(x, SF_DIST_SUM) : -1;
    sf_release(x);
    return rc;
  }
#ifdef SFWB_HAVE_MPI
  if (g_mpi && g_world > 1) {
    MPI_Request rq;
    if (sf_dist_guard_agree("barrier", SF_U8, 0, 0) || mpi_check(MPI_Ibarrier(MPI_COMM_WORLD, &rq), "barrier")) return -1;
    return sf_dist_guard_wait(&rq, "barrier");
  }
#endif
  return 0;
}

/* ---------------- process groups ---------------- */

sf_dist_group *sf_dist_split(int color, int key) {
  if (sf_dist_init()) return NULL;
  if (t_active) return sf_error("sfwb.dist.split: process groups need an MPI world (one process per rank), not an in-process one"), NULL;
  if (color < 0) return sf_error("sfwb.dist.split: color must be >= 0, got %d", color), NULL;
  sf_dist_group *g = calloc(1, sizeof *g);
  if (!g) return sf_error("sfwb.dist.split: out of memory"), NULL;
  if (!g_mpi || g_world == 1) { /* one rank: a group of itself */
    g->size = 1;
    g->world_ranks = malloc(sizeof(int));
    if (!g->world_ranks) return free(g), sf_error("sfwb.dist.split: out of memory"), NULL;
    g->world_ranks[0] = 0;
#ifdef SFWB_HAVE_MPI
    g->comm = MPI_COMM_SELF;
#endif
    return g;
  }
#ifdef SFWB_HAVE_MPI
  MPI_Request rq;
  if (sf_dist_guard_agree("split", SF_I32, 0, 0) || mpi_check(MPI_Ibarrier(MPI_COMM_WORLD, &rq), "split") ||
      sf_dist_guard_wait(&rq, "split") || mpi_check(MPI_Comm_split(MPI_COMM_WORLD, color, key, &g->comm), "split")) {
    free(g);
    return NULL;
  }
  MPI_Comm_rank(g->comm, &g->rank);
  MPI_Comm_size(g->comm, &g->size);
  g->world_ranks = malloc(sizeof(int) * (size_t)g->size);
  if (!g->world_ranks) sf_error("sfwb.dist.split: out of memory");
  if (!g->world_ranks || mpi_check(MPI_Allgather(&g_rank, 1, MPI_INT, g->world_ranks, 1, MPI_INT, g->comm), "split")) {
    free(g->world_ranks);
    free(g); /* the communicator is left to MPI_Finalize */
    return NULL;
  }
  return g;
#else
  free(g);
  return sf_error("sfwb.dist: this build has no MPI"), NULL;
#endif
}

int sf_dist_group_rank(const sf_dist_group *g) { return g->rank; }
int sf_dist_group_size(const sf_dist_group *g) { return g->size; }
int sf_dist_group_world_rank(const sf_dist_group *g, int r) { return r >= 0 && r < g->size ? g->world_ranks[r] : -1; }

/* the communicators are left to MPI_Finalize: freeing one is collective, a garbage collector's timing is not */
void sf_dist_group_free(sf_dist_group *g) {
  if (!g) return;
  free(g->world_ranks);
  free(g);
}

/* ---------------- in-process world of threads ---------------- */

typedef struct {
  int rank, world;
  int (*fn)(int, void *);
  void *arg;
  const char *id;
  int rc;
  char err[512];
} thread_arg;

static void *rank_main(void *p) {
  thread_arg *a = p;
  const sf_gpu_ext *x = sf_gpu_ext_for(SF_DEV_EMU);
  t_active = 1;
  t_rank = a->rank;
  t_world = a->world;
  t_comm = x ? x->comm_init(a->id, a->world, a->rank, a->rank) : NULL;
  a->rc = t_comm ? a->fn(a->rank, a->arg) : -1;
  if (a->rc) snprintf(a->err, sizeof a->err, "%s", sf_last_error());
  if (t_comm) x->comm_free(t_comm);
  t_comm = NULL;
  t_active = 0;
  return NULL;
}

int sf_dist_run_threads(int n, int (*fn)(int, void *), void *arg) {
  sf_backends_init();
  const sf_gpu_ext *x = sf_gpu_ext_for(SF_DEV_EMU);
  if (!x) return -1;
  sf_device d = {SF_DEV_EMU, 0};
  const sf_backend *b = sf_backend_for(d);
  int have = b && b->device_count ? b->device_count() : 0;
  if (n < 1 || n > have) return sf_error("sfwb.dist: %d ranks need %d emu devices, this process has %d (set SFWB_EMU_DEVICES)", n, n, have);
  char id[128] = {0};
  if (x->comm_unique_id(id)) return -1;
  thread_arg *args = calloc((size_t)n, sizeof *args);
  pthread_t *th = calloc((size_t)n, sizeof *th);
  if (!args || !th) { free(args); free(th); return sf_error("sfwb.dist: out of memory"); }
  for (int r = 0; r < n; r++) {
    args[r] = (thread_arg){r, n, fn, arg, id, 0, {0}};
    pthread_create(&th[r], NULL, rank_main, &args[r]);
  }
  int rc = 0;
  for (int r = 0; r < n; r++) {
    pthread_join(th[r], NULL);
    if (args[r].rc && !rc) rc = sf_error("sfwb.dist: rank %d failed: %s", r, args[r].err);
  }
  free(args);
  free(th);
  return rc;
}
