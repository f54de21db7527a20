// OpenBLAS: CBLAS plus the LAPACK routines daft uses (OpenBLAS ships LAPACK; Debian's build has no LAPACKE).
#include <cblas.h>

void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda,
             double *b, const int *ldb, int *info);
