// Element-wise kernels with AVX2/FMA — GELU, SwiGLU, LayerNorm, RMSNorm, attention's row softmax, dropout masks — with
// the same approximations and hashes as the Swift kernels (VectorMath.swift: Cephes-style exp, the
// Eigen/XLA rational erf; Dropout.swift), one ymm per eight values.
// Swift's SIMD8<Float> on baseline x86-64 is two SSE halves without FMA; GELU costs 3.6% of a
// MiniLM training step that way.
#include "embedtune_avx2.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)

#include "avx2_math.h"

// The eight floats at p, or the first `left` of them (masked) at the tail.
typedef struct {
    bool full;
    __m256i mask;
} Lanes;

INLINE Lanes lanes_left(size_t left) {
    Lanes l = {left >= 8, lanes(left < 8 ? (int)left : 8)};
    return l;
}
INLINE __m256 load(const float *p, Lanes l) { return l.full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, l.mask); }
INLINE void save(float *p, __m256 x, Lanes l) {
    if (l.full) _mm256_storeu_ps(p, x); else _mm256_maskstore_ps(p, l.mask, x);
}

// out = x·Φ(x); when `slope`, x is overwritten with Φ(x) + x·φ(x).
INLINE void gelu(float *out, float *x, size_t count, bool slope) {
    for (size_t i = 0; i < count; i += 8) {
        const Lanes l = lanes_left(count - i);
        __m256 d;
        save(out + i, gelu8(load(x + i, l), slope ? &d : NULL), l);
        if (slope) save(x + i, d, l);
    }
}

TARGET void embedtune_gelu(float *out, const float *x, size_t count) { gelu(out, (float *)x, count, false); }
TARGET void embedtune_gelu_slope(float *out, float *x, size_t count) { gelu(out, x, count, true); }

INLINE __m256 sigmoid8(__m256 x) {
    return _mm256_div_ps(v(1.0f), _mm256_add_ps(v(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

TARGET void embedtune_swiglu(float *out, const float *gate, const float *up, size_t count) {
    for (size_t i = 0; i < count; i += 8) {
        const Lanes l = lanes_left(count - i);
        const __m256 g = load(gate + i, l);
        save(out + i, _mm256_mul_ps(_mm256_mul_ps(g, sigmoid8(g)), load(up + i, l)), l);
    }
}

TARGET void embedtune_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                      size_t count) {
    for (size_t i = 0; i < count; i += 8) {
        const Lanes l = lanes_left(count - i);
        const __m256 g = load(gate + i, l), u = load(up + i, l), d = load(dout + i, l);
        const __m256 s = sigmoid8(g);
        // d(silu(g)·u)/dg = u·s·(1 + g·(1 − s)), d/du = g·s.
        const __m256 dg = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, u), s),
                                        _mm256_fmadd_ps(g, _mm256_sub_ps(v(1.0f), s), v(1.0f)));
        save(dup + i, _mm256_mul_ps(_mm256_mul_ps(d, g), s), l);
        save(dgate + i, dg, l);
    }
}

TARGET void embedtune_add_layernorm_rows(float *out, float *mean, float *rstd, float *x, const float *residual,
                                         const float *weight, const float *bias, size_t rows, size_t c, float eps) {
    const size_t whole = c / 8 * 8;
    for (size_t i = 0; i < rows; i++) {
        float *row = x + i * c, *o = out + i * c;
        if (residual) {
            const float *r = residual + i * c;
            size_t j = 0;
            for (; j < whole; j += 8) _mm256_storeu_ps(row + j, _mm256_add_ps(_mm256_loadu_ps(row + j), _mm256_loadu_ps(r + j)));
            for (; j < c; j++) row[j] += r[j];
        }
        __m256 acc = _mm256_setzero_ps();
        for (size_t j = 0; j < whole; j += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(row + j));
        float total = hsum(acc);
        for (size_t j = whole; j < c; j++) total += row[j];
        const float m = total / (float)c;
        const __m256 mv = v(m);
        acc = _mm256_setzero_ps();
        for (size_t j = 0; j < whole; j += 8) {
            const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(row + j), mv);
            acc = _mm256_fmadd_ps(d, d, acc);
        }
        float squares = hsum(acc);
        for (size_t j = whole; j < c; j++) squares += (row[j] - m) * (row[j] - m);
        const float r = 1.0f / sqrtf(squares / (float)c + eps);
        if (mean) mean[i] = m;
        if (rstd) rstd[i] = r;
        const __m256 rv = v(r);
        size_t j = 0;
        for (; j < whole; j += 8) {
            const __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row + j), mv), rv);
            _mm256_storeu_ps(o + j, _mm256_fmadd_ps(n, _mm256_loadu_ps(weight + j), _mm256_loadu_ps(bias + j)));
        }
        for (; j < c; j++) o[j] = (row[j] - m) * r * weight[j] + bias[j];
    }
}

TARGET void embedtune_rmsnorm_rows(float *out, float *rstd, const float *x, const float *weight, size_t rows, size_t c,
                                   float eps) {
    const size_t whole = c / 8 * 8;
    for (size_t i = 0; i < rows; i++) {
        const float *row = x + i * c;
        float *o = out + i * c;
        __m256 acc = _mm256_setzero_ps();
        for (size_t j = 0; j < whole; j += 8) {
            const __m256 xv = _mm256_loadu_ps(row + j);
            acc = _mm256_fmadd_ps(xv, xv, acc);
        }
        float squares = hsum(acc);
        for (size_t j = whole; j < c; j++) squares += row[j] * row[j];
        const float r = 1.0f / sqrtf(squares / (float)c + eps);
        if (rstd) rstd[i] = r;
        const __m256 rv = v(r);
        size_t j = 0;  // out may alias x: each value is read before it is written
        for (; j < whole; j += 8)
            _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(row + j), rv), _mm256_loadu_ps(weight + j)));
        for (; j < c; j++) o[j] = row[j] * r * weight[j];
    }
}

TARGET void embedtune_rmsnorm_backward_rows(float *dinp, const float *dout, const float *x, const float *weight,
                                            const float *rstd, size_t rows, size_t c) {
    const size_t whole = c / 8 * 8;
    for (size_t i = 0; i < rows; i++) {
        const float *xr = x + i * c, *g = dout + i * c;
        float *dx = dinp + i * c;
        const float r = rstd[i];
        // m = r · mean(w·g·x); dx += r · (w·g − x · r · m)
        __m256 acc = _mm256_setzero_ps();
        for (size_t j = 0; j < whole; j += 8)
            acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(weight + j), _mm256_loadu_ps(g + j)), _mm256_loadu_ps(xr + j), acc);
        float total = hsum(acc);
        for (size_t j = whole; j < c; j++) total += weight[j] * g[j] * xr[j];
        const float m = total * r / (float)c;
        const __m256 rv = v(r), rm = v(r * m);
        size_t j = 0;
        for (; j < whole; j += 8) {
            const __m256 wg = _mm256_mul_ps(_mm256_loadu_ps(weight + j), _mm256_loadu_ps(g + j));
            const __m256 d = _mm256_mul_ps(rv, _mm256_fnmadd_ps(_mm256_loadu_ps(xr + j), rm, wg));
            _mm256_storeu_ps(dx + j, _mm256_add_ps(_mm256_loadu_ps(dx + j), d));
        }
        for (; j < c; j++) dx[j] += r * (weight[j] * g[j] - xr[j] * r * m);
    }
}

TARGET void embedtune_layernorm_backward_rows(float *dinp, const float *dout, const float *inp, const float *weight,
                                              const float *mean, const float *rstd, size_t rows, size_t c, bool accumulate) {
    const size_t whole = c / 8 * 8;
    for (size_t i = 0; i < rows; i++) {
        const float *x = inp + i * c, *g = dout + i * c;
        float *dx = dinp + i * c;
        const float mu = mean[i], r = rstd[i];
        const __m256 muv = v(mu), rv = v(r);
        // Σ g·w and Σ g·w·x̂ over the row, x̂ = (x − μ)·r.
        __m256 sumG = _mm256_setzero_ps(), sumGX = _mm256_setzero_ps();
        for (size_t j = 0; j < whole; j += 8) {
            const __m256 gw = _mm256_mul_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(weight + j));
            sumG = _mm256_add_ps(sumG, gw);
            sumGX = _mm256_fmadd_ps(gw, _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), muv), rv), sumGX);
        }
        float tg = hsum(sumG), tgx = hsum(sumGX);
        for (size_t j = whole; j < c; j++) {
            const float gw = g[j] * weight[j];
            tg += gw, tgx += gw * (x[j] - mu) * r;
        }
        const float mG = tg / (float)c, mGX = tgx / (float)c;
        // dx (+)= r · (g·w − mean(g·w) − x̂ · mean(g·w·x̂))
        const __m256 mGv = v(mG), mGXv = v(mGX);
        size_t j = 0;
        for (; j < whole; j += 8) {
            const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), muv), rv);
            const __m256 gw = _mm256_mul_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(weight + j));
            __m256 d = _mm256_mul_ps(rv, _mm256_fnmadd_ps(xhat, mGXv, _mm256_sub_ps(gw, mGv)));
            if (accumulate) d = _mm256_add_ps(_mm256_loadu_ps(dx + j), d);
            _mm256_storeu_ps(dx + j, d);
        }
        for (; j < c; j++) {
            const float d = r * (g[j] * weight[j] - mG - (x[j] - mu) * r * mGX);
            dx[j] = accumulate ? dx[j] + d : d;
        }
    }
}

TARGET void embedtune_softmax_rows(float *p, size_t rows, size_t len, bool causal) {
    for (size_t i = 0; i < rows; i++) {
        float *row = p + i * len;
        const size_t valid = causal ? i + 1 : len;
        // Tails are masked loads filled with −∞ (max) and masked stores (exp, scale): every entry
        // goes through the same vector exp.
        __m256 mv = v(-INFINITY);
        for (size_t j = 0; j < valid; j += 8) {
            const Lanes l = lanes_left(valid - j);
            const __m256 x = load(row + j, l);
            mv = _mm256_max_ps(mv, l.full ? x : _mm256_blendv_ps(v(-INFINITY), x, _mm256_castsi256_ps(l.mask)));
        }
        const __m256 m = v(hmax(mv));
        __m256 sums = _mm256_setzero_ps();
        for (size_t j = 0; j < valid; j += 8) {
            const Lanes l = lanes_left(valid - j);
            __m256 e = exp8(_mm256_sub_ps(load(row + j, l), m));
            if (!l.full) e = _mm256_and_ps(e, _mm256_castsi256_ps(l.mask));
            sums = _mm256_add_ps(sums, e);
            save(row + j, e, l);
        }
        const __m256 inv = v(1.0f / hsum(sums));
        for (size_t j = 0; j < valid; j += 8) {
            const Lanes l = lanes_left(valid - j);
            save(row + j, _mm256_mul_ps(load(row + j, l), inv), l);
        }
        memset(row + valid, 0, (len - valid) * sizeof(float));
    }
}

TARGET void embedtune_softmax_backward_rows(float *ds, const float *p, size_t rows, size_t len, float scale) {
    const __m256 s = v(scale);
    for (size_t i = 0; i < rows; i++) {
        float *d = ds + i * len;
        const float *pr = p + i * len;
        __m256 dots = _mm256_setzero_ps();
        for (size_t j = 0; j < len; j += 8) {
            const Lanes l = lanes_left(len - j);
            dots = _mm256_fmadd_ps(load(pr + j, l), load(d + j, l), dots);
        }
        const __m256 dot = v(hsum(dots));
        for (size_t j = 0; j < len; j += 8) {
            const Lanes l = lanes_left(len - j);
            save(d + j, _mm256_mul_ps(_mm256_mul_ps(load(pr + j, l), _mm256_sub_ps(load(d + j, l), dot)), s), l);
        }
    }
}

// murmur3's 32-bit finaliser on eight lanes.
INLINE __m256i fmix32(__m256i h) {
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0x85EBCA6B));
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0xC2B2AE35));
    return _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
}

// One row's dropout mask, eight elements at a time: all ones where element j is dropped.
typedef struct {
    __m256i lo, hi, sign, limit, golden, step;
} RowMask;

INLINE RowMask row_mask(uint32_t threshold, uint64_t base) {
    // h < threshold unsigned, as a signed compare with both sides' sign bits flipped.
    const RowMask m = {_mm256_set1_epi32((int)(uint32_t)base), _mm256_set1_epi32((int)(uint32_t)(base >> 32)),
                       _mm256_set1_epi32((int)0x80000000), _mm256_set1_epi32((int)(threshold ^ 0x80000000u)),
                       _mm256_set1_epi32((int)0x9E3779B1), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)};
    return m;
}

INLINE __m256 dropped_at(const RowMask *m, size_t j) {
    const __m256i index = _mm256_add_epi32(m->step, _mm256_set1_epi32((int)(uint32_t)j));
    const __m256i h = fmix32(_mm256_xor_si256(fmix32(_mm256_add_epi32(m->lo, _mm256_mullo_epi32(index, m->golden))), m->hi));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(m->limit, _mm256_xor_si256(h, m->sign)));
}

TARGET void embedtune_dropout_row(float *out, const float *inp, size_t count, uint32_t threshold, float scale, uint64_t base) {
    const RowMask m = row_mask(threshold, base);
    const __m256 s = v(scale);
    for (size_t j = 0; j < count; j += 8) {
        const Lanes l = lanes_left(count - j);
        save(out + j, _mm256_andnot_ps(dropped_at(&m, j), _mm256_mul_ps(load(inp + j, l), s)), l);
    }
}

TARGET void embedtune_lowrank_dropout_add_row(float *dx, const float *du, size_t rank, const float *a, size_t cols,
                                              uint32_t threshold, float scale, uint64_t base) {
    const RowMask m = row_mask(threshold, base);
    const __m256 s = v(scale);
    for (size_t j = 0; j < cols; j += 8) {
        const Lanes l = lanes_left(cols - j);
        // Σ_r du[r]·A[r][j..], r in order from zero: the rank-deep GEMM's sums, bit for bit.
        __m256 acc = _mm256_setzero_ps();
        for (size_t r = 0; r < rank; r++) acc = _mm256_fmadd_ps(_mm256_broadcast_ss(du + r), load(a + r * cols + j, l), acc);
        save(dx + j, _mm256_add_ps(load(dx + j, l), _mm256_andnot_ps(dropped_at(&m, j), _mm256_mul_ps(acc, s))), l);
    }
}

#else

void embedtune_swiglu(float *out, const float *gate, const float *up, size_t count) { abort(); }
void embedtune_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                               size_t count) { abort(); }
void embedtune_gelu(float *out, const float *x, size_t count) { abort(); }
void embedtune_gelu_slope(float *out, float *x, size_t count) { abort(); }
void embedtune_softmax_rows(float *p, size_t rows, size_t len, bool causal) { abort(); }
void embedtune_dropout_row(float *out, const float *inp, size_t count, uint32_t threshold, float scale, uint64_t base) { abort(); }
void embedtune_lowrank_dropout_add_row(float *dx, const float *du, size_t rank, const float *a, size_t cols,
                                       uint32_t threshold, float scale, uint64_t base) { abort(); }
void embedtune_softmax_backward_rows(float *ds, const float *p, size_t rows, size_t len, float scale) { abort(); }
void embedtune_add_layernorm_rows(float *out, float *mean, float *rstd, float *x, const float *residual,
                                  const float *weight, const float *bias, size_t rows, size_t c, float eps) { abort(); }
void embedtune_layernorm_backward_rows(float *dinp, const float *dout, const float *inp, const float *weight,
                                       const float *mean, const float *rstd, size_t rows, size_t c, bool accumulate) { abort(); }
void embedtune_rmsnorm_rows(float *out, float *rstd, const float *x, const float *weight, size_t rows, size_t c,
                            float eps) { abort(); }
void embedtune_rmsnorm_backward_rows(float *dinp, const float *dout, const float *x, const float *weight,
                                     const float *rstd, size_t rows, size_t c) { abort(); }

#endif
