import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneTokenizers
import Foundation

/// A BERT / XLM-R `*ForSequenceClassification` model scoring (query, document) pairs as
/// sentence-transformers' CrossEncoder and TEI do: the pair joined by the tokenizer's pair
/// template (`[CLS] q [SEP] d [SEP]`, the document's tokens of type 1, or `<s> q </s></s> d </s>`),
/// truncated `longest_first` to the model's max length, the classification head on the first
/// token. The score of one label is sigmoid(logit) (CrossEncoder.predict, TEI's /rerank); of
/// several, softmax(logits)[scoredLabel], the last label by default (CrossEncoder.predict with
/// apply_softmax, the relevant class of a binary classifier).
public final class CrossEncoder {
    /// The function CrossEncoder.predict applies to the logits (its `activation_fn`).
    public enum Activation: String, Sendable { case sigmoid, identity }

    public static let architectures: [String: SequenceClassificationHead.Kind] = [
        "BertForSequenceClassification": .bert, "XLMRobertaForSequenceClassification": .roberta,
    ]
    /// Encoders (config.json's model_type) that become cross-encoders with a head: a new one in
    /// training, or the one an adapter stores whole.
    public static let encoderKinds: [String: SequenceClassificationHead.Kind] = ["bert": .bert, "xlm-roberta": .roberta]

    public let tokenizer: Tokenizer
    public let model: BertModel
    /// The checkpoint's head; `head` is it with an adapter's saved head in its place.
    public let baseHead: SequenceClassificationHead
    public private(set) var head: SequenceClassificationHead
    /// The LoRA adapter applied on the fly (`setAdapter`).
    public private(set) var adapter: LoRAAdapter?
    /// id2label in index order.
    public let labels: [String]
    public let activation: Activation
    /// The label whose probability scores a pair when there are several.
    public var scoredLabel: Int
    /// Tokens per pair, special tokens included: sentence_bert_config.json's max_seq_length, else
    /// tokenizer_config.json's model_max_length, capped by the model's positions.
    public var maxLength: Int
    public var batchSize = 32

    /// A cross-encoder over a `*ForSequenceClassification` directory (config.json's architectures).
    public convenience init(directory: ModelDirectory, tokenizer: Tokenizer? = nil) throws {
        let configURL = directory.url.appendingPathComponent("config.json")
        let architecture = directory.config["architectures"]?.array?.first?.string ?? "none"
        guard let kind = Self.architectures[architecture] else {
            throw FormatError(url: configURL, item: "architectures",
                              "\"\(architecture)\" is not a cross-encoder (BertForSequenceClassification or XLMRobertaForSequenceClassification)")
        }
        // The small files first, so that their errors come before the weights load.
        let labels = try Self.labels(directory.config, file: configURL)
        let activation = try Self.activation(directory, labels: labels.count)
        let tokenizer = try tokenizer ?? directory.loadTokenizer()
        let source = try directory.tensorSource()
        let model = try BertModel(directory: directory, source: source)
        let head = try SequenceClassificationHead(kind: kind, hiddenSize: model.hiddenSize, labels: labels.count, source: source,
                                                  encoderPrefix: BertModel.checkpointPrefix(source))
        try self.init(tokenizer: tokenizer, model: model, head: head, labels: labels, activation: activation)
        maxLength = min(directory.maxSequenceLength ?? Self.tokenizerMaxLength(directory) ?? maxLength, model.maxPositions)
    }

    /// A cross-encoder over an embedding model (BertModel / XLMRobertaModel) whose classification head
    /// is the one `adapter` (task_type SEQ_CLS) stores whole, with the adapter applied; BERT's pooler is
    /// the checkpoint's unless the adapter stores it. One label scores by sigmoid, several by softmax.
    public convenience init(encoder directory: ModelDirectory, adapter: URL, tokenizer: Tokenizer? = nil) throws {
        guard let kind = Self.encoderKinds[directory.modelType] else {
            throw FormatError(url: directory.url.appendingPathComponent("config.json"), item: "model_type",
                              "\"\(directory.modelType)\" is not a BERT or XLM-R encoder")
        }
        let tokenizer = try tokenizer ?? directory.loadTokenizer()
        let source = try directory.tensorSource()
        let model = try BertModel(directory: directory, source: source)
        let head = try SequenceClassificationHead(kind: kind, hiddenSize: model.hiddenSize, saved: PEFTAdapter.savedModules(adapter),
                                                  source: source, encoderPrefix: BertModel.checkpointPrefix(source),
                                                  file: adapter.appendingPathComponent("adapter_model.safetensors"))
        try self.init(tokenizer: tokenizer, model: model, head: head, labels: (0..<head.labels).map { "LABEL_\($0)" },
                      activation: head.labels == 1 ? .sigmoid : .identity)
        maxLength = min(directory.maxSequenceLength ?? Self.tokenizerMaxLength(directory) ?? maxLength, model.maxPositions)
        try setAdapter(adapter)
    }

    public init(tokenizer: Tokenizer, model: BertModel, head: SequenceClassificationHead, labels: [String], activation: Activation) throws {
        guard tokenizer.postProcessor?.pair != nil else {
            throw FormatError(file: tokenizer.source, item: "post_processor.pair", "a cross-encoder's tokenizer needs a template for text pairs")
        }
        self.tokenizer = tokenizer
        self.model = model
        baseHead = head
        self.head = head
        self.labels = labels
        self.activation = activation
        scoredLabel = labels.count - 1
        maxLength = min(512, model.maxPositions)
    }

    /// id2label's names by index; without id2label, num_labels of them (transformers' default 2).
    static func labels(_ config: JSONValue, file: URL) throws -> [String] {
        if let map = config["id2label"]?.object, !map.isEmpty {
            let indexed = try map.map { key, value -> (Int, String) in
                guard let i = Int(key), i >= 0, i < map.count, let name = value.string else {
                    throw FormatError(url: file, item: "id2label", "keys must be 0 … \(map.count - 1) and names strings")
                }
                return (i, name)
            }
            return indexed.sorted { $0.0 < $1.0 }.map(\.1)
        }
        let count = config["num_labels"]?.int ?? 2
        guard count > 0 else { throw FormatError(url: file, item: "num_labels", "must be positive") }
        return (0..<count).map { "LABEL_\($0)" }
    }

    /// The activation sentence-transformers would load: config_sentence_transformers.json's
    /// activation_fn, else config.json's sentence_transformers.activation_fn or (before v4)
    /// sbert_ce_default_activation_function, else sigmoid for one label and identity for several.
    static func activation(_ directory: ModelDirectory, labels: Int) throws -> Activation {
        let stURL = directory.url.appendingPathComponent("config_sentence_transformers.json")
        let st = FileManager.default.fileExists(atPath: stURL.path) ? try JSONValue.load(stURL) : .null
        let candidates: [(String?, URL, String)] = [
            (st["activation_fn"]?.string, stURL, "activation_fn"),
            (directory.config["sentence_transformers"]?["activation_fn"]?.string, directory.url.appendingPathComponent("config.json"),
             "sentence_transformers.activation_fn"),
            (directory.config["sbert_ce_default_activation_function"]?.string, directory.url.appendingPathComponent("config.json"),
             "sbert_ce_default_activation_function"),
        ]
        guard let (path, file, item) = candidates.first(where: { $0.0 != nil }), let path else { return labels == 1 ? .sigmoid : .identity }
        if path.hasSuffix(".Sigmoid") { return .sigmoid }
        if path.hasSuffix(".Identity") { return .identity }
        throw FormatError(url: file, item: item, "unsupported activation \"\(path)\" (Sigmoid or Identity)")
    }

    /// tokenizer_config.json's model_max_length, when it is a real limit.
    static func tokenizerMaxLength(_ directory: ModelDirectory) -> Int? {
        let url = directory.url.appendingPathComponent("tokenizer_config.json")
        guard let value = (try? JSONValue.load(url))?["model_max_length"]?.double, value >= 1, value < 1e9 else { return nil }
        return Int(value)
    }

    /// Applies the PEFT adapter in `directory` from now on (nil: none): LoRA on the encoder and the
    /// head's linears, and the head it stores whole (modules_to_save) in place of the checkpoint's.
    public func setAdapter(_ directory: URL?) throws {
        guard let directory else { adapter = nil; head = baseHead; return }
        let loaded = try PEFTAdapter.load(directory, for: model, headLinears: baseHead.linearLayers,
                                          savedModules: [SequenceClassificationHead.savedModule, SequenceClassificationHead.poolerModule])
        head = try baseHead.replacing(PEFTAdapter.savedModules(directory), file: directory.appendingPathComponent("adapter_model.safetensors"))
        adapter = loaded
    }

    /// The pair's ids and token type ids (all 0 when the model has a single token type, as XLM-R's
    /// tokenizer gives none).
    public func tokens(query: String, document: String) throws -> (ids: [Int32], typeIDs: [Int32]) {
        var pair = try tokenizer.encodePair(query, document, maxLength: maxLength)
        if model.config.typeVocabSize ?? 2 < 2 { pair.typeIDs = [Int32](repeating: 0, count: pair.ids.count) }
        return pair
    }

    /// Logits of every pair, (pairs, labels) row-major.
    public func logits(_ pairs: [(query: String, document: String)]) throws -> [Float] {
        var out = [Float]()
        out.reserveCapacity(pairs.count * labels.count)
        let step = max(1, batchSize)
        for start in stride(from: 0, to: pairs.count, by: step) {
            let chunk = try pairs[start..<min(start + step, pairs.count)].map { try tokens(query: $0.query, document: $0.document) }
            let hidden = try model.forward(chunk.map(\.ids), tokenTypes: chunk.map(\.typeIDs),
                                           lora: adapter.map { LoRAContext(adapter: $0, training: false) },
                                           keepActivations: false, pooling: .cls)
            let batch = PackedBatch(lengths: chunk.map(\.ids.count))
            out += try head.logits(hidden: hidden, rows: Array(batch.offsets.prefix(batch.count)), adapter: adapter)
        }
        return out
    }

    // MARK: training

    /// Trains `adapter` from now on: its whole tensors start from this cross-encoder's head (the
    /// checkpoint's, or a new one's) and the head reads them from the adapter's buffer, so that
    /// `trainingLogits` and `backward` reach LoRA and the head alike.
    public func attachForTraining(_ adapter: LoRAAdapter) {
        baseHead.store(into: adapter)
        head = baseHead.bound(to: adapter)
        self.adapter = adapter
    }

    private var trainingPass: (kept: SequenceClassificationHead.Activations, tokens: Int, context: LoRAContext)?

    /// Logits (pairs, labels) of tokenized pairs through the adapter in training mode, keeping every
    /// activation for `backward`. `seeds` (one per pair) fix the dropout masks.
    public func trainingLogits(_ pairs: [(ids: [Int32], typeIDs: [Int32])], seeds: [UInt64], backboneDropout: Bool) throws -> [Float] {
        guard let adapter else { throw FormatError("training a cross-encoder needs an adapter (attachForTraining)") }
        let context = LoRAContext(adapter: adapter, training: true, sequenceSeeds: seeds, backboneDropout: backboneDropout)
        // (N, C) hidden states of the packed pairs; the head reads each pair's first row.
        let hidden = try model.forward(pairs.map(\.ids), tokenTypes: pairs.map(\.typeIDs), lora: context, keepActivations: true,
                                       pooling: .cls)
        let batch = PackedBatch(lengths: pairs.map(\.ids.count))
        let (logits, kept) = try head.forward(hidden: hidden, rows: Array(batch.offsets.prefix(batch.count)), context: context)
        trainingPass = (kept, batch.tokens, context)
        return logits
    }

    /// Backward from dL/dlogits (pairs, labels) of the last `trainingLogits`: the head, then the
    /// encoder from the first-token rows; accumulates into the adapter's gradients.
    public func backward(dLogits: [Float]) throws {
        guard let pass = trainingPass else { throw FormatError("backward needs a trainingLogits pass first") }
        trainingPass = nil
        var dHidden = [Float](repeating: 0, count: pass.tokens * model.hiddenSize)  // (N, C), zero off the first rows
        head.backward(pass.kept, dLogits: dLogits, context: pass.context, dHidden: &dHidden)
        try model.backward(dHidden: dHidden)
    }

    /// One pair's score from its logits: the activation, then for several labels the softmax
    /// probability of `scoredLabel`.
    public func score(logits: ArraySlice<Float>) -> Float {
        let a = logits.map { activation == .sigmoid ? 1 / (1 + exp(-$0)) : $0 }
        guard a.count > 1 else { return a[0] }
        let top = a.max()!, e = a.map { exp($0 - top) }
        return e[scoredLabel] / e.reduce(0, +)
    }

    /// Relevance of each document to `query`, in input order.
    public func scores(query: String, documents: [String]) throws -> [Float] {
        let l = labels.count, all = try logits(documents.map { (query, $0) })
        return documents.indices.map { score(logits: all[($0 * l)..<(($0 + 1) * l)]) }
    }
}
