#ifndef DAFT_CMPI_SHIM_H
#define DAFT_CMPI_SHIM_H
// Functions around OpenMPI's macro handles, so Swift can call them.
int daft_mpi_init(void);
#endif
