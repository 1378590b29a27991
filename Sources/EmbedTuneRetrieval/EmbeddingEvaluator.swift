import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import Foundation

/// The one embed-and-score path, as sentence-transformers' InformationRetrievalEvaluator: a
/// retrieval set whose queries (with the query prompt) and corpus (with the document prompt) are
/// embedded by a model — with whatever adapter or folded weights it carries at the time — and
/// scored by `metrics`. `embedtune eval`, the fusion search and a user's code call it alike.
public struct EmbeddingEvaluator {
    public var set: RetrievalSet
    public var metrics = RetrievalEvaluator()
    public var batchSize = 32
    /// nil: the model's own limit.
    public var maxLength: Int?
    /// nil: the model's "query" / "document" prompts (config_sentence_transformers.json).
    public var queryPrompt: String?
    public var documentPrompt: String?

    public init(set: RetrievalSet) { self.set = set }

    /// Queries and corpus embedded by `embedder`: (width, query rows, corpus rows).
    public func embed(_ embedder: Embedder) throws -> (dim: Int, queries: [Float], corpus: [Float]) {
        var options = Embedder.Options()
        options.batchSize = batchSize
        options.maxLength = maxLength
        options.prefix = queryPrompt ?? embedder.directory.queryPrompt
        let (dim, queries) = try embedder.embed(set.queries, options: options)
        options.prefix = documentPrompt ?? embedder.directory.documentPrompt
        let (_, corpus) = try embedder.embed(set.corpus, options: options)
        return (dim, queries, corpus)
    }

    /// Every metric of `metrics` for the model, keyed as sentence-transformers keys them.
    public func evaluate(_ embedder: Embedder) throws -> [String: Double] {
        let (dim, queries, corpus) = try embed(embedder)
        return score(queries: queries, corpus: corpus, dim: dim)
    }

    /// Metrics of precomputed embeddings (rows in the set's query and corpus order).
    public func score(queries: [Float], corpus: [Float], dim: Int) -> [String: Double] {
        metrics.evaluate(queries: queries, corpus: corpus, dim: dim, relevant: set.relevant, corpusIDs: set.corpusIDs)
    }

    /// Metrics of precomputed embeddings (width `dim`) cut to their first `truncateDim` components
    /// and renormalised, as sentence-transformers' `truncate_dim` with normalised embeddings.
    public func score(queries: [Float], corpus: [Float], dim: Int, truncateDim: Int) throws -> [String: Double] {
        guard truncateDim > 0 && truncateDim <= dim else {
            throw FormatError("--truncate_dim \(truncateDim) must be between 1 and the embeddings' \(dim) dimensions")
        }
        return score(queries: truncatedRows(queries, n: queries.count / dim, c: dim, dim: truncateDim),
                     corpus: truncatedRows(corpus, n: corpus.count / dim, c: dim, dim: truncateDim), dim: truncateDim)
    }
}
