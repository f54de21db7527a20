#include <mpi.h>
#include "cmpi_shim.h"

static MPI_Datatype daft_type(int type) {
    switch (type) {
    case DAFT_FLOAT: return MPI_FLOAT;
    case DAFT_DOUBLE: return MPI_DOUBLE;
    case DAFT_INT64: return MPI_INT64_T;
    case DAFT_INT32: return MPI_INT32_T;
    default: return MPI_BYTE;
    }
}

#define COMM(c) ((MPI_Comm)(c))
#define REQ(r) ((MPI_Request *)(r))

int daft_mpi_init(void) {
    int flag = 0;
    MPI_Initialized(&flag);
    if (flag) return MPI_SUCCESS;
    int provided = 0;
    return MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
}
int daft_mpi_initialized(void) { int flag = 0; MPI_Initialized(&flag); return flag; }
int daft_mpi_finalized(void) { int flag = 0; MPI_Finalized(&flag); return flag; }
int daft_mpi_finalize(void) { return MPI_Finalize(); }
int daft_mpi_thread_level(void) { int level = 0; MPI_Query_thread(&level); return level; }
int daft_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
void daft_mpi_abort(daft_comm_t comm, int code) { MPI_Abort(comm ? COMM(comm) : MPI_COMM_WORLD, code); }
double daft_mpi_wtime(void) { return MPI_Wtime(); }

daft_comm_t daft_comm_world(void) { return (daft_comm_t)MPI_COMM_WORLD; }
daft_comm_t daft_comm_dup(daft_comm_t comm) {
    MPI_Comm out = MPI_COMM_NULL;
    if (MPI_Comm_dup(COMM(comm), &out) != MPI_SUCCESS) return NULL;
    return (daft_comm_t)out;
}
int daft_comm_rank(daft_comm_t comm) { int r = -1; MPI_Comm_rank(COMM(comm), &r); return r; }
int daft_comm_size(daft_comm_t comm) { int s = -1; MPI_Comm_size(COMM(comm), &s); return s; }

daft_request_t daft_request_null(void) { return (daft_request_t)MPI_REQUEST_NULL; }
int daft_test(daft_request_t *request) {
    int flag = 0;
    int rc = MPI_Test(REQ(request), &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return -rc;
    return flag ? 1 : 0;
}
int daft_wait(daft_request_t *request) { return MPI_Wait(REQ(request), MPI_STATUS_IGNORE); }
int daft_request_free(daft_request_t *request) { return MPI_Request_free(REQ(request)); }

int daft_allreduce_sum(void *buffer, int count, int type, daft_comm_t comm) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, daft_type(type), MPI_SUM, COMM(comm));
}
int daft_iallreduce_sum(void *buffer, int count, int type, daft_comm_t comm, daft_request_t *request) {
    return MPI_Iallreduce(MPI_IN_PLACE, buffer, count, daft_type(type), MPI_SUM, COMM(comm), REQ(request));
}
int daft_bcast(void *buffer, int count, int type, int root, daft_comm_t comm) {
    return MPI_Bcast(buffer, count, daft_type(type), root, COMM(comm));
}
int daft_ibcast(void *buffer, int count, int type, int root, daft_comm_t comm, daft_request_t *request) {
    return MPI_Ibcast(buffer, count, daft_type(type), root, COMM(comm), REQ(request));
}
int daft_barrier(daft_comm_t comm) { return MPI_Barrier(COMM(comm)); }
int daft_ibarrier(daft_comm_t comm, daft_request_t *request) { return MPI_Ibarrier(COMM(comm), REQ(request)); }
int daft_allgather(const void *send, void *recv, int count, int type, daft_comm_t comm) {
    return MPI_Allgather(send, count, daft_type(type), recv, count, daft_type(type), COMM(comm));
}
int daft_iallgather(const void *send, void *recv, int count, int type, daft_comm_t comm, daft_request_t *request) {
    return MPI_Iallgather(send, count, daft_type(type), recv, count, daft_type(type), COMM(comm), REQ(request));
}

int daft_isend(const void *buffer, int count, int type, int dest, int tag, daft_comm_t comm, daft_request_t *request) {
    return MPI_Isend(buffer, count, daft_type(type), dest, tag, COMM(comm), REQ(request));
}
int daft_iprobe(int source_any, int tag, daft_comm_t comm, int *source_out, int *count_out, int type) {
    int flag = 0;
    MPI_Status status;
    MPI_Iprobe(source_any < 0 ? MPI_ANY_SOURCE : source_any, tag, COMM(comm), &flag, &status);
    if (!flag) return 0;
    if (source_out) *source_out = status.MPI_SOURCE;
    if (count_out) { int c = 0; MPI_Get_count(&status, daft_type(type), &c); *count_out = c; }
    return 1;
}
int daft_recv(void *buffer, int count, int type, int source, int tag, daft_comm_t comm) {
    return MPI_Recv(buffer, count, daft_type(type), source, tag, COMM(comm), MPI_STATUS_IGNORE);
}
