import EmbedTuneFormats

/// tokenizer.json `post_processor`: wraps the content ids with special tokens
/// (`$A <|endoftext|>` for Qwen3-Embedding, `[CLS] $A [SEP]` for BERT).
public struct TemplateProcessor: Sendable {
    public enum Piece: Sendable, Equatable { case sequence; case special([Int32]) }
    public let single: [Piece]

    public init(single: [Piece]) { self.single = single }

    public var addedCount: Int {
        single.reduce(0) { n, p in if case .special(let ids) = p { return n + ids.count }; return n }
    }

    public func apply(_ ids: [Int32]) -> [Int32] {
        var out = [Int32]()
        out.reserveCapacity(ids.count + addedCount)
        for p in single {
            switch p {
            case .sequence: out += ids
            case .special(let s): out += s
            }
        }
        return out
    }

    /// Parses TemplateProcessing, BertProcessing / RobertaProcessing, a ByteLevel no-op, or a
    /// Sequence of these. nil means ids pass through unchanged.
    public static func make(_ json: JSONValue, vocabulary: (String) -> Int32?, path: String, file: String) throws -> TemplateProcessor? {
        guard let type = try componentType(json, "post-processor", path: path, file: file) else { return nil }
        switch type {
        case "ByteLevel": return nil
        case "TemplateProcessing":
            guard let items = json["single"]?.array else {
                throw FormatError(file: file, item: "\(path).single", "missing template")
            }
            let specials = json["special_tokens"]?.object ?? [:]
            var pieces = [Piece]()
            for (i, item) in items.enumerated() {
                if item["Sequence"] != nil { pieces.append(.sequence); continue }
                guard let name = item["SpecialToken"]?["id"]?.string else {
                    throw FormatError(file: file, item: "\(path).single[\(i)]", "neither Sequence nor SpecialToken")
                }
                if let ids = specials[name]?["ids"]?.array?.compactMap({ $0.int }) {
                    pieces.append(.special(ids.map(Int32.init)))
                } else if let id = vocabulary(name) {
                    pieces.append(.special([id]))
                } else {
                    throw FormatError(file: file, item: "\(path).single[\(i)]", "special token \"\(name)\" is not in the vocabulary")
                }
            }
            return TemplateProcessor(single: pieces)
        case "BertProcessing", "RobertaProcessing":
            guard let cls = json["cls"]?.array, let sep = json["sep"]?.array,
                  let clsID = cls.count == 2 ? cls[1].int : nil, let sepID = sep.count == 2 ? sep[1].int : nil else {
                throw FormatError(file: file, item: path, "\(type) needs cls and sep as [token, id]")
            }
            return TemplateProcessor(single: [.special([Int32(clsID)]), .sequence, .special([Int32(sepID)])])
        case "Sequence":
            let steps = try sequenceMembers(json, "processors", path: path) {
                try make($0, vocabulary: vocabulary, path: $1, file: file)
            }
            guard steps.count <= 1 else {
                throw FormatError(file: file, item: path, "more than one id-changing post-processor in a Sequence")
            }
            return steps.first
        default:
            throw FormatError(file: file, item: "\(path).type", "unsupported post-processor type \"\(type)\"")
        }
    }
}
