import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// Exact search over a quantised corpus, then float rescoring, with sentence-transformers'
/// `semantic_search_faiss` / `semantic_search_usearch` semantics:
///
/// 1. the float queries are quantised to the corpus precision (int8 / uint8 within the corpus's
///    calibration ranges) and every corpus row is scored in that space — the integer dot product
///    of the codes for int8 / uint8, the number of agreeing bits (dim − Hamming distance) for
///    binary / ubinary;
/// 2. with a rescore multiplier m, the best k·m rows are rescored by the float query against
///    the rows as stored (`decodedRow`: int8 / uint8 dequantised to the bottom of their step,
///    binary / ubinary unpacked to 0/1) and the best k kept.
///
/// The quantised corpus is all the search needs: no float copy of it is kept.
public struct QuantizedSearch {
    /// What the float queries rescore the candidates against.
    public enum Rescoring: String, CaseIterable, Sendable {
        /// The embeddings before quantisation (kept on disk beside the codes; only candidates are read).
        case float
        /// The stored codes, decoded (sentence-transformers' semantics: no float corpus needed).
        case stored
    }

    public let corpus: QuantizedEmbeddings
    /// The ranges the corpus was quantised with (int8 / uint8); the queries use the same.
    public let ranges: QuantizationRanges?
    /// Subtracted from every row before it was quantised (the corpus mean, for binary codes of
    /// embeddings that share a large common direction); the queries' first stage subtracts it
    /// too. Rescoring uses the queries as given.
    public let centre: [Float]?

    public init(corpus: QuantizedEmbeddings, ranges: QuantizationRanges?, centre: [Float]? = nil) throws {
        guard corpus.precision != .float32 else { throw FormatError("QuantizedSearch needs a quantised corpus, not float32") }
        if corpus.precision.needsRanges {
            guard let ranges, ranges.minima.count == corpus.dim else {
                throw FormatError("\(corpus.precision.rawValue) search needs the corpus's \(corpus.dim)-dimensional calibration ranges")
            }
        }
        if let centre, centre.count != corpus.dim {
            throw FormatError("the centre has \(centre.count) dimensions, the corpus \(corpus.dim)")
        }
        self.corpus = corpus
        self.ranges = ranges
        self.centre = centre
    }

    /// Row `r` as the values rescoring multiplies the float query with: int8 / uint8 codes back in
    /// the float range, at the bottom of their step ((code [+ 128]) · step + min, as
    /// sentence-transformers' dequantisation),
    /// binary / ubinary bits as 0 or 1.
    public func decodedRow(_ r: Int) -> [Float] {
        var out = [Float](repeating: 0, count: corpus.dim)
        let base = r * corpus.stride
        switch corpus.precision {
        case .int8, .uint8:
            let offset: Float = corpus.precision.isSigned ? 128 : 0
            for d in 0..<corpus.dim {
                let code = corpus.precision.isSigned ? Float(Int8(bitPattern: corpus.bytes[base + d])) : Float(corpus.bytes[base + d])
                out[d] = (code + offset) * ranges!.step(d) + ranges!.minima[d]
            }
        case .binary, .ubinary:
            let bits = packedBits(row: r)
            for d in 0..<corpus.dim where bits[bits.startIndex + d / 8] & UInt8(0x80 >> (d % 8)) != 0 { out[d] = 1 }
        case .float32:
            break
        }
        return out
    }

    /// The row's packed bits (binary stores byte − 128: the bits are the unsigned byte's).
    private func packedBits(row r: Int) -> ArraySlice<UInt8> {
        let slice = corpus.bytes[(r * corpus.stride)..<((r + 1) * corpus.stride)]
        return corpus.precision == .binary ? ArraySlice(slice.map { $0 ^ 0x80 }) : slice
    }

    /// Rows as first-stage float vectors whose dot products are the quantised scores: int8 / uint8
    /// codes as their integer values (int8 sums stay exact in float up to 1024 dimensions; uint8's
    /// larger ones round in the last bits, which can only reorder near-ties), binary bits as ±1
    /// (dot = dim − 2·Hamming: the order of agreeing bits).
    private static func firstStageVectors(_ q: QuantizedEmbeddings) -> [Float] {
        var out = [Float](repeating: 0, count: q.rows * q.dim)
        for r in 0..<q.rows {
            switch q.precision {
            case .int8, .uint8:
                let ints = q.integers(row: r)
                for d in 0..<q.dim { out[r * q.dim + d] = Float(ints[d]) }
            case .binary, .ubinary:
                let flip: UInt8 = q.precision == .binary ? 0x80 : 0
                for d in 0..<q.dim {
                    let byte = q.bytes[r * q.stride + d / 8] ^ flip
                    out[r * q.dim + d] = byte & UInt8(0x80 >> (d % 8)) != 0 ? 1 : -1
                }
            case .float32:
                break
            }
        }
        return out
    }

    /// The best `topK` corpus rows for each float query (rows of `corpus.dim`), best first. With
    /// `rescoreMultiplier` m ≥ 1 the first stage keeps k·m rows and the scores returned are the
    /// float rescores; without it, the first stage's own scores. `floatCorpus` (rows of `corpus.dim`,
    /// the embeddings before quantisation, e.g. memory-mapped from disk) replaces the decoded rows
    /// in rescoring: only the k·m candidates' rows are read.
    public func search(queries: [Float], topK: Int, rescoreMultiplier: Int?, floatCorpus: [Float]? = nil) throws -> [RetrievalEvaluator.Ranking] {
        let dim = corpus.dim
        guard queries.count % dim == 0 else { throw FormatError("\(queries.count) query values are not rows of \(dim)") }
        if let floatCorpus, floatCorpus.count != corpus.rows * dim {
            throw FormatError("the float corpus has \(floatCorpus.count) values, not \(corpus.rows) rows of \(dim)")
        }
        let nq = queries.count / dim
        let quantizedQueries = try QuantizedEmbeddings(centredRows(queries, centre), rows: nq, dim: dim, precision: corpus.precision, ranges: ranges)
        let depth = topK * max(rescoreMultiplier ?? 1, 1)
        let firstStage = exactTopK(queries: Self.firstStageVectors(quantizedQueries), corpus: Self.firstStageVectors(corpus), dim: dim,
                                   k: depth, normalize: false)
        guard rescoreMultiplier != nil else { return firstStage.map { Array($0.prefix(topK)) } }
        var decoded = [Int: [Float]]()
        return firstStage.enumerated().map { qi, hits in
            rescored(query: queries[(qi * dim)..<((qi + 1) * dim)], candidates: hits.map(\.index), topK: topK) { r in
                if let row = decoded[r] { return row }
                let row = floatCorpus.map { Array($0[(r * dim)..<((r + 1) * dim)]) } ?? decodedRow(r)
                decoded[r] = row
                return row
            }
        }
    }
}

/// The best `topK` of `candidates` by the dot product of `query` with each one's `row`, best
/// first; equal scores keep the candidates' order (the first stage's).
public func rescored(query: ArraySlice<Float>, candidates: [Int], topK: Int, row: (Int) -> [Float]) -> RetrievalEvaluator.Ranking {
    let scored = candidates.map { c -> (index: Int, score: Float) in
        var dot: Float = 0
        for (d, v) in zip(query.indices, row(c)) { dot += query[d] * v }
        return (c, dot)
    }
    return Array(scored.enumerated().sorted { $0.element.score != $1.element.score ? $0.element.score > $1.element.score : $0.offset < $1.offset }
        .map(\.element).prefix(topK))
}

/// Each row (of `centre.count` values) minus `centre`; the rows as they are without one.
public func centredRows(_ rows: [Float], _ centre: [Float]?) -> [Float] {
    guard let centre else { return rows }
    var out = rows
    for i in 0..<out.count { out[i] -= centre[i % centre.count] }
    return out
}
