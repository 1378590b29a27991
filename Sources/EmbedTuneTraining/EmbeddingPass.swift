import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import Foundation

/// The model as the losses see it: token ids in, pooled and L2-normalised embeddings out (with
/// every layer's activations kept for backward when asked), and dL/d(normalised embeddings) back
/// into the adapter's gradients.
public final class EmbeddingPass {
    public let model: Backbone & TrainableBackbone
    public let adapter: LoRAAdapter
    public let pooling: PoolingConfig.Mode
    /// Also the backbone's own dropout in training passes (BERT's hidden and attention dropout).
    let backboneDropout: Bool
    /// dL/d(final hidden states), (N, C): tens of MB, reused across steps rather than mapped and
    /// zero-faulted each time.
    private var dHidden = [Float]()

    public init(model: Backbone & TrainableBackbone, adapter: LoRAAdapter, pooling: PoolingConfig.Mode, backboneDropout: Bool) {
        self.model = model
        self.adapter = adapter
        self.pooling = pooling
        self.backboneDropout = backboneDropout
    }

    public var width: Int { model.hiddenSize }

    /// Embeds `ids` (pooled, L2-normalised), optionally keeping activations for `backward`; with
    /// `adapted: false`, through the base model alone. Returns the normalised rows and the pooled
    /// rows the normalisation's backward needs. `seeds` (one per sequence) fix the dropout masks.
    public func embed(_ ids: [[Int32]], seeds: [UInt64], keep: Bool, training: Bool, adapted: Bool = true) throws
        -> (normalized: [Float], pooled: [Float]) {
        let c = model.hiddenSize
        let context = adapted ? LoRAContext(adapter: adapter, training: training, sequenceSeeds: seeds, backboneDropout: backboneDropout) : nil
        let hidden = try model.forward(ids, lora: context, keepActivations: keep && adapted, pooling: pooling)
        var pooled = [Float](repeating: 0, count: ids.count * c)
        let batch = PackedBatch(lengths: ids.map(\.count))
        pooled.withUnsafeMutableBufferPointer { pool(pooling, hidden: hidden.pointer, batch: batch, c: c, out: $0.baseAddress!) }
        var normalized = pooled
        l2NormalizeRows(&normalized, n: ids.count, c: c)
        return (normalized, pooled)
    }

    /// Backpropagates dL/d(normalised embeddings) of `ids` after a forward that kept activations;
    /// accumulates into the adapter's gradients.
    public func backward(_ ids: [[Int32]], pooled: [Float], dNormalized: ArraySlice<Float>) throws {
        let c = model.hiddenSize, batch = PackedBatch(lengths: ids.map(\.count))
        var dPooled = [Float](repeating: 0, count: ids.count * c)
        Array(dNormalized).withUnsafeBufferPointer { g in
            l2NormalizeBackward(dx: &dPooled, dy: g.baseAddress!, x: pooled, n: ids.count, c: c)
        }
        guard pooling != .max else { throw FormatError("max pooling cannot be trained") }
        dHidden.removeAll(keepingCapacity: true)
        dHidden.append(contentsOf: repeatElement(0, count: batch.tokens * c))
        poolBackward(pooling, dPooled: dPooled, batch: batch, c: c, dHidden: &dHidden)
        try dHidden.withUnsafeBufferPointer { try model.backward(dHidden: $0.baseAddress!) }
    }
}
