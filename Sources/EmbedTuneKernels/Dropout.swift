import CEmbedTuneAVX2

// Counter-based dropout: a mask element depends only on (a 64-bit row base, its index), so a
// forward pass, its backward and a GradCache recomputation all draw the same mask without storing
// it, on any rank and in any batch.

/// murmur3's 32-bit finaliser, eight lanes at a time.
@inlinable @inline(__always)
public func fmix32(_ x: SIMD8<UInt32>) -> SIMD8<UInt32> {
    var h = x ^ (x &>> 16)
    h &*= 0x85EB_CA6B
    h ^= h &>> 13
    h &*= 0xC2B2_AE35
    return h ^ (h &>> 16)
}

/// The row base of a dropout site: one 64-bit mix per (token seed, site).
@inline(__always)
public func dropoutBase(tokenSeed: UInt64, site: UInt64) -> UInt64 { mix64(tokenSeed ^ (site &* 0xD6E8_FEB8_6659_FD93)) }

/// Dropout with keep probability 1 − p and inverted scaling over one row of `count` values:
/// out[j] = 0 when a 32-bit hash of (base, j) falls below p·2³², else inp[j]/(1 − p).
/// out may alias inp.
/// (On AVX2 CPUs the C kernel runs instead: SSE2's lanes have no 32-bit multiply, and this loop
/// costs 12% of a MiniLM training step with dropout.)
@inline(__always)
public func dropoutRow(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int, p: Float, base: UInt64) {
    if GEMMKernel.current.isOwn { return embedtune_dropout_row(out, inp, count, dropoutLimit(p), 1 / (1 - p), base) }
    portableDropoutRow(out: out, inp: inp, count: count, p: p, base: base)
}

/// The 32-bit hash value below which an element is dropped: p·2³².
@inline(__always)
func dropoutLimit(_ p: Float) -> UInt32 { UInt32(min(Double(p) * 4_294_967_296.0, 4_294_967_295.0)) }

/// `dropoutRow` in Swift SIMD, for CPUs without AVX2 (public so tests compare the two).
public func portableDropoutRow(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int, p: Float, base: UInt64) {
    let threshold = SIMD8<UInt32>(repeating: dropoutLimit(p)), scale = 1 / (1 - p)
    let lo = SIMD8<UInt32>(repeating: UInt32(truncatingIfNeeded: base))
    let hi = SIMD8<UInt32>(repeating: UInt32(truncatingIfNeeded: base >> 32))
    var j = 0
    while j < count {
        let index = SIMD8<UInt32>(0, 1, 2, 3, 4, 5, 6, 7) &+ UInt32(truncatingIfNeeded: j)
        let h = fmix32(fmix32(lo &+ index &* 0x9E37_79B1) ^ hi)
        store8((load8(inp, j, count) * scale).replacing(with: 0, where: h .< threshold), out, j, count)
        j += 8
    }
}

/// dropoutRow over every row of (N, C) activations; row t's base comes from tokenSeeds[t] and `site`.
public func dropoutRows(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, n: Int, c: Int, p: Float,
                        tokenSeeds: UnsafePointer<UInt64>, site: UInt64) {
    ComputeTeam.current.parallelFor(n, grain: 16) { tokens in
        for t in tokens {
            dropoutRow(out: out + t * c, inp: inp + t * c, count: c, p: p, base: dropoutBase(tokenSeed: tokenSeeds[t], site: site))
        }
    }
}

/// dx += dropout(du · A): a LoRA input gradient through its dropout mask (the masks of `dropoutRows`
/// with the same seeds and site). du is (N, r), A (r, C), dx (N, C). On AVX2 CPUs each row's du·A
/// is summed, masked and added in registers; otherwise du·A goes through `scratch` (N, C), masked
/// and added in three passes — the fused row saves those passes' memory traffic.
public func addLowRankThroughDropout(dx: UnsafeMutablePointer<Float>, du: UnsafePointer<Float>, rank: Int,
                                     a: UnsafePointer<Float>, n: Int, c: Int, p: Float,
                                     tokenSeeds: UnsafePointer<UInt64>, site: UInt64,
                                     scratch: UnsafeMutablePointer<Float>) {
    guard GEMMKernel.current.isOwn else {
        sgemm(m: n, n: c, k: rank, a: du, lda: rank, b: a, ldb: c, c: scratch, ldc: c)
        dropoutRows(out: scratch, inp: scratch, n: n, c: c, p: p, tokenSeeds: tokenSeeds, site: site)
        addInPlace(dx, scratch, count: n * c)
        return
    }
    let limit = dropoutLimit(p), scale = 1 / (1 - p)
    ComputeTeam.current.parallelFor(n, grain: 16) { tokens in
        for t in tokens {
            embedtune_lowrank_dropout_add_row(dx + t * c, du + t * rank, rank, a, c, limit, scale,
                                              dropoutBase(tokenSeed: tokenSeeds[t], site: site))
        }
    }
}

/// Dropout on attention probabilities: row i of head h in a sequence is masked with the base of
/// the row's query token and site + h.
public struct AttentionDropout {
    public let p: Float
    public let tokenSeeds: UnsafePointer<UInt64>
    public let site: UInt64
    public init(p: Float, tokenSeeds: UnsafePointer<UInt64>, site: UInt64) {
        self.p = p
        self.tokenSeeds = tokenSeeds
        self.site = site
    }

    /// The base of row i (query token firstToken + i) of head h.
    @inline(__always)
    func base(token: Int, head: Int) -> UInt64 { dropoutBase(tokenSeed: tokenSeeds[token], site: site &+ UInt64(head)) }

    @inline(__always)
    func apply(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows t: Int, firstToken: Int, head: Int) {
        for i in 0..<t {
            dropoutRow(out: out + i * t, inp: inp + i * t, count: t, p: p, base: base(token: firstToken + i, head: head))
        }
    }
}

/// Runs body with the fused attention kernels' description of `dropout` for t rows of one head
/// (the row bases on the stack), or with nil when there is no dropout.
@inline(__always)
func withKernelMask<R>(_ dropout: AttentionDropout?, rows t: Int, firstToken: Int, head: Int,
                       _ body: (UnsafePointer<embedtune_attention_dropout>?) -> R) -> R {
    guard let dropout else { return body(nil) }
    return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: t) { bases in
        for i in 0..<t { bases[i] = dropout.base(token: firstToken + i, head: head) }
        var mask = embedtune_attention_dropout(base: bases.baseAddress!, threshold: dropoutLimit(dropout.p),
                                               scale: 1 / (1 - dropout.p))
        return body(&mask)
    }
}
