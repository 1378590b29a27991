import CEmbedTuneAVX2

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

/// Floats of attention scratch a pass needs: two maxT² score blocks per compute thread.
public func attentionScratchCount(maxLength: Int) -> Int { 2 * ComputeTeam.current.size * maxLength * maxLength }

/// Floats of scratch `lastTokenAttentionForward` (not keeping probabilities) and its backward need:
/// one row of scores per query head per compute thread.
public func lastTokenAttentionScratchCount(maxLength: Int, heads: Int) -> Int { ComputeTeam.current.size * heads * maxLength }

extension PackedBatch {
    /// Where sequence s's H score blocks (T_s² each) start in the probabilities kept for backward.
    func probabilityOffsets(heads: Int) -> [Int] {
        var offsets = [Int](), total = 0
        for s in 0..<count { offsets.append(total); total += heads * length(s) * length(s) }
        return offsets
    }
}

/// Multi-head attention over packed sequences with grouped-query heads.
/// q is (N, H, D), k and v are (N, KVH, D), out is (N, H, D);
/// probs (saved for backward) is Σ_s H·T_s² floats, or, when not kept, scratch of
/// `attentionScratchCount(maxLength:)`. Causal masks position j > i; bidirectional attends to the
/// whole sequence (no padding exists in a packed batch, so no padding mask is needed).
/// With `dropout`, out = dropout(P)·V; the kept probs stay P (softmax backward needs it) and
/// backward draws the same mask again. (sequence, head) units run in parallel on the compute team:
/// on the own kernels each through the fused C kernel (`embedtune_attention_forward_*`: the same
/// arithmetic, except that without kept probabilities the output rows are normalised instead of
/// P), else through single-threaded GEMMs around the row softmax, where the dropped copy of P goes
/// to `scratch` (`attentionScratchCount`).
public func attentionForward(
    out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>, keepProbs: Bool,
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
    batch: PackedBatch, heads: Int, kvHeads: Int, headDim d: Int, causal: Bool, scale: Float,
    scratch: UnsafeMutablePointer<Float>? = nil, dropout: AttentionDropout? = nil
) {
    precondition(dropout == nil || !keepProbs || scratch != nil, "attention dropout with kept probabilities needs scratch")
    let group = heads / kvHeads
    let qStride = heads * d, kvStride = kvHeads * d
    let probBase = keepProbs ? batch.probabilityOffsets(heads: heads) : []
    let maxT = batch.maxLength
    ComputeTeam.current.parallelItems(batch.count * heads) { unit, worker in
        let s = unit / heads, h = unit % heads
        let start = batch.offsets[s], t = batch.length(s)
        let p = keepProbs ? probs + probBase[s] + h * t * t : probs + 2 * worker * maxT * maxT
        let qh = q + start * qStride + h * d
        let kh = k + start * kvStride + (h / group) * d
        let vh = v + start * kvStride + (h / group) * d
        if GEMMKernel.current.isOwn {
            let fused = withKernelMask(dropout, rows: t, firstToken: start, head: h) { mask in
                // The AVX-512 tiles for head dims that are multiples of 32, the AVX2 ones for 16.
                (GEMMKernel.current == .avx512
                    && embedtune_attention_forward_avx512(t, d, scale, causal, qh, qStride, kh, kvStride, vh, kvStride,
                                                          keepProbs ? p : nil, out + start * qStride + h * d, qStride, mask))
                    || embedtune_attention_forward_avx2(t, d, scale, causal, qh, qStride, kh, kvStride, vh, kvStride,
                                                        keepProbs ? p : nil, out + start * qStride + h * d, qStride, mask)
            }
            if fused { return }  // strip by strip (attention_kernels.inc)
        }
        // scores (T, T) = scale · Q (T, D) · Kᵀ (D, T)
        blockSGEMM(.current, false, true, t, t, d, scale, qh, qStride, kh, kvStride, 0, p, t)
        softmaxRows(p, rows: t, len: t, causal: causal)
        var weights = UnsafePointer(p)
        if let dropout {
            let dropped = keepProbs ? scratch! + 2 * worker * maxT * maxT : p
            dropout.apply(out: dropped, inp: p, rows: t, firstToken: start, head: h)
            weights = UnsafePointer(dropped)
        }
        // out (T, D) = P (T, T) · V (T, D)
        blockSGEMM(.current, false, false, t, d, t, 1, weights, t, vh, kvStride, 0, out + start * qStride + h * d, qStride)
    }
}

/// Attention for one query per sequence, its last token: a decoder's final block when only the
/// last token is pooled. q and out are (S, H, D), one row per sequence; k and v are (N, KVH, D)
/// for every token. The last token sees its whole sequence, so no mask applies.
/// probs: kept for backward, Σ_s H·T_s floats (sequence s's H rows of T_s at H·offsets[s]), or,
/// when not kept, scratch of `lastTokenAttentionScratchCount`.
/// Units are (sequence, KV head): the query heads sharing a KV head go through one GEMM.
public func lastTokenAttentionForward(
    out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>, keepProbs: Bool,
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
    batch: PackedBatch, heads: Int, kvHeads: Int, headDim d: Int, scale: Float
) {
    let group = heads / kvHeads, qStride = heads * d, kvStride = kvHeads * d, maxT = batch.maxLength
    ComputeTeam.current.parallelItems(batch.count * kvHeads) { unit, worker in
        let s = unit / kvHeads, kvh = unit % kvHeads
        let start = batch.offsets[s], t = batch.length(s)
        let p = keepProbs ? probs + heads * start + kvh * group * t : probs + worker * group * maxT
        let qg = q + s * qStride + kvh * group * d
        let kh = k + start * kvStride + kvh * d, vh = v + start * kvStride + kvh * d
        // scores (G, T) = scale · Q (G, D) · Kᵀ (D, T)
        blockSGEMM(.current, false, true, group, t, d, scale, qg, d, kh, kvStride, 0, p, t)
        softmaxRows(p, rows: group, len: t, causal: false)
        // out (G, D) = P (G, T) · V (T, D)
        blockSGEMM(.current, false, false, group, d, t, 1, p, t, vh, kvStride, 0, out + s * qStride + kvh * group * d, d)
    }
}
