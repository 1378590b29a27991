import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// config.json of BERT and XLM-RoBERTa encoders (bge, m3e, all-MiniLM, multilingual-e5).
public struct BertConfig: Codable, Sendable {
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    public var hiddenAct: String?
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int?
    public var layerNormEps: Double?
    public var padTokenId: Int?
    public var positionEmbeddingType: String?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case intermediateSize = "intermediate_size", hiddenAct = "hidden_act"
        case maxPositionEmbeddings = "max_position_embeddings", typeVocabSize = "type_vocab_size"
        case layerNormEps = "layer_norm_eps", padTokenId = "pad_token_id"
        case positionEmbeddingType = "position_embedding_type"
    }

    /// XLM-R numbers positions from padding_idx + 1 (RoBERTa's convention); BERT from 0.
    public var firstPosition: Int { modelType == "xlm-roberta" ? (padTokenId ?? 1) + 1 : 0 }
    public var eps: Float { Float(layerNormEps ?? 1e-12) }
}

/// BERT / XLM-RoBERTa encoder: learned absolute positions, token-type embeddings, post-LayerNorm
/// blocks, bidirectional attention, GELU MLP. The caller pools (mean, CLS, …).
public final class BertModel: Backbone {
    public enum Activation: String { case gelu, geluTanh = "gelu_new", relu }

    public let config: BertConfig
    public let arena = ParameterArena()
    let activation: Activation
    let wordEmbeddings, positionEmbeddings, tokenTypeEmbeddings: Tensor  // (V, C), (P, C), (T, C)
    let embeddingNormWeight, embeddingNormBias: Tensor                   // (C)
    let layers: [Layer]
    private var ws = Workspace()

    /// One encoder block; names are the checkpoint's keys under `encoder.layer.{i}.`.
    struct Layer {
        var query, key, value: Tensor, queryBias, keyBias, valueBias: Tensor  // (C, C), (C)
        var attentionOutput: Tensor, attentionOutputBias: Tensor              // (C, C), (C)
        var attentionNormWeight, attentionNormBias: Tensor                    // (C)
        var intermediate: Tensor, intermediateBias: Tensor                    // (I, C), (I)
        var output: Tensor, outputBias: Tensor                                // (C, I), (C)
        var outputNormWeight, outputNormBias: Tensor                          // (C)
    }

    public var architecture: String { config.modelType }
    public var hiddenSize: Int { config.hiddenSize }
    public var vocabularySize: Int { config.vocabSize }
    public var maxPositions: Int { config.maxPositionEmbeddings - config.firstPosition }
    public var parameterCount: Int { arena.parameterCount }
    public var shapeSummary: String {
        "\(config.numHiddenLayers) layers, hidden \(config.hiddenSize), heads \(config.numAttentionHeads), intermediate \(config.intermediateSize), vocab \(config.vocabSize), \(activation.rawValue)"
    }

    public convenience init(directory: ModelDirectory, source: TensorSource? = nil) throws {
        let config = try directory.decodeConfig(BertConfig.self)
        try self.init(config: config, configFile: directory.url.appendingPathComponent("config.json").path)
        let store = try source ?? WeightStore(directory: directory.url)
        // BertModel saves bare keys; task heads prefix them (bert., roberta., model.).
        let prefix = ["", "bert.", "roberta.", "model."].first { store.contains($0 + "embeddings.word_embeddings.weight") } ?? ""
        // Some XLM-R exports drop the single token-type row: it stays zero then.
        try arena.load(from: store, optional: ["embeddings.token_type_embeddings.weight"]) { prefix + $0 }
    }

    public init(config: BertConfig, configFile: String = "config.json") throws {
        if let t = config.positionEmbeddingType, t != "absolute" {
            throw FormatError(file: configFile, item: "position_embedding_type", "unsupported \"\(t)\" (only absolute)")
        }
        switch config.hiddenAct ?? "gelu" {
        case "gelu": activation = .gelu
        case "gelu_new", "gelu_pytorch_tanh": activation = .geluTanh
        case "relu": activation = .relu
        case let other: throw FormatError(file: configFile, item: "hidden_act", "unsupported activation \"\(other)\"")
        }
        guard config.hiddenSize % config.numAttentionHeads == 0 else {
            throw FormatError(file: configFile, item: "num_attention_heads", "does not divide hidden_size \(config.hiddenSize)")
        }
        self.config = config
        let c = config.hiddenSize, inter = config.intermediateSize, a = arena
        let word = a.declare("embeddings.word_embeddings.weight", [config.vocabSize, c])
        let pos = a.declare("embeddings.position_embeddings.weight", [config.maxPositionEmbeddings, c])
        let types = a.declare("embeddings.token_type_embeddings.weight", [config.typeVocabSize ?? 2, c])
        let lnw = a.declare("embeddings.LayerNorm.weight", [c]), lnb = a.declare("embeddings.LayerNorm.bias", [c])
        var offsets = [[String: (Int, [Int])]]()
        for i in 0..<config.numHiddenLayers {
            var o = [String: (Int, [Int])]()
            func slot(_ key: String, _ shape: [Int]) { o[key] = (a.declare("encoder.layer.\(i)." + key, shape), shape) }
            for m in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
                slot(m + ".weight", [c, c]); slot(m + ".bias", [c])
            }
            slot("attention.output.LayerNorm.weight", [c]); slot("attention.output.LayerNorm.bias", [c])
            slot("intermediate.dense.weight", [inter, c]); slot("intermediate.dense.bias", [inter])
            slot("output.dense.weight", [c, inter]); slot("output.dense.bias", [c])
            slot("output.LayerNorm.weight", [c]); slot("output.LayerNorm.bias", [c])
            offsets.append(o)
        }
        a.allocate()
        wordEmbeddings = a.view(word, [config.vocabSize, c])
        positionEmbeddings = a.view(pos, [config.maxPositionEmbeddings, c])
        tokenTypeEmbeddings = a.view(types, [config.typeVocabSize ?? 2, c])
        embeddingNormWeight = a.view(lnw, [c])
        embeddingNormBias = a.view(lnb, [c])
        layers = offsets.map { o in
            func t(_ k: String) -> Tensor { a.view(o[k]!.0, o[k]!.1) }
            return Layer(query: t("attention.self.query.weight"), key: t("attention.self.key.weight"),
                         value: t("attention.self.value.weight"), queryBias: t("attention.self.query.bias"),
                         keyBias: t("attention.self.key.bias"), valueBias: t("attention.self.value.bias"),
                         attentionOutput: t("attention.output.dense.weight"), attentionOutputBias: t("attention.output.dense.bias"),
                         attentionNormWeight: t("attention.output.LayerNorm.weight"),
                         attentionNormBias: t("attention.output.LayerNorm.bias"),
                         intermediate: t("intermediate.dense.weight"), intermediateBias: t("intermediate.dense.bias"),
                         output: t("output.dense.weight"), outputBias: t("output.dense.bias"),
                         outputNormWeight: t("output.LayerNorm.weight"), outputNormBias: t("output.LayerNorm.bias"))
        }
    }

    struct Workspace {
        var capacityTokens = 0, capacityScores = 0
        var x = FloatBuffer(count: 0), q = FloatBuffer(count: 0), k = FloatBuffer(count: 0), v = FloatBuffer(count: 0)
        var attention = FloatBuffer(count: 0), projected = FloatBuffer(count: 0), hidden = FloatBuffer(count: 0)
        var scores = FloatBuffer(count: 0)

        mutating func reserve(tokens n: Int, maxLength t: Int, c: Int, inter: Int) {
            if n > capacityTokens {
                for kp in [\Workspace.x, \.q, \.k, \.v, \.attention, \.projected] { self[keyPath: kp] = FloatBuffer(count: n * c, zeroed: false) }
                hidden = FloatBuffer(count: n * inter, zeroed: false)
                capacityTokens = n
            }
            if t * t > capacityScores { scores = FloatBuffer(count: t * t, zeroed: false); capacityScores = t * t }
        }
    }

    public func forward(_ sequences: [[Int32]]) throws -> Tensor {
        try checkInputs(sequences)
        let cfg = config, c = cfg.hiddenSize, inter = cfg.intermediateSize, h = cfg.numAttentionHeads, d = c / h
        let batch = PackedBatch(lengths: sequences.map(\.count))
        let n = batch.tokens, eps = cfg.eps
        ws.reserve(tokens: n, maxLength: batch.maxLength, c: c, inter: inter)
        let x = ws.x.pointer, q = ws.q.pointer, k = ws.k.pointer, v = ws.v.pointer
        let att = ws.attention.pointer, proj = ws.projected.pointer, hid = ws.hidden.pointer

        // Embeddings: word + position + token type 0, then LayerNorm. (N, C)
        var row = 0
        for s in sequences {
            for (p, id) in s.enumerated() {
                let o = x + row * c
                let w = wordEmbeddings.pointer + Int(id) * c
                let pe = positionEmbeddings.pointer + (cfg.firstPosition + p) * c
                let te = tokenTypeEmbeddings.pointer
                for i in 0..<c { o[i] = w[i] + pe[i] + te[i] }
                row += 1
            }
        }
        layernormForward(out: x, inp: x, weight: embeddingNormWeight.pointer, bias: embeddingNormBias.pointer, n: n, c: c, eps: eps)

        for layer in layers {
            // x = LN(x + dense(attn(q, k, v)))
            linearForward(out: q, inp: x, weight: layer.query.pointer, bias: layer.queryBias.pointer, n: n, c: c, oc: c)
            linearForward(out: k, inp: x, weight: layer.key.pointer, bias: layer.keyBias.pointer, n: n, c: c, oc: c)
            linearForward(out: v, inp: x, weight: layer.value.pointer, bias: layer.valueBias.pointer, n: n, c: c, oc: c)
            attentionForward(out: att, probs: ws.scores.pointer, keepProbs: false, q: q, k: k, v: v, batch: batch,
                             heads: h, kvHeads: h, headDim: d, causal: false, scale: 1 / Float(d).squareRoot())
            linearForward(out: proj, inp: att, weight: layer.attentionOutput.pointer, bias: layer.attentionOutputBias.pointer,
                          n: n, c: c, oc: c)
            addInPlace(x, proj, count: n * c)
            layernormForward(out: x, inp: x, weight: layer.attentionNormWeight.pointer, bias: layer.attentionNormBias.pointer,
                             n: n, c: c, eps: eps)
            // x = LN(x + dense(act(dense(x))))
            linearForward(out: hid, inp: x, weight: layer.intermediate.pointer, bias: layer.intermediateBias.pointer,
                          n: n, c: c, oc: inter)
            switch activation {
            case .gelu: geluForward(hid, count: n * inter)
            case .geluTanh: geluTanhForward(hid, count: n * inter)
            case .relu: for i in 0..<(n * inter) { hid[i] = max(hid[i], 0) }
            }
            linearForward(out: proj, inp: hid, weight: layer.output.pointer, bias: layer.outputBias.pointer, n: n, c: inter, oc: c)
            addInPlace(x, proj, count: n * c)
            layernormForward(out: x, inp: x, weight: layer.outputNormWeight.pointer, bias: layer.outputNormBias.pointer,
                             n: n, c: c, eps: eps)
        }
        return Tensor(storage: ws.x, shape: [n, c])
    }
}
