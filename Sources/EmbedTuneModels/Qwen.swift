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
public final class QwenModel: Backbone {
    public let config: QwenConfig
    public let arena = ParameterArena()
    let embedTokens: Tensor  // (V, C)
    let layers: [Layer]
    let finalNorm: Tensor    // (C)
    let rope: RotaryTable
    private var ws = Workspace()

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
        let store = try WeightStore(directory: directory.url)
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

    /// Activation buffers, grown to the largest batch seen and reused across calls.
    struct Workspace {
        var capacityTokens = 0, capacityScores = 0
        var residual = FloatBuffer(count: 0), normed = FloatBuffer(count: 0)
        var q = FloatBuffer(count: 0), k = FloatBuffer(count: 0), v = FloatBuffer(count: 0)
        var attention = FloatBuffer(count: 0), projected = FloatBuffer(count: 0)
        var gate = FloatBuffer(count: 0), up = FloatBuffer(count: 0), scores = FloatBuffer(count: 0)
        var positions = [Int32]()

        mutating func reserve(tokens n: Int, maxLength t: Int, config: QwenConfig) {
            let c = config.hiddenSize, hd = config.numAttentionHeads * config.headSize
            let kvd = config.kvHeads * config.headSize, inter = config.intermediateSize
            if n > capacityTokens {
                residual = FloatBuffer(count: n * c, zeroed: false); normed = FloatBuffer(count: n * c, zeroed: false)
                q = FloatBuffer(count: n * hd, zeroed: false); attention = FloatBuffer(count: n * hd, zeroed: false)
                k = FloatBuffer(count: n * kvd, zeroed: false); v = FloatBuffer(count: n * kvd, zeroed: false)
                projected = FloatBuffer(count: n * c, zeroed: false)
                gate = FloatBuffer(count: n * inter, zeroed: false); up = FloatBuffer(count: n * inter, zeroed: false)
                capacityTokens = n
            }
            if t * t > capacityScores {
                scores = FloatBuffer(count: t * t, zeroed: false)
                capacityScores = t * t
            }
        }
    }

    public func forward(_ sequences: [[Int32]]) throws -> Tensor {
        try checkInputs(sequences)
        let cfg = config
        let batch = PackedBatch(lengths: sequences.map(\.count))
        let n = batch.tokens, c = cfg.hiddenSize, d = cfg.headSize, h = cfg.numAttentionHeads, kv = cfg.kvHeads
        let inter = cfg.intermediateSize, eps = Float(cfg.rmsNormEps)
        ws.reserve(tokens: n, maxLength: batch.maxLength, config: cfg)
        let x = ws.residual.pointer, xn = ws.normed.pointer
        let q = ws.q.pointer, k = ws.k.pointer, v = ws.v.pointer, att = ws.attention.pointer
        let proj = ws.projected.pointer, gate = ws.gate.pointer, up = ws.up.pointer

        // Embedding lookup; positions restart at 0 for every sequence (no padding exists).
        ws.positions.removeAll(keepingCapacity: true)
        var row = 0
        for s in sequences {
            for (p, id) in s.enumerated() {
                (x + row * c).update(from: embedTokens.pointer + Int(id) * c, count: c)
                ws.positions.append(Int32(p))
                row += 1
            }
        }

        for layer in layers {
            // Attention block: x += o_proj(attn(rope(norm(q)), rope(norm(k)), v)).
            rmsnormForward(out: xn, inp: x, weight: layer.inputLayernorm.pointer, n: n, c: c, eps: eps)
            linearForward(out: q, inp: xn, weight: layer.qProj.pointer, bias: layer.qBias?.pointer, n: n, c: c, oc: h * d)
            linearForward(out: k, inp: xn, weight: layer.kProj.pointer, bias: layer.kBias?.pointer, n: n, c: c, oc: kv * d)
            linearForward(out: v, inp: xn, weight: layer.vProj.pointer, bias: layer.vBias?.pointer, n: n, c: c, oc: kv * d)
            if let qNorm = layer.qNorm, let kNorm = layer.kNorm {
                // Per-head RMSNorm over D, in place: (N·H, D) and (N·KV, D) rows.
                rmsnormForward(out: q, inp: q, weight: qNorm.pointer, n: n * h, c: d, eps: eps)
                rmsnormForward(out: k, inp: k, weight: kNorm.pointer, n: n * kv, c: d, eps: eps)
            }
            ws.positions.withUnsafeBufferPointer { pos in
                ropeForward(x: q, positions: pos.baseAddress!, n: n, heads: h, table: rope)
                ropeForward(x: k, positions: pos.baseAddress!, n: n, heads: kv, table: rope)
            }
            attentionForward(out: att, probs: ws.scores.pointer, keepProbs: false, q: q, k: k, v: v, batch: batch,
                             heads: h, kvHeads: kv, headDim: d, causal: true, scale: 1 / Float(d).squareRoot())
            linearForward(out: proj, inp: att, weight: layer.oProj.pointer, bias: nil, n: n, c: h * d, oc: c)
            addInPlace(x, proj, count: n * c)

            // MLP block: x += down(silu(gate(norm(x))) · up(norm(x))).
            rmsnormForward(out: xn, inp: x, weight: layer.postAttentionLayernorm.pointer, n: n, c: c, eps: eps)
            linearForward(out: gate, inp: xn, weight: layer.gateProj.pointer, bias: nil, n: n, c: c, oc: inter)
            linearForward(out: up, inp: xn, weight: layer.upProj.pointer, bias: nil, n: n, c: c, oc: inter)
            swigluForward(out: gate, gate: gate, up: up, count: n * inter)
            linearForward(out: proj, inp: gate, weight: layer.downProj.pointer, bias: nil, n: n, c: inter, oc: c)
            addInPlace(x, proj, count: n * c)
        }
        rmsnormForward(out: xn, inp: x, weight: finalNorm.pointer, n: n, c: c, eps: eps)
        return Tensor(storage: ws.normed, shape: [n, c])
    }
}
