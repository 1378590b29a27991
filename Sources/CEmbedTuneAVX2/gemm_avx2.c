// AVX2/FMA single-precision GEMMs for the shapes of LoRA training: many rows of activations times
// a weight, and the low-rank adapter's skinny products around it.
//
// embedtune_sgemm[_sum] — C = A·op(B) (+ a second product): A (activations) is read in place,
// never packed; B (a weight) is packed once per call into 16-column panels. Loop order: columns
// in blocks of NC and depth in blocks of KC (that block of B packed, kept in L2), then 6-row
// strips of A (in L1), each swept across the block's panels by a 6×16 micro-kernel holding C's
// tile in 12 ymm registers. A second product (LoRA's s·u·Bᵀ, or du·A) is accumulated into the
// same tile before it is stored, and a bias is where the tile starts: C is written once.
//
// embedtune_sgemm_tn — C += Aᵀ·B over the token dimension, for the adapter's weight gradients:
// tiles of up to 6×16 (a rank of 8 in two 4-row strips) accumulate over 128-row chunks of A and B,
// both read in place.
//
// OpenBLAS packs every operand of every call; for a rank-8 adapter that packing copies the whole
// (N, in) activation to produce 8 columns, which made the adapter 13% of a MiniLM training step.
// The functions carry target attributes: the rest of the binary stays baseline x86-64 and the
// caller selects this path at run time.
#include "embedtune_avx2.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// KC × NC floats of the weight (384 KB) stay in L2 while a 6-row strip of A (9 KB) stays in L1
// and sweeps them; measured on Zen 3 against 256 and 512 for each.
enum { KC = 384, NC = 256, K2MAX = 256 };

bool embedtune_gemm_available(void) {
#if defined(__x86_64__)
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached == 1;
#else
    return false;
#endif
}

#if defined(__x86_64__)

#include "avx2_math.h"
#include "gemm_tile.h"

// C[0..<mr][0..<nv] = (α · tile + base) ⊙ M; base is C itself (fromC), a bias row, or NULL (zero);
// M (rows ldm apart) only when `mul` is not NULL.
INLINE void store(const Tile *t, const int mr, float *c, size_t ldc, const float *base, bool fromC, __m256 alpha, size_t nv,
                  const float *mul, size_t ldm) {
    const __m256 zero = _mm256_setzero_ps();
    if (nv >= NR) {
        __m256 b0 = zero, b1 = zero;
        if (base && !fromC) b0 = _mm256_loadu_ps(base), b1 = _mm256_loadu_ps(base + 8);
#define STORE(i)                                                                                    \
        if (mr > i) {                                                                               \
            float *row = c + i * ldc;                                                               \
            if (fromC) b0 = _mm256_loadu_ps(row), b1 = _mm256_loadu_ps(row + 8);                    \
            __m256 r0 = _mm256_fmadd_ps(alpha, t->c##i##0, b0), r1 = _mm256_fmadd_ps(alpha, t->c##i##1, b1); \
            if (mul) {                                                                              \
                r0 = _mm256_mul_ps(r0, _mm256_loadu_ps(mul + i * ldm));                             \
                r1 = _mm256_mul_ps(r1, _mm256_loadu_ps(mul + i * ldm + 8));                         \
            }                                                                                       \
            _mm256_storeu_ps(row, r0);                                                              \
            _mm256_storeu_ps(row + 8, r1);                                                          \
        }
        STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
#undef STORE
    } else {
        const __m256i m0 = lanes((int)nv), m1 = lanes((int)nv - 8);
        __m256 b0 = zero, b1 = zero;
        if (base && !fromC) b0 = _mm256_maskload_ps(base, m0), b1 = _mm256_maskload_ps(base + 8, m1);
#define STORE(i)                                                                                    \
        if (mr > i) {                                                                               \
            float *row = c + i * ldc;                                                               \
            if (fromC) b0 = _mm256_maskload_ps(row, m0), b1 = _mm256_maskload_ps(row + 8, m1);      \
            __m256 r0 = _mm256_fmadd_ps(alpha, t->c##i##0, b0), r1 = _mm256_fmadd_ps(alpha, t->c##i##1, b1); \
            if (mul) {                                                                              \
                r0 = _mm256_mul_ps(r0, _mm256_maskload_ps(mul + i * ldm, m0));                      \
                r1 = _mm256_mul_ps(r1, _mm256_maskload_ps(mul + i * ldm + 8, m1));                  \
            }                                                                                       \
            _mm256_maskstore_ps(row, m0, r0);                                                       \
            _mm256_maskstore_ps(row + 8, m1, r1);                                                   \
        }
        STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
#undef STORE
    }
}

// One strip: C[0..<mr][0..<nv] = (α · (A·Bp + A₂·Bp₂) + base) ⊙ M (the second product when kc2 > 0,
// M when mul is not NULL).
INLINE void strip_body(const int mr, size_t kc, const float *a, size_t lda, const float *bp, size_t kc2, const float *a2,
                       size_t lda2, const float *bp2, float *c, size_t ldc, const float *base, bool fromC,
                       __m256 alpha, size_t nv, const float *mul, size_t ldm) {
    Tile t = zero_tile();
    accumulate(&t, mr, kc, a, lda, 1, bp, NR);
    if (kc2) accumulate(&t, mr, kc2, a2, lda2, 1, bp2, NR);
    store(&t, mr, c, ldc, base, fromC, alpha, nv, mul, ldm);
}

static TARGET void strip(size_t mr, size_t kc, const float *a, size_t lda, const float *bp, size_t kc2, const float *a2,
                         size_t lda2, const float *bp2, float *c, size_t ldc, const float *base, bool fromC,
                         __m256 alpha, size_t nv, const float *mul, size_t ldm) {
#define CASE(r) case r: strip_body(r, kc, a, lda, bp, kc2, a2, lda2, bp2, c, ldc, base, fromC, alpha, nv, mul, ldm); break;
    switch (mr) { CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) default: CASE(1) }
#undef CASE
}

// Packs scale · op(B)[p0..<p0+kc][j0..<j0+nc] into ⌈nc/16⌉ panels of kc × 16, one after the
// other; columns past nc are zero.
static TARGET void pack_b(bool transB, const float *b, size_t ldb, size_t p0, size_t kc, size_t j0, size_t nc,
                          float scale, float *bp) {
    for (size_t jp = 0; jp < nc; jp += NR, bp += kc * NR) {
        const size_t nv = nc - jp < NR ? nc - jp : NR;
        if (transB) {
            // op(B)[p][j] = B[j][p]: weight rows, each read along p, written 16 apart.
            for (size_t jj = 0; jj < NR; jj++) {
                if (jj >= nv) {
                    for (size_t p = 0; p < kc; p++) bp[p * NR + jj] = 0;
                    continue;
                }
                const float *src = b + (j0 + jp + jj) * ldb + p0;
                for (size_t p = 0; p < kc; p++) bp[p * NR + jj] = scale * src[p];
            }
        } else {
            const __m256 s = _mm256_set1_ps(scale);
            const __m256i m0 = lanes((int)nv), m1 = lanes((int)nv - 8);
            for (size_t p = 0; p < kc; p++) {
                const float *src = b + (p0 + p) * ldb + j0 + jp;
                _mm256_store_ps(bp + p * NR, _mm256_mul_ps(s, _mm256_maskload_ps(src, m0)));
                _mm256_store_ps(bp + p * NR + 8, _mm256_mul_ps(s, _mm256_maskload_ps(src + 8, m1)));
            }
        }
    }
}

// Packing buffers, one set per thread, allocated at its first call and kept.
static _Thread_local float *packed, *packed2;

static float *buffer(float **slot, size_t floats) {
    if (!*slot) {
        *slot = aligned_alloc(64, floats * sizeof(float));
        if (!*slot) {
            fprintf(stderr, "embedtune: cannot allocate a GEMM packing buffer (%zu KB)\n", floats * 4 / 1024);
            abort();
        }
    }
    return *slot;
}

static TARGET void gemm(bool transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b,
                        size_t ldb, bool transB2, size_t k2, float alpha2, const float *a2, size_t lda2, const float *b2,
                        size_t ldb2, bool accumulate, const float *bias, float *c, size_t ldc, const float *mul, size_t ldm) {
    if (m == 0 || n == 0) return;
    float *bp = buffer(&packed, (size_t)KC * NC), *bp2 = k2 ? buffer(&packed2, (size_t)K2MAX * NC) : NULL;
    const __m256 alphas = _mm256_set1_ps(alpha);
    // Depth blocks of equal size (≤ KC): K = 1024 is three blocks of 342, not 384 + 384 + 256.
    const size_t blocks = k ? (k + KC - 1) / KC : 1, kcMax = k ? (k + blocks - 1) / blocks : 0;
    // Column blocks of NC keep a deep product's packed weight in L2. A shallow one (the adapter's
    // rank-deep s·u·Bᵀ and du·A) fits whole: one block, so each strip of C is swept along its rows.
    const size_t panels = (n + NR - 1) / NR * NR;
    const size_t ncMax = kcMax * panels <= (size_t)KC * NC && k2 * panels <= (size_t)K2MAX * NC ? n : NC;
    for (size_t j0 = 0; j0 < n; j0 += ncMax) {
        const size_t nc = n - j0 < ncMax ? n - j0 : ncMax;
        // The second product rides along with the first depth block.
        if (k2) pack_b(transB2, b2, ldb2, 0, k2, j0, nc, alpha2 / alpha, bp2);
        for (size_t p0 = 0; p0 < k || p0 == 0; p0 += kcMax) {
            const size_t kc = k - p0 < kcMax ? k - p0 : kcMax, kc2 = p0 == 0 ? k2 : 0;
            const bool fromC = accumulate || p0 > 0, last = p0 + kc >= k;
            if (kc) pack_b(transB, b, ldb, p0, kc, j0, nc, 1, bp);
            for (size_t i = 0; i < m; i += MR) {
                const size_t mr = m - i < MR ? m - i : MR;
                float *ci = c + i * ldc + j0;
                for (size_t jp = 0; jp < nc; jp += NR) {
                    const float *base = fromC ? ci + jp : bias ? bias + j0 + jp : NULL;
                    strip(mr, kc, a + i * lda + p0, lda, bp + jp * kc, kc2, kc2 ? a2 + i * lda2 : NULL, lda2, kc2 ? bp2 + jp * k2 : NULL,
                          ci + jp, ldc, base, fromC, alphas, nc - jp, mul && last ? mul + i * ldm + j0 + jp : NULL, ldm);
                }
            }
            if (k == 0) break;
        }
    }
}

// Narrow C (n ≤ 8: an adapter's u = x·Aᵀ or du = dy·B): one 8-wide panel of op(B), the whole
// depth packed at once, and strips of up to 12 rows (12 accumulators), where the 6×16 tile would
// spend half its FMAs on zero padding. The strip's rows are read in place, all at the same column:
// when they fall into the same L1 set (rows 4 KB apart, K = 1024 or 3072) more than 6 of them evict
// each other, so those strips have 6 rows.
enum { MRN = 12, NARROW_MAX_DEPTH = KC * NC / 8 };

INLINE void narrow_strip(const size_t mr, size_t k, const float *a, size_t lda, const float *bp, float *c, size_t ldc,
                         __m256 alpha, __m256i mask, bool full, bool accumulate, __m256 biasv) {
    __m256 acc[MRN];
    for (size_t r = 0; r < mr; r++) acc[r] = _mm256_setzero_ps();
    for (size_t p = 0; p < k; p++) {
        const __m256 bv = _mm256_load_ps(bp + p * 8);
        for (size_t r = 0; r < mr; r++) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r * lda + p), bv, acc[r]);
    }
    for (size_t r = 0; r < mr; r++) {
        float *row = c + r * ldc;
        if (full) {  // a whole rank of 8: plain stores (masked ones are slow on Zen)
            _mm256_storeu_ps(row, _mm256_fmadd_ps(alpha, acc[r], accumulate ? _mm256_loadu_ps(row) : biasv));
        } else {
            _mm256_maskstore_ps(row, mask, _mm256_fmadd_ps(alpha, acc[r], accumulate ? _mm256_maskload_ps(row, mask) : biasv));
        }
    }
}

static TARGET void gemm_narrow(bool transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                               const float *b, size_t ldb, bool accumulate, const float *bias, float *c, size_t ldc) {
    float *bp = buffer(&packed, (size_t)KC * NC);
    for (size_t p = 0; p < k; p++)
        for (size_t j = 0; j < 8; j++) bp[p * 8 + j] = j < n ? (transB ? b[j * ldb + p] : b[p * ldb + j]) : 0;
    const __m256 alphas = _mm256_set1_ps(alpha);
    const __m256i mask = lanes((int)n);
    const __m256 biasv = bias ? _mm256_maskload_ps(bias, mask) : _mm256_setzero_ps();
    // Distinct 4 KB offsets among consecutive rows: 4096 / gcd(row bytes, 4096).
    size_t g = lda * sizeof(float) % 4096, h = 4096;
    while (g) { const size_t t = h % g; h = g; g = t; }
    const size_t rows = (MRN + 4096 / h - 1) / (4096 / h) > 6 ? 6 : MRN;
    for (size_t i = 0; i < m; i += rows) {
        const size_t mr = m - i < rows ? m - i : rows;
        const float *ai = a + i * lda;
        float *ci = c + i * ldc;
        // Full strips get bodies with a constant row count (the accumulators stay in registers).
        if (mr == 12) narrow_strip(12, k, ai, lda, bp, ci, ldc, alphas, mask, n == 8, accumulate, biasv);
        else if (mr == 6) narrow_strip(6, k, ai, lda, bp, ci, ldc, alphas, mask, n == 8, accumulate, biasv);
        else narrow_strip(mr, k, ai, lda, bp, ci, ldc, alphas, mask, n == 8, accumulate, biasv);
    }
}

TARGET void embedtune_sgemm(bool transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                            const float *b, size_t ldb, bool accumulate, const float *bias, float *c, size_t ldc) {
    if (n <= 8 && k > 0 && k <= NARROW_MAX_DEPTH) return gemm_narrow(transB, m, n, k, alpha, a, lda, b, ldb, accumulate, bias, c, ldc);
    gemm(transB, m, n, k, alpha, a, lda, b, ldb, false, 0, 0, NULL, 0, NULL, 0, accumulate, bias, c, ldc, NULL, 0);
}

TARGET void embedtune_sgemm_sum(bool transB, size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b,
                                size_t ldb, bool transB2, size_t k2, float alpha2, const float *a2, size_t lda2,
                                const float *b2, size_t ldb2, bool accumulate, const float *bias, float *c, size_t ldc,
                                const float *mul, size_t ldm) {
    if (k2 > K2MAX) {  // a rank above 256: the second product on its own
        gemm(transB, m, n, k, 1, a, lda, b, ldb, false, 0, 0, NULL, 0, NULL, 0, accumulate, bias, c, ldc, NULL, 0);
        gemm(transB2, m, n, k2, alpha2, a2, lda2, b2, ldb2, false, 0, 0, NULL, 0, NULL, 0, true, NULL, c, ldc, mul, ldm);
        return;
    }
    gemm(transB, m, n, k, 1, a, lda, b, ldb, transB2, k2, alpha2, a2, lda2, b2, ldb2, accumulate, bias, c, ldc, mul, ldm);
}

// tile (mr × 16, C rows) += Aᵀ·B over rows p of a chunk: A[p][0..<mr] broadcast, B[p][0..<16] loaded.
INLINE void tn_tile(const int mr, size_t kc, const float *a, size_t lda, const float *b, size_t ldb, size_t nv,
                    float *c, size_t ldc, bool transposeC, __m256 alpha) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const __m256i m0 = lanes((int)nv), m1 = lanes((int)nv - 8);
    const bool full = nv >= NR;
#define ROW(i)                                                                                      \
    if (mr > i) {                                                                                   \
        const __m256 av = _mm256_broadcast_ss(a + p * lda + i);                                     \
        c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                                 \
        c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                                                 \
    }
    for (size_t p = 0; p < kc; p++) {
        const float *bp = b + p * ldb;
        const __m256 b0 = full ? _mm256_loadu_ps(bp) : _mm256_maskload_ps(bp, m0);
        const __m256 b1 = full ? _mm256_loadu_ps(bp + 8) : _mm256_maskload_ps(bp + 8, m1);
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
    }
#undef ROW
    if (!transposeC) {
        // C's rows in place: C += α·tile, masked on a partial panel.
#define ADD(i)                                                                                      \
        if (mr > i) {                                                                               \
            float *row = c + i * ldc;                                                               \
            if (full) {                                                                             \
                _mm256_storeu_ps(row, _mm256_fmadd_ps(alpha, c##i##0, _mm256_loadu_ps(row)));       \
                _mm256_storeu_ps(row + 8, _mm256_fmadd_ps(alpha, c##i##1, _mm256_loadu_ps(row + 8))); \
            } else {                                                                                \
                _mm256_maskstore_ps(row, m0, _mm256_fmadd_ps(alpha, c##i##0, _mm256_maskload_ps(row, m0))); \
                _mm256_maskstore_ps(row + 8, m1, _mm256_fmadd_ps(alpha, c##i##1, _mm256_maskload_ps(row + 8, m1))); \
            }                                                                                       \
        }
        ADD(0) ADD(1) ADD(2) ADD(3) ADD(4) ADD(5)
#undef ADD
        return;
    }
    // Transposed: through a small tile, column by column.
    float tile[MR][NR] __attribute__((aligned(32)));
#define KEEP(i)                                                                                     \
    if (mr > i) {                                                                                   \
        _mm256_store_ps(tile[i], _mm256_mul_ps(alpha, c##i##0));                                    \
        _mm256_store_ps(tile[i] + 8, _mm256_mul_ps(alpha, c##i##1));                                \
    }
    KEEP(0) KEEP(1) KEEP(2) KEEP(3) KEEP(4) KEEP(5)
#undef KEEP
    for (size_t j = 0; j < nv; j++)
        for (int i = 0; i < mr; i++) c[j * ldc + i] += tile[i][j];
}

TARGET void embedtune_sgemm_tn(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b,
                               size_t ldb, float *c, size_t ldc, bool transposeC) {
    const __m256 alphas = _mm256_set1_ps(alpha);
    // C's rows in strips of equal height: a rank of 8 is 4 + 4, not 6 + 2, whose 2-row strip has
    // four accumulators, too few to cover the FMA latency (it ran at half the 6-row strip's rate).
    const size_t strips = (m + MR - 1) / MR, rows = strips ? (m + strips - 1) / strips : MR;
    // Chunks of 128 rows of A and B: the 16-column slab of B one strip of C reads (8 KB) is still in
    // L1 when the next strip reads it, and C's tile is added to C once per chunk (scalar adds when C
    // is transposed). Against chunks sized for a whole B block in L2 (64 rows for 1 536 columns),
    // the adapter's dB and dA with 1 536 outputs/inputs ran 14% / 8% faster (4 + 4 strips both).
    const size_t chunk = 128;
    for (size_t p0 = 0; p0 < k; p0 += chunk) {
        const size_t kc = k - p0 < chunk ? k - p0 : chunk;
        for (size_t j = 0; j < n; j += NR) {
            const size_t nv = n - j < NR ? n - j : NR;
            for (size_t i = 0; i < m; i += rows) {
                const size_t mr = m - i < rows ? m - i : rows;
                const float *ai = a + p0 * lda + i, *bj = b + p0 * ldb + j;
                float *cij = transposeC ? c + j * ldc + i : c + i * ldc + j;
#define CASE(r) case r: tn_tile(r, kc, ai, lda, bj, ldb, nv, cij, ldc, transposeC, alphas); break;
                switch (mr) { CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) default: CASE(1) }
#undef CASE
            }
        }
    }
}

#else

void embedtune_sgemm(bool transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                     const float *b, size_t ldb, bool accumulate, const float *bias, float *c, size_t ldc) {
    abort();  // callers check embedtune_gemm_available() first
}
void embedtune_sgemm_sum(bool transB, size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b,
                         size_t ldb, bool transB2, size_t k2, float alpha2, const float *a2, size_t lda2,
                         const float *b2, size_t ldb2, bool accumulate, const float *bias, float *c, size_t ldc,
                         const float *mul, size_t ldm) {
    abort();
}
void embedtune_sgemm_tn(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b,
                        size_t ldb, float *c, size_t ldc, bool transposeC) {
    abort();
}

#endif
