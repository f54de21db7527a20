#ifndef DAFT_CMPI_SHIM_H
#define DAFT_CMPI_SHIM_H
// Functions around OpenMPI's macro handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...), so Swift can call them.
// Handles cross the boundary as opaque pointers (OpenMPI handles are pointers), so Swift never needs <mpi.h>.
#include <stddef.h>
#include <stdint.h>

typedef void *daft_comm_t;     // MPI_Comm
typedef void *daft_request_t;  // MPI_Request

/// Element types the shim reduces / moves.
enum { DAFT_FLOAT = 0, DAFT_DOUBLE = 1, DAFT_INT64 = 2, DAFT_BYTE = 3, DAFT_INT32 = 4 };

// Lifecycle.
int daft_mpi_init(void);                 // MPI_Init_thread(FUNNELED) unless already initialized; returns MPI error code
int daft_mpi_initialized(void);          // 1 when MPI_Init has run
int daft_mpi_finalized(void);            // 1 when MPI_Finalize has run
int daft_mpi_finalize(void);
int daft_mpi_thread_level(void);         // provided thread level (MPI_THREAD_* value)
int daft_mpi_thread_funneled(void);      // MPI_THREAD_FUNNELED constant
void daft_mpi_abort(daft_comm_t comm, int code);
double daft_mpi_wtime(void);

// Communicators.
daft_comm_t daft_comm_world(void);
daft_comm_t daft_comm_dup(daft_comm_t comm);      // NULL on failure
int daft_comm_rank(daft_comm_t comm);
int daft_comm_size(daft_comm_t comm);

// Requests.
daft_request_t daft_request_null(void);
int daft_test(daft_request_t *request);           // 1 when complete (request becomes null), 0 otherwise, <0 on error
int daft_wait(daft_request_t *request);

// Collectives (in place where it applies). Return MPI error code (0 = success).
int daft_allreduce_sum(void *buffer, int count, int type, daft_comm_t comm);
int daft_iallreduce_sum(void *buffer, int count, int type, daft_comm_t comm, daft_request_t *request);
int daft_bcast(void *buffer, int count, int type, int root, daft_comm_t comm);
int daft_ibcast(void *buffer, int count, int type, int root, daft_comm_t comm, daft_request_t *request);
int daft_barrier(daft_comm_t comm);
int daft_ibarrier(daft_comm_t comm, daft_request_t *request);
int daft_allgather(const void *send, void *recv, int count, int type, daft_comm_t comm);
int daft_iallgather(const void *send, void *recv, int count, int type, daft_comm_t comm, daft_request_t *request);

// Point to point (the watchdog's side channel).
int daft_isend(const void *buffer, int count, int type, int dest, int tag, daft_comm_t comm, daft_request_t *request);
int daft_iprobe(int source_any, int tag, daft_comm_t comm, int *source_out, int *count_out, int type); // 1 when a message waits
int daft_recv(void *buffer, int count, int type, int source, int tag, daft_comm_t comm);
int daft_request_free(daft_request_t *request);

#endif
