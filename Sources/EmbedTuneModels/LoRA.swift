import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// LoRA hyper-parameters, named as PEFT's LoraConfig.
public struct LoRAConfig: Codable, Equatable, Sendable {
    public var r: Int
    public var loraAlpha: Double
    public var loraDropout: Double
    public var targetModules: [String]
    public var useRslora: Bool

    public init(r: Int = 8, alpha: Double = 32, dropout: Double = 0, targetModules: [String], useRSLoRA: Bool = false) {
        self.r = r
        loraAlpha = alpha
        loraDropout = dropout
        self.targetModules = targetModules
        useRslora = useRSLoRA
    }

    enum CodingKeys: String, CodingKey {
        case r, loraAlpha = "lora_alpha", loraDropout = "lora_dropout", targetModules = "target_modules", useRslora = "use_rslora"
    }

    /// PEFT's scaling: alpha / r, or alpha / √r with rsLoRA.
    public var scale: Float { Float(useRslora ? loraAlpha / Double(r).squareRoot() : loraAlpha / Double(r)) }
}

/// One adapted linear layer: ΔW = scale · B · A with A (r, in) and B (out, r).
public struct LoRASlot: Sendable {
    public let module: String        // checkpoint path of the linear, e.g. "layers.0.self_attn.q_proj"
    public let inFeatures: Int
    public let outFeatures: Int
    public let rank: Int
    public let aOffset: Int          // into the adapter's flat parameter buffer
    public let bOffset: Int
    /// A stable number for the dropout stream of this layer.
    public let site: UInt64
}

/// A tensor an adapter trains and stores whole, as PEFT's modules_to_save does (a classification
/// head): named by its path without the task model's prefix ("classifier.weight").
public struct WholeTensor: Sendable {
    public let name: String
    public let shape: [Int]
    public let offset: Int           // into the adapter's flat parameter buffer, after the LoRA pairs
    public var count: Int { shape.reduce(1, *) }
}

/// All LoRA weights of a model in one flat buffer, gradients in a mirror buffer: one all-reduce,
/// one optimiser sweep, one checkpoint write. Tensors trained whole (`wholeTensors`) follow the
/// LoRA pairs in the same buffers.
public final class LoRAAdapter {
    public let config: LoRAConfig
    public let slots: [LoRASlot]
    public let wholeTensors: [WholeTensor]
    /// PEFT's layout of an adapter for a task model (nil: for a base model, as AutoModel loads it).
    public let task: PEFTTask?
    public let params: FloatBuffer
    public let grads: FloatBuffer
    private let byModule: [String: Int]
    /// The PEFT directory the adapter was read from, and the base model its config names.
    public internal(set) var source: URL?
    public internal(set) var baseModel: String?

    public var scale: Float { config.scale }
    public var parameterCount: Int { params.count }

    /// Declares a slot for every linear whose module name matches a target (PEFT's rule: the
    /// target equals the full module path or is a dot-separated suffix of it) and lies outside the
    /// task's modules stored whole (which PEFT leaves without LoRA), then `whole` tensors.
    public init(config: LoRAConfig, linears: [(module: String, inFeatures: Int, outFeatures: Int)],
                whole: [(name: String, shape: [Int])] = [], task: PEFTTask? = nil) throws {
        self.config = config
        self.task = task
        var slots = [LoRASlot](), offset = 0
        for (i, l) in linears.enumerated() where LoRAAdapter.matches(l.module, targets: config.targetModules)
            && !(task?.storesWhole(l.module) ?? false) {
            let a = offset, b = offset + config.r * l.inFeatures
            offset = b + l.outFeatures * config.r
            slots.append(LoRASlot(module: l.module, inFeatures: l.inFeatures, outFeatures: l.outFeatures, rank: config.r,
                                  aOffset: a, bOffset: b, site: UInt64(i + 1)))
        }
        guard !slots.isEmpty else {
            let examples = Set(linears.map { $0.module.split(separator: ".").last.map(String.init) ?? $0.module }).sorted()
            throw FormatError("target_modules \(config.targetModules) match no linear layer of this model (it has: \(examples.joined(separator: ", ")))")
        }
        self.slots = slots
        var tensors = [WholeTensor]()
        for w in whole {
            tensors.append(WholeTensor(name: w.name, shape: w.shape, offset: offset))
            offset += w.shape.reduce(1, *)
        }
        wholeTensors = tensors
        params = FloatBuffer(count: offset)
        grads = FloatBuffer(count: offset)
        byModule = Dictionary(uniqueKeysWithValues: slots.enumerated().map { ($1.module, $0) })
    }

    public static func matches(_ module: String, targets: [String]) -> Bool {
        targets.contains { module == $0 || module.hasSuffix("." + $0) }
    }

    public func slot(_ module: String) -> LoRASlot? { byModule[module].map { slots[$0] } }

    public func a(_ s: LoRASlot) -> UnsafeMutablePointer<Float> { params.pointer + s.aOffset }
    public func b(_ s: LoRASlot) -> UnsafeMutablePointer<Float> { params.pointer + s.bOffset }
    public func gradA(_ s: LoRASlot) -> UnsafeMutablePointer<Float> { grads.pointer + s.aOffset }
    public func gradB(_ s: LoRASlot) -> UnsafeMutablePointer<Float> { grads.pointer + s.bOffset }

    /// The whole tensor named `name` ("classifier.weight"), if the adapter trains it.
    public func whole(_ name: String) -> WholeTensor? { wholeTensors.first { $0.name == name } }
    public func value(_ t: WholeTensor) -> UnsafeMutablePointer<Float> { params.pointer + t.offset }
    public func gradient(_ t: WholeTensor) -> UnsafeMutablePointer<Float> { grads.pointer + t.offset }

    /// PEFT's default initialisation: A ~ Kaiming-uniform(a = √5) = U(−1/√in, 1/√in), B = 0.
    /// Whole tensors keep their values (the caller copies the module's weights in).
    public func initialize<G: RandomNumberGenerator>(using rng: inout G) {
        for s in slots {
            let bound = 1 / Float(s.inFeatures).squareRoot()
            let a = self.a(s)
            for i in 0..<(s.rank * s.inFeatures) { a[i] = Float.random(in: -bound..<bound, using: &rng) }
            b(s).initialize(repeating: 0, count: s.outFeatures * s.rank)
        }
    }

    public func zeroGrads() { grads.pointer.initialize(repeating: 0, count: grads.count) }
}

// MARK: LoRA-augmented linear

/// How a forward pass applies an adapter: which one, whether dropout is live, and the per-text
/// seeds its dropout masks derive from.
public struct LoRAContext {
    public let adapter: LoRAAdapter
    public let training: Bool
    /// One seed per sequence of the batch (dropout masks are a function of it and the position).
    public let sequenceSeeds: [UInt64]
    /// Also apply the backbone's own dropout (BERT's hidden and attention-probability dropout), as
    /// PyTorch does in train mode; masks come from the same per-token seeds.
    public var backboneDropout: Bool
    var tokenSeeds: UnsafePointer<UInt64>?

    public init(adapter: LoRAAdapter, training: Bool, sequenceSeeds: [UInt64] = [], backboneDropout: Bool = false) {
        self.adapter = adapter
        self.training = training
        self.sequenceSeeds = sequenceSeeds
        self.backboneDropout = backboneDropout
    }

    var dropout: Float { training && tokenSeeds != nil ? Float(adapter.config.loraDropout) : 0 }
}

/// u = dropout(x) · Aᵀ (N, r), the adapter's bottleneck. x is (N, in); `dropped` (N, in) scratch
/// used when dropout is on.
func loraDown(x: UnsafePointer<Float>, n: Int, slot s: LoRASlot, context: LoRAContext, u: UnsafeMutablePointer<Float>,
              dropped: UnsafeMutablePointer<Float>) {
    var input = x
    if context.dropout > 0, let seeds = context.tokenSeeds {
        dropoutRows(out: dropped, inp: x, n: n, c: s.inFeatures, p: context.dropout, tokenSeeds: seeds, site: s.site)
        input = UnsafePointer(dropped)
    }
    sgemm(transB: true, m: n, n: s.rank, k: s.inFeatures, a: input, lda: s.inFeatures, b: context.adapter.a(s),
          ldb: s.inFeatures, c: u, ldc: s.rank)
}

/// out = scale · (dropout(x) · Aᵀ) · Bᵀ (+ bias), written over `out`: the adapter's term, onto which
/// the frozen product then accumulates (β = 1), so OpenBLAS makes no zeroing pass over `out` and
/// the adapter no read-modify-write pass. (With the own kernels this product writes `out` from the
/// bias in one pass; on the OpenBLAS-only choice it is OpenBLAS's zeroing or a bias copy instead,
/// the same passes as the other order.) Keeps u = dropout(x)·Aᵀ (N, r) for backward. x is (N, in),
/// out is (N, out) with rows `ldOut` apart; `dropped` is (N, in) scratch used when dropout is on.
func loraForward(out: UnsafeMutablePointer<Float>, ldOut: Int, bias: UnsafePointer<Float>?, x: UnsafePointer<Float>, n: Int,
                 slot s: LoRASlot, context: LoRAContext, u: UnsafeMutablePointer<Float>, dropped: UnsafeMutablePointer<Float>) {
    let adapter = context.adapter
    loraDown(x: x, n: n, slot: s, context: context, u: u, dropped: dropped)
    linearForward(out: out, inp: u, weight: adapter.b(s), bias: bias, n: n, c: s.rank, oc: s.outFeatures, ldOut: ldOut,
                  alpha: adapter.scale)
}

/// out += s · (dropout(x) · Aᵀ) · Bᵀ, keeping u: the adapter's term added onto a frozen product
/// already in `out` (INT8 inference, whose product cannot accumulate).
func addLowRankTerm(out: UnsafeMutablePointer<Float>, ldOut: Int, x: UnsafePointer<Float>, n: Int, slot s: LoRASlot,
                    context: LoRAContext, u: UnsafeMutablePointer<Float>, dropped: UnsafeMutablePointer<Float>) {
    loraDown(x: x, n: n, slot: s, context: context, u: u, dropped: dropped)
    sgemm(transB: true, m: n, n: s.outFeatures, k: s.rank, alpha: context.adapter.scale, a: u, lda: s.rank, b: context.adapter.b(s),
          ldb: s.rank, beta: 1, c: out, ldc: ldOut)
}

/// LoRA backward: dB += s·doutᵀ·u, du = s·dout·B, dA += duᵀ·dropout(x), dx += dropout'(du·A)
/// (dx = du·A with `accumulateDx` false, without dropout). dout is (N, out) with rows `ldDout`
/// apart (default out), x and dx are (N, in), u and du (N, r); `dropped` (N, in) scratch. With dx
/// nil (nothing below needs it) the input gradient is skipped.
public func loraBackward(dx: UnsafeMutablePointer<Float>?, accumulateDx: Bool = true, dout: UnsafePointer<Float>,
                         ldDout: Int? = nil, x: UnsafePointer<Float>,
                         u: UnsafePointer<Float>, n: Int, slot s: LoRASlot, context: LoRAContext,
                         du: UnsafeMutablePointer<Float>, dropped: UnsafeMutablePointer<Float>) {
    let adapter = context.adapter, scale = adapter.scale, ld = ldDout ?? s.outFeatures
    sgemm(transA: true, m: s.outFeatures, n: s.rank, k: n, alpha: scale, a: dout, lda: ld, b: u, ldb: s.rank,
          beta: 1, c: adapter.gradB(s), ldc: s.rank)
    sgemm(m: n, n: s.rank, k: s.outFeatures, alpha: scale, a: dout, lda: ld, b: adapter.b(s), ldb: s.rank,
          c: du, ldc: s.rank)
    let dropping = context.dropout > 0 && context.tokenSeeds != nil
    var input = x
    if dropping {
        dropoutRows(out: dropped, inp: x, n: n, c: s.inFeatures, p: context.dropout, tokenSeeds: context.tokenSeeds!,
                       site: s.site)
        input = UnsafePointer(dropped)
    }
    sgemm(transA: true, m: s.rank, n: s.inFeatures, k: n, a: du, lda: s.rank, b: input, ldb: s.inFeatures, beta: 1,
          c: adapter.gradA(s), ldc: s.inFeatures)
    guard let dx else { return }
    precondition(accumulateDx || !dropping, "the adapter's input term through dropout is added, not written")
    if dropping {
        // d(dropped) = du·A, through the same mask: dx += mask ⊙ du·A / keep.
        addLowRankThroughDropout(dx: dx, du: du, rank: s.rank, a: adapter.a(s), n: n, c: s.inFeatures, p: context.dropout,
                                 tokenSeeds: context.tokenSeeds!, site: s.site, scratch: dropped)
    } else {
        sgemm(m: n, n: s.inFeatures, k: s.rank, a: du, lda: s.rank, b: adapter.a(s), ldb: s.inFeatures,
              beta: accumulateDx ? 1 : 0, c: dx, ldc: s.inFeatures)
    }
}

extension LoRAContext {
    /// One dropout seed per token of the packed batch, from its sequence's seed and position.
    func tokenSeeds(for sequences: [[Int32]]) -> [UInt64] {
        guard !sequenceSeeds.isEmpty else { return [] }
        var seeds = [UInt64]()
        for (si, s) in sequences.enumerated() {
            for p in s.indices { seeds.append(mix64(sequenceSeeds[si] ^ UInt64(p) &* 0x2545_F491_4F6C_DD1D)) }
        }
        return seeds
    }
}

/// A frozen linear layer plus, when `slot` is adapted, its LoRA path: out = inp·Wᵀ (+ b) + s·(drop(inp)·Aᵀ)·Bᵀ.
/// inp is (N, in), out is (N, out) with rows `ldOut` apart (default out); u (N, r) keeps the
/// bottleneck for backward.
public func adaptedLinearForward(
    out: UnsafeMutablePointer<Float>, ldOut: Int? = nil, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, n: Int, inFeatures: Int, outFeatures: Int, slot: LoRASlot?, context: LoRAContext?,
    u: UnsafeMutablePointer<Float>, dropped: UnsafeMutablePointer<Float>
) {
    let ld = ldOut ?? outFeatures
    guard let slot, let context else {
        linearForward(out: out, inp: inp, weight: weight, bias: bias, n: n, c: inFeatures, oc: outFeatures, ldOut: ld)
        return
    }
    if Int8Weights.shared.packed(weight) != nil {
        // INT8 inference: the frozen product (and bias) in INT8 first, then s·u·Bᵀ added in float32.
        linearForward(out: out, inp: inp, weight: weight, bias: bias, n: n, c: inFeatures, oc: outFeatures, ldOut: ld)
        addLowRankTerm(out: out, ldOut: ld, x: inp, n: n, slot: slot, context: context, u: u, dropped: dropped)
        return
    }
    if GEMMKernel.fusesLowRank(depth: inFeatures) {
        // u first, then the frozen product and s·u·Bᵀ in one GEMM: `out` is written once.
        loraDown(x: inp, n: n, slot: slot, context: context, u: u, dropped: dropped)
        linearForwardPlusLowRank(out: out, ldOut: ld, inp: inp, weight: weight, bias: bias, n: n, c: inFeatures,
                                 oc: outFeatures, u: u, up: context.adapter.b(slot), rank: slot.rank,
                                 scale: context.adapter.scale)
        return
    }
    // The adapter's term (and bias) first, then the frozen product accumulated onto it.
    loraForward(out: out, ldOut: ld, bias: bias, x: inp, n: n, slot: slot, context: context, u: u, dropped: dropped)
    sgemm(transB: true, m: n, n: outFeatures, k: inFeatures, a: inp, lda: inFeatures, b: weight, ldb: inFeatures, beta: 1,
          c: out, ldc: ld)
}

/// Backward of `adaptedLinearForward`: dinp (+)= dout·W plus the LoRA path, whose weight
/// gradients accumulate into the adapter. With dinp nil (the first block, whose input comes from
/// frozen embeddings) only the adapter's gradients are computed. With `slope` (N, in: the kept
/// derivative of the activation whose output this linear read; not with `accumulate`) dinp is the
/// gradient through that activation, dinp = (dout·W + LoRA's term) ⊙ slope.
public func adaptedLinearBackward(
    dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    n: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool, slot: LoRASlot?, context: LoRAContext,
    u: UnsafePointer<Float>, du: UnsafeMutablePointer<Float>, dropped: UnsafeMutablePointer<Float>,
    slope: UnsafePointer<Float>? = nil
) {
    precondition(slope == nil || !accumulate, "a slope multiplies the whole input gradient: no accumulation")
    if let dinp, let slot, GEMMKernel.fusesLowRank(depth: outFeatures), context.dropout == 0 {
        // The adapter's gradients and du first, then dout·W + du·A in one GEMM, through the slope
        // in its store. (With dropout du·A goes through the mask, so it stays a separate product.)
        loraBackward(dx: nil, dout: dout, x: inp, u: u, n: n, slot: slot, context: context, du: du, dropped: dropped)
        linearBackwardInputPlusLowRank(dinp: dinp, dout: dout, weight: weight, n: n, c: inFeatures, oc: outFeatures,
                                       accumulate: accumulate, du: du, down: context.adapter.a(slot), rank: slot.rank,
                                       slope: slope)
        return
    }
    if let dinp, let slot, context.dropout == 0 {
        // The adapter's gradients and its term du·A first, written over dinp (or added), then the
        // frozen product accumulated onto it: no zeroing pass inside OpenBLAS, no second pass for
        // the adapter. (Through dropout du·A is added by its own kernel, so the order stays.)
        loraBackward(dx: dinp, accumulateDx: accumulate, dout: dout, x: inp, u: u, n: n, slot: slot, context: context, du: du,
                     dropped: dropped)
        linearBackwardInput(dinp: dinp, dout: dout, weight: weight, n: n, c: inFeatures, oc: outFeatures, accumulate: true)
    } else {
        if let dinp { linearBackwardInput(dinp: dinp, dout: dout, weight: weight, n: n, c: inFeatures, oc: outFeatures, accumulate: accumulate) }
        if let slot { loraBackward(dx: dinp, dout: dout, x: inp, u: u, n: n, slot: slot, context: context, du: du, dropped: dropped) }
    }
    if let dinp, let slope { multiplySlope(dinp: dinp, dout: dinp, slope: slope, count: n * inFeatures) }
}

/// Linears that read the same input and write side by side into one (N, ΣOC) buffer, as q/k/v or
/// gate/up. When each weight (and bias) follows the previous one in memory, as the parameter arena
/// lays out adjacently declared tensors, the base product is one GEMM: the input is packed once,
/// and backward's input gradient is one GEMM over K = ΣOC instead of one per linear plus
/// accumulation passes.
public struct LinearGroup {
    public let weights: [UnsafePointer<Float>]   // each (OC_i, in)
    public let biases: [UnsafePointer<Float>?]   // each (OC_i) or nil
    public let outFeatures: [Int]
    public let inFeatures: Int
    public let offsets: [Int]                    // column where linear i's output starts
    public let total: Int                        // ΣOC, the row stride of the output
    public let contiguous: Bool

    public init(weights: [UnsafePointer<Float>], biases: [UnsafePointer<Float>?], outFeatures: [Int], inFeatures: Int) {
        self.weights = weights
        self.biases = biases
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        let offsets = outFeatures.indices.map { outFeatures[..<$0].reduce(0, +) }
        self.offsets = offsets
        total = outFeatures.reduce(0, +)
        let weightsAdjacent = weights.indices.dropFirst().allSatisfy { weights[$0] == weights[0] + offsets[$0] * inFeatures }
        let biasesAdjacent = biases.allSatisfy { $0 == nil }
            || (biases[0] != nil && biases.indices.dropFirst().allSatisfy { biases[$0] == biases[0]! + offsets[$0] })
        contiguous = weightsAdjacent && biasesAdjacent
    }
}

/// Forward of a `LinearGroup` with each member's LoRA path: out (N, ΣOC); u[i] keeps member i's bottleneck.
public func adaptedGroupForward(
    out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, group g: LinearGroup, n: Int, slots: [LoRASlot?],
    context: LoRAContext?, u: [UnsafeMutablePointer<Float>], dropped: UnsafeMutablePointer<Float>
) {
    let adapted = context != nil && slots.contains { $0 != nil }
    if g.contiguous, !adapted {
        linearForward(out: out, inp: inp, weight: g.weights[0], bias: g.biases[0], n: n, c: g.inFeatures, oc: g.total)
        return
    }
    if g.contiguous, let context, Int8Weights.shared.packed(g.weights[0]) != nil {
        // INT8 inference: the frozen product over ΣOC in INT8, then each adapted member's term added.
        linearForward(out: out, inp: inp, weight: g.weights[0], bias: g.biases[0], n: n, c: g.inFeatures, oc: g.total)
        for (i, slot) in slots.enumerated() {
            if let slot { addLowRankTerm(out: out + g.offsets[i], ldOut: g.total, x: inp, n: n, slot: slot, context: context, u: u[i], dropped: dropped) }
        }
        return
    }
    if g.contiguous, let context {
        // Every member's start first — its adapter's term and bias, or the bias (or zeros) alone —,
        // then one frozen product over ΣOC accumulated onto them.
        for (i, slot) in slots.enumerated() {
            if let slot {
                loraForward(out: out + g.offsets[i], ldOut: g.total, bias: g.biases[i], x: inp, n: n, slot: slot, context: context,
                            u: u[i], dropped: dropped)
            } else {
                fillColumns(out + g.offsets[i], ldOut: g.total, n: n, count: g.outFeatures[i], with: g.biases[i])
            }
        }
        sgemm(transB: true, m: n, n: g.total, k: g.inFeatures, a: inp, lda: g.inFeatures, b: g.weights[0], ldb: g.inFeatures,
              beta: 1, c: out, ldc: g.total)
        return
    }
    for i in g.weights.indices {
        adaptedLinearForward(out: out + g.offsets[i], ldOut: g.total, inp: inp, weight: g.weights[i], bias: g.biases[i], n: n,
                             inFeatures: g.inFeatures, outFeatures: g.outFeatures[i], slot: slots[i], context: context,
                             u: u[i], dropped: dropped)
    }
}

/// The first `count` columns of n rows `ldOut` apart set to `bias`, or to zero.
private func fillColumns(_ out: UnsafeMutablePointer<Float>, ldOut: Int, n: Int, count: Int, with bias: UnsafePointer<Float>?) {
    ComputeTeam.current.parallelFor(n, grain: 64) { rows in
        for row in rows {
            if let bias { (out + row * ldOut).update(from: bias, count: count) } else { (out + row * ldOut).update(repeating: 0, count: count) }
        }
    }
}

/// Backward of `adaptedGroupForward`: dinp (+)= dout (N, ΣOC) · [W₁; W₂; …] plus every LoRA path.
/// With dinp nil only the adapter's gradients are computed. Without dropout the adapters' input
/// terms are written first and the frozen product accumulates onto them, as in
/// `adaptedLinearBackward`.
public func adaptedGroupBackward(
    dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, group g: LinearGroup, n: Int,
    accumulate: Bool, slots: [LoRASlot?], context: LoRAContext, u: [UnsafePointer<Float>], du: UnsafeMutablePointer<Float>,
    dropped: UnsafeMutablePointer<Float>
) {
    let adaptersFirst = dinp != nil && context.dropout == 0
    var written = accumulate  // whether dinp already holds a term to add to
    func adapterBackward(_ i: Int, _ slot: LoRASlot) {
        loraBackward(dx: dinp, accumulateDx: written, dout: dout + g.offsets[i], ldDout: g.total, x: inp, u: u[i], n: n,
                     slot: slot, context: context, du: du, dropped: dropped)
        if dinp != nil { written = true }
    }
    if adaptersFirst { for (i, slot) in slots.enumerated() { if let slot { adapterBackward(i, slot) } } }
    if let dinp {
        if g.contiguous {
            linearBackwardInput(dinp: dinp, dout: dout, weight: g.weights[0], n: n, c: g.inFeatures, oc: g.total, accumulate: written)
        } else {
            for i in g.weights.indices {
                sgemm(m: n, n: g.inFeatures, k: g.outFeatures[i], a: dout + g.offsets[i], lda: g.total, b: g.weights[i],
                      ldb: g.inFeatures, beta: written || i > 0 ? 1 : 0, c: dinp, ldc: g.inFeatures)
            }
        }
        written = true
    }
    if !adaptersFirst { for (i, slot) in slots.enumerated() { if let slot { adapterBackward(i, slot) } } }
}
