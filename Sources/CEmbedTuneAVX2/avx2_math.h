// Shared by the AVX2 code of the kernels (either width): target attributes, lane masks and the vector math of VectorMath.swift
// (Cephes-style exp, the Eigen/XLA rational erf) with FMA, plus GELU written as value and slope.
#pragma once
#if defined(__x86_64__)
#include <immintrin.h>

// A wider build (simd_vec.h with 512-bit vectors) defines its own target first; these helpers
// are AVX2 code and compile under either.
#ifndef TARGET
#define TARGET __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline)) TARGET
#endif

INLINE __m256 v(float x) { return _mm256_set1_ps(x); }

// Lane masks for the first `count` (0...8; below 0 none, above 8 all) floats of a ymm.
INLINE __m256i lanes(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Horizontal sum and maximum of a ymm's eight lanes.
INLINE float hsum(__m256 x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

INLINE float hmax(__m256 x) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

// r[i][j] ← r[j][i] for an 8 × 8 block held as eight ymm rows.
INLINE void transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

INLINE __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, v(-87.33654f)), v(88.0f));
    const __m256 shifter = v(12582912.0f);  // 1.5 · 2²³
    const __m256 t = _mm256_fmadd_ps(x, v(1.44269504f), shifter);
    const __m256 n = _mm256_sub_ps(t, shifter);
    __m256 r = _mm256_fnmadd_ps(n, v(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, v(-2.1219444e-4f), r);
    __m256 p = v(1.98756915e-4f);
    p = _mm256_fmadd_ps(p, r, v(1.39819995e-3f));
    p = _mm256_fmadd_ps(p, r, v(8.3334519e-3f));
    p = _mm256_fmadd_ps(p, r, v(4.16657959e-2f));
    p = _mm256_fmadd_ps(p, r, v(1.66666655e-1f));
    p = _mm256_fmadd_ps(p, r, v(5.0000001e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, v(1.0f)));
    const __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B400000));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

INLINE __m256 erf8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, v(-4.0f)), v(4.0f));
    const __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = v(-2.72614225801306e-10f);
    p = _mm256_fmadd_ps(p, x2, v(2.77068142495902e-08f));
    p = _mm256_fmadd_ps(p, x2, v(-2.10102402082508e-06f));
    p = _mm256_fmadd_ps(p, x2, v(-5.69250639462346e-05f));
    p = _mm256_fmadd_ps(p, x2, v(-7.34990630326855e-04f));
    p = _mm256_fmadd_ps(p, x2, v(-2.95459980854025e-03f));
    p = _mm256_fmadd_ps(p, x2, v(-1.60960333262415e-02f));
    __m256 q = v(-1.45660718464996e-05f);
    q = _mm256_fmadd_ps(q, x2, v(-2.13374055278905e-04f));
    q = _mm256_fmadd_ps(q, x2, v(-1.68282697438203e-03f));
    q = _mm256_fmadd_ps(q, x2, v(-7.37332916720468e-03f));
    q = _mm256_fmadd_ps(q, x2, v(-1.42647390514189e-02f));
    return _mm256_div_ps(_mm256_mul_ps(x, p), q);
}

// GELU of eight values z: returns z·Φ(z); with `slope`, *slope = Φ(z) + z·φ(z).
INLINE __m256 gelu8(__m256 z, __m256 *slope) {
    const __m256 cdf = _mm256_mul_ps(v(0.5f), _mm256_add_ps(v(1.0f), erf8(_mm256_mul_ps(z, v(0.70710678118654752f)))));
    if (slope) {
        const __m256 pdf = _mm256_mul_ps(exp8(_mm256_mul_ps(v(-0.5f), _mm256_mul_ps(z, z))), v(0.3989422804014327f));
        *slope = _mm256_fmadd_ps(z, pdf, cdf);
    }
    return _mm256_mul_ps(z, cdf);
}

#endif
