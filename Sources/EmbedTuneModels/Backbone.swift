import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// A transformer that turns packed token sequences into final hidden states.
public protocol Backbone: AnyObject {
    var architecture: String { get }
    var hiddenSize: Int { get }
    var vocabularySize: Int { get }
    var maxPositions: Int { get }
    var parameterCount: Int { get }
    /// A short description of the shape (layers, heads, …) for `info`.
    var shapeSummary: String { get }
    /// Final hidden states, (N, C) for the N tokens of `sequences` packed back to back.
    /// The returned view is valid until the next call.
    func forward(_ sequences: [[Int32]]) throws -> Tensor
}

public struct ModelInputError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Loads the backbone a model directory's config.json names.
public func loadBackbone(_ dir: ModelDirectory) throws -> Backbone {
    switch dir.modelType {
    case "qwen3", "qwen2": return try QwenModel(directory: dir)
    case "bert", "xlm-roberta": return try BertModel(directory: dir)
    default:
        throw FormatError(url: dir.url.appendingPathComponent("config.json"), item: "model_type",
                          "unsupported architecture \"\(dir.modelType)\" (supported: qwen3, qwen2, bert, xlm-roberta)")
    }
}

extension Backbone {
    func checkInputs(_ sequences: [[Int32]]) throws {
        for (i, s) in sequences.enumerated() {
            if s.isEmpty { throw ModelInputError("sequence \(i) is empty") }
            if s.count > maxPositions {
                throw ModelInputError("sequence \(i) has \(s.count) tokens, more than the model's \(maxPositions) positions")
            }
            if let bad = s.first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
                throw ModelInputError("sequence \(i) has token id \(bad) outside the model's vocabulary of \(vocabularySize)")
            }
        }
    }
}

/// A backbone that can carry a LoRA adapter and backpropagate into it.
public protocol TrainableBackbone: AnyObject {
    /// (module path, in, out) of every linear layer LoRA may target.
    var linearLayers: [(module: String, inFeatures: Int, outFeatures: Int)] { get }
    /// PEFT-style short names of the linears a LoRA targets by default (all of them).
    var defaultTargetModules: [String] { get }
    func forward(_ sequences: [[Int32]], lora: LoRAContext?, keepActivations: Bool) throws -> Tensor
    /// Backward from dL/d(final hidden states) of the last forward that kept activations;
    /// accumulates into the adapter's gradients.
    func backward(dHidden: UnsafePointer<Float>) throws
    /// Linear layers a PEFT adapter may carry that do not affect embeddings (BERT's pooler):
    /// accepted when loading, then ignored.
    var unusedAdapterModules: Set<String> { get }
    /// Floats held by the activation arena (grows to the largest pass seen).
    var activationCapacity: Int { get }
}

extension TrainableBackbone {
    public var unusedAdapterModules: Set<String> { [] }
}
