import Foundation

// Backward passes paired with the forward kernels in Ops.swift / Attention.swift. Base weights
// are frozen: these produce input gradients only (LoRA weight gradients live in LoRA.swift).
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

/// RMSNorm backward with a frozen weight: dinp += rstd · (w⊙dout − x̂ · mean(w⊙dout⊙x̂)), x̂ = x·rstd.
/// inp, dout, dinp are (N, C); weight is (C); rstd is (N) from the forward pass.
public func rmsnormBackward(
    dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, c: Int
) {
    for row in 0..<n {
        let x = inp + row * c, g = dout + row * c, dx = dinp + row * c, r = rstd[row]
        var dot: Float = 0
        for i in 0..<c { dot += weight[i] * g[i] * x[i] * r }
        let m = dot / Float(c)
        for i in 0..<c { dx[i] += r * (weight[i] * g[i] - x[i] * r * m) }
    }
}

/// LayerNorm backward with frozen weight and bias.
/// inp, dout, dinp are (N, C); weight is (C); mean, rstd are (N) from the forward pass.
public func layernormBackward(
    dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, c: Int
) {
    for row in 0..<n {
        let x = inp + row * c, g = dout + row * c, dx = dinp + row * c, mu = mean[row], r = rstd[row]
        var sumG: Float = 0, sumGX: Float = 0
        for i in 0..<c {
            let gw = g[i] * weight[i]
            sumG += gw
            sumGX += gw * (x[i] - mu) * r
        }
        let mG = sumG / Float(c), mGX = sumGX / Float(c)
        for i in 0..<c { dx[i] += r * (g[i] * weight[i] - mG - (x[i] - mu) * r * mGX) }
    }
}

/// RoPE backward in place: the transpose (inverse) of the rotation. dx is (N, H, D); positions (N).
public func ropeBackward(
    dx: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>, n: Int, heads: Int, table: RotaryTable
) {
    ropeRotate(x: dx, positions: positions, n: n, heads: heads, table: table, inverse: true)
}

/// SwiGLU backward: out = silu(g)·u. Writes (not accumulates) dgate and dup. All (count).
public func swigluBackward(
    dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
    gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int
) {
    for i in 0..<count {
        let g = gate[i], s = 1 / (1 + expf(-g)), silu = g * s
        dup[i] = dout[i] * silu
        dgate[i] = dout[i] * up[i] * s * (1 + g * (1 - s))
    }
}

/// Exact GELU backward in place: d ← d · gelu'(x). x is the pre-activation (count).
public func geluBackward(_ d: UnsafeMutablePointer<Float>, preActivation x: UnsafePointer<Float>, count: Int) {
    let invSqrt2: Float = 0.70710678118654752, invSqrt2Pi: Float = 0.3989422804014327
    for i in 0..<count {
        let v = x[i]
        d[i] *= 0.5 * (1 + erff(v * invSqrt2)) + v * expf(-0.5 * v * v) * invSqrt2Pi
    }
}

/// tanh-GELU backward in place. x is the pre-activation (count).
public func geluTanhBackward(_ d: UnsafeMutablePointer<Float>, preActivation x: UnsafePointer<Float>, count: Int) {
    let k: Float = 0.7978845608028654
    for i in 0..<count {
        let v = x[i], inner = k * (v + 0.044715 * v * v * v), t = tanhf(inner)
        d[i] *= 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v)
    }
}

/// Attention backward over packed sequences, paired with `attentionForward(keepProbs: true)`.
/// dout, q, dq are (N, H, D); k, v, dk, dv are (N, KVH, D); probs as saved; scratch holds maxT².
/// Writes (not accumulates) dq, dk, dv.
public func attentionBackward(
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
    dout: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
    probs: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>,
    batch: PackedBatch, heads: Int, kvHeads: Int, headDim d: Int, scale: Float
) {
    let group = heads / kvHeads, qStride = heads * d, kvStride = kvHeads * d
    dk.initialize(repeating: 0, count: batch.tokens * kvStride)
    dv.initialize(repeating: 0, count: batch.tokens * kvStride)
    var probOffset = 0
    for s in 0..<batch.count {
        let start = batch.offsets[s], t = batch.length(s)
        for h in 0..<heads {
            let p = probs + probOffset
            let qh = q + start * qStride + h * d, dqh = dq + start * qStride + h * d
            let kh = k + start * kvStride + (h / group) * d, dkh = dk + start * kvStride + (h / group) * d
            let vh = v + start * kvStride + (h / group) * d, dvh = dv + start * kvStride + (h / group) * d
            let doh = dout + start * qStride + h * d
            // dV (T, D) += Pᵀ (T, T) · dO (T, D)
            sgemm(transA: true, m: t, n: d, k: t, a: p, lda: t, b: doh, ldb: qStride, beta: 1, c: dvh, ldc: kvStride)
            // dP (T, T) = dO (T, D) · Vᵀ
            sgemm(transB: true, m: t, n: t, k: d, a: doh, lda: qStride, b: vh, ldb: kvStride, c: scratch, ldc: t)
            // dS = P ⊙ (dP − rowsum(dP ⊙ P)), scaled into the logits' space.
            for i in 0..<t {
                let pr = p + i * t, dr = scratch + i * t
                var dot: Float = 0
                for j in 0..<t { dot += pr[j] * dr[j] }
                for j in 0..<t { dr[j] = pr[j] * (dr[j] - dot) * scale }
            }
            // dQ (T, D) = dS · K ; dK (T, D) += dSᵀ · Q
            sgemm(m: t, n: d, k: t, a: scratch, lda: t, b: kh, ldb: kvStride, c: dqh, ldc: qStride)
            sgemm(transA: true, m: t, n: d, k: t, a: scratch, lda: t, b: qh, ldb: qStride, beta: 1, c: dkh, ldc: kvStride)
            probOffset += t * t
        }
    }
}

/// L2-normalisation backward: y = x/‖x‖ ⇒ dx = (dy − y·(y·dy)) / ‖x‖.
/// x, dy, dx are (N, C); writes dx.
public func l2NormalizeBackward(
    dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, n: Int, c: Int
) {
    for row in 0..<n {
        let xr = x + row * c, g = dy + row * c, o = dx + row * c
        var ss: Float = 0
        for i in 0..<c { ss += xr[i] * xr[i] }
        let norm = max(ss.squareRoot(), 1e-12), inv = 1 / norm
        var dot: Float = 0
        for i in 0..<c { dot += xr[i] * inv * g[i] }
        for i in 0..<c { o[i] = (g[i] - xr[i] * inv * dot) * inv }
    }
}
