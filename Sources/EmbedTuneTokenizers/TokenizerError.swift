import EmbedTuneFormats

/// Tokenizer files reuse the formats' error: file, item (a JSON path such as
/// `normalizer.type`), problem.
public typealias TokenizerError = FormatError
