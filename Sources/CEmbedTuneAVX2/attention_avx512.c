// The fused attention with AVX-512 tiles (8×32 in zmm): attention_kernels.inc compiled for 512-bit
// vectors, chosen at run time with the AVX-512 GEMMs for heads whose dimension is a multiple of 32.
#include "embedtune_avx2.h"

#if defined(__x86_64__)

#define EMBEDTUNE_VEC_BITS 512
#include "attention_kernels.inc"

#else

bool embedtune_attention_forward_avx512(size_t t, size_t d, float scale, bool causal, const float *q, size_t ldq,
                                        const float *k, size_t ldk, const float *val, size_t ldv, float *probs, float *out,
                                        size_t ldo, const embedtune_attention_dropout *dropout) {
    return false;
}

bool embedtune_attention_backward_avx512(size_t t, size_t d, float scale, bool causal, const float *q, size_t ldq,
                                         const float *k, size_t ldk, const float *val, size_t ldv, const float *dout,
                                         size_t lddo, const float *probs, float *dq, size_t lddq, float *dk, float *dv,
                                         size_t lddkv, const embedtune_attention_dropout *dropout) {
    return false;
}

#endif
