import EmbedTuneFormats
import Foundation

/// A token that is matched in the raw text before any normalisation or splitting
/// (tokenizer.json `added_tokens`).
public struct AddedToken: Sendable, Equatable {
    public let id: Int32
    public let content: String
    public let special: Bool
    public let lstrip: Bool
    public let rstrip: Bool
    public let normalized: Bool

    public init(id: Int32, content: String, special: Bool, lstrip: Bool = false, rstrip: Bool = false, normalized: Bool = false) {
        self.id = id
        self.content = content
        self.special = special
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.normalized = normalized
    }
}

/// The model stage of the pipeline: one pre-tokenized piece → ids.
public protocol TokenizerModel: Sendable {
    func encode(_ piece: [Unicode.Scalar]) -> [Int32]
    /// Byte content of a token for decoding (byte-level) or its text as UTF-8.
    func bytes(of id: Int32) -> [UInt8]?
    var vocabularySize: Int { get }
}

extension ByteLevelBPE: TokenizerModel {
    public func encode(_ piece: [Unicode.Scalar]) -> [Int32] {
        var utf8 = [UInt8]()
        utf8.reserveCapacity(piece.count * 3)
        for s in piece { utf8.append(contentsOf: UTF8.encode(s)!) }
        return encode(utf8)
    }
    public func bytes(of id: Int32) -> [UInt8]? {
        id >= 0 && Int(id) < tokenBytes.count ? tokenBytes[Int(id)] : nil
    }
}

/// Hugging Face's tokenizer pipeline: added tokens → normalizer → pre-tokenizer → model →
/// post-processor, with truncation and padding under our own options (presets baked into a
/// tokenizer.json's `truncation`/`padding` are ignored on purpose).
public final class Tokenizer: @unchecked Sendable {
    public enum Side: String, Sendable { case left, right }

    public let normalizer: Normalizer?
    public let preTokenizer: PreTokenizer?
    public let model: TokenizerModel
    public let postProcessor: TemplateProcessor?
    public let addedTokens: [AddedToken]
    /// How ids turn back into text (tokenizer.json `decoder`).
    public enum Decoder: Sendable {
        case byteLevel
        case wordPiece(prefix: String)
        case metaspace(replacement: String)
    }

    public let decoder: Decoder
    public var paddingSide: Side
    public var padID: Int32
    public let source: String

    private let addedByID: [Int32: AddedToken]
    private let addedByContent: [String: AddedToken]
    /// First scalar → added tokens starting with it, longest first (leftmost-longest matching).
    private let addedByFirstScalar: [UInt32: [(scalars: [Unicode.Scalar], token: AddedToken)]]

    public init(normalizer: Normalizer?, preTokenizer: PreTokenizer?, model: TokenizerModel,
                postProcessor: TemplateProcessor?, addedTokens: [AddedToken], decoder: Decoder = .byteLevel,
                paddingSide: Side, padID: Int32, source: String) {
        self.decoder = decoder
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.model = model
        self.postProcessor = postProcessor
        self.addedTokens = addedTokens
        self.paddingSide = paddingSide
        self.padID = padID
        self.source = source
        addedByID = Dictionary(addedTokens.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        addedByContent = Dictionary(addedTokens.map { ($0.content, $0) }, uniquingKeysWith: { a, _ in a })
        var byFirst = [UInt32: [(scalars: [Unicode.Scalar], token: AddedToken)]]()
        for t in addedTokens where !t.content.isEmpty {
            let scalars = Array(t.content.unicodeScalars)
            byFirst[scalars[0].value, default: []].append((scalars, t))
        }
        addedByFirstScalar = byFirst.mapValues { $0.sorted { $0.scalars.count > $1.scalars.count } }
    }

    public var vocabularySize: Int { max(model.vocabularySize, Int((addedTokens.map(\.id).max() ?? -1) + 1)) }
    public var specialTokensAdded: Int { postProcessor?.addedCount ?? 0 }

    public func id(of token: String) -> Int32? { addedByContent[token]?.id }

    /// Token ids of one text. With `addSpecialTokens` the post-processor's tokens are added
    /// (e.g. the trailing <|endoftext|>); `maxLength` truncates the content on the right so that
    /// the result, specials included, fits (a negative limit keeps nothing, as zero does).
    public func encode(_ text: String, addSpecialTokens: Bool = true, maxLength: Int? = nil) -> [Int32] {
        let maxLength = maxLength.map { max($0, 0) }
        var ids = [Int32]()
        for segment in splitOnAddedTokens(text) {
            switch segment {
            case .added(let t): ids.append(t.id)
            case .text(let s, let first): ids += encodePlain(s, isFirstSegment: first)
            }
        }
        let specials = addSpecialTokens ? specialTokensAdded : 0
        if let maxLength, ids.count > max(maxLength - specials, 0) { ids.removeLast(ids.count - max(maxLength - specials, 0)) }
        if addSpecialTokens, let post = postProcessor { ids = post.apply(ids) }
        if let maxLength, ids.count > maxLength { ids.removeLast(ids.count - maxLength) }
        return ids
    }

    /// Two texts joined by the pair template (a query and a document for a cross-encoder): ids and
    /// token type ids. `maxLength` (special tokens included) truncates as Hugging Face's
    /// `longest_first` does (`longestFirst`). Throws when the tokenizer has no pair template or the
    /// limit leaves no room beside the special tokens.
    public func encodePair(_ first: String, _ second: String, maxLength: Int? = nil) throws -> (ids: [Int32], typeIDs: [Int32]) {
        guard let post = postProcessor, let added = post.pairAddedCount else {
            throw FormatError(file: source, item: "post_processor.pair", "the tokenizer has no template for a pair of texts")
        }
        var a = encode(first, addSpecialTokens: false), b = encode(second, addSpecialTokens: false)
        if let maxLength {
            guard maxLength > added else {
                throw FormatError(file: source, "max length \(maxLength) leaves no room for two texts beside the pair's \(added) special tokens")
            }
            let (n1, n2) = Self.longestFirst(a.count, b.count, budget: maxLength - added)
            a.removeLast(a.count - n1)
            b.removeLast(b.count - n2)
        }
        return post.applyPair(a, b)!
    }

    /// The lengths two texts keep under `budget` content tokens, as Hugging Face tokenizers'
    /// `longest_first` truncation computes them: nothing is cut when both fit; else the shorter
    /// text stays whole when it leaves the longer at least as many tokens; else each gets half, the
    /// longer one the odd token.
    public static func longestFirst(_ first: Int, _ second: Int, budget: Int) -> (Int, Int) {
        guard first + second > budget else { return (first, second) }
        let swapped = first > second
        var n1 = min(first, second), n2: Int
        n2 = n1 > budget ? n1 : max(n1, budget - n1)
        if n1 + n2 > budget {
            n1 = budget / 2
            n2 = n1 + budget % 2
        }
        return swapped ? (min(first, n2), min(second, n1)) : (min(first, n1), min(second, n2))
    }

    public func encodeBatch(_ texts: [String], addSpecialTokens: Bool = true, maxLength: Int? = nil) -> [[Int32]] {
        var out = [[Int32]](repeating: [], count: texts.count)
        out.withUnsafeMutableBufferPointer { buffer in
            DispatchQueue.concurrentPerform(iterations: texts.count) { i in
                buffer[i] = encode(texts[i], addSpecialTokens: addSpecialTokens, maxLength: maxLength)
            }
        }
        return out
    }

    /// A rectangular batch padded on `paddingSide`, with its attention mask (1 = real token).
    public func pad(_ batch: [[Int32]]) -> (ids: [[Int32]], attentionMask: [[Int32]]) {
        let width = batch.map(\.count).max() ?? 0
        var ids = [[Int32]](), mask = [[Int32]]()
        for row in batch {
            let padding = [Int32](repeating: padID, count: width - row.count)
            let zeros = [Int32](repeating: 0, count: width - row.count), ones = [Int32](repeating: 1, count: row.count)
            ids.append(paddingSide == .left ? padding + row : row + padding)
            mask.append(paddingSide == .left ? zeros + ones : ones + zeros)
        }
        return (ids, mask)
    }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        var pieces = [[UInt8]]()
        for id in ids {
            if let added = addedByID[id] {
                if skipSpecialTokens && added.special { continue }
                pieces.append(Array(added.content.utf8))
            } else if let b = model.bytes(of: id) {
                pieces.append(b)
            }
        }
        switch decoder {
        case .byteLevel:
            return String(decoding: pieces.flatMap { $0 }, as: UTF8.self)
        case .wordPiece(let prefix):
            // On UTF-8 bytes, because "##" followed by a spacing mark (MiniLM's "##ा") is not
            // a String with the Character prefix "##".
            let marker = Array(prefix.utf8)
            var bytes = [UInt8]()
            for (i, p) in pieces.enumerated() {
                if p.starts(with: marker) { bytes += p.dropFirst(marker.count) }
                else { if i > 0 { bytes.append(UInt8(ascii: " ")) }; bytes += p }
            }
            return String(decoding: bytes, as: UTF8.self)
        case .metaspace(let replacement):
            // In HF's order: the replacement in each piece becomes a space, <0xXX> pieces (byte
            // fallback) become raw bytes, and one leading space goes. On UTF-8 bytes, because a
            // String compares Characters: "▁" or " " followed by a combining mark, joiner or
            // variation selector is one Character, which neither matches "▁" nor starts with " ".
            let marker = Array(replacement.utf8)
            var bytes = [UInt8]()
            for p in pieces {
                if p.count == 6, p.starts(with: Array("<0x".utf8)), p.last == UInt8(ascii: ">"),
                   let b = UInt8(String(decoding: p[3..<5], as: UTF8.self), radix: 16) {
                    bytes.append(b)
                } else {
                    bytes += Self.replacing(marker, in: p, with: UInt8(ascii: " "))
                }
            }
            if bytes.first == UInt8(ascii: " ") { bytes.removeFirst() }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// `bytes` with each occurrence of `marker` replaced by `byte`. On valid UTF-8 a match
    /// starts and ends on scalar boundaries, so this replaces scalars, not Characters.
    static func replacing(_ marker: [UInt8], in bytes: [UInt8], with byte: UInt8) -> [UInt8] {
        guard !marker.isEmpty, bytes.count >= marker.count else { return bytes }
        var out = [UInt8](), i = 0
        out.reserveCapacity(bytes.count)
        while i < bytes.count {
            if i + marker.count <= bytes.count && bytes[i..<(i + marker.count)].elementsEqual(marker) {
                out.append(byte)
                i += marker.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    // MARK: stages

    /// A stretch of plain text (and whether it starts the whole text), or an added token.
    enum Segment { case text(String, first: Bool), added(AddedToken) }

    /// Splits raw text on added tokens (leftmost-longest), honouring lstrip/rstrip.
    func splitOnAddedTokens(_ text: String) -> [Segment] {
        if addedByFirstScalar.isEmpty { return [.text(text, first: true)] }
        let s = Array(text.unicodeScalars)
        var out = [Segment](), plainStart = 0, i = 0
        func flush(_ end: Int) {
            if end > plainStart { out.append(.text(String(String.UnicodeScalarView(s[plainStart..<end])), first: plainStart == 0)) }
        }
        while i < s.count {
            var matched: (scalars: [Unicode.Scalar], token: AddedToken)?
            if let candidates = addedByFirstScalar[s[i].value] {
                for c in candidates where i + c.scalars.count <= s.count && Array(s[i..<(i + c.scalars.count)]) == c.scalars {
                    matched = c
                    break
                }
            }
            guard let m = matched else { i += 1; continue }
            var end = i
            if m.token.lstrip { while end > plainStart && s[end - 1].properties.isWhitespace { end -= 1 } }
            flush(end)
            out.append(.added(m.token))
            i += m.scalars.count
            if m.token.rstrip { while i < s.count && s[i].properties.isWhitespace { i += 1 } }
            plainStart = i
        }
        flush(s.count)
        return out
    }

    func encodePlain(_ text: String, isFirstSegment: Bool) -> [Int32] {
        let normalized = normalizer?.normalize(text) ?? text
        if normalized.isEmpty { return [] }
        let scalars = Array(normalized.unicodeScalars)
        let pieces = preTokenizer?.split([scalars], isFirstSegment: isFirstSegment) ?? [scalars]
        var ids = [Int32]()
        for p in pieces where !p.isEmpty { ids += model.encode(p) }
        return ids
    }
}
