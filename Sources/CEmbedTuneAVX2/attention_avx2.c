// Attention for one (sequence, head), forward and backward, fused (attention_kernels.inc, compiled
// here for AVX2's 6×16 tile and in attention_avx512.c for AVX-512's 8×32): each strip of queries
// (6 or 8 rows) computes its scores (or dP), its softmax (or softmax backward) and its P·V (or
// dS·K) while the strip's rows sit in a padded buffer in L1; backward's Pᵀ·dO and dSᵀ·Q then run
// over the whole head with the register tile reading Aᵀ in place.
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

#define EMBEDTUNE_VEC_BITS 256
#include "attention_kernels.inc"

#else

// Callers check embedtune_gemm_available() / embedtune_gemm512_available() first; these say "not here".
#define STUBS(suffix)                                                                                               \
    bool embedtune_attention_forward_##suffix(size_t t, size_t d, float scale, bool causal, const float *q,         \
                                              size_t ldq, const float *k, size_t ldk, const float *val, size_t ldv, \
                                              float *probs, float *out, size_t ldo,                                 \
                                              const embedtune_attention_dropout *dropout) {                         \
        return false;                                                                                               \
    }                                                                                                               \
    bool embedtune_attention_backward_##suffix(size_t t, size_t d, float scale, bool causal, const float *q,        \
                                               size_t ldq, const float *k, size_t ldk, const float *val,            \
                                               size_t ldv, const float *dout, size_t lddo, const float *probs,      \
                                               float *dq, size_t lddq, float *dk, float *dv, size_t lddkv,          \
                                               const embedtune_attention_dropout *dropout) {                        \
        return false;                                                                                               \
    }
STUBS(avx2)
STUBS(avx512)

#endif
