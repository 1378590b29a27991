import EmbedTuneFormats
import EmbedTuneData
import EmbedTuneRetrieval
import EmbedTuneTraining
import Foundation
import Testing

@Suite("Hard-negative mining")
struct MiningTests {
    static let cases: [JSONValue] = (try? JSONValue.load(Paths.fixtures.appendingPathComponent("mining/mining_cases.json")))?["cases"]?.array ?? []

    @Test("mining output equals sentence-transformers' mine_hard_negatives (exact search) for each parameter set",
          arguments: cases.map { $0["name"]!.string! })
    func parity(_ name: String) throws {
        let c = Self.cases.first { $0["name"]?.string == name }!
        let vectors = c["vectors"]!.object!
        let dim = c["dim"]!.int!
        func embed(_ texts: [String]) -> [Float] { texts.flatMap { vectors[$0]!.array!.map { Float($0.double!) } } }
        let args = c["args"]!
        var o = MiningOptions()
        if let v = args["num_negatives"]?.int { o.numNegatives = v }
        if let v = args["range_min"]?.int { o.rangeMin = v }
        o.rangeMax = args["range_max"]?.int
        o.maxScore = args["max_score"]?.double.map(Float.init)
        o.minScore = args["min_score"]?.double.map(Float.init)
        o.absoluteMargin = args["absolute_margin"]?.double.map(Float.init)
        o.relativeMargin = args["relative_margin"]?.double.map(Float.init)
        if args["include_positives"]?.bool == true { o.includePositives = true }
        if let f = args["output_format"]?.string { o.outputFormat = MiningOptions.OutputFormat(rawValue: f)! }
        if args["output_scores"]?.bool == true { o.outputScores = true }
        o.anchorColumn = args["anchor_column_name"]?.string ?? "anchor"
        o.positiveColumn = args["positive_column_name"]?.string ?? "positive"
        let (rows, _) = try Miner.mine(anchors: c["anchors"]!.array!.map { $0.string! }, positives: c["positives"]!.array!.map { $0.string! },
                                       extraCorpus: c["corpus"]?.array?.map { $0.string! }, dim: dim, embedQueries: embed, embedDocuments: embed,
                                       options: o)
        let want = c["output"]!.array!
        #expect(rows.count == want.count, "\(rows.count) rows, want \(want.count)")
        for (got, w) in zip(rows, want) {
            #expect(got.map(\.0).sorted() == w.object!.keys.sorted())
            for (k, v) in got {
                let expected = w[k]!
                if case .array(let gs) = v, gs.first?.double != nil, k.hasPrefix("score") {
                    let es = expected.array!.map { $0.double! }
                    #expect(zip(gs.map { $0.double! }, es).allSatisfy { abs($0 - $1) < 1e-5 }, "\(k): \(gs) vs \(es)")
                } else if let g = v.double, k.hasPrefix("score") {
                    #expect(abs(g - expected.double!) < 1e-5)
                } else {
                    #expect(v == expected, "\(k): \(v) vs \(expected)")
                }
            }
        }
    }

    @Test("impossible ranges are refused with the option named")
    func badRanges() throws {
        let embed: ([String]) -> [Float] = { $0.flatMap { _ in [1, 0] } }
        var o = MiningOptions()
        o.rangeMin = 5; o.rangeMax = 5
        do { _ = try Miner.mine(anchors: ["a"], positives: ["b"], extraCorpus: nil, dim: 2, embedQueries: embed, embedDocuments: embed, options: o)
             Issue.record("accepted range_min == range_max") } catch { #expect("\(error)".contains("--range_min: must be smaller than range_max")) }
        o = MiningOptions(); o.rangeMin = 0; o.rangeMax = 2; o.numNegatives = 3
        do { _ = try Miner.mine(anchors: ["a"], positives: ["b"], extraCorpus: nil, dim: 2, embedQueries: embed, embedDocuments: embed, options: o)
             Issue.record("accepted too many negatives") } catch { #expect("\(error)".contains("--num_negatives: cannot mine 3 negatives")) }
        let r = try runCLI(["mine", "--model", Paths.fixtures.appendingPathComponent("tiny-qwen3").path, "--dataset", "/dev/null",
                            "--output", "/tmp/x.jsonl", "--range_min", "4", "--range_max", "4"])
        #expect(r.status != 0 && r.stderr.contains("--range_min (4) must be smaller than --range_max (4)"), "\(r.stderr)")
    }
}
