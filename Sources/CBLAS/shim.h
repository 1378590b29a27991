#pragma once
// OpenBLAS's cblas.h also declares openblas_get_corename / openblas_set_num_threads.
#include <cblas.h>

// LAPACK's divide-and-conquer SVD, exported by OpenBLAS (column-major, Fortran calling convention;
// the trailing length is gfortran's hidden argument for the character parameter).
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork,
             int *iwork, int *info, size_t jobz_len);
