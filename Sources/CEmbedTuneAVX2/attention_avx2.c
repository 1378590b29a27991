// Attention for one (sequence, head), forward and backward, fused: each 6-row strip of queries
// computes its scores (or dP), its softmax (or softmax backward) and its P·V (or dS·K) while the
// strip's rows sit in a padded buffer in L1; backward's Pᵀ·dO and dSᵀ·Q then run over the whole
// head with the 6×16 tile reading Aᵀ in place.
//
// As GEMMs around a row softmax (the portable path), a 115-token MiniLM head (head_dim 32) ended
// every row of scores in a partial 16-wide panel and partial 8-wide vectors: masked loads and
// stores, slow on Zen, in the GEMM's store and in every softmax pass. And a head's q, k, v, dO rows
// lie a whole token's worth of heads apart (1.5 KB for MiniLM, 8 KB for Qwen3-0.6B's q), so the
// rows of a head share a few L1 sets and evicted each other on every strip: here they are packed
// side by side (or as Kᵀ/Vᵀ panels) once per head. A causal head skips the zeros above its
// diagonal. The arithmetic is the portable path's in the same order (the forward's for sequences
// up to 384 tokens, the GEMM's depth block; the backward's up to 128, where the Aᵀ·B kernel starts
// a new chunk): results agree bit for bit there (bench/gemm/attention_heads.c). A forward pass not
// keeping its probabilities (inference) normalises the output rows instead of the probabilities,
// which differs by rounding and saves a pass over the scores.
#include "embedtune_avx2.h"

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)

#include "avx2_math.h"
#include "gemm_tile.h"

// One thread's packed rows and scores, grown to the longest sequence seen and kept.
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

// A head's rows come from memory (the projections write every head of every token long before),
// one or two cache lines per row, a token's whole width apart: the hardware prefetcher does not
// follow them, and unprefetched, the first loads of each row take ~14% of the fused forward's
// samples. Rows `ahead` of the one being read are requested early.
enum { AHEAD = 8 };

INLINE void prefetch_row(const float *row, size_t d) {
    for (size_t p = 0; p < d; p += 16) _mm_prefetch((const char *)(row + p), _MM_HINT_T0);
}

// Rows of a head side by side: rows of t × d floats, ld apart in place, into dst (t, d).
INLINE void gather_rows(float *dst, const float *src, size_t ld, size_t t, size_t d) {
    for (size_t j = 0; j < t; j++) {
        if (j + AHEAD < t) prefetch_row(src + (j + AHEAD) * ld, d);
        // d is a multiple of 16: whole vectors, no call into memcpy for 64–512 bytes.
        for (size_t p = 0; p < d; p += 8) _mm256_storeu_ps(dst + j * d + p, _mm256_loadu_ps(src + j * ld + p));
    }
}

// Kᵀ-style panels: panel j holds rows 16j ..< 16j + 16 of src (t, d) as d rows of 16, zero past t.
// Eight rows by eight columns at a time, transposed in registers: element by element, with
// stores 64 bytes apart, this pack takes ~3% of either fused kernel's samples.
INLINE void pack_transposed(float *dst, const float *src, size_t ld, size_t t, size_t d, size_t width) {
    for (size_t j0 = 0; j0 < width; j0 += 8) {
        float *panel = dst + j0 / NR * NR * d + j0 % NR;
        for (size_t jj = 0; jj < 8; jj++)
            if (j0 + jj + AHEAD < t) prefetch_row(src + (j0 + jj + AHEAD) * ld, d);
        for (size_t p = 0; p < d; p += 8) {
            __m256 r[8];
            for (size_t jj = 0; jj < 8; jj++)
                r[jj] = j0 + jj < t ? _mm256_loadu_ps(src + (j0 + jj) * ld + p) : _mm256_setzero_ps();
            transpose8(r);
            for (size_t i = 0; i < 8; i++) _mm256_storeu_ps(panel + (p + i) * NR, r[i]);
        }
    }
}

// A row of scores → probabilities in place: the first `valid` count, the rest of the row up to
// `width` (a multiple of 8) becomes 0. Lanes past `valid` may hold anything: they are blended to −∞
// for the maximum and masked to 0 after exp, as the portable softmax's masked loads leave them.
// Unless `normalise`, the row keeps exp(x − max) and the caller scales by the returned 1 / Σ.
INLINE float softmax_row(float *row, size_t valid, size_t width, bool normalise) {
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
    const float inv = 1.0f / hsum(sums);
    size_t j = 0;
    if (normalise) {
        for (; j < valid; j += 8) _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), v(inv)));
    } else {
        j = (valid + 7) / 8 * 8;
    }
    for (; j < width; j += 8) _mm256_storeu_ps(row + j, _mm256_setzero_ps());
    return inv;
}

// Scores of a strip: s[0..<mr][0..<16·panels] = α · Q[0..<mr] · Kᵀ, Kᵀ in packed panels of d × 16.
INLINE void strip_scores(const int mr, size_t d, const float *q, size_t ldq, const float *kp, size_t panels, float *s,
                         size_t lds, __m256 alpha) {
    for (size_t jp = 0; jp < panels; jp++) {
        Tile t = zero_tile();
        accumulate(&t, mr, d, q, ldq, 1, kp + jp * d * NR, NR);
        float *col = s + jp * NR;
#define STORE(i)                                                                                    \
        if (mr > i) {                                                                               \
            _mm256_storeu_ps(col + i * lds, _mm256_mul_ps(alpha, t.c[i][0]));                       \
            _mm256_storeu_ps(col + i * lds + 8, _mm256_mul_ps(alpha, t.c[i][1]));                   \
        }
        TILE_ROWS(STORE)
#undef STORE
    }
}

// Output of a strip: out[0..<mr][0..<d] = P[0..<mr][0..<depth] · V[0..<depth][0..<d] (row i
// times rowScale[i] when given), V's rows ldv apart, read 16 columns at a time in place.
INLINE void strip_values(const int mr, size_t depth, const float *p, size_t ldp, const float *val, size_t ldv, size_t d,
                         const float *rowScale, float *out, size_t ldo) {
    for (size_t c0 = 0; c0 < d; c0 += NR) {
        Tile t = zero_tile();
        accumulate(&t, mr, depth, p, ldp, 1, val + c0, ldv);
#define STORE(i)                                                                                    \
        if (mr > i) {                                                                               \
            const __m256 f = v(rowScale ? rowScale[i] : 1.0f);                                      \
            _mm256_storeu_ps(out + i * ldo + c0, rowScale ? _mm256_mul_ps(f, t.c[i][0]) : t.c[i][0]); \
            _mm256_storeu_ps(out + i * ldo + c0 + 8, rowScale ? _mm256_mul_ps(f, t.c[i][1]) : t.c[i][1]); \
        }
        TILE_ROWS(STORE)
#undef STORE
    }
}

TARGET bool embedtune_attention_forward(size_t t, size_t d, float scale, bool causal, const float *q, size_t ldq,
                                        const float *k, size_t ldk, const float *val, size_t ldv, float *probs,
                                        float *out, size_t ldo, const embedtune_attention_dropout *dropout) {
    if (t == 0 || d == 0 || d % NR) return false;
    const size_t width = (t + NR - 1) / NR * NR;
    float *kp = work_buffer(width * (2 * d + MR)), *vp = kp + width * d, *s = vp + width * d;
    // Kᵀ in panels, V's rows side by side (see the file's header).
    for (size_t r = 0; r < MR && r < t; r++) prefetch_row(q + r * ldq, d);  // the first strip's queries
    pack_transposed(kp, k, ldk, t, d, width);
    gather_rows(vp, val, ldv, t, d);
    const __m256 alpha = v(scale);
    for (size_t i0 = 0; i0 < t; i0 += MR) {
        const size_t mr = t - i0 < MR ? t - i0 : MR;
        // A causal strip sees keys up to its last row; its probabilities past them are zero.
        const size_t cols = causal && i0 + mr < t ? i0 + mr : t;
        const size_t panels = (cols + NR - 1) / NR;
        const float *qi = q + i0 * ldq;
        for (size_t r = i0 + MR; r < i0 + 2 * MR && r < t; r++) prefetch_row(q + r * ldq, d);
#define CASE(r) case r: strip_scores(r, d, qi, ldq, kp, panels, s, width, alpha); break;
        switch (mr) { CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) default: CASE(1) }
#undef CASE
        // Kept probabilities (training) are normalised; otherwise (inference) the output rows are
        // scaled instead, one multiply per output in place of a pass over the scores.
        float inv[MR];
        for (size_t r = 0; r < mr; r++) {
            float *row = s + r * width;
            inv[r] = softmax_row(row, causal ? i0 + r + 1 : t, (cols + 7) / 8 * 8, probs != NULL);
            if (probs) {
                float *kept = probs + (i0 + r) * t;
                memcpy(kept, row, cols * sizeof(float));
                memset(kept + cols, 0, (t - cols) * sizeof(float));
            }
            if (dropout) embedtune_dropout_row(row, row, cols, dropout->threshold, dropout->scale, dropout->base[i0 + r]);
        }
        float *oi = out + i0 * ldo;
#define CASE(r) case r: strip_values(r, cols, s, width, vp, d, d, probs ? NULL : inv, oi, ldo); break;
        switch (mr) { CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) default: CASE(1) }
#undef CASE
    }
    return true;
}

// Softmax backward of a row in place: ds = scale · p ⊙ (ds − Σ ds ⊙ p) over the first `count`
// entries (a multiple of 8 past the row's end is fine: p is read masked there, so those entries
// become 0). p holds the row's `len` probabilities.
INLINE void softmax_backward_row(float *ds, const float *p, size_t len, size_t count, __m256 scale) {
    __m256 dots = _mm256_setzero_ps();
    for (size_t j = 0; j < count; j += 8) {
        const __m256 pv = j + 8 <= len ? _mm256_loadu_ps(p + j) : _mm256_maskload_ps(p + j, lanes((int)(len - j)));
        dots = _mm256_fmadd_ps(pv, _mm256_loadu_ps(ds + j), dots);
    }
    const __m256 dot = v(hsum(dots));
    for (size_t j = 0; j < count; j += 8) {
        const __m256 pv = j + 8 <= len ? _mm256_loadu_ps(p + j) : _mm256_maskload_ps(p + j, lanes((int)(len - j)));
        _mm256_storeu_ps(ds + j, _mm256_mul_ps(_mm256_mul_ps(pv, _mm256_sub_ps(_mm256_loadu_ps(ds + j), dot)), scale));
    }
}

// C[0..<mr][0..<d] += Aᵀ·B over rows p0 ..< p1: A[p][0..<mr] at a + p·lda, B (·, d) contiguous.
INLINE void strip_transposed(const int mr, size_t p0, size_t p1, const float *a, size_t lda, const float *b, size_t d,
                             float *c, size_t ldc) {
    for (size_t c0 = 0; c0 < d; c0 += NR) {
        Tile t = zero_tile();
        accumulate(&t, mr, p1 - p0, a + p0 * lda, 1, lda, b + p0 * d + c0, d);
#define ADD(i)                                                                                      \
        if (mr > i) {                                                                               \
            float *row = c + i * ldc + c0;                                                          \
            _mm256_storeu_ps(row, _mm256_add_ps(_mm256_loadu_ps(row), t.c[i][0]));                  \
            _mm256_storeu_ps(row + 8, _mm256_add_ps(_mm256_loadu_ps(row + 8), t.c[i][1]));          \
        }
        TILE_ROWS(ADD)
#undef ADD
    }
}

// dC (t, d) += Aᵀ (t × t, rows lda apart) · B (t, d contiguous), 6 rows of dC at a time; causal:
// A is zero above its diagonal, so row j of dC sums over p ≥ j only (from its strip's first row).
INLINE void transposed_product(size_t t, size_t d, bool causal, const float *a, size_t lda, const float *b, float *c,
                               size_t ldc) {
    for (size_t j0 = 0; j0 < t; j0 += MR) {
        const size_t mr = t - j0 < MR ? t - j0 : MR, p0 = causal ? j0 : 0;
#define CASE(r) case r: strip_transposed(r, p0, t, a + j0, lda, b, d, c + j0 * ldc, ldc); break;
        switch (mr) { CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) default: CASE(1) }
#undef CASE
    }
}

TARGET bool embedtune_attention_backward(size_t t, size_t d, float scale, bool causal, const float *q, size_t ldq,
                                         const float *k, size_t ldk, const float *val, size_t ldv, const float *dout,
                                         size_t lddo, const float *probs, float *dq, size_t lddq, float *dk, float *dv,
                                         size_t lddkv, const embedtune_attention_dropout *dropout) {
    if (t == 0 || d == 0 || d % NR) return false;
    const size_t width = (t + NR - 1) / NR * NR;
    float *vt = work_buffer(width * d + 3 * t * d + (dropout ? 2 : 1) * t * width);
    float *kc = vt + width * d, *qc = kc + t * d, *oc = qc + t * d, *ds = oc + t * d;
    float *dropped = dropout ? ds + t * width : NULL;  // P' = dropout(P), the weights dV sums over
    pack_transposed(vt, val, ldv, t, d, width);
    gather_rows(kc, k, ldk, t, d);
    gather_rows(qc, q, ldq, t, d);
    gather_rows(oc, dout, lddo, t, d);
    const __m256 one = v(1), scales = v(scale);
    for (size_t i0 = 0; i0 < t; i0 += MR) {
        const size_t mr = t - i0 < MR ? t - i0 : MR;
        const size_t cols = causal && i0 + mr < t ? i0 + mr : t;
        const size_t panels = (cols + NR - 1) / NR;
        float *dsi = ds + i0 * width;
        // dP (mr, cols) = dO · Vᵀ, then dS = scale · P ⊙ (dP − rowsum(dP ⊙ P)) in place.
#define CASE(r) case r: strip_scores(r, d, oc + i0 * d, d, vt, panels, dsi, width, one); break;
        switch (mr) { CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) default: CASE(1) }
#undef CASE
        for (size_t r = 0; r < mr; r++) {
            const float *pr = probs + (i0 + r) * t;
            if (dropout) {  // the forward's mask again: on P for dV, on dP' for dP
                const uint64_t base = dropout->base[i0 + r];
                embedtune_dropout_row(dropped + (i0 + r) * width, pr, t, dropout->threshold, dropout->scale, base);
                embedtune_dropout_row(dsi + r * width, dsi + r * width, cols, dropout->threshold, dropout->scale, base);
            }
            softmax_backward_row(dsi + r * width, pr, t, (cols + 7) / 8 * 8, scales);
        }
        // dQ (mr, d) = dS · K
        float *dqi = dq + i0 * lddq;
#define CASE(r) case r: strip_values(r, cols, dsi, width, kc, d, d, NULL, dqi, lddq); break;
        switch (mr) { CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) default: CASE(1) }
#undef CASE
    }
    // dV += P'ᵀ · dO;  dK += dSᵀ · Q
    if (dropout) transposed_product(t, d, causal, dropped, width, oc, dv, lddkv);
    else transposed_product(t, d, causal, probs, t, oc, dv, lddkv);
    transposed_product(t, d, causal, ds, width, qc, dk, lddkv);
    return true;
}

#else

bool embedtune_attention_forward(size_t t, size_t d, float scale, bool causal, const float *q, size_t ldq,
                                 const float *k, size_t ldk, const float *val, size_t ldv, float *probs, float *out,
                                 size_t ldo, const embedtune_attention_dropout *dropout) {
    return false;
}

bool embedtune_attention_backward(size_t t, size_t d, float scale, bool causal, const float *q, size_t ldq,
                                  const float *k, size_t ldk, const float *val, size_t ldv, const float *dout,
                                  size_t lddo, const float *probs, float *dq, size_t lddq, float *dk, float *dv,
                                  size_t lddkv, const embedtune_attention_dropout *dropout) {
    return false;
}

#endif
