import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneTokenizers
import Foundation

/// Keeps other domains' embeddings where the base model puts them: each step adds
/// λ · mean ‖e − e_base‖² over a batch of those texts (`preserve_batch` per rank), so an adapter
/// trained with it interferes less when fused with those domains' adapters. The texts are the
/// queries and positives of `preserve_data`, with the run's prompts, dealt round-robin to ranks.
public final class PreservationLoss: TrainingLoss {
    let pass: EmbeddingPass
    let tokenizer: Tokenizer
    let communicator: Communicator
    let options: TrainingOptions
    /// This rank's share of the texts, prompted.
    public let anchors: [String]
    /// Base-model embeddings of the anchors, computed as they are first needed.
    private var anchorBase = [Int: [Float]]()

    public init(path: String, plan: DataPlan, pass: EmbeddingPass, communicator: Communicator, tokenizer: Tokenizer) throws {
        self.pass = pass
        self.tokenizer = tokenizer
        self.communicator = communicator
        options = plan.options
        let (rows, _) = try TripletReader.read(path, skipBadRows: options.skipBadRows)
        var seen = Set<String>(), texts = [String]()
        for r in rows {
            for t in [plan.queryPrefix + r.query, plan.documentPrefix + r.positive] where seen.insert(t).inserted { texts.append(t) }
        }
        anchors = texts.enumerated().filter { $0.offset % communicator.size == communicator.rank }.map(\.element)
        if anchors.isEmpty {
            throw FormatError(file: path, "\(texts.count) texts to preserve, fewer than the \(communicator.size) ranks")
        }
    }

    /// The term of step `step`, its gradient backpropagated into the adapter; this rank's share.
    public func accumulate(step: Int) throws -> LossShare {
        let b = options.preserveBatch, c = pass.width
        let picks = (0..<b).map { (step * b + $0) % anchors.count }
        let ids = tokenizer.encodeBatch(picks.map { anchors[$0] }, maxLength: options.maxLength)
        // Base embeddings first: the adapted forward below keeps the activations for backward.
        let missing = Array(Set(picks.filter { anchorBase[$0] == nil })).sorted()
        if !missing.isEmpty {
            let base = try pass.embed(missing.map { ids[picks.firstIndex(of: $0)!] }, seeds: [], keep: false, training: false,
                                      adapted: false).normalized
            for (i, a) in missing.enumerated() { anchorBase[a] = Array(base[(i * c)..<((i + 1) * c)]) }
        }
        let seeds = picks.map { mix64(options.seed ^ 0x5052_4553_4552_5645 ^ (UInt64(step) << 24) ^ UInt64($0)) }
        let (normalized, pooled) = try pass.embed(ids, seeds: seeds, keep: true, training: true)
        let factor = options.preserveWeight / Float(b * communicator.size)
        var d = [Float](repeating: 0, count: b * c), loss = 0.0
        for (i, a) in picks.enumerated() {
            let base = anchorBase[a]!
            for j in 0..<c {
                let diff = normalized[i * c + j] - base[j]
                loss += Double(factor * diff * diff)
                d[i * c + j] = 2 * factor * diff
            }
        }
        try pass.backward(ids, pooled: pooled, dNormalized: d[...])
        return LossShare(loss: loss)
    }
}
