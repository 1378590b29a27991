import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneTraining
import Foundation
import Testing

private let datasetFixtures = Paths.fixtures.appendingPathComponent("datasets")

/// A fresh store in its own temporary directory.
private func freshStore() throws -> (DatasetStore, URL) {
    let dir = try Paths.temporaryDirectory()
    return (try DatasetStore(path: dir.appendingPathComponent("store.db").path), dir)
}

private func fixture(_ name: String) -> String { datasetFixtures.appendingPathComponent(name).path }

/// Writes JSONL question/answer rows.
private func writePairs(_ rows: [(String, String)], to url: URL) throws {
    let text = rows.map { "{\"question\": \"\($0.0)\", \"answer\": \"\($0.1)\"}" }.joined(separator: "\n") + "\n"
    try Data(text.utf8).write(to: url)
}

/// The error a throwing call raised, as the one line the CLI would print.
private func failure(_ body: () throws -> Void) -> String? {
    do { try body(); return nil } catch { return "\(error)" }
}

@Suite("DatasetStore: SQLite dataset store and `embedtune data`", .serialized)
struct DatasetStoreTests {
    @Test("pairs import merges a repeated question and a repeated answer, and skips a repeated row")
    func importPairs() throws {
        let (store, _) = try freshStore()
        let r = try store.importDataset(name: "faq", format: .pairs, inputs: ImportInputs(input: fixture("pairs.jsonl")), replace: false)
        #expect(r.rowsRead == 6)
        #expect(r.queries == 4)
        #expect(r.documents == 4)
        #expect(r.qrels == 5)
        #expect(r.duplicatesMerged == 2)
        #expect(r.skipped == 1)
        let pairs = try store.pairs(dataset: "faq", split: nil)
        #expect(pairs.map(\.queryID) == ["q1", "q1", "q2", "q3", "q4"])
        #expect(pairs[1].positive == "Keep the soil saturated during tillering.")
        #expect(pairs[4].query == "When is wheat ready?", "texts are stored trimmed")
        #expect(pairs[4].docID == pairs[2].docID, "an identical answer is one document")
        let set = try store.retrievalSet(dataset: "faq", split: nil)
        #expect(set.queries.count == 4 && set.corpus.count == 4)
        #expect(set.relevant[0].count == 2)
    }

    @Test("pairs import with chosen fields keeps the rows' own query ids")
    func importPairsFields() throws {
        let (store, _) = try freshStore()
        let inputs = ImportInputs(input: fixture("pairs_custom.tsv"), queryField: "prompt", answerField: "reply", idField: "id")
        let r = try store.importDataset(name: "custom", format: .pairs, inputs: inputs, replace: false)
        #expect(r.queries == 2 && r.qrels == 2)
        #expect(try store.pairs(dataset: "custom", split: nil).map(\.queryID) == ["101", "102"])
        let missing = failure {
            _ = try store.importDataset(name: "x", format: .pairs, inputs: ImportInputs(input: fixture("pairs_custom.tsv")), replace: false)
        }
        #expect(missing?.contains("cannot tell the question field") == true, "\(missing ?? "")")
    }

    @Test("ms-swift import reads query/response and messages rows with their negatives")
    func importMsSwift() throws {
        let (store, _) = try freshStore()
        let r = try store.importDataset(name: "ms", format: .msSwift, inputs: ImportInputs(input: fixture("ms_swift.jsonl")), replace: false)
        #expect(r.queries == 3)
        #expect(r.documents == 7)
        #expect(r.qrels == 3)
        #expect(r.negatives == 5)
        #expect(r.duplicatesMerged == 1)
        let pairs = try store.pairs(dataset: "ms", split: nil)
        #expect(pairs.map(\.query) == ["Best fertiliser for maize?", "Why do tomato leaves curl?", "When to sow carrots?"])
        #expect(pairs[2].positive == "Early spring, in loose soil.")
        let negatives = try store.sourceNegatives(dataset: "ms")
        #expect(negatives[pairs[0].queryID] == ["Maize needs no feeding.", "Lime the soil in winter."])
        #expect(negatives[pairs[1].queryID] == ["Tomatoes like frost.", "Maize needs no feeding."])
        #expect(negatives[pairs[2].queryID] == ["Midwinter, in clay."])
    }

    @Test("sentence-transformers import reads named JSONL columns and positional CSV columns")
    func importSentenceTransformers() throws {
        let (store, _) = try freshStore()
        let named = try store.importDataset(name: "st", format: .sentenceTransformers, inputs: ImportInputs(input: fixture("st.jsonl")), replace: false)
        #expect(named.queries == 2 && named.documents == 5 && named.negatives == 4 && named.duplicatesMerged == 1)
        let positional = try store.importDataset(
            name: "csv", format: .sentenceTransformers, inputs: ImportInputs(input: fixture("st_positional.csv")), replace: false)
        #expect(positional.queries == 2 && positional.documents == 4 && positional.negatives == 2)
        let pairs = try store.pairs(dataset: "csv", split: nil)
        #expect(pairs[1].query == "How to store onions?" && pairs[1].positive == "Cool, dry and airy, after curing.")
        #expect(try store.sourceNegatives(dataset: "csv")[pairs[1].queryID] == ["Keep onions wet."])
    }

    @Test("BEIR import keeps ids, aliases a duplicate document, and takes splits from the qrels file names")
    func importBEIR() throws {
        let (store, _) = try freshStore()
        let r = try store.importDataset(name: "beir", format: .beir, inputs: ImportInputs(input: fixture("beir")), replace: false)
        #expect(r.rowsRead == 15)
        #expect(r.documents == 4 && r.queries == 5 && r.qrels == 5 && r.duplicatesMerged == 1)
        #expect(r.splits == ["train": 3, "test": 1, "": 1])
        #expect(try store.splits(dataset: "beir") == ["test", "train"])
        let test = try store.retrievalSet(dataset: "beir", split: "test")
        #expect(test.queryIDs == ["q4"])
        #expect(test.relevant[0].map { test.corpusIDs[$0] } == ["5"], "score 0 is not relevant")
        let train = try store.pairs(dataset: "beir", split: "train")
        #expect(train.map(\.docID) == ["doc1", "doc2", "doc3"], "doc4 has doc2's text and is merged into it")
        #expect(train[0].positive == "Rice Flood the paddy 5 cm deep.")
        let all = try store.retrievalSet(dataset: "beir", split: nil)
        #expect(all.queryIDs == ["q1", "q2", "q3", "q4"], "an unjudged query is not in the retrieval set")
        let unknown = failure { _ = try store.retrievalSet(dataset: "beir", split: "dev") }
        #expect(unknown?.contains("no split \"dev\" (splits: test, train)") == true, "\(unknown ?? "")")
    }

    @Test("a qrels line naming an unknown id, or with the wrong column count, is an error naming file, line and id")
    func qrelsErrors() throws {
        let (store, dir) = try freshStore()
        let beir = dir.appendingPathComponent("b")
        try FileManager.default.createDirectory(at: beir.appendingPathComponent("qrels"), withIntermediateDirectories: true)
        try Data("{\"_id\": \"d1\", \"text\": \"one\"}\n".utf8).write(to: beir.appendingPathComponent("corpus.jsonl"))
        try Data("{\"_id\": \"q1\", \"text\": \"first\"}\n".utf8).write(to: beir.appendingPathComponent("queries.jsonl"))
        let qrels = beir.appendingPathComponent("qrels/test.tsv")
        try Data("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td9\t1\n".utf8).write(to: qrels)
        let doc = failure { _ = try store.importDataset(name: "b", format: .beir, inputs: ImportInputs(input: beir.path), replace: false) }
        #expect(doc == "\(qrels.path):3: corpus-id: unknown corpus id \"d9\" (not in \(beir.path)/corpus.jsonl)")
        try Data("q7\td1\t1\n".utf8).write(to: qrels)
        let query = failure { _ = try store.importDataset(name: "b", format: .beir, inputs: ImportInputs(input: beir.path), replace: false) }
        #expect(query?.hasPrefix("\(qrels.path):1: query-id: unknown query id \"q7\"") == true, "\(query ?? "")")
        try Data("q1 d1 1\n".utf8).write(to: qrels)
        let columns = failure { _ = try store.importDataset(name: "b", format: .beir, inputs: ImportInputs(input: beir.path), replace: false) }
        #expect(columns == "\(qrels.path):1: expected 3 tab-separated columns (query-id, corpus-id, score), found 1")
        #expect(try store.datasetNames().isEmpty)
    }

    @Test("an empty corpus and an empty pairs file are errors")
    func emptyInputs() throws {
        let (store, dir) = try freshStore()
        let beir = dir.appendingPathComponent("b")
        try FileManager.default.createDirectory(at: beir.appendingPathComponent("qrels"), withIntermediateDirectories: true)
        try Data("\n".utf8).write(to: beir.appendingPathComponent("corpus.jsonl"))
        try Data("{\"_id\": \"q1\", \"text\": \"first\"}\n".utf8).write(to: beir.appendingPathComponent("queries.jsonl"))
        try Data("q1\td1\t1\n".utf8).write(to: beir.appendingPathComponent("qrels/test.tsv"))
        let corpus = failure { _ = try store.importDataset(name: "b", format: .beir, inputs: ImportInputs(input: beir.path), replace: false) }
        #expect(corpus == "\(beir.path)/corpus.jsonl: the corpus is empty")
        let empty = dir.appendingPathComponent("empty.jsonl")
        try Data().write(to: empty)
        let rows = failure { _ = try store.importDataset(name: "p", format: .pairs, inputs: ImportInputs(input: empty.path), replace: false) }
        #expect(rows == "\(empty.path): no rows")
        let blank = dir.appendingPathComponent("blank.jsonl")
        try Data("{\"question\": \"q\", \"answer\": \"  \"}\n".utf8).write(to: blank)
        let field = failure { _ = try store.importDataset(name: "p", format: .pairs, inputs: ImportInputs(input: blank.path), replace: false) }
        #expect(field == "\(blank.path):1: answer: is empty")
    }

    @Test("a failing import (bad line 3) leaves the store unchanged and names the file and line 3")
    func failingImportRollsBack() throws {
        let (store, _) = try freshStore()
        _ = try store.importDataset(name: "faq", format: .pairs, inputs: ImportInputs(input: fixture("pairs.jsonl")), replace: false)
        let before = try store.datasets()
        let pairsBefore = try store.pairs(dataset: "faq", split: nil).map(\.positive)
        let bad = fixture("bad_line3.jsonl")
        let fresh = failure { _ = try store.importDataset(name: "bad", format: .pairs, inputs: ImportInputs(input: bad), replace: false) }
        #expect(fresh?.hasPrefix("\(bad):3: malformed JSON") == true, "\(fresh ?? "")")
        let replacing = failure { _ = try store.importDataset(name: "faq", format: .pairs, inputs: ImportInputs(input: bad), replace: true) }
        #expect(replacing?.hasPrefix("\(bad):3:") == true, "\(replacing ?? "")")
        #expect(try store.datasets() == before)
        #expect(try store.pairs(dataset: "faq", split: nil).map(\.positive) == pairsBefore)
    }

    @Test("importing an existing name needs replace; replace swaps the data and keeps the run log")
    func replaceSemantics() throws {
        let (store, _) = try freshStore()
        _ = try store.importDataset(name: "d", format: .pairs, inputs: ImportInputs(input: fixture("pairs.jsonl")), replace: false)
        try store.recordRun(dataset: "d", kind: "eval", split: nil, model: "m", adapter: nil, metrics: ["ndcg@10": 0.5])
        try store.saveTriplets(dataset: "d", split: "train", source: "mine", [Triplet(query: "a", positive: "b", negatives: ["c"])])
        let again = failure { _ = try store.importDataset(name: "d", format: .msSwift, inputs: ImportInputs(input: fixture("ms_swift.jsonl")), replace: false) }
        #expect(again?.hasSuffix("dataset \"d\" already exists (use --replace to replace it)") == true, "\(again ?? "")")
        let r = try store.importDataset(name: "d", format: .msSwift, inputs: ImportInputs(input: fixture("ms_swift.jsonl")), replace: true)
        #expect(r.replaced)
        let summary = try #require(try store.datasets().first)
        #expect(summary.queries == 3 && summary.documents == 7 && summary.qrels == 3 && summary.negatives == 5 && summary.triplets == 0)
        #expect(try store.datasetNames() == ["d"])
        #expect(try store.runs(dataset: "d").count == 1)
        #expect(try store.pairs(dataset: "d", split: nil).first?.queryID == "q1")
    }

    @Test("split is deterministic, independent of insertion order, and sized round(test_size × n)")
    func splitIsDeterministic() throws {
        let rows = (0..<20).map { ("question number \($0) about crops", "answer number \($0)") }
        let (a, dir) = try freshStore()
        let b = try DatasetStore(path: dir.appendingPathComponent("other.db").path)
        let forward = dir.appendingPathComponent("forward.jsonl"), backward = dir.appendingPathComponent("backward.jsonl")
        try writePairs(rows, to: forward)
        try writePairs(rows.reversed(), to: backward)
        _ = try a.importDataset(name: "d", format: .pairs, inputs: ImportInputs(input: forward.path), replace: false)
        _ = try b.importDataset(name: "d", format: .pairs, inputs: ImportInputs(input: backward.path), replace: false)
        #expect(try a.split(dataset: "d", testSize: 0.25, seed: 42) == (train: 15, test: 5))
        #expect(try b.split(dataset: "d", testSize: 0.25, seed: 42) == (train: 15, test: 5))
        func test(_ s: DatasetStore) throws -> Set<String> { Set(try s.queries(dataset: "d", split: "test").map(\.text)) }
        let first = try test(a)
        #expect(first.count == 5)
        #expect(try test(b) == first, "the split depends on the texts, not the insertion order")
        _ = try a.split(dataset: "d", testSize: 0.5, seed: 7)
        _ = try a.split(dataset: "d", testSize: 0.25, seed: 42)
        #expect(try test(a) == first, "re-running with the same seed gives the same split")
        _ = try a.split(dataset: "d", testSize: 0.25, seed: 43)
        #expect(try test(a) != first)
        #expect(try a.split(dataset: "d", testSize: 0.01, seed: 1).test == 1, "at least one test query")
        #expect(try a.split(dataset: "d", testSize: 3, seed: 1).test == 3, "a whole number ≥ 1 is a count")
        #expect(try a.retrievalSet(dataset: "d", split: "train").queries.count == 17)
        #expect(try a.retrievalSet(dataset: "d", split: "train").corpus.count == 20, "the corpus stays whole")
        let outside = failure { _ = try a.split(dataset: "d", testSize: 0, seed: 1) }
        #expect(outside?.contains("test_size: 0.0 is outside (0, 1)") == true, "\(outside ?? "")")
        let large = failure { _ = try a.split(dataset: "d", testSize: 20, seed: 1) }
        #expect(large?.contains("a count of 20 test queries leaves no training queries") == true, "\(large ?? "")")
        let unknown = failure { _ = try a.split(dataset: "nope", testSize: 0.2, seed: 1) }
        #expect(unknown?.hasSuffix("unknown dataset \"nope\" (known: d)") == true, "\(unknown ?? "")")
    }

    @Test("stats: counts per split and nearest-rank length percentiles, in characters or tokens")
    func stats() throws {
        let (store, dir) = try freshStore()
        let rows = (1...10).map { (String(repeating: "q", count: $0), String(repeating: "a", count: 10 * $0)) }
        let url = dir.appendingPathComponent("lengths.jsonl")
        try writePairs(rows, to: url)
        _ = try store.importDataset(name: "l", format: .pairs, inputs: ImportInputs(input: url.path), replace: false)
        let chars = try store.stats(dataset: "l", tokenizer: nil)
        #expect(chars.unit == "characters" && chars.corpusSize == 10)
        let all = try #require(chars.splits.last)
        #expect(all.name == "all" && chars.splits.count == 1)
        #expect(all.queries == 10 && all.documents == 10 && all.qrels == 10 && all.relevantPerQueryMean == 1 && all.relevantPerQueryMax == 1)
        let q = all.queryLengths, d = all.documentLengths
        #expect([q.p50, q.p90, q.p99, q.max] as [Int] == [5, 9, 10, 10])
        #expect([d.p50, d.p90, d.p99, d.max] as [Int] == [50, 90, 100, 100])
        let tokens = try store.stats(dataset: "l", tokenizer: { $0.count * 2 })
        #expect(tokens.unit == "tokens" && tokens.splits[0].queryLengths.p50 == 10)

        _ = try store.importDataset(name: "b", format: .beir, inputs: ImportInputs(input: fixture("beir")), replace: false)
        let beir = try store.stats(dataset: "b", tokenizer: nil)
        #expect(beir.splits.map(\.name) == ["train", "test", "unsplit", "all"])
        let test = beir.splits[1]
        #expect(test.queries == 1 && test.queriesWithRelevant == 1 && test.documents == 2 && test.qrels == 2)
        #expect(beir.splits[3].queries == 5 && beir.splits[3].queriesWithRelevant == 4 && beir.splits[3].documents == 4)
    }

    @Test("saveTriplets replaces a split's rows; triplets and recordRun round trip")
    func tripletsAndRuns() throws {
        let (store, _) = try freshStore()
        _ = try store.importDataset(name: "d", format: .pairs, inputs: ImportInputs(input: fixture("pairs.jsonl")), replace: false)
        let rows = [Triplet(query: "q \"1\"", positive: "p/1", negatives: ["n1", "n2"], instruction: "Find farming answers"),
                    Triplet(query: "q2", positive: "p2", negatives: [])]
        try store.saveTriplets(dataset: "d", split: "train", source: "mine", [Triplet(query: "old", positive: "old", negatives: [])])
        try store.saveTriplets(dataset: "d", split: "train", source: "mine", rows)
        try store.saveTriplets(dataset: "d", split: "test", source: "mine", [rows[1]])
        let back = try store.triplets(dataset: "d", split: "train")
        #expect(back.map(\.query) == rows.map(\.query))
        #expect(back.map(\.positive) == rows.map(\.positive))
        #expect(back.map(\.negatives) == rows.map(\.negatives))
        #expect(back[0].instruction == "Find farming answers" && back[1].instruction == nil)
        #expect(try store.tripletSplits(dataset: "d") == ["train": 2, "test": 1])

        try store.recordRun(dataset: "d", kind: "train", split: "train", model: "models/q3", adapter: "out/lora",
                            metrics: ["loss": 0.25, "ndcg@10": 0.75, "odd": .infinity])
        try store.recordRun(dataset: "d", kind: "eval", split: nil, model: "models/q3", adapter: nil, metrics: [:])
        let runs = try store.runs(dataset: nil)
        #expect(runs.count == 2)
        #expect(runs[0].kind == "train" && runs[0].split == "train" && runs[0].adapter == "out/lora")
        #expect(runs[0].metrics == ["loss": 0.25, "ndcg@10": 0.75, "odd": .infinity])
        #expect(runs[1].split == nil && runs[1].adapter == nil && runs[1].metrics.isEmpty)
    }

    @Test("CRLF line endings import line by line (JSONL rows and BEIR files)")
    func crlf() throws {
        let (store, dir) = try freshStore()
        let url = dir.appendingPathComponent("crlf.jsonl")
        try Data("{\"question\": \"a?\", \"answer\": \"b\"}\r\n{\"question\": \"c?\", \"answer\": \"d\"}\r\n".utf8).write(to: url)
        #expect(try store.importDataset(name: "p", format: .pairs, inputs: ImportInputs(input: url.path), replace: false).queries == 2)
        let beir = dir.appendingPathComponent("b")
        try FileManager.default.createDirectory(at: beir.appendingPathComponent("qrels"), withIntermediateDirectories: true)
        try Data("{\"_id\": \"d1\", \"text\": \"one\"}\r\n{\"_id\": \"d2\", \"text\": \"two\"}\r\n".utf8).write(to: beir.appendingPathComponent("corpus.jsonl"))
        try Data("{\"_id\": \"q1\", \"text\": \"first\"}\r\n".utf8).write(to: beir.appendingPathComponent("queries.jsonl"))
        try Data("query-id\tcorpus-id\tscore\r\nq1\td2\t1\r\n".utf8).write(to: beir.appendingPathComponent("qrels/dev.tsv"))
        let r = try store.importDataset(name: "b", format: .beir, inputs: ImportInputs(input: beir.path), replace: false)
        #expect(r.documents == 2 && r.qrels == 1 && r.splits == ["dev": 1])
    }

    @Test("a file that is not a store is refused, and a store reopens")
    func refusesOtherFiles() throws {
        let dir = try Paths.temporaryDirectory()
        let text = dir.appendingPathComponent("notes.db")
        try Data(String(repeating: "not a database\n", count: 100).utf8).write(to: text)
        let refused = failure { _ = try DatasetStore(path: text.path) }
        #expect(refused == "\(text.path): is not an EmbedTune dataset store (not an SQLite database)")
        let path = dir.appendingPathComponent("s.db").path
        _ = try DatasetStore(path: path).importDataset(name: "d", format: .pairs, inputs: ImportInputs(input: fixture("pairs.jsonl")), replace: false)
        #expect(try DatasetStore(path: path).datasetNames() == ["d"])
    }

    @Test("CLI: export → re-import round trips pairs, ms-swift, triplets and BEIR")
    func exportRoundTrip() throws {
        let dir = try Paths.temporaryDirectory()
        let db = dir.appendingPathComponent("s.db").path
        func cli(_ args: [String]) throws -> String {
            let r = try runCLI(["data"] + args)
            #expect(r.status == 0, "\(args): \(r.stderr)")
            return r.stdout
        }
        _ = try cli(["import", "--db", db, "--db_dataset", "beir", "--format", "beir", "--input", fixture("beir")])
        _ = try cli(["export", "--db", db, "--db_dataset", "beir", "--format", "beir", "--output", dir.appendingPathComponent("out").path])
        _ = try cli(["import", "--db", db, "--db_dataset", "beir2", "--format", "beir", "--input", dir.appendingPathComponent("out").path])
        _ = try cli(["import", "--db", db, "--db_dataset", "ms", "--format", "ms-swift", "--input", fixture("ms_swift.jsonl")])
        _ = try cli(["export", "--db", db, "--db_dataset", "ms", "--format", "ms-swift", "--output", dir.appendingPathComponent("ms.jsonl").path])
        _ = try cli(["import", "--db", db, "--db_dataset", "ms2", "--format", "ms-swift", "--input", dir.appendingPathComponent("ms.jsonl").path])
        _ = try cli(["export", "--db", db, "--db_dataset", "ms", "--format", "pairs", "--output", dir.appendingPathComponent("p.jsonl").path])
        _ = try cli(["import", "--db", db, "--db_dataset", "p2", "--format", "pairs", "--input", dir.appendingPathComponent("p.jsonl").path])

        let store = try DatasetStore(path: db)
        try store.saveTriplets(dataset: "ms", split: "train", source: "test",
                               [Triplet(query: "anchor one", positive: "positive one", negatives: ["neg a", "neg b"])])
        _ = try cli(["export", "--db", db, "--db_dataset", "ms", "--split", "train", "--format", "triplets", "--output", dir.appendingPathComponent("t.jsonl").path])
        _ = try cli(["import", "--db", db, "--db_dataset", "t2", "--format", "sentence-transformers", "--input", dir.appendingPathComponent("t.jsonl").path])

        for (a, b) in [("beir", "beir2"), ("ms", "ms2"), ("ms", "p2")] {
            #expect(try store.pairs(dataset: a, split: nil).map { [$0.query, $0.positive] } == store.pairs(dataset: b, split: nil).map { [$0.query, $0.positive] })
        }
        #expect(try store.queries(dataset: "beir", split: nil).map { [$0.id, $0.text, $0.split ?? "-"] }
                == store.queries(dataset: "beir2", split: nil).map { [$0.id, $0.text, $0.split ?? "-"] })
        #expect(try store.corpus(dataset: "beir").map { [$0.id, $0.text] } == store.corpus(dataset: "beir2").map { [$0.id, $0.text] })
        #expect(try store.qrels(dataset: "beir", split: nil).map { "\($0.queryID) \($0.docID) \($0.score)" }
                == store.qrels(dataset: "beir2", split: nil).map { "\($0.queryID) \($0.docID) \($0.score)" })
        func negativesByQuery(_ d: String) throws -> [String: [String]] {
            let text = Dictionary(try store.queries(dataset: d, split: nil).map { ($0.id, $0.text) }, uniquingKeysWith: { a, _ in a })
            return Dictionary(try store.sourceNegatives(dataset: d).map { (text[$0.key] ?? "?", $0.value) }, uniquingKeysWith: { a, _ in a })
        }
        #expect(try negativesByQuery("ms") == negativesByQuery("ms2"))
        #expect(try store.sourceNegatives(dataset: "t2").values.first == ["neg a", "neg b"])

        let stats = try cli(["stats", "--db", db, "--db_dataset", "beir", "--json", dir.appendingPathComponent("stats.json").path])
        #expect(stats.contains("lengths (characters)"))
        let json = try JSONValue.load(dir.appendingPathComponent("stats.json"))
        #expect(json["corpusSize"]?.int == 4)
        let list = try cli(["list", "--db", db])
        #expect(list.contains("beir2") && list.contains("t2"))
        let missing = try runCLI(["data", "stats", "--db", db, "--db_dataset", "nope"])
        #expect(missing.status == 1 && missing.stderr.contains("unknown dataset \"nope\" (known: beir, beir2, ms, ms2, p2, t2)"))
    }
}
