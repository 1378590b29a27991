import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneRetrieval
import EmbedTuneTokenizers
import Foundation

/// Hard negatives that follow the model (`refresh_negatives_steps`): every N steps the current
/// adapter embeds the training queries and the training corpus (each rank a contiguous shard,
/// gathered) and `Miner.select` picks each query's negatives with the run's filters — the code
/// and options of `embedtune mine`. Every rank mines from the same gathered vectors, so all of
/// them arrive at the same negatives without another exchange.
///
/// The corpus is the training rows' positives and the negatives they came with; held-out texts
/// never enter it. Held-out rows keep their own negatives, so evaluations stay comparable across
/// refreshes; those that came without are mined once, at the first refresh, against the
/// training corpus and their own positives.
final class NegativeRefresh {
    let plan: DataPlan
    let pass: EmbeddingPass
    let tokenizer: Tokenizer
    let communicator: Communicator
    let rerank: Miner.PairScorer?
    let options: MiningOptions
    /// The rows' own negatives, mined alongside the positives.
    let extraCorpus: [String]

    init(plan: DataPlan, pass: EmbeddingPass, tokenizer: Tokenizer, communicator: Communicator, reranker: Reranker?) {
        self.plan = plan
        self.pass = pass
        self.tokenizer = tokenizer
        self.communicator = communicator
        rerank = reranker.map { Miner.pairScorer($0, communicator: communicator) }
        let f = plan.options.mining
        var o = MiningOptions()
        o.numNegatives = plan.negatives
        o.rangeMin = f.rangeMin
        o.rangeMax = f.rangeMax
        o.maxScore = f.maxScore
        o.minScore = f.minScore
        o.absoluteMargin = f.absoluteMargin
        o.relativeMargin = f.relativeMargin
        o.samplingStrategy = MiningOptions.Strategy(rawValue: f.samplingStrategy) ?? .top
        o.maxRerankerScore = f.maxRerankerScore
        o.rerankerRelativeMargin = f.rerankerRelativeMargin
        o.seed = plan.options.seed
        options = o
        var seen = Set<String>()
        extraCorpus = plan.train.flatMap(\.negatives).filter { seen.insert($0).inserted }
    }

    /// Whether step `step` (about to be taken) starts with a refresh.
    func isDue(at step: Int) -> Bool { step % plan.options.refreshNegativesSteps == 0 }

    /// Mines the training rows' negatives again with the current adapter (and the held-out rows'
    /// that have none); returns the training mine's summary.
    func refresh(step: Int) throws -> MiningSummary {
        var miningOptions = options
        // Each refresh samples differently under sampling_strategy random.
        miningOptions.seed = options.seed ^ UInt64(step)
        let selection = try mine(plan.train, extraCorpus: extraCorpus, options: miningOptions)
        plan.train = try assign(selection, to: plan.train)
        let bare = plan.holdout.indices.filter { plan.holdout[$0].negatives.isEmpty }
        if !bare.isEmpty {
            let rows = bare.map { plan.holdout[$0] }
            let mined = try assign(try mine(rows, extraCorpus: extraCorpus + plan.train.map(\.positive), options: miningOptions), to: rows)
            for (i, row) in zip(bare, mined) { plan.holdout[i] = row }
        }
        return selection.summary
    }

    private func mine(_ rows: [Triplet], extraCorpus: [String], options: MiningOptions) throws -> Miner.Selection {
        // A query's prompt: its row's own instruction, else the run's query prompt.
        var prompted = [String: String]()
        for t in rows where prompted[t.query] == nil {
            prompted[t.query] = (t.instruction.map(Embedder.instructionPrefix) ?? plan.queryPrefix) + t.query
        }
        return try Miner.select(anchors: rows.map(\.query), positives: rows.map(\.positive), extraCorpus: extraCorpus, dim: pass.width,
                                embedQueries: { try self.embed($0.map { prompted[$0]! }) },
                                embedDocuments: { try self.embed($0.map { self.plan.documentPrefix + $0 }) },
                                rerank: rerank, options: options)
    }

    /// `rows` with each query's mined negatives; a query the filters left without any keeps the
    /// negatives it had, and one that never had any is an error naming its row.
    private func assign(_ selection: Miner.Selection, to rows: [Triplet]) throws -> [Triplet] {
        let mined = Dictionary(uniqueKeysWithValues: zip(selection.queries, selection.negatives))
        return try rows.map { row in
            var row = row
            let negatives = mined[row.query] ?? []
            if !negatives.isEmpty {
                row.negatives = negatives
            } else if row.negatives.isEmpty {
                throw FormatError(file: row.origin, "mining left this row's query without a negative: widen range_max or relax the mining filters")
            }
            return row
        }
    }

    /// Normalised embeddings of `texts` under the current adapter, each rank embedding a share.
    private func embed(_ texts: [String]) throws -> [Float] {
        let batch = max(1, plan.options.gradCacheMiniBatch > 0 ? plan.options.gradCacheMiniBatch : 64)
        return try communicator.gatherRows(count: texts.count, width: pass.width) { mine in
            var local = [Float]()
            for start in stride(from: mine.lowerBound, to: mine.upperBound, by: batch) {
                let ids = tokenizer.encodeBatch(Array(texts[start..<min(start + batch, mine.upperBound)]), maxLength: plan.options.maxLength)
                local += try pass.embed(ids, seeds: [], keep: false, training: false).normalized
            }
            return local
        }
    }

    // The negatives in force, saved with each checkpoint so a resumed run continues with them.

    struct Saved: Codable {
        var train: [[String]]
        var holdout: [[String]]
    }
    static let fileName = "negatives.json"

    func saved() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(Saved(train: plan.train.map(\.negatives), holdout: plan.holdout.map(\.negatives)))
    }

    /// Restores the negatives a checkpoint saved; a file that does not fit this run's rows is an
    /// error naming it.
    func restore(from checkpoint: URL) throws {
        let url = checkpoint.appendingPathComponent(Self.fileName)
        guard let data = try? Data(contentsOf: url) else {
            throw FormatError(url: url, "missing: the checkpoint was written without refreshed negatives")
        }
        guard let saved = try? JSONDecoder().decode(Saved.self, from: data) else {
            throw FormatError(url: url, "not a negatives file (expected {\"train\": [[…]], \"holdout\": [[…]]})")
        }
        guard saved.train.count == plan.train.count, saved.holdout.count == plan.holdout.count else {
            throw FormatError(url: url, "holds \(saved.train.count) training and \(saved.holdout.count) held-out rows, this run has \(plan.train.count) and \(plan.holdout.count)")
        }
        if let empty = (saved.train + saved.holdout).firstIndex(where: \.isEmpty) {
            throw FormatError(url: url, "row \(empty) has no negatives")
        }
        for i in plan.train.indices { plan.train[i].negatives = saved.train[i] }
        for i in plan.holdout.indices { plan.holdout[i].negatives = saved.holdout[i] }
    }
}
