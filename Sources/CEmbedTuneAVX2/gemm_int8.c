// INT8 linear layers for inference (embedtune_int8.h): out (m, n) = dequant(Aq · Wqᵀ) + bias, with
// per-channel weight scales and per-row activation scales, the product accumulated exactly in int32.
//
// Packed weight, for n output channels of depth k (kp = k rounded up to 4, npad = n rounded up to
// 64, Wq the quantised weight, 0 past n and past k):
//
//   bytes [0, npad·kp)          npad/64 panels, one after the other; panel P, kp·64 bytes:
//                                 kp/4 quads q, 256 bytes each: 64 columns jj, 4 bytes each:
//                                   byte P·kp·64 + q·256 + jj·4 + t = Wq[64P + jj][4q + t]  (int8)
//   bytes [npad·kp, +4·npad)    int32 comp[npad]: comp[j] = 128 · Σ_p Wq[j][p]
//
// so one 4-byte group of a quad is what vpdpbusd multiplies into one int32 lane, 16 columns are one
// zmm (two ymm), and a depth step of a 64-column panel is one 256-byte stream that the kernels read
// front to back. Quantised activations are row-major bytes a + 128 (unsigned, as vpdpbusd's first
// operand wants), so the VNNI paths compute Σ (a + 128)·w and subtract comp; the padding columns and
// quads of Wq are 0, so whatever an activation row holds past k adds nothing.
//
// Paths: portable C (the reference), AVX2 (exact without VNNI: vpmaddubsw multiplies |a| by w with
// a's sign, each pair sum ≤ 2·128·127 < 2¹⁵, then vpmaddwd by 1 widens to int32; 4 rows × 16
// columns), AVX-VNNI (ymm vpdpbusd, 16 registers: 6 rows × 16 columns at a time) and AVX512-VNNI
// (zmm vpdpbusd, 32 registers: 6 rows × 64 columns, 24 accumulators). All SIMD paths share one loop
// nest (drive): the weight in column blocks of ≤ L2_BYTES kept in L2, depth blocks of ≤ KC bytes,
// then strips of rows swept across the block's panels. Between depth blocks a tile's int32 partial
// sums park in its own place in C (same size, written before read), so no scratch buffer exists.
//
// Every path ends in the same float operations, fmaf((float)acc, sa·sw, bias) or (float)acc·(sa·sw),
// and quantises with the same division and rounding, so every path equals the portable one bit for
// bit. The functions carry target attributes: the rest of the binary stays baseline x86-64 and the
// path is chosen at run time.
#include "embedtune_int8.h"

// No contraction of a·b + c into one fused operation behind the code's back: a path whose target
// has FMA would round differently from the portable one. Fused operations are written as fmaf or
// FMA intrinsics where they are meant.
#pragma clang fp contract(off)

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

// Depth block (bytes of k) and column block (bytes of packed weight kept in L2), measured on Zen 5
// (48 KB L1d, 1 MB L2; RESULTS.md): depth blocks of 2–4 KB ran 5–15% slower at m = 4096 (the
// partial sums parked in C no longer fit L2), no blocking ran no faster than 8 KB at k ≤ 8192, so
// only the deepest layers (an FFN's down projection of 11008 or 18944) are split. Half of L2 for
// the weight leaves the other half to the activation rows and C. Overridable with -D (the tests
// build once with tiny blocks to exercise every block boundary).
#ifndef EMBEDTUNE_INT8_KC
#define EMBEDTUNE_INT8_KC 8192
#endif
#ifndef EMBEDTUNE_INT8_L2
#define EMBEDTUNE_INT8_L2 (512 * 1024)
#endif
enum { NP = EMBEDTUNE_INT8_PANEL, KCQ = EMBEDTUNE_INT8_KC / 4, L2_BYTES = EMBEDTUNE_INT8_L2 };
enum { FIRST = 1, LAST = 2 };  // a tile's depth block: the first (start from 0), the last (write floats)

static size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

size_t embedtune_int8_row_bytes(size_t k) { return round_up(k, 4); }

size_t embedtune_int8_packed_size(size_t n, size_t k) {
    const size_t npad = round_up(n, NP);
    return npad * round_up(k, 4) + npad * sizeof(int32_t);
}

// ---------------------------------------------------------------------------------------------
// Path selection
// ---------------------------------------------------------------------------------------------

// Bit i set: path i runs here. Detected once; a race at the first call computes the same value twice.
static int available_paths(void) {
    static _Atomic int cached = -1;
    int paths = atomic_load_explicit(&cached, memory_order_relaxed);
    if (paths >= 0) return paths;
    paths = 1 << EMBEDTUNE_INT8_PORTABLE;
#if defined(__x86_64__)
    __builtin_cpu_init();
    // __builtin_cpu_supports checks XCR0 too: avx2 only when the OS saves ymm state, avx512* only
    // when it saves zmm and mask state.
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        paths |= 1 << EMBEDTUNE_INT8_AVX2;
        // AVX-VNNI is CPUID.(EAX=7, ECX=1):EAX[4], read here: its __builtin_cpu_supports bit lives in
        // __cpu_features2, which older libgcc/compiler-rt versions don't fill. The ymm state it needs
        // is the one avx2 was checked for.
        unsigned a, b, c, d;
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4))) paths |= 1 << EMBEDTUNE_INT8_AVXVNNI;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
            paths |= 1 << EMBEDTUNE_INT8_AVX512VNNI;
    }
#endif
    atomic_store_explicit(&cached, paths, memory_order_relaxed);
    return paths;
}

// The highest available path ≤ isa (the portable one always is).
static int clamp_isa(int isa) {
    const int paths = available_paths();
    if (isa > EMBEDTUNE_INT8_AVX512VNNI) isa = EMBEDTUNE_INT8_AVX512VNNI;
    while (isa > 0 && !(paths & (1 << isa))) isa--;
    return isa < 0 ? 0 : isa;
}

int embedtune_int8_isa(void) { return clamp_isa(EMBEDTUNE_INT8_AVX512VNNI); }

static _Atomic int active = -1;

int embedtune_int8_active_isa(void) {
    int isa = atomic_load_explicit(&active, memory_order_relaxed);
    if (isa >= 0) return isa;
    const char *env = getenv("EMBEDTUNE_INT8_ISA");
    isa = env && *env >= '0' && *env <= '9' ? clamp_isa(atoi(env)) : embedtune_int8_isa();
    int expected = -1;  // a set_isa that ran meanwhile wins
    if (!atomic_compare_exchange_strong(&active, &expected, isa)) isa = expected;
    return isa;
}

int embedtune_int8_set_isa(int isa) {
    isa = isa < 0 ? embedtune_int8_isa() : clamp_isa(isa);
    atomic_store_explicit(&active, isa, memory_order_relaxed);
    return isa;
}

// ---------------------------------------------------------------------------------------------
// Portable path: the reference every SIMD path equals
// ---------------------------------------------------------------------------------------------

// max |x[p]|; a NaN compares false and is skipped, as vmaxps(v, m) skips it (it returns m).
static float absmax_portable(const float *x, size_t k) {
    float m = 0;
    for (size_t p = 0; p < k; p++) {
        const float v = fabsf(x[p]);
        if (v > m) m = v;
    }
    return m;
}

// The scale of a row whose largest magnitude is maxabs. 0 (an all-zero row, or one so small that
// maxabs / 127 underflows) becomes 1: the row quantises to zeros and dequantises to exact zeros.
static float scale_of(float maxabs) {
    const float s = maxabs / 127.0f;
    return s > 0 ? s : 1.0f;
}

// x / s → nearest integer (ties to even, nearbyintf in the current rounding mode, as vcvtps2dq),
// NaN → 0, clamped to [-127, 127] (clamping before rounding gives the same integer: the bounds are
// integers), stored + 128.
static inline uint8_t quantize_one(float x, float s) {
    float v = x / s;
    if (!(v == v)) v = 0;
    v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
    return (uint8_t)((int)nearbyintf(v) + 128);
}

// The value a centred row quantises: x·mul (mul NULL: x) minus the row's middle.
static inline float centred_one(const float *x, const float *mul, float mid, size_t p) {
    return (mul ? x[p] * mul[p] : x[p]) - mid;
}

static void quantize_portable(const float *x, const float *mul, float mid, size_t k, float s, uint8_t *q) {
    for (size_t p = 0; p < k; p++) q[p] = quantize_one(centred_one(x, mul, mid, p), s);
}

// Smallest and largest x·mul (mul NULL: x); NaN is skipped (as vminps/vmaxps(v, m) skip it).
static void minmax_portable(const float *x, const float *mul, size_t k, float *lo, float *hi) {
    float l = INFINITY, h = -INFINITY;
    for (size_t p = 0; p < k; p++) {
        const float v = mul ? x[p] * mul[p] : x[p];
        if (v < l) l = v;
        if (v > h) h = v;
    }
    *lo = l;
    *hi = h;
}

static inline float dequant(int32_t acc, float sa, float sw, const float *bias, size_t j) {
    const float s = sa * sw;
    return bias ? fmaf((float)acc, s, bias[j]) : (float)acc * s;
}

// One row at a time, one 64-column panel at a time, acc[jj] += Σ_t (byte − 128) · Wq: no offset,
// so this also checks the SIMD paths' compensation. |acc| ≤ 128 · 127 · k < 2³¹ for any bytes.
static void gemm_portable(size_t m, size_t n, size_t k, const uint8_t *aq, size_t ldq, const float *sa,
                          const int8_t *wp, const float *sw, const float *bias, float *c, size_t ldc) {
    const size_t kp = round_up(k, 4), kq = kp / 4;
    for (size_t i = 0; i < m; i++) {
        const uint8_t *ai = aq + i * ldq;
        for (size_t jp = 0; jp < n; jp += NP) {
            const int8_t *panel = wp + jp * kp;
            int32_t acc[NP] = {0};
            for (size_t q = 0; q < kq; q++) {
                const int a0 = ai[4 * q] - 128, a1 = ai[4 * q + 1] - 128, a2 = ai[4 * q + 2] - 128,
                          a3 = ai[4 * q + 3] - 128;
                const int8_t *wq = panel + q * 4 * NP;
                for (size_t jj = 0; jj < NP; jj++)
                    acc[jj] += a0 * wq[4 * jj] + a1 * wq[4 * jj + 1] + a2 * wq[4 * jj + 2] + a3 * wq[4 * jj + 3];
            }
            const size_t nv = n - jp < NP ? n - jp : NP;
            for (size_t jj = 0; jj < nv; jj++) c[i * ldc + jp + jj] = dequant(acc[jj], sa[i], sw[jp + jj], bias, jp + jj);
        }
    }
}

#if defined(__x86_64__)

// ---------------------------------------------------------------------------------------------
// SIMD paths
// ---------------------------------------------------------------------------------------------

// One tile's work: rows [0, mr) × the panel's columns [0, nv) (nv ≤ 64) over kcq quads of depth.
// a: the strip's first row at its depth block, rows ldq apart; w: the panel at its depth block
// (256 bytes a quad); comp, sw, bias (may be NULL), c: at the panel's first column; sa at the
// strip's first row.
typedef void panel_fn(size_t mr, size_t nv, size_t kcq, const uint8_t *a, size_t ldq, const int8_t *w, int flags,
                      const int32_t *comp, const float *sa, const float *sw, const float *bias, float *c, size_t ldc);

// The loop nest of every SIMD path, strips of MR rows. Depth blocks are of equal size (≤ KC bytes,
// a multiple of 4): k = 11008 is two blocks of 5504, not 8192 + 2816. A column block's packed weight
// (≤ L2_BYTES, at least one panel) stays in L2 while each strip's depth block sweeps the block's
// panels, from L1 for most shapes (6 rows × 384…1536 bytes).
static void drive(panel_fn *panel, size_t MR, size_t m, size_t n, size_t k, const uint8_t *aq, size_t ldq,
                  const float *sa, const int8_t *wp, const float *sw, const float *bias, float *c, size_t ldc) {
    const size_t kp = round_up(k, 4), kq = kp / 4, npad = round_up(n, NP);
    const int32_t *comp = (const int32_t *)(const void *)(wp + npad * kp);
    const size_t blocks = kq > KCQ ? (kq + KCQ - 1) / KCQ : 1, kcqMax = (kq + blocks - 1) / blocks;
    size_t nc = L2_BYTES / (4 * kcqMax + 1) / NP * NP;
    if (nc < NP) nc = NP;
    for (size_t j0 = 0; j0 < n; j0 += nc) {
        const size_t jEnd = n - j0 < nc ? n : j0 + nc;
        for (size_t q0 = 0;; q0 += kcqMax) {
            const size_t kcq = kq - q0 < kcqMax ? kq - q0 : kcqMax;
            const int flags = (q0 == 0 ? FIRST : 0) | (q0 + kcq >= kq ? LAST : 0);
            for (size_t i = 0; i < m; i += MR) {
                const size_t mr = m - i < MR ? m - i : MR;
                for (size_t jp = j0; jp < jEnd; jp += NP)
                    panel(mr, n - jp < NP ? n - jp : NP, kcq, aq + i * ldq + 4 * q0, ldq, wp + jp * kp + q0 * 4 * NP,
                          flags, comp + jp, sa + i, sw + jp, bias ? bias + jp : NULL, c + i * ldc + jp, ldc);
            }
            if (flags & LAST) break;
        }
    }
}

#define T2 __attribute__((target("avx2,fma")))
#define TVNNI __attribute__((target("avxvnni,avx2,fma")))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#define ALWAYS static inline __attribute__((always_inline))

// Four bytes of a quantised row as one int32 (memcpy: no alignment or aliasing assumption).
static inline int32_t load32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

// Lane masks (all bits of a lane set) for the first `count` (below 0 none, above 8 all) lanes of a ymm.
ALWAYS T2 __m256i lanes8(ptrdiff_t count) {
    const int c = count < 0 ? 0 : count > 8 ? 8 : (int)count;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// k-mask of the first `count` (below 0 none, above 16 all) lanes of a zmm.
ALWAYS __mmask16 lanes16(ptrdiff_t count) {
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1);
}

// --- activation quantisation ---

ALWAYS T2 float hmax8(__m256 x) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

// Four accumulators hide vmaxps's latency; max is exact and order-free, so the result is the
// portable one's. vmaxps(v, m) returns m when v is NaN: NaNs are skipped as there.
static T2 float absmax_avx2(const float *x, size_t k) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 m0 = _mm256_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
    size_t p = 0;
    for (; p + 32 <= k; p += 32) {
        m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + p), absmask), m0);
        m1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + p + 8), absmask), m1);
        m2 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + p + 16), absmask), m2);
        m3 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + p + 24), absmask), m3);
    }
    for (; p + 8 <= k; p += 8) m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + p), absmask), m0);
    float m = hmax8(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
    for (; p < k; p++) {
        const float v = fabsf(x[p]);
        if (v > m) m = v;
    }
    return m;
}

// x / s rounded (vcvtps2dq: the current rounding mode, as nearbyintf), NaN → 0, clamped, in int32.
ALWAYS T2 __m256 load_centred8(const float *x, const float *mul, __m256 mid) {
    const __m256 v = _mm256_loadu_ps(x);
    return _mm256_sub_ps(mul ? _mm256_mul_ps(v, _mm256_loadu_ps(mul)) : v, mid);
}

ALWAYS T2 __m256i quantize8(const float *x, const float *mul, __m256 mid, __m256 s) {
    const __m256 v = _mm256_div_ps(load_centred8(x, mul, mid), s);
    const __m256 finite = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(finite, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f)));
}

// 32 values at a time: four int32 ymm narrow through two signed packs (exact: |v| ≤ 127), whose
// 128-bit lanes interleave the sources' dwords; vpermd puts them back in order, and xor 0x80 adds 128.
// The last k mod 32 go through quantize_one: the same operations one at a time.
static T2 void quantize_avx2(const float *x, const float *mul, float mid, size_t k, float s, uint8_t *q) {
    const __m256 sv = _mm256_set1_ps(s), mv = _mm256_set1_ps(mid);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), flip = _mm256_set1_epi8((char)0x80);
    size_t p = 0;
    for (; p + 32 <= k; p += 32) {
        const float *m = mul ? mul + p : NULL;
        const __m256i i01 = _mm256_packs_epi32(quantize8(x + p, m, mv, sv), quantize8(x + p + 8, m ? m + 8 : NULL, mv, sv));
        const __m256i i23 = _mm256_packs_epi32(quantize8(x + p + 16, m ? m + 16 : NULL, mv, sv),
                                               quantize8(x + p + 24, m ? m + 24 : NULL, mv, sv));
        const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(i01, i23), order);
        _mm256_storeu_si256((__m256i *)(void *)(q + p), _mm256_xor_si256(b, flip));
    }
    for (; p < k; p++) q[p] = quantize_one(centred_one(x, mul, mid, p), s);
}

static T2 void minmax_avx2(const float *x, const float *mul, size_t k, float *lo, float *hi) {
    __m256 l = _mm256_set1_ps(INFINITY), h = _mm256_set1_ps(-INFINITY);
    const __m256 zero = _mm256_setzero_ps();
    size_t p = 0;
    for (; p + 8 <= k; p += 8) {
        const __m256 v = load_centred8(x + p, mul ? mul + p : NULL, zero);
        l = _mm256_min_ps(v, l);
        h = _mm256_max_ps(v, h);
    }
    __m128 a = _mm_min_ps(_mm256_castps256_ps128(l), _mm256_extractf128_ps(l, 1));
    a = _mm_min_ps(a, _mm_movehl_ps(a, a));
    float lv = _mm_cvtss_f32(_mm_min_ss(a, _mm_movehdup_ps(a))), hv = hmax8(h);
    for (; p < k; p++) {
        const float v = mul ? x[p] * mul[p] : x[p];
        if (v < lv) lv = v;
        if (v > hv) hv = v;
    }
    *lo = lv;
    *hi = hv;
}

static T512 float absmax_avx512(const float *x, size_t k) {
    __m512 m0 = _mm512_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
    size_t p = 0;
    for (; p + 64 <= k; p += 64) {
        m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + p)), m0);
        m1 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + p + 16)), m1);
        m2 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + p + 32)), m2);
        m3 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + p + 48)), m3);
    }
    for (; p < k; p += 16)  // the tail's masked-off lanes load as 0
        m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(lanes16((ptrdiff_t)(k - p)), x + p)), m0);
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

// 16 values at a time, vpmovdb narrowing (and storing, masked on the tail) the biased int32.
ALWAYS T512 __m512 load_centred16(const float *x, const float *mul, __m512 mid, __mmask16 mask) {
    const __m512 v = _mm512_maskz_loadu_ps(mask, x);
    return _mm512_sub_ps(mul ? _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, mul)) : v, mid);
}

ALWAYS T512 void quantize16(const float *x, const float *mul, __m512 mid, __m512 s, __mmask16 mask, uint8_t *q) {
    __m512 v = _mm512_div_ps(load_centred16(x, mul, mid, mask), s);
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    _mm512_mask_cvtepi32_storeu_epi8(q, mask, _mm512_add_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(128)));
}

static T512 void quantize_avx512(const float *x, const float *mul, float mid, size_t k, float s, uint8_t *q) {
    const __m512 sv = _mm512_set1_ps(s), mv = _mm512_set1_ps(mid);
    size_t p = 0;
    for (; p + 64 <= k; p += 64) {
        const float *m = mul ? mul + p : NULL;
        quantize16(x + p, m, mv, sv, 0xFFFF, q + p);
        quantize16(x + p + 16, m ? m + 16 : NULL, mv, sv, 0xFFFF, q + p + 16);
        quantize16(x + p + 32, m ? m + 32 : NULL, mv, sv, 0xFFFF, q + p + 32);
        quantize16(x + p + 48, m ? m + 48 : NULL, mv, sv, 0xFFFF, q + p + 48);
    }
    for (; p < k; p += 16) quantize16(x + p, mul ? mul + p : NULL, mv, sv, lanes16((ptrdiff_t)(k - p)), q + p);
}

// Masked-off tail lanes are excluded by mask moves (a loaded 0 would take part in the minimum).
static T512 void minmax_avx512(const float *x, const float *mul, size_t k, float *lo, float *hi) {
    __m512 l = _mm512_set1_ps(INFINITY), h = _mm512_set1_ps(-INFINITY);
    const __m512 zero = _mm512_setzero_ps();
    for (size_t p = 0; p < k; p += 16) {
        const __mmask16 mask = lanes16((ptrdiff_t)(k - p));
        const __m512 v = load_centred16(x + p, mul ? mul + p : NULL, zero, mask);
        l = _mm512_mask_min_ps(l, mask, v, l);
        h = _mm512_mask_max_ps(h, mask, v, h);
    }
    *lo = _mm512_reduce_min_ps(l);
    *hi = _mm512_reduce_max_ps(h);
}

// --- AVX512-VNNI: 6 rows × 64 columns, 24 zmm accumulators ---

// The body for mr rows and nz zmm columns (both constants at each call site, so each gets its own
// code with its accumulators in registers). Per quad: 4 panel loads, then per row one broadcast of
// its 4 bytes and nz vpdpbusd.
ALWAYS T512 void tile_avx512(const int mr, const int nz, size_t nv, size_t kcq, const uint8_t *a, size_t ldq,
                             const int8_t *w, int flags, const int32_t *comp, const float *sa, const float *sw,
                             const float *bias, float *c, size_t ldc) {
    const __mmask16 k0 = lanes16((ptrdiff_t)nv), k1 = lanes16((ptrdiff_t)nv - 16), k2 = lanes16((ptrdiff_t)nv - 32),
                    k3 = lanes16((ptrdiff_t)nv - 48);
    const __m512i z = _mm512_setzero_si512();
    __m512i c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z, c20 = z, c21 = z, c22 = z, c23 = z;
    __m512i c30 = z, c31 = z, c32 = z, c33 = z, c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z, c52 = z, c53 = z;
    // Rows past mr alias row 0 and are never read: no pointer past the strip is formed.
    const uint8_t *a0 = a, *a1 = mr > 1 ? a + ldq : a, *a2 = mr > 2 ? a + 2 * ldq : a, *a3 = mr > 3 ? a + 3 * ldq : a,
                  *a4 = mr > 4 ? a + 4 * ldq : a, *a5 = mr > 5 ? a + 5 * ldq : a;
#define DP(i, v) if (nz > v) c##i##v = _mm512_dpbusd_epi32(c##i##v, av, w##v);
#define ROW(i)                                                                                      \
    if (mr > i) {                                                                                   \
        const __m512i av = _mm512_set1_epi32(load32(a##i + 4 * q));                                 \
        DP(i, 0) DP(i, 1) DP(i, 2) DP(i, 3)                                                         \
    }
    for (size_t q = 0; q < kcq; q++) {
        const int8_t *wq = w + q * 4 * NP;
        const __m512i w0 = _mm512_loadu_si512(wq), w1 = nz > 1 ? _mm512_loadu_si512(wq + 64) : z,
                      w2 = nz > 2 ? _mm512_loadu_si512(wq + 128) : z, w3 = nz > 3 ? _mm512_loadu_si512(wq + 192) : z;
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
    }
#undef ROW
#undef DP
    // The previous depth blocks' sums, parked in C, are added after the loop, not loaded before it:
    // accumulators that enter the loop either zeroed or loaded made gcc 12 keep a stack copy of
    // each, updated every quad (2.6× slower).
    if (!(flags & FIRST)) {
#define LOAD(i, v) if (mr > i && nz > v) c##i##v = _mm512_add_epi32(c##i##v, _mm512_maskz_loadu_epi32(k##v, c + i * ldc + 16 * v));
#define LOADROW(i) LOAD(i, 0) LOAD(i, 1) LOAD(i, 2) LOAD(i, 3)
        LOADROW(0) LOADROW(1) LOADROW(2) LOADROW(3) LOADROW(4) LOADROW(5)
#undef LOADROW
#undef LOAD
    }
    if (!(flags & LAST)) {
#define PARK(i, v) if (mr > i && nz > v) _mm512_mask_storeu_epi32(c + i * ldc + 16 * v, k##v, c##i##v);
#define PARKROW(i) PARK(i, 0) PARK(i, 1) PARK(i, 2) PARK(i, 3)
        PARKROW(0) PARKROW(1) PARKROW(2) PARKROW(3) PARKROW(4) PARKROW(5)
#undef PARKROW
#undef PARK
        return;
    }
    // Σ(a + 128)·w may wrap, but minus comp = 128·Σw it is Σ a·w mod 2³², and |Σ a·w| < 2³¹: the
    // exact sum. Then fmaf(acc, sa·sw, bias) as the portable path.
    const __m512 zf = _mm512_setzero_ps();
    const __m512i p0 = _mm512_loadu_si512(comp), p1 = nz > 1 ? _mm512_loadu_si512(comp + 16) : z,
                  p2 = nz > 2 ? _mm512_loadu_si512(comp + 32) : z, p3 = nz > 3 ? _mm512_loadu_si512(comp + 48) : z;
    const __m512 s0 = _mm512_maskz_loadu_ps(k0, sw), s1 = nz > 1 ? _mm512_maskz_loadu_ps(k1, sw + 16) : zf,
                 s2 = nz > 2 ? _mm512_maskz_loadu_ps(k2, sw + 32) : zf, s3 = nz > 3 ? _mm512_maskz_loadu_ps(k3, sw + 48) : zf;
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(k0, bias) : zf, b1 = bias && nz > 1 ? _mm512_maskz_loadu_ps(k1, bias + 16) : zf,
                 b2 = bias && nz > 2 ? _mm512_maskz_loadu_ps(k2, bias + 32) : zf,
                 b3 = bias && nz > 3 ? _mm512_maskz_loadu_ps(k3, bias + 48) : zf;
#define OUT(i, v)                                                                                   \
    if (nz > v) {                                                                                   \
        const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(c##i##v, p##v));                       \
        const __m512 s = _mm512_mul_ps(sai, s##v);                                                  \
        _mm512_mask_storeu_ps(c + i * ldc + 16 * v, k##v, bias ? _mm512_fmadd_ps(f, s, b##v) : _mm512_mul_ps(f, s)); \
    }
#define OUTROW(i)                                                                                   \
    if (mr > i) {                                                                                   \
        const __m512 sai = _mm512_set1_ps(sa[i]);                                                   \
        OUT(i, 0) OUT(i, 1) OUT(i, 2) OUT(i, 3)                                                     \
    }
    OUTROW(0) OUTROW(1) OUTROW(2) OUTROW(3) OUTROW(4) OUTROW(5)
#undef OUTROW
#undef OUT
}

static T512 void panel_avx512(size_t mr, size_t nv, size_t kcq, const uint8_t *a, size_t ldq, const int8_t *w, int flags,
                              const int32_t *comp, const float *sa, const float *sw, const float *bias, float *c,
                              size_t ldc) {
#define CASE(r, z) case r * 4 + z - 1: tile_avx512(r, z, nv, kcq, a, ldq, w, flags, comp, sa, sw, bias, c, ldc); break;
#define CASES(r) CASE(r, 1) CASE(r, 2) CASE(r, 3) CASE(r, 4)
    switch (mr * 4 + (nv + 15) / 16 - 1) { CASES(1) CASES(2) CASES(3) CASES(4) CASES(5) CASES(6) default: abort(); }
#undef CASES
#undef CASE
}

// --- AVX-VNNI and AVX2: 16-column slices of the panel, 2 ymm wide ---

// C[i][0..<nv] (nv ≤ 16) for the ymm paths: full vectors with plain loads and stores (masked
// ones are slow on Zen), a partial one masked.
ALWAYS T2 __m256i load_park(const float *c, ptrdiff_t nv) {
    return nv >= 8 ? _mm256_loadu_si256((const __m256i *)(const void *)c)
                   : _mm256_maskload_epi32((const int *)(const void *)c, lanes8(nv));
}
ALWAYS T2 void store_park(float *c, ptrdiff_t nv, __m256i x) {
    if (nv >= 8) _mm256_storeu_si256((__m256i *)(void *)c, x);
    else _mm256_maskstore_epi32((int *)(void *)c, lanes8(nv), x);
}
ALWAYS T2 __m256 load_part(const float *x, ptrdiff_t nv) {
    return nv >= 8 ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, lanes8(nv));
}
ALWAYS T2 void store_part(float *c, ptrdiff_t nv, __m256 x) {
    if (nv >= 8) _mm256_storeu_ps(c, x);
    else _mm256_maskstore_ps(c, lanes8(nv), x);
}

// The ymm tiles' shared frame, as tile_avx512 with 16 columns: the slice's loop (`BODY`, per quad,
// with w0/w1 loaded; `a` rows ldq apart: the quantised strip for AVX-VNNI, the prepared one for
// AVX2), plus the parked sums, then parked sums out or the epilogue (`OFFSET`: whether the sums
// carry the +128 offset).
#define YMM_TILE(NAME, ATTR, SETUP, BODY, OFFSET)                                           \
    ALWAYS ATTR void NAME(const int mr, const int nz, size_t nv, size_t kcq, const uint8_t *a, size_t ldq, \
                          const int8_t *w, int flags, const int32_t *comp, const float *sa, const float *sw, \
                          const float *bias, float *c, size_t ldc) {                               \
        const ptrdiff_t n0 = (ptrdiff_t)nv, n1 = (ptrdiff_t)nv - 8;                                \
        const __m256i z = _mm256_setzero_si256();                                                   \
        __m256i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z; \
        const uint8_t *a0 = a, *a1 = mr > 1 ? a + ldq : a, *a2 = mr > 2 ? a + 2 * ldq : a,          \
                      *a3 = mr > 3 ? a + 3 * ldq : a, *a4 = mr > 4 ? a + 4 * ldq : a, *a5 = mr > 5 ? a + 5 * ldq : a; \
        (void)a4, (void)a5; /* the AVX2 tile has 4 rows */                                          \
        SETUP                                                                                       \
        for (size_t q = 0; q < kcq; q++) {                                                          \
            const int8_t *wq = w + q * 4 * NP;                                                      \
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)wq);               \
            const __m256i w1 = nz > 1 ? _mm256_loadu_si256((const __m256i *)(const void *)(wq + 32)) : z; \
            BODY                                                                                    \
        }                                                                                           \
        if (!(flags & FIRST)) {                                                                     \
            YROWS(YLOADROW)                                                                         \
        }                                                                                           \
        if (!(flags & LAST)) {                                                                      \
            YROWS(YPARKROW)                                                                         \
            return;                                                                                 \
        }                                                                                           \
        const __m256 zf = _mm256_setzero_ps();                                                      \
        const __m256i p0 = OFFSET ? _mm256_loadu_si256((const __m256i *)(const void *)comp) : z;    \
        const __m256i p1 = OFFSET && nz > 1 ? _mm256_loadu_si256((const __m256i *)(const void *)(comp + 8)) : z; \
        const __m256 s0 = load_part(sw, n0), s1 = nz > 1 ? load_part(sw + 8, n1) : zf;              \
        const __m256 b0 = bias ? load_part(bias, n0) : zf, b1 = bias && nz > 1 ? load_part(bias + 8, n1) : zf; \
        YROWS(YOUTROW)                                                                              \
    }
#define YROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define YLOADROW(i)                                                                                 \
    if (mr > i) {                                                                                   \
        c##i##0 = _mm256_add_epi32(c##i##0, load_park(c + i * ldc, n0));                            \
        if (nz > 1) c##i##1 = _mm256_add_epi32(c##i##1, load_park(c + i * ldc + 8, n1));            \
    }
#define YPARKROW(i)                                                                                 \
    if (mr > i) {                                                                                   \
        store_park(c + i * ldc, n0, c##i##0);                                                       \
        if (nz > 1) store_park(c + i * ldc + 8, n1, c##i##1);                                       \
    }
#define YOUT(i, v)                                                                                  \
    {                                                                                               \
        const __m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(c##i##v, p##v));                       \
        const __m256 s = _mm256_mul_ps(sai, s##v);                                                  \
        store_part(c + i * ldc + 8 * v, n##v, bias ? _mm256_fmadd_ps(f, s, b##v) : _mm256_mul_ps(f, s)); \
    }
#define YOUTROW(i)                                                                                  \
    if (mr > i) {                                                                                   \
        const __m256 sai = _mm256_set1_ps(sa[i]);                                                   \
        YOUT(i, 0)                                                                                  \
        if (nz > 1) YOUT(i, 1)                                                                      \
    }

// AVX-VNNI: 6 rows × 16 columns, 12 accumulators + 2 panel vectors + a broadcast in 16 registers.
#define VNNI_ROW(i)                                                                                 \
    if (mr > i) {                                                                                   \
        const __m256i av = _mm256_set1_epi32(load32(a##i + 4 * q));                                 \
        c##i##0 = _mm256_dpbusd_avx_epi32(c##i##0, av, w0);                                         \
        if (nz > 1) c##i##1 = _mm256_dpbusd_avx_epi32(c##i##1, av, w1);                             \
    }
YMM_TILE(tile_avxvnni, TVNNI, , YROWS(VNNI_ROW), 1)

// A 64-column panel as four 16-column slices, each swept down the strip's rows (in L1).
#define YCASE(TILE, r, zz) case r * 2 + zz - 1: TILE(r, zz, ns, kcq, a, ldq, ws, flags, comp + s, sa, sw + s, bs, c + s, ldc); break;
static TVNNI void panel_avxvnni(size_t mr, size_t nv, size_t kcq, const uint8_t *a, size_t ldq, const int8_t *w, int flags,
                                const int32_t *comp, const float *sa, const float *sw, const float *bias, float *c,
                                size_t ldc) {
    for (size_t s = 0; s < nv; s += 16) {
        const size_t ns = nv - s < 16 ? nv - s : 16;
        const int8_t *ws = w + 4 * s;
        const float *bs = bias ? bias + s : NULL;
        switch (mr * 2 + (ns + 7) / 8 - 1) {
            YCASE(tile_avxvnni, 1, 1) YCASE(tile_avxvnni, 1, 2) YCASE(tile_avxvnni, 2, 1) YCASE(tile_avxvnni, 2, 2)
            YCASE(tile_avxvnni, 3, 1) YCASE(tile_avxvnni, 3, 2) YCASE(tile_avxvnni, 4, 1) YCASE(tile_avxvnni, 4, 2)
            YCASE(tile_avxvnni, 5, 1) YCASE(tile_avxvnni, 5, 2) YCASE(tile_avxvnni, 6, 1) YCASE(tile_avxvnni, 6, 2)
            default: abort();
        }
    }
}

// AVX2: 4 rows × 16 columns, exact without VNNI. vpmaddubsw multiplies |a| (unsigned, ≤ 128) by
// w with a's sign (vpsignb; |w| ≤ 127, so no overflow) and adds pairs (≤ 2·128·127 = 32512: no
// saturation), vpmaddwd by 1 adds those pairs into int32; no offset to subtract. That is four
// vector-ALU instructions per 32 products, the bound of this path, so a and |a| are not derived in
// the loop (2 more per row and quad, for each of a panel's four slices) but once per panel, into a
// stack buffer from which the loop only broadcasts: 20% faster on Zen 5.
#define AVX2_ROW(i)                                                                                 \
    if (mr > i) {                                                                                   \
        const __m256i as = _mm256_set1_epi32(load32(a##i + 8 * q));                                 \
        const __m256i au = _mm256_set1_epi32(load32(a##i + 8 * q + 4));                             \
        c##i##0 = _mm256_add_epi32(c##i##0, _mm256_madd_epi16(_mm256_maddubs_epi16(au, _mm256_sign_epi8(w0, as)), ones)); \
        if (nz > 1)                                                                                 \
            c##i##1 = _mm256_add_epi32(c##i##1, _mm256_madd_epi16(_mm256_maddubs_epi16(au, _mm256_sign_epi8(w1, as)), ones)); \
    }
YMM_TILE(tile_avx2, T2, const __m256i ones = _mm256_set1_epi16(1);, AVX2_ROW(0) AVX2_ROW(1) AVX2_ROW(2) AVX2_ROW(3), 0)

// Quads per prepared chunk: 4 rows × 256 quads × 8 bytes = 8 KB of stack.
enum { AVX2_CHUNK = 256 };

// buf row r (8·ch bytes), quad q: the 4 bytes of a (signed), then the 4 of |a| (unsigned), from the
// strip's bytes a + 128. vpunpck{l,h}dq interleave a and |a| within 128-bit lanes; vperm2i128 puts
// quads 0–3 and 4–7 back in order.
static T2 void prepare_avx2(size_t mr, size_t ch, const uint8_t *a, size_t ldq, uint8_t *buf) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (size_t r = 0; r < mr; r++) {
        const uint8_t *src = a + r * ldq;
        uint8_t *dst = buf + r * 8 * ch;
        size_t q = 0;
        for (; q + 8 <= ch; q += 8) {
            const __m256i as = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(src + 4 * q)), flip);
            const __m256i au = _mm256_abs_epi8(as);
            const __m256i lo = _mm256_unpacklo_epi32(as, au), hi = _mm256_unpackhi_epi32(as, au);
            _mm256_storeu_si256((__m256i *)(void *)(dst + 8 * q), _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)(void *)(dst + 8 * q + 32), _mm256_permute2x128_si256(lo, hi, 0x31));
        }
        for (; q < ch; q++)
            for (size_t t = 0; t < 4; t++) {
                const int v = (int)src[4 * q + t] - 128;
                dst[8 * q + t] = (uint8_t)v, dst[8 * q + 4 + t] = (uint8_t)(v < 0 ? -v : v);
            }
    }
}

// The depth block in chunks: each chunk prepared, then its four slices; their sums park in C
// between chunks like between depth blocks.
static T2 void panel_avx2(size_t mr, size_t nv, size_t kcq, const uint8_t *a, size_t ldq, const int8_t *w, int flags,
                          const int32_t *comp, const float *sa, const float *sw, const float *bias, float *c, size_t ldc) {
    uint8_t buf[4 * 8 * AVX2_CHUNK];
    for (size_t c0 = 0;; c0 += AVX2_CHUNK) {
        const size_t ch = kcq - c0 < AVX2_CHUNK ? kcq - c0 : AVX2_CHUNK;
        const int f = (c0 == 0 ? flags & FIRST : 0) | (c0 + ch >= kcq ? flags & LAST : 0);
        prepare_avx2(mr, ch, a + 4 * c0, ldq, buf);
        for (size_t s = 0; s < nv; s += 16) {
            const size_t ns = nv - s < 16 ? nv - s : 16;
            const int8_t *ws = w + c0 * 4 * NP + 4 * s;
            const float *bs = bias ? bias + s : NULL;
#define ACASE(r, zz) case r * 2 + zz - 1: tile_avx2(r, zz, ns, ch, buf, 8 * ch, ws, f, comp + s, sa, sw + s, bs, c + s, ldc); break;
            switch (mr * 2 + (ns + 7) / 8 - 1) {
                ACASE(1, 1) ACASE(1, 2) ACASE(2, 1) ACASE(2, 2) ACASE(3, 1) ACASE(3, 2) ACASE(4, 1) ACASE(4, 2)
                default: abort();
            }
#undef ACASE
        }
        if (c0 + ch >= kcq) break;
    }
}

#endif  // __x86_64__

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

static float absmax(int isa, const float *x, size_t k) {
    (void)isa;
#if defined(__x86_64__)
    if (isa == EMBEDTUNE_INT8_AVX512VNNI) return absmax_avx512(x, k);
    if (isa >= EMBEDTUNE_INT8_AVX2) return absmax_avx2(x, k);
#endif
    return absmax_portable(x, k);
}

// q = quantised x·mul − mid (mul NULL: x − mid) at scale s.
static void quantize(int isa, const float *x, const float *mul, float mid, size_t k, float s, uint8_t *q) {
    (void)isa;
#if defined(__x86_64__)
    if (isa == EMBEDTUNE_INT8_AVX512VNNI) quantize_avx512(x, mul, mid, k, s, q);
    else if (isa >= EMBEDTUNE_INT8_AVX2) quantize_avx2(x, mul, mid, k, s, q);
    else
#endif
        quantize_portable(x, mul, mid, k, s, q);
}

static void minmax(int isa, const float *x, const float *mul, size_t k, float *lo, float *hi) {
    (void)isa;
#if defined(__x86_64__)
    if (isa == EMBEDTUNE_INT8_AVX512VNNI) minmax_avx512(x, mul, k, lo, hi);
    else if (isa >= EMBEDTUNE_INT8_AVX2) minmax_avx2(x, mul, k, lo, hi);
    else
#endif
        minmax_portable(x, mul, k, lo, hi);
}

void embedtune_int8_quantize_rows(const float *a, size_t m, size_t k, size_t lda, uint8_t *out, size_t ldq,
                                  float *scales) {
    const int isa = embedtune_int8_active_isa();
    const size_t kp = round_up(k, 4);
    for (size_t i = 0; i < m; i++) {
        const float *x = a + i * lda;
        uint8_t *q = out + i * ldq;
        const float s = scale_of(absmax(isa, x, k));
        scales[i] = s;
        quantize(isa, x, NULL, 0.0f, k, s, q);
        memset(q + k, 128, kp - k);  // the value 0: the kernels read whole quads
    }
}

void embedtune_int8_quantize_rows_centred(const float *a, size_t m, size_t k, size_t lda, const float *mul, uint8_t *out,
                                          size_t ldq, float *scales, float *middles) {
    const int isa = embedtune_int8_active_isa();
    const size_t kp = round_up(k, 4);
    for (size_t i = 0; i < m; i++) {
        const float *x = a + i * lda;
        uint8_t *q = out + i * ldq;
        float lo, hi;
        minmax(isa, x, mul, k, &lo, &hi);
        // No finite value, or an infinite one: no centre (the row is garbage either way).
        float mid = lo <= hi ? lo + (hi - lo) * 0.5f : 0.0f;
        if (!isfinite(mid) || mid == 0.0f) mid = 0.0f;  // and +0, never −0: the same bits on every path
        // The largest |fl(v − mid)| is at v = lo or v = hi (rounding is monotonic).
        const float reach = lo <= hi ? fmaxf(hi - mid, mid - lo) : 0.0f;
        const float s = scale_of(reach);
        scales[i] = s;
        middles[i] = mid;
        quantize(isa, x, mul, mid, k, s, q);
        memset(q + k, 128, kp - k);
    }
}

// c += partial + mid · rowsum as c + fmaf(mid, rowsum, partial) (partial NULL: c = fmaf(mid, rowsum, c)).
static void add_centring_portable(float *c, size_t n, const float *p, float mid, const float *rs) {
    if (p) for (size_t j = 0; j < n; j++) c[j] += fmaf(mid, rs[j], p[j]);
    else for (size_t j = 0; j < n; j++) c[j] = fmaf(mid, rs[j], c[j]);
}

#if defined(__x86_64__)
static T2 void add_centring_avx2(float *c, size_t n, const float *p, float mid, const float *rs) {
    const __m256 m = _mm256_set1_ps(mid);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 r = _mm256_loadu_ps(rs + j), cj = _mm256_loadu_ps(c + j);
        _mm256_storeu_ps(c + j, p ? _mm256_add_ps(cj, _mm256_fmadd_ps(m, r, _mm256_loadu_ps(p + j))) : _mm256_fmadd_ps(m, r, cj));
    }
    add_centring_portable(c + j, n - j, p ? p + j : NULL, mid, rs + j);
}
#endif

void embedtune_int8_add_centring(float *c, size_t m, size_t n, size_t ldc, const float *partial, size_t ldp,
                                 const float *middles, const float *row_sums) {
    const int isa = embedtune_int8_active_isa();
    (void)isa;
    for (size_t i = 0; i < m; i++) {
        const float *p = partial ? partial + i * ldp : NULL;
        if (!p && middles[i] == 0.0f) continue;  // fmaf(0, r, c) is c for finite r
#if defined(__x86_64__)
        if (isa >= EMBEDTUNE_INT8_AVX2) {
            add_centring_avx2(c + i * ldc, n, p, middles[i], row_sums);
            continue;
        }
#endif
        add_centring_portable(c + i * ldc, n, p, middles[i], row_sums);
    }
}

// Each row of W is quantised by the activation quantiser (bit-exact on every path) in chunks of
// 256 into a stack buffer, then scattered into its panel column, 4 bytes per quad, 256 bytes apart.
void embedtune_int8_pack_weights(const float *w, size_t n, size_t k, size_t ldw, void *packed, float *scales) {
    if (k > EMBEDTUNE_INT8_MAX_K) abort();
    const int isa = embedtune_int8_active_isa();
    const size_t kp = round_up(k, 4), npad = round_up(n, NP);
    int8_t *wp = packed;
    int32_t *comp = (int32_t *)(void *)(wp + npad * kp);
    memset(wp, 0, npad * kp);
    for (size_t j = 0; j < npad; j++) comp[j] = 0;
    for (size_t j = 0; j < n; j++) {
        const float *x = w + j * ldw;
        const float s = scale_of(absmax(isa, x, k));
        scales[j] = s;
        int8_t *col = wp + (j / NP) * NP * kp + (j % NP) * 4;
        int64_t sum = 0;
        for (size_t p0 = 0; p0 < k; p0 += 256) {
            uint8_t chunk[256];
            const size_t len = k - p0 < 256 ? k - p0 : 256;
            quantize(isa, x + p0, NULL, 0.0f, len, s, chunk);
            for (size_t t = 0; t < len; t++) {
                const size_t p = p0 + t;
                const int v = (int)chunk[t] - 128;
                col[p / 4 * 4 * NP + p % 4] = (int8_t)v;
                sum += v;
            }
        }
        comp[j] = (int32_t)(128 * sum);  // |128 · Σ| ≤ 128 · 127 · 131072 < 2³¹
    }
}

void embedtune_int8_gemm(size_t m, size_t n, size_t k, const uint8_t *aq, size_t ldq, const float *scale_a,
                         const void *packed_w, const float *scale_w, const float *bias, float *c, size_t ldc) {
    if (k > EMBEDTUNE_INT8_MAX_K) abort();  // the int32 sums could overflow: a wrong answer, silently
    if (m == 0 || n == 0) return;
    const int8_t *wp = packed_w;
    switch (embedtune_int8_active_isa()) {
#if defined(__x86_64__)
    case EMBEDTUNE_INT8_AVX512VNNI: drive(panel_avx512, 6, m, n, k, aq, ldq, scale_a, wp, scale_w, bias, c, ldc); break;
    case EMBEDTUNE_INT8_AVXVNNI: drive(panel_avxvnni, 6, m, n, k, aq, ldq, scale_a, wp, scale_w, bias, c, ldc); break;
    case EMBEDTUNE_INT8_AVX2: drive(panel_avx2, 4, m, n, k, aq, ldq, scale_a, wp, scale_w, bias, c, ldc); break;
#endif
    default: gemm_portable(m, n, k, aq, ldq, scale_a, wp, scale_w, bias, c, ldc);
    }
}
