import Foundation

/// A reranker objective over groups of logits, each a query's [positive, negative₁ … negative_K]
/// (FlagEmbedding's train groups). It returns the sum of its per-item losses and their gradient;
/// the trainer divides both by `count` over the global batch, so every rank's share adds up to the
/// mean a single process computes. A new objective is a new conforming type.
public protocol RerankerLoss {
    /// Σ of the loss over `groups` groups of `width` logits (row-major, positive first), and
    /// d(Σ)/d(logits) in the same layout.
    func sumAndGradient(logits: [Float], groups: Int, width: Int) -> (sum: Double, dLogits: [Float])
    /// How many items the mean divides by for `groups` groups of `width`.
    func count(groups: Int, width: Int) -> Int
}

/// Pointwise binary cross-entropy on the logits (sentence-transformers' BinaryCrossEntropyLoss,
/// BCEWithLogitsLoss): each (query, positive) pair has label 1, each (query, negative) label 0,
/// the mean is over pairs.
public struct BinaryCrossEntropyLoss: RerankerLoss {
    public init() {}

    public func sumAndGradient(logits: [Float], groups: Int, width: Int) -> (sum: Double, dLogits: [Float]) {
        var sum = 0.0, d = [Float](repeating: 0, count: logits.count)
        for (i, l) in logits.prefix(groups * width).enumerated() {
            let y: Float = i % width == 0 ? 1 : 0, x = Double(l)
            // max(x, 0) − x·y + log(1 + e^−|x|): no overflow for large |x|.
            sum += max(x, 0) - x * Double(y) + log1p(exp(-abs(x)))
            d[i] = 1 / (1 + expf(-l)) - y
        }
        return (sum, d)
    }

    public func count(groups: Int, width: Int) -> Int { groups * width }
}

/// Listwise softmax cross-entropy (FlagEmbedding's reranker loss): per group, −log softmax(logits)[0]
/// with the positive at index 0; the mean is over groups.
public struct ListwiseSoftmaxLoss: RerankerLoss {
    public init() {}

    public func sumAndGradient(logits: [Float], groups: Int, width: Int) -> (sum: Double, dLogits: [Float]) {
        var sum = 0.0, d = [Float](repeating: 0, count: logits.count)
        for g in 0..<groups {
            let row = logits[(g * width)..<((g + 1) * width)].map(Double.init), top = row.max()!
            let e = row.map { exp($0 - top) }, total = e.reduce(0, +)
            sum += log(total) + top - row[0]
            for j in 0..<width { d[g * width + j] = Float(e[j] / total) - (j == 0 ? 1 : 0) }
        }
        return (sum, d)
    }

    public func count(groups: Int, width: Int) -> Int { groups }
}

extension TrainingOptions {
    /// The objective `reranker_loss` names.
    public var rerankerObjective: RerankerLoss { rerankerLoss == "bce" ? BinaryCrossEntropyLoss() : ListwiseSoftmaxLoss() }
}
