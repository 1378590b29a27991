#pragma once
#include <stddef.h>
#include <stdint.h>

// INT8 linear layers for inference: out (m, n) = dequant(Aq · Wqᵀ) + bias.
//
// W, a PyTorch linear weight (n, k), is quantised once, per output channel (row of W), and packed;
// the activations A (m, k) are quantised at each call, per row. Both are symmetric:
//   scale[r] = max |X[r, :]| / 127          (1 when that is 0: an all-zero row, or one below 1.8e-43)
//   Xq[r, p] = nearbyint(X[r, p] / scale[r]) clamped to [-127, 127]; NaN quantises to 0
// (nearbyint rounds half to even in the default rounding mode). The product accumulates exactly in
// int32, and
//   out[i, j] = fmaf((float)acc[i, j], scale_a[i] · scale_w[j], bias[j])    (or the product alone)
// on every path, the portable one included (fmaf is C99's correctly rounded fused multiply-add):
// each SIMD path equals the portable one bit for bit.
//
// Quantised activations are bytes a + 128 (uint8, 1…255; a row's padding 128, the value 0), the
// operand order of vpdpbusd (unsigned × signed); see gemm_int8.c for the packed weight's layout.
//
// Depth limit: k ≤ EMBEDTUNE_INT8_MAX_K = 131072, so that |acc| ≤ 128 · 127 · k stays below 2³¹
// (pack_weights and gemm abort beyond it).
// Thread safety: every function is reentrant; none allocates (the AVX2 path uses 8 KB of stack).
// The path in effect (set_isa) is one process-wide atomic value.

/// The kernel paths, slowest to fastest. A CPU need not have every path below its best one: Ice Lake
/// has AVX512-VNNI but not AVX-VNNI (see embedtune_int8_set_isa).
enum {
    EMBEDTUNE_INT8_PORTABLE = 0,    // plain C, any CPU: the reference
    EMBEDTUNE_INT8_AVX2 = 1,        // AVX2 + FMA: vpsignb/vpabsb + vpmaddubsw + vpmaddwd
    EMBEDTUNE_INT8_AVXVNNI = 2,     // AVX-VNNI (VEX): vpdpbusd on ymm
    EMBEDTUNE_INT8_AVX512VNNI = 3,  // AVX-512 F/BW/VL + VNNI: vpdpbusd on zmm
};

/// The packed weight's panel width: n is padded to a multiple of it.
#define EMBEDTUNE_INT8_PANEL 64

/// The deepest product: k up to it keeps every int32 sum exact.
#define EMBEDTUNE_INT8_MAX_K 131072

/// The best path this CPU (and its OS, for the ymm/zmm state) runs; checked once.
int embedtune_int8_isa(void);

/// The path every call below takes: the best available, unless the environment variable
/// EMBEDTUNE_INT8_ISA (0…3, read at the first call) or embedtune_int8_set_isa chose a lower one.
int embedtune_int8_active_isa(void);

/// Forces a path (for tests and benchmarks): the highest path ≤ isa that this CPU runs; isa < 0
/// restores the best. Returns the path now in effect. Each call reads the path once, at its start,
/// so a change while calls run affects only later calls (and no result: the paths agree bit for bit).
int embedtune_int8_set_isa(int isa);

/// Bytes a quantised activation row occupies: k rounded up to a multiple of 4. ldq (the row stride
/// of quantised activations) must be at least this; a multiple of 64 keeps rows on cache lines.
size_t embedtune_int8_row_bytes(size_t k);

/// Bytes of a packed (n, k) weight: ⌈n/64⌉·64 · ⌈k/4⌉·4 weight bytes, then 4 per padded column.
size_t embedtune_int8_packed_size(size_t n, size_t k);

/// Quantises W (n, k), row stride ldw ≥ k, into `packed` (embedtune_int8_packed_size(n, k) bytes,
/// 4-byte aligned, 64 recommended) and its n per-channel scales into `scales`.
void embedtune_int8_pack_weights(const float *w, size_t n, size_t k, size_t ldw, void *packed, float *scales);

/// Quantises A (m, k), row stride lda ≥ k, per row: out (m rows of embedtune_int8_row_bytes(k)
/// bytes, ldq apart, the padding set to 128) and m scales.
void embedtune_int8_quantize_rows(const float *a, size_t m, size_t k, size_t lda, uint8_t *out, size_t ldq,
                                  float *scales);

/// Quantises A (m, k), row stride lda ≥ k, per row, centred: each row's values v = x·mul (mul, k
/// floats, may be NULL: v = x) are quantised as v − mid, mid = the middle of the row's [min, max]
/// (NaN skipped; 0 when the row has no finite value or an infinite one), so the 255 levels span
/// the row's range (scale = max |v − mid| / 127). Writes the bytes as quantize_rows does, m scales
/// and m middles. The product of such rows with a weight is then
///   out = dequant(Aq · Wqᵀ) + mid_i · rowsum_j,   rowsum_j = scale_w[j] · Σ_p Wq[j][p]
/// (embedtune_int8_add_centring adds the second term).
void embedtune_int8_quantize_rows_centred(const float *a, size_t m, size_t k, size_t lda, const float *mul, uint8_t *out,
                                          size_t ldq, float *scales, float *middles);

/// c (m, n), row stride ldc, += partial (m, n, stride ldp; may be NULL) + middles[i] · row_sums[j]:
/// each element c + fmaf(mid, rowsum, p), or without partial fmaf(mid, rowsum, c) (rows whose
/// middle is 0 unchanged).
void embedtune_int8_add_centring(float *c, size_t m, size_t n, size_t ldc, const float *partial, size_t ldp,
                                 const float *middles, const float *row_sums);

/// Single-threaded (split m across threads): c (m, n), row stride ldc ≥ n, =
/// dequant(Aq · Wqᵀ) + bias, Aq from embedtune_int8_quantize_rows (ldq as written there, its m
/// scales scale_a), Wq from embedtune_int8_pack_weights (its n scales scale_w), bias n floats or
/// NULL. c must not overlap the inputs: it holds int32 partial sums while a deep product runs.
void embedtune_int8_gemm(size_t m, size_t n, size_t k, const uint8_t *aq, size_t ldq, const float *scale_a,
                         const void *packed_w, const float *scale_w, const float *bias, float *c, size_t ldc);
