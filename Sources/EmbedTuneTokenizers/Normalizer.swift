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
    public func normalize(_ text: String) -> String { text.lowercased() }
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

public struct ReplaceNormalizer: Normalizer {
    public let pattern: String, content: String
    public func normalize(_ text: String) -> String { text.replacingOccurrences(of: pattern, with: content) }
}

public struct PrependNormalizer: Normalizer {
    public let prefix: String
    public func normalize(_ text: String) -> String { text.isEmpty ? text : prefix + text }
}

/// Builds a normalizer from its tokenizer.json object; unknown types are an error naming the
/// field, never silently skipped.
public enum NormalizerFactory {

    public static func make(_ json: JSONValue, path: String, file: String) throws -> Normalizer? {
        if json.isNull { return nil }
        guard let type = json["type"]?.string else {
            throw TokenizerError(file: file, item: "\(path).type", "missing normalizer type")
        }
        switch type {
        case "NFC", "NFD", "NFKC", "NFKD": return UnicodeNormalizer(form: .init(rawValue: type)!)
        case "Lowercase": return LowercaseNormalizer()
        case "Strip":
            return StripNormalizer(left: json["strip_left"]?.bool ?? true, right: json["strip_right"]?.bool ?? true)
        case "Prepend": return PrependNormalizer(prefix: json["prepend"]?.string ?? "")
        case "Replace":
            guard let pattern = json["pattern"]?["String"]?.string else {
                throw TokenizerError(file: file, item: "\(path).pattern", "only string patterns are supported in Replace")
            }
            return ReplaceNormalizer(pattern: pattern, content: json["content"]?.string ?? "")
        case "Sequence":
            let items = json["normalizers"]?.array ?? []
            return SequenceNormalizer(normalizers: try items.enumerated().compactMap {
                try make($1, path: "\(path).normalizers[\($0)]", file: file)
            })
        default:
            throw TokenizerError(file: file, item: "\(path).type", "unsupported normalizer type \"\(type)\"")
        }
    }
}
