import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// The classification head of a BERT / XLM-R `*ForSequenceClassification` checkpoint, read on
/// each sequence's first token ([CLS] / <s>) only:
///   BERT   logits = classifier(tanh(pooler.dense(h₀)))           (BertPooler + Linear)
///   XLM-R  logits = out_proj(tanh(classifier.dense(h₀)))         (RobertaClassificationHead)
/// Dropout is the identity at inference (and in training here). The pooler's keys carry the
/// encoder's prefix (`bert.pooler.dense`); the classifier's are top-level.
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
    /// BERT's pooler, stored whole too by an adapter whose encoder checkpoint has none.
    public static let poolerModule = "pooler"

    /// Every tensor by its name in an adapter ("classifier.weight", "pooler.dense.bias", …).
    var tensorSlots: [(name: String, slot: WritableKeyPath<SequenceClassificationHead, Tensor>)] {
        [(denseModule + ".weight", \.dense), (denseModule + ".bias", \.denseBias),
         (outputModule + ".weight", \.output), (outputModule + ".bias", \.outputBias)]
    }

    /// Reads the head of a checkpoint whose encoder keys start with `encoderPrefix`.
    public init(kind: Kind, hiddenSize: Int, labels: Int, source: TensorSource, encoderPrefix: String) throws {
        self.init(kind: kind, hiddenSize: hiddenSize, labels: labels)
        for (name, slot) in tensorSlots {
            try source.read(checkpointName(name, encoderPrefix: encoderPrefix), shape: self[keyPath: slot].shape,
                            into: self[keyPath: slot].pointer)
        }
    }

    /// A head of zeros.
    init(kind: Kind, hiddenSize: Int, labels: Int) {
        self.kind = kind
        self.hiddenSize = hiddenSize
        self.labels = labels
        dense = Tensor(zeros: [hiddenSize, hiddenSize])
        denseBias = Tensor(zeros: [hiddenSize])
        output = Tensor(zeros: [labels, hiddenSize])
        outputBias = Tensor(zeros: [labels])
    }

    /// A new head on an encoder checkpoint, initialised as transformers' `_init_weights` does:
    /// Linear weights N(0, initializer_range²), biases 0, drawn from `seed`. BERT's pooler is the
    /// checkpoint's when it has one (`checkpointHasPooler`), else new as well.
    public init(newFor kind: Kind, hiddenSize: Int, labels: Int, initializerRange: Float, seed: UInt64, source: TensorSource,
                encoderPrefix: String) throws {
        self.init(kind: kind, hiddenSize: hiddenSize, labels: labels)
        var rng = SplitMix64(seed: seed)
        for weight in [dense, output] {
            for i in stride(from: 0, to: weight.count, by: 2) {
                // Box–Muller: two independent normals from two uniforms in (0, 1].
                let u1 = Float((rng.next() >> 40) + 1) / Float(1 << 24), u2 = Float(rng.next() >> 40) / Float(1 << 24)
                let radius = (-2 * logf(u1)).squareRoot() * initializerRange, angle = 2 * Float.pi * u2
                weight.pointer[i] = radius * cosf(angle)
                if i + 1 < weight.count { weight.pointer[i + 1] = radius * sinf(angle) }
            }
        }
        if Self.checkpointHasPooler(kind: kind, source: source, encoderPrefix: encoderPrefix) {
            try source.read(encoderPrefix + "pooler.dense.weight", shape: dense.shape, into: dense.pointer)
            try source.read(encoderPrefix + "pooler.dense.bias", shape: denseBias.shape, into: denseBias.pointer)
        }
    }

    /// Whether an encoder checkpoint carries BERT's pooler (XLM-R's head has none to take).
    public static func checkpointHasPooler(kind: Kind, source: TensorSource, encoderPrefix: String) -> Bool {
        kind == .bert && source.contains(encoderPrefix + "pooler.dense.weight")
    }

    /// The head an adapter carries for an encoder checkpoint (task_type SEQ_CLS over an embedding
    /// model): every tensor from the adapter's whole modules, except BERT's pooler, which is the
    /// checkpoint's unless the adapter stores it too. The label count is the adapter's classifier's.
    public init(kind: Kind, hiddenSize: Int, saved: [String: (shape: [Int], values: [Float])], source: TensorSource,
                encoderPrefix: String, file: URL) throws {
        let outputName = (kind == .bert ? "classifier" : "classifier.out_proj") + ".weight"
        guard let out = saved[outputName], out.shape.count == 2, out.shape[0] > 0 else {
            throw FormatError(url: file, item: "tensor \"\(PEFTAdapter.keyPrefix)\(outputName)\"",
                              "missing: the adapter carries no classification head, so the embedding model cannot score pairs")
        }
        self.init(kind: kind, hiddenSize: hiddenSize, labels: out.shape[0])
        if saved[denseModule + ".weight"] == nil {
            guard Self.checkpointHasPooler(kind: kind, source: source, encoderPrefix: encoderPrefix) else {
                throw FormatError(url: file, item: "tensor \"\(PEFTAdapter.keyPrefix)\(denseModule).weight\"",
                                  "missing, and the model's checkpoint has none either")
            }
            try source.read(encoderPrefix + "pooler.dense.weight", shape: dense.shape, into: dense.pointer)
            try source.read(encoderPrefix + "pooler.dense.bias", shape: denseBias.shape, into: denseBias.pointer)
        }
        let poolerFromCheckpoint = saved[denseModule + ".weight"] == nil
        self = try replacing(saved, file: file)
        for name in tensorSlots.map(\.name) where saved[name] == nil && !(poolerFromCheckpoint && name.hasPrefix(denseModule + ".")) {
            throw FormatError(url: file, item: "tensor \"\(PEFTAdapter.keyPrefix)\(name)\"", "missing from the adapter's classification head")
        }
    }

    /// A tensor's key in a `*ForSequenceClassification` checkpoint.
    func checkpointName(_ name: String, encoderPrefix: String) -> String { name.hasPrefix("pooler.") ? encoderPrefix + name : name }

    /// This head with the weights an adapter stores whole (`PEFTAdapter.savedModules`, keyed
    /// `classifier.weight`, `classifier.dense.bias`, …) in place of the checkpoint's; every tensor
    /// must be one of the head's, with its shape.
    public func replacing(_ saved: [String: (shape: [Int], values: [Float])], file: URL) throws -> SequenceClassificationHead {
        var head = self
        let slots = Dictionary(uniqueKeysWithValues: tensorSlots.map { ($0.name, $0.slot) })
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

    /// The head's tensors inside `modules` (an adapter's modules_to_save), by name and shape.
    public func tensors(in modules: [String]) -> [(name: String, shape: [Int])] {
        tensorSlots.filter { t in modules.contains { ("." + t.name).contains("." + $0 + ".") } }.map { ($0.name, self[keyPath: $0.slot].shape) }
    }

    /// Copies this head's values into the adapter's whole tensors of the same names.
    public func store(into adapter: LoRAAdapter) {
        for (name, slot) in tensorSlots {
            if let t = adapter.whole(name) { adapter.value(t).update(from: self[keyPath: slot].pointer, count: t.count) }
        }
    }

    /// This head reading every tensor the adapter trains whole from the adapter's parameters: views
    /// into its flat buffer, so optimiser steps and restored checkpoints take effect at once.
    public func bound(to adapter: LoRAAdapter) -> SequenceClassificationHead {
        var head = self
        for (name, slot) in tensorSlots {
            if let t = adapter.whole(name) { head[keyPath: slot] = Tensor(storage: adapter.params, offset: t.offset, shape: t.shape) }
        }
        return head
    }

    // MARK: forward / backward

    /// What `forward` keeps for `backward`, one row per scored sequence.
    public struct Activations {
        public let rows: [Int]
        var x: [Float]                    // (R, C) the first-token hidden states
        var y: [Float]                    // (R, C) tanh(dense(x))
        var uDense, uOutput: [Float]      // (R, r) the LoRA bottlenecks
    }

    /// logits (R, L), row-major: the head on hidden rows `rows` of `hidden` (N, C), with the
    /// adapter's LoRA on the head's linears when it carries any.
    public func logits(hidden: Tensor, rows: [Int], adapter: LoRAAdapter?) throws -> [Float] {
        try forward(hidden: hidden, rows: rows, context: adapter.map { LoRAContext(adapter: $0, training: false) }).logits
    }

    /// `logits`, keeping what `backward` needs. The head's LoRA runs without dropout.
    public func forward(hidden: Tensor, rows: [Int], context: LoRAContext?) throws -> (logits: [Float], kept: Activations) {
        let c = hiddenSize, r = rows.count, rank = context?.adapter.config.r ?? 0
        guard hidden.shape.count == 2, hidden.shape[1] == c else {
            throw FormatError("hidden states of shape \(hidden.shape) do not match the head's \(c) features")
        }
        if let bad = rows.first(where: { $0 < 0 || $0 >= hidden.shape[0] }) {
            throw FormatError("row \(bad) is outside the \(hidden.shape[0]) rows of the hidden states")
        }
        var x = [Float](repeating: 0, count: r * c), y = [Float](repeating: 0, count: r * c)
        var uDense = [Float](repeating: 0, count: r * max(rank, 1)), uOutput = uDense
        var out = [Float](repeating: 0, count: r * labels), dropped = [Float](repeating: 0, count: 1)
        for (i, row) in rows.enumerated() { for k in 0..<c { x[i * c + k] = hidden.pointer[row * c + k] } }
        let adapter = context?.adapter
        // (R, C) → dense → tanh → (R, C) → output → (R, L)
        adaptedLinearForward(out: &y, inp: x, weight: dense.pointer, bias: denseBias.pointer, n: r, inFeatures: c, outFeatures: c,
                             slot: adapter?.slot(denseModule), context: context, u: &uDense, dropped: &dropped)
        for i in 0..<(r * c) { y[i] = tanh(y[i]) }
        adaptedLinearForward(out: &out, inp: y, weight: output.pointer, bias: outputBias.pointer, n: r, inFeatures: c,
                             outFeatures: labels, slot: adapter?.slot(outputModule), context: context, u: &uOutput, dropped: &dropped)
        return (out, Activations(rows: rows, x: x, y: y, uDense: uDense, uOutput: uOutput))
    }

    /// Backward of `forward`: dLogits (R, L) → the gradients of the head's tensors the adapter
    /// trains whole (this head `bound(to:)` it), the LoRA gradients of its linears, and dL/dh₀ added
    /// into rows `kept.rows` of dHidden (N, C).
    public func backward(_ kept: Activations, dLogits: [Float], context: LoRAContext, dHidden: UnsafeMutablePointer<Float>) {
        let c = hiddenSize, r = kept.rows.count, adapter = context.adapter
        var dz = [Float](repeating: 0, count: r * c), dx = [Float](repeating: 0, count: r * c)
        var du = [Float](repeating: 0, count: r * max(adapter.config.r, 1)), dropped = [Float](repeating: 0, count: 1)
        // tanh'(z) = 1 − y², the slope the output linear's input gradient passes through.
        let slope = kept.y.map { 1 - $0 * $0 }
        // (R, L) → output: dW, db when trained whole; dz = (dLogits · W + LoRA) ⊙ (1 − y²)   (R, C)
        wholeGradient(outputModule, adapter: adapter, dout: dLogits, inp: kept.y, n: r, outFeatures: labels)
        adaptedLinearBackward(dinp: &dz, dout: dLogits, inp: kept.y, weight: output.pointer, n: r, inFeatures: c, outFeatures: labels,
                              accumulate: false, slot: adapter.slot(outputModule), context: context, u: kept.uOutput, du: &du,
                              dropped: &dropped, slope: slope)
        // (R, C) → dense: dW, db when trained whole; dx = dz · W + LoRA   (R, C)
        wholeGradient(denseModule, adapter: adapter, dout: dz, inp: kept.x, n: r, outFeatures: c)
        adaptedLinearBackward(dinp: &dx, dout: dz, inp: kept.x, weight: dense.pointer, n: r, inFeatures: c, outFeatures: c,
                              accumulate: false, slot: adapter.slot(denseModule), context: context, u: kept.uDense, du: &du,
                              dropped: &dropped)
        for (i, row) in kept.rows.enumerated() { for k in 0..<c { dHidden[row * c + k] += dx[i * c + k] } }
    }

    /// The weight and bias gradients of linear `module` when the adapter trains it whole.
    private func wholeGradient(_ module: String, adapter: LoRAAdapter, dout: [Float], inp: [Float], n: Int, outFeatures: Int) {
        guard let w = adapter.whole(module + ".weight") else { return }
        linearBackwardWeight(dweight: adapter.gradient(w), dbias: adapter.whole(module + ".bias").map(adapter.gradient), dout: dout,
                             inp: inp, n: n, c: hiddenSize, oc: outFeatures)
    }
}
