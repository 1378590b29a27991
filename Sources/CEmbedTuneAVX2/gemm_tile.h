// The register tile of the GEMM kernels (gemm_kernels.inc) and the fused attention
// (attention_avx2.c): MR rows × NR = 2 vectors of C in MR·2 accumulators, A broadcast from rows
// read in place. AVX2: 6 × 16 in 12 of the 16 ymm registers; AVX-512: 8 × 32 in 16 of the 32 zmm
// registers (two B vectors and a broadcast beside them, 19 in flight).
#pragma once
#include "simd_vec.h"

#if EMBEDTUNE_VEC_BITS == 512
enum { MR = 8, NR = 2 * VW };
#else
enum { MR = 6, NR = 2 * VW };
#endif

typedef struct {
    vf c[MR][2];
} Tile;

// X(i) for every row a tile can have; each use is guarded by `mr > i` with a constant mr.
#if EMBEDTUNE_VEC_BITS == 512
#define TILE_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#else
#define TILE_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#endif

INLINE Tile zero_tile(void) {
    Tile t;
    for (int i = 0; i < MR; i++) t.c[i][0] = t.c[i][1] = vzero();
    return t;
}

// tile += A[0..<mr][0..<kc] · B[0..<kc][0..<NR]; A's row i, element p at a + i·lda + p·astep
// (astep 1: A's rows; lda 1 and astep a row stride: Aᵀ, for products over the token dimension),
// B rows ldb apart (NR for a packed panel, a matrix's row stride when NR columns are read in place).
// `mr` is a compile-time constant at every call site, so each row count gets its own body.
INLINE void accumulate(Tile *t, const int mr, size_t kc, const float *a, size_t lda, size_t astep, const float *bp,
                       size_t ldb) {
    Tile acc = *t;
#define ROW(i)                                                                                      \
    if (mr > i) {                                                                                   \
        const vf av = vbroadcast(a + (i) * lda + p * astep);                                        \
        acc.c[i][0] = vfmadd(av, b0, acc.c[i][0]);                                                  \
        acc.c[i][1] = vfmadd(av, b1, acc.c[i][1]);                                                  \
    }
#define STEP(q)                                                                                     \
    do {                                                                                            \
        const size_t p = (q);                                                                       \
        const vf b0 = vloadu(bp + p * ldb), b1 = vloadu(bp + p * ldb + VW);                         \
        TILE_ROWS(ROW)                                                                              \
    } while (0)
    size_t p0 = 0;
    for (; p0 + 4 <= kc; p0 += 4) {
        STEP(p0); STEP(p0 + 1); STEP(p0 + 2); STEP(p0 + 3);
    }
    for (; p0 < kc; p0++) STEP(p0);
#undef STEP
#undef ROW
    *t = acc;
}
