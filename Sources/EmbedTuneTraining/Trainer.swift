import EmbedTuneData
import EmbedTuneRetrieval
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTokenizers
import Foundation

/// What a run reports; the CLI decides how (and on which rank) to print.
public enum TrainingEvent {
    case started(String)
    case step(StepLog)
    case eval(EvalLog)
    case checkpoint(URL)
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
    enum CodingKeys: String, CodingKey {
        case step, loss, margin, rows, documents
        case meanPositive = "mean_positive", meanHardestNegative = "mean_hardest_negative"
        case ndcg10 = "ndcg@10", recall5 = "recall@5", mrr10 = "mrr@10"
    }
}

/// Data-parallel LoRA contrastive training. Every rank runs the same loop; rank r embeds its
/// slice of each global micro-batch, embeddings are all-gathered so every rank computes the
/// exact global InfoNCE loss and its gradient, each rank backpropagates into its own texts, and
/// one all-reduce of the flat LoRA gradient per optimiser step makes the update identical to a
/// single process on the same global batch.
public final class Trainer {
    public let options: TrainingOptions
    public let communicator: Communicator
    public let embedder: Embedder
    public let model: Backbone & TrainableBackbone
    private var dHidden = [Float]()
    public let adapter: LoRAAdapter
    public let optimizer: AdamW
    public private(set) var train: [Triplet] = []
    public private(set) var holdout: [Triplet] = []
    public private(set) var skipped: [FormatError] = []
    public internal(set) var step = 0
    var logTau: Float
    let tauOptimizer = AdamW(count: 1)
    /// The LoRA gradient plus three scalars (loss, dL/dlogτ, tokens), all-reduced together.
    lazy var reductionBuffer = FloatBuffer(count: adapter.grads.count + 3)
    let negatives: Int
    let queryPrefix: String, documentPrefix: String
    /// This rank's share of the --preserve_data texts (prompted), and their base-model embeddings
    /// as they are first needed.
    let anchors: [String]
    var anchorBase = [Int: [Float]]()

    /// `rows`: training triples given directly (e.g. from the dataset store) instead of read from
    /// `options.dataset`.
    public init(options: TrainingOptions, communicator: Communicator = SingleProcessCommunicator(), rows: [Triplet]? = nil) throws {
        try options.validate()
        self.options = options
        self.communicator = communicator
        let dir = try ModelDirectory(URL(fileURLWithPath: options.model))
        embedder = try Embedder(directory: dir)
        guard let trainable = embedder.backbone as? Backbone & TrainableBackbone else {
            throw FormatError(file: options.model, "this architecture cannot be trained")
        }
        model = trainable
        let targets = options.targetModules.isEmpty ? trainable.defaultTargetModules : options.targetModules
        adapter = try LoRAAdapter(config: LoRAConfig(r: options.loraR, alpha: options.loraAlpha, dropout: options.loraDropout,
                                                     targetModules: targets, useRSLoRA: options.useRslora),
                                  linears: trainable.linearLayers)
        var rng = SplitMix64(seed: options.seed)
        adapter.initialize(using: &rng)
        optimizer = AdamW(count: adapter.parameterCount, beta1: options.adamBeta1, beta2: options.adamBeta2,
                          epsilon: options.adamEpsilon, weightDecay: options.weightDecay)
        logTau = logf(options.temperature)
        queryPrefix = options.queryPrompt ?? dir.queryPrompt
        documentPrefix = options.documentPrompt ?? dir.documentPrompt

        let (all, skipped): ([Triplet], [FormatError])
        if let rows {
            (all, skipped) = (rows, [])
        } else if let db = options.db, let name = options.dbDataset {
            (all, skipped) = (try DatasetStore(path: db).trainingRows(dataset: name, split: options.dbSplit), [])
        } else {
            (all, skipped) = try TripletReader.read(options.dataset, skipBadRows: options.skipBadRows)
        }
        self.skipped = skipped
        // Hold out a deterministic share of distinct queries.
        if options.splitDatasetRatio > 0 {
            for t in all {
                let u = Double(mix64(options.seed ^ fnv1a(t.query)) >> 11) / Double(1 << 53)
                if u < Double(options.splitDatasetRatio) { holdout.append(t) } else { train.append(t) }
            }
        } else {
            train = all
        }
        if let path = options.preserveData {
            let (rows, _) = try TripletReader.read(path, skipBadRows: options.skipBadRows)
            var seen = Set<String>(), texts = [String]()
            for r in rows {
                for t in [queryPrefix + r.query, documentPrefix + r.positive] where seen.insert(t).inserted { texts.append(t) }
            }
            anchors = texts.enumerated().filter { $0.offset % communicator.size == communicator.rank }.map(\.element)
            if anchors.isEmpty {
                throw FormatError(file: path, "\(texts.count) texts to preserve, fewer than the \(communicator.size) ranks")
            }
        } else {
            anchors = []
        }
        negatives = options.hardNegatives >= 0 ? options.hardNegatives : (train.map(\.negatives.count).max() ?? 0)
        if negatives > 0, let bare = train.first(where: { $0.negatives.isEmpty }) {
            throw FormatError(file: bare.origin, "row has no hard negatives but every row needs \(negatives) (set --num_negatives 0 to train with in-batch negatives only)")
        }
        if globalBatch % communicator.size != 0 {
            throw FormatError(file: "options", "global batch \(globalBatch) is not divisible by \(communicator.size) ranks")
        }
        if train.count < globalBatch {
            throw FormatError(file: dataSource, "\(train.count) training rows, fewer than one global batch of \(globalBatch)")
        }
    }

    /// Where the rows come from, for messages: the file, or the store's dataset and split.
    var dataSource: String {
        if let db = options.db, let name = options.dbDataset { return "\(db):\(name)/\(options.dbSplit)" }
        return options.dataset
    }

    public var globalBatch: Int {
        options.globalBatchSize > 0 ? options.globalBatchSize : options.perDeviceTrainBatchSize * communicator.size
    }
    public var microBatchesPerEpoch: Int {
        options.dataloaderDropLast ? train.count / globalBatch : (train.count + globalBatch - 1) / globalBatch
    }
    public var totalSteps: Int {
        if options.maxSteps > 0 { return options.maxSteps }
        return max(1, options.numTrainEpochs * microBatchesPerEpoch / options.gradientAccumulationSteps)
    }
    var schedule: LearningRateSchedule {
        let warmup = options.warmupSteps > 0 ? options.warmupSteps : Int((options.warmupRatio * Float(totalSteps)).rounded(.up))
        return LearningRateSchedule(peak: options.learningRate, warmupSteps: warmup, totalSteps: totalSteps,
                                    decay: LearningRateSchedule.Decay(rawValue: options.lrSchedulerType)!)
    }

    // MARK: data order

    /// Triple indices of global micro-batch `micro`: epoch order from (seed, epoch), independent
    /// of the world size; without drop_last the tail wraps to the start of the epoch order.
    func microBatch(_ micro: Int) -> [Int] {
        let epoch = micro / microBatchesPerEpoch, position = micro % microBatchesPerEpoch
        let order = epochOrder(epoch)
        return (0..<globalBatch).map { order[(position * globalBatch + $0) % order.count] }
    }

    private var cachedOrder: (epoch: Int, order: [Int])?
    func epochOrder(_ epoch: Int) -> [Int] {
        if let c = cachedOrder, c.epoch == epoch { return c.order }
        var order = Array(train.indices)
        var rng = SplitMix64(seed: options.seed ^ mix64(UInt64(epoch) &+ 0x5EED))
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        cachedOrder = (epoch, order)
        return order
    }

    /// A row's negatives fixed to `negatives`: truncated, or padded by seeded resampling.
    func fixedNegatives(_ t: Triplet, index: Int, epoch: Int) -> [String] {
        if t.negatives.count >= negatives { return Array(t.negatives.prefix(negatives)) }
        var rng = SplitMix64(seed: options.seed ^ mix64(UInt64(index) << 20 ^ UInt64(epoch)))
        var out = t.negatives
        while out.count < negatives { out.append(t.negatives[Int(rng.next() % UInt64(t.negatives.count))]) }
        return out
    }

    /// Positions in a global micro-batch (its triples' indices `global`) that this rank embeds:
    /// with the gather on and `balance_ranks`, dealt out by estimated cost (`RankBalance`);
    /// otherwise the rank's contiguous slice.
    func rankRows(_ global: [Int], epoch: Int) -> [Int] {
        let size = communicator.size, rank = communicator.rank, per = global.count / size
        guard size > 1, options.balanceRanks, options.gatherAcrossRanks else { return Array((rank * per)..<((rank + 1) * per)) }
        let costs = global.map { index in rowTexts(train[index], index: index, epoch: epoch).reduce(0) { $0 + costModel.cost($1) } }
        return RankBalance.slices(costs: costs, ranks: size)[rank]
    }

    /// Measured on the first 64 training rows, the same on every rank.
    lazy var costModel: TokenCostModel = {
        let sample = train.prefix(64).flatMap { [queryPrefix + $0.query, documentPrefix + $0.positive] }
        let linears = model.linearLayers
        // Blocks: the distinct layer numbers in the linears' module paths ("encoder.layer.3.…", "layers.27.…").
        let layers = Set(linears.compactMap { $0.module.split(separator: ".").first { $0.allSatisfy(\.isNumber) } }).count
        return TokenCostModel(sample: sample, tokenizer: embedder.tokenizer, maxLength: options.maxLength,
                              linearParameters: model.linearParameterCount, layers: layers,
                              hiddenSize: model.hiddenSize)
    }()

    // MARK: one contrastive micro-batch

    struct LocalTexts {
        var ids: [[Int32]]
        var seeds: [UInt64]
        var keys: [UInt64]
        var queries: [String]
        var tokens: Int { ids.reduce(0) { $0 + $1.count } }
    }

    /// A triple's texts as embedded: prompted query, positive, then its fixed negatives.
    func rowTexts(_ t: Triplet, index: Int, epoch: Int) -> [String] {
        let q = t.instruction.map(Embedder.instructionPrefix) ?? queryPrefix
        return [q + t.query, documentPrefix + t.positive] + fixedNegatives(t, index: index, epoch: epoch).map { documentPrefix + $0 }
    }

    /// This rank's texts of a micro-batch: per triple, query, positive, then negatives. `globalRows`
    /// are the triples' positions in the global micro-batch, which seed their dropout masks: a row
    /// gets the same masks whichever rank embeds it.
    func localTexts(_ triples: [Triplet], indices: [Int], micro: Int, epoch: Int, globalRows: [Int]) -> LocalTexts {
        var texts = [String](), seeds = [UInt64](), keys = [UInt64](), queries = [String]()
        let perRow = 2 + negatives
        for (r, t) in triples.enumerated() {
            for (j, text) in rowTexts(t, index: indices[r], epoch: epoch).enumerated() {
                texts.append(text)
                seeds.append(mix64(options.seed ^ mix64(UInt64(micro) &* 0x1000_0000 &+ UInt64(globalRows[r] * perRow + j))))
                keys.append(fnv1a(text))
            }
            queries.append(t.query)
        }
        return LocalTexts(ids: embedder.tokenizer.encodeBatch(texts, maxLength: options.maxLength), seeds: seeds, keys: keys,
                          queries: queries)
    }

    /// Embeds texts (pooled, L2-normalised), optionally keeping activations for backward; with
    /// `adapted: false`, through the base model alone. Returns normalised rows and the raw pooled
    /// rows (for the normalisation backward).
    func embed(_ ids: [[Int32]], seeds: [UInt64], keep: Bool, training: Bool, adapted: Bool = true) throws
        -> (normalized: [Float], pooled: [Float]) {
        let c = model.hiddenSize
        let context = adapted ? LoRAContext(adapter: adapter, training: training, sequenceSeeds: seeds,
                                            backboneDropout: options.backboneDropout) : nil
        let hidden = try model.forward(ids, lora: context, keepActivations: keep && adapted, pooling: embedder.directory.pooling)
        var pooled = [Float](repeating: 0, count: ids.count * c)
        let batch = PackedBatch(lengths: ids.map(\.count))
        pooled.withUnsafeMutableBufferPointer { pool(embedder.directory.pooling, hidden: hidden.pointer, batch: batch, c: c, out: $0.baseAddress!) }
        var normalized = pooled
        l2NormalizeRows(&normalized, n: ids.count, c: c)
        return (normalized, pooled)
    }

    /// Backpropagates dL/d(normalised embeddings) of `ids` (after a keep-activations forward).
    func backward(_ ids: [[Int32]], pooled: [Float], dNormalized: ArraySlice<Float>) throws {
        let c = model.hiddenSize, batch = PackedBatch(lengths: ids.map(\.count))
        var dPooled = [Float](repeating: 0, count: ids.count * c)
        Array(dNormalized).withUnsafeBufferPointer { g in
            l2NormalizeBackward(dx: &dPooled, dy: g.baseAddress!, x: pooled, n: ids.count, c: c)
        }
        guard embedder.directory.pooling != .max else { throw FormatError(file: "model", "max pooling cannot be trained") }
        // (N, C) is tens of MB: reused across steps rather than mapped and zero-faulted each time.
        dHidden.removeAll(keepingCapacity: true)
        dHidden.append(contentsOf: repeatElement(0, count: batch.tokens * c))
        poolBackward(embedder.directory.pooling, dPooled: dPooled, batch: batch, c: c, dHidden: &dHidden)
        try dHidden.withUnsafeBufferPointer { try model.backward(dHidden: $0.baseAddress!) }
    }

    /// The preservation term of step `step`: λ · mean over the global anchor batch of
    /// ‖e − e_base‖², its gradient backpropagated into the adapter. Returns this rank's share.
    public func accumulatePreservation(step: Int) throws -> Double {
        let b = options.preserveBatch, c = model.hiddenSize
        let picks = (0..<b).map { (step * b + $0) % anchors.count }
        let ids = embedder.tokenizer.encodeBatch(picks.map { anchors[$0] }, maxLength: options.maxLength)
        // Base embeddings first: the adapted forward below keeps the activations for backward.
        let missing = Array(Set(picks.filter { anchorBase[$0] == nil })).sorted()
        if !missing.isEmpty {
            let base = try embed(missing.map { ids[picks.firstIndex(of: $0)!] }, seeds: [], keep: false, training: false,
                                 adapted: false).normalized
            for (i, a) in missing.enumerated() { anchorBase[a] = Array(base[(i * c)..<((i + 1) * c)]) }
        }
        let seeds = picks.map { mix64(options.seed ^ 0x5052_4553_4552_5645 ^ (UInt64(step) << 24) ^ UInt64($0)) }
        let (normalized, pooled) = try embed(ids, seeds: seeds, keep: true, training: true)
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
        try backward(ids, pooled: pooled, dNormalized: d[...])
        return loss
    }

    /// Assembles the global contrastive batch from every rank's embeddings (rank order = global
    /// triple order) and computes the loss on it.
    func globalLoss(local: [Float], localKeys: [UInt64], queries: [String], rows: Int, progress: Float,
                    gather: Bool) throws -> (result: InfoNCEResult, dLocal: [Float], meanTau: Float) {
        let c = model.hiddenSize, perRow = 2 + negatives
        var all = local, keys = localKeys, allRows = rows
        var offset = 0
        if gather && communicator.size > 1 {
            all = [Float](repeating: 0, count: local.count * communicator.size)
            try local.withUnsafeBufferPointer { try communicator.allGather($0.baseAddress!, count: local.count, into: &all) }
            var gathered = [UInt64](repeating: 0, count: keys.count * communicator.size)
            try keys.withUnsafeBytes { src in
                try gathered.withUnsafeMutableBytes { try communicator.allGatherBytes(src.baseAddress!, bytes: src.count, into: $0.baseAddress!) }
            }
            keys = gathered
            allRows = rows * communicator.size
            offset = communicator.rank * rows
        }
        var q = [Float](), docs = [Float](), positive = [Int](), owner = [Int](), docKeys = [UInt64]()
        for r in 0..<allRows {
            let base = r * perRow
            q += all[(base * c)..<((base + 1) * c)]
            positive.append(docKeys.count)
            for j in 1..<perRow {
                docs += all[((base + j) * c)..<((base + j + 1) * c)]
                owner.append(r)
                docKeys.append(keys[base + j])
            }
        }
        // Temperatures: per query text for adaptive mode; queries of other ranks come with the
        // same rule applied to their rows, which only the owner knows — so adaptive τ is local
        // to each row and exchanged as part of the gather.
        var tau = options.temperatureSchedule.temperatures(queries: queries, progress: progress, learnedLogTau: logTau)
        if gather && communicator.size > 1 {
            var allTau = [Float](repeating: 0, count: tau.count * communicator.size)
            try tau.withUnsafeBufferPointer { try communicator.allGather($0.baseAddress!, count: tau.count, into: &allTau) }
            tau = allTau
        }
        let batch = ContrastiveBatch(dim: c, queries: q, documents: docs, positiveIndex: positive, documentRow: owner,
                                     documentKey: docKeys)
        let result = infoNCE(batch, temperatures: tau, options: options.infonce)
        // Scatter the global gradient back to this rank's local text order.
        var dLocal = [Float](repeating: 0, count: local.count)
        for r in 0..<rows {
            let g = offset + r, base = r * perRow
            for i in 0..<c { dLocal[base * c + i] = result.dQueries[g * c + i] }
            for j in 1..<perRow {
                let doc = g * (perRow - 1) + (j - 1)
                for i in 0..<c { dLocal[(base + j) * c + i] = result.dDocuments[doc * c + i] }
            }
        }
        return (result, dLocal, tau.reduce(0, +) / Float(max(tau.count, 1)))
    }
}
