// OpenMPI's C API (Debian libopenmpi-dev).
#include <mpi.h>
