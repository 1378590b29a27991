import EmbedTuneFormats
import Foundation

/// BERT's WordPiece: greedy longest-match-first inside each word, continuations prefixed "##";
/// a word longer than `maxInputCharsPerWord` characters, or one that cannot be covered, is [UNK].
public final class WordPiece: TokenizerModel, @unchecked Sendable {
    public let vocab: [String: Int32]
    public let tokens: [String]
    public let unkID: Int32
    public let prefix: String
    public let maxInputCharsPerWord: Int
    /// The longest token, in Unicode scalars: no longer candidate can match, so the greedy search
    /// starts there (O(n·L) per word instead of O(n²) when max_input_chars_per_word is large).
    let longestToken: Int

    public init(vocab: [String: Int32], unkToken: String, prefix: String = "##", maxInputCharsPerWord: Int = 100,
                file: String) throws {
        guard let unk = vocab[unkToken] else {
            throw FormatError(file: file, item: "model.unk_token", "\"\(unkToken)\" is not in the vocabulary")
        }
        self.vocab = vocab
        var tokens = [String](repeating: "", count: Int((vocab.values.max() ?? -1) + 1))
        for (t, i) in vocab { tokens[Int(i)] = t }
        self.tokens = tokens
        unkID = unk
        self.prefix = prefix
        self.maxInputCharsPerWord = maxInputCharsPerWord
        longestToken = vocab.keys.reduce(0) { max($0, $1.unicodeScalars.count) }
    }

    /// vocab.txt: one token per line, id = line number.
    public static func vocabulary(fromVocabTxt url: URL) throws -> [String: Int32] {
        let text = try TextFile.read(url.path)
        var vocab = [String: Int32]()
        for (number, line) in TextFile.lines(text) where vocab[String(line)] == nil { vocab[String(line)] = Int32(number - 1) }
        return vocab
    }

    public var vocabularySize: Int { tokens.count }

    public func bytes(of id: Int32) -> [UInt8]? {
        id >= 0 && Int(id) < tokens.count ? Array(tokens[Int(id)].utf8) : nil
    }

    public func encode(_ piece: [Unicode.Scalar]) -> [Int32] {
        if piece.count > maxInputCharsPerWord { return [unkID] }
        var out = [Int32](), start = 0
        while start < piece.count {
            // A continuation's candidate carries the prefix, so its piece is shorter still.
            var end = min(piece.count, start + longestToken), found: Int32?
            while start < end {
                var candidate = String(String.UnicodeScalarView(piece[start..<end]))
                if start > 0 { candidate = prefix + candidate }
                if let id = vocab[candidate] { found = id; break }
                end -= 1
            }
            guard let id = found else { return [unkID] }
            out.append(id)
            start = end
        }
        return out
    }
}

/// BertNormalizer: clean text (drop NUL, U+FFFD and control characters; whitespace → space),
/// pad CJK ideographs with spaces, strip accents (NFD, drop Mn) and lowercase — as configured,
/// with strip_accents following lowercase when unset (HF's rule).
public struct BertNormalizer: Normalizer {
    public let cleanText: Bool
    public let handleChineseChars: Bool
    public let stripAccents: Bool
    public let lowercase: Bool

    public static func isChineseChar(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B920...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }

    /// Rust's char::is_whitespace plus \t \n \r (already in it).
    static func isWhitespace(_ s: Unicode.Scalar) -> Bool { SplitPattern.isSpace(s) }

    /// Unicode "Other" categories Cc, Cf, Cs, Co, except \t \n \r. Unassigned code points (Cn)
    /// are kept, as HF's tables do. ASCII answers without the property tables (a lookup per ASCII
    /// character costs ~1% of an embedding pass).
    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        if s.value < 0x80 { return s.value < 0x20 || s.value == 0x7F }
        switch s.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse: return true
        default: return false
        }
    }

    public func normalize(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            if cleanText {
                if s.value == 0 || s.value == 0xFFFD || Self.isControl(s) { continue }
                if Self.isWhitespace(s) { out.append(" "); continue }
            }
            if handleChineseChars && Self.isChineseChar(s.value) {
                out.append(" "); out.append(s); out.append(" ")
            } else {
                out.append(s)
            }
        }
        var result = String(out)
        if stripAccents {
            result = String(String.UnicodeScalarView(result.decomposedStringWithCanonicalMapping.unicodeScalars
                .filter { $0.properties.generalCategory != .nonspacingMark }))
        }
        if lowercase { result = lowercasedPerScalar(result) }
        return result
    }
}

/// Lowercases scalar by scalar with Unicode's full mapping (as Rust's char::to_lowercase, with
/// no context rules such as Greek final sigma — what HF tokenizers does).
public func lowercasedPerScalar(_ text: String) -> String {
    var out = String.UnicodeScalarView()
    for s in text.unicodeScalars {
        if s.value < 0x80 {
            out.append(s.value >= 0x41 && s.value <= 0x5A ? Unicode.Scalar(s.value | 0x20)! : s)
        } else {
            out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
        }
    }
    return String(out)
}

/// BertPreTokenizer: split on whitespace (dropped) and on punctuation (each mark its own piece).
public struct BertPreTokenizer: PreTokenizer {
    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        if v < 0x80 { return false }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
             .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    public func split(_ pieces: [[Unicode.Scalar]], isFirstSegment: Bool) -> [[Unicode.Scalar]] {
        var out = [[Unicode.Scalar]]()
        for piece in pieces {
            var current = [Unicode.Scalar]()
            for s in piece {
                if SplitPattern.isSpace(s) {
                    if !current.isEmpty { out.append(current); current = [] }
                } else if Self.isPunctuation(s) {
                    if !current.isEmpty { out.append(current); current = [] }
                    out.append([s])
                } else {
                    current.append(s)
                }
            }
            if !current.isEmpty { out.append(current) }
        }
        return out
    }
}

/// WhitespaceSplit: split on whitespace, dropping it.
public struct WhitespaceSplitPreTokenizer: PreTokenizer {
    public func split(_ pieces: [[Unicode.Scalar]], isFirstSegment: Bool) -> [[Unicode.Scalar]] {
        pieces.flatMap { $0.split(whereSeparator: SplitPattern.isSpace).map(Array.init) }
    }
}
