#pragma once
#include <stdbool.h>
#include <stddef.h>

/// True when this CPU runs the AVX2/FMA kernel (checked once, at the first call).
bool embedtune_gemm_available(void);

/// Row-major single-threaded C = α · A · op(B) + (C when accumulate, else bias broadcast over the
/// rows when bias is not NULL, else 0). A is (m, k) with row stride lda; op(B) is (k, n): B itself
/// when !transB ((k, n), row stride ldb), Bᵀ when transB ((n, k), row stride ldb: a PyTorch
/// linear weight). bias has n entries. n must be a multiple of 16. The caller checks
/// embedtune_gemm_available() first.
void embedtune_sgemm(bool transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                     const float *b, size_t ldb, bool accumulate, const float *bias, float *c, size_t ldc);
