/* dist.h — sfwb.dist: collectives across ranks. Ranks come from an existing launcher (mpirun/srun:
 * one process per rank, MPI underneath; CPU tensors use MPI collectives, cuda tensors NCCL bootstrapped
 * by broadcasting the NCCL unique id over MPI) or from sf_dist_run_threads (one thread per emu device in
 * this process, emulated NCCL; CPU tensors use the same in-process rendezvous). Without a launcher the
 * world is one rank and every collective is the identity. */
#ifndef SF_DIST_H
#define SF_DIST_H

#include "backend/cuda/gpu_api.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

int sf_dist_init(void);       /* idempotent; MPI_Init when started by an MPI launcher */
int sf_dist_rank(void);
int sf_dist_world_size(void);
bool sf_dist_using_mpi(void);

/* all tensors of one call must have the same shape, dtype and device type on every rank */
int sf_dist_all_reduce(sf_tensor *t, sf_dist_op op);          /* in place */
int sf_dist_broadcast(sf_tensor *t, int root);                /* in place */
sf_tensor *sf_dist_all_gather(sf_tensor *t);                  /* [world * n0, ...]: ranks' tensors along dim 0 */
sf_tensor *sf_dist_reduce_scatter(sf_tensor *t, sf_dist_op op); /* t [world * n0, ...] -> this rank's [n0, ...] */
int sf_dist_barrier(void);
int sf_dist_op_parse(const char *name, sf_dist_op *op);       /* "sum", "prod", "max", "min", "avg" */

/* Process groups (torch.distributed's new_group / split): sf_dist_split is collective over the world;
 * the ranks that pass the same color form a group, ordered by key (then world rank), as MPI_Comm_split.
 * The *_in collectives run among the group's ranks (NULL = the world); dim 0 of all_gather and
 * reduce_scatter counts the group's ranks. MPI worlds only (CPU, emu and cuda tensors); in an in-process
 * world (sf_dist_run_threads) split fails. */
typedef struct sf_dist_group sf_dist_group;
sf_dist_group *sf_dist_split(int color, int key);
void sf_dist_group_free(sf_dist_group *g);
int sf_dist_group_rank(const sf_dist_group *g);
int sf_dist_group_size(const sf_dist_group *g);
int sf_dist_group_world_rank(const sf_dist_group *g, int group_rank); /* -1 when out of range */
int sf_dist_all_reduce_in(sf_dist_group *g, sf_tensor *t, sf_dist_op op);
sf_tensor *sf_dist_all_gather_in(sf_dist_group *g, sf_tensor *t);
sf_tensor *sf_dist_reduce_scatter_in(sf_dist_group *g, sf_tensor *t, sf_dist_op op);

/* runs fn(rank, arg) on n threads, thread r being rank r of an in-process world bound to emu:r
 * (needs SFWB_EMU_DEVICES >= n). Returns 0 when every fn returned 0. */
int sf_dist_run_threads(int n, int (*fn)(int rank, void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
