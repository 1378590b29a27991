import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTokenizers
import Foundation

/// InfoNCE over each global micro-batch (ms-swift's infonce loss; sentence-transformers'
/// MultipleNegativesRankingLoss with hard negatives): rank r embeds its share of the micro-batch,
/// the embeddings are all-gathered, each rank scores its own queries against every gathered
/// candidate (its share of the exact global loss and of every embedding's gradient), the shares
/// are summed by a reduce-scatter that hands each rank its own texts' gradients, and each rank
/// backpropagates into its own texts. One forward keeps the activations of the rank's whole share.
public class InfoNCELoss: TrainingLoss {
    public let plan: DataPlan
    public let pass: EmbeddingPass
    let state: TrainerState
    let communicator: Communicator
    let tokenizer: Tokenizer
    var options: TrainingOptions { plan.options }

    public init(plan: DataPlan, pass: EmbeddingPass, state: TrainerState, communicator: Communicator, tokenizer: Tokenizer) {
        self.plan = plan
        self.pass = pass
        self.state = state
        self.communicator = communicator
        self.tokenizer = tokenizer
    }

    public func accumulate(step: Int) throws -> LossShare {
        let accum = options.gradientAccumulationSteps, gather = options.gatherAcrossRanks
        // Without gathering, each rank's loss is local; the objective is their mean.
        let scale = 1 / Float(accum) / Float(gather ? 1 : communicator.size)
        let progress = Float(step) / Float(max(1, plan.totalSteps))
        var share = LossShare(tau: 0)
        for a in 0..<accum {
            let micro = step * accum + a
            let epoch = plan.locate(micro).epoch
            let global = plan.microBatch(micro), positions = rankRows(global, epoch: epoch)
            let indices = positions.map { global[$0] }
            let texts = localTexts(indices.map { plan.train[$0] }, indices: indices, micro: micro, epoch: epoch, globalRows: positions)
            share.tokens += texts.tokens
            let (result, tau) = try backpropagate(texts, rows: indices.count, progress: progress, scale: scale, gather: gather)
            share.loss += result.loss * Double(scale)
            share.dLogTau += result.dLogTemperature * Double(scale)
            share.tau = tau
        }
        return share
    }

    /// One micro-batch: a forward that keeps every activation, the global loss, and backward
    /// with the loss's gradient times `scale`.
    func backpropagate(_ texts: LocalTexts, rows: Int, progress: Float, scale: Float, gather: Bool) throws -> (InfoNCEResult, Float) {
        let (normalized, pooled) = try pass.embed(texts.ids, seeds: texts.seeds, keep: true, training: true)
        let (result, dLocal, tau) = try globalLoss(local: normalized, localKeys: texts.keys, queries: texts.queries,
                                                   rows: rows, progress: progress, gather: gather)
        try pass.backward(texts.ids, pooled: pooled, dNormalized: ArraySlice(dLocal.map { $0 * scale }))
        return (result, tau)
    }

    /// Positions in a global micro-batch (its triples' indices `global`) that this rank embeds:
    /// with the gather on and `balance_ranks`, dealt out by estimated cost (`RankBalance`);
    /// otherwise the rank's contiguous slice.
    func rankRows(_ global: [Int], epoch: Int) -> [Int] {
        let size = communicator.size, rank = communicator.rank, per = global.count / size
        guard size > 1, options.balanceRanks, options.gatherAcrossRanks else { return Array((rank * per)..<((rank + 1) * per)) }
        let costs = global.map { index in plan.rowTexts(plan.train[index], index: index, epoch: epoch).reduce(0) { $0 + costModel.cost($1) } }
        return RankBalance.slices(costs: costs, ranks: size)[rank]
    }

    /// Measured on the first 64 training rows, the same on every rank.
    lazy var costModel: TokenCostModel = {
        let sample = plan.train.prefix(64).flatMap { [plan.queryPrefix + $0.query, plan.documentPrefix + $0.positive] }
        let model = pass.model, linears = model.linearLayers
        // Blocks: the distinct layer numbers in the linears' module paths ("encoder.layer.3.…", "layers.27.…").
        let layers = Set(linears.compactMap { $0.module.split(separator: ".").first { $0.allSatisfy(\.isNumber) } }).count
        return TokenCostModel(sample: sample, tokenizer: tokenizer, maxLength: options.maxLength,
                              linearParameters: model.linearParameterCount, layers: layers,
                              hiddenSize: model.hiddenSize)
    }()

    struct LocalTexts {
        var ids: [[Int32]]
        var seeds: [UInt64]
        var keys: [UInt64]
        var queries: [String]
        var tokens: Int { ids.reduce(0) { $0 + $1.count } }
    }

    /// This rank's texts of a micro-batch: per triple, query, positive, then negatives. `globalRows`
    /// are the triples' positions in the global micro-batch, which seed their dropout masks: a row
    /// gets the same masks whichever rank embeds it.
    func localTexts(_ triples: [Triplet], indices: [Int], micro: Int, epoch: Int, globalRows: [Int]) -> LocalTexts {
        var texts = [String](), seeds = [UInt64](), keys = [UInt64](), queries = [String]()
        let perRow = plan.textsPerRow
        for (r, t) in triples.enumerated() {
            for (j, text) in plan.rowTexts(t, index: indices[r], epoch: epoch).enumerated() {
                texts.append(text)
                seeds.append(mix64(options.seed ^ mix64(UInt64(micro) &* 0x1000_0000 &+ UInt64(globalRows[r] * perRow + j))))
                keys.append(fnv1a(text))
            }
            queries.append(t.query)
        }
        return LocalTexts(ids: tokenizer.encodeBatch(texts, maxLength: options.maxLength), seeds: seeds, keys: keys,
                          queries: queries)
    }

    /// Assembles the global contrastive batch from every rank's embeddings (rank order = global
    /// triple order) and computes the loss on it: the whole batch's loss and statistics, and in
    /// `dLocal` the gradient of this rank's own texts (the result's gradient arrays are emptied).
    func globalLoss(local: [Float], localKeys: [UInt64], queries: [String], rows: Int, progress: Float,
                    gather: Bool) throws -> (result: InfoNCEResult, dLocal: [Float], meanTau: Float) {
        let c = pass.width, perRow = plan.textsPerRow
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
        var tau = options.temperatureSchedule.temperatures(queries: queries, progress: progress, learnedLogTau: state.logTau)
        if gather && communicator.size > 1 {
            var allTau = [Float](repeating: 0, count: tau.count * communicator.size)
            try tau.withUnsafeBufferPointer { try communicator.allGather($0.baseAddress!, count: tau.count, into: &allTau) }
            tau = allTau
        }
        let batch = ContrastiveBatch(dim: c, queries: q, documents: docs, positiveIndex: positive, documentRow: owner,
                                     documentKey: docKeys)
        // Sharded: this rank's queries only, O(B·M / p) of the O(B·M) whole, instead of every rank
        // computing all of it (O(p²) work over p ranks). The shares add up to the whole.
        let sharded = gather && communicator.size > 1
        var result = contrastiveLoss(batch, temperatures: tau, scored: sharded ? offset..<(offset + rows) : nil)
        // The gradient in the gathered layout: rank after rank, each row's query then its documents.
        var dAll = [Float](repeating: 0, count: allRows * perRow * c)
        for g in 0..<allRows {
            let base = g * perRow
            for i in 0..<c { dAll[base * c + i] = result.dQueries[g * c + i] }
            for j in 1..<perRow {
                let doc = g * (perRow - 1) + (j - 1)
                for i in 0..<c { dAll[(base + j) * c + i] = result.dDocuments[doc * c + i] }
            }
        }
        var dLocal = dAll
        if sharded {
            // Each rank's block of the summed shares: the gradients of its own texts.
            dLocal = [Float](repeating: 0, count: local.count)
            try dAll.withUnsafeBufferPointer { try communicator.reduceScatterSum($0.baseAddress!, count: local.count, into: &dLocal) }
            var sums = [result.loss, result.dLogTemperature, result.meanPositive * Double(rows),
                        result.rowsWithNegative > 0 ? result.meanHardestNegative * Double(result.rowsWithNegative) : 0,
                        Double(result.rowsWithNegative)]
            try communicator.allReduceSum(doubles: &sums, count: sums.count)
            result.loss = sums[0]
            result.dLogTemperature = sums[1]
            result.meanPositive = sums[2] / Double(allRows)
            result.meanHardestNegative = sums[4] > 0 ? sums[3] / sums[4] : .nan
            result.rowsWithNegative = Int(sums[4])
        }
        // The gradients leave through dLocal alone.
        result.dQueries = []
        result.dDocuments = []
        return (result, dLocal, tau.reduce(0, +) / Float(max(tau.count, 1)))
    }

    /// InfoNCE on the global batch, or its Matryoshka sum over `matryoshka_dims` when set.
    /// `scored`: the rows whose share is computed (all when nil; see `infoNCE`).
    func contrastiveLoss(_ batch: ContrastiveBatch, temperatures tau: [Float], scored: Range<Int>? = nil) -> InfoNCEResult {
        let options = self.options.infonce
        guard let matryoshka = self.options.matryoshka else { return infoNCE(batch, temperatures: tau, options: options, scored: scored) }
        return matryoshka.loss(batch) { infoNCE($0, temperatures: tau, options: options, scored: scored) }
    }
}

/// InfoNCE in GradCache's form (sentence-transformers' CachedMultipleNegativesRankingLoss):
/// every text is embedded without activations, the loss and its gradient are taken over the
/// whole batch, then the texts are embedded again `miniBatch` at a time with activations and
/// the cached embedding gradients backpropagated. Memory is bounded by the mini-batch; the
/// gradient is InfoNCE's.
public final class CachedInfoNCELoss: InfoNCELoss {
    public let miniBatch: Int

    public init(plan: DataPlan, pass: EmbeddingPass, state: TrainerState, communicator: Communicator, tokenizer: Tokenizer, miniBatch: Int) {
        self.miniBatch = miniBatch
        super.init(plan: plan, pass: pass, state: state, communicator: communicator, tokenizer: tokenizer)
    }

    override func backpropagate(_ texts: LocalTexts, rows: Int, progress: Float, scale: Float, gather: Bool) throws -> (InfoNCEResult, Float) {
        let chunk = miniBatch, count = texts.ids.count
        if chunk >= count { return try super.backpropagate(texts, rows: rows, progress: progress, scale: scale, gather: gather) }
        var normalized = [Float]()
        for start in stride(from: 0, to: count, by: chunk) {
            let end = min(start + chunk, count)
            normalized += try pass.embed(Array(texts.ids[start..<end]), seeds: Array(texts.seeds[start..<end]), keep: false,
                                         training: true).normalized
        }
        let (result, dLocal, tau) = try globalLoss(local: normalized, localKeys: texts.keys, queries: texts.queries,
                                                   rows: rows, progress: progress, gather: gather)
        let c = pass.width
        for start in stride(from: 0, to: count, by: chunk) {
            let end = min(start + chunk, count)
            let ids = Array(texts.ids[start..<end])
            let (_, pooled) = try pass.embed(ids, seeds: Array(texts.seeds[start..<end]), keep: true, training: true)
            try pass.backward(ids, pooled: pooled, dNormalized: ArraySlice(dLocal[(start * c)..<(end * c)].map { $0 * scale }))
        }
        return (result, tau)
    }
}
