import EmbedTuneKernels
import Foundation

/// Information-retrieval metrics as sentence-transformers' InformationRetrievalEvaluator
/// computes them, with its key names: `{score}_accuracy@k`, `_precision@k`, `_recall@k`,
/// `_mrr@k`, `_ndcg@k`, `_map@k`. Exact top-k search runs in blocks (queries × corpus chunks)
/// so memory stays bounded however large the corpus.
public struct RetrievalEvaluator {
    public enum Score: String, CaseIterable, Sendable { case cosine, dot }

    public var accuracyAt = [1, 3, 5, 10]
    public var precisionRecallAt = [1, 3, 5, 10]
    public var mrrAt = [10]
    public var ndcgAt = [10]
    public var mapAt = [100]
    public var scores: [Score] = [.cosine, .dot]
    /// Corpus rows scored per block.
    public var corpusChunk = 4096

    public init() {}

    var maxK: Int { (accuracyAt + precisionRecallAt + mrrAt + ndcgAt + mapAt).max() ?? 10 }

    /// One query's ranked hits: (corpus index, score), best first.
    public typealias Ranking = [(index: Int, score: Float)]

    /// Top-k corpus rows per query by `score`, k the deepest cut-off of the metrics (or `depth`).
    /// Equal scores are ordered by corpus id as a string (sentence-transformers' rule: "d10" before
    /// "d2"), or by index when no ids are given.
    public func rank(queries: [Float], corpus: [Float], dim: Int, score: Score, corpusIDs: [String]? = nil, depth: Int? = nil) -> [Ranking] {
        var tieKey: [Int]?
        if let ids = corpusIDs {
            var key = [Int](repeating: 0, count: ids.count)
            for (position, index) in ids.indices.sorted(by: { ids[$0] < ids[$1] }).enumerated() { key[index] = position }
            tieKey = key
        }
        return exactTopK(queries: queries, corpus: corpus, dim: dim, k: depth ?? maxK, normalize: score == .cosine,
                         corpusChunk: corpusChunk, tieKey: tieKey)
    }

    /// Metrics over queries that have at least one relevant document (the others are left out,
    /// as sentence-transformers does). `relevant[i]` holds corpus indices relevant to query i.
    public func metrics(rankings: [Ranking], relevant: [Set<Int>], prefix: String) -> [String: Double] {
        var out = [String: Double]()
        let evaluated = rankings.indices.filter { !relevant[$0].isEmpty }
        let n = Double(max(evaluated.count, 1))
        func dcg(_ rels: [Int], _ k: Int) -> Double {
            rels.prefix(k).enumerated().reduce(0.0) { $0 + Double($1.element) / log2(Double($1.offset + 2)) }
        }
        for k in accuracyAt {
            let hits = evaluated.filter { i in rankings[i].prefix(k).contains { relevant[i].contains($0.index) } }.count
            out["\(prefix)accuracy@\(k)"] = Double(hits) / n
        }
        for k in precisionRecallAt {
            var p = 0.0, r = 0.0
            for i in evaluated {
                let correct = rankings[i].prefix(k).filter { relevant[i].contains($0.index) }.count
                p += Double(correct) / Double(k)
                r += Double(correct) / Double(relevant[i].count)
            }
            out["\(prefix)precision@\(k)"] = p / n
            out["\(prefix)recall@\(k)"] = r / n
        }
        for k in mrrAt {
            var sum = 0.0
            for i in evaluated {
                if let rank = rankings[i].prefix(k).firstIndex(where: { relevant[i].contains($0.index) }) { sum += 1 / Double(rank + 1) }
            }
            out["\(prefix)mrr@\(k)"] = sum / n
        }
        for k in ndcgAt {
            var sum = 0.0
            for i in evaluated {
                let predicted = rankings[i].prefix(k).map { relevant[i].contains($0.index) ? 1 : 0 }
                sum += dcg(predicted, k) / dcg(Array(repeating: 1, count: relevant[i].count), k)
            }
            out["\(prefix)ndcg@\(k)"] = sum / n
        }
        for k in mapAt {
            var sum = 0.0
            for i in evaluated {
                var correct = 0, precisions = 0.0
                for (rank, hit) in rankings[i].prefix(k).enumerated() where relevant[i].contains(hit.index) {
                    correct += 1
                    precisions += Double(correct) / Double(rank + 1)
                }
                sum += precisions / Double(min(k, relevant[i].count))
            }
            out["\(prefix)map@\(k)"] = sum / n
        }
        return out
    }

    /// Every metric for every score function, keyed as sentence-transformers keys them.
    public func evaluate(queries: [Float], corpus: [Float], dim: Int, relevant: [Set<Int>], corpusIDs: [String]? = nil) -> [String: Double] {
        var out = [String: Double]()
        for s in scores {
            let rankings = rank(queries: queries, corpus: corpus, dim: dim, score: s, corpusIDs: corpusIDs)
            out.merge(metrics(rankings: rankings, relevant: relevant, prefix: "\(s.rawValue)_")) { a, _ in a }
        }
        return out
    }
}


/// Exact top-k search of every query against the corpus by dot product (after L2 normalisation
/// when `normalize`), in blocks of queries × corpus rows so memory stays bounded. Results are
/// best first; equal scores order by `tieKey` (default: corpus index).
public func exactTopK(queries: [Float], corpus: [Float], dim: Int, k: Int, normalize: Bool, corpusChunk: Int = 4096,
                      queryBlock: Int = 1024, tieKey: [Int]? = nil) -> [RetrievalEvaluator.Ranking] {
    let nq = queries.count / dim, nc = corpus.count / dim, k = min(k, nc)
    var q = queries, c = corpus
    if normalize {
        q.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: nq, c: dim) }
        c.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: nc, c: dim) }
    }
    let key = tieKey ?? Array(0..<nc)
    func before(_ a: (index: Int, score: Float), _ b: (index: Int, score: Float)) -> Bool {
        a.score != b.score ? a.score > b.score : key[a.index] < key[b.index]
    }
    var best = [RetrievalEvaluator.Ranking](repeating: [], count: nq)
    let chunk = max(1, corpusChunk), qb = max(1, queryBlock)
    var block = [Float](repeating: 0, count: min(qb, max(nq, 1)) * min(chunk, max(nc, 1)))
    for q0 in stride(from: 0, to: nq, by: qb) {
        let bq = min(qb, nq - q0)
        for start in stride(from: 0, to: nc, by: chunk) {
            let m = min(chunk, nc - start)
            q.withUnsafeBufferPointer { qp in
                c.withUnsafeBufferPointer { cp in
                    sgemm(transB: true, m: bq, n: m, k: dim, a: qp.baseAddress! + q0 * dim, lda: dim, b: cp.baseAddress! + start * dim,
                          ldb: dim, c: &block, ldc: m)
                }
            }
            for i in 0..<bq {
                // Only rows that can still enter the top k are merged.
                let threshold = best[q0 + i].count < k ? -Float.infinity : best[q0 + i].last!.score
                var merged = best[q0 + i]
                for j in 0..<m where block[i * m + j] >= threshold { merged.append((start + j, block[i * m + j])) }
                if merged.count > best[q0 + i].count {
                    merged.sort(by: before)
                    best[q0 + i] = Array(merged.prefix(k))
                }
            }
        }
    }
    return best
}
