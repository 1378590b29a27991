import EmbedTuneKernels
import EmbedTuneModels
import Foundation
import Testing

/// Under last-token pooling a decoder's final block runs q, attention output, o_proj and the MLP
/// for each sequence's last token only; everything a pooled embedding or gradient sees must equal
/// the full computation.
@Suite("Last-token pooling: the pruned final block")
struct LastTokenTests {
    static let sequences: [[Int32]] = [[5, 17, 300, 42, 7, 1500], [9], [9, 8, 1500], [100, 200, 300, 400, 500, 600, 700, 800, 900, 1500]]

    func model(_ name: String) throws -> Backbone & TrainableBackbone {
        try loadBackbone(ModelDirectory(Paths.fixtures.appendingPathComponent(name))) as! Backbone & TrainableBackbone
    }

    func adapter(for model: TrainableBackbone, dropout: Double) throws -> LoRAAdapter {
        let adapter = try LoRAAdapter(config: LoRAConfig(r: 4, alpha: 8, dropout: dropout, targetModules: model.defaultTargetModules),
                                      linears: model.linearLayers)
        var rng = SeededGenerator(seed: 5)
        for i in 0..<adapter.params.count { adapter.params.pointer[i] = Float.random(in: -0.1...0.1, using: &rng) }
        return adapter
    }

    /// The last row of every sequence.
    func lastRows(_ hidden: Tensor, c: Int) -> [Float] {
        let batch = PackedBatch(lengths: Self.sequences.map(\.count))
        return (0..<batch.count).flatMap { s in Array(hidden.array[((batch.offsets[s + 1] - 1) * c)..<(batch.offsets[s + 1] * c)]) }
    }

    @Test("the last rows equal the full pass, with and without an adapter", arguments: ["tiny-qwen3", "tiny-qwen2"])
    func forwardParity(_ name: String) throws {
        let m = try model(name), c = m.hiddenSize
        let context = LoRAContext(adapter: try adapter(for: m, dropout: 0), training: false)
        for lora in [nil, context] {
            let full = lastRows(try m.forward(Self.sequences, lora: lora, keepActivations: false, pooling: .mean), c: c)
            let pruned = lastRows(try m.forward(Self.sequences, lora: lora, keepActivations: false, pooling: .lastToken), c: c)
            let trained = lastRows(try m.forward(Self.sequences, lora: lora, keepActivations: true, pooling: .lastToken), c: c)
            let diff = zip(full, pruned).map { abs($0 - $1) }.max()!
            #expect(diff <= 1e-5, "inference: max |Δ| \(diff)")
            // Inference normalises attention's output rows, training its kept probabilities: rounding apart.
            let trainedDiff = zip(pruned, trained).map { abs($0 - $1) }.max()!
            #expect(trainedDiff <= 1e-5, "the training pass computes the same rows: max |Δ| \(trainedDiff)")
        }
    }

    @Test("adapter gradients equal the full pass's, dropout masks included", arguments: ["tiny-qwen3", "tiny-qwen2"])
    func gradientParity(_ name: String) throws {
        let m = try model(name), c = m.hiddenSize
        let adapter = try adapter(for: m, dropout: 0.3)
        let seeds = Self.sequences.indices.map { UInt64($0) * 31 + 7 }
        let context = LoRAContext(adapter: adapter, training: true, sequenceSeeds: seeds)
        let batch = PackedBatch(lengths: Self.sequences.map(\.count))
        var rng = SeededGenerator(seed: 9)
        // dL/dhidden on the last rows only, as last-token pooling's backward gives.
        var dHidden = [Float](repeating: 0, count: batch.tokens * c)
        for s in 0..<batch.count { for i in 0..<c { dHidden[(batch.offsets[s + 1] - 1) * c + i] = Float.random(in: -1...1, using: &rng) } }
        func grads(_ mode: PoolingConfig.Mode) throws -> [Float] {
            _ = try m.forward(Self.sequences, lora: context, keepActivations: true, pooling: mode)
            adapter.zeroGrads()
            try dHidden.withUnsafeBufferPointer { try m.backward(dHidden: $0.baseAddress!) }
            return adapter.grads.array
        }
        let full = try grads(.mean), pruned = try grads(.lastToken)
        let scale = full.map(abs).max()!
        let diff = zip(full, pruned).map { abs($0 - $1) }.max()!
        #expect(scale > 0)
        #expect(diff <= 1e-5 * scale, "max |Δ| \(diff) against max |g| \(scale)")
    }

    @Test("keeping SwiGLU's product and recomputing it in backward give the same gradients", arguments: ["tiny-qwen3", "tiny-qwen2"])
    func swigluProductKeptOrRecomputed(_ name: String) throws {
        let m = try model(name) as! QwenModel, c = m.hiddenSize
        let adapter = try adapter(for: m, dropout: 0.3)
        let context = LoRAContext(adapter: adapter, training: true, sequenceSeeds: Self.sequences.indices.map { UInt64($0) + 3 })
        let tokens = Self.sequences.map(\.count).reduce(0, +)
        var rng = SeededGenerator(seed: 4)
        let dHidden = (0..<(tokens * c)).map { _ in Float.random(in: -1...1, using: &rng) }
        func grads(budget: Int) throws -> [Float] {
            m.swigluProductBudget = budget
            _ = try m.forward(Self.sequences, lora: context, keepActivations: true, pooling: .mean)
            adapter.zeroGrads()
            try dHidden.withUnsafeBufferPointer { try m.backward(dHidden: $0.baseAddress!) }
            return adapter.grads.array
        }
        let kept = try grads(budget: .max), recomputed = try grads(budget: 0)
        #expect(kept.contains { $0 != 0 })
        #expect(kept == recomputed, "the product is the same elementwise function either way")
    }
}
