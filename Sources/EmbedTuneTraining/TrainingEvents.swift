import EmbedTuneRetrieval
import Foundation

/// What a run reports; the CLI decides how (and on which rank) to print.
public enum TrainingEvent {
    case started(String)
    case step(StepLog)
    case eval(EvalLog)
    case checkpoint(URL)
    /// Negatives mined again before step `step` + 1 (`refresh_negatives_steps`).
    case negativesRefreshed(step: Int, summary: MiningSummary)
    case warning(String)
    case finished(URL)
}

public struct StepLog: Codable {
    public var step: Int, epoch: Double, loss: Double, lr: Float, tau: Float
    public var gradNorm: Float, msPerStep: Double, tokensPerSecond: Double, examples: Int
    /// Share of the step rank 0 spent inside MPI calls, waiting for the other ranks included
    /// (nil on one process).
    public var mpiFraction: Double?
    enum CodingKeys: String, CodingKey {
        case step, epoch, loss, lr, tau, examples
        case gradNorm = "grad_norm", msPerStep = "ms_per_step", tokensPerSecond = "tokens_per_s", mpiFraction = "mpi_fraction"
    }
}

public struct EvalLog: Codable {
    public var step: Int, loss: Double, margin: Double, meanPositive: Double, meanHardestNegative: Double, rows: Int
    /// Retrieval of each held-out query's positive among all held-out documents (cosine).
    public var ndcg10: Double, recall5: Double, mrr10: Double, documents: Int
    /// With `matryoshka_dims`: NDCG@10 of the same retrieval on the embeddings cut to each
    /// Matryoshka dimension below the full one and renormalised, keyed by the dimension.
    public var ndcg10ByDim: [String: Double]?
    enum CodingKeys: String, CodingKey {
        case step, loss, margin, rows, documents
        case meanPositive = "mean_positive", meanHardestNegative = "mean_hardest_negative"
        case ndcg10 = "ndcg@10", recall5 = "recall@5", mrr10 = "mrr@10", ndcg10ByDim = "ndcg@10_by_dim"
    }

    /// The Matryoshka dimensions `ndcg10ByDim` holds, largest first.
    public var truncatedDims: [Int] { (ndcg10ByDim ?? [:]).keys.compactMap { Int($0) }.sorted(by: >) }
}
