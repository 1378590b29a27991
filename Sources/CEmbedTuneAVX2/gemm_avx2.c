// The own GEMMs for AVX2 + FMA (ymm, 6×16 tile): gemm_kernels.inc compiled for 256-bit vectors.
// The functions carry target attributes: the rest of the binary stays baseline x86-64 and the
// caller selects this path at run time (GEMMKernel in Swift).
#include "embedtune_avx2.h"

#include <stdlib.h>

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

#define EMBEDTUNE_VEC_BITS 256
#include "gemm_kernels.inc"

#else

// Callers check embedtune_gemm_available() / embedtune_gemm512_available() first.
#define STUBS(suffix)                                                                                               \
    void embedtune_sgemm_##suffix(bool transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda, \
                                  const void *b, bool bf16, size_t ldb, bool accumulate, const float *bias, float *c, \
                                  size_t ldc) {                                                                     \
        abort();                                                                                                    \
    }                                                                                                               \
    void embedtune_sgemm_sum_##suffix(bool transB, size_t m, size_t n, size_t k, const float *a, size_t lda,        \
                                      const void *b, bool bf16, size_t ldb, bool transB2, size_t k2, float alpha2,  \
                                      const float *a2, size_t lda2, const float *b2, size_t ldb2, bool accumulate,  \
                                      const float *bias, float *c, size_t ldc, const float *mul, size_t ldm) {      \
        abort();                                                                                                    \
    }                                                                                                               \
    void embedtune_sgemm_tn_##suffix(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,          \
                                     const float *b, size_t ldb, float *c, size_t ldc, bool transposeC) {           \
        abort();                                                                                                    \
    }
STUBS(avx2)
STUBS(avx512)

#endif
