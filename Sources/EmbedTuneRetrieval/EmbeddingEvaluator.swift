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

    /// Cosine metrics of precomputed embeddings with the corpus quantised to `precision` (ranges
    /// calibrated on the corpus itself, as `quantize_embeddings` does without a calibration set),
    /// searched as `QuantizedSearch` would serve a top-`topK` request: the best topK·m rows of the
    /// quantised first stage rescored by the float queries — against the float corpus (`rescore`
    /// .float) or the stored codes (.stored, sentence-transformers' semantics) — and, for the
    /// metrics deeper than that, the rest of the first stage in its own order after them. Binary
    /// codes are the signs of the rows minus the corpus mean (`centreBinary`; false: of the rows
    /// themselves, as sentence-transformers quantises).
    public func score(queries: [Float], corpus: [Float], dim: Int, precision: EmbeddingPrecision,
                      rescoreMultiplier: Int?, rescore: QuantizedSearch.Rescoring = .float, topK: Int = 10,
                      centreBinary: Bool = true) throws -> [String: Double] {
        guard precision != .float32 else { return score(queries: queries, corpus: corpus, dim: dim) }
        var q = queries, c = corpus
        let nq = q.count / dim, nc = c.count / dim
        q.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: nq, c: dim) }
        c.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: nc, c: dim) }
        let ranges = precision.needsRanges ? try QuantizationRanges(calibration: c, rows: nc, dim: dim) : nil
        let centre = centreBinary && !precision.needsRanges ? columnMeans(c, rows: nc, dim: dim) : nil
        let search = try QuantizedSearch(corpus: QuantizedEmbeddings(centredRows(c, centre), rows: nc, dim: dim, precision: precision, ranges: ranges),
                                         ranges: ranges, centre: centre)
        var rankings = try search.search(queries: q, topK: metrics.maxK, rescoreMultiplier: nil)
        if let m = rescoreMultiplier {
            let head = try search.search(queries: q, topK: topK * m, rescoreMultiplier: 1, floatCorpus: rescore == .float ? c : nil)
            for i in 0..<nq {
                let seen = Set(head[i].map(\.index))
                rankings[i] = Array((head[i] + rankings[i].filter { !seen.contains($0.index) }).prefix(metrics.maxK))
            }
        }
        return metrics.metrics(rankings: rankings, relevant: set.relevant, prefix: "cosine_")
    }
}

/// The mean of each column of `rows` row-major rows of width `dim`.
public func columnMeans(_ values: [Float], rows: Int, dim: Int) -> [Float] {
    var mean = [Double](repeating: 0, count: dim)
    for r in 0..<rows { for d in 0..<dim { mean[d] += Double(values[r * dim + d]) } }
    return mean.map { Float($0 / Double(max(rows, 1))) }
}
