import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTokenizers
import Foundation
import Testing

/// Inputs a user's files really have (Windows line endings, a byte-order mark, a row that lands in
/// the held-out share) and a resumed run's best adapter: errors name the file and line, never a crash.
@Suite("Reliability: bad rows, CRLF and BOM files, resumed best adapter", .serialized)
struct ReliabilityTests {
    let model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path

    /// A short training run of the tiny Qwen3 on `data`, written to `out`.
    func trainArguments(_ data: URL, _ out: URL, steps: Int) -> [String] {
        ["train", "--model", model, "--dataset", data.path, "--output_dir", out.path, "--max_steps", "\(steps)",
         "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--lora_r", "4", "--threads", "1"]
    }

    /// The rows of `tinyDataset` as (query, positive, negatives).
    func rows(_ count: Int = 48) throws -> [(String, String, [String])] {
        let tmp = try Paths.temporaryDirectory().appendingPathComponent("rows.jsonl")
        try tinyDataset(tmp, rows: count)
        return try TripletReader.read(tmp.path).triplets.map { ($0.query, $0.positive, $0.negatives) }
    }

    @Test("a held-out row without hard negatives is an error naming its file:line, never a crash")
    func heldOutRowWithoutNegatives() throws {
        let tmp = try Paths.temporaryDirectory()
        var data = try rows()
        // The first row that the held-out rule (seed 42, ratio 0.3) puts in the held-out share.
        let heldOut = try #require(data.indices.first { i in
            Double(mix64(42 ^ fnv1a(data[i].0)) >> 11) / Double(1 << 53) < 0.3
        })
        data[heldOut].2 = []
        let url = tmp.appendingPathComponent("d.jsonl")
        try writeTriples(data.map(\.0), data.map(\.1), data.map(\.2), to: url)
        let r = try runCLI(["train", "--model", model, "--dataset", url.path, "--output_dir", tmp.appendingPathComponent("out").path,
                            "--split_dataset_ratio", "0.3", "--num_negatives", "2", "--max_steps", "1",
                            "--per_device_train_batch_size", "4", "--eval_steps", "1"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("d.jsonl:\(heldOut + 1): row has no hard negatives"), "\(r.stderr)")
    }

    @Test("CRLF line endings, a byte-order mark and no final newline read like a plain LF file")
    func windowsFiles() throws {
        let tmp = try Paths.temporaryDirectory()
        let plain = tmp.appendingPathComponent("plain.jsonl"), windows = tmp.appendingPathComponent("windows.jsonl")
        try tinyDataset(plain, rows: 12)
        var text = try String(contentsOf: plain, encoding: .utf8)
        text = "\u{FEFF}" + text.replacingOccurrences(of: "\n", with: "\r\n").dropLast()  // "\r\n" is one Character
        try text.write(to: windows, atomically: true, encoding: .utf8)
        #expect(try TripletReader.read(windows.path).triplets.map(\.query) == TripletReader.read(plain.path).triplets.map(\.query))

        let toml = "\u{FEFF}lora_r = 4\r\npreserve_data = \"other.jsonl\"\r\n[infonce]\r\nuse_batch = false"
        let parsed = try TOML.parse(toml, file: "run.toml")
        #expect(parsed["lora_r"]?.int == 4 && parsed["preserve_data"]?.string == "other.jsonl")
        #expect(parsed["infonce"]?["use_batch"]?.bool == false)

        let corpus = tmp.appendingPathComponent("corpus.jsonl"), queries = tmp.appendingPathComponent("queries.jsonl")
        let qrels = tmp.appendingPathComponent("qrels.tsv")
        try "\u{FEFF}{\"_id\": \"d1\", \"text\": \"rice\"}\r\n{\"_id\": \"d2\", \"text\": \"tea\"}".write(to: corpus, atomically: true, encoding: .utf8)
        try "{\"_id\": \"q1\", \"text\": \"paddy\"}\r\n".write(to: queries, atomically: true, encoding: .utf8)
        try "\u{FEFF}query-id\tcorpus-id\tscore\r\nq1\td1\t1".write(to: qrels, atomically: true, encoding: .utf8)
        let set = try RetrievalSet.loadBEIR(corpus: corpus.path, queries: queries.path, qrels: qrels.path)
        #expect(set.corpusIDs == ["d1", "d2"] && set.relevant == [[0]])

        let config = tmp.appendingPathComponent("config.json")
        try "\u{FEFF}{\"model_type\": \"qwen3\"}\r\n".write(to: config, atomically: true, encoding: .utf8)
        #expect(try JSONValue.load(config)["model_type"]?.string == "qwen3")

        let texts = tmp.appendingPathComponent("texts.txt")
        try "\u{FEFF}first\r\nsecond".write(to: texts, atomically: true, encoding: .utf8)
        let out = tmp.appendingPathComponent("e.npy")
        let r = try runCLI(["embed", "--model", model, "--input", texts.path, "--output", out.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try NPY.read(out).rows == 2)
    }

    @Test("--resume keeps the best adapter until a later evaluation beats its score")
    func resumeKeepsBest() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl"), out = tmp.appendingPathComponent("out")
        try tinyDataset(data)
        let common = trainArguments(data, out, steps: 8) + ["--split_dataset_ratio", "0.25", "--eval_steps", "2", "--save_steps", "4"]
        let first = try runCLI(common + ["--stop_after", "4"])
        #expect(first.status == 0, "\(first.stderr)")
        // A saved best no evaluation can beat: a resumed run must keep it.
        let best = out.appendingPathComponent("best")
        let evalURL = best.appendingPathComponent("eval.json")
        var record = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: evalURL)) as? [String: Any])
        record["ndcg@10"] = 2.0
        try JSONSerialization.data(withJSONObject: record).write(to: evalURL)
        let weights = try Data(contentsOf: best.appendingPathComponent("adapter_model.safetensors"))
        let resumed = try runCLI(common + ["--resume", "latest"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("eval step 8"), "\(resumed.stdout)")
        #expect(try Data(contentsOf: best.appendingPathComponent("adapter_model.safetensors")) == weights)
        let kept = try JSONSerialization.jsonObject(with: Data(contentsOf: evalURL)) as? [String: Any]
        #expect(kept?["ndcg@10"] as? Double == 2.0)
    }

    @Test("a damaged latest checkpoint is reported and the one before it resumes to the uninterrupted adapter",
          arguments: ["bit flip", "truncation"])
    func damagedCheckpointFallsBack(_ damage: String) throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl")
        try tinyDataset(data)
        func args(_ out: URL) -> [String] {
            trainArguments(data, out, steps: 12) + ["--lora_dropout", "0.1", "--save_steps", "4", "--save_total_limit", "3"]
        }
        let straight = tmp.appendingPathComponent("straight"), out = tmp.appendingPathComponent("damaged")
        #expect(try runCLI(args(straight)).status == 0)
        #expect(try runCLI(args(out) + ["--stop_after", "8"]).status == 0)
        // What a writer killed before its rename leaves: never a checkpoint, removed on resume.
        let unfinished = out.appendingPathComponent(".checkpoint-12.tmp-4242")
        try FileManager.default.createDirectory(at: unfinished, withIntermediateDirectories: true)
        try Data("partial".utf8).write(to: unfinished.appendingPathComponent("state.bin.zst"))
        let blob = out.appendingPathComponent("checkpoint-8/state.bin.zst")
        var bytes = try Data(contentsOf: blob)
        if damage == "bit flip" { bytes[bytes.count / 2] ^= 0x10 } else { bytes = bytes.prefix(bytes.count / 2) }
        try bytes.write(to: blob)
        let resumed = try runCLI(args(out) + ["--resume", "latest"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stderr.contains("checkpoint-8 is damaged") && resumed.stderr.contains("resuming from checkpoint-4 instead"),
                "\(resumed.stderr)")
        #expect(resumed.stdout.contains("resumed from \(out.appendingPathComponent("checkpoint-4").path) at step 4"), "\(resumed.stdout)")
        #expect(!FileManager.default.fileExists(atPath: unfinished.path))
        let a = try Data(contentsOf: straight.appendingPathComponent("adapter_model.safetensors"))
        #expect(try Data(contentsOf: out.appendingPathComponent("adapter_model.safetensors")) == a)
    }

    @Test("a model directory cannot name files outside itself: modules.json paths and index shards are refused")
    func pathsStayInside() throws {
        let tmp = try Paths.temporaryDirectory()
        let model = tmp.appendingPathComponent("model")
        try FileManager.default.copyItem(at: Paths.fixtures.appendingPathComponent("tiny-qwen2"), to: model)
        let modules = model.appendingPathComponent("modules.json")
        let original = try Data(contentsOf: modules)
        for escape in ["../outside", "/etc", "1_Pooling/../../outside"] {
            let list: [[String: Any]] = [["idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"],
                                         ["idx": 1, "name": "1", "path": escape, "type": "sentence_transformers.models.Pooling"]]
            try JSONSerialization.data(withJSONObject: list).write(to: modules)
            do { _ = try ModelDirectory(model); Issue.record("accepted pooling path \(escape)") } catch {
                #expect("\(error)" == "\(modules.path): [1].path: \"\(escape)\" leaves the directory \(model.path) (only names inside it are read)")
            }
        }
        try original.write(to: modules)
        let index = model.appendingPathComponent("model.safetensors.index.json")
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: index)) as? [String: Any])
        var map = try #require(json["weight_map"] as? [String: String])
        let input = tmp.appendingPathComponent("texts.txt")
        try "rice paddies\n".write(to: input, atomically: true, encoding: .utf8)
        for escape in ["../model-00001-of-00002.safetensors", "..", "/etc/passwd"] {
            map[map.keys.sorted()[0]] = escape
            json["weight_map"] = map
            try JSONSerialization.data(withJSONObject: json).write(to: index)
            let r = try runCLI(["embed", "--model", model.path, "--input", input.path, "--output", tmp.appendingPathComponent("e.npy").path])
            #expect(r.status == 1 && r.stderr.contains("must name a shard file in this directory"), "\(escape): \(r.stderr)")
        }
    }

    @Test("kill -9 during a data import leaves the store as it was")
    func killedImport() throws {
        let tmp = try Paths.temporaryDirectory()
        let db = tmp.appendingPathComponent("store.sqlite").path
        let small = tmp.appendingPathComponent("small.jsonl"), large = tmp.appendingPathComponent("large.jsonl")
        try (0..<20).map { #"{"question": "q\#($0)", "answer": "a\#($0)"}"# }.joined(separator: "\n").write(to: small, atomically: true, encoding: .utf8)
        try (0..<400_000).map { #"{"question": "question number \#($0) about rice", "answer": "answer number \#($0) about paddies"}"# }
            .joined(separator: "\n").write(to: large, atomically: true, encoding: .utf8)
        #expect(try runCLI(["data", "import", "--db", db, "--db_dataset", "kept", "--format", "pairs", "--input", small.path]).status == 0)
        let before = try DatasetStore(path: db).datasets()

        let process = Process()
        process.executableURL = Paths.executable
        process.arguments = ["data", "import", "--db", db, "--db_dataset", "big", "--format", "pairs", "--input", large.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        usleep(400_000)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal, "the import finished before it could be killed")
        let after = try DatasetStore(path: db).datasets()
        #expect(after == before)
        #expect(try DatasetStore(path: db).pairs(dataset: "kept", split: nil).count == 20)
    }

    @Test("a negative maxLength keeps no tokens instead of trapping")
    func negativeMaxLength() throws {
        let tokenizer = try Tokenizer.load(tokenizerJSON: Paths.fixtures.appendingPathComponent("qwen-bpe/tokenizer.json"))
        #expect(tokenizer.encode("rice paddies", maxLength: -3).isEmpty)
        #expect(tokenizer.encodeBatch(["rice", "tea"], maxLength: -1) == [[], []])
    }

    @Test("after resuming past a damaged checkpoint, save_total_limit keeps the run's own checkpoint, not the damaged one")
    func pruneAfterFallback() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl"), out = tmp.appendingPathComponent("out")
        try tinyDataset(data)
        let common = trainArguments(data, out, steps: 12)
        #expect(try runCLI(common + ["--save_steps", "4", "--stop_after", "8"]).status == 0)
        let blob = out.appendingPathComponent("checkpoint-8/state.bin.zst")
        var bytes = try Data(contentsOf: blob)
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: blob)
        let resumed = try runCLI(common + ["--save_steps", "2", "--save_total_limit", "1", "--stop_after", "7", "--resume", "latest"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasPrefix("checkpoint-") }
        #expect(left == ["checkpoint-6"], "\(left)")
    }
}
