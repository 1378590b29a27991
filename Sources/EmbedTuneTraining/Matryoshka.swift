import EmbedTuneKernels
import Foundation

/// Matryoshka representation learning as sentence-transformers' MatryoshkaLoss applies it to a
/// contrastive loss: for each dimension d, the batch's embeddings are cut to their first d
/// components and L2-normalised again, the base loss is taken on them, and the objective is the
/// weighted sum over d. Gradients flow back through each truncation and normalisation to the
/// full embeddings, so one forward and one backward of the model serve every dimension — in
/// GradCache's form too (MatryoshkaLoss's CachedLossDecorator does the same there), and over the
/// gathered batch of all ranks, since it works on the batch the InfoNCE term assembles.
public struct Matryoshka: Equatable, Sendable {
    /// Largest first, as MatryoshkaLoss sorts them, with their weights.
    public let dims: [Int]
    public let weights: [Float]

    /// `weights` empty: all 1.
    public init(dims: [Int], weights: [Float] = []) {
        let w = weights.isEmpty ? [Float](repeating: 1, count: dims.count) : weights
        precondition(w.count == dims.count && !dims.isEmpty, "one weight per Matryoshka dimension")
        let sorted = zip(dims, w).sorted { $0.0 > $1.0 }
        self.dims = sorted.map(\.0)
        self.weights = sorted.map(\.1)
    }

    /// Σ_d w_d · base(batch cut to d and renormalised), with the gradient with respect to the
    /// batch's (unit-norm) embeddings and dL/dlogτ summed the same way. The logged mean positive
    /// and hardest-negative scores are those at the largest dimension.
    public func loss(_ batch: ContrastiveBatch, base: (ContrastiveBatch) -> InfoNCEResult) -> InfoNCEResult {
        let c = batch.dim, nq = batch.rows, nd = batch.documentRow.count
        var total = InfoNCEResult(loss: 0, dQueries: [Float](repeating: 0, count: nq * c),
                                  dDocuments: [Float](repeating: 0, count: nd * c), dLogTemperature: 0,
                                  meanPositive: .nan, meanHardestNegative: .nan)
        for (k, (d, w)) in zip(dims, weights).enumerated() {
            precondition(d <= c, "Matryoshka dimension \(d) above the embedding width \(c)")
            var small = batch
            if d < c {
                small.dim = d
                small.queries = truncatedRows(batch.queries, n: nq, c: c, dim: d)
                small.documents = truncatedRows(batch.documents, n: nd, c: c, dim: d)
            }
            let r = base(small)
            total.loss += Double(w) * r.loss
            total.dLogTemperature += Double(w) * r.dLogTemperature
            if k == 0 {
                (total.meanPositive, total.meanHardestNegative, total.rowsWithNegative) = (r.meanPositive, r.meanHardestNegative, r.rowsWithNegative)
            }
            Self.accumulate(into: &total.dQueries, r.dQueries, of: batch.queries, n: nq, c: c, dim: d, weight: w)
            Self.accumulate(into: &total.dDocuments, r.dDocuments, of: batch.documents, n: nd, c: c, dim: d, weight: w)
        }
        return total
    }

    /// into (N, C) += weight · the gradient `g` (N, dim) of normalise(x[:, :dim]) taken back to x.
    /// At the full width the rows are unit-norm already, so the cut and normalisation are the
    /// identity on them and `g` is added as it is (the embedding pass's own normalisation backward
    /// removes its component along each row, exactly as the normalisation here would).
    static func accumulate(into: inout [Float], _ g: [Float], of x: [Float], n: Int, c: Int, dim: Int, weight: Float) {
        if dim == c {
            for i in 0..<(n * c) { into[i] += weight * g[i] }
            return
        }
        let cut = truncatedRows(x, n: n, c: c, dim: dim, normalize: false)
        var dx = [Float](repeating: 0, count: n * dim)
        l2NormalizeBackward(dx: &dx, dy: g, x: cut, n: n, c: dim)
        for row in 0..<n {
            for i in 0..<dim { into[row * c + i] += weight * dx[row * dim + i] }
        }
    }
}

extension TrainingOptions {
    /// The run's Matryoshka dimensions and weights; nil when `matryoshka_dims` is empty.
    public var matryoshka: Matryoshka? {
        matryoshkaDims.isEmpty ? nil : Matryoshka(dims: matryoshkaDims, weights: matryoshkaWeights)
    }
}
