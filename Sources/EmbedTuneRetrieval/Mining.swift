import EmbedTuneData
import EmbedTuneModels
import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// Hard-negative mining as sentence-transformers' `mine_hard_negatives` does it (exact search,
/// cosine): candidates are the top (range_max + max positives) documents per query; positives,
/// then candidates too close to the positive (absolute / relative margin), above max_score or
/// below min_score are removed; of the best range_max that remain, the first range_min are
/// skipped and num_negatives are taken from the top (or sampled).
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
    public var queries = 0, uniqueQueries = 0, corpus = 0, rangeMax = 0, rows = 0
    public var removed: [(String, Int)] = []
    public var candidates = 0
    public var negativesPerQuery: [Int] = []
    public var positiveScores: [Float] = [], negativeScores: [Float] = [], differences: [Float] = []

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
        var lines = ["mined \(rows) rows for \(uniqueQueries) unique queries (\(queries) pairs) over \(corpus) documents; range_max \(rangeMax)"]
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
        return lines.joined(separator: "\n")
    }
}

public enum Miner {
    /// Mines negatives for (anchor, positive) pairs. `embedQueries` / `embedDocuments` return
    /// row-major vectors (any norm; cosine is used). Rows come back as ordered (column, value) lists.
    public static func mine(anchors: [String], positives: [String], extraCorpus: [String]?, dim: Int,
                            embedQueries: ([String]) throws -> [Float], embedDocuments: ([String]) throws -> [Float],
                            options o: MiningOptions) throws -> (rows: [[(String, JSONValue)]], summary: MiningSummary) {
        guard anchors.count == positives.count, !anchors.isEmpty else { throw FormatError(file: "mine", "no (anchor, positive) pairs") }
        guard o.numNegatives >= 1 else { throw FormatError(file: "--num_negatives", "must be at least 1, got \(o.numNegatives)") }
        var format = o.outputFormat
        if o.includePositives { format = format == .msSwift ? .msSwift : .nTuple }
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
        let filtersSet = o.absoluteMargin != nil || o.relativeMargin != nil || o.maxScore != nil
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
        var chosen = [[(index: Int, score: Float)]]()   // per query: up to numNegatives finite negatives, best first
        var positiveScores = [[Float]]()
        var rng = SplitMix64(seed: o.seed)
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
            let ranked = cand.enumerated().sorted { $0.element.score != $1.element.score ? $0.element.score > $1.element.score : $0.offset < $1.offset }
                .prefix(rangeMax).map(\.element).dropFirst(o.rangeMin)
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
        summary.removed = ["absolute_margin", "relative_margin", "max_score", "min_score"].compactMap { k in removed[k].map { (k, $0) } }

        // Output rows, per format, in sentence-transformers' order.
        var rows = [[(String, JSONValue)]]()
        let a = o.anchorColumn, p = o.positiveColumn
        func score(_ x: Float) -> JSONValue { .double(Double(x)) }
        for qi in queries.indices {
            let finite = chosen[qi].filter { $0.score != -.infinity }
            summary.negativesPerQuery.append(finite.count)
            for (pi, doc) in positiveDocs[qi].enumerated() {
                let ps = positiveScores[qi][pi]
                summary.positiveScores.append(ps)
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
                for n in finite {
                    summary.negativeScores.append(n.score)
                    summary.differences.append(ps - n.score)
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
