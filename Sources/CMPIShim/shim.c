#include <mpi.h>
#include "cmpi_shim.h"
int daft_mpi_init(void) { int provided = 0; return MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided); }
