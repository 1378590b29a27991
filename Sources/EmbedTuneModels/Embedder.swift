import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneTokenizers
import Foundation

/// Pools (N, C) packed hidden states into one (C) vector per sequence.
/// hidden is (N, C); out is (S, C).
public func pool(_ mode: PoolingConfig.Mode, hidden: UnsafePointer<Float>, batch: PackedBatch, c: Int,
                 out: UnsafeMutablePointer<Float>) {
    for s in 0..<batch.count {
        let start = batch.offsets[s], len = batch.length(s), o = out + s * c
        switch mode {
        case .lastToken:
            o.update(from: hidden + (start + len - 1) * c, count: c)
        case .cls:
            o.update(from: hidden + start * c, count: c)
        case .mean, .meanSqrtLen:
            o.initialize(repeating: 0, count: c)
            for t in start..<(start + len) { addInPlace(o, hidden + t * c, count: c) }
            let scale = 1 / (mode == .mean ? Float(len) : Float(len).squareRoot())
            for i in 0..<c { o[i] *= scale }
        case .max:
            o.update(from: hidden + start * c, count: c)
            for t in (start + 1)..<(start + len) { for i in 0..<c { o[i] = max(o[i], hidden[t * c + i]) } }
        }
    }
}

/// Backward of `pool` for the differentiable modes (not max). dPooled is (S, C); dHidden,
/// (N, C), must be zero on entry.
public func poolBackward(_ mode: PoolingConfig.Mode, dPooled: UnsafePointer<Float>, batch: PackedBatch, c: Int,
                         dHidden: UnsafeMutablePointer<Float>) {
    precondition(mode != .max, "max pooling has no backward here")
    for s in 0..<batch.count {
        let start = batch.offsets[s], len = batch.length(s), g = dPooled + s * c
        switch mode {
        case .lastToken: (dHidden + (start + len - 1) * c).update(from: g, count: c)
        case .cls: (dHidden + start * c).update(from: g, count: c)
        case .mean, .meanSqrtLen:
            let scale = 1 / (mode == .mean ? Float(len) : Float(len).squareRoot())
            for t in start..<(start + len) { for i in 0..<c { dHidden[t * c + i] = g[i] * scale } }
        case .max: break
        }
    }
}

/// Text → embedding vectors: prompt/instruction, tokenizer, backbone, pooling, optional
/// Matryoshka truncation, L2 normalisation.
public final class Embedder {
    public let directory: ModelDirectory
    public let tokenizer: Tokenizer
    public let backbone: Backbone
    /// A LoRA adapter applied on the fly (PEFT directory loaded with `PEFTAdapter.load`).
    public var adapter: LoRAAdapter?

    public init(directory: ModelDirectory) throws {
        self.directory = directory
        tokenizer = try directory.loadTokenizer()
        backbone = try loadBackbone(directory)
    }

    public init(directory: ModelDirectory, tokenizer: Tokenizer, backbone: Backbone) {
        self.directory = directory
        self.tokenizer = tokenizer
        self.backbone = backbone
    }

    /// Applies the PEFT adapter in `directory` from now on (nil: none).
    public func setAdapter(_ directory: URL?) throws {
        guard let directory else { adapter = nil; return }
        guard let trainable = backbone as? TrainableBackbone else {
            throw FormatError("\(self.directory.modelType) models cannot carry a LoRA adapter")
        }
        adapter = try PEFTAdapter.load(directory, for: trainable)
    }

    /// Qwen3-Embedding's query format; documents get no instruction.
    public static func instructionPrefix(_ task: String) -> String { "Instruct: \(task)\nQuery:" }

    public struct Options {
        /// Tokens per text, special tokens included; nil = the model's own limit
        /// (sentence_bert_config.json's max_seq_length, else min(512, positions)).
        public var maxLength: Int?
        public var batchSize = 32
        /// Prepended to every text (an instruction or a sentence-transformers prompt).
        public var prefix = ""
        /// Matryoshka: keep the first `dimension` components, then renormalise.
        public var dimension: Int?
        /// Overrides the model's pooling (1_Pooling/config.json).
        public var pooling: PoolingConfig.Mode?
        public init() {}
    }

    /// Runs the backbone's frozen linear layers in INT8 from now on. With calibration texts (the
    /// default: a fixed mix of English and Chinese sentences), the base model embeds them first and
    /// each product is smoothed by its activations' channel maxima (SmoothQuant); nil: plain
    /// per-row / per-channel quantisation.
    public func useInt8(groupSize: Int = Int8Weights.defaultGroupSize, calibrationTexts: [String]? = Embedder.int8CalibrationTexts) throws {
        guard let texts = calibrationTexts, !texts.isEmpty else { try backbone.quantizeLinearsToInt8(groupSize: groupSize); return }
        let adapter = self.adapter
        self.adapter = nil
        defer { self.adapter = adapter }
        var options = Options()
        options.batchSize = texts.count
        try backbone.quantizeLinearsToInt8(groupSize: groupSize) { _ = try self.embed(texts, options: options) }
    }

    /// Calibration texts for `useInt8`: the activation outliers SmoothQuant needs are properties of
    /// the model's channels, visible on any ordinary text.
    public static let int8CalibrationTexts = [
        "How do I apply for a building permit, and how long does the municipality take to decide?",
        "Rice-fish farming raises fish in flooded paddies; the fish eat weeds and pests and fertilise the rice.",
        "The soil test showed low nitrogen, so the orchard needs a split application before flowering.",
        "What vaccine schedule do piglets need in their first eight weeks?",
        "稻田养鱼是一种生态农业模式，鱼在稻田中除草吃虫，粪便为水稻提供养分。",
        "小麦什么时候施用追肥效果最好？拔节期追施氮肥可以提高产量。",
        "池塘缺氧时鱼会浮头，应及时开启增氧机并减少投喂。",
        "森林防火期内禁止野外用火，发现火情应立即报告。",
        "query: what is the best irrigation interval for tomatoes in sandy soil",
        "passage: Drip irrigation every two to three days keeps sandy soil moist without waterlogging the roots.",
        "A 2024 survey counted 1,250 hives across 37 villages; average honey yield rose 12%.",
        "def embed(texts): return model.encode(texts, normalize_embeddings=True)",
    ]

    public func maxLength(_ options: Options) -> Int {
        options.maxLength ?? min(directory.maxSequenceLength ?? 512, backbone.maxPositions)
    }

    /// Embeds `texts` in input order; `progress` gets the number done after each batch.
    /// Returns a row-major (texts.count, dim) matrix.
    public func embed(_ texts: [String], options: Options, progress: ((Int) -> Void)? = nil) throws -> (dim: Int, values: [Float]) {
        let c = backbone.hiddenSize
        let dim = options.dimension ?? c
        guard dim > 0 && dim <= c else {
            throw FormatError("--dim \(dim) must be between 1 and the model's \(c) dimensions")
        }
        var out = [Float](repeating: 0, count: texts.count * dim)
        var pooled = [Float](repeating: 0, count: options.batchSize * c)
        var done = 0
        for start in stride(from: 0, to: texts.count, by: max(1, options.batchSize)) {
            let chunk = Array(texts[start..<min(start + options.batchSize, texts.count)])
            let ids = tokenizer.encodeBatch(chunk.map { options.prefix + $0 }, maxLength: maxLength(options))
            let hidden: Tensor, pooling = options.pooling ?? directory.pooling
            if let adapter, let trainable = backbone as? TrainableBackbone {
                hidden = try trainable.forward(ids, lora: LoRAContext(adapter: adapter, training: false), keepActivations: false, pooling: pooling)
            } else {
                hidden = try backbone.forward(ids, pooling: pooling)
            }
            let batch = PackedBatch(lengths: ids.map(\.count))
            pooled.withUnsafeMutableBufferPointer { pool(pooling, hidden: hidden.pointer, batch: batch, c: c, out: $0.baseAddress!) }
            let rows = truncatedRows(pooled, n: chunk.count, c: c, dim: dim, normalize: directory.normalize || options.dimension != nil)
            out.replaceSubrange((start * dim)..<((start + chunk.count) * dim), with: rows)
            done += chunk.count
            progress?(done)
        }
        return (dim, out)
    }
}
