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
    /// The returned view is valid until the next call. `pooling` is the pooling that reads the
    /// output: a backbone may skip rows it never reads (a decoder under last-token pooling), and
    /// those rows of the hidden states are then unspecified.
    func forward(_ sequences: [[Int32]], pooling: PoolingConfig.Mode) throws -> Tensor
    /// The frozen linear layers' weights, (OC, C) each, that INT8 inference quantises: the
    /// attention and MLP projections (embeddings, norms and heads stay float32).
    var frozenLinears: [(weight: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int)] { get }
}

extension Backbone {
    /// Runs this backbone's frozen linear layers in INT8 from now on (`Int8Weights`): each weight
    /// is quantised per output channel and packed once. Returns the packed bytes.
    /// With `calibrate` (a float32 forward pass over calibration texts, run here with the linears
    /// observed) each product is smoothed by its activations' channel maxima (SmoothQuant).
    /// `groupSize`: input channels per activation scale (0: one per row).
    @discardableResult
    public func quantizeLinearsToInt8(groupSize: Int = Int8Weights.defaultGroupSize, calibrate: (() throws -> Void)? = nil) throws -> Int {
        var maxima = [UInt: [Float]]()
        if let calibrate {
            Int8Weights.shared.observe(frozenLinears.map(\.weight), inFeatures: frozenLinears.map(\.inFeatures))
            defer { maxima = Int8Weights.shared.stopObserving() }
            try calibrate()
        }
        for l in frozenLinears {
            Int8Weights.shared.register(l.weight, outFeatures: l.outFeatures, inFeatures: l.inFeatures,
                                        activationMaxima: maxima[UInt(bitPattern: l.weight)], groupSize: groupSize)
        }
        return Int8Weights.shared.byteCount
    }
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
            if s.isEmpty { throw FormatError("sequence \(i) is empty") }
            if s.count > maxPositions {
                throw FormatError("sequence \(i) has \(s.count) tokens, more than the model's \(maxPositions) positions")
            }
            if let bad = s.first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
                throw FormatError("sequence \(i) has token id \(bad) outside the model's vocabulary of \(vocabularySize)")
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
    /// `Backbone.forward` with an adapter applied, keeping every layer's activations for
    /// `backward` when asked.
    func forward(_ sequences: [[Int32]], lora: LoRAContext?, keepActivations: Bool, pooling: PoolingConfig.Mode) throws -> Tensor
    /// Backward from dL/d(final hidden states) of the last forward that kept activations;
    /// accumulates into the adapter's gradients.
    func backward(dHidden: UnsafePointer<Float>) throws
    /// Linear layers a PEFT adapter may carry that do not affect embeddings (BERT's pooler):
    /// accepted when loading, then ignored.
    var unusedAdapterModules: Set<String> { get }
    /// Floats of activations the largest pass so far needed (the arena holds a quarter more).
    var activationCapacity: Int { get }
    /// Every weight, named by checkpoint path without the task-model prefix.
    var arena: ParameterArena { get }
}

extension TrainableBackbone {
    public var unusedAdapterModules: Set<String> { [] }

    /// Σ in·out over the linear layers: their weights' share of the parameters, and half of the
    /// FLOPs per token of a forward pass.
    public var linearParameterCount: Int { linearLayers.reduce(0) { $0 + $1.inFeatures * $1.outFeatures } }
}

extension TrainableBackbone {
    /// The fp32 weight of linear `module` ([out, in]) inside the parameter arena.
    public func linearWeight(_ module: String) throws -> (pointer: UnsafeMutablePointer<Float>, out: Int, in: Int) {
        guard let entry = arena.layout.first(where: { $0.name == module + ".weight" }), entry.shape.count == 2 else {
            throw FormatError("this model has no linear layer \"\(module)\"")
        }
        return (arena.storage.pointer + entry.offset, entry.shape[0], entry.shape[1])
    }

    /// Runs `body` with each ΔW added to its linear's weight (a merged adapter folded into the base),
    /// then restores the original weights bit for bit.
    public func withFolded<T>(_ deltas: [(module: String, values: [Double])], _ body: () throws -> T) throws -> T {
        guard !BF16Base.shared.isActive else { throw FormatError("a merged adapter cannot be folded into a bfloat16 base (--base_precision bf16)") }
        var saved = [(UnsafeMutablePointer<Float>, [Float])]()
        defer { for (p, original) in saved { p.update(from: original, count: original.count) } }
        for d in deltas {
            let w = try linearWeight(d.module)
            guard d.values.count == w.out * w.in else {
                throw FormatError("ΔW for \(d.module) has \(d.values.count) values, the weight is \(w.out)×\(w.in)")
            }
            saved.append((w.pointer, Array(UnsafeBufferPointer(start: w.pointer, count: d.values.count))))
            for i in 0..<d.values.count { w.pointer[i] = Float(Double(w.pointer[i]) + d.values[i]) }
        }
        return try body()
    }
}
