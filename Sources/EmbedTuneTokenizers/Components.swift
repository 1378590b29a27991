import EmbedTuneFormats

// Helpers shared by the tokenizer.json component factories (normalizer, pre-tokenizer,
// post-processor); their errors name the JSON path, such as `normalizer.type`.

/// The `type` of a tokenizer.json component (normalizer, pre-tokenizer, post-processor) at
/// `path`: nil for JSON null (no component); a missing type is an error naming `path.type`.
func componentType(_ json: JSONValue, _ component: String, path: String, file: String) throws -> String? {
    if json.isNull { return nil }
    guard let type = json["type"]?.string else {
        throw FormatError(file: file, item: "\(path).type", "missing \(component) type")
    }
    return type
}

/// The members of a `Sequence` component: the items of `json[key]` through `make`, each with its
/// path `path.key[i]`; items that make nothing (JSON null, a no-op) are left out.
func sequenceMembers<T>(_ json: JSONValue, _ key: String, path: String,
                        _ make: (_ item: JSONValue, _ path: String) throws -> T?) throws -> [T] {
    try (json[key]?.array ?? []).enumerated().compactMap { try make($1, "\(path).\(key)[\($0)]") }
}
