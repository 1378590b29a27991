/// Sequences packed back to back with no padding: sequence s owns tokens
/// offsets[s] ..< offsets[s + 1] of every (N, …) activation.
public struct PackedBatch: Sendable {
    public let offsets: [Int]
    public var count: Int { offsets.count - 1 }
    public var tokens: Int { offsets.last ?? 0 }
    public var maxLength: Int { (0..<count).map { length($0) }.max() ?? 0 }
    public func length(_ s: Int) -> Int { offsets[s + 1] - offsets[s] }

    public init(lengths: [Int]) {
        var o = [0]
        for l in lengths { o.append(o.last! + l) }
        offsets = o
    }
}

/// Multi-head attention over packed sequences with grouped-query heads.
/// q is (N, H, D), k and v are (N, KVH, D), out is (N, H, D);
/// probs (saved for backward) is Σ_s H·T_s² floats, or scratch of H·maxT² when not kept.
/// Causal masks position j > i; bidirectional attends to the whole sequence (no padding
/// exists in a packed batch, so no padding mask is needed).
public func attentionForward(
    out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>, keepProbs: Bool,
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
    batch: PackedBatch, heads: Int, kvHeads: Int, headDim d: Int, causal: Bool, scale: Float
) {
    let group = heads / kvHeads
    let qStride = heads * d, kvStride = kvHeads * d
    var probOffset = 0
    for s in 0..<batch.count {
        let start = batch.offsets[s], t = batch.length(s)
        for h in 0..<heads {
            let p = probs + probOffset
            let qh = q + start * qStride + h * d
            let kh = k + start * kvStride + (h / group) * d
            let vh = v + start * kvStride + (h / group) * d
            // scores (T, T) = scale · Q (T, D) · Kᵀ (D, T)
            sgemm(transB: true, m: t, n: t, k: d, alpha: scale, a: qh, lda: qStride, b: kh, ldb: kvStride,
                  c: p, ldc: t)
            for i in 0..<t { softmaxPrefix(p + i * t, valid: causal ? i + 1 : t, len: t) }
            // out (T, D) = P (T, T) · V (T, D)
            sgemm(m: t, n: d, k: t, a: p, lda: t, b: vh, ldb: kvStride, c: out + start * qStride + h * d,
                  ldc: qStride)
            if keepProbs { probOffset += t * t }
        }
    }
}
