import CEmbedTuneAVX2
import Foundation

// Backward passes paired with the forward kernels in Ops.swift / Attention.swift. Base weights
// are frozen: these produce input gradients only (LoRA weight gradients live in LoRA.swift), except
// `linearBackwardWeight` for the few weights an adapter trains whole (a classification head).
// Every `dinp` is *accumulated into* unless the comment says otherwise, so residual branches can
// share one gradient buffer.

/// Linear backward for a frozen weight: dinp += dout · W.
/// dout is (N, OC), weight is (OC, C), dinp is (N, C).
public func linearBackwardInput(
    dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, weight: UnsafePointer<Float>, n: Int, c: Int, oc: Int,
    accumulate: Bool = true
) {
    sgemm(m: n, n: c, k: oc, a: dout, lda: oc, b: weight, ldb: c, beta: accumulate ? 1 : 0, c: dinp, ldc: c)
}

/// Linear backward for a weight trained whole (a new classification head's): dweight += doutᵀ · inp,
/// dbias += Σ rows of dout. dout is (N, OC), inp is (N, C), dweight (OC, C), dbias (OC).
public func linearBackwardWeight(
    dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
    inp: UnsafePointer<Float>, n: Int, c: Int, oc: Int
) {
    sgemm(transA: true, m: oc, n: c, k: n, a: dout, lda: oc, b: inp, ldb: c, beta: 1, c: dweight, ldc: c)
    guard let dbias else { return }
    for row in 0..<n { for o in 0..<oc { dbias[o] += dout[row * oc + o] } }
}

/// RMSNorm backward with a frozen weight: dinp += rstd · (w⊙dout − x̂ · mean(w⊙dout⊙x̂)), x̂ = x·rstd.
/// inp, dout, dinp are (N, C); weight is (C); rstd is (N) from the forward pass.
public func rmsnormBackward(
    dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, c: Int
) {
    ComputeTeam.current.parallelFor(n, grain: rowGrain(c)) { rows in
        if GEMMKernel.current.isOwn {  // the same arithmetic in C with FMA
            let r0 = rows.lowerBound
            return embedtune_rmsnorm_backward_rows(dinp + r0 * c, dout + r0 * c, inp + r0 * c, weight, rstd + r0, rows.count, c)
        }
        for row in rows {
            let x = inp + row * c, g = dout + row * c, dx = dinp + row * c, r = rstd[row]
            var acc = Float8()
            var i = 0
            while i < c { acc += load8(weight, i, c) * load8(g, i, c) * load8(x, i, c); i += 8 }
            let m = acc.sum() * r / Float(c)
            i = 0
            while i < c {
                let v = load8(dx, i, c) + r * (load8(weight, i, c) * load8(g, i, c) - load8(x, i, c) * r * m)
                store8(v, dx, i, c)
                i += 8
            }
        }
    }
}

/// LayerNorm backward with frozen weight and bias.
/// inp, dout, dinp are (N, C); weight is (C); mean, rstd are (N) from the forward pass.
public func layernormBackward(
    dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, c: Int,
    accumulate: Bool = true
) {
    ComputeTeam.current.parallelFor(n, grain: rowGrain(c)) { rows in
        if GEMMKernel.current.isOwn {  // the same arithmetic in C with FMA (Swift's SIMD8 has none here)
            let r0 = rows.lowerBound
            return embedtune_layernorm_backward_rows(dinp + r0 * c, dout + r0 * c, inp + r0 * c, weight, mean + r0, rstd + r0,
                                                     rows.count, c, accumulate)
        }
        for row in rows {
            let x = inp + row * c, g = dout + row * c, dx = dinp + row * c, mu = mean[row], r = rstd[row]
            var sumG = Float8(), sumGX = Float8()
            var i = 0
            while i < c {
                // Tail lanes load as 0 in g, so they add nothing to either sum.
                let gw = load8(g, i, c) * load8(weight, i, c)
                sumG += gw
                sumGX += gw * (load8(x, i, c) - mu) * r
                i += 8
            }
            let mG = sumG.sum() / Float(c), mGX = sumGX.sum() / Float(c)
            i = 0
            while i < c {
                let v = r * (load8(g, i, c) * load8(weight, i, c) - mG - (load8(x, i, c) - mu) * r * mGX)
                store8(accumulate ? load8(dx, i, c) + v : v, dx, i, c)
                i += 8
            }
        }
    }
}

/// RoPE backward in place: the transpose (inverse) of the rotation. dx is (N, H, D); positions (N).
public func ropeBackward(
    dx: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>, n: Int, heads: Int, table: RotaryTable
) {
    ropeRotate(x: dx, positions: positions, n: n, heads: heads, table: table, inverse: true)
}

/// Row-wise SwiGLU backward for a fused [gate | up] projection: gate, up, dgate and dup rows are
/// `ld` apart, dout is (N, I). Writes (not accumulates) dgate and dup.
public func swigluBackward(
    dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
    gate: UnsafePointer<Float>, up: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int
) {
    ComputeTeam.current.parallelFor(rows, grain: rowGrain(cols)) { range in
        for r in range {
            let g0 = gate + r * ld, u0 = up + r * ld, d0 = dout + r * cols, dg = dgate + r * ld, du = dup + r * ld
            if GEMMKernel.current.isOwn {
                embedtune_swiglu_backward(dg, du, d0, g0, u0, cols)
                continue
            }
            var i = 0
            while i < cols {
                let (dGate, dUp) = swigluGradient8(load8(g0, i, cols), load8(u0, i, cols), load8(d0, i, cols))
                store8(dUp, du, i, cols)
                store8(dGate, dg, i, cols)
                i += 8
            }
        }
    }
}

/// SwiGLU backward: out = silu(g)·u. Writes (not accumulates) dgate and dup. All (count).
public func swigluBackward(
    dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
    gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int
) {
    if GEMMKernel.current.isOwn {
        forEachRange(count) { r in
            let o = r.lowerBound
            embedtune_swiglu_backward(dgate + o, dup + o, dout + o, gate + o, up + o, r.count)
        }
        return
    }
    forEachVector(count) { i in
        let (dGate, dUp) = swigluGradient8(load8(gate, i, count), load8(up, i, count), load8(dout, i, count))
        store8(dUp, dup, i, count)
        store8(dGate, dgate, i, count)
    }
}

/// (dL/dgate, dL/dup) of silu(g)·u for eight values, given dL/dout d.
@inline(__always)
func swigluGradient8(_ g: Float8, _ u: Float8, _ d: Float8) -> (Float8, Float8) {
    let s = vsigmoid(g)
    return (d * u * s * (1 + g * (1 - s)), d * g * s)
}

/// Exact GELU backward: dinp = dout · gelu'(x). x is the pre-activation; all (count); dinp may
/// alias dout.
public func geluBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, preActivation x: UnsafePointer<Float>,
                         count: Int) {
    forEachVector(count) { i in
        let v = load8(x, i, count)
        store8(load8(dout, i, count) * geluSlope8(v, cdf: geluCDF8(v)), dinp, i, count)
    }
}

/// Activation backward from the slope a training forward kept: dinp = dout ⊙ slope. All (count);
/// dinp may alias dout.
public func multiplySlope(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, slope: UnsafePointer<Float>, count: Int) {
    forEachVector(count) { i in store8(load8(dout, i, count) * load8(slope, i, count), dinp, i, count) }
}

/// tanh-GELU backward: dinp = dout · gelu_tanh'(x). All (count); dinp may alias dout.
public func geluTanhBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, preActivation x: UnsafePointer<Float>,
                             count: Int) {
    forEachVector(count) { i in
        store8(load8(dout, i, count) * geluTanh8(load8(x, i, count)).slope, dinp, i, count)
    }
}

/// ReLU backward: dinp = dout where the pre-activation was > 0, else 0. All (count); may alias.
public func reluBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, preActivation x: UnsafePointer<Float>,
                         count: Int) {
    forEachVector(count) { i in
        store8(load8(dout, i, count).replacing(with: 0, where: load8(x, i, count) .<= 0), dinp, i, count)
    }
}

public func geluBackward(_ d: UnsafeMutablePointer<Float>, preActivation x: UnsafePointer<Float>, count: Int) {
    geluBackward(dinp: d, dout: d, preActivation: x, count: count)
}
public func geluTanhBackward(_ d: UnsafeMutablePointer<Float>, preActivation x: UnsafePointer<Float>, count: Int) {
    geluTanhBackward(dinp: d, dout: d, preActivation: x, count: count)
}

/// Attention backward over packed sequences, paired with `attentionForward(keepProbs: true)`.
/// dout, q, dq are (N, H, D); k, v, dk, dv are (N, KVH, D); probs as saved; scratch holds
/// `attentionScratchCount(maxLength:)`; `dropout` as in the forward pass. Writes (not accumulates)
/// dq, dk, dv.
/// Units are (sequence, KV head): the query heads sharing a KV head accumulate into its dK and dV
/// serially, so parallel units never write the same values. `causal` (the forward's mask) only
/// lets the fused kernel skip the zeros above the diagonal.
public func attentionBackward(
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
    dout: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
    probs: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>,
    batch: PackedBatch, heads: Int, kvHeads: Int, headDim d: Int, scale: Float, causal: Bool = false,
    dropout: AttentionDropout? = nil
) {
    let group = heads / kvHeads, qStride = heads * d, kvStride = kvHeads * d
    let probBase = batch.probabilityOffsets(heads: heads)
    let maxT = batch.maxLength
    ComputeTeam.current.parallelItems(batch.count * kvHeads) { unit, worker in
        let s = unit / kvHeads, kvh = unit % kvHeads
        let start = batch.offsets[s], t = batch.length(s)
        let dS = scratch + 2 * worker * maxT * maxT, dropped = dS + maxT * maxT
        let kh = k + start * kvStride + kvh * d, dkh = dk + start * kvStride + kvh * d
        let vh = v + start * kvStride + kvh * d, dvh = dv + start * kvStride + kvh * d
        for i in 0..<t {
            (dkh + i * kvStride).initialize(repeating: 0, count: d)
            (dvh + i * kvStride).initialize(repeating: 0, count: d)
        }
        for h in (kvh * group)..<((kvh + 1) * group) {
            let p = probs + probBase[s] + h * t * t
            let qh = q + start * qStride + h * d, dqh = dq + start * qStride + h * d
            let doh = dout + start * qStride + h * d
            if GEMMKernel.current.isOwn,
               withKernelMask(dropout, rows: t, firstToken: start, head: h, { mask in
                   (GEMMKernel.current == .avx512
                       && embedtune_attention_backward_avx512(t, d, scale, causal, qh, qStride, kh, kvStride, vh, kvStride, doh,
                                                              qStride, p, dqh, qStride, dkh, dvh, kvStride, mask))
                       || embedtune_attention_backward_avx2(t, d, scale, causal, qh, qStride, kh, kvStride, vh, kvStride, doh,
                                                            qStride, p, dqh, qStride, dkh, dvh, kvStride, mask)
               }) {
                continue  // fused, strip by strip (attention_kernels.inc): the same arithmetic
            }
            var weights = p
            if let dropout {
                dropout.apply(out: dropped, inp: p, rows: t, firstToken: start, head: h)
                weights = UnsafePointer(dropped)
            }
            // dV (T, D) += P'ᵀ (T, T) · dO (T, D)   (P' = dropout(P), or P)
            blockSGEMM(.current, true, false, t, d, t, 1, weights, t, doh, qStride, 1, dvh, kvStride)
            // dP' (T, T) = dO (T, D) · Vᵀ, and through the same mask: dP = dropout'(dP')
            blockSGEMM(.current, false, true, t, t, d, 1, doh, qStride, vh, kvStride, 0, dS, t)
            dropout?.apply(out: dS, inp: dS, rows: t, firstToken: start, head: h)
            softmaxBackwardRows(dS, probs: p, rows: t, length: t, scale: scale)
            // dQ (T, D) = dS · K ; dK (T, D) += dSᵀ · Q
            blockSGEMM(.current, false, false, t, d, t, 1, dS, t, kh, kvStride, 0, dqh, qStride)
            blockSGEMM(.current, true, false, t, d, t, 1, dS, t, qh, qStride, 1, dkh, kvStride)
        }
    }
}

/// L2-normalisation backward: y = x/‖x‖ ⇒ dx = (dy − y·(y·dy)) / ‖x‖.
/// x, dy, dx are (N, C); writes dx.
public func l2NormalizeBackward(
    dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, n: Int, c: Int
) {
    ComputeTeam.current.parallelFor(n, grain: rowGrain(c)) { rows in
        for row in rows {
            let xr = x + row * c, g = dy + row * c, o = dx + row * c
            let norm = max(dot8(xr, xr, c).squareRoot(), 1e-12), inv = 1 / norm
            let dot = dot8(xr, g, c) * inv
            var i = 0
            while i < c { store8((load8(g, i, c) - load8(xr, i, c) * inv * dot) * inv, o, i, c); i += 8 }
        }
    }
}

/// Softmax backward in place, row by row: dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale, which takes the
/// gradient into the logits' space (scale is the logits' factor). dS holds dP on entry; both (rows, length).
@inline(__always)
public func softmaxBackwardRows(_ dS: UnsafeMutablePointer<Float>, probs p: UnsafePointer<Float>, rows: Int, length t: Int, scale: Float) {
    if GEMMKernel.current.isOwn { return embedtune_softmax_backward_rows(dS, p, rows, t, scale) }
    for i in 0..<rows {
        let pr = p + i * t, dr = dS + i * t
        let dot = dot8(pr, dr, t)
        var j = 0
        while j < t { store8(load8(pr, j, t) * (load8(dr, j, t) - dot) * scale, dr, j, t); j += 8 }
    }
}

/// Backward of `lastTokenAttentionForward`. dq and dout are (S, H, D); dk and dv are (N, KVH, D)
/// and are written (not accumulated) for every token; probs as kept by the forward pass;
/// scratch of `lastTokenAttentionScratchCount`.
public func lastTokenAttentionBackward(
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
    dout: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
    probs: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>,
    batch: PackedBatch, heads: Int, kvHeads: Int, headDim d: Int, scale: Float
) {
    let group = heads / kvHeads, qStride = heads * d, kvStride = kvHeads * d, maxT = batch.maxLength
    ComputeTeam.current.parallelItems(batch.count * kvHeads) { unit, worker in
        let s = unit / kvHeads, kvh = unit % kvHeads
        let start = batch.offsets[s], t = batch.length(s)
        let p = probs + heads * start + kvh * group * t, dS = scratch + worker * group * maxT
        let qg = q + s * qStride + kvh * group * d, dqg = dq + s * qStride + kvh * group * d
        let dog = dout + s * qStride + kvh * group * d
        let kh = k + start * kvStride + kvh * d, vh = v + start * kvStride + kvh * d
        // dV (T, D) = Pᵀ (T, G) · dO (G, D);  dP (G, T) = dO · Vᵀ
        blockSGEMM(.current, true, false, t, d, group, 1, p, t, dog, d, 0, dv + start * kvStride + kvh * d, kvStride)
        blockSGEMM(.current, false, true, group, t, d, 1, dog, d, vh, kvStride, 0, dS, t)
        softmaxBackwardRows(dS, probs: p, rows: group, length: t, scale: scale)
        // dQ (G, D) = dS · K;  dK (T, D) = dSᵀ · Q
        blockSGEMM(.current, false, false, group, d, t, 1, dS, t, kh, kvStride, 0, dqg, d)
        blockSGEMM(.current, true, false, t, d, group, 1, dS, t, qg, d, 0, dk + start * kvStride + kvh * d, kvStride)
    }
}
