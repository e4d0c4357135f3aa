/* dist_guard.c — a header exchange before each MPI collective and deadline-bounded waits (dist_guard.h).
 * The exchange is point to point (every rank to every other), so a missing rank is known by name: its
 * receive is the one still pending at the deadline. Worlds here are a handful of ranks per job step;
 * the world^2 small messages cost microseconds next to the tensors they guard. */
#define _POSIX_C_SOURCE 200809L
#include "dist/dist_guard.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

static double g_timeout = -1;
static int g_broken;

double sf_dist_timeout(void) {
  if (g_timeout < 0) {
    const char *s = getenv("SFWB_DIST_TIMEOUT");
    double v = s ? atof(s) : 0;
    g_timeout = v > 0 ? v : 600; /* torch.distributed's default for NCCL process groups: 10 min */
  }
  return g_timeout;
}
void sf_dist_set_timeout(double seconds) { g_timeout = seconds > 0 ? seconds : 600; }
int sf_dist_broken(void) { return g_broken; }
void sf_dist_mark_broken(void) { g_broken = 1; }

#ifdef SFWB_HAVE_MPI
enum { GUARD_TAG = 0x5f5f };

typedef struct {
  int64_t seq, count;
  int32_t dtype, root;
  char op[24];
} header;

static int64_t g_seq;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* poll a little (latency), then in short naps: ranks often share cores (oversubscribed, or a busy
 * machine), where sched_yield hands the core away for a whole time slice and a spinning rank starves
 * the one it waits for */
static void backoff(long *iter) {
  if (++*iter < 64) return;
  struct timespec ts = {0, 20000};
  nanosleep(&ts, NULL);
}

static void describe(const header *h, char *buf, size_t n) {
  if (!strcmp(h->op, "broadcast")) snprintf(buf, n, "%s (%s x %lld from rank %d)", h->op, sf_dtype_name((sf_dtype)h->dtype), (long long)h->count, h->root);
  else if (!strcmp(h->op, "barrier")) snprintf(buf, n, "barrier");
  else snprintf(buf, n, "%s (%s x %lld)", h->op, sf_dtype_name((sf_dtype)h->dtype), (long long)h->count);
}

int sf_dist_guard_agree(const char *op, sf_dtype dt, size_t count, int root) {
  return sf_dist_guard_agree_in(MPI_COMM_WORLD, &g_seq, NULL, op, dt, count, root);
}

int sf_dist_guard_agree_in(MPI_Comm comm, int64_t *seq, const int *wr, const char *op, sf_dtype dt, size_t count, int root) {
  if (g_broken) return sf_error("sfwb.dist.%s: an earlier collective failed, the ranks are out of step", op);
  int rank = 0, world = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &world);
#define WR(r) (wr ? wr[r] : (r))
  /* heap buffers: on a timeout the pending requests are abandoned with the buffers they point to */
  header *h = calloc((size_t)world + 1, sizeof *h);
  MPI_Request *rq = calloc(2 * (size_t)world, sizeof *rq);
  int *idx = calloc(2 * (size_t)world, sizeof *idx);
  if (!h || !rq || !idx) { free(h); free(rq); free(idx); return sf_error("sfwb.dist: out of memory"); }
  header *mine = &h[world];
  mine->seq = ++*seq;
  mine->count = (int64_t)count;
  mine->dtype = (int32_t)dt;
  mine->root = root;
  snprintf(mine->op, sizeof mine->op, "%s", op);
  h[rank] = *mine;
  for (int r = 0; r < world; r++) {
    rq[r] = rq[world + r] = MPI_REQUEST_NULL;
    if (r == rank) continue;
    MPI_Irecv(&h[r], (int)sizeof *h, MPI_BYTE, r, GUARD_TAG, comm, &rq[r]);
    MPI_Isend(mine, (int)sizeof *mine, MPI_BYTE, r, GUARD_TAG, comm, &rq[world + r]);
  }
  double deadline = now() + sf_dist_timeout();
  long iter = 0;
  int rc = 0;
  for (;;) {
    int outcount = 0;
    MPI_Testsome(2 * world, rq, &outcount, idx, MPI_STATUSES_IGNORE);
    if (outcount == MPI_UNDEFINED) break; /* every request done */
    if (now() > deadline) {
      char who[256] = "";
      size_t len = 0;
      for (int r = 0; r < world && len < sizeof who - 16; r++)
        if (rq[r] != MPI_REQUEST_NULL) len += (size_t)snprintf(who + len, sizeof who - len, "%s%d", len ? ", " : "", WR(r));
      char what[96];
      describe(mine, what, sizeof what);
      rc = sf_error("sfwb.dist: %s (call #%lld on rank %d) timed out after %g s: rank(s) %s never joined "
                    "(died, hung, or made a different number of collective calls)",
                    what, (long long)mine->seq, WR(rank), sf_dist_timeout(), who[0] ? who : "?");
      for (int i = 0; i < 2 * world; i++)
        if (rq[i] != MPI_REQUEST_NULL) {
          if (i < world) MPI_Cancel(&rq[i]);
          MPI_Request_free(&rq[i]);
        }
      g_broken = 1;
      free(rq);
      free(idx);
      return rc; /* h leaks on purpose: abandoned sends may still read it */
    }
    if (outcount == 0) backoff(&iter);
  }
  /* every rank must be at the same call with the same op, dtype, count and root */
  int bad = 0;
  for (int r = 0; r < world; r++)
    if (h[r].seq != mine->seq || strcmp(h[r].op, mine->op) || h[r].dtype != mine->dtype || h[r].count != mine->count || h[r].root != mine->root) bad = 1;
  if (bad) {
    char msg[1024];
    size_t len = 0;
    for (int r = 0; r < world && len < sizeof msg - 128; r++) {
      char what[96];
      describe(&h[r], what, sizeof what);
      len += (size_t)snprintf(msg + len, sizeof msg - len, "%srank %d: call #%lld %s", r ? "; " : "", WR(r), (long long)h[r].seq, what);
    }
    rc = sf_error("sfwb.dist.%s: the ranks made mismatched collective calls: %s", op, msg);
    g_broken = 1;
  }
  free(h);
  free(rq);
  free(idx);
  return rc;
#undef WR
}

int sf_dist_guard_wait(MPI_Request *req, const char *op) {
  double deadline = now() + sf_dist_timeout();
  long iter = 0;
  for (;;) {
    int flag = 0;
    int rc = MPI_Test(req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      char msg[MPI_MAX_ERROR_STRING];
      int n = 0;
      MPI_Error_string(rc, msg, &n);
      g_broken = 1;
      return sf_error("sfwb.dist.%s failed: %s", op, msg);
    }
    if (flag) return 0;
    if (now() > deadline) {
      g_broken = 1;
      return sf_error("sfwb.dist.%s (call #%lld) timed out after %g s after every rank had joined (a rank died mid-way?)",
                      op, (long long)g_seq, sf_dist_timeout());
    }
    backoff(&iter);
  }
}
#endif
