// Attention forward for one (sequence, head), fused: scores, softmax and P·V one 6-row strip of
// queries at a time, the strip's scores kept in a padded buffer in L1.
//
// As two GEMMs around a row softmax (the portable path), a head of a 115-token MiniLM passage
// (head_dim 32) packed Kᵀ through the generic kernel, and every row of 115 scores ended in a
// partial 16-wide panel and partial 8-wide vectors: masked loads and stores, which are slow on Zen,
// in the GEMM's store and in all three softmax passes. Attention was ~10% of an embedding pass for
// ~5% of its FLOPs. Here the strip's rows are padded to whole panels, so every store is plain;
// V's 16-column slabs are read in place. The arithmetic is the portable path's in the same order
// (for sequences up to 384 tokens, the GEMM's depth block): results agree bit for bit.
#include "embedtune_avx2.h"

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)

#include "avx2_math.h"
#include "gemm_tile.h"

// One thread's packed Kᵀ and score strip, grown to the longest sequence seen and kept.
static _Thread_local float *work;
static _Thread_local size_t workFloats;

static float *work_buffer(size_t floats) {
    if (floats > workFloats) {
        free(work);
        floats = (floats + 15) / 16 * 16;  // aligned_alloc wants a multiple of the alignment
        work = aligned_alloc(64, floats * sizeof(float));
        if (!work) {
            fprintf(stderr, "embedtune: cannot allocate attention scratch (%zu KB)\n", floats * 4 / 1024);
            abort();
        }
        workFloats = floats;
    }
    return work;
}

// A row of scores → probabilities in place: the first `valid` count, the rest of the row up to
// `width` (a multiple of 8) becomes 0. Lanes past `valid` may hold anything: they are blended to −∞
// for the maximum and masked to 0 after exp, as the portable softmax's masked loads leave them.
INLINE void softmax_row(float *row, size_t valid, size_t width) {
    __m256 mv = v(-INFINITY);
    for (size_t j = 0; j < valid; j += 8) {
        const __m256 x = _mm256_loadu_ps(row + j);
        mv = _mm256_max_ps(mv, valid - j >= 8 ? x : _mm256_blendv_ps(v(-INFINITY), x, _mm256_castsi256_ps(lanes((int)(valid - j)))));
    }
    const __m256 m = v(hmax(mv));
    __m256 sums = _mm256_setzero_ps();
    for (size_t j = 0; j < valid; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), m));
        if (valid - j < 8) e = _mm256_and_ps(e, _mm256_castsi256_ps(lanes((int)(valid - j))));
        sums = _mm256_add_ps(sums, e);
        _mm256_storeu_ps(row + j, e);
    }
    const __m256 inv = v(1.0f / hsum(sums));
    size_t j = 0;
    for (; j < valid; j += 8) _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), inv));
    for (; j < width; j += 8) _mm256_storeu_ps(row + j, _mm256_setzero_ps());
}

#define TILE_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

// Scores of a strip: s[0..<mr][0..<16·panels] = α · Q[0..<mr] · Kᵀ, Kᵀ in packed panels of d × 16.
INLINE void strip_scores(const int mr, size_t d, const float *q, size_t ldq, const float *kp, size_t panels, float *s,
                         size_t lds, __m256 alpha) {
    for (size_t jp = 0; jp < panels; jp++) {
        Tile t;
        t.c00 = t.c01 = t.c10 = t.c11 = t.c20 = t.c21 = t.c30 = t.c31 = t.c40 = t.c41 = t.c50 = t.c51 = _mm256_setzero_ps();
        accumulate(&t, mr, d, q, ldq, kp + jp * d * NR, NR);
        float *col = s + jp * NR;
#define STORE(i)                                                                                    \
        if (mr > i) {                                                                               \
            _mm256_storeu_ps(col + i * lds, _mm256_mul_ps(alpha, t.c##i##0));                       \
            _mm256_storeu_ps(col + i * lds + 8, _mm256_mul_ps(alpha, t.c##i##1));                   \
        }
        TILE_ROWS(STORE)
#undef STORE
    }
}

// Output of a strip: out[0..<mr][0..<d] = P[0..<mr][0..<depth] · V[0..<depth][0..<d], V's rows
// ldv apart, read 16 columns at a time in place.
INLINE void strip_values(const int mr, size_t depth, const float *p, size_t ldp, const float *val, size_t ldv, size_t d,
                         float *out, size_t ldo) {
    for (size_t c0 = 0; c0 < d; c0 += NR) {
        Tile t;
        t.c00 = t.c01 = t.c10 = t.c11 = t.c20 = t.c21 = t.c30 = t.c31 = t.c40 = t.c41 = t.c50 = t.c51 = _mm256_setzero_ps();
        accumulate(&t, mr, depth, p, ldp, val + c0, ldv);
#define STORE(i)                                                                                    \
        if (mr > i) {                                                                               \
            _mm256_storeu_ps(out + i * ldo + c0, t.c##i##0);                                        \
            _mm256_storeu_ps(out + i * ldo + c0 + 8, t.c##i##1);                                    \
        }
        TILE_ROWS(STORE)
#undef STORE
    }
}

TARGET bool embedtune_attention_forward(size_t t, size_t d, float scale, bool causal, const float *q, size_t ldq,
                                        const float *k, size_t ldk, const float *val, size_t ldv, float *probs,
                                        float *out, size_t ldo) {
    if (t == 0 || d == 0 || d % NR) return false;
    const size_t width = (t + NR - 1) / NR * NR;
    float *kp = work_buffer(width * (2 * d + MR)), *vp = kp + width * d, *s = vp + width * d;
    // Kᵀ in panels: panel j holds tokens 16j ..< 16j + 16 as d rows of 16, zero past the sequence.
    for (size_t j0 = 0; j0 < width; j0 += NR) {
        float *panel = kp + j0 * d;
        for (size_t jj = 0; jj < NR; jj++) {
            const float *src = j0 + jj < t ? k + (j0 + jj) * ldk : NULL;
            for (size_t p = 0; p < d; p++) panel[p * NR + jj] = src ? src[p] : 0;
        }
    }
    // V's rows side by side: in place they are a whole token's q, k, v apart (4.5 KB for MiniLM),
    // so a head's rows share a few L1 sets and evicted each other on every strip.
    for (size_t j = 0; j < t; j++) memcpy(vp + j * d, val + j * ldv, d * sizeof(float));
    const __m256 alpha = v(scale);
    for (size_t i0 = 0; i0 < t; i0 += MR) {
        const size_t mr = t - i0 < MR ? t - i0 : MR;
        // A causal strip sees keys up to its last row; the rest of its scores are never needed.
        const size_t cols = causal && i0 + mr < t ? i0 + mr : t;
        const size_t panels = (cols + NR - 1) / NR;
        const float *qi = q + i0 * ldq;
#define CASE(r) case r: strip_scores(r, d, qi, ldq, kp, panels, s, width, alpha); break;
        switch (mr) { CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) default: CASE(1) }
#undef CASE
        for (size_t r = 0; r < mr; r++) {
            float *row = s + r * width;
            softmax_row(row, causal ? i0 + r + 1 : t, (cols + 7) / 8 * 8);
            if (probs) {
                float *kept = probs + (i0 + r) * t;
                memcpy(kept, row, cols * sizeof(float));
                memset(kept + cols, 0, (t - cols) * sizeof(float));
            }
        }
        float *oi = out + i0 * ldo;
#define CASE(r) case r: strip_values(r, cols, s, width, vp, d, d, oi, ldo); break;
        switch (mr) { CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) default: CASE(1) }
#undef CASE
    }
    return true;
}

#else

bool embedtune_attention_forward(size_t t, size_t d, float scale, bool causal, const float *q, size_t ldq,
                                 const float *k, size_t ldk, const float *val, size_t ldv, float *probs, float *out,
                                 size_t ldo) {
    return false;
}

#endif
