import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneModels
import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// Hard-negative mining as sentence-transformers' `mine_hard_negatives` does it (exact search,
/// cosine): candidates are the top (range_max + max positives) documents per query; positives,
/// then candidates too close to the positive (absolute / relative margin), above max_score or
/// below min_score are removed; of the best range_max that remain, the first range_min are
/// skipped and num_negatives are taken from the top (or sampled). With a reranker, the candidates
/// that remain are also scored by it and those it judges about as relevant as the positive (above
/// max_reranker_score, or within reranker_relative_margin of the positive's reranker score) are
/// removed too: false negatives a cosine threshold cannot see (NV-Retriever's positive-aware
/// filtering with a stronger scorer).
public struct MiningOptions: Sendable {
    public enum Strategy: String, Sendable { case top, random }
    public enum OutputFormat: String, Sendable, CaseIterable {
        case triplet, nTuple = "n-tuple", labeledPair = "labeled-pair", labeledList = "labeled-list", msSwift = "ms-swift"
    }
    public var numNegatives = 3
    public var rangeMin = 0
    public var rangeMax: Int?
    public var maxScore: Float?
    public var minScore: Float?
    public var absoluteMargin: Float?
    public var relativeMargin: Float?
    /// Reranker filters (they apply when `Miner.mine` is given a reranker).
    public var maxRerankerScore: Float?
    public var rerankerRelativeMargin: Float?
    public var samplingStrategy = Strategy.top
    public var includePositives = false
    public var outputFormat = OutputFormat.triplet
    public var outputScores = false
    public var seed: UInt64 = 12
    public var anchorColumn = "anchor"
    public var positiveColumn = "positive"
    public init() {}
}

public struct MiningSummary: CustomStringConvertible {
    public var queries = 0, uniqueQueries = 0, corpus = 0, rangeMax = 0
    /// Rows written; nil when the selection was not written out (negatives refreshed in training).
    public var rows: Int?
    public var removed: [(String, Int)] = []
    public var candidates = 0
    public var negativesPerQuery: [Int] = []
    public var positiveScores: [Float] = [], negativeScores: [Float] = [], differences: [Float] = []
    /// The reranker's scores of the positives and of the candidates it judged (with a reranker).
    public var positiveRerankerScores: [Float] = [], candidateRerankerScores: [Float] = []

    static func quartiles(_ xs: [Float]) -> String {
        guard !xs.isEmpty else { return "n/a" }
        let s = xs.sorted()
        func q(_ p: Double) -> Float {  // linear interpolation, as torch.quantile
            let x = p * Double(s.count - 1), lo = Int(x.rounded(.down)), hi = min(lo + 1, s.count - 1)
            return s[lo] + Float(x - Double(lo)) * (s[hi] - s[lo])
        }
        return String(format: "mean %.4f  min %.4f  25%% %.4f  50%% %.4f  75%% %.4f  max %.4f",
                      xs.reduce(0, +) / Float(xs.count), s[0], q(0.25), q(0.5), q(0.75), s[s.count - 1])
    }

    public var description: String {
        var lines = ["mined \(rows.map { "\($0) rows" } ?? "negatives") for \(uniqueQueries) unique queries (\(queries) pairs) over \(corpus) documents; range_max \(rangeMax)"]
        let per = negativesPerQuery
        if !per.isEmpty {
            lines.append(String(format: "negatives per query: mean %.2f, min %d, max %d, %d queries without any",
                                Double(per.reduce(0, +)) / Double(per.count), per.min()!, per.max()!, per.filter { $0 == 0 }.count))
        }
        for (filter, n) in removed {
            lines.append(String(format: "removed by %@: %d of %d candidates (%.1f%%)", filter, n, candidates, 100 * Double(n) / Double(max(candidates, 1))))
        }
        lines.append("positive scores: " + Self.quartiles(positiveScores))
        lines.append("negative scores: " + Self.quartiles(negativeScores))
        lines.append("positive − negative: " + Self.quartiles(differences))
        if !positiveRerankerScores.isEmpty {
            lines.append("reranker, positives: " + Self.quartiles(positiveRerankerScores))
            lines.append("reranker, candidates judged: " + Self.quartiles(candidateRerankerScores))
        }
        return lines.joined(separator: "\n")
    }
}

public enum Miner {
    /// Scores (query, document) pairs, one score per pair in order, higher meaning more relevant.
    public typealias PairScorer = ([(query: String, document: String)]) throws -> [Float]

    /// Mines negatives for (anchor, positive) pairs. `embedQueries` / `embedDocuments` return
    /// row-major vectors (any norm; cosine is used). `rerank`, when given, scores the positives
    /// and every candidate left after the similarity filters in one call (so a caller can shard
    /// it); the reranker filters then apply. Rows come back as ordered (column, value) lists.
    public static func mine(anchors: [String], positives: [String], extraCorpus: [String]?, dim: Int,
                            embedQueries: ([String]) throws -> [Float], embedDocuments: ([String]) throws -> [Float],
                            rerank: PairScorer? = nil,
                            options o: MiningOptions) throws -> (rows: [[(String, JSONValue)]], summary: MiningSummary) {
        let selection = try select(anchors: anchors, positives: positives, extraCorpus: extraCorpus, dim: dim,
                                   embedQueries: embedQueries, embedDocuments: embedDocuments, rerank: rerank, options: o)
        return rows(selection, options: o)
    }

    /// What mining chose, before it is written out as rows.
    public struct Selection {
        /// Distinct anchors in first-appearance order, and the distinct documents (extra corpus, then positives).
        public var queries: [String], corpus: [String]
        /// Per query: its positives' corpus indices and cosine scores.
        public var positiveDocs: [[Int]], positiveScores: [[Float]]
        /// Per query: up to num_negatives candidates, best first; a score of −∞ marks a slot no candidate filled.
        public var chosen: [[(index: Int, score: Float)]]
        public var summary: MiningSummary

        /// Per query: the texts of its negatives, best first.
        public var negatives: [[String]] { chosen.map { $0.filter { $0.score != -.infinity }.map { corpus[$0.index] } } }
    }

    /// The negatives each distinct anchor gets (see `mine`).
    public static func select(anchors: [String], positives: [String], extraCorpus: [String]?, dim: Int,
                              embedQueries: ([String]) throws -> [Float], embedDocuments: ([String]) throws -> [Float],
                              rerank: PairScorer? = nil, options o: MiningOptions) throws -> Selection {
        guard anchors.count == positives.count, !anchors.isEmpty else { throw FormatError(file: "mine", "no (anchor, positive) pairs") }
        guard o.numNegatives >= 1 else { throw FormatError(file: "--num_negatives", "must be at least 1, got \(o.numNegatives)") }
        // Unique queries in first-appearance order; their positives, deduplicated.
        var queries = [String](), queryIndex = [String: Int]()
        for a in anchors where queryIndex[a] == nil { queryIndex[a] = queries.count; queries.append(a) }
        var corpus = [String](), corpusIndex = [String: Int]()
        for d in (extraCorpus ?? []) + positives where corpusIndex[d] == nil { corpusIndex[d] = corpus.count; corpus.append(d) }
        var positiveDocs = [[Int]](repeating: [], count: queries.count)
        for (a, p) in zip(anchors, positives) {
            let qi = queryIndex[a]!, di = corpusIndex[p]!
            if !positiveDocs[qi].contains(di) { positiveDocs[qi].append(di) }
        }
        // max_positives counts (anchor, positive) rows per anchor, duplicates included, as pandas' groupby does.
        var rowsPerAnchor = [String: Int]()
        for a in anchors { rowsPerAnchor[a, default: 0] += 1 }
        let maxPositives = rowsPerAnchor.values.max() ?? 1
        let rerankerFilters = rerank != nil && (o.maxRerankerScore != nil || o.rerankerRelativeMargin != nil)
        let filtersSet = o.absoluteMargin != nil || o.relativeMargin != nil || o.maxScore != nil || rerankerFilters
        let rangeMax = o.rangeMax ?? (o.rangeMin + o.numNegatives * (filtersSet ? 10 : 1) + maxPositives)
        guard o.rangeMin >= 0 else { throw FormatError(file: "--range_min", "must be non-negative, got \(o.rangeMin)") }
        guard o.rangeMin < rangeMax else {
            throw FormatError(file: "--range_min", "must be smaller than range_max (got range_min=\(o.rangeMin), range_max=\(rangeMax))")
        }
        guard o.numNegatives <= rangeMax - o.rangeMin else {
            throw FormatError(file: "--num_negatives", "cannot mine \(o.numNegatives) negatives: only \(rangeMax - o.rangeMin) candidates remain between range_min=\(o.rangeMin) and range_max=\(rangeMax)")
        }

        var q = try embedQueries(queries), c = try embedDocuments(corpus)
        q.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: queries.count, c: dim) }
        c.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: corpus.count, c: dim) }
        let width = rangeMax + maxPositives
        let top = exactTopK(queries: q, corpus: c, dim: dim, k: width, normalize: false)
        func cosine(_ qi: Int, _ di: Int) -> Float {
            var s: Float = 0
            for i in 0..<dim { s += q[qi * dim + i] * c[di * dim + i] }
            return s
        }
        var summary = MiningSummary()
        summary.queries = anchors.count; summary.uniqueQueries = queries.count; summary.corpus = corpus.count; summary.rangeMax = rangeMax
        summary.candidates = queries.count * width
        var removed = [String: Int]()
        var pools = [[(index: Int, score: Float)]]()   // per query: the ranked candidates after range_min
        var positiveScores = [[Float]]()
        for qi in queries.indices {
            var cand = top[qi].map { (index: $0.index, score: $0.score) }
            while cand.count < width { cand.append((-1, -.infinity)) }
            let posScores = positiveDocs[qi].map { cosine(qi, $0) }
            positiveScores.append(posScores)
            let minPositive = posScores.min()!
            func drop(_ name: String, _ test: (Float) -> Bool) {
                for j in cand.indices where cand[j].score != -.infinity && test(cand[j].score) {
                    cand[j].score = -.infinity
                    removed[name, default: 0] += 1
                }
            }
            if !o.includePositives {
                for j in cand.indices where positiveDocs[qi].contains(cand[j].index) { cand[j].score = -.infinity }
            }
            if let m = o.absoluteMargin { drop("absolute_margin") { $0 + m > minPositive } }
            if let m = o.relativeMargin { drop("relative_margin") { $0 > minPositive - abs(minPositive) * m } }
            if let m = o.maxScore { drop("max_score") { $0 > m } }
            if let m = o.minScore { drop("min_score") { $0 < m } }
            // The best range_max (stable: equal scores keep their ranking order), minus the first range_min.
            pools.append(Array(cand.enumerated().sorted { $0.element.score != $1.element.score ? $0.element.score > $1.element.score : $0.offset < $1.offset }
                .prefix(rangeMax).map(\.element).dropFirst(o.rangeMin)))
        }
        if let rerank, rerankerFilters {
            try applyRerankerFilters(rerank, queries: queries, corpus: corpus, positiveDocs: positiveDocs, pools: &pools,
                                     options: o, removed: &removed, summary: &summary)
        }
        var chosen = [[(index: Int, score: Float)]]()   // per query: up to numNegatives finite negatives, best first
        var rng = SplitMix64(seed: o.seed)
        for ranked in pools {
            var picked: [(index: Int, score: Float)]
            switch o.samplingStrategy {
            case .top: picked = Array(ranked.prefix(o.numNegatives))
            case .random:
                let pool = Array(ranked)
                let options = max(pool.filter { $0.score != -.infinity }.count, o.numNegatives)
                var idx = Array(0..<min(options, pool.count))
                for i in stride(from: idx.count - 1, to: 0, by: -1) { idx.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
                picked = idx.prefix(o.numNegatives).map { pool[$0] }.sorted { $0.score > $1.score }
            }
            chosen.append(picked)
        }
        summary.removed = ["absolute_margin", "relative_margin", "max_score", "min_score", "max_reranker_score", "reranker_relative_margin"]
            .compactMap { k in removed[k].map { (k, $0) } }
        for qi in queries.indices {
            let finite = chosen[qi].filter { $0.score != -.infinity }
            summary.negativesPerQuery.append(finite.count)
            for ps in positiveScores[qi] {
                summary.positiveScores.append(ps)
                summary.negativeScores += finite.map(\.score)
                summary.differences += finite.map { ps - $0.score }
            }
        }
        return Selection(queries: queries, corpus: corpus, positiveDocs: positiveDocs, positiveScores: positiveScores,
                         chosen: chosen, summary: summary)
    }

    /// A selection written out in `o.outputFormat`, in sentence-transformers' row order.
    static func rows(_ selection: Selection, options o: MiningOptions) -> (rows: [[(String, JSONValue)]], summary: MiningSummary) {
        let queries = selection.queries, corpus = selection.corpus, positiveDocs = selection.positiveDocs
        let positiveScores = selection.positiveScores, chosen = selection.chosen
        var summary = selection.summary
        var format = o.outputFormat
        if o.includePositives { format = format == .msSwift ? .msSwift : .nTuple }
        var rows = [[(String, JSONValue)]]()
        let a = o.anchorColumn, p = o.positiveColumn
        func score(_ x: Float) -> JSONValue { .double(Double(x)) }
        for qi in queries.indices {
            let finite = chosen[qi].filter { $0.score != -.infinity }
            for (pi, doc) in positiveDocs[qi].enumerated() {
                let ps = positiveScores[qi][pi]
                switch format {
                case .triplet:
                    for n in finite {
                        var row: [(String, JSONValue)] = [(a, .string(queries[qi])), (p, .string(corpus[doc])), ("negative", .string(corpus[n.index]))]
                        if o.outputScores { row.append(("scores", .array([score(ps), score(n.score)]))) }
                        rows.append(row)
                    }
                case .nTuple:
                    guard chosen[qi].count == o.numNegatives, finite.count == o.numNegatives else { continue }
                    var row: [(String, JSONValue)] = [(a, .string(queries[qi])), (p, .string(corpus[doc]))]
                    for (k, n) in finite.enumerated() { row.append(("negative_\(k + 1)", .string(corpus[n.index]))) }
                    if o.outputScores { row.append(("scores", .array([score(ps)] + finite.map { score($0.score) }))) }
                    rows.append(row)
                case .labeledList:
                    guard !finite.isEmpty else { continue }
                    var row: [(String, JSONValue)] = [(a, .string(queries[qi])),
                                                      (p, .array([.string(corpus[doc])] + finite.map { .string(corpus[$0.index]) }))]
                    row.append(o.outputScores ? ("scores", .array([score(ps)] + finite.map { score($0.score) }))
                                              : ("labels", .array([.int(1)] + finite.map { _ in .int(0) })))
                    rows.append(row)
                case .msSwift:
                    guard !finite.isEmpty else { continue }
                    rows.append([("query", .string(queries[qi])), ("response", .string(corpus[doc])),
                                 ("rejected_response", .array(finite.map { .string(corpus[$0.index]) }))])
                case .labeledPair:
                    rows.append([(a, .string(queries[qi])), (p, .string(corpus[doc])), o.outputScores ? ("score", score(ps)) : ("label", .int(1))])
                }
            }
            if format == .labeledPair {
                for n in finite {
                    rows.append([(a, .string(queries[qi])), (p, .string(corpus[n.index])), o.outputScores ? ("score", score(n.score)) : ("label", .int(0))])
                }
            }
        }
        summary.rows = rows.count
        return (rows, summary)
    }
}

extension Miner {
    /// Scores each query's positives and finite pool candidates with `rerank` (one call for all
    /// queries) and removes the candidates the reranker judges too relevant: above
    /// max_reranker_score, or above the lowest positive's reranker score less
    /// reranker_relative_margin of it.
    static func applyRerankerFilters(_ rerank: PairScorer, queries: [String], corpus: [String], positiveDocs: [[Int]],
                                     pools: inout [[(index: Int, score: Float)]], options o: MiningOptions,
                                     removed: inout [String: Int], summary: inout MiningSummary) throws {
        var pairs = [(query: String, document: String)]()
        for qi in queries.indices {
            for d in positiveDocs[qi] { pairs.append((queries[qi], corpus[d])) }
            for c in pools[qi] where c.score != -.infinity { pairs.append((queries[qi], corpus[c.index])) }
        }
        let scores = try rerank(pairs)
        guard scores.count == pairs.count else {
            throw FormatError("the reranker returned \(scores.count) scores for \(pairs.count) pairs")
        }
        var next = 0
        for qi in queries.indices {
            let positive = scores[next..<(next + positiveDocs[qi].count)]
            next += positiveDocs[qi].count
            summary.positiveRerankerScores += positive
            let lowestPositive = positive.min()!
            for j in pools[qi].indices where pools[qi][j].score != -.infinity {
                let s = scores[next]
                next += 1
                summary.candidateRerankerScores.append(s)
                let filter: String?
                if let m = o.maxRerankerScore, s > m { filter = "max_reranker_score" }
                else if let m = o.rerankerRelativeMargin, s > lowestPositive - abs(lowestPositive) * m { filter = "reranker_relative_margin" }
                else { filter = nil }
                if let filter {
                    pools[qi][j].score = -.infinity
                    removed[filter, default: 0] += 1
                }
            }
            // The removed move behind the rest, which keep their similarity order.
            pools[qi] = pools[qi].filter { $0.score != -.infinity } + pools[qi].filter { $0.score == -.infinity }
        }
    }
}

extension Miner {
    /// `reranker` as the pair scorer `select` calls, each rank scoring a contiguous share of the
    /// pairs (consecutive pairs of one query in one call) and every rank receiving all scores.
    public static func pairScorer(_ reranker: Reranker, communicator: Communicator) -> PairScorer {
        { pairs in
            try communicator.gatherRows(count: pairs.count, width: 1) { mine in
                var scores = [Float](), start = mine.lowerBound
                while start < mine.upperBound {
                    var end = start + 1
                    while end < mine.upperBound && pairs[end].query == pairs[start].query { end += 1 }
                    scores += try reranker.relevance(query: pairs[start].query, documents: pairs[start..<end].map(\.document))
                    start = end
                }
                return scores
            }
        }
    }
}
