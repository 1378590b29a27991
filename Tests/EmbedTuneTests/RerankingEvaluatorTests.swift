import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneReport
import EmbedTuneRetrieval
import Foundation
import Testing

/// A reranker that knows the answers: 1 for a document judged relevant to the query, else 0.
final class OracleReranker: Reranker {
    let relevant: [String: Set<String>]
    var pairsScored = 0
    init(_ relevant: [String: Set<String>]) { self.relevant = relevant }
    func relevance(query: String, documents: [String]) throws -> [Float] {
        pairsScored += documents.count
        return documents.map { relevant[query, default: []].contains($0) ? 1 : 0 }
    }
}

@Suite("Reranking evaluation: first stage, then a reranker over each query's top k")
struct RerankingEvaluatorTests {
    /// Six documents at growing angles from q0 (cosine order d0 … d5), q0 judging d4 and d5
    /// relevant, q1 (along d0) judging d0.
    static func tinySet() -> (set: RetrievalSet, queries: [Float], corpus: [Float]) {
        var set = RetrievalSet()
        set.corpusIDs = (0..<6).map { "d\($0)" }
        set.corpus = (0..<6).map { "doc \($0)" }
        set.queryIDs = ["q0", "q1"]
        set.queries = ["query 0", "query 1"]
        set.relevant = [[4, 5], [0]]
        let corpus = (0..<6).flatMap { i -> [Float] in let a = Float(i) * 0.25; return [cos(a), sin(a)] }
        return (set, [1, 0, 1, 0], corpus)
    }

    static let oracle = ["query 0": Set(["doc 4", "doc 5"]), "query 1": Set(["doc 0"])]

    @Test("an oracle reranker over the top k raises NDCG@10 to the value its new order gives")
    func oracleRaisesNDCG() throws {
        let (set, q, c) = Self.tinySet()
        let ideal = 1 + 1 / log2(3.0)
        // First stage: q0's relevant documents at ranks 5 and 6, q1's at rank 1.
        let firstStage = ((1 / log2(6.0) + 1 / log2(7.0)) / ideal + 1) / 2
        for (k, want) in [(6, 1.0), (5, ((1 + 1 / log2(7.0)) / ideal + 1) / 2), (3, firstStage)] {
            let reranker = OracleReranker(Self.oracle)
            let (before, after) = try RerankingEvaluator(set: set, topK: k).evaluate(queries: q, corpus: c, dim: 2, reranker: reranker)
            #expect(abs(before["cosine_ndcg@10"]! - firstStage) < 1e-12)
            #expect(abs(after["cosine_ndcg@10"]! - want) < 1e-12, "top \(k): \(after["cosine_ndcg@10"]!) vs \(want)")
            #expect(abs(after["dot_ndcg@10"]! - want) < 1e-12)
            // cosine and dot rank alike here: each pair is scored once.
            #expect(reranker.pairsScored == 2 * k)
        }
    }

    @Test("the first-stage metrics are the embedding evaluator's")
    func firstStageIsEmbeddingMetrics() throws {
        let (set, q, c) = Self.tinySet()
        let (before, _) = try RerankingEvaluator(set: set, topK: 2).evaluate(queries: q, corpus: c, dim: 2, reranker: OracleReranker([:]))
        #expect(before == EmbeddingEvaluator(set: set).score(queries: q, corpus: c, dim: 2))
    }

    @Test("hits past the top k follow the reranked ones in first-stage order; ties keep first-stage order")
    func rankingOrder() {
        let first: RetrievalEvaluator.Ranking = [(7, 0.9), (3, 0.8), (5, 0.7), (1, 0.6), (2, 0.5)]
        let got = rerankedRanking(first, scores: [7: 0.1, 3: 0.5, 5: 0.5], topK: 3)
        #expect(got.map(\.index) == [3, 5, 7, 1, 2])
        #expect(got.map(\.score) == [0.5, 0.5, 0.1, 0.6, 0.5])
        #expect(rerankedRanking(first, scores: [:], topK: 0).map(\.index) == first.map(\.index))
        #expect(rerankedRanking(Array(first.prefix(2)), scores: [7: 0, 3: 1], topK: 50).map(\.index) == [3, 7])
    }

    @Test("a first-stage weight mixes both stages' standardised scores; 1 keeps the first-stage order, 0 the reranker's")
    func firstStageWeight() {
        // First stage 0.9, 0.8, 0.4 → z = 0.9258, 0.4629, −1.3887; reranker 0, 1, 2 → z = −1.2247, 0, 1.2247.
        let first: RetrievalEvaluator.Ranking = [(7, 0.9), (3, 0.8), (5, 0.4), (1, 0.3)]
        let scores: [Int: Float] = [7: 0, 3: 1, 5: 2]
        #expect(rerankedRanking(first, scores: scores, topK: 3, firstStageWeight: 0).map(\.index) == [5, 3, 7, 1])
        #expect(rerankedRanking(first, scores: scores, topK: 3, firstStageWeight: 1).map(\.index) == [7, 3, 5, 1])
        let mixed = rerankedRanking(first, scores: scores, topK: 3, firstStageWeight: 0.7)
        // 0.3·z(reranker) + 0.7·z(first): 7 → 0.2807, 3 → 0.3240, 5 → −0.6047: neither stage's order.
        #expect(mixed.map(\.index) == [3, 7, 5, 1])
        #expect(abs(mixed[0].score - 0.3240) < 1e-4 && abs(mixed[1].score - 0.2807) < 1e-4 && abs(mixed[2].score + 0.6047) < 1e-4)
        #expect(standardised([2, 2, 2]) == [0, 0, 0])
    }

    @Test("eval --reranker writes first-stage and reranked rows to JSON, Markdown and the chart, and report reads them")
    func evalCLI() throws {
        let tmp = try Paths.temporaryDirectory()
        func write(_ name: String, _ lines: [String]) throws -> String {
            let url = tmp.appendingPathComponent(name)
            try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
            return url.path
        }
        let docs = CrossEncoderTests.pairs.map(\.document)
        func quoted(_ s: String) -> String { String(decoding: try! JSONEncoder().encode(s), as: UTF8.self) }
        let corpus = try write("corpus.jsonl", docs.enumerated().map { #"{"_id": "d\#($0.offset)", "text": \#(quoted($0.element))}"# })
        let queries = try write("queries.jsonl", CrossEncoderTests.pairs.prefix(4).enumerated().map { #"{"_id": "q\#($0.offset)", "text": \#(quoted($0.element.query))}"# })
        let qrels = try write("qrels.tsv", (0..<4).map { "q\($0)\td\($0)\t1" })
        let out = tmp.appendingPathComponent("metrics.json"), md = tmp.appendingPathComponent("metrics.md"), svg = tmp.appendingPathComponent("chart.svg")
        let model = Paths.fixtures.appendingPathComponent("tiny-bert-zh").path
        let reranker = CrossEncoderTests.directory.appendingPathComponent("bert").path
        let adapter = CrossEncoderTests.directory.appendingPathComponent("bert-adapter").path
        let r = try runCLI(["eval", "--corpus", corpus, "--queries", queries, "--qrels", qrels, "--model", model,
                            "--reranker", reranker, "--reranker_adapter", adapter, "--rerank_top_k", "5",
                            "--output", out.path, "--markdown", md.path, "--chart", svg.path])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONValue.load(out)
        let rows = json["results"]!.array!
        #expect(rows.count == 2)
        #expect(rows[0]["name"]!.string == "tiny-bert-zh" && rows[0]["reranker"] == nil)
        #expect(rows[1]["name"]!.string == "tiny-bert-zh → bert + bert-adapter (top 5)")
        #expect(rows[1]["reranker"]!.string == reranker && rows[1]["rerank_top_k"]!.int == 5)
        // The reranked row is what the library computes from the same first stage.
        let set = try RetrievalSet.loadBEIR(corpus: corpus, queries: queries, qrels: qrels)
        let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: model)))
        let (dim, q, c) = try EmbeddingEvaluator(set: set).embed(embedder)
        var options = RerankerOptions()
        options.adapter = URL(fileURLWithPath: adapter)
        let second = try loadReranker(ModelDirectory(URL(fileURLWithPath: reranker)), options: options)
        let (before, after) = try RerankingEvaluator(set: set, topK: 5).evaluate(queries: q, corpus: c, dim: dim, reranker: second)
        for (row, want) in zip(rows, [before, after]) {
            let got = row["metrics"]!.object!.compactMapValues(\.double)
            #expect(got.keys.sorted() == want.keys.sorted())
            for (key, value) in want { #expect(abs(got[key]! - value) < 1e-9, "\(key)") }
        }
        let table = try String(contentsOf: md, encoding: .utf8)
        #expect(table.contains("| tiny-bert-zh |") && table.contains("| tiny-bert-zh → bert + bert-adapter (top 5) |"))
        let chart = try String(contentsOf: svg, encoding: .utf8)
        #expect(chart.contains("tiny-bert-zh → bert + bert-adapter (top 5)"))
        let results = try RetrievalResults(json: json, file: out.path)
        #expect(results.rows.map(\.name) == rows.map { $0["name"]!.string! })
        let bad = try runCLI(["eval", "--corpus", corpus, "--queries", queries, "--qrels", qrels, "--model", model,
                              "--reranker", model])
        #expect(bad.status == 1 && bad.stderr.contains("config.json") && bad.stderr.contains("architectures"), "\(bad.stderr)")
    }
}
