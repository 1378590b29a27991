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
            for s in reranked.indices { reranked[s][q] = rerankedRanking(firstStage[s][q], scores: byDocument, topK: topK) }
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
/// order, followed by the other hits in first-stage order with their first-stage scores.
public func rerankedRanking(_ ranking: RetrievalEvaluator.Ranking, scores: [Int: Float], topK: Int) -> RetrievalEvaluator.Ranking {
    let head = Array(ranking.prefix(max(0, topK)))
    let order = topRanked(head.map { scores[$0.index]! })
    return order.map { (head[$0.index].index, $0.score) } + ranking.dropFirst(head.count)
}
