// The fused attention with AVX-512 tiles (8×32 in zmm): attention_kernels.inc compiled for 512-bit
// vectors, chosen at run time with the AVX-512 GEMMs for heads whose dimension is a multiple of 32.
// (Other architectures get both widths' stubs from attention_avx2.c.)
#include "embedtune_avx2.h"

#if defined(__x86_64__)

#define EMBEDTUNE_VEC_BITS 512
#include "attention_kernels.inc"

#endif
