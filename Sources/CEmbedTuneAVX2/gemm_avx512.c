// The own GEMMs for AVX-512 F/VL/DQ/BW (zmm, 8×32 tile): gemm_kernels.inc compiled for 512-bit
// vectors, selected at run time on CPUs that have them (Intel Xeon since Skylake-SP, AMD Zen 4/5).
#include "embedtune_avx2.h"

bool embedtune_gemm512_available(void) {
#if defined(__x86_64__)
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached == 1;
#else
    return false;
#endif
}

#if defined(__x86_64__)
#define EMBEDTUNE_VEC_BITS 512
#include "gemm_kernels.inc"
#endif
