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
    /// Scores under the default instruction; `scores(query:documents:instruction:)` takes another.
    public func relevance(query: String, documents: [String]) throws -> [Float] {
        try scores(query: query, documents: documents, instruction: nil)
    }
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

/// What `loadReranker` sets on the reranker it builds.
public struct RerankerOptions {
    /// A PEFT LoRA adapter directory.
    public var adapter: URL?
    public init() {}
}

/// The reranker a model directory is: a qwen3 / qwen2 causal LM scored as Qwen3-Reranker.
public func loadReranker(_ directory: ModelDirectory, options: RerankerOptions = .init()) throws -> Reranker {
    if options.adapter != nil { throw FormatError("a reranker adapter is not supported here") }
    return try QwenReranker(directory: directory)
}
