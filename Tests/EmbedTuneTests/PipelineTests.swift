import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneRetrieval
import EmbedTuneTraining
import Foundation
import Testing

/// The `make demo` pipeline on a tiny model, through the CLI: import → split → mine (1 and 2
/// ranks) → train from the store → eval from the store, runs recorded; then routing.
@Suite("Dataset store pipeline and routing through the CLI", .serialized)
struct PipelineTests {
    let model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path

    func pairs(_ url: URL) throws {
        let crops = ["rice", "wheat", "tea", "maize", "apple", "carp", "pig", "goat", "pear", "cotton"]
        var lines = ""
        for (i, c) in crops.enumerated() {
            for (j, q) in ["How do I plant \(c)?", "Which pests attack \(c)?", "When is \(c) harvested?", "How much fertiliser does \(c) need?"].enumerated() {
                lines += "{\"q\": \"\(q)\", \"a\": \"Answer \(i)-\(j) about \(c): \(String(repeating: "\(c) ", count: j + 1))details.\"}\n"
            }
        }
        try lines.write(to: url, atomically: true, encoding: .utf8)
    }

    /// A store with dataset "farm": 40 pairs, 10 of the questions split off for testing.
    func farmStore(in tmp: URL) throws -> String {
        let src = tmp.appendingPathComponent("pairs.jsonl"), db = tmp.appendingPathComponent("store.sqlite").path
        try pairs(src)
        #expect(try runCLI(["data", "import", "--db", db, "--db_dataset", "farm", "--format", "pairs", "--input", src.path]).status == 0)
        #expect(try runCLI(["data", "split", "--db", db, "--db_dataset", "farm", "--test-size", "0.25"]).status == 0)
        return db
    }

    @Test("mining from the store on 2 ranks stores the same triplets as on 1; train and eval read the store and eval records its runs")
    func storePipeline() throws {
        let tmp = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let db = try farmStore(in: tmp)
        let mine = ["mine", "--db", db, "--db_dataset", "farm", "--model", model, "--num_negatives", "2", "--output_format", "ms-swift", "--quiet"]
        let one = try runCLI(mine)
        #expect(one.status == 0, "\(one.stderr)")
        let single = try DatasetStore(path: db).triplets(dataset: "farm", split: "train")
        #expect(single.count == 30 && single.allSatisfy { $0.negatives.count == 2 })
        let two = try runMPI(2, mine)
        #expect(two.status == 0, "\(two.stderr)")
        #expect(two.stderr.contains("2 ranks embedded shards"))
        let sharded = try DatasetStore(path: db).triplets(dataset: "farm", split: "train")
        #expect(sharded.map(\.query) == single.map(\.query) && sharded.map(\.negatives) == single.map(\.negatives))

        let out = tmp.appendingPathComponent("adapter")
        let train = try runCLI(["train", "--model", model, "--db", db, "--db_dataset", "farm", "--output_dir", out.path, "--max_steps", "2",
                                "--per_device_train_batch_size", "4", "--lora_r", "4"])
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stdout.contains("30 training"), "\(train.stdout)")
        let eval = try runCLI(["eval", "--db", db, "--db_dataset", "farm", "--model", model, "--adapter", out.path])
        #expect(eval.status == 0, "\(eval.stderr)")
        #expect(eval.stdout.contains("(10 queries, 40 documents)"), "\(eval.stdout)")
        let runs = try DatasetStore(path: db).runs(dataset: "farm")
        #expect(runs.count == 2 && runs[1].adapter == out.path && runs.allSatisfy { $0.split == "test" && $0.metrics["cosine_ndcg@10"] != nil })
        let bad = try runCLI(["mine", "--db", db, "--db_dataset", "nope", "--model", model, "--quiet"])
        #expect(bad.status != 0 && bad.stderr.contains("nope"), "\(bad.stderr)")
    }

    @Test("a run with fusion partners fuses on rank 0 at the end: fused-model/ and fusion.md")
    func fusionAtTheEnd() throws {
        let tmp = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let db = try farmStore(in: tmp)
        let dev = tmp.appendingPathComponent("dev")
        #expect(try runCLI(["data", "export", "--db", db, "--db_dataset", "farm", "--split", "test", "--format", "beir", "--output", dev.path]).status == 0)
        let out = tmp.appendingPathComponent("run")
        let partner = Paths.fixtures.appendingPathComponent("merge/adapters/a2").path
        let r = try runMPI(2, ["train", "--model", model, "--db", db, "--db_dataset", "farm", "--output_dir", out.path, "--max_steps", "2",
                               "--per_device_train_batch_size", "2", "--lora_r", "4", "--threads", "1",
                               "--fusion_adapters", partner, "--fusion_dev", "\(dev.path),\(dev.path)"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("fusion:"), "\(r.stdout)")
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("fused-model/model.safetensors").path))
        let table = try String(contentsOf: out.appendingPathComponent("fusion.md"), encoding: .utf8)
        #expect(table.contains("| domain | base | own adapter |"))
    }

    @Test("a routed index holds embed --route auto's rows and routes its queries the same way; --adapter and a changed adapter are refused")
    func routedIndex() throws {
        let tmp = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        // Copies of the fixture adapters, so that one can be changed afterwards.
        let a = try ["a0", "a2"].map { name -> String in
            let copy = tmp.appendingPathComponent(name)
            try FileManager.default.copyItem(at: Paths.fixtures.appendingPathComponent("merge/adapters/\(name)"), to: copy)
            return copy.path
        }
        let english = tmp.appendingPathComponent("en.txt"), chinese = tmp.appendingPathComponent("zh.txt")
        try "How do I plant rice?\nWhen is wheat harvested?\nWhich pests attack tea?\nHow much water do pigs need?\n".write(to: english, atomically: true, encoding: .utf8)
        try "水稻怎么种？\n小麦什么时候收？\n茶树有哪些害虫？\n猪每天喝多少水？\n".write(to: chinese, atomically: true, encoding: .utf8)
        let router = tmp.appendingPathComponent("router.json").path
        #expect(try runCLI(["route", "build", "--model", model, "--domain", "en=\(english.path)", "--domain", "zh=\(chinese.path)",
                            "--output", router]).status == 0)
        let corpus = tmp.appendingPathComponent("corpus.txt"), queries = tmp.appendingPathComponent("queries.txt")
        try "Rice is planted in flooded paddies.\n水稻在水田里插秧。\nWheat is harvested in early summer.\n小麦在初夏收获。\nTea pests include aphids.\n猪每天需要大量饮水。\n"
            .write(to: corpus, atomically: true, encoding: .utf8)
        try "how to plant rice\n小麦什么时候收\n".write(to: queries, atomically: true, encoding: .utf8)
        let idx = tmp.appendingPathComponent("idx").path
        let routing = ["--adapters", a.joined(separator: ","), "--router", router, "--route_threshold", "0.9"]
        let built = try runCLI(["index", "build", "--model", model, "--corpus", corpus.path, "--output", idx, "--quiet"] + routing)
        #expect(built.status == 0, "\(built.stderr)")
        let found = try runCLI(["search", "--index", idx, "--queries", queries.path, "--top_k", "6"])
        #expect(found.status == 0, "\(found.stderr)")

        // The same ranking and scores as exact search over embed --route auto's vectors, with the
        // model's document and query prompts as the index takes them.
        let cv = tmp.appendingPathComponent("c.npy"), qv = tmp.appendingPathComponent("q.npy")
        for (input, output, prompt) in [(corpus, cv, "document"), (queries, qv, "query")] {
            let r = try runCLI(["embed", "--model", model, "--input", input.path, "--output", output.path, "--prompt_name", prompt,
                                "--route", "auto", "--quiet"] + routing)
            #expect(r.status == 0, "\(r.stderr)")
        }
        let c = try NPY.read(cv), q = try NPY.read(qv)
        let texts = try String(contentsOf: corpus, encoding: .utf8).split(separator: "\n").map(String.init)
        let exact = exactTopK(queries: q.values, corpus: c.values, dim: c.columns, k: 6, normalize: true)
        let lines = found.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        for (line, row) in zip(lines, exact) {
            let hits = try JSONValue.parse(Data(line.utf8), file: "stdout")["hits"]!.array!
            #expect(hits.map { $0["text"]!.string! } == row.map { texts[$0.index] })
            for (hit, e) in zip(hits, row) { #expect(abs(hit["score"]!.double! - Double(e.score)) <= 1e-5) }
        }

        let withAdapter = try runCLI(["search", "--index", idx, "--query", "rice", "--adapter", a[0]])
        #expect(withAdapter.status != 0 && withAdapter.stderr.contains("routed index"), "\(withAdapter.stderr)")
        let config = URL(fileURLWithPath: a[1]).appendingPathComponent("adapter_config.json")
        try (String(contentsOf: config, encoding: .utf8) + " ").write(to: config, atomically: true, encoding: .utf8)
        let changed = try runCLI(["search", "--index", idx, "--query", "rice"])
        #expect(changed.status != 0 && changed.stderr.contains("different adapter"), "\(changed.stderr)")
    }

    @Test("a routed embedding equals the chosen adapter's; a mixed route equals the two adapters merged by router weight")
    func routing() throws {
        let tmp = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let a = ["a0", "a2"].map { Paths.fixtures.appendingPathComponent("merge/adapters/\($0)").path }
        let english = tmp.appendingPathComponent("en.txt"), chinese = tmp.appendingPathComponent("zh.txt")
        try "How do I plant rice?\nWhen is wheat harvested?\nWhich pests attack tea?\nHow much water do pigs need?\n".write(to: english, atomically: true, encoding: .utf8)
        try "水稻怎么种？\n小麦什么时候收？\n茶树有哪些害虫？\n猪每天喝多少水？\n".write(to: chinese, atomically: true, encoding: .utf8)
        let router = tmp.appendingPathComponent("router.json").path
        let build = try runCLI(["route", "build", "--model", model, "--domain", "en=\(english.path)", "--domain", "zh=\(chinese.path)",
                                "--test", "en=\(english.path)", "--test", "zh=\(chinese.path)", "--output", router])
        #expect(build.status == 0, "\(build.stderr)")
        #expect(build.stdout.contains("overall held-out accuracy"))
        let texts = tmp.appendingPathComponent("mixed.txt")
        try "How do I plant rice?\n水稻怎么种？\n".write(to: texts, atomically: true, encoding: .utf8)
        let routed = tmp.appendingPathComponent("routed.npy"), routes = tmp.appendingPathComponent("routes.jsonl")
        let r = try runCLI(["embed", "--model", model, "--input", texts.path, "--output", routed.path, "--adapters", a.joined(separator: ","),
                            "--route", "auto", "--router", router, "--routes_output", routes.path, "--route_threshold", "0"])
        #expect(r.status == 0, "\(r.stderr)")
        let chosen = try readJSONLines(routes).map { $0["domains"]!.array!.map { $0.string! } }
        let embedded = try NPYMatrix(routed)
        for (i, domains) in chosen.enumerated() {
            let single = tmp.appendingPathComponent("single\(i).npy"), line = tmp.appendingPathComponent("line\(i).txt")
            try (["How do I plant rice?", "水稻怎么种？"][i] + "\n").write(to: line, atomically: true, encoding: .utf8)
            #expect(domains.count == 1)
            let adapter = a[domains[0] == "en" ? 0 : 1]
            #expect(try runCLI(["embed", "--model", model, "--input", line.path, "--output", single.path, "--adapter", adapter]).status == 0)
            #expect(maxAbsDifference(embedded.row(i), try NPYMatrix(single).row(0)) <= 1e-6)
        }
        // Threshold 1: every text mixes its top two adapters; that equals a task_arithmetic merge with those weights.
        let mixed = try runCLI(["embed", "--model", model, "--input", texts.path, "--output", routed.path, "--adapters", a.joined(separator: ","),
                                "--route", "auto", "--router", router, "--routes_output", routes.path, "--route_threshold", "1"])
        #expect(mixed.status == 0, "\(mixed.stderr)")
        let first = try readJSONLines(routes)[0]
        let weights = first["weights"]!.array!.map { $0.double! }, domains = first["domains"]!.array!.map { $0.string! }
        let order = domains.map { $0 == "en" ? 0 : 1 }
        let merged = tmp.appendingPathComponent("merged")
        let w = order.sorted().map { idx in weights[order.firstIndex(of: idx)!] }
        #expect(try runCLI(["merge", "--base", model, "--adapters", a.joined(separator: ","), "--method", "task_arithmetic",
                            "--weights", w.map { "\($0)" }.joined(separator: ","), "--output", merged.path]).status == 0)
        let one = tmp.appendingPathComponent("one.txt"), viaMerge = tmp.appendingPathComponent("viamerge.npy")
        try "How do I plant rice?\n".write(to: one, atomically: true, encoding: .utf8)
        #expect(try runCLI(["embed", "--model", model, "--input", one.path, "--output", viaMerge.path, "--adapter", merged.path]).status == 0)
        #expect(maxAbsDifference(try NPYMatrix(routed).row(0), try NPYMatrix(viaMerge).row(0)) <= 1e-6)
    }
}

/// A float32 .npy matrix read for comparisons.
struct NPYMatrix {
    let rows: Int, columns: Int, values: [Float]
    init(_ url: URL) throws {
        let m = try NPY.read(url)
        rows = m.rows; columns = m.columns; values = m.values
    }
    func row(_ i: Int) -> [Float] { Array(values[(i * columns)..<((i + 1) * columns)]) }
}
