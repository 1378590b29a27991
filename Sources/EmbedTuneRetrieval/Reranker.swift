import EmbedTuneFormats
import EmbedTuneModels
import Foundation

/// Scores candidate documents against a query, higher meaning more relevant: the second stage
/// after embedding retrieval.
public protocol Reranker: AnyObject {
    /// One score per document, in order.
    func relevance(query: String, documents: [String]) throws -> [Float]
}

extension QwenReranker: Reranker {
    /// Scores under the reranker's `instruction` (default: `defaultInstruction`).
    public func relevance(query: String, documents: [String]) throws -> [Float] {
        try scores(query: query, documents: documents)
    }
}

extension CrossEncoder: Reranker {
    public func relevance(query: String, documents: [String]) throws -> [Float] {
        try scores(query: query, documents: documents)
    }
}

/// What `loadReranker` sets on the reranker it builds; nil keeps the model's own choice.
public struct RerankerOptions {
    /// A PEFT LoRA adapter directory.
    public var adapter: URL?
    /// The task instruction (Qwen rerankers; cross-encoders take none).
    public var instruction: String?
    /// Tokens per scored pair, capped by the model's positions.
    public var maxLength: Int?
    public var batchSize: Int?
    /// The vocabulary tokens a Qwen reranker reads as yes and no.
    public var answers = (yes: "yes", no: "no")
    public init() {}
}

/// The reranker a model directory is, by config.json: a BertForSequenceClassification /
/// XLMRobertaForSequenceClassification `architectures` is a `CrossEncoder`, and so is a BERT / XLM-R
/// embedding model with an adapter that stores a classification head (`embedtune train --task_type
/// reranker` on it); a qwen3 / qwen2 `model_type` (a *ForCausalLM, or a GGUF file) is a
/// `QwenReranker`; anything else is an error naming config.json and the field.
public func loadReranker(_ directory: ModelDirectory, options: RerankerOptions = .init()) throws -> Reranker {
    let configURL = directory.gguf != nil ? directory.url : directory.url.appendingPathComponent("config.json")
    let architecture = directory.config["architectures"]?.array?.first?.string
    let isCrossEncoder = architecture.map { CrossEncoder.architectures[$0] != nil } ?? false
    let isEncoder = !isCrossEncoder && directory.gguf == nil && CrossEncoder.encoderKinds[directory.modelType] != nil
    // An adapter of task_type SEQ_CLS stores the head (modules_to_save "classifier") an encoder lacks.
    let headAdapter = try options.adapter.flatMap { adapter in
        try isEncoder && PEFTAdapter.loadConfig(adapter).r > 0
            && PEFTAdapter.savedModuleNames(adapter).contains(SequenceClassificationHead.savedModule) ? adapter : nil
    }
    if isCrossEncoder || headAdapter != nil {
        if options.instruction != nil {
            throw FormatError(url: configURL, item: "architectures",
                              "\(architecture ?? directory.modelType) is a cross-encoder, which takes no instruction (instructions are for Qwen3-Reranker models)")
        }
        let encoder: CrossEncoder
        if let headAdapter {
            encoder = try CrossEncoder(encoder: directory, adapter: headAdapter)
        } else {
            encoder = try CrossEncoder(directory: directory)
            try encoder.setAdapter(options.adapter)
        }
        if let maxLength = options.maxLength { encoder.maxLength = min(maxLength, encoder.model.maxPositions) }
        if let batchSize = options.batchSize { encoder.batchSize = batchSize }
        return encoder
    }
    guard ModelDirectory.decoderTypes.contains(directory.modelType), !(architecture ?? "").hasSuffix("ForSequenceClassification") else {
        let item = architecture == nil ? "model_type" : "architectures"
        throw FormatError(url: configURL, item: item,
                          "\"\(architecture ?? directory.modelType)\" is not a reranker: expected BertForSequenceClassification or "
                          + "XLMRobertaForSequenceClassification (a cross-encoder), a BERT / XLM-R encoder with an adapter that stores a "
                          + "classification head, or a qwen3 / qwen2 *ForCausalLM (yes/no scoring)")
    }
    let qwen = try QwenReranker(directory: directory, answers: options.answers)
    try qwen.setAdapter(options.adapter)
    qwen.instruction = options.instruction
    // A limit past the model's positions could not be embedded: the model's own bound wins.
    if let maxLength = options.maxLength { qwen.maxLength = min(maxLength, qwen.model.maxPositions) }
    if let batchSize = options.batchSize { qwen.batchSize = batchSize }
    return qwen
}

/// The `topK` best of `candidates` by `reranker`'s score, best first; equal scores keep the
/// candidates' order.
public func rerank(_ reranker: Reranker, query: String, candidates: [String], topK: Int? = nil) throws -> [(index: Int, score: Float)] {
    topRanked(try reranker.relevance(query: query, documents: candidates), topK: topK)
}

/// The indices of the `topK` highest scores (all without a limit), best first; equal scores keep
/// their order.
public func topRanked(_ scores: [Float], topK: Int? = nil) -> [(index: Int, score: Float)] {
    let ranked = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
    return ranked.prefix(max(0, topK ?? ranked.count)).map { ($0, scores[$0]) }
}

