import Foundation
import Testing

import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneTraining

@Suite("No-duplicates batches")
struct NoDuplicateBatchesTests {
    /// Row i: query qi, positive pi, one negative p(neg[i]) — another row's positive, as mined
    /// negatives are. Row 11's negative is its own positive.
    static let neg = [3, 0, 5, 1, 2, 9, 4, 8, 6, 7, 3, 11]
    static func keys(_ row: Int) -> [UInt64] { ["q\(row)", "p\(row)", "p\(neg[row])"].map { fnv1a($0) } }

    @Test("one pass over a given order gives sentence-transformers' NoDuplicatesBatchSampler batches")
    func matchesSentenceTransformers() {
        // Expected: sentence-transformers 6.3 `NoDuplicatesBatchSampler._iter_one_pass` (drop_last)
        // on the same rows with torch.randperm returning this order.
        let order = [7, 2, 0, 9, 4, 11, 1, 5, 10, 3, 8, 6]
        #expect(NoDuplicateBatches.pass(order: order, size: 3, keys: Self.keys) == [[7, 2, 0], [9, 4, 11], [1, 5, 10]])
        #expect(NoDuplicateBatches.pass(order: order, size: 4, keys: Self.keys) == [[7, 2, 0, 11], [9, 4, 1, 10]])
    }

    @Test("a batch that a pass leaves short is dropped and a full one may still follow it")
    func shortThenFull() {
        // Row 0 clashes with every other row; rows 1…4 clash with nobody else.
        let keys: (Int) -> [UInt64] = { $0 == 0 ? [1, 2, 3, 4] : [UInt64($0), 100 + UInt64($0)] }
        #expect(NoDuplicateBatches.pass(order: [0, 1, 2, 3, 4], size: 4, keys: keys) == [[1, 2, 3, 4]])
        #expect(NoDuplicateBatches.batches(count: 2, size: 4, order: { _ in [0, 1, 2, 3, 4] }, keys: keys) == [[1, 2, 3, 4], [1, 2, 3, 4]])
        #expect(NoDuplicateBatches.batches(count: 1, size: 2, order: { _ in [0, 0] }, keys: { _ in [7] }).isEmpty)
    }

    static func options(seed: UInt64, perDevice: Int, sampler: String = "no_duplicates") -> TrainingOptions {
        var o = TrainingOptions()
        o.model = "m"
        o.dataset = "rows.jsonl"
        o.seed = seed
        o.perDeviceTrainBatchSize = perDevice
        o.numNegatives = 2
        o.batchSampler = sampler
        return o
    }

    /// 60 rows whose two negatives are other rows' positives (and a few shared positives).
    static let rows: [Triplet] = {
        var rng = SplitMix64(seed: 3)
        return (0..<60).map { i in
            Triplet(query: "q\(i)", positive: "p\(i % 55)", negatives: (0..<2).map { _ in "p\(Int(rng.next() % 55))" })
        }
    }()

    static func plan(seed: UInt64, ranks: Int, global: Int = 8) throws -> DataPlan {
        try DataPlan(rows: rows, skipped: [], source: "rows.jsonl", options: options(seed: seed, perDevice: global / ranks),
                     ranks: ranks, queryPrefix: "", documentPrefix: "")
    }

    @Test("no global batch repeats a text; the batches depend on seed and epoch only, not on the world size")
    func planBatches() throws {
        let one = try Self.plan(seed: 42, ranks: 1), two = try Self.plan(seed: 42, ranks: 2), four = try Self.plan(seed: 42, ranks: 4)
        let steps = 3 * one.microBatchesPerEpoch
        let batches = (0..<steps).map { one.microBatch($0) }
        for batch in batches {
            #expect(batch.count == 8)
            let texts = batch.flatMap { [Self.rows[$0].query, Self.rows[$0].positive] + Self.rows[$0].negatives }
            #expect(Set(texts).count == Set(batch.map { Set([Self.rows[$0].query, Self.rows[$0].positive] + Self.rows[$0].negatives) })
                        .reduce(0) { $0 + $1.count }, "a text appears in two rows of \(batch)")
        }
        #expect((0..<steps).map { two.microBatch($0) } == batches)
        #expect((0..<steps).map { four.microBatch($0) } == batches)
        #expect(try Self.plan(seed: 42, ranks: 1).microBatch(steps - 1) == batches[steps - 1])
        #expect(batches[0] != batches[one.microBatchesPerEpoch], "each epoch draws its own batches")
        #expect((0..<steps).map { try! Self.plan(seed: 7, ranks: 1).microBatch($0) } != batches)
        // An epoch's first pass uses each row at most once.
        let epoch = batches.prefix(one.microBatchesPerEpoch).flatMap { $0 }
        #expect(Set(epoch).count == epoch.count)
    }

    @Test("rows that cannot fill a batch without repeats are refused, naming the option")
    func refusesImpossible() {
        let same = (0..<16).map { Triplet(query: "q\($0)", positive: "the same answer", negatives: ["n\($0)", "m\($0)"]) }
        #expect(throws: FormatError.self) {
            try DataPlan(rows: same, skipped: [], source: "rows.jsonl", options: Self.options(seed: 1, perDevice: 4),
                         ranks: 1, queryPrefix: "", documentPrefix: "")
        }
        #expect(throws: Never.self) {
            try DataPlan(rows: same, skipped: [], source: "rows.jsonl", options: Self.options(seed: 1, perDevice: 4, sampler: "batch_sampler"),
                         ranks: 1, queryPrefix: "", documentPrefix: "")
        }
    }

    @Test("rows that fill fewer batches than an epoch has give shorter epochs and a warning, as sentence-transformers' sampler does")
    func shorterEpochs() throws {
        // Row type t holds positive p(t) and negatives p(t+1), p(t+2) (mod 6): two rows share no
        // text only when their types are 3 apart. 20 rows of type 0 and four of types 3, 3, 1, 4
        // fill at most 3 batches of 2 per pass, fewer than the epoch's 12.
        let types = Array(repeating: 0, count: 20) + [3, 3, 1, 4]
        let rows = types.enumerated().map { i, t in Triplet(query: "q\(i)", positive: "p\(t)", negatives: ["p\((t + 1) % 6)", "p\((t + 2) % 6)"]) }
        var options = Self.options(seed: 5, perDevice: 2)
        options.numTrainEpochs = 3
        let plan = try DataPlan(rows: rows, skipped: [], source: "rows.jsonl", options: options, ranks: 1, queryPrefix: "", documentPrefix: "")
        let lengths = (0..<3).map { plan.batchesInEpoch($0) }
        #expect(plan.microBatchesPerEpoch == 12)
        #expect(lengths.allSatisfy { (1...9).contains($0) }, "epoch lengths \(lengths)")
        #expect(plan.totalSteps == lengths.reduce(0, +))
        #expect(plan.warnings.count == 1 && plan.warnings[0].contains("so epoch 1 has \(lengths[0]) batches"))
        var micro = 0
        for (epoch, length) in lengths.enumerated() {
            for position in 0..<length {
                #expect(plan.locate(micro) == (epoch, position))
                let texts = plan.microBatch(micro).flatMap { [rows[$0].query, rows[$0].positive] + rows[$0].negatives }
                #expect(Set(texts).count == 8, "micro-batch \(micro) repeats a text")
                micro += 1
            }
        }
    }
}
