import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// The classification head of a BERT / XLM-R `*ForSequenceClassification` checkpoint, read on
/// each sequence's first token ([CLS] / <s>) only:
///   BERT   logits = classifier(tanh(pooler.dense(h₀)))           (BertPooler + Linear)
///   XLM-R  logits = out_proj(tanh(classifier.dense(h₀)))         (RobertaClassificationHead)
/// Dropout is the identity at inference. The pooler's keys carry the encoder's prefix
/// (`bert.pooler.dense`); the classifier's are top-level.
public struct SequenceClassificationHead {
    public enum Kind: String, Sendable { case bert, roberta }

    public let kind: Kind
    public let hiddenSize: Int
    public let labels: Int
    /// (C, C), (C): pooler.dense (BERT) or classifier.dense (XLM-R).
    public private(set) var dense, denseBias: Tensor
    /// (L, C), (L): classifier (BERT) or classifier.out_proj (XLM-R).
    public private(set) var output, outputBias: Tensor

    /// Module paths as PEFT adapters name them (without the task model's `bert.` / `roberta.`).
    public var denseModule: String { kind == .bert ? "pooler.dense" : "classifier.dense" }
    public var outputModule: String { kind == .bert ? "classifier" : "classifier.out_proj" }
    public var linearLayers: [(module: String, inFeatures: Int, outFeatures: Int)] {
        [(denseModule, hiddenSize, hiddenSize), (outputModule, hiddenSize, labels)]
    }
    /// The module a PEFT adapter stores whole (`modules_to_save`; PEFT adds it for task_type SEQ_CLS).
    public static let savedModule = "classifier"

    /// Reads the head of a checkpoint whose encoder keys start with `encoderPrefix`.
    public init(kind: Kind, hiddenSize: Int, labels: Int, source: TensorSource, encoderPrefix: String) throws {
        self.kind = kind
        self.hiddenSize = hiddenSize
        self.labels = labels
        func load(_ name: String, _ shape: [Int]) throws -> Tensor {
            let t = Tensor(zeros: shape)
            try source.read(name, shape: shape, into: t.pointer)
            return t
        }
        let c = hiddenSize, densePath = kind == .bert ? encoderPrefix + "pooler.dense" : "classifier.dense"
        let outputPath = kind == .bert ? "classifier" : "classifier.out_proj"
        dense = try load(densePath + ".weight", [c, c])
        denseBias = try load(densePath + ".bias", [c])
        output = try load(outputPath + ".weight", [labels, c])
        outputBias = try load(outputPath + ".bias", [labels])
    }

    /// This head with the weights an adapter stores whole (`PEFTAdapter.savedModules`, keyed
    /// `classifier.weight`, `classifier.dense.bias`, …) in place of the checkpoint's; every tensor
    /// must be one of the head's, with its shape.
    public func replacing(_ saved: [String: (shape: [Int], values: [Float])], file: URL) throws -> SequenceClassificationHead {
        var head = self
        let slots: [String: WritableKeyPath<SequenceClassificationHead, Tensor>] = [
            denseModule + ".weight": \.dense, denseModule + ".bias": \.denseBias,
            outputModule + ".weight": \.output, outputModule + ".bias": \.outputBias,
        ]
        for (name, tensor) in saved.sorted(by: { $0.key < $1.key }) {
            guard let slot = slots[name] else {
                throw FormatError(url: file, item: "tensor \"\(PEFTAdapter.keyPrefix)\(name)\"", "is not a weight of this model's classification head")
            }
            guard tensor.shape == head[keyPath: slot].shape else {
                throw FormatError(url: file, item: "tensor \"\(PEFTAdapter.keyPrefix)\(name)\"",
                                  "has shape \(tensor.shape), the head's is \(head[keyPath: slot].shape)")
            }
            head[keyPath: slot] = Tensor(shape: tensor.shape, values: tensor.values)
        }
        return head
    }

    /// logits (R, L), row-major: the head on hidden rows `rows` of `hidden` (N, C), with the
    /// adapter's LoRA on the head's linears when it carries any.
    public func logits(hidden: Tensor, rows: [Int], adapter: LoRAAdapter?) throws -> [Float] {
        let c = hiddenSize, r = rows.count
        guard hidden.shape.count == 2, hidden.shape[1] == c else {
            throw FormatError("hidden states of shape \(hidden.shape) do not match the head's \(c) features")
        }
        if let bad = rows.first(where: { $0 < 0 || $0 >= hidden.shape[0] }) {
            throw FormatError("row \(bad) is outside the \(hidden.shape[0]) rows of the hidden states")
        }
        var x = [Float](repeating: 0, count: r * c), y = [Float](repeating: 0, count: r * c)
        var out = [Float](repeating: 0, count: r * labels)
        for (i, row) in rows.enumerated() { for k in 0..<c { x[i * c + k] = hidden.pointer[row * c + k] } }
        let context = adapter.map { LoRAContext(adapter: $0, training: false) }
        var u = [Float](repeating: 0, count: r * max(adapter?.config.r ?? 0, 1)), dropped = [Float](repeating: 0, count: 1)
        func linear(_ module: String, out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: Tensor, bias: Tensor,
                    outFeatures: Int) {
            adaptedLinearForward(out: out, inp: inp, weight: weight.pointer, bias: bias.pointer, n: r, inFeatures: c,
                                 outFeatures: outFeatures, slot: adapter?.slot(module), context: context, u: &u, dropped: &dropped)
        }
        // (R, C) → dense → tanh → (R, L)
        linear(denseModule, out: &y, inp: x, weight: dense, bias: denseBias, outFeatures: c)
        for i in 0..<(r * c) { y[i] = tanh(y[i]) }
        linear(outputModule, out: &out, inp: y, weight: output, bias: outputBias, outFeatures: labels)
        return out
    }
}
