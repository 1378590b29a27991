import EmbedTuneFormats
import Foundation

/// tokenizer.json `normalizer`: text → text.
public protocol Normalizer: Sendable {
    func normalize(_ text: String) -> String
}

public struct UnicodeNormalizer: Normalizer {
    public enum Form: String, Sendable { case NFC, NFD, NFKC, NFKD }
    public let form: Form
    public func normalize(_ text: String) -> String {
        switch form {
        case .NFC: return text.precomposedStringWithCanonicalMapping
        case .NFD: return text.decomposedStringWithCanonicalMapping
        case .NFKC: return text.precomposedStringWithCompatibilityMapping
        case .NFKD: return text.decomposedStringWithCompatibilityMapping
        }
    }
}

public struct LowercaseNormalizer: Normalizer {
    public func normalize(_ text: String) -> String { lowercasedPerScalar(text) }
}

public struct SequenceNormalizer: Normalizer {
    public let normalizers: [Normalizer]
    public func normalize(_ text: String) -> String { normalizers.reduce(text) { $1.normalize($0) } }
}

public struct StripNormalizer: Normalizer {
    public let left: Bool, right: Bool
    public func normalize(_ text: String) -> String {
        var scalars = Substring(text).unicodeScalars[...]
        if left { while let f = scalars.first, f.properties.isWhitespace { scalars.removeFirst() } }
        if right { while let l = scalars.last, l.properties.isWhitespace { scalars.removeLast() } }
        return String(String.UnicodeScalarView(scalars))
    }
}

public struct ReplaceNormalizer: Normalizer, @unchecked Sendable {
    public enum Pattern { case literal(String), regex(NSRegularExpression) }
    public let pattern: Pattern, content: String
    public func normalize(_ text: String) -> String {
        switch pattern {
        case .literal(let p): return text.replacingOccurrences(of: p, with: content)
        case .regex(let re):
            return re.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text),
                                               withTemplate: NSRegularExpression.escapedTemplate(for: content))
        }
    }
}

public struct PrependNormalizer: Normalizer {
    public let prefix: String
    public func normalize(_ text: String) -> String { text.isEmpty ? text : prefix + text }
}

/// Builds a normalizer from its tokenizer.json object; unknown types are an error naming the
/// field, never silently skipped.
public enum NormalizerFactory {

    public static func make(_ json: JSONValue, path: String, file: String) throws -> Normalizer? {
        guard let type = try componentType(json, "normalizer", path: path, file: file) else { return nil }
        switch type {
        case "NFC", "NFD", "NFKC", "NFKD": return UnicodeNormalizer(form: .init(rawValue: type)!)
        case "Lowercase": return LowercaseNormalizer()
        case "Strip":
            return StripNormalizer(left: json["strip_left"]?.bool ?? true, right: json["strip_right"]?.bool ?? true)
        case "Prepend": return PrependNormalizer(prefix: json["prepend"]?.string ?? "")
        case "Replace":
            let content = json["content"]?.string ?? ""
            if let pattern = json["pattern"]?["String"]?.string { return ReplaceNormalizer(pattern: .literal(pattern), content: content) }
            guard let source = json["pattern"]?["Regex"]?.string else {
                throw FormatError(file: file, item: "\(path).pattern", "needs a String or Regex pattern")
            }
            do { return ReplaceNormalizer(pattern: .regex(try NSRegularExpression(pattern: source)), content: content) }
            catch { throw FormatError(file: file, item: "\(path).pattern", "invalid regex \"\(source)\"") }
        case "BertNormalizer":
            let lowercase = json["lowercase"]?.bool ?? true
            return BertNormalizer(cleanText: json["clean_text"]?.bool ?? true,
                                  handleChineseChars: json["handle_chinese_chars"]?.bool ?? true,
                                  stripAccents: json["strip_accents"]?.bool ?? lowercase, lowercase: lowercase)
        case "Precompiled":
            guard let blob = json["precompiled_charsmap"]?.string else {
                // An empty charsmap (some converted tokenizers) normalises nothing.
                if json["precompiled_charsmap"]?.isNull ?? true { return nil }
                throw FormatError(file: file, item: "\(path).precompiled_charsmap", "must be a base64 string")
            }
            return try PrecompiledNormalizer(base64: blob, file: file, path: path)
        case "Sequence":
            return SequenceNormalizer(normalizers: try sequenceMembers(json, "normalizers", path: path) {
                try make($0, path: $1, file: file)
            })
        default:
            throw FormatError(file: file, item: "\(path).type", "unsupported normalizer type \"\(type)\"")
        }
    }
}
