import EmbedTuneFormats
import Foundation

/// tokenizer.json `pre_tokenizer`: splits normalized text into pieces the model encodes
/// independently. Pieces are scalar arrays to avoid re-indexing Strings.
public protocol PreTokenizer: Sendable {
    func split(_ pieces: [[Unicode.Scalar]], isFirstSegment: Bool) -> [[Unicode.Scalar]]
}

/// `Split` with behavior Isolated: every match and every gap between matches is a piece.
public struct SplitPreTokenizer: PreTokenizer, @unchecked Sendable {
    public let pattern: SplitPattern
    public func split(_ pieces: [[Unicode.Scalar]], isFirstSegment: Bool) -> [[Unicode.Scalar]] {
        var out = [[Unicode.Scalar]]()
        for piece in pieces {
            var cursor = 0
            for r in pattern.matches(piece) {
                if r.lowerBound > cursor { out.append(Array(piece[cursor..<r.lowerBound])) }
                out.append(Array(piece[r]))
                cursor = r.upperBound
            }
            if cursor < piece.count { out.append(Array(piece[cursor...])) }
        }
        return out
    }
}

/// `ByteLevel`: optionally a GPT-2 regex split and a prefix space. The byte mapping itself is
/// done by the byte-level BPE model, which works on UTF-8 bytes directly.
public struct ByteLevelPreTokenizer: PreTokenizer {
    public let addPrefixSpace: Bool
    public let useRegex: Bool
    public func split(_ pieces: [[Unicode.Scalar]], isFirstSegment: Bool) -> [[Unicode.Scalar]] {
        var pieces = pieces
        if addPrefixSpace, let first = pieces.first, first.first != " " { pieces[0] = [" "] + first }
        return useRegex ? SplitPreTokenizer(pattern: .gpt2).split(pieces, isFirstSegment: isFirstSegment) : pieces
    }
}

public struct SequencePreTokenizer: PreTokenizer {
    public let steps: [PreTokenizer]
    public func split(_ pieces: [[Unicode.Scalar]], isFirstSegment: Bool) -> [[Unicode.Scalar]] { steps.reduce(pieces) { $1.split($0, isFirstSegment: isFirstSegment) } }
}

public enum PreTokenizerFactory {
    public static func make(_ json: JSONValue, path: String, file: String) throws -> PreTokenizer? {
        guard let type = try componentType(json, "pre-tokenizer", path: path, file: file) else { return nil }
        switch type {
        case "Split":
            guard let source = json["pattern"]?["Regex"]?.string ?? json["pattern"]?["String"]?.string.map(NSRegularExpression.escapedPattern(for:)) else {
                throw FormatError(file: file, item: "\(path).pattern", "missing Regex or String pattern")
            }
            let behavior = json["behavior"]?.string ?? "Isolated"
            guard behavior == "Isolated", json["invert"]?.bool != true else {
                throw FormatError(file: file, item: "\(path).behavior", "unsupported Split behavior \"\(behavior)\" (only Isolated, not inverted)")
            }
            do { return SplitPreTokenizer(pattern: try SplitPattern.from(source: source)) }
            catch { throw FormatError(file: file, item: "\(path).pattern", "invalid regex: \(error)") }
        case "ByteLevel":
            return ByteLevelPreTokenizer(addPrefixSpace: json["add_prefix_space"]?.bool ?? false,
                                         useRegex: json["use_regex"]?.bool ?? true)
        case "BertPreTokenizer": return BertPreTokenizer()
        case "WhitespaceSplit": return WhitespaceSplitPreTokenizer()
        case "Metaspace":
            let replacement = json["replacement"]?.string?.unicodeScalars.first ?? "\u{2581}"
            var prepend = MetaspacePreTokenizer.Prepend.always
            if let scheme = json["prepend_scheme"]?.string {
                guard let p = MetaspacePreTokenizer.Prepend(rawValue: scheme) else {
                    throw FormatError(file: file, item: "\(path).prepend_scheme", "unknown scheme \"\(scheme)\"")
                }
                prepend = p
            } else if json["add_prefix_space"]?.bool == false {
                prepend = .never
            }
            return MetaspacePreTokenizer(replacement: replacement, prepend: prepend, split: json["split"]?.bool ?? true)
        case "Sequence":
            return SequencePreTokenizer(steps: try sequenceMembers(json, "pretokenizers", path: path) {
                try make($0, path: $1, file: file)
            })
        default:
            throw FormatError(file: file, item: "\(path).type", "unsupported pre-tokenizer type \"\(type)\"")
        }
    }
}
