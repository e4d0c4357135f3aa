/* dist_guard.h — collectives that cannot hang. Before every MPI collective the ranks exchange a small
 * header (call number, op, dtype, count, root) point to point; a rank that does not answer within the
 * timeout (it died, hangs, or never makes the call) or answers with a different call ends the collective
 * with an error naming the op and the ranks, and marks the world broken: at exit a broken world aborts
 * the job (MPI_Abort) instead of waiting in MPI_Finalize for ranks that will never come. */
#ifndef SF_DIST_GUARD_H
#define SF_DIST_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

#ifdef SFWB_HAVE_MPI
#include <mpi.h>

/* every rank of MPI_COMM_WORLD agrees to run collective `op` now; 0, or -1 with the error set */
int sf_dist_guard_agree(const char *op, sf_dtype dt, size_t count, int root);
/* the same within a communicator, whose calls `seq` counts (a group's own count: its collectives are
 * not the other ranks'); ranks are named by their world rank (world_ranks[i] of the comm's rank i) */
int sf_dist_guard_agree_in(MPI_Comm comm, int64_t *seq, const int *world_ranks, const char *op, sf_dtype dt, size_t count,
                           int root);
/* waits for a non-blocking collective until the deadline; 0, or -1 with the error set */
int sf_dist_guard_wait(MPI_Request *req, const char *op);
#endif

double sf_dist_timeout(void);          /* seconds; SFWB_DIST_TIMEOUT or 600 */
void sf_dist_set_timeout(double seconds);
int sf_dist_broken(void);              /* a collective failed: the world is out of step */
void sf_dist_mark_broken(void);

#endif
