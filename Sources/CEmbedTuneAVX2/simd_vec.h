// One vector width for the width-generic kernels (gemm_tile.h, gemm_kernels.inc): define
// EMBEDTUNE_VEC_BITS as 256 (AVX2 + FMA, the default) or 512 (AVX-512 F/VL/DQ/BW) before including.
// `vf` is a vector of VW floats, `vmask` the mask of a partial one, SUFFIXED(name) the name of a
// function compiled for this width (name_avx2, name_avx512): one source, two run-time choices.
#pragma once
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#ifndef EMBEDTUNE_VEC_BITS
#define EMBEDTUNE_VEC_BITS 256
#endif

#if EMBEDTUNE_VEC_BITS == 512

#define TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
#define INLINE static inline __attribute__((always_inline)) TARGET
#include "avx2_math.h"  // the 256-bit helpers (exp8, lanes, transpose8), compiled for this target
#define SUFFIXED(name) name##_avx512
enum { VW = 16 };
typedef __m512 vf;
typedef __mmask16 vmask;
INLINE vf vzero(void) { return _mm512_setzero_ps(); }
INLINE vf vset1(float x) { return _mm512_set1_ps(x); }
INLINE vf vbroadcast(const float *p) { return _mm512_set1_ps(*p); }
INLINE vf vloadu(const float *p) { return _mm512_loadu_ps(p); }
INLINE vf vload(const float *p) { return _mm512_load_ps(p); }
INLINE void vstoreu(float *p, vf x) { _mm512_storeu_ps(p, x); }
INLINE void vstore(float *p, vf x) { _mm512_store_ps(p, x); }
INLINE vf vfmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
INLINE vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
INLINE vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
// The first `count` lanes (below 0 none, above VW all).
INLINE vmask vmask_first(int count) {
    return count <= 0 ? (vmask)0 : count >= VW ? (vmask)0xFFFF : (vmask)((1u << count) - 1);
}
INLINE vf vmaskload(const float *p, vmask m) { return _mm512_maskz_loadu_ps(m, p); }
INLINE void vmaskstore(float *p, vmask m, vf x) { _mm512_mask_storeu_ps(p, m, x); }
// VW bfloat16 values widened to float32 (a bfloat16 is a float32's upper half).
INLINE vf vload_bf16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

#else

#include "avx2_math.h"  // TARGET, INLINE, lanes()
#define SUFFIXED(name) name##_avx2
enum { VW = 8 };
typedef __m256 vf;
typedef __m256i vmask;
INLINE vf vzero(void) { return _mm256_setzero_ps(); }
INLINE vf vset1(float x) { return _mm256_set1_ps(x); }
INLINE vf vbroadcast(const float *p) { return _mm256_broadcast_ss(p); }
INLINE vf vloadu(const float *p) { return _mm256_loadu_ps(p); }
INLINE vf vload(const float *p) { return _mm256_load_ps(p); }
INLINE void vstoreu(float *p, vf x) { _mm256_storeu_ps(p, x); }
INLINE void vstore(float *p, vf x) { _mm256_store_ps(p, x); }
INLINE vf vfmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
INLINE vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
INLINE vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
INLINE vmask vmask_first(int count) { return lanes(count); }
INLINE vf vmaskload(const float *p, vmask m) { return _mm256_maskload_ps(p, m); }
INLINE void vmaskstore(float *p, vmask m, vf x) { _mm256_maskstore_ps(p, m, x); }
INLINE vf vload_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

#endif
#endif
