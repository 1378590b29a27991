import EmbedTuneKernels
import EmbedTuneModels
import Foundation
import Testing

/// Whole-model gradient check: L = Σ hidden ⊙ R through every layer, against central
/// differences along random directions in LoRA parameter space (loss in Double).
/// With `lastTokenOnly` the backbone is told its output is pooled at the last token and R is zero
/// on every other row (those rows are unspecified then).
func loraGradientError(model: Backbone & TrainableBackbone, sequences: [[Int32]], dropout: Double = 0,
                       backboneDropout: Bool = false, lastTokenOnly: Bool = false) throws -> Double {
    let pooling: PoolingConfig.Mode = lastTokenOnly ? .lastToken : .mean
    let adapter = try LoRAAdapter(config: LoRAConfig(r: 4, alpha: 8, dropout: dropout, targetModules: model.defaultTargetModules),
                                  linears: model.linearLayers)
    var rng = SeededGenerator(seed: 11)
    // Non-zero B so gradients reach A too.
    for i in 0..<adapter.params.count { adapter.params.pointer[i] = Float.random(in: -0.1...0.1, using: &rng) }
    let seeds: [UInt64] = sequences.indices.map { UInt64($0) * 77 + 5 }
    let context = LoRAContext(adapter: adapter, training: true, sequenceSeeds: seeds, backboneDropout: backboneDropout)
    let n = sequences.reduce(0) { $0 + $1.count } * model.hiddenSize
    var r = (0..<n).map { _ in Float.random(in: -1...1, using: &rng) }
    if lastTokenOnly {
        let batch = PackedBatch(lengths: sequences.map(\.count)), c = model.hiddenSize
        for s in 0..<batch.count where batch.length(s) > 1 {
            for i in (batch.offsets[s] * c)..<((batch.offsets[s + 1] - 1) * c) { r[i] = 0 }
        }
    }
    func loss() throws -> Double {
        let hidden = try model.forward(sequences, lora: context, keepActivations: false, pooling: pooling)
        return zip(hidden.array, r).reduce(0.0) { $1.1 == 0 ? $0 : $0 + Double($1.0) * Double($1.1) }
    }
    _ = try model.forward(sequences, lora: context, keepActivations: true, pooling: pooling)
    adapter.zeroGrads()
    try r.withUnsafeBufferPointer { try model.backward(dHidden: $0.baseAddress!) }
    let grad = adapter.grads.array
    let theta = adapter.params.array
    var worst = 0.0
    // Small enough that curvature (softmax, SwiGLU) stays below the tolerance, large enough for fp32.
    let h: Float = 3e-3
    for _ in 0..<3 {
        let v = (0..<theta.count).map { _ in Float.random(in: -1...1, using: &rng) }
        for i in theta.indices { adapter.params.pointer[i] = theta[i] + h * v[i] }
        let plus = try loss()
        for i in theta.indices { adapter.params.pointer[i] = theta[i] - h * v[i] }
        let minus = try loss()
        for i in theta.indices { adapter.params.pointer[i] = theta[i] }
        let numeric = (plus - minus) / (2 * Double(h))
        let analytic = zip(grad, v).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        worst = max(worst, abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-3))
    }
    return worst
}

@Suite("Whole-model LoRA gradients (finite differences)", .serialized)
struct ModelGradientTests {
    static let sequences: [[Int32]] = [[5, 17, 300, 42, 7, 1500], [9, 8, 1500], [100, 200, 300, 400, 500, 600, 700, 1500]]

    @Test("Qwen3 and Qwen2 LoRA gradients through every layer match finite differences", arguments: ["tiny-qwen3", "tiny-qwen2"])
    func qwen(_ name: String) throws {
        let model = try loadBackbone(ModelDirectory(Paths.fixtures.appendingPathComponent(name))) as! Backbone & TrainableBackbone
        let err = try loraGradientError(model: model, sequences: Self.sequences)
        #expect(err < 1e-2, "relative error \(err)")
    }

    @Test("with last-token pooling the pruned final block's gradients match finite differences",
          arguments: ["tiny-qwen3", "tiny-qwen2"])
    func qwenLastToken(_ name: String) throws {
        let model = try loadBackbone(ModelDirectory(Paths.fixtures.appendingPathComponent(name))) as! Backbone & TrainableBackbone
        let sequences = Self.sequences + [[77]]  // a one-token sequence too
        let err = try loraGradientError(model: model, sequences: sequences, dropout: 0.3, lastTokenOnly: true)
        // This loss reads 5 rows instead of 28, so central differences are noisier: the full pass
        // shows the same 0.016 on it for tiny-qwen3. LastTokenTests compares with the full pass to 1e-5.
        #expect(err < 2e-2, "relative error \(err)")
    }

    @Test("BERT and XLM-R LoRA gradients through every layer match finite differences", arguments: ["tiny-bert-zh", "tiny-xlmr"])
    func encoders(_ name: String) throws {
        let model = try loadBackbone(ModelDirectory(Paths.fixtures.appendingPathComponent(name))) as! Backbone & TrainableBackbone
        let sequences: [[Int32]] = [[2, 17, 300, 42, 7, 3], [2, 8, 3], [2, 100, 200, 300, 400, 500, 3]]
        let err = try loraGradientError(model: model, sequences: sequences, dropout: 0.2)
        #expect(err < 1e-2, "relative error \(err)")
        let withBackbone = try loraGradientError(model: model, sequences: sequences, dropout: 0.2, backboneDropout: true)
        #expect(withBackbone < 1e-2, "relative error with hidden and attention dropout \(withBackbone)")
    }

    @Test("with LoRA dropout the masks are replayed exactly in backward")
    func dropout() throws {
        let model = try loadBackbone(ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-qwen3"))) as! Backbone & TrainableBackbone
        let err = try loraGradientError(model: model, sequences: Self.sequences, dropout: 0.3)
        #expect(err < 1e-2, "relative error \(err)")
    }
}
