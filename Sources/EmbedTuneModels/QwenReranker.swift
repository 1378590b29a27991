import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneTokenizers
import Foundation

/// Qwen3-Reranker scoring as its model card does it: each (query, document) pair is wrapped in a
/// chat prompt asking for "yes" or "no", and the score is the probability of "yes" against "no"
/// at the last position: softmax([no, yes])[1] = sigmoid(yes − no).
public final class QwenReranker {
    public static let defaultInstruction = "Given a web search query, retrieve relevant passages that answer the query"
    public static let prefix = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n"
    public static let suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"

    /// The text between prefix and suffix: the only part truncation shortens.
    public static func body(instruction: String?, query: String, document: String) -> String {
        "<Instruct>: \(instruction ?? defaultInstruction)\n<Query>: \(query)\n<Document>: \(document)"
    }

    public let tokenizer: Tokenizer
    public let model: QwenModel
    public let head: CausalLMHead
    public let yesID: Int32, noID: Int32
    public let prefixIDs: [Int32], suffixIDs: [Int32]
    /// Tokens per scored sequence, prefix and suffix included (the model card's 8192, capped by
    /// the model's positions).
    public var maxLength: Int
    public var batchSize = 16
    /// The task instruction `scores` uses when given none (nil: `defaultInstruction`).
    public var instruction: String?
    /// The LoRA adapter applied on the fly (`setAdapter`).
    public private(set) var adapter: LoRAAdapter?

    /// One pair's verdict: the last position's logits of the two answer tokens and the score.
    public struct Judgement: Equatable, Sendable {
        public var yesLogit: Float
        public var noLogit: Float
        public var score: Float { 1 / (1 + exp(noLogit - yesLogit)) }
        public init(yesLogit: Float, noLogit: Float) {
            self.yesLogit = yesLogit
            self.noLogit = noLogit
        }
    }

    /// A reranker over a `*ForCausalLM` directory; `answers` are the vocabulary tokens read as
    /// yes and no (Qwen vocabularies: "yes" 9693, "no" 2152).
    public convenience init(directory: ModelDirectory, tokenizer: Tokenizer? = nil,
                            answers: (yes: String, no: String) = ("yes", "no")) throws {
        guard ModelDirectory.decoderTypes.contains(directory.modelType) else {
            throw FormatError(url: directory.url.appendingPathComponent("config.json"), item: "model_type",
                              "a Qwen reranker needs a qwen3 or qwen2 model, not \"\(directory.modelType)\"")
        }
        let tokenizer = try tokenizer ?? directory.loadTokenizer()
        let yes = try Self.vocabularyID(answers.yes, in: tokenizer), no = try Self.vocabularyID(answers.no, in: tokenizer)
        let model = try QwenModel(directory: directory)
        try self.init(tokenizer: tokenizer, model: model, head: CausalLMHead(directory: directory, backbone: model, tokens: [yes, no]),
                      yesID: yes, noID: no)
    }

    /// `yesID` and `noID` are the head's tokens read as the answers.
    public init(tokenizer: Tokenizer, model: QwenModel, head: CausalLMHead, yesID: Int32, noID: Int32) {
        self.tokenizer = tokenizer
        self.model = model
        self.head = head
        self.yesID = yesID
        self.noID = noID
        prefixIDs = tokenizer.encode(Self.prefix, addSpecialTokens: false)
        suffixIDs = tokenizer.encode(Self.suffix, addSpecialTokens: false)
        maxLength = min(8192, model.maxPositions)
    }

    /// Applies the PEFT adapter in `directory` to the decoder from now on (nil: none).
    public func setAdapter(_ directory: URL?) throws {
        adapter = try directory.map { try PEFTAdapter.load($0, for: model) }
    }

    /// The id of the vocabulary entry spelling `token` (transformers' convert_tokens_to_ids): an
    /// added token by its content, else the model token whose bytes are `token`'s UTF-8, which is
    /// its byte-level spelling for the ASCII words rerankers answer with.
    public static func vocabularyID(_ token: String, in tokenizer: Tokenizer) throws -> Int32 {
        if let id = tokenizer.id(of: token) { return id }
        let bytes = Array(token.utf8)
        for id in 0..<Int32(tokenizer.model.vocabularySize) where tokenizer.model.bytes(of: id) == bytes { return id }
        throw FormatError("the tokenizer has no token \"\(token)\" to read the reranker's answer from")
    }

    /// prefix + body + suffix; the body (with the tokenizer's special tokens, as the model card
    /// encodes it) is truncated so that the whole fits `maxLength`. `instruction` nil: the
    /// reranker's `instruction`, else the default.
    public func tokens(query: String, document: String, instruction: String? = nil) throws -> [Int32] {
        let budget = maxLength - prefixIDs.count - suffixIDs.count
        guard budget > tokenizer.specialTokensAdded else {
            throw FormatError("max length \(maxLength) leaves no room for a query and document beside the \(prefixIDs.count + suffixIDs.count) prompt tokens")
        }
        let body = tokenizer.encode(Self.body(instruction: instruction ?? self.instruction, query: query, document: document),
                                    maxLength: budget)
        return prefixIDs + body + suffixIDs
    }

    /// The verdict on every (query, document) pair, in order.
    public func judge(_ pairs: [(query: String, document: String)], instruction: String? = nil) throws -> [Judgement] {
        var out = [Judgement]()
        out.reserveCapacity(pairs.count)
        for start in stride(from: 0, to: pairs.count, by: max(1, batchSize)) {
            let chunk = pairs[start..<min(start + max(1, batchSize), pairs.count)]
            let sequences = try chunk.map { try tokens(query: $0.query, document: $0.document, instruction: instruction) }
            // Last-token pooling: the final block runs only each sequence's last row, the one read here.
            let hidden = try model.forward(sequences, lora: adapter.map { LoRAContext(adapter: $0, training: false) },
                                           keepActivations: false, pooling: .lastToken)
            let batch = PackedBatch(lengths: sequences.map(\.count))
            let lastRows = (0..<batch.count).map { batch.offsets[$0 + 1] - 1 }
            let logits = try head.logits(hidden: hidden, rows: lastRows, tokens: [yesID, noID])  // (S, 2)
            for s in 0..<batch.count { out.append(Judgement(yesLogit: logits[2 * s], noLogit: logits[2 * s + 1])) }
        }
        return out
    }

    /// Relevance of each document to `query`, in (0, 1).
    public func scores(query: String, documents: [String], instruction: String? = nil) throws -> [Float] {
        try judge(documents.map { (query, $0) }, instruction: instruction).map(\.score)
    }
}
