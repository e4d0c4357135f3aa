/* emu_nccl.h — the NCCL subset sfwb.dist uses, emulated among the emu devices of one process (one host
 * thread per rank, as NCCL's one-process-per-GPU or thread-per-GPU models). A communicator's ranks meet
 * in an in-process rendezvous named by the unique id; every collective blocks until all ranks have
 * posted, reduces in rank order (so every rank gets bit-identical results) and returns. */
#ifndef SF_EMU_NCCL_H
#define SF_EMU_NCCL_H

#include "emu/emu.h"

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId;
typedef struct sf_emu_nccl_comm *ncclComm_t;
typedef enum { ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3,
               ncclInvalidArgument = 4, ncclInvalidUsage = 5 } ncclResult_t;
typedef enum { ncclInt8 = 0, ncclUint8 = 1, ncclInt32 = 2, ncclUint32 = 3, ncclInt64 = 4, ncclUint64 = 5,
               ncclFloat16 = 6, ncclFloat32 = 7, ncclFloat64 = 8, ncclBfloat16 = 9 } ncclDataType_t;
typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;

#define ncclGetUniqueId sf_emu_ncclGetUniqueId
#define ncclCommInitRank sf_emu_ncclCommInitRank
#define ncclCommDestroy sf_emu_ncclCommDestroy
#define ncclCommCount sf_emu_ncclCommCount
#define ncclCommUserRank sf_emu_ncclCommUserRank
#define ncclAllReduce sf_emu_ncclAllReduce
#define ncclReduceScatter sf_emu_ncclReduceScatter
#define ncclAllGather sf_emu_ncclAllGather
#define ncclBroadcast sf_emu_ncclBroadcast
#define ncclGroupStart sf_emu_ncclGroupStart
#define ncclGroupEnd sf_emu_ncclGroupEnd
#define ncclGetErrorString sf_emu_ncclGetErrorString

extern "C" {
ncclResult_t sf_emu_ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t sf_emu_ncclCommInitRank(ncclComm_t *c, int nranks, ncclUniqueId id, int rank);
ncclResult_t sf_emu_ncclCommDestroy(ncclComm_t c);
ncclResult_t sf_emu_ncclCommCount(ncclComm_t c, int *n);
ncclResult_t sf_emu_ncclCommUserRank(ncclComm_t c, int *r);
ncclResult_t sf_emu_ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t dt, ncclRedOp_t op,
                                  ncclComm_t c, cudaStream_t s);
ncclResult_t sf_emu_ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t dt,
                                      ncclRedOp_t op, ncclComm_t c, cudaStream_t s);
ncclResult_t sf_emu_ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t dt, ncclComm_t c,
                                  cudaStream_t s);
ncclResult_t sf_emu_ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t dt, int root,
                                  ncclComm_t c, cudaStream_t s);
ncclResult_t sf_emu_ncclGroupStart(void);
ncclResult_t sf_emu_ncclGroupEnd(void);
const char *sf_emu_ncclGetErrorString(ncclResult_t r);
}

#endif
