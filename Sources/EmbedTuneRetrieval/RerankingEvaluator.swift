import EmbedTuneData
import Foundation

/// Retrieval metrics before and after a reranker, as a two-stage search runs: the embeddings'
/// exact top-k per query (the first stage), then each query's `topK` best re-scored by the
/// reranker and moved to the front in its order, the rest after them in first-stage order. Both
/// stages are scored by `metrics` with the same keys (`cosine_ndcg@10`, …), every score function's
/// first stage reranked; a (query, document) pair is scored once however many rankings hold it.
/// `embedtune eval --reranker` and a user's code call it alike.
public struct RerankingEvaluator {
    public var set: RetrievalSet
    public var metrics = RetrievalEvaluator()
    /// First-stage hits per query the reranker re-scores.
    public var topK: Int
    /// Share of the first stage in the reranked order, in [0, 1]: 0 orders by the reranker alone;
    /// otherwise both stages' scores are standardised over each query's `topK` hits and mixed
    /// (linear interpolation, as two-stage IR systems do when the reranker is weaker than the
    /// tuned first stage on its own).
    public var firstStageWeight: Float = 0
    /// Called after each query's candidates are scored: (queries done, queries to score).
    public var progress: ((Int, Int) -> Void)?

    public init(set: RetrievalSet, topK: Int = 50) {
        self.set = set
        self.topK = topK
    }

    /// First-stage and reranked metrics of precomputed embeddings (rows in the set's query and
    /// corpus order). Queries without a relevant document are not scored, as the metrics leave
    /// them out.
    public func evaluate(queries: [Float], corpus: [Float], dim: Int,
                         reranker: Reranker) throws -> (firstStage: [String: Double], reranked: [String: Double]) {
        let depth = max(metrics.maxK, topK)
        let firstStage = metrics.scores.map {
            metrics.rank(queries: queries, corpus: corpus, dim: dim, score: $0, corpusIDs: set.corpusIDs, depth: depth)
        }
        var reranked = firstStage
        let scored = set.relevant.indices.filter { !set.relevant[$0].isEmpty }
        for (done, q) in scored.enumerated() {
            var candidates = [Int](), seen = Set<Int>()
            for ranking in firstStage { for hit in ranking[q].prefix(topK) where seen.insert(hit.index).inserted { candidates.append(hit.index) } }
            let scores = try reranker.relevance(query: set.queries[q], documents: candidates.map { set.corpus[$0] })
            let byDocument = Dictionary(uniqueKeysWithValues: zip(candidates, scores))
            for s in reranked.indices { reranked[s][q] = rerankedRanking(firstStage[s][q], scores: byDocument, topK: topK,
                                                                               firstStageWeight: firstStageWeight) }
            progress?(done + 1, scored.count)
        }
        var before = [String: Double](), after = [String: Double]()
        for (s, score) in metrics.scores.enumerated() {
            before.merge(metrics.metrics(rankings: firstStage[s], relevant: set.relevant, prefix: "\(score.rawValue)_")) { a, _ in a }
            after.merge(metrics.metrics(rankings: reranked[s], relevant: set.relevant, prefix: "\(score.rawValue)_")) { a, _ in a }
        }
        return (before, after)
    }
}

/// A first-stage ranking with its `topK` best hits reordered by `scores` (corpus index → the
/// reranker's score; every one of those hits needs one), best first, equal scores in first-stage
/// order, followed by the other hits in first-stage order with their first-stage scores. With a
/// `firstStageWeight` w > 0 the hits are ordered by (1 − w)·z(reranker) + w·z(first stage), each
/// score standardised over the hits (z = (s − mean) / std; a constant list gives zeros).
public func rerankedRanking(_ ranking: RetrievalEvaluator.Ranking, scores: [Int: Float], topK: Int,
                            firstStageWeight: Float = 0) -> RetrievalEvaluator.Ranking {
    let head = Array(ranking.prefix(max(0, topK)))
    var second = head.map { scores[$0.index]! }
    if firstStageWeight > 0 {
        let a = standardised(second), b = standardised(head.map(\.score))
        second = zip(a, b).map { (1 - firstStageWeight) * $0 + firstStageWeight * $1 }
    }
    let order = topRanked(second)
    return order.map { (head[$0.index].index, $0.score) } + ranking.dropFirst(head.count)
}

/// (x − mean) / standard deviation, in Double; all zeros when the values are equal.
public func standardised(_ x: [Float]) -> [Float] {
    guard !x.isEmpty else { return [] }
    let mean = x.reduce(0.0) { $0 + Double($1) } / Double(x.count)
    let variance = x.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(x.count)
    guard variance > 0 else { return x.map { _ in 0 } }
    let sd = variance.squareRoot()
    return x.map { Float((Double($0) - mean) / sd) }
}
