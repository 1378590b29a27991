import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneKernels
import EmbedTuneRetrieval
import Foundation

/// The trainer's evaluator: held-out triples through the run's own InfoNCE term (the same texts,
/// prompts and fixed negatives it trains on, each rank embedding a share), scored with the
/// retrieval metrics `eval` and the fusion search report (`RetrievalEvaluator`, cosine).
public struct HeldOutEvaluator {
    public let loss: InfoNCELoss
    let communicator: Communicator

    public init(loss: InfoNCELoss, communicator: Communicator) {
        self.loss = loss
        self.communicator = communicator
    }

    /// `rows`' InfoNCE loss (the Matryoshka sum with `matryoshka_dims`) and positive-minus-hardest-
    /// negative margin, in global-batch chunks, and retrieval of each query's positive among every
    /// distinct document of the rows (also at each smaller Matryoshka dimension).
    public func evaluate(_ rows: [Triplet], step: Int) throws -> EvalLog {
        let plan = loss.plan, pass = loss.pass, options = plan.options
        var total = 0.0, pos = 0.0, hard = 0.0, counted = 0
        // Retrieval over the whole held-out set: every query against every distinct document.
        var queryVectors = [Float](), documentVectors = [Float](), documentIndex = [UInt64: Int](), relevant = [Set<Int>]()
        let chunkSize = max(2, plan.globalBatch)
        for start in stride(from: 0, to: rows.count, by: chunkSize) {
            let chunk = Array(rows[start..<min(start + chunkSize, rows.count)])
            let texts = loss.localTexts(chunk, indices: Array(start..<(start + chunk.count)), micro: -1 & Int.max, epoch: 0,
                                        globalRows: Array(0..<chunk.count))
            // Each rank embeds its share of the texts; the gather gives every rank all of them.
            let c = pass.width
            let miniBatch = max(1, options.gradCacheMiniBatch > 0 ? options.gradCacheMiniBatch : 64)
            let normalized = try communicator.gatherRows(count: texts.ids.count, width: c) { mine in
                var local = [Float]()
                for s in stride(from: mine.lowerBound, to: mine.upperBound, by: miniBatch) {
                    let e = min(s + miniBatch, mine.upperBound)
                    local += try pass.embed(Array(texts.ids[s..<e]), seeds: [], keep: false, training: false).normalized
                }
                return local
            }
            let (result, _, _) = try loss.globalLoss(local: normalized, localKeys: texts.keys, queries: texts.queries, rows: chunk.count,
                                                     progress: 1, gather: false)
            let perRow = plan.textsPerRow
            for r in 0..<chunk.count {
                queryVectors += normalized[(r * perRow * c)..<((r * perRow + 1) * c)]
                for j in 1..<perRow {
                    let key = texts.keys[r * perRow + j]
                    if documentIndex[key] == nil {
                        documentIndex[key] = documentIndex.count
                        documentVectors += normalized[((r * perRow + j) * c)..<((r * perRow + j + 1) * c)]
                    }
                }
                relevant.append([documentIndex[texts.keys[r * perRow + 1]]!])
            }
            total += result.loss * Double(chunk.count)
            pos += result.meanPositive * Double(chunk.count)
            if result.meanHardestNegative.isFinite { hard += result.meanHardestNegative * Double(chunk.count) }
            counted += chunk.count
        }
        let n = Double(max(counted, 1))
        var evaluator = RetrievalEvaluator()
        evaluator.scores = [.cosine]
        let ir = counted > 0 ? evaluator.evaluate(queries: queryVectors, corpus: documentVectors, dim: pass.width, relevant: relevant)
                             : [:]
        // The same retrieval at each smaller Matryoshka dimension: the vectors cut and renormalised.
        let c = pass.width, smaller = counted > 0 ? (options.matryoshka?.dims ?? []).filter { $0 < c } : []
        var byDim = [String: Double]()
        for d in smaller {
            let q = truncatedRows(queryVectors, n: queryVectors.count / c, c: c, dim: d)
            let docs = truncatedRows(documentVectors, n: documentVectors.count / c, c: c, dim: d)
            byDim["\(d)"] = evaluator.evaluate(queries: q, corpus: docs, dim: d, relevant: relevant)["cosine_ndcg@10"] ?? .nan
        }
        return EvalLog(step: step, loss: total / n, margin: (pos - hard) / n, meanPositive: pos / n, meanHardestNegative: hard / n,
                       rows: counted, ndcg10: ir["cosine_ndcg@10"] ?? .nan, recall5: ir["cosine_recall@5"] ?? .nan,
                       mrr10: ir["cosine_mrr@10"] ?? .nan, documents: documentIndex.count,
                       ndcg10ByDim: byDim.isEmpty ? nil : byDim)
    }
}
