import EmbedTuneFormats
import Foundation

/// SentencePiece's Unigram model as HF tokenizers runs it: Viterbi over a lattice of the
/// vocabulary's pieces scored in Double (many scores do not survive Float, and near-ties decide
/// ids); a character no single-character piece covers becomes an [UNK] node scored
/// min_score − 10; consecutive unknowns fuse; with byte fallback an unknown becomes <0xXX> pieces.
public final class Unigram: TokenizerModel, @unchecked Sendable {
    public let pieces: [String]
    public let scores: [Double]
    public let unkID: Int32
    public let byteFallback: Bool
    let pieceToID: [String: Int32]
    let minScore: Double
    /// Byte trie over the pieces' UTF-8: (node << 8 | byte) → child node; node → piece id.
    var trieChildren: [UInt64: Int32] = [:]
    var trieValue: [Int32] = [-1]
    var byteToID: [Int32] = []

    public init(pieces: [(String, Double)], unkID: Int, byteFallback: Bool, file: String) throws {
        guard unkID >= 0 && unkID < pieces.count else {
            throw FormatError(file: file, item: "model.unk_id", "\(unkID) is not a piece id (vocabulary of \(pieces.count))")
        }
        self.pieces = pieces.map(\.0)
        scores = pieces.map(\.1)
        self.unkID = Int32(unkID)
        self.byteFallback = byteFallback
        var p2i = [String: Int32]()
        for (i, p) in pieces.enumerated() where p2i[p.0] == nil { p2i[p.0] = Int32(i) }
        pieceToID = p2i
        minScore = scores.min() ?? 0
        for (i, p) in pieces.enumerated() where !p.0.isEmpty { insert(Array(p.0.utf8), id: Int32(i)) }
        if byteFallback {
            byteToID = (0..<256).map { p2i[String(format: "<0x%02X>", $0)] ?? -1 }
        }
    }

    private func insert(_ bytes: [UInt8], id: Int32) {
        var node: Int32 = 0
        for b in bytes {
            let key = UInt64(node) << 8 | UInt64(b)
            if let child = trieChildren[key] { node = child } else {
                let child = Int32(trieValue.count)
                trieValue.append(-1)
                trieChildren[key] = child
                node = child
            }
        }
        if trieValue[Int(node)] < 0 { trieValue[Int(node)] = id }
    }

    public var vocabularySize: Int { pieces.count }

    public func bytes(of id: Int32) -> [UInt8]? {
        id >= 0 && Int(id) < pieces.count ? Array(pieces[Int(id)].utf8) : nil
    }

    public func encode(_ piece: [Unicode.Scalar]) -> [Int32] {
        var bytes = [UInt8]()
        var charStarts = [Int]()
        for s in piece { charStarts.append(bytes.count); bytes.append(contentsOf: UTF8.encode(s)!) }
        let n = bytes.count
        if n == 0 { return [] }
        var charLength = [Int](repeating: 0, count: n)
        for (i, start) in charStarts.enumerated() { charLength[start] = (i + 1 < charStarts.count ? charStarts[i + 1] : n) - start }
        // best[end] = (score, piece id, start); id -2 = unreached.
        var bestScore = [Double](repeating: 0, count: n + 1)
        var bestID = [Int32](repeating: -2, count: n + 1)
        var bestStart = [Int](repeating: 0, count: n + 1)
        bestID[0] = -1
        let unkScore = minScore - 10
        for start in charStarts where bestID[start] != -2 {
            let base = bestScore[start]
            var hasSingle = false
            var node: Int32 = 0
            var pos = start
            while pos < n, let child = trieChildren[UInt64(node) << 8 | UInt64(bytes[pos])] {
                node = child
                pos += 1
                let id = trieValue[Int(node)]
                if id >= 0 {
                    let candidate = base + scores[Int(id)]
                    if bestID[pos] == -2 || candidate > bestScore[pos] {
                        bestScore[pos] = candidate; bestID[pos] = id; bestStart[pos] = start
                    }
                    if pos - start == charLength[start] { hasSingle = true }
                }
            }
            if !hasSingle {
                let end = start + charLength[start]
                let candidate = base + unkScore
                if bestID[end] == -2 || candidate > bestScore[end] {
                    bestScore[end] = candidate; bestID[end] = unkID; bestStart[end] = start
                }
            }
        }
        // Backtrack, fusing consecutive unknowns into one span.
        var spans = [(id: Int32, start: Int, end: Int)]()
        var end = n
        while end > 0 {
            let id = bestID[end], start = bestStart[end]
            if id == unkID, let last = spans.last, last.id == unkID, last.start == end {
                spans[spans.count - 1] = (unkID, start, last.end)
            } else {
                spans.append((id, start, end))
            }
            end = start
        }
        var out = [Int32]()
        for span in spans.reversed() {
            if span.id == unkID && byteFallback {
                let ids = bytes[span.start..<span.end].map { byteToID[Int($0)] }
                if !ids.contains(-1) { out += ids; continue }
            }
            out.append(span.id)
        }
        return out
    }
}

/// Metaspace: spaces become "▁", a "▁" is prepended (always, or only to the text's first
/// segment), and with `split` each "▁" starts a new piece.
public struct MetaspacePreTokenizer: PreTokenizer {
    public enum Prepend: String, Sendable { case always, first, never }
    public let replacement: Unicode.Scalar
    public let prepend: Prepend
    public let split: Bool

    public func split(_ pieces: [[Unicode.Scalar]], isFirstSegment: Bool) -> [[Unicode.Scalar]] {
        var out = [[Unicode.Scalar]]()
        for (i, piece) in pieces.enumerated() {
            var p = piece.map { $0 == " " ? replacement : $0 }
            let wantsPrefix = prepend == .always || (prepend == .first && isFirstSegment && i == 0)
            if wantsPrefix && p.first != replacement { p.insert(replacement, at: 0) }
            guard split else { out.append(p); continue }
            var current = [Unicode.Scalar]()
            for s in p {
                if s == replacement && !current.isEmpty { out.append(current); current = [] }
                current.append(s)
            }
            if !current.isEmpty { out.append(current) }
        }
        return out
    }
}

/// SentencePiece's precompiled charsmap (tokenizer.json `Precompiled`): a darts-clone double
/// array over UTF-8 bytes whose values index NUL-terminated replacement strings. Applied per
/// grapheme cluster under 6 bytes (first — shortest — prefix match replaces the whole cluster),
/// otherwise per character: HF's exact, admittedly odd, rule.
public struct PrecompiledNormalizer: Normalizer {
    let units: [UInt32]
    let normalized: [UInt8]

    public init(base64: String, file: String, path: String) throws {
        guard let data = Data(base64Encoded: base64) else {
            throw FormatError(file: file, item: "\(path).precompiled_charsmap", "is not valid base64")
        }
        let bytes = [UInt8](data)
        guard bytes.count >= 4 else { throw FormatError(file: file, item: "\(path).precompiled_charsmap", "is truncated") }
        let trieSize = Int(UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24)
        guard trieSize % 4 == 0, 4 + trieSize <= bytes.count, trieSize >= 4 else {
            throw FormatError(file: file, item: "\(path).precompiled_charsmap", "trie size \(trieSize) does not fit the \(bytes.count)-byte blob")
        }
        var units = [UInt32](repeating: 0, count: trieSize / 4)
        for i in 0..<units.count {
            let o = 4 + 4 * i
            units[i] = UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
        }
        self.units = units
        normalized = Array(bytes[(4 + trieSize)...])
    }

    /// Values of every prefix of `key` present in the trie, shortest first.
    func commonPrefixSearch(_ key: [UInt8]) -> [Int] {
        @inline(__always) func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }
        var results = [Int]()
        var pos = 0
        guard !units.isEmpty else { return results }
        pos ^= offset(units[0])
        for c in key {
            if c == 0 { break }
            pos ^= Int(c)
            guard pos < units.count else { return results }
            let unit = units[pos]
            if unit & ((1 << 31) | 0xFF) != UInt32(c) { return results }
            pos ^= offset(unit)
            if (unit >> 8) & 1 == 1 {
                guard pos < units.count else { return results }
                results.append(Int(units[pos] & ((1 << 31) - 1)))
            }
        }
        return results
    }

    func transform(_ chunk: [UInt8]) -> [UInt8]? {
        guard let start = commonPrefixSearch(chunk).first, start <= normalized.count else { return nil }
        var end = start
        while end < normalized.count && normalized[end] != 0 { end += 1 }
        return Array(normalized[start..<end])
    }

    public func normalize(_ text: String) -> String {
        var out = [UInt8]()
        out.reserveCapacity(text.utf8.count)
        for grapheme in text {
            let g = Array(String(grapheme).utf8)
            if g.count < 6, let norm = transform(g) { out += norm; continue }
            for s in grapheme.unicodeScalars {
                let c = Array(UTF8.encode(s)!)
                out += transform(c) ?? c
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
