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
    let embedTokens: Tensor  // (V, C)
    let layers: [Layer]
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
        let embedOffset = a.declare("embed_tokens.weight", [config.vocabSize, c])
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
        embedTokens = a.view(embedOffset, [config.vocabSize, c])
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
        rope = RotaryTable(headDim: d, theta: config.theta, maxPositions: config.maxPositionEmbeddings)
    }

    // MARK: forward / backward

    /// Where one decoder block reads and writes. Inference shares one set for every layer and
    /// works in place (aliases); training gives each layer its own, kept for the backward pass.
    struct LayerActivations {
        var xIn, xMid, xOut: UnsafeMutablePointer<Float>   // (N, C) residual stream
        var rstd1, rstd2: UnsafeMutablePointer<Float>       // (N)
        var xn1, xn2: UnsafeMutablePointer<Float>           // (N, C) normed inputs of attention / MLP
        var qPre, kPre: UnsafeMutablePointer<Float>         // (N, H·D), (N, KV·D) projections before q/k norm
        var qRstd, kRstd: UnsafeMutablePointer<Float>       // (N·H), (N·KV)
        var q, k, v: UnsafeMutablePointer<Float>            // after norm and RoPE
        var probs: UnsafeMutablePointer<Float>              // H·ΣT² (training) or T² scratch
        var att: UnsafeMutablePointer<Float>                // (N, H·D) input of o_proj
        var gate, up, act: UnsafeMutablePointer<Float>      // (N, I)
        var loraU: [UnsafeMutablePointer<Float>]            // per module of `moduleNames`, (N, r)
    }

    /// The seven linear layers of a block, in a fixed order.
    static let moduleNames = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]

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

    private let arenaActivations = ActivationArena()
    private var saved: (batch: PackedBatch, layers: [LayerActivations], xFinal: UnsafeMutablePointer<Float>,
                        rstdFinal: UnsafeMutablePointer<Float>, hidden: UnsafeMutablePointer<Float>,
                        scratch: UnsafeMutablePointer<Float>, dropped: UnsafeMutablePointer<Float>,
                        grads: UnsafeMutablePointer<Float>, tokenSeeds: [UInt64], lora: LoRAContext?)?
    private var positions = [Int32]()

    public func forward(_ sequences: [[Int32]]) throws -> Tensor { try forward(sequences, lora: nil, keepActivations: false) }

    /// The forward pass; with `keepActivations` every layer's activations are kept for `backward`.
    /// With a LoRA context the adapter is applied to its target modules.
    public func forward(_ sequences: [[Int32]], lora: LoRAContext?, keepActivations: Bool) throws -> Tensor {
        try checkInputs(sequences)
        let cfg = config
        let batch = PackedBatch(lengths: sequences.map(\.count))
        let n = batch.tokens, c = cfg.hiddenSize, d = cfg.headSize, h = cfg.numAttentionHeads, kv = cfg.kvHeads
        let inter = cfg.intermediateSize, eps = Float(cfg.rmsNormEps), train = keepActivations
        let rank = lora?.adapter.config.r ?? 0
        let probsPerLayer = train ? h * (0..<batch.count).reduce(0) { $0 + batch.length($1) * batch.length($1) }
                                  : attentionScratchCount(maxLength: batch.maxLength)
        let maxIn = max(c, h * d, inter)

        // Lay out every buffer of this pass in one reusable arena.
        let plan = arenaActivations.layout { a -> ([LayerActivations], UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                                                   UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                                                   UnsafeMutablePointer<Float>) in
            func block(_ xIn: UnsafeMutablePointer<Float>, shared: LayerActivations?) -> LayerActivations {
                if let shared { return shared }
                let qPre = a.take(n * h * d), kPre = a.take(n * kv * d)
                let norms = cfg.hasQKNorm
                let gate = a.take(n * inter)
                return LayerActivations(
                    xIn: xIn, xMid: train ? a.take(n * c) : xIn, xOut: xIn, rstd1: a.take(n), rstd2: a.take(n),
                    xn1: a.take(n * c), xn2: train ? a.take(n * c) : a.take(0), qPre: qPre, kPre: kPre,
                    qRstd: a.take(n * h), kRstd: a.take(n * kv),
                    q: norms && train ? a.take(n * h * d) : qPre, k: norms && train ? a.take(n * kv * d) : kPre,
                    v: a.take(n * kv * d), probs: a.take(probsPerLayer), att: a.take(n * h * d),
                    gate: gate, up: a.take(n * inter), act: train ? a.take(n * inter) : gate,
                    loraU: Self.moduleNames.map { _ in a.take(n * rank) })
            }
            let x0 = a.take(n * c)
            var layers = [LayerActivations]()
            if train {
                var x = x0
                for _ in 0..<cfg.numHiddenLayers {
                    var l = block(x, shared: nil)
                    let next = a.take(n * c)
                    l.xOut = next
                    layers.append(l)
                    x = next
                }
            } else {
                var l = block(x0, shared: nil)
                l.xn2 = l.xn1
                layers = Array(repeating: l, count: cfg.numHiddenLayers)
            }
            let xFinal = train ? layers.last!.xOut : x0
            // proj doubles as the attention-backward scratch.
            let proj = a.take(max(n * max(c, h * d), train ? attentionScratchCount(maxLength: batch.maxLength) : 0)), hidden = a.take(n * c), rstdFinal = a.take(n)
            let dropped = a.take(lora != nil && lora!.training && lora!.adapter.config.loraDropout > 0 ? n * maxIn : 0)
            let grads = a.take(train ? n * (2 * c + 2 * h * d + 3 * kv * d + 3 * inter + rank) : 0)
            return (layers, xFinal, proj, hidden, rstdFinal, dropped, grads)
        }
        let (acts, xFinal, proj, hidden, rstdFinal, dropped, gradScratch) = plan

        // Embedding lookup; positions restart at 0 for every sequence (no padding exists).
        positions.removeAll(keepingCapacity: true)
        let tokenSeeds = lora?.tokenSeeds(for: sequences) ?? []
        let x0 = acts[0].xIn
        var row = 0
        for s in sequences {
            for (p, id) in s.enumerated() {
                (x0 + row * c).update(from: embedTokens.pointer + Int(id) * c, count: c)
                positions.append(Int32(p))
                row += 1
            }
        }
        var context = lora
        try tokenSeeds.withUnsafeBufferPointer { seeds in
            if context != nil, !seeds.isEmpty { context!.tokenSeeds = seeds.baseAddress }
            for (li, layer) in layers.enumerated() {
                let t = acts[li], slots = Self.moduleNames.map { context?.adapter.slot("layers.\(li).\($0)") }
                func linear(_ m: Int, out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: Tensor, bias: Tensor?,
                            inF: Int, outF: Int) {
                    adaptedLinearForward(out: out, inp: inp, weight: weight.pointer, bias: bias?.pointer, n: n, inFeatures: inF,
                                         outFeatures: outF, slot: slots[m], context: context, u: t.loraU[m], dropped: dropped)
                }
                // Attention block: xMid = xIn + o_proj(attn(rope(norm(q)), rope(norm(k)), v)).
                rmsnormForward(out: t.xn1, rstd: t.rstd1, inp: t.xIn, weight: layer.inputLayernorm.pointer, n: n, c: c, eps: eps)
                linear(0, out: t.qPre, inp: t.xn1, weight: layer.qProj, bias: layer.qBias, inF: c, outF: h * d)
                linear(1, out: t.kPre, inp: t.xn1, weight: layer.kProj, bias: layer.kBias, inF: c, outF: kv * d)
                linear(2, out: t.v, inp: t.xn1, weight: layer.vProj, bias: layer.vBias, inF: c, outF: kv * d)
                if let qNorm = layer.qNorm, let kNorm = layer.kNorm {
                    // Per-head RMSNorm over D: (N·H, D) and (N·KV, D) rows.
                    rmsnormForward(out: t.q, rstd: t.qRstd, inp: t.qPre, weight: qNorm.pointer, n: n * h, c: d, eps: eps)
                    rmsnormForward(out: t.k, rstd: t.kRstd, inp: t.kPre, weight: kNorm.pointer, n: n * kv, c: d, eps: eps)
                }
                positions.withUnsafeBufferPointer { pos in
                    ropeForward(x: t.q, positions: pos.baseAddress!, n: n, heads: h, table: rope)
                    ropeForward(x: t.k, positions: pos.baseAddress!, n: n, heads: kv, table: rope)
                }
                attentionForward(out: t.att, probs: t.probs, keepProbs: train, q: t.q, k: t.k, v: t.v, batch: batch,
                                 heads: h, kvHeads: kv, headDim: d, causal: true, scale: 1 / Float(d).squareRoot())
                linear(3, out: proj, inp: t.att, weight: layer.oProj, bias: nil, inF: h * d, outF: c)
                add(out: t.xMid, t.xIn, proj, count: n * c)

                // MLP block: xOut = xMid + down(silu(gate(norm(xMid))) · up(norm(xMid))).
                rmsnormForward(out: t.xn2, rstd: t.rstd2, inp: t.xMid, weight: layer.postAttentionLayernorm.pointer, n: n, c: c, eps: eps)
                linear(4, out: t.gate, inp: t.xn2, weight: layer.gateProj, bias: nil, inF: c, outF: inter)
                linear(5, out: t.up, inp: t.xn2, weight: layer.upProj, bias: nil, inF: c, outF: inter)
                swigluForward(out: t.act, gate: t.gate, up: t.up, count: n * inter)
                linear(6, out: proj, inp: t.act, weight: layer.downProj, bias: nil, inF: inter, outF: c)
                add(out: t.xOut, t.xMid, proj, count: n * c)
            }
        }
        rmsnormForward(out: hidden, rstd: rstdFinal, inp: xFinal, weight: finalNorm.pointer, n: n, c: c, eps: eps)
        saved = train ? (batch, acts, xFinal, rstdFinal, hidden, proj, dropped, gradScratch, tokenSeeds, lora) : nil
        return Tensor(storage: arenaStorage, offset: hidden - arenaStorage.pointer, shape: [n, c])
    }

    private var arenaStorage: FloatBuffer { arenaActivations.storage }
    public var activationCapacity: Int { arenaActivations.capacity }

    /// Backward from dL/d(final hidden states) (N, C) of the last `forward(keepActivations: true)`;
    /// accumulates LoRA gradients into the adapter's gradient buffer.
    public func backward(dHidden: UnsafePointer<Float>) throws {
        guard let s = saved, let lora = s.lora else { throw ModelInputError("backward needs a forward pass that kept activations, with an adapter") }
        let cfg = config, batch = s.batch
        let n = batch.tokens, c = cfg.hiddenSize, d = cfg.headSize, h = cfg.numAttentionHeads, kv = cfg.kvHeads
        let inter = cfg.intermediateSize, rank = lora.adapter.config.r
        // Gradient scratch, sized in forward: dx (residual), dxn, dq, datt, dk, dv, dkPre, dgate, dup, dact, du.
        var g = s.grads
        func take(_ count: Int) -> UnsafeMutablePointer<Float> { defer { g += count }; return g }
        let dx = take(n * c), dxn = take(n * c), dq = take(n * h * d), datt = take(n * h * d)
        let dk = take(n * kv * d), dv = take(n * kv * d), dkPre = take(n * kv * d), dqPre = dq
        let dgate = take(n * inter), dup = take(n * inter), dact = take(n * inter), du = take(n * rank)

        dx.initialize(repeating: 0, count: n * c)
        rmsnormBackward(dinp: dx, dout: dHidden, inp: s.xFinal, weight: finalNorm.pointer, rstd: s.rstdFinal, n: n, c: c)
        var context = lora
        s.tokenSeeds.withUnsafeBufferPointer { seeds in
            if !seeds.isEmpty { context.tokenSeeds = seeds.baseAddress }
            for li in stride(from: layers.count - 1, through: 0, by: -1) {
                let layer = layers[li], t = s.layers[li], slots = Self.moduleNames.map { context.adapter.slot("layers.\(li).\($0)") }
                func linearBack(_ m: Int, dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                                weight: Tensor, inF: Int, outF: Int, accumulate: Bool) {
                    adaptedLinearBackward(dinp: dinp, dout: dout, inp: inp, weight: weight.pointer, n: n, inFeatures: inF,
                                          outFeatures: outF, accumulate: accumulate, slot: slots[m], context: context,
                                          u: t.loraU[m], du: du, dropped: s.dropped)
                }
                // MLP: dx holds dL/dxOut, which is also dL/dxMid's residual share.
                linearBack(6, dinp: dact, dout: dx, inp: t.act, weight: layer.downProj, inF: inter, outF: c, accumulate: false)
                swigluBackward(dgate: dgate, dup: dup, dout: dact, gate: t.gate, up: t.up, count: n * inter)
                linearBack(4, dinp: dxn, dout: dgate, inp: t.xn2, weight: layer.gateProj, inF: c, outF: inter, accumulate: false)
                linearBack(5, dinp: dxn, dout: dup, inp: t.xn2, weight: layer.upProj, inF: c, outF: inter, accumulate: true)
                rmsnormBackward(dinp: dx, dout: dxn, inp: t.xMid, weight: layer.postAttentionLayernorm.pointer, rstd: t.rstd2, n: n, c: c)
                // Attention: dx now holds dL/dxMid.
                linearBack(3, dinp: datt, dout: dx, inp: t.att, weight: layer.oProj, inF: h * d, outF: c, accumulate: false)
                attentionBackward(dq: dq, dk: dk, dv: dv, dout: datt, q: t.q, k: t.k, v: t.v, probs: t.probs, scratch: s.scratch,
                                  batch: batch, heads: h, kvHeads: kv, headDim: d, scale: 1 / Float(d).squareRoot())
                positions.withUnsafeBufferPointer { pos in
                    ropeBackward(dx: dq, positions: pos.baseAddress!, n: n, heads: h, table: rope)
                    ropeBackward(dx: dk, positions: pos.baseAddress!, n: n, heads: kv, table: rope)
                }
                var dQ = UnsafePointer(dq), dK = UnsafePointer(dk)
                if let qNorm = layer.qNorm, let kNorm = layer.kNorm {
                    // dqPre overwrites dq's storage only after it has been read, row by row: use datt as staging.
                    datt.initialize(repeating: 0, count: n * h * d)
                    rmsnormBackward(dinp: datt, dout: dq, inp: t.qPre, weight: qNorm.pointer, rstd: t.qRstd, n: n * h, c: d)
                    dqPre.update(from: datt, count: n * h * d)
                    dkPre.initialize(repeating: 0, count: n * kv * d)
                    rmsnormBackward(dinp: dkPre, dout: dk, inp: t.kPre, weight: kNorm.pointer, rstd: t.kRstd, n: n * kv, c: d)
                    dQ = UnsafePointer(dqPre)
                    dK = UnsafePointer(dkPre)
                }
                linearBack(0, dinp: dxn, dout: dQ, inp: t.xn1, weight: layer.qProj, inF: c, outF: h * d, accumulate: false)
                linearBack(1, dinp: dxn, dout: dK, inp: t.xn1, weight: layer.kProj, inF: c, outF: kv * d, accumulate: true)
                linearBack(2, dinp: dxn, dout: dv, inp: t.xn1, weight: layer.vProj, inF: c, outF: kv * d, accumulate: true)
                rmsnormBackward(dinp: dx, dout: dxn, inp: t.xIn, weight: layer.inputLayernorm.pointer, rstd: t.rstd1, n: n, c: c)
            }
        }
    }
}
