import EmbedTuneFormats
import EmbedTuneTokenizers
import Foundation

/// sentence-transformers' 1_Pooling/config.json.
public struct PoolingConfig: Codable, Equatable, Sendable {
    public enum Mode: String, Sendable { case cls, mean, max, lastToken = "lasttoken", meanSqrtLen = "mean_sqrt_len" }

    public var wordEmbeddingDimension: Int?
    public var poolingModeClsToken: Bool?
    public var poolingModeMeanTokens: Bool?
    public var poolingModeMaxTokens: Bool?
    public var poolingModeMeanSqrtLenTokens: Bool?
    public var poolingModeWeightedmeanTokens: Bool?
    public var poolingModeLasttoken: Bool?
    public var includePrompt: Bool?

    enum CodingKeys: String, CodingKey {
        case wordEmbeddingDimension = "word_embedding_dimension"
        case poolingModeClsToken = "pooling_mode_cls_token"
        case poolingModeMeanTokens = "pooling_mode_mean_tokens"
        case poolingModeMaxTokens = "pooling_mode_max_tokens"
        case poolingModeMeanSqrtLenTokens = "pooling_mode_mean_sqrt_len_tokens"
        case poolingModeWeightedmeanTokens = "pooling_mode_weightedmean_tokens"
        case poolingModeLasttoken = "pooling_mode_lasttoken"
        case includePrompt = "include_prompt"
    }

    public init(mode: Mode) {
        poolingModeClsToken = mode == .cls
        poolingModeMeanTokens = mode == .mean
        poolingModeMaxTokens = mode == .max
        poolingModeMeanSqrtLenTokens = mode == .meanSqrtLen
        poolingModeLasttoken = mode == .lastToken
    }

    /// The single pooling mode this config selects (combinations are not supported).
    public func mode(file: String) throws -> Mode {
        let chosen: [(Bool?, Mode)] = [(poolingModeClsToken, .cls), (poolingModeMeanTokens, .mean),
                                       (poolingModeMaxTokens, .max), (poolingModeMeanSqrtLenTokens, .meanSqrtLen),
                                       (poolingModeLasttoken, .lastToken)]
        if poolingModeWeightedmeanTokens == true {
            throw FormatError(file: file, item: "pooling_mode_weightedmean_tokens", "weighted-mean pooling is not supported")
        }
        let on = chosen.filter { $0.0 == true }.map(\.1)
        guard on.count == 1 else {
            throw FormatError(file: file, "exactly one pooling mode must be true (found \(on.count))")
        }
        return on[0]
    }
}

/// A Hugging Face model directory: config.json, weights, tokenizer files, and the
/// sentence-transformers files when present.
public struct ModelDirectory {
    public let url: URL
    public let config: JSONValue
    public let modelType: String
    public let pooling: PoolingConfig.Mode
    /// modules.json lists a Normalize module (or, without modules.json, the family's default).
    public let normalize: Bool
    /// config_sentence_transformers.json prompts, e.g. ["query": "Instruct: …\nQuery:"].
    public let prompts: [String: String]
    public let defaultPromptName: String?
    public let hasSentenceTransformersFiles: Bool
    /// Set when the model is a single GGUF file rather than a directory.
    public let gguf: GGUFTensorSource?

    public static let decoderTypes: Set<String> = ["qwen3", "qwen2"]
    public static let encoderTypes: Set<String> = ["bert", "xlm-roberta"]

    public init(_ url: URL) throws {
        self.url = url
        let fm = FileManager.default
        if url.pathExtension.lowercased() == "gguf" {
            guard fm.fileExists(atPath: url.path) else { throw FormatError(url: url, "model file does not exist") }
            let source = try GGUFTensorSource(url: url)
            gguf = source
            config = .object(try source.huggingFaceConfig())
            modelType = config["model_type"]?.string ?? source.architecture
            let isDecoder = Self.decoderTypes.contains(modelType)
            switch source.poolingMode {
            case "mean": pooling = .mean
            case "cls": pooling = .cls
            case "last": pooling = .lastToken
            default: pooling = isDecoder ? .lastToken : .mean
            }
            normalize = true
            prompts = [:]
            defaultPromptName = nil
            hasSentenceTransformersFiles = false
            return
        }
        gguf = nil
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
            throw FormatError(url: url, "model directory does not exist")
        }
        let configURL = url.appendingPathComponent("config.json")
        guard fm.fileExists(atPath: configURL.path) else { throw FormatError(url: configURL, "missing") }
        config = try JSONValue.load(configURL)
        guard let type = config["model_type"]?.string else {
            throw FormatError(url: configURL, item: "model_type", "missing")
        }
        modelType = type
        let isDecoder = Self.decoderTypes.contains(type)

        let modulesURL = url.appendingPathComponent("modules.json")
        var poolingDirectory = url.appendingPathComponent("1_Pooling")
        if fm.fileExists(atPath: modulesURL.path) {
            hasSentenceTransformersFiles = true
            let modules = try JSONValue.load(modulesURL)
            guard let list = modules.array else { throw FormatError(url: modulesURL, "must be a JSON array") }
            let types = list.compactMap { $0["type"]?.string }
            normalize = types.contains { $0.hasSuffix("Normalize") }
            if let i = list.firstIndex(where: { $0["type"]?.string?.hasSuffix("Pooling") == true }), let p = list[i]["path"]?.string {
                poolingDirectory = try ContainedPath.resolve(p, in: url, file: modulesURL, item: "[\(i)].path")
            }
        } else {
            hasSentenceTransformersFiles = false
            normalize = true
        }
        let poolingURL = poolingDirectory.appendingPathComponent("config.json")
        if fm.fileExists(atPath: poolingURL.path) {
            do {
                let cfg = try JSONDecoder().decode(PoolingConfig.self, from: Data(contentsOf: poolingURL))
                pooling = try cfg.mode(file: poolingURL.path)
            } catch let e as FormatError { throw e } catch {
                throw FormatError(url: poolingURL, "invalid pooling config (\(error))")
            }
        } else {
            pooling = isDecoder ? .lastToken : .mean
        }

        let stURL = url.appendingPathComponent("config_sentence_transformers.json")
        if fm.fileExists(atPath: stURL.path) {
            let st = try JSONValue.load(stURL)
            var prompts = [String: String]()
            for (k, v) in st["prompts"]?.object ?? [:] {
                guard let s = v.string else { throw FormatError(url: stURL, item: "prompts.\(k)", "must be a string") }
                prompts[k] = s
            }
            self.prompts = prompts
            defaultPromptName = st["default_prompt_name"]?.string
        } else {
            prompts = [:]
            defaultPromptName = nil
        }
    }

    public var tokenizerURL: URL { url.appendingPathComponent("tokenizer.json") }

    /// The sentence-transformers prompt for queries, or "".
    public var queryPrompt: String { prompts["query"] ?? "" }
    /// The prompt for documents ("document", or "passage" as e5 names it), or "".
    public var documentPrompt: String { prompts["document"] ?? prompts["passage"] ?? "" }

    /// tokenizer.json, or for BERT-style models a bare vocab.txt (+ tokenizer_config.json's
    /// do_lower_case).
    public func loadTokenizer() throws -> Tokenizer {
        if let gguf { return try Tokenizer.fromGGUF(metadata: gguf.file.metadata, file: url.path) }
        let fm = FileManager.default
        if fm.fileExists(atPath: tokenizerURL.path) { return try Tokenizer.load(tokenizerJSON: tokenizerURL) }
        let vocabTxt = url.appendingPathComponent("vocab.txt")
        if fm.fileExists(atPath: vocabTxt.path) {
            let configURL = url.appendingPathComponent("tokenizer_config.json")
            let config = fm.fileExists(atPath: configURL.path) ? try JSONValue.load(configURL) : .null
            return try Tokenizer.loadBertVocab(vocabTxt, lowercase: config["do_lower_case"]?.bool ?? true,
                                               stripAccents: config["strip_accents"]?.bool)
        }
        throw FormatError(url: tokenizerURL, "missing (the model directory needs a tokenizer.json or a vocab.txt)")
    }

    /// Where the weights come from: the GGUF file, or the directory's safetensors.
    public func tensorSource() throws -> TensorSource { try gguf ?? WeightStore(directory: url) }

    /// sentence_bert_config.json's max_seq_length: the truncation length sentence-transformers uses.
    public var maxSequenceLength: Int? {
        let u = url.appendingPathComponent("sentence_bert_config.json")
        guard let json = try? JSONValue.load(u) else { return nil }
        return json["max_seq_length"]?.int
    }

    /// Decodes config.json into a model's Codable configuration, with a clear error.
    public func decodeConfig<C: Decodable>(_ type: C.Type) throws -> C {
        let data = try JSONEncoder().encode(config)
        let configFile = gguf != nil ? url : url.appendingPathComponent("config.json")
        do { return try JSONDecoder().decode(C.self, from: data) }
        catch let DecodingError.keyNotFound(key, _) {
            throw FormatError(url: configFile, item: key.stringValue, "missing")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw FormatError(url: configFile,
                              item: ctx.codingPath.map(\.stringValue).joined(separator: "."), "wrong type (\(ctx.debugDescription))")
        } catch {
            throw FormatError(url: configFile, "\(error)")
        }
    }
}
