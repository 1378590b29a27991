import EmbedTuneFormats

/// tokenizer.json `post_processor`: wraps the content ids with special tokens
/// (`$A <|endoftext|>` for Qwen3-Embedding, `[CLS] $A [SEP]` for BERT), and a pair of texts by the
/// pair template with its token type ids (`[CLS] $A [SEP] $B:1 [SEP]:1` for BERT,
/// `<s> $A </s> </s> $B </s>` for XLM-R).
public struct TemplateProcessor: Sendable {
    public enum Piece: Sendable, Equatable { case sequence; case special([Int32]) }

    /// One item of the pair template: the first or second text, or special tokens, each with the
    /// token type id its tokens carry.
    public struct PairPiece: Sendable, Equatable {
        public enum Content: Sendable, Equatable { case first, second, special([Int32]) }
        public var content: Content
        public var typeID: Int32
        public init(_ content: Content, typeID: Int32 = 0) { self.content = content; self.typeID = typeID }
    }

    public let single: [Piece]
    /// nil: the tokenizer has no pair template (decoder vocabularies).
    public let pair: [PairPiece]?

    public init(single: [Piece], pair: [PairPiece]? = nil) { self.single = single; self.pair = pair }

    public var addedCount: Int {
        single.reduce(0) { n, p in if case .special(let ids) = p { return n + ids.count }; return n }
    }

    /// Special tokens the pair template adds.
    public var pairAddedCount: Int? {
        pair.map { $0.reduce(0) { n, p in if case .special(let ids) = p.content { return n + ids.count }; return n } }
    }

    /// The pair template over the content ids of two texts: (ids, token type ids); nil without one.
    public func applyPair(_ first: [Int32], _ second: [Int32]) -> (ids: [Int32], typeIDs: [Int32])? {
        guard let pair else { return nil }
        var ids = [Int32](), types = [Int32]()
        for p in pair {
            let part: [Int32]
            switch p.content {
            case .first: part = first
            case .second: part = second
            case .special(let s): part = s
            }
            ids += part
            types += [Int32](repeating: p.typeID, count: part.count)
        }
        return (ids, types)
    }

    /// BERT's pair: [CLS] A [SEP] B [SEP], the second segment (and its [SEP]) of type 1.
    static func bertPair(cls: Int32, sep: Int32) -> [PairPiece] {
        [.init(.special([cls])), .init(.first), .init(.special([sep])), .init(.second, typeID: 1), .init(.special([sep]), typeID: 1)]
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
            /// A template's items: (the sequence's id, "A" or "B", or nil for special tokens; ids; type id).
            func pieces(_ key: String, _ items: [JSONValue]) throws -> [(sequence: String?, ids: [Int32], typeID: Int32)] {
                try items.enumerated().map { i, item in
                    let typeID = Int32(clamping: (item["Sequence"] ?? item["SpecialToken"])?["type_id"]?.int ?? 0)
                    if let sequence = item["Sequence"] { return (sequence["id"]?.string ?? "A", [], typeID) }
                    guard let name = item["SpecialToken"]?["id"]?.string else {
                        throw FormatError(file: file, item: "\(path).\(key)[\(i)]", "neither Sequence nor SpecialToken")
                    }
                    if let ids = specials[name]?["ids"]?.array?.compactMap({ $0.int }) { return (nil, ids.map(Int32.init), typeID) }
                    if let id = vocabulary(name) { return (nil, [id], typeID) }
                    throw FormatError(file: file, item: "\(path).\(key)[\(i)]", "special token \"\(name)\" is not in the vocabulary")
                }
            }
            let single: [Piece] = try pieces("single", items).map { $0.sequence == nil ? .special($0.ids) : .sequence }
            let pair = try json["pair"]?.array.map { items in
                try pieces("pair", items).enumerated().map { i, p -> PairPiece in
                    switch p.sequence {
                    case nil: return PairPiece(.special(p.ids), typeID: p.typeID)
                    case "A": return PairPiece(.first, typeID: p.typeID)
                    case "B": return PairPiece(.second, typeID: p.typeID)
                    case let other?: throw FormatError(file: file, item: "\(path).pair[\(i)]", "sequence id \"\(other)\" is neither A nor B")
                    }
                }
            }
            return TemplateProcessor(single: single, pair: pair)
        case "BertProcessing", "RobertaProcessing":
            guard let cls = json["cls"]?.array, let sep = json["sep"]?.array,
                  let clsID = cls.count == 2 ? cls[1].int : nil, let sepID = sep.count == 2 ? sep[1].int : nil else {
                throw FormatError(file: file, item: path, "\(type) needs cls and sep as [token, id]")
            }
            let c = Int32(clsID), s = Int32(sepID)
            // RoBERTa's pair doubles the separator and keeps every token type 0.
            let pair: [PairPiece] = type == "BertProcessing" ? bertPair(cls: c, sep: s)
                : [.init(.special([c])), .init(.first), .init(.special([s, s])), .init(.second), .init(.special([s]))]
            return TemplateProcessor(single: [.special([c]), .sequence, .special([s])], pair: pair)
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
