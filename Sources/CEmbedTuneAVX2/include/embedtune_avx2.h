#pragma once
// The INT8 kernels' declarations come in with this header: one module, one header that names them all.
#include "embedtune_int8.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/// True when this CPU runs the AVX2/FMA kernels (checked once, at the first call).
bool embedtune_gemm_available(void);
/// True when this CPU runs the AVX-512 kernels (F, VL, DQ, BW; checked once).
bool embedtune_gemm512_available(void);

// The own GEMMs come in two widths with the same contract: `_avx2` (ymm, panels of 16 columns,
// narrow path for n ≤ 8) and `_avx512` (zmm, panels of 32 columns, narrow path for n ≤ 16). Call
// one only when its `available` function says so.
#define EMBEDTUNE_GEMM_DECLARATIONS(suffix)                                                                          \
    void embedtune_sgemm_##suffix(bool transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda, \
                                  const void *b, bool bf16, size_t ldb, bool accumulate, const float *bias, float *c, \
                                  size_t ldc);                                                                      \
    void embedtune_sgemm_sum_##suffix(bool transB, size_t m, size_t n, size_t k, const float *a, size_t lda,        \
                                      const void *b, bool bf16, size_t ldb, bool transB2, size_t k2, float alpha2,  \
                                      const float *a2, size_t lda2, const float *b2, size_t ldb2, bool accumulate,  \
                                      const float *bias, float *c, size_t ldc, const float *mul, size_t ldm);       \
    void embedtune_sgemm_tn_##suffix(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,          \
                                     const float *b, size_t ldb, float *c, size_t ldc, bool transposeC);

/// embedtune_sgemm_*: row-major, single-threaded C = α · A · op(B) + base, where base is C itself
/// when `accumulate`, else `bias` broadcast over the rows when not NULL, else 0. A is (m, k) with
/// row stride lda; op(B) is (k, n): B itself when !transB ((k, n), row stride ldb), Bᵀ when transB
/// ((n, k), row stride ldb: a PyTorch linear weight). B holds float32, or bfloat16 when `bf16` (a
/// frozen base weight in half the memory; widened to float32 as it is packed, so the products and
/// their accumulation stay float32). bias has n entries. Any n: a last partial panel is zero-padded
/// (small n, as a LoRA rank, still runs at the kernel's rate).
///
/// embedtune_sgemm_sum_*: two products into the same tiles, C written once:
/// C = (A · op(B) + α₂ · A₂ · op(B₂) + base) ⊙ M (base as in embedtune_sgemm; M, (m, n) with row
/// stride ldm, only when `mul` is not NULL; B as in embedtune_sgemm_*, B₂ float32). A₂ is (m, k₂),
/// op(B₂) (k₂, n). For a LoRA-adapted
/// linear: the frozen weight's product plus s · u · Bᵀ (forward), or dy · W plus du · A (input
/// gradient), with no pass over C for the adapter; M is an activation's kept slope, so the input
/// gradient comes out already through the activation.
///
/// embedtune_sgemm_tn_*: C += α · Aᵀ · B over a long k, A (k, m) with row stride lda, B (k, n)
/// with row stride ldb: C (m, n) with row stride ldc, or when transposeC, C holds the result
/// transposed ((n, m), row stride ldc). For weight gradients of a low-rank adapter (m the rank, k
/// the tokens): neither operand is packed, both stream once.
EMBEDTUNE_GEMM_DECLARATIONS(avx2)
EMBEDTUNE_GEMM_DECLARATIONS(avx512)

/// Dropout on one head's attention probabilities: row i of P is masked as `embedtune_dropout_row`
/// with base[i] (the row's query token and the head's site), threshold and scale.
typedef struct {
    const uint64_t *base;
    uint32_t threshold;
    float scale;
} embedtune_attention_dropout;

/// embedtune_attention_forward_*: attention forward for one (sequence, head), fused: out (t, d) =
/// softmax(scale · Q·Kᵀ, causal mask) · V, with Q, K, V, out (t, d) at row strides ldq, ldk, ldv,
/// ldo. When probs is not NULL the probabilities are also written there ((t, t), rows t apart;
/// zeros above a causal diagonal). With dropout (not NULL) out = dropout(P) · V, and probs keeps P
/// itself.
///
/// embedtune_attention_backward_*: its backward, given the forward's probabilities P ((t, t), rows
/// t apart): dq = dS·K is written, dk += dSᵀ·Q and dv += P'ᵀ·dO accumulate (query heads sharing a
/// KV head add into the same rows), dS = scale · P ⊙ (dP − rowsum(dP ⊙ P)), dP = dropout'(dO·Vᵀ),
/// P' = dropout(P) (both P without dropout). dk and dv share the row stride lddkv. Causal only
/// skips work above the diagonal, where P is zero.
///
/// Two widths, as the GEMMs: `_avx2` for head dims that are multiples of 16, `_avx512` for
/// multiples of 32; each returns false, doing nothing, for other head dims.
#define EMBEDTUNE_ATTENTION_DECLARATIONS(suffix)                                                                    \
    bool embedtune_attention_forward_##suffix(size_t t, size_t d, float scale, bool causal, const float *q,         \
                                              size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,   \
                                              float *probs, float *out, size_t ldo,                                 \
                                              const embedtune_attention_dropout *dropout);                          \
    bool embedtune_attention_backward_##suffix(size_t t, size_t d, float scale, bool causal, const float *q,        \
                                               size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,  \
                                               const float *dout, size_t lddo, const float *probs, float *dq,       \
                                               size_t lddq, float *dk, float *dv, size_t lddkv,                     \
                                               const embedtune_attention_dropout *dropout);
EMBEDTUNE_ATTENTION_DECLARATIONS(avx2)
EMBEDTUNE_ATTENTION_DECLARATIONS(avx512)

/// Exact (erf) GELU: out = x·Φ(x), count values; out may alias x.
void embedtune_gelu(float *out, const float *x, size_t count);

/// GELU for training: out = x·Φ(x) and x overwritten with the slope Φ(x) + x·φ(x).
void embedtune_gelu_slope(float *out, float *x, size_t count);

/// SwiGLU over count values: out = silu(gate)·up.
void embedtune_swiglu(float *out, const float *gate, const float *up, size_t count);

/// Its backward: dgate = dout·up·σ(g)·(1 + g·(1 − σ(g))), dup = dout·silu(g).
void embedtune_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                               size_t count);

/// LayerNorm of `rows` rows of c values, each first added to (when residual is not NULL: x += residual,
/// kept for backward): out = (x − mean) · rstd · weight + bias; mean and rstd (may be NULL) per row.
/// out may alias x.
void embedtune_add_layernorm_rows(float *out, float *mean, float *rstd, float *x, const float *residual,
                                  const float *weight, const float *bias, size_t rows, size_t c, float eps);

/// LayerNorm backward over rows of c: dinp (+)= r · (g·w − mean(g·w) − x̂ · mean(g·w·x̂)), x̂ = (x − μ)·r,
/// g = dout, with each row's mean μ and rstd r from the forward.
void embedtune_layernorm_backward_rows(float *dinp, const float *dout, const float *inp, const float *weight,
                                       const float *mean, const float *rstd, size_t rows, size_t c, bool accumulate);

/// RMSNorm over rows of c: out = x · r · w, r = 1 / √(mean(x²) + eps) kept in rstd (may be NULL).
/// out may alias x.
void embedtune_rmsnorm_rows(float *out, float *rstd, const float *x, const float *weight, size_t rows, size_t c,
                            float eps);

/// Its backward, accumulating: dinp += r · (w·g − x · r · m), m = r · mean(w·g·x), g = dout.
void embedtune_rmsnorm_backward_rows(float *dinp, const float *dout, const float *x, const float *weight,
                                     const float *rstd, size_t rows, size_t c);

/// Softmax of each of `rows` rows of `len` floats, in place. Causal: row i keeps its first i + 1
/// entries, the rest become 0; else every entry counts.
void embedtune_softmax_rows(float *p, size_t rows, size_t len, bool causal);

/// Softmax backward in place: ds = scale · p ⊙ (ds − rowsum(ds ⊙ p)), rows × len.
void embedtune_softmax_backward_rows(float *ds, const float *p, size_t rows, size_t len, float scale);

/// Counter-based dropout over one row, the same masks as the Swift `dropoutRow`: out[j] = 0 when
/// fmix32(fmix32(lo(base) + j·0x9E3779B1) ^ hi(base)) < threshold, else inp[j]·scale. out may
/// alias inp.
void embedtune_dropout_row(float *out, const float *inp, size_t count, uint32_t threshold, float scale, uint64_t base);

/// One row of a LoRA input gradient through its dropout mask, without materialising du·A:
/// dx += dropout(du · A), the mask of `embedtune_dropout_row` with the same base. du is the row's
/// (rank) bottleneck gradient, A (rank, cols) with contiguous rows.
void embedtune_lowrank_dropout_add_row(float *dx, const float *du, size_t rank, const float *a, size_t cols,
                                       uint32_t threshold, float scale, uint64_t base);
