import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// config.json of Qwen3 / Qwen2 (Qwen3-Embedding, gte-Qwen2), with Hugging Face's keys.
public struct QwenConfig: Codable, Sendable {
    public struct RopeParameters: Codable, Sendable {
        public var ropeTheta: Double?
        public var ropeType: String?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta", ropeType = "rope_type" }
    }

    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var ropeTheta: Double?
    /// transformers ≥ 5 writes rope_theta inside rope_parameters.
    public var ropeParameters: RopeParameters?
    public var ropeScaling: JSONValue?
    public var rmsNormEps: Double
    public var maxPositionEmbeddings: Int
    public var attentionBias: Bool?
    public var tieWordEmbeddings: Bool?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim", ropeTheta = "rope_theta", ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling", rmsNormEps = "rms_norm_eps"
        case maxPositionEmbeddings = "max_position_embeddings", attentionBias = "attention_bias"
        case tieWordEmbeddings = "tie_word_embeddings"
    }

    public var kvHeads: Int { numKeyValueHeads ?? numAttentionHeads }
    public var headSize: Int { headDim ?? hiddenSize / numAttentionHeads }
    public var theta: Double { ropeParameters?.ropeTheta ?? ropeTheta ?? 10000 }
    /// Qwen3 normalises q and k per head; Qwen2 does not and always has q/k/v biases.
    public var hasQKNorm: Bool { modelType == "qwen3" }
    public var hasQKVBias: Bool { modelType == "qwen2" ? true : (attentionBias ?? false) }
}

/// Qwen3 / Qwen2 decoder (RMSNorm, RoPE, grouped-query causal attention, SwiGLU MLP) used as an
/// embedding backbone: the caller pools the last token.
public final class QwenModel: Backbone, TrainableBackbone {
    public let config: QwenConfig
    public let arena = ParameterArena()
    var embedTokens: Tensor { arena.table("embed_tokens.weight") }  // (V, C)
    let layers: [Layer]
    /// Per layer, gate_proj and up_proj, declared adjacently: one GEMM into a (N, 2I) [gate | up] buffer.
    let gateUps: [LinearGroup]
    let finalNorm: Tensor    // (C)
    let rope: RotaryTable

    /// One decoder block's weights; names are the checkpoint's keys under `layers.{i}.`.
    struct Layer {
        var inputLayernorm: Tensor          // (C)
        var qProj, kProj, vProj: Tensor     // (H·D, C), (KV·D, C), (KV·D, C)
        var qBias, kBias, vBias: Tensor?    // Qwen2 only
        var qNorm, kNorm: Tensor?           // (D), Qwen3 only
        var oProj: Tensor                   // (C, H·D)
        var postAttentionLayernorm: Tensor  // (C)
        var gateProj, upProj: Tensor        // (I, C)
        var downProj: Tensor                // (C, I)
    }

    deinit { Int8Weights.shared.forget(frozenLinears.map(\.weight)) }

    public var frozenLinears: [(weight: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int)] {
        zip(layers, gateUps).flatMap { l, g in
            // The gate and up projections as one product when they lie side by side (LinearGroup).
            let mlp: [(UnsafePointer<Float>, Int, Int)] = g.contiguous ? [(g.weights[0], g.total, g.inFeatures)]
                : [l.gateProj, l.upProj].map { (UnsafePointer($0.pointer), $0.shape[0], $0.shape[1]) }
            return [l.qProj, l.kProj, l.vProj, l.oProj, l.downProj].map { (UnsafePointer($0.pointer), $0.shape[0], $0.shape[1]) } + mlp
        }
    }

    public var architecture: String { config.modelType }
    public var hiddenSize: Int { config.hiddenSize }
    public var vocabularySize: Int { config.vocabSize }
    public var maxPositions: Int { config.maxPositionEmbeddings }
    public var parameterCount: Int { arena.parameterCount }
    public var shapeSummary: String {
        "\(config.numHiddenLayers) layers, hidden \(config.hiddenSize), heads \(config.numAttentionHeads)/\(config.kvHeads) (q/kv), head_dim \(config.headSize), intermediate \(config.intermediateSize), vocab \(config.vocabSize), rope_theta \(config.theta)"
    }

    public convenience init(directory: ModelDirectory) throws {
        let config = try directory.decodeConfig(QwenConfig.self)
        let store = try directory.tensorSource()
        try self.init(config: config, configFile: directory.url.appendingPathComponent("config.json").path)
        // Qwen3-Embedding ships bare keys; *ForCausalLM checkpoints prefix them with "model.".
        let prefix = store.contains("embed_tokens.weight") ? "" : "model."
        try arena.load(from: store) { prefix + $0 }
    }

    /// Declares every parameter in one arena (zeros until loaded).
    public init(config: QwenConfig, configFile: String = "config.json") throws {
        if let t = config.ropeParameters?.ropeType, t != "default" {
            throw FormatError(file: configFile, item: "rope_parameters.rope_type", "unsupported RoPE type \"\(t)\"")
        }
        if let scaling = config.ropeScaling, !scaling.isNull, scaling["rope_type"]?.string != "default" {
            throw FormatError(file: configFile, item: "rope_scaling", "RoPE scaling is not supported")
        }
        guard config.numAttentionHeads % config.kvHeads == 0 else {
            throw FormatError(file: configFile, item: "num_key_value_heads",
                              "\(config.kvHeads) does not divide num_attention_heads \(config.numAttentionHeads)")
        }
        guard config.headSize % 2 == 0 else { throw FormatError(file: configFile, item: "head_dim", "must be even for RoPE") }
        self.config = config
        let c = config.hiddenSize, d = config.headSize, h = config.numAttentionHeads, kv = config.kvHeads
        let inter = config.intermediateSize
        let a = arena
        a.declareTable("embed_tokens.weight", [config.vocabSize, c])
        var offsets: [[String: (Int, [Int])]] = []
        for i in 0..<config.numHiddenLayers {
            let p = "layers.\(i)."
            var o = [String: (Int, [Int])]()
            func slot(_ key: String, _ shape: [Int]) { o[key] = (a.declare(p + key, shape), shape) }
            slot("input_layernorm.weight", [c])
            slot("self_attn.q_proj.weight", [h * d, c])
            slot("self_attn.k_proj.weight", [kv * d, c])
            slot("self_attn.v_proj.weight", [kv * d, c])
            if config.hasQKVBias {
                slot("self_attn.q_proj.bias", [h * d])
                slot("self_attn.k_proj.bias", [kv * d])
                slot("self_attn.v_proj.bias", [kv * d])
            }
            if config.hasQKNorm {
                slot("self_attn.q_norm.weight", [d])
                slot("self_attn.k_norm.weight", [d])
            }
            slot("self_attn.o_proj.weight", [c, h * d])
            slot("post_attention_layernorm.weight", [c])
            slot("mlp.gate_proj.weight", [inter, c])
            slot("mlp.up_proj.weight", [inter, c])
            slot("mlp.down_proj.weight", [c, inter])
            offsets.append(o)
        }
        let normOffset = a.declare("norm.weight", [c])
        a.allocate()
        finalNorm = a.view(normOffset, [c])
        layers = offsets.map { o in
            func t(_ k: String) -> Tensor { a.view(o[k]!.0, o[k]!.1) }
            func opt(_ k: String) -> Tensor? { o[k].map { a.view($0.0, $0.1) } }
            return Layer(inputLayernorm: t("input_layernorm.weight"), qProj: t("self_attn.q_proj.weight"),
                         kProj: t("self_attn.k_proj.weight"), vProj: t("self_attn.v_proj.weight"),
                         qBias: opt("self_attn.q_proj.bias"), kBias: opt("self_attn.k_proj.bias"),
                         vBias: opt("self_attn.v_proj.bias"), qNorm: opt("self_attn.q_norm.weight"),
                         kNorm: opt("self_attn.k_norm.weight"), oProj: t("self_attn.o_proj.weight"),
                         postAttentionLayernorm: t("post_attention_layernorm.weight"),
                         gateProj: t("mlp.gate_proj.weight"), upProj: t("mlp.up_proj.weight"),
                         downProj: t("mlp.down_proj.weight"))
        }
        gateUps = layers.map {
            LinearGroup(weights: [$0.gateProj.pointer, $0.upProj.pointer], biases: [nil, nil], outFeatures: [inter, inter], inFeatures: c)
        }
        rope = RotaryTable(headDim: d, theta: config.theta, maxPositions: config.maxPositionEmbeddings)
    }

    // MARK: forward / backward

    /// Where one decoder block reads and writes. Inference shares one set for every layer and
    /// works in place (aliases); training gives each layer its own, kept for the backward pass.
    /// A block has r rows: every token (N), or, for a final block under last-token pooling, each
    /// sequence's last token (S); k and v and what they come from always have N.
    struct LayerActivations {
        var xIn: UnsafeMutablePointer<Float>                // (N, C) residual stream in
        var xMid, xOut: UnsafeMutablePointer<Float>         // (r, C) after attention / after the MLP
        var rstd1: UnsafeMutablePointer<Float>              // (N)
        var rstd2: UnsafeMutablePointer<Float>              // (r)
        var xn1: UnsafeMutablePointer<Float>                // (N, C) normed input of attention
        var xnLast: UnsafeMutablePointer<Float>             // (S, C) its last-token rows (q_proj's input), final block only
        var xn2: UnsafeMutablePointer<Float>                // (r, C) normed input of the MLP
        var qPre, kPre: UnsafeMutablePointer<Float>         // (r, H·D), (N, KV·D) projections before q/k norm
        var qRstd, kRstd: UnsafeMutablePointer<Float>       // (r·H), (N·KV)
        var q, k, v: UnsafeMutablePointer<Float>            // after norm and RoPE: (r, H·D), (N, KV·D), (N, KV·D)
        var probs: UnsafeMutablePointer<Float>              // H·ΣT² (H·N for last-token rows) kept, or scratch
        var att: UnsafeMutablePointer<Float>                // (r, H·D) input of o_proj
        var gate, up: UnsafeMutablePointer<Float>           // (r, I) halves of one (r, 2I) buffer: rows 2I apart
        var act: UnsafeMutablePointer<Float>                // (r, I) silu(gate)·up; shared by every layer when recomputed
        var loraU: [UnsafeMutablePointer<Float>]            // per module of `moduleNames`, (rows, r)
    }

    /// The seven linear layers of a block, in a fixed order; k and v (1, 2) see every token.
    static let moduleNames = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    static func seesEveryToken(_ module: Int) -> Bool { module == 1 || module == 2 }

    public var defaultTargetModules: [String] { ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] }

    /// (module path, in, out) of every linear layer, for LoRA targeting.
    public var linearLayers: [(module: String, inFeatures: Int, outFeatures: Int)] {
        let c = config.hiddenSize, hd = config.numAttentionHeads * config.headSize
        let kvd = config.kvHeads * config.headSize, inter = config.intermediateSize
        let shapes = [(c, hd), (c, kvd), (c, kvd), (hd, c), (c, inter), (c, inter), (inter, c)]
        return (0..<config.numHiddenLayers).flatMap { i in
            zip(Self.moduleNames, shapes).map { ("layers.\(i).\($0)", $1.0, $1.1) }
        }
    }

    /// Training keeps every layer's SwiGLU product silu(gate)·up (down_proj's input, read again by
    /// its LoRA backward) when all of them fit in this many bytes; above it one buffer serves every
    /// layer and backward recomputes the product. The tiny Qwen3 at batch 16 keeps ~100 MB and
    /// saves a SwiGLU pass per layer; the Qwen3-0.6B shape (420 MB) recomputes, for peak RSS.
    public var swigluProductBudget = 256 << 20

    private let arenaActivations = ActivationArena()
    private var saved: (batch: PackedBatch, layers: [LayerActivations], xFinal: UnsafeMutablePointer<Float>,
                        rstdFinal: UnsafeMutablePointer<Float>, hidden: UnsafeMutablePointer<Float>,
                        scratch: UnsafeMutablePointer<Float>, dropped: UnsafeMutablePointer<Float>,
                        grads: UnsafeMutablePointer<Float>, tokenSeeds: [UInt64], lora: LoRAContext?, lastTokenOnly: Bool,
                        keepsProduct: Bool)?
    private var positions = [Int32]()
    /// Per sequence: the packed row, the position and the dropout seed of its last token.
    private var lastRows = [Int](), lastPositions = [Int32](), lastSeeds = [UInt64]()

    public func forward(_ sequences: [[Int32]], pooling: PoolingConfig.Mode) throws -> Tensor {
        try forward(sequences, lora: nil, keepActivations: false, pooling: pooling)
    }

    /// The forward pass; with `keepActivations` every layer's activations are kept for `backward`.
    /// With a LoRA context the adapter is applied to its target modules. Under last-token pooling
    /// only each sequence's last row of the final hidden states is read, and in a causal model that
    /// row needs every token's k and v of the final block but its own q, attention output and MLP
    /// only: the final block runs those for S rows instead of N, and the other rows of the
    /// returned hidden states are unspecified.
    public func forward(_ sequences: [[Int32]], lora: LoRAContext?, keepActivations: Bool, pooling: PoolingConfig.Mode) throws -> Tensor {
        try checkInputs(sequences)
        let cfg = config
        let batch = PackedBatch(lengths: sequences.map(\.count))
        let n = batch.tokens, m = batch.count, c = cfg.hiddenSize, d = cfg.headSize, h = cfg.numAttentionHeads, kv = cfg.kvHeads
        let inter = cfg.intermediateSize, eps = Float(cfg.rmsNormEps), train = keepActivations
        let layerCount = cfg.numHiddenLayers, pruned = pooling == .lastToken
        let rank = lora?.adapter.config.r ?? 0
        let probsPerLayer = train ? h * (0..<batch.count).reduce(0) { $0 + batch.length($1) * batch.length($1) }
                                  : attentionScratchCount(maxLength: batch.maxLength)
        let maxIn = max(c, h * d, inter)
        let keepsProduct = train && layerCount * n * inter * MemoryLayout<Float>.size <= swigluProductBudget
        let recomputesProduct = train && !keepsProduct

        // Lay out every buffer of this pass in one reusable arena.
        let plan = arenaActivations.layout { a -> ([LayerActivations], UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                                                   UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                                                   UnsafeMutablePointer<Float>) in
            // A recomputed SwiGLU product needs one buffer for every layer.
            let actShared = recomputesProduct ? a.take(n * inter) : a.take(0)
            /// A block of N rows, or of S for a final `tail` block; with `shared` (inference) its
            /// N-row buffers are the shared ones.
            func block(_ xIn: UnsafeMutablePointer<Float>, tail: Bool, shared: LayerActivations?) -> LayerActivations {
                let everyToken = !tail, r = tail ? m : n
                let norms = cfg.hasQKNorm, inPlace = !train && everyToken
                let kPre = shared?.kPre ?? a.take(n * kv * d)
                let qPre = a.take(r * h * d), gate = a.take(r * 2 * inter)
                return LayerActivations(
                    xIn: xIn, xMid: inPlace ? xIn : a.take(r * c), xOut: inPlace ? xIn : a.take(r * c),
                    rstd1: shared?.rstd1 ?? a.take(n), rstd2: a.take(r), xn1: shared?.xn1 ?? a.take(n * c),
                    xnLast: everyToken ? a.take(0) : a.take(r * c), xn2: inPlace ? a.take(0) : a.take(r * c),
                    qPre: qPre, kPre: kPre, qRstd: a.take(r * h), kRstd: shared?.kRstd ?? a.take(n * kv),
                    q: norms && train ? a.take(r * h * d) : qPre, k: shared?.k ?? (norms && train ? a.take(n * kv * d) : kPre),
                    v: shared?.v ?? a.take(n * kv * d),
                    probs: everyToken ? shared?.probs ?? a.take(probsPerLayer)
                        : a.take(train ? h * n : lastTokenAttentionScratchCount(maxLength: batch.maxLength, heads: h)),
                    att: a.take(r * h * d),
                    gate: gate, up: gate + inter, act: recomputesProduct ? actShared : a.take(r * inter),
                    loraU: Self.moduleNames.indices.map { a.take((Self.seesEveryToken($0) ? n : r) * rank) })
            }
            let x0 = a.take(n * c)
            var layers = [LayerActivations]()
            if train {
                var x = x0
                for li in 0..<layerCount {
                    let l = block(x, tail: pruned && li == layerCount - 1, shared: nil)
                    layers.append(l)
                    x = l.xOut
                }
            } else {
                var l = block(x0, tail: false, shared: nil)
                l.xn2 = l.xn1
                layers = Array(repeating: l, count: layerCount)
                if pruned { layers[layerCount - 1] = block(x0, tail: true, shared: l) }
            }
            let xFinal = layers.last!.xOut
            // proj doubles as the attention-backward scratch.
            let attentionScratch = !train ? 0 : pruned ? max(attentionScratchCount(maxLength: batch.maxLength),
                                                             lastTokenAttentionScratchCount(maxLength: batch.maxLength, heads: h))
                                                       : attentionScratchCount(maxLength: batch.maxLength)
            let proj = a.take(max(n * max(c, h * d), attentionScratch)), hidden = a.take(n * c), rstdFinal = a.take(n)
            let dropped = a.take(lora != nil && lora!.training && lora!.adapter.config.loraDropout > 0 ? n * maxIn : 0)
            let grads = a.take(train ? n * (2 * c + 2 * h * d + 3 * kv * d + 3 * inter + rank) + (pruned ? 3 * m * c : 0) : 0)
            return (layers, xFinal, proj, hidden, rstdFinal, dropped, grads)
        }
        let (acts, xFinal, proj, hidden, rstdFinal, dropped, gradScratch) = plan

        // Embedding lookup; positions restart at 0 for every sequence (no padding exists).
        positions.removeAll(keepingCapacity: true)
        let tokenSeeds = lora?.tokenSeeds(for: sequences) ?? []
        let x0 = acts[0].xIn, table = embedTokens.pointer
        var row = 0
        for s in sequences {
            for (p, id) in s.enumerated() {
                (x0 + row * c).update(from: table + Int(id) * c, count: c)
                positions.append(Int32(p))
                row += 1
            }
        }
        prepareLastRows(batch, tokenSeeds: tokenSeeds)
        let seedsAll = tokenSeeds, seedsLast = lastSeeds
        seedsAll.withUnsafeBufferPointer { allSeeds in
          seedsLast.withUnsafeBufferPointer { lastSeeds in
            for (li, layer) in layers.enumerated() {
                let t = acts[li], slots = Self.moduleNames.map { lora?.adapter.slot("layers.\(li).\($0)") }
                let tail = pruned && li == layerCount - 1, r = tail ? m : n
                func context(_ mi: Int) -> LoRAContext? {
                    var context = lora
                    if context != nil, !allSeeds.isEmpty {
                        context!.tokenSeeds = !tail || Self.seesEveryToken(mi) ? allSeeds.baseAddress : lastSeeds.baseAddress
                    }
                    return context
                }
                func linear(_ mi: Int, out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: Tensor, bias: Tensor?,
                            inF: Int, outF: Int) {
                    adaptedLinearForward(out: out, inp: inp, weight: weight.pointer, bias: bias?.pointer,
                                         n: !tail || Self.seesEveryToken(mi) ? n : m, inFeatures: inF, outFeatures: outF,
                                         slot: slots[mi], context: context(mi), u: t.loraU[mi], dropped: dropped)
                }
                // Attention block: xMid = xIn + o_proj(attn(rope(norm(q)), rope(norm(k)), v)).
                rmsnormForward(out: t.xn1, rstd: t.rstd1, inp: t.xIn, weight: layer.inputLayernorm.pointer, n: n, c: c, eps: eps)
                if tail { for (i, row) in lastRows.enumerated() { (t.xnLast + i * c).update(from: t.xn1 + row * c, count: c) } }
                linear(0, out: t.qPre, inp: tail ? t.xnLast : t.xn1, weight: layer.qProj, bias: layer.qBias, inF: c, outF: h * d)
                linear(1, out: t.kPre, inp: t.xn1, weight: layer.kProj, bias: layer.kBias, inF: c, outF: kv * d)
                linear(2, out: t.v, inp: t.xn1, weight: layer.vProj, bias: layer.vBias, inF: c, outF: kv * d)
                if let qNorm = layer.qNorm, let kNorm = layer.kNorm {
                    // Per-head RMSNorm over D: (r·H, D) and (N·KV, D) rows.
                    rmsnormForward(out: t.q, rstd: t.qRstd, inp: t.qPre, weight: qNorm.pointer, n: r * h, c: d, eps: eps)
                    rmsnormForward(out: t.k, rstd: t.kRstd, inp: t.kPre, weight: kNorm.pointer, n: n * kv, c: d, eps: eps)
                }
                (tail ? lastPositions : positions).withUnsafeBufferPointer { pos in
                    ropeForward(x: t.q, positions: pos.baseAddress!, n: r, heads: h, table: rope)
                }
                positions.withUnsafeBufferPointer { pos in
                    ropeForward(x: t.k, positions: pos.baseAddress!, n: n, heads: kv, table: rope)
                }
                let scale = 1 / Float(d).squareRoot()
                if tail {
                    lastTokenAttentionForward(out: t.att, probs: t.probs, keepProbs: train, q: t.q, k: t.k, v: t.v, batch: batch,
                                              heads: h, kvHeads: kv, headDim: d, scale: scale)
                } else {
                    attentionForward(out: t.att, probs: t.probs, keepProbs: train, q: t.q, k: t.k, v: t.v, batch: batch,
                                     heads: h, kvHeads: kv, headDim: d, causal: true, scale: scale)
                }
                linear(3, out: proj, inp: t.att, weight: layer.oProj, bias: nil, inF: h * d, outF: c)
                if tail {
                    for (i, row) in lastRows.enumerated() { add(out: t.xMid + i * c, t.xIn + row * c, proj + i * c, count: c) }
                } else {
                    add(out: t.xMid, t.xIn, proj, count: n * c)
                }

                // MLP block: xOut = xMid + down(silu(gate(norm(xMid))) · up(norm(xMid))).
                rmsnormForward(out: t.xn2, rstd: t.rstd2, inp: t.xMid, weight: layer.postAttentionLayernorm.pointer, n: r, c: c, eps: eps)
                adaptedGroupForward(out: t.gate, inp: t.xn2, group: gateUps[li], n: r, slots: [slots[4], slots[5]],
                                    context: context(4), u: [t.loraU[4], t.loraU[5]], dropped: dropped)
                swigluForward(out: t.act, gate: t.gate, up: t.up, rows: r, cols: inter, ld: 2 * inter)
                linear(6, out: proj, inp: t.act, weight: layer.downProj, bias: nil, inF: inter, outF: c)
                add(out: t.xOut, t.xMid, proj, count: r * c)
            }
          }
        }
        if pruned {
            // (S, C) through the final norm, then to each sequence's last row.
            rmsnormForward(out: proj, rstd: rstdFinal, inp: xFinal, weight: finalNorm.pointer, n: m, c: c, eps: eps)
            for (i, row) in lastRows.enumerated() { (hidden + row * c).update(from: proj + i * c, count: c) }
        } else {
            rmsnormForward(out: hidden, rstd: rstdFinal, inp: xFinal, weight: finalNorm.pointer, n: n, c: c, eps: eps)
        }
        saved = train ? (batch, acts, xFinal, rstdFinal, hidden, proj, dropped, gradScratch, tokenSeeds, lora, pruned, keepsProduct) : nil
        return Tensor(storage: arenaStorage, offset: hidden - arenaStorage.pointer, shape: [n, c])
    }

    private func prepareLastRows(_ batch: PackedBatch, tokenSeeds: [UInt64]) {
        lastRows.removeAll(keepingCapacity: true)
        lastPositions.removeAll(keepingCapacity: true)
        lastSeeds.removeAll(keepingCapacity: true)
        for s in 0..<batch.count {
            let row = batch.offsets[s + 1] - 1
            lastRows.append(row)
            lastPositions.append(Int32(batch.length(s) - 1))
            if !tokenSeeds.isEmpty { lastSeeds.append(tokenSeeds[row]) }
        }
    }

    private var arenaStorage: FloatBuffer { arenaActivations.storage }
    public var activationCapacity: Int { arenaActivations.peak }

    /// Backward from dL/d(final hidden states) (N, C) of the last `forward(keepActivations: true)`;
    /// accumulates LoRA gradients into the adapter's gradient buffer. Under last-token pooling only
    /// the last rows of dHidden are read.
    public func backward(dHidden: UnsafePointer<Float>) throws {
        guard let s = saved, let lora = s.lora else { throw FormatError("backward needs a forward pass that kept activations, with an adapter") }
        let cfg = config, batch = s.batch
        let n = batch.tokens, m = batch.count, c = cfg.hiddenSize, d = cfg.headSize, h = cfg.numAttentionHeads, kv = cfg.kvHeads
        let inter = cfg.intermediateSize, rank = lora.adapter.config.r, pruned = s.lastTokenOnly
        // Gradient scratch, sized in forward: dx (residual), dxn, dq, datt, dk, dv, dkPre, d[gate | up], dact, du,
        // then for a last-token final block dHidden's last rows, its residual and normed-input gradients.
        var g = s.grads
        func take(_ count: Int) -> UnsafeMutablePointer<Float> { defer { g += count }; return g }
        let dx = take(n * c), dxn = take(n * c), dq = take(n * h * d), datt = take(n * h * d)
        let dk = take(n * kv * d), dv = take(n * kv * d), dkPre = take(n * kv * d), dqPre = dq
        let dGateUp = take(n * 2 * inter), dact = take(n * inter), du = take(n * rank)
        let dHiddenLast = take(pruned ? m * c : 0), dxLast = take(pruned ? m * c : 0), dxnLast = take(pruned ? m * c : 0)

        dx.initialize(repeating: 0, count: n * c)
        if pruned {
            for (i, row) in lastRows.enumerated() { (dHiddenLast + i * c).update(from: dHidden + row * c, count: c) }
            dxLast.initialize(repeating: 0, count: m * c)
            rmsnormBackward(dinp: dxLast, dout: dHiddenLast, inp: s.xFinal, weight: finalNorm.pointer, rstd: s.rstdFinal, n: m, c: c)
        } else {
            rmsnormBackward(dinp: dx, dout: dHidden, inp: s.xFinal, weight: finalNorm.pointer, rstd: s.rstdFinal, n: n, c: c)
        }
        let seedsLast = lastSeeds
        s.tokenSeeds.withUnsafeBufferPointer { allSeeds in
          seedsLast.withUnsafeBufferPointer { lastSeeds in
            for li in stride(from: layers.count - 1, through: 0, by: -1) {
                let layer = layers[li], t = s.layers[li], slots = Self.moduleNames.map { lora.adapter.slot("layers.\(li).\($0)") }
                let tail = pruned && li == layers.count - 1, r = tail ? m : n
                // The block's row-wise gradients: every token's, or the last tokens' of a final block.
                let dxR = tail ? dxLast : dx, dxnR = tail ? dxnLast : dxn
                func context(_ mi: Int) -> LoRAContext {
                    var context = lora
                    if !allSeeds.isEmpty { context.tokenSeeds = !tail || Self.seesEveryToken(mi) ? allSeeds.baseAddress : lastSeeds.baseAddress }
                    return context
                }
                func linearBack(_ mi: Int, dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                                weight: Tensor, inF: Int, outF: Int, accumulate: Bool) {
                    adaptedLinearBackward(dinp: dinp, dout: dout, inp: inp, weight: weight.pointer,
                                          n: !tail || Self.seesEveryToken(mi) ? n : m, inFeatures: inF, outFeatures: outF,
                                          accumulate: accumulate, slot: slots[mi], context: context(mi), u: t.loraU[mi], du: du,
                                          dropped: s.dropped)
                }
                // MLP: dxR holds dL/dxOut, which is also dL/dxMid's residual share. Unless kept,
                // silu(gate)·up is recomputed into dGateUp's storage, read before swigluBackward
                // overwrites it.
                let product = s.keepsProduct ? t.act : dGateUp
                if !s.keepsProduct { swigluForward(out: dGateUp, gate: t.gate, up: t.up, rows: r, cols: inter, ld: 2 * inter) }
                linearBack(6, dinp: dact, dout: dxR, inp: product, weight: layer.downProj, inF: inter, outF: c, accumulate: false)
                swigluBackward(dgate: dGateUp, dup: dGateUp + inter, dout: dact, gate: t.gate, up: t.up, rows: r, cols: inter, ld: 2 * inter)
                adaptedGroupBackward(dinp: dxnR, dout: dGateUp, inp: t.xn2, group: gateUps[li], n: r, accumulate: false,
                                     slots: [slots[4], slots[5]], context: context(4), u: [t.loraU[4], t.loraU[5]], du: du,
                                     dropped: s.dropped)
                rmsnormBackward(dinp: dxR, dout: dxnR, inp: t.xMid, weight: layer.postAttentionLayernorm.pointer, rstd: t.rstd2, n: r, c: c)
                // Attention: dxR now holds dL/dxMid.
                linearBack(3, dinp: datt, dout: dxR, inp: t.att, weight: layer.oProj, inF: h * d, outF: c, accumulate: false)
                let scale = 1 / Float(d).squareRoot()
                if tail {
                    lastTokenAttentionBackward(dq: dq, dk: dk, dv: dv, dout: datt, q: t.q, k: t.k, v: t.v, probs: t.probs,
                                               scratch: s.scratch, batch: batch, heads: h, kvHeads: kv, headDim: d, scale: scale)
                } else {
                    attentionBackward(dq: dq, dk: dk, dv: dv, dout: datt, q: t.q, k: t.k, v: t.v, probs: t.probs, scratch: s.scratch,
                                      batch: batch, heads: h, kvHeads: kv, headDim: d, scale: scale, causal: true)
                }
                (tail ? lastPositions : positions).withUnsafeBufferPointer { pos in
                    ropeBackward(dx: dq, positions: pos.baseAddress!, n: r, heads: h, table: rope)
                }
                positions.withUnsafeBufferPointer { pos in
                    ropeBackward(dx: dk, positions: pos.baseAddress!, n: n, heads: kv, table: rope)
                }
                var dQ = UnsafePointer(dq), dK = UnsafePointer(dk)
                if let qNorm = layer.qNorm, let kNorm = layer.kNorm {
                    // dqPre overwrites dq's storage only after it has been read, row by row: use datt as staging.
                    datt.initialize(repeating: 0, count: r * h * d)
                    rmsnormBackward(dinp: datt, dout: dq, inp: t.qPre, weight: qNorm.pointer, rstd: t.qRstd, n: r * h, c: d)
                    dqPre.update(from: datt, count: r * h * d)
                    dkPre.initialize(repeating: 0, count: n * kv * d)
                    rmsnormBackward(dinp: dkPre, dout: dk, inp: t.kPre, weight: kNorm.pointer, rstd: t.kRstd, n: n * kv, c: d)
                    dQ = UnsafePointer(dqPre)
                    dK = UnsafePointer(dkPre)
                }
                // The first block's input is the frozen embeddings': its q/k/v need no input gradient.
                let dxnIn = li > 0 ? dxn : nil
                linearBack(1, dinp: dxnIn, dout: dK, inp: t.xn1, weight: layer.kProj, inF: c, outF: kv * d, accumulate: false)
                linearBack(2, dinp: dxnIn, dout: dv, inp: t.xn1, weight: layer.vProj, inF: c, outF: kv * d, accumulate: true)
                if tail {
                    // q saw the last rows only: its input gradient lands there, as does the residual's.
                    linearBack(0, dinp: li > 0 ? dxnLast : nil, dout: dQ, inp: t.xnLast, weight: layer.qProj, inF: c, outF: h * d,
                               accumulate: false)
                    if li > 0 {
                        for (i, row) in lastRows.enumerated() {
                            addInPlace(dxn + row * c, dxnLast + i * c, count: c)
                            (dx + row * c).update(from: dxLast + i * c, count: c)
                        }
                    }
                } else {
                    linearBack(0, dinp: dxnIn, dout: dQ, inp: t.xn1, weight: layer.qProj, inF: c, outF: h * d, accumulate: true)
                }
                if li > 0 {
                    rmsnormBackward(dinp: dx, dout: dxn, inp: t.xIn, weight: layer.inputLayernorm.pointer, rstd: t.rstd1, n: n, c: c)
                }
            }
          }
        }
    }
}
