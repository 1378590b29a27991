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
    public var hiddenDropoutProb: Double?
    public var attentionProbsDropoutProb: Double?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case intermediateSize = "intermediate_size", hiddenAct = "hidden_act"
        case maxPositionEmbeddings = "max_position_embeddings", typeVocabSize = "type_vocab_size"
        case layerNormEps = "layer_norm_eps", padTokenId = "pad_token_id"
        case positionEmbeddingType = "position_embedding_type"
        case hiddenDropoutProb = "hidden_dropout_prob", attentionProbsDropoutProb = "attention_probs_dropout_prob"
    }

    /// XLM-R numbers positions from padding_idx + 1 (RoBERTa's convention); BERT from 0.
    public var firstPosition: Int { modelType == "xlm-roberta" ? (padTokenId ?? 1) + 1 : 0 }
    public var eps: Float { Float(layerNormEps ?? 1e-12) }
}

/// BERT / XLM-RoBERTa encoder: learned absolute positions, token-type embeddings, post-LayerNorm
/// blocks, bidirectional attention, GELU MLP. The caller pools (mean, CLS, …).
public final class BertModel: Backbone, TrainableBackbone {
    public enum Activation: String { case gelu, geluTanh = "gelu_new", relu }

    public let config: BertConfig
    public let arena = ParameterArena()
    let activation: Activation
    var wordEmbeddings: Tensor { arena.table("embeddings.word_embeddings.weight") }  // (V, C)
    let positionEmbeddings, tokenTypeEmbeddings: Tensor                  // (P, C), (T, C)
    let embeddingNormWeight, embeddingNormBias: Tensor                   // (C)
    let layers: [Layer]

    /// One encoder block; names are the checkpoint's keys under `encoder.layer.{i}.`.
    struct Layer {
        var query, key, value: Tensor, queryBias, keyBias, valueBias: Tensor  // (C, C), (C)
        var attentionOutput: Tensor, attentionOutputBias: Tensor              // (C, C), (C)
        var attentionNormWeight, attentionNormBias: Tensor                    // (C)
        var intermediate: Tensor, intermediateBias: Tensor                    // (I, C), (I)
        var output: Tensor, outputBias: Tensor                                // (C, I), (C)
        var outputNormWeight, outputNormBias: Tensor                          // (C)
    }

    deinit { Int8Weights.shared.forget(frozenLinears.map(\.weight)) }

    public var frozenLinears: [(weight: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int)] {
        layers.flatMap { l in
            [l.query, l.key, l.value, l.attentionOutput, l.intermediate, l.output].map { (UnsafePointer($0.pointer), $0.shape[0], $0.shape[1]) }
        }
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
        let store = try source ?? directory.tensorSource()
        let prefix = Self.checkpointPrefix(store)
        // Some XLM-R exports drop the single token-type row: it stays zero then.
        try arena.load(from: store, optional: ["embeddings.token_type_embeddings.weight"]) { prefix + $0 }
    }

    /// The prefix of the encoder's keys: none as BertModel saves them; task models prefix them
    /// (bert., roberta., model.).
    public static func checkpointPrefix(_ store: TensorSource) -> String {
        ["", "bert.", "roberta.", "model."].first { store.contains($0 + "embeddings.word_embeddings.weight") } ?? ""
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
        a.declareTable("embeddings.word_embeddings.weight", [config.vocabSize, c])
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

    // MARK: backbone dropout

    /// Hidden and attention-probability dropout of the checkpoint's config (HF's defaults 0.1),
    /// live only in training passes that ask for it (`LoRAContext.backboneDropout`).
    func backboneDropout(_ context: LoRAContext?) -> (hidden: Float, attention: Float) {
        guard let context, context.training, context.backboneDropout, !context.sequenceSeeds.isEmpty else { return (0, 0) }
        return (Float(config.hiddenDropoutProb ?? 0.1), Float(config.attentionProbsDropoutProb ?? 0.1))
    }

    // Dropout sites beyond the LoRA layers' (1 … linear count).
    static let embeddingSite: UInt64 = 0x1_0000
    static func attentionSite(_ layer: Int) -> UInt64 { 0x2_0000 + UInt64(layer) * 256 }
    static func hiddenSite(_ layer: Int, _ which: Int) -> UInt64 { 0x3_0000 + UInt64(layer) * 2 + UInt64(which) }

    // MARK: forward / backward

    /// One encoder block's activations (training: per layer; inference: shared and aliased).
    struct LayerActivations {
        var xIn, x1, xOut: UnsafeMutablePointer<Float>       // (N, C): block input, after LN1, after LN2
        var y1, y2: UnsafeMutablePointer<Float>              // (N, C): LayerNorm inputs (residual sums)
        var mean1, rstd1, mean2, rstd2: UnsafeMutablePointer<Float>  // (N)
        var q, k, v, att: UnsafeMutablePointer<Float>        // (N, C)
        var probs: UnsafeMutablePointer<Float>               // H·ΣT² (training) or T² scratch
        var hPre, act: UnsafeMutablePointer<Float>           // (N, I); training overwrites hPre with the activation's slope
        var loraU: [UnsafeMutablePointer<Float>]             // per module of `moduleNames`, (N, r)
    }

    static let moduleNames = ["attention.self.query", "attention.self.key", "attention.self.value",
                              "attention.output.dense", "intermediate.dense", "output.dense"]

    public var defaultTargetModules: [String] { ["query", "key", "value", "dense"] }
    public var unusedAdapterModules: Set<String> { ["pooler.dense"] }

    public var linearLayers: [(module: String, inFeatures: Int, outFeatures: Int)] {
        let c = config.hiddenSize, inter = config.intermediateSize
        let shapes = [(c, c), (c, c), (c, c), (c, c), (c, inter), (inter, c)]
        return (0..<config.numHiddenLayers).flatMap { i in
            zip(Self.moduleNames, shapes).map { ("encoder.layer.\(i).\($0)", $1.0, $1.1) }
        }
    }

    private let activations = ActivationArena()
    private var saved: (batch: PackedBatch, layers: [LayerActivations], scratch: UnsafeMutablePointer<Float>,
                        attentionScratch: UnsafeMutablePointer<Float>,
                        dropped: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>, tokenSeeds: [UInt64],
                        lora: LoRAContext)?

    public func forward(_ sequences: [[Int32]], pooling: PoolingConfig.Mode) throws -> Tensor {
        try forward(sequences, lora: nil, keepActivations: false, pooling: pooling)
    }
    public var activationCapacity: Int { activations.peak }

    /// Under CLS pooling an inference pass computes the final block for each sequence's first row
    /// only (the other rows of the result are then unspecified); otherwise every row.
    public func forward(_ sequences: [[Int32]], lora: LoRAContext?, keepActivations train: Bool, pooling: PoolingConfig.Mode) throws -> Tensor {
        try forward(sequences, tokenTypes: nil, lora: lora, keepActivations: train, pooling: pooling)
    }

    /// `forward` with each token's type id (a text pair's second segment is 1 for BERT), in the
    /// layout of `sequences`; nil: every token is type 0, as a single text is.
    public func forward(_ sequences: [[Int32]], tokenTypes: [[Int32]]?, lora: LoRAContext?, keepActivations train: Bool,
                        pooling: PoolingConfig.Mode) throws -> Tensor {
        try checkInputs(sequences)
        let typeCount = tokenTypeEmbeddings.shape[0]
        if let tokenTypes {
            guard tokenTypes.count == sequences.count else {
                throw FormatError("\(sequences.count) sequences but \(tokenTypes.count) lists of token type ids")
            }
            for (i, (s, t)) in zip(sequences, tokenTypes).enumerated() {
                guard t.count == s.count else { throw FormatError("sequence \(i) has \(s.count) tokens but \(t.count) token type ids") }
                if let bad = t.first(where: { $0 < 0 || Int($0) >= typeCount }) {
                    throw FormatError("sequence \(i) has token type \(bad), outside the model's \(typeCount) types (type_vocab_size)")
                }
            }
        }
        let cfg = config, c = cfg.hiddenSize, inter = cfg.intermediateSize, h = cfg.numAttentionHeads, d = c / h
        let batch = PackedBatch(lengths: sequences.map(\.count))
        let n = batch.tokens, eps = cfg.eps, rank = lora?.adapter.config.r ?? 0
        // Under CLS pooling only each sequence's first row is read: an inference pass runs the final
        // block's q, attention, residuals and MLP for those S rows (k and v still for every token).
        let pruned = !train && pooling == .cls, m = batch.count
        let probsPerLayer = train ? h * (0..<batch.count).reduce(0) { $0 + batch.length($1) * batch.length($1) }
            : max(attentionScratchCount(maxLength: batch.maxLength),
                  pruned ? lastTokenAttentionScratchCount(maxLength: batch.maxLength, heads: h) : 0)
        let dropping = lora != nil && lora!.training && lora!.adapter.config.loraDropout > 0
        let plan = activations.layout { a -> ([LayerActivations], UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                                               UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) in
            func block(_ xIn: UnsafeMutablePointer<Float>) -> LayerActivations {
                let hPre = a.take(n * inter)
                return LayerActivations(
                    xIn: xIn, x1: train ? a.take(n * c) : xIn, xOut: xIn, y1: a.take(n * c), y2: train ? a.take(n * c) : xIn,
                    mean1: a.take(n), rstd1: a.take(n), mean2: a.take(n), rstd2: a.take(n),
                    q: a.take(n * c), k: a.take(n * c), v: a.take(n * c), att: a.take(n * c), probs: a.take(probsPerLayer),
                    hPre: hPre, act: train ? a.take(n * inter) : hPre, loraU: Self.moduleNames.map { _ in a.take(n * rank) })
            }
            var x = a.take(n * c)
            var layers = [LayerActivations]()
            if train {
                for _ in 0..<cfg.numHiddenLayers {
                    var l = block(x)
                    l.xOut = a.take(n * c)
                    layers.append(l)
                    x = l.xOut
                }
            } else {
                var l = block(x)
                l.y2 = l.y1
                layers = Array(repeating: l, count: cfg.numHiddenLayers)
            }
            let scratch = a.take(n * c), attentionScratch = a.take(train ? attentionScratchCount(maxLength: batch.maxLength) : 0)
            let dropped = a.take(dropping ? n * max(c, inter) : 0)
            let grads = a.take(train ? n * (5 * c + inter + rank) : 0)
            let firstRows = a.take(pruned ? 2 * m * c : 0)
            return (layers, scratch, attentionScratch, dropped, grads, firstRows)
        }
        let (acts, scratch, attentionScratch, dropped, gradScratch, firstRows) = plan

        // Embeddings: word + position + token type (0 unless given), then LayerNorm. (N, C)
        let x0 = acts[0].xIn, words = wordEmbeddings.pointer
        let tokenSeeds = lora?.tokenSeeds(for: sequences) ?? []
        var row = 0
        for (si, s) in sequences.enumerated() {
            for (p, id) in s.enumerated() {
                let o = x0 + row * c
                let w = words + Int(id) * c
                let pe = positionEmbeddings.pointer + (cfg.firstPosition + p) * c
                let te = tokenTypeEmbeddings.pointer + Int(tokenTypes?[si][p] ?? 0) * c
                for i in 0..<c { o[i] = w[i] + pe[i] + te[i] }
                row += 1
            }
        }
        layernormForward(out: x0, inp: x0, weight: embeddingNormWeight.pointer, bias: embeddingNormBias.pointer, n: n, c: c, eps: eps)

        var context = lora
        let (hiddenP, attentionP) = backboneDropout(lora)
        tokenSeeds.withUnsafeBufferPointer { seeds in
            if context != nil, !seeds.isEmpty { context!.tokenSeeds = seeds.baseAddress }
            if hiddenP > 0 { dropoutRows(out: x0, inp: x0, n: n, c: c, p: hiddenP, tokenSeeds: seeds.baseAddress!, site: Self.embeddingSite) }
            for (li, layer) in layers.enumerated() {
                let t = acts[li], slots = Self.moduleNames.map { context?.adapter.slot("encoder.layer.\(li).\($0)") }
                // r rows past k and v: all N, or in a pruned final block the S first rows, gathered (xQ, x1,
                // xOut (S, C) in `firstRows`) and put back in place at the end.
                let tail = pruned && li == layers.count - 1, r = tail ? m : n
                let xQ = tail ? firstRows : t.xIn, x1 = tail ? firstRows + m * c : t.x1, xOut = tail ? firstRows : t.xOut
                if tail { for s in 0..<m { (xQ + s * c).update(from: t.xIn + batch.offsets[s] * c, count: c) } }
                func linear(_ mi: Int, out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: Tensor, bias: Tensor,
                            inF: Int, outF: Int, rows: Int) {
                    adaptedLinearForward(out: out, inp: inp, weight: weight.pointer, bias: bias.pointer, n: rows, inFeatures: inF,
                                         outFeatures: outF, slot: slots[mi], context: context, u: t.loraU[mi], dropped: dropped)
                }
                // x1 = LN(xIn + dense(attn(q, k, v)))
                linear(0, out: t.q, inp: xQ, weight: layer.query, bias: layer.queryBias, inF: c, outF: c, rows: r)
                linear(1, out: t.k, inp: t.xIn, weight: layer.key, bias: layer.keyBias, inF: c, outF: c, rows: n)
                linear(2, out: t.v, inp: t.xIn, weight: layer.value, bias: layer.valueBias, inF: c, outF: c, rows: n)
                if tail {  // the first token sees its whole sequence: one query row per sequence, no mask
                    lastTokenAttentionForward(out: t.att, probs: t.probs, keepProbs: false, q: t.q, k: t.k, v: t.v, batch: batch,
                                              heads: h, kvHeads: h, headDim: d, scale: 1 / Float(d).squareRoot())
                } else {
                    attentionForward(out: t.att, probs: t.probs, keepProbs: train, q: t.q, k: t.k, v: t.v, batch: batch,
                                     heads: h, kvHeads: h, headDim: d, causal: false, scale: 1 / Float(d).squareRoot(),
                                     scratch: train ? attentionScratch : nil,
                                     dropout: attentionP > 0 ? AttentionDropout(p: attentionP, tokenSeeds: seeds.baseAddress!,
                                                                                site: Self.attentionSite(li)) : nil)
                }
                linear(3, out: t.y1, inp: t.att, weight: layer.attentionOutput, bias: layer.attentionOutputBias, inF: c, outF: c, rows: r)
                if hiddenP > 0 { dropoutRows(out: t.y1, inp: t.y1, n: n, c: c, p: hiddenP, tokenSeeds: seeds.baseAddress!, site: Self.hiddenSite(li, 0)) }
                addLayernormForward(out: x1, mean: t.mean1, rstd: t.rstd1, sum: t.y1, residual: xQ,
                                    weight: layer.attentionNormWeight.pointer, bias: layer.attentionNormBias.pointer, n: r, c: c, eps: eps)
                // xOut = LN(x1 + dense(act(dense(x1))))
                linear(4, out: t.hPre, inp: x1, weight: layer.intermediate, bias: layer.intermediateBias, inF: c, outF: inter, rows: r)
                switch (activation, train) {  // act aliases hPre when activations are not kept
                case (.gelu, false): geluForward(out: t.act, inp: t.hPre, count: r * inter)
                case (.geluTanh, false): geluTanhForward(out: t.act, inp: t.hPre, count: r * inter)
                case (.relu, false): reluForward(out: t.act, inp: t.hPre, count: r * inter)
                case (.gelu, true): geluForward(out: t.act, slopeInPlace: t.hPre, count: n * inter)
                case (.geluTanh, true): geluTanhForward(out: t.act, slopeInPlace: t.hPre, count: n * inter)
                case (.relu, true): reluForward(out: t.act, slopeInPlace: t.hPre, count: n * inter)
                }
                linear(5, out: t.y2, inp: t.act, weight: layer.output, bias: layer.outputBias, inF: inter, outF: c, rows: r)
                if hiddenP > 0 { dropoutRows(out: t.y2, inp: t.y2, n: n, c: c, p: hiddenP, tokenSeeds: seeds.baseAddress!, site: Self.hiddenSite(li, 1)) }
                addLayernormForward(out: xOut, mean: t.mean2, rstd: t.rstd2, sum: t.y2, residual: x1,
                                    weight: layer.outputNormWeight.pointer, bias: layer.outputNormBias.pointer, n: r, c: c, eps: eps)
                if tail { for s in 0..<m { (t.xOut + batch.offsets[s] * c).update(from: xOut + s * c, count: c) } }
            }
        }
        if train, let lora { saved = (batch, acts, scratch, attentionScratch, dropped, gradScratch, tokenSeeds, lora) } else { saved = nil }
        let out = acts.last!.xOut
        return Tensor(storage: activations.storage, offset: out - activations.storage.pointer, shape: [n, c])
    }

    public func backward(dHidden: UnsafePointer<Float>) throws {
        guard let s = saved else { throw FormatError("backward needs a forward pass that kept activations, with an adapter") }
        let cfg = config, c = cfg.hiddenSize, inter = cfg.intermediateSize, h = cfg.numAttentionHeads, d = c / h
        let n = s.batch.tokens, rank = s.lora.adapter.config.r
        var g = s.grads
        func take(_ count: Int) -> UnsafeMutablePointer<Float> { defer { g += count }; return g }
        let dx = take(n * c), dy = take(n * c), dq = take(n * c), dk = take(n * c), dv = take(n * c)
        let dh = take(n * inter), du = take(n * rank)
        dx.update(from: dHidden, count: n * c)
        var context = s.lora
        let (hiddenP, attentionP) = backboneDropout(s.lora)
        s.tokenSeeds.withUnsafeBufferPointer { seeds in
            if !seeds.isEmpty { context.tokenSeeds = seeds.baseAddress }
            for li in stride(from: layers.count - 1, through: 0, by: -1) {
                let layer = layers[li], t = s.layers[li]
                let slots = Self.moduleNames.map { context.adapter.slot("encoder.layer.\(li).\($0)") }
                func linearBack(_ m: Int, dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                                weight: Tensor, inF: Int, outF: Int, accumulate: Bool, slope: UnsafePointer<Float>? = nil) {
                    adaptedLinearBackward(dinp: dinp, dout: dout, inp: inp, weight: weight.pointer, n: n, inFeatures: inF,
                                          outFeatures: outF, accumulate: accumulate, slot: slots[m], context: context,
                                          u: t.loraU[m], du: du, dropped: s.dropped, slope: slope)
                }
                // MLP block: dx = dL/dxOut → dy = dL/dy2, then dy += the MLP's input gradient: dy = dL/dx1.
                layernormBackward(dinp: dy, dout: dx, inp: t.y2, weight: layer.outputNormWeight.pointer, mean: t.mean2,
                                  rstd: t.rstd2, n: n, c: c, accumulate: false)
                // Through the hidden dropout (dq is free until attention backward): the dense's gradient
                // is masked, the residual's is not.
                var dDense = UnsafePointer(dy)
                if hiddenP > 0 {
                    dropoutRows(out: dq, inp: dy, n: n, c: c, p: hiddenP, tokenSeeds: seeds.baseAddress!, site: Self.hiddenSite(li, 1))
                    dDense = UnsafePointer(dq)
                }
                // dh = dL/dhPre: through the activation's slope (hPre holds f'(x) in training).
                linearBack(5, dinp: dh, dout: dDense, inp: t.act, weight: layer.output, inF: inter, outF: c, accumulate: false,
                           slope: t.hPre)
                linearBack(4, dinp: dy, dout: dh, inp: t.x1, weight: layer.intermediate, inF: c, outF: inter, accumulate: true)
                // Attention block: dy = dL/dx1 → dx = dL/dy1, the residual's share of dL/dxIn; the
                // projections' input gradients accumulate onto it.
                layernormBackward(dinp: dx, dout: dy, inp: t.y1, weight: layer.attentionNormWeight.pointer, mean: t.mean1,
                                  rstd: t.rstd1, n: n, c: c, accumulate: false)
                dDense = UnsafePointer(dx)
                if hiddenP > 0 {
                    dropoutRows(out: dq, inp: dx, n: n, c: c, p: hiddenP, tokenSeeds: seeds.baseAddress!, site: Self.hiddenSite(li, 0))
                    dDense = UnsafePointer(dq)
                }
                // dL/datt into scratch: attention backward reads it and writes dq, dk, dv.
                linearBack(3, dinp: s.scratch, dout: dDense, inp: t.att, weight: layer.attentionOutput, inF: c, outF: c, accumulate: false)
                attentionBackward(dq: dq, dk: dk, dv: dv, dout: s.scratch, q: t.q, k: t.k, v: t.v, probs: t.probs,
                                  scratch: s.attentionScratch, batch: s.batch, heads: h, kvHeads: h, headDim: d, scale: 1 / Float(d).squareRoot(),
                                  dropout: attentionP > 0 ? AttentionDropout(p: attentionP, tokenSeeds: seeds.baseAddress!,
                                                                             site: Self.attentionSite(li)) : nil)
                // dL/dxIn = dx; the first block's input is the frozen embeddings': no gradient needed.
                let dIn = li > 0 ? dx : nil
                linearBack(0, dinp: dIn, dout: dq, inp: t.xIn, weight: layer.query, inF: c, outF: c, accumulate: true)
                linearBack(1, dinp: dIn, dout: dk, inp: t.xIn, weight: layer.key, inF: c, outF: c, accumulate: true)
                linearBack(2, dinp: dIn, dout: dv, inp: t.xIn, weight: layer.value, inF: c, outF: c, accumulate: true)
            }
        }
    }
}
