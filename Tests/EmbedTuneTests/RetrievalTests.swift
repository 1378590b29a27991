import EmbedTuneFormats
import EmbedTuneData
import EmbedTuneRetrieval
import EmbedTuneTraining
import Foundation
import Testing

@Suite("Retrieval evaluation")
struct RetrievalTests {
    static let cases: [JSONValue] = (try? JSONValue.load(Paths.fixtures.appendingPathComponent("ir/ir_cases.json")))?["cases"]?.array ?? []

    /// Relevant ids outside the corpus are an input error for us (named by file:line), so that
    /// fixture case does not apply.
    @Test("metrics equal sentence-transformers' InformationRetrievalEvaluator within 1e-6",
          arguments: cases.map { $0["name"]!.string! }.filter { $0 != "relevant_not_in_corpus" })
    func parity(_ name: String) throws {
        let c = Self.cases.first { $0["name"]?.string == name }!
        let queries = c["queries"]!.object!, corpus = c["corpus"]!.object!
        let qids = queries.keys.sorted(), dids = corpus.keys.sorted { Self.natural($0, $1) }
        let dim = c["dim"]!.int!
        let q = qids.flatMap { queries[$0]!.array!.map { Float($0.double!) } }
        let d = dids.flatMap { corpus[$0]!.array!.map { Float($0.double!) } }
        let index = Dictionary(uniqueKeysWithValues: dids.enumerated().map { ($1, $0) })
        let relevant = qids.map { Set((c["relevant"]?[$0]?.array ?? []).map { index[$0.string!]! }) }
        var evaluator = RetrievalEvaluator()
        if let k = c["k"] {
            evaluator.accuracyAt = k["accuracy_at_k"]!.array!.map { $0.int! }
            evaluator.precisionRecallAt = k["precision_recall_at_k"]!.array!.map { $0.int! }
            evaluator.mrrAt = k["mrr_at_k"]!.array!.map { $0.int! }
            evaluator.ndcgAt = k["ndcg_at_k"]!.array!.map { $0.int! }
            evaluator.mapAt = k["map_at_k"]!.array!.map { $0.int! }
        }
        let got = evaluator.evaluate(queries: q, corpus: d, dim: dim, relevant: relevant, corpusIDs: dids)
        for (key, value) in c["metrics"]!.object! {
            guard let want = value.double else { continue }
            let g = got[key]
            #expect(g != nil, "missing key \(key)")
            if let g { #expect(abs(g - want) <= 1e-6, "\(key): \(g) vs \(want)") }
        }
    }

    /// "d2" < "d10": the corpus order the fixture was built in.
    static func natural(_ a: String, _ b: String) -> Bool {
        let na = Int(a.drop { !$0.isNumber }) ?? 0, nb = Int(b.drop { !$0.isNumber }) ?? 0
        return na != nb ? na < nb : a < b
    }

    @Test("bad BEIR input names file and line: unknown qrels id, empty corpus, malformed line")
    func badInput() throws {
        let tmp = try Paths.temporaryDirectory()
        func write(_ name: String, _ body: String) throws -> String { try writeText(body, named: name, in: tmp) }
        let corpus = try write("corpus.jsonl", #"{"_id": "d1", "text": "rice"}"# + "\n" + #"{"_id": "d2", "title": "Tea", "text": "acid soil"}"# + "\n")
        let queries = try write("queries.jsonl", #"{"_id": "q1", "text": "paddy"}"# + "\n")
        let unknown = try write("bad.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td9\t1\n")
        #expect(throws: FormatError.self) { _ = try RetrievalSet.loadBEIR(corpus: corpus, queries: queries, qrels: unknown) }
        do { _ = try RetrievalSet.loadBEIR(corpus: corpus, queries: queries, qrels: unknown) } catch {
            #expect("\(error)" == "\(unknown):3: unknown corpus id \"d9\"")
        }
        let empty = try write("empty.jsonl", "\n")
        let good = try write("good.tsv", "q1\td2\t1\n")
        do { _ = try RetrievalSet.loadBEIR(corpus: empty, queries: queries, qrels: good); Issue.record("accepted an empty corpus") } catch {
            #expect("\(error)".contains("the corpus is empty"))
        }
        let broken = try write("broken.jsonl", #"{"_id": "q1", "text": "paddy"}"# + "\n" + #"{"_id": "q2", "#)
        do { _ = try RetrievalSet.loadBEIR(corpus: corpus, queries: broken, qrels: good); Issue.record("accepted broken JSON") } catch {
            #expect("\(error)".hasPrefix("\(broken):2"), "\(error)")
        }
        let set = try RetrievalSet.loadBEIR(corpus: corpus, queries: queries, qrels: good)
        #expect(set.corpus == ["rice", "Tea acid soil"] && set.relevant == [[1]])
        let r = try runCLI(["eval", "--corpus", corpus, "--queries", queries, "--qrels", unknown, "--query_embeddings", "/dev/null",
                            "--corpus_embeddings", "/dev/null"])
        #expect(r.status == 1 && r.stderr.contains("bad.tsv:3: unknown corpus id"), "\(r.stderr)")
    }

    @Test("precomputed embeddings evaluate through the CLI with JSON, Markdown and SVG outputs")
    func cli() throws {
        let tmp = try Paths.temporaryDirectory()
        try (0..<4).map { #"{"_id": "d\#($0)", "text": "doc \#($0)"}"# }.joined(separator: "\n").write(to: tmp.appendingPathComponent("c.jsonl"), atomically: true, encoding: .utf8)
        try (0..<2).map { #"{"_id": "q\#($0)", "text": "query \#($0)"}"# }.joined(separator: "\n").write(to: tmp.appendingPathComponent("q.jsonl"), atomically: true, encoding: .utf8)
        try "q0\td1\t1\nq1\td3\t1\n".write(to: tmp.appendingPathComponent("r.tsv"), atomically: true, encoding: .utf8)
        try NPY.write(rows: 2, columns: 2, values: [0, 1, 1, 0], to: tmp.appendingPathComponent("q.npy"))
        try NPY.write(rows: 4, columns: 2, values: [1, 0, 0, 1, 0.7, 0.7, 1, 0.1], to: tmp.appendingPathComponent("c.npy"))
        let r = try runCLI(["eval", "--corpus", tmp.appendingPathComponent("c.jsonl").path, "--queries", tmp.appendingPathComponent("q.jsonl").path,
                            "--qrels", tmp.appendingPathComponent("r.tsv").path, "--query_embeddings", tmp.appendingPathComponent("q.npy").path,
                            "--corpus_embeddings", tmp.appendingPathComponent("c.npy").path, "--output", tmp.appendingPathComponent("m.json").path,
                            "--chart", tmp.appendingPathComponent("c.svg").path])
        #expect(r.status == 0, "\(r.stderr)")
        let m = try JSONValue.load(tmp.appendingPathComponent("m.json"))
        let metrics = m["results"]!.array![0]["metrics"]!
        // q0 → d1 ranks first; q1 → d3 ranks second (after d0) under cosine.
        #expect(metrics["cosine_accuracy@1"]?.double == 0.5)
        #expect(abs(metrics["cosine_mrr@10"]!.double! - 0.75) < 1e-9)
        #expect(try String(contentsOf: tmp.appendingPathComponent("c.svg"), encoding: .utf8).hasPrefix("<svg"))
    }
}
