import Testing

import EmbedTuneKernels
import EmbedTuneTraining

@Suite("Rows dealt to ranks by cost")
struct RankBalanceTests {
    @Test("every row goes to exactly one rank, each rank gets the same count in ascending order, and the split is deterministic")
    func partition() {
        var rng = SplitMix64(seed: 7)
        for ranks in [1, 2, 3, 4, 8] {
            let costs = (0..<(ranks * 6)).map { _ in Double(rng.next() % 500) + 10 }
            let groups = RankBalance.slices(costs: costs, ranks: ranks)
            #expect(groups.count == ranks)
            #expect(groups.allSatisfy { $0.count == 6 && $0 == $0.sorted() })
            #expect(groups.flatMap { $0 }.sorted() == Array(costs.indices))
            #expect(RankBalance.slices(costs: costs, ranks: ranks) == groups)
        }
    }

    @Test("on skewed lengths the slowest rank is within one row's cost of the mean, where contiguous slices were far above it")
    func evensTheLoad() {
        // Long rows first: contiguous slices give rank 0 all of them.
        let costs = (0..<32).map { Double($0 < 8 ? 500 : 60 + $0) }
        let ranks = 4, mean = costs.reduce(0, +) / Double(ranks)
        let load = { (rows: [Int]) in rows.reduce(0) { $0 + costs[$1] } }
        let balanced = RankBalance.slices(costs: costs, ranks: ranks).map(load).max()!
        let contiguous = (0..<ranks).map { r in load(Array((r * 8)..<((r + 1) * 8))) }.max()!
        #expect(balanced <= mean + costs.max()!)
        #expect(balanced - mean <= 0.02 * mean)
        #expect(contiguous - mean > 0.5 * mean)
    }

    @Test("ties keep the lower row on the lower rank, so equal costs give round-robin slices")
    func ties() {
        #expect(RankBalance.slices(costs: [Double](repeating: 1, count: 6), ranks: 2) == [[0, 2, 4], [1, 3, 5]])
    }
}
