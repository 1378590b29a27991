// The 6×16 register tile of the AVX2 GEMM kernels (gemm_avx2.c) and the fused attention
// (attention_avx2.c): C's tile in 12 ymm accumulators, A broadcast from rows read in place.
#pragma once
#include "avx2_math.h"

enum { MR = 6, NR = 16 };

typedef struct {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
} Tile;

INLINE Tile zero_tile(void) {
    const __m256 z = _mm256_setzero_ps();
    const Tile t = {z, z, z, z, z, z, z, z, z, z, z, z};
    return t;
}

// tile += A[0..<mr][0..<kc] · B[0..<kc][0..<16]; A's row i, element p at a + i·lda + p·astep
// (astep 1: A's rows; lda 1 and astep a row stride: Aᵀ, for products over the token dimension),
// B rows ldb apart (NR for a packed panel, a matrix's row stride when 16 columns are read in place).
// `mr` is a compile-time constant at every call site, so each row count gets its own body.
INLINE void accumulate(Tile *t, const int mr, size_t kc, const float *a, size_t lda, size_t astep, const float *bp,
                       size_t ldb) {
    __m256 c00 = t->c00, c01 = t->c01, c10 = t->c10, c11 = t->c11, c20 = t->c20, c21 = t->c21;
    __m256 c30 = t->c30, c31 = t->c31, c40 = t->c40, c41 = t->c41, c50 = t->c50, c51 = t->c51;
    const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda, *a4 = a + 4 * lda, *a5 = a + 5 * lda;
#define ROW(i)                                                                                      \
    if (mr > i) {                                                                                   \
        const __m256 av = _mm256_broadcast_ss(a##i + p * astep);                                            \
        c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                                 \
        c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                                                 \
    }
#define STEP(q)                                                                                     \
    do {                                                                                            \
        const size_t p = (q);                                                                       \
        const __m256 b0 = _mm256_loadu_ps(bp + p * ldb), b1 = _mm256_loadu_ps(bp + p * ldb + 8);        \
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)                                                   \
    } while (0)
    size_t p0 = 0;
    for (; p0 + 4 <= kc; p0 += 4) {
        STEP(p0); STEP(p0 + 1); STEP(p0 + 2); STEP(p0 + 3);
    }
    for (; p0 < kc; p0++) STEP(p0);
#undef STEP
#undef ROW
    t->c00 = c00, t->c01 = c01, t->c10 = c10, t->c11 = c11, t->c20 = c20, t->c21 = c21;
    t->c30 = c30, t->c31 = c31, t->c40 = c40, t->c41 = c41, t->c50 = c50, t->c51 = c51;
}

