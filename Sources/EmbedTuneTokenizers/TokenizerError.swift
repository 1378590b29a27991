import EmbedTuneFormats

/// Tokenizer files reuse the formats' error: file, item (a JSON path such as
/// `normalizer.type`), problem.
public typealias TokenizerError = FormatError

/// The `type` of a tokenizer.json component (normalizer, pre-tokenizer, post-processor) at
/// `path`: nil for JSON null (no component); a missing type is an error naming `path.type`.
func componentType(_ json: JSONValue, _ component: String, path: String, file: String) throws -> String? {
    if json.isNull { return nil }
    guard let type = json["type"]?.string else {
        throw TokenizerError(file: file, item: "\(path).type", "missing \(component) type")
    }
    return type
}
