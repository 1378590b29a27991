import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import Foundation

/// A run's rows and their order: the held-out share, the triples of each global micro-batch,
/// each row's fixed negatives and prompted texts. Everything derives from the rows, the options
/// and the world size, so every rank computes the same plan and a resumed run continues from
/// its step alone.
public final class DataPlan {
    public let options: TrainingOptions
    /// The rows; their negatives change when `refresh_negatives_steps` re-mines them.
    public internal(set) var train: [Triplet]
    public internal(set) var holdout: [Triplet]
    /// Rows left out by `skip_bad_rows`, each with its problem.
    public let skipped: [FormatError]
    /// Hard negatives per row: `num_negatives`, or the training rows' maximum.
    public let negatives: Int
    public let ranks: Int
    public let queryPrefix: String, documentPrefix: String
    /// Where the rows come from, for messages: the file, or the store's dataset and split.
    public let source: String

    /// The rows of a run: its dataset file, or its store dataset's training rows.
    public static func rows(_ options: TrainingOptions) throws -> (rows: [Triplet], skipped: [FormatError], source: String) {
        if let db = options.db, let name = options.dbDataset {
            return (try DatasetStore(path: db).trainingRows(dataset: name, split: options.dbSplit), [], "\(db):\(name)/\(options.dbSplit)")
        }
        let (rows, skipped) = try TripletReader.read(options.dataset, skipBadRows: options.skipBadRows)
        return (rows, skipped, options.dataset)
    }

    public init(rows all: [Triplet], skipped: [FormatError], source: String, options: TrainingOptions, ranks: Int,
                queryPrefix: String, documentPrefix: String) throws {
        self.options = options
        self.skipped = skipped
        self.source = source
        self.ranks = ranks
        self.queryPrefix = queryPrefix
        self.documentPrefix = documentPrefix
        // Hold out a deterministic share of distinct queries.
        var train = [Triplet](), holdout = [Triplet]()
        if options.splitDatasetRatio > 0 {
            for t in all {
                let u = Double(mix64(options.seed ^ fnv1a(t.query)) >> 11) / Double(1 << 53)
                if u < Double(options.splitDatasetRatio) { holdout.append(t) } else { train.append(t) }
            }
        } else {
            train = all
        }
        self.train = train
        self.holdout = holdout
        negatives = options.numNegatives >= 0 ? options.numNegatives : (train.map(\.negatives.count).max() ?? 0)
        // Held-out rows are padded to the same count, so they are held to the same rule; refreshed
        // negatives are mined before the first step, so rows may come without.
        if negatives > 0, options.refreshNegativesSteps == 0, let bare = (train + holdout).first(where: { $0.negatives.isEmpty }) {
            throw FormatError(file: bare.origin, "row has no hard negatives but every row needs \(negatives) (set --num_negatives 0 to train with in-batch negatives only)")
        }
        if globalBatch % ranks != 0 {
            throw FormatError("global batch \(globalBatch) is not divisible by \(ranks) ranks")
        }
        if train.count < globalBatch {
            throw FormatError(file: source, "\(train.count) training rows, fewer than one global batch of \(globalBatch)")
        }
        if options.batchSampler == "no_duplicates" {
            let kept = negatives
            sampleKeys = train.map { t in [fnv1a(t.query), fnv1a(t.positive)] + t.negatives.prefix(kept).map { fnv1a($0) } }
            let filled = noDuplicateBatches(0)?.count ?? 0
            if filled == 0 {
                throw FormatError(file: source, "--batch_sampler no_duplicates: the rows share too many texts (query, positive or one of \(negatives) negatives) to fill a single batch of \(globalBatch) without a repeated text in \(1 + options.noDuplicatesResamplePasses) passes (lower the batch size or the negatives, or use batch_sampler)")
            }
            if filled < microBatchesPerEpoch {
                // sentence-transformers' NoDuplicatesBatchSampler warns and yields the shorter epoch alike.
                warnings.append("--batch_sampler no_duplicates: the rows share too many texts to fill an epoch's \(microBatchesPerEpoch) batches of \(globalBatch) without a repeated text; \(1 + options.noDuplicatesResamplePasses) passes filled \(filled), so epoch 1 has \(filled) batches (each epoch as many as it fills; more no_duplicates_resample_passes fill more, with rows repeated)")
            }
        }
    }

    /// Problems worth a warning when the run starts (the rows are usable as they are).
    public private(set) var warnings: [String] = []

    public var globalBatch: Int {
        options.globalBatchSize > 0 ? options.globalBatchSize : options.perDeviceTrainBatchSize * ranks
    }
    /// Micro-batches of a full epoch: the rows over the global batch (with drop_last, whole batches only).
    public var microBatchesPerEpoch: Int {
        options.dataloaderDropLast ? train.count / globalBatch : (train.count + globalBatch - 1) / globalBatch
    }
    public var totalSteps: Int {
        if options.maxSteps > 0 { return options.maxSteps }
        let micros = sampleKeys == nil ? options.numTrainEpochs * microBatchesPerEpoch
            : (0..<options.numTrainEpochs).reduce(0) { $0 + batchesInEpoch($1) }
        return max(1, micros / options.gradientAccumulationSteps)
    }
    /// Texts per row as embedded: query, positive, then the fixed negatives.
    public var textsPerRow: Int { 2 + negatives }

    /// Micro-batches of epoch `epoch`: `microBatchesPerEpoch`, or with `no_duplicates` the full
    /// batches its passes fill (at most that many), as sentence-transformers' sampler yields them.
    public func batchesInEpoch(_ epoch: Int) -> Int {
        guard sampleKeys != nil else { return microBatchesPerEpoch }
        // An epoch that fills none (epoch 0 fills one, so only by chance) takes one batch in plain order.
        while epochLengths.count <= epoch { epochLengths.append(max(1, noDuplicateBatches(epochLengths.count)?.count ?? 0)) }
        return epochLengths[epoch]
    }
    private var epochLengths: [Int] = []

    /// The epoch of global micro-batch `micro` and its position in it.
    public func locate(_ micro: Int) -> (epoch: Int, position: Int) {
        guard sampleKeys != nil else { return (micro / microBatchesPerEpoch, micro % microBatchesPerEpoch) }
        var epoch = 0, position = micro
        while position >= batchesInEpoch(epoch) { position -= batchesInEpoch(epoch); epoch += 1 }
        return (epoch, position)
    }

    /// Epochs done before global micro-batch `micro`, fractional (the log's epoch column).
    public func epochProgress(_ micro: Int) -> Double {
        let (epoch, position) = locate(micro)
        return Double(epoch) + Double(position) / Double(max(1, batchesInEpoch(epoch)))
    }

    /// Triple indices of global micro-batch `micro`: epoch order from (seed, epoch), independent
    /// of the world size; without drop_last the tail wraps to the start of the epoch order.
    /// With `batch_sampler = "no_duplicates"` the epoch's batches are `NoDuplicateBatches`'.
    public func microBatch(_ micro: Int) -> [Int] {
        let (epoch, position) = locate(micro)
        if sampleKeys != nil, let batches = noDuplicateBatches(epoch), position < batches.count { return batches[position] }
        let order = epochOrder(epoch)
        return (0..<globalBatch).map { order[(position * globalBatch + $0) % order.count] }
    }

    private var cachedOrder: (epoch: Int, order: [Int])?
    func epochOrder(_ epoch: Int) -> [Int] {
        if let c = cachedOrder, c.epoch == epoch { return c.order }
        let order = shuffledRows(seed: options.seed ^ mix64(UInt64(epoch) &+ 0x5EED))
        cachedOrder = (epoch, order)
        return order
    }

    private func shuffledRows(seed: UInt64) -> [Int] {
        var order = Array(train.indices)
        var rng = SplitMix64(seed: seed)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return order
    }

    /// Per training row, its texts' hashes for `no_duplicates`: query, positive and the first
    /// `negatives` negatives as the rows came (refreshed negatives do not move the batches, so a
    /// resumed run keeps them); nil with the plain sampler.
    private var sampleKeys: [[UInt64]]?
    private var cachedBatches: (epoch: Int, batches: [[Int]]?)?
    /// The epoch's no-duplicates batches: the first pass walks the epoch order, further passes
    /// fresh shuffles of (seed, epoch, pass); fewer than `microBatchesPerEpoch` when the rows
    /// share too many texts to fill them (`init` has checked that epoch 0 fills one).
    func noDuplicateBatches(_ epoch: Int) -> [[Int]]? {
        if let c = cachedBatches, c.epoch == epoch { return c.batches }
        guard let keys = sampleKeys else { return nil }
        let batches = NoDuplicateBatches.batches(count: microBatchesPerEpoch, size: globalBatch,
                                                  extraPasses: options.noDuplicatesResamplePasses, order: { pass in
            pass == 0 ? self.epochOrder(epoch) : self.shuffledRows(seed: self.options.seed ^ mix64(UInt64(epoch) &+ 0x5EED) ^ mix64(UInt64(pass)))
        }, keys: { keys[$0] })
        cachedBatches = (epoch, batches)
        return batches
    }

    /// A row's negatives fixed to `negatives`: truncated, or padded by seeded resampling.
    func fixedNegatives(_ t: Triplet, index: Int, epoch: Int) -> [String] {
        if t.negatives.count >= negatives { return Array(t.negatives.prefix(negatives)) }
        var rng = SplitMix64(seed: options.seed ^ mix64(UInt64(index) << 20 ^ UInt64(epoch)))
        var out = t.negatives
        while out.count < negatives { out.append(t.negatives[Int(rng.next() % UInt64(t.negatives.count))]) }
        return out
    }

    /// A triple as a reranker's group: (prompted query, document) with the positive first, then
    /// each fixed negative.
    func pairs(_ t: Triplet, index: Int, epoch: Int) -> [(query: String, document: String)] {
        let q = queryPrefix + t.query
        return ([t.positive] + fixedNegatives(t, index: index, epoch: epoch)).map { (q, documentPrefix + $0) }
    }

    /// A triple's texts as embedded: prompted query (a row's own instruction wins), positive,
    /// then its fixed negatives.
    func rowTexts(_ t: Triplet, index: Int, epoch: Int) -> [String] {
        let q = t.instruction.map(Embedder.instructionPrefix) ?? queryPrefix
        return [q + t.query, documentPrefix + t.positive] + fixedNegatives(t, index: index, epoch: epoch).map { documentPrefix + $0 }
    }
}
