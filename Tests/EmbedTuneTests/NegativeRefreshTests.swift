import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneRetrieval
import EmbedTuneTraining
import Foundation
import Testing

/// Mining with a reranker's judgement, and negatives re-mined during training
/// (`refresh_negatives_steps`): where they come from, checkpoints and resume, option checks.
@Suite("Refreshed and reranker-filtered negatives", .serialized)
struct NegativeRefreshTests {
    let model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path

    /// Four queries over 2-d vectors: query i and its positive point at angle i; distractor j sits
    /// a little past positive j, so every query's nearest non-positive is a distractor.
    func mineTiny(rerank: Miner.PairScorer?, _ configure: (inout MiningOptions) -> Void) throws -> Miner.Selection {
        let anchors = (0..<4).map { "q\($0)" }, positives = (0..<4).map { "p\($0)" }
        let extra = (0..<4).map { "d\($0)" }
        func vector(_ text: String) -> [Float] {
            let i = Float(Int(text.dropFirst())!), angle = i * 0.4 + (text.hasPrefix("d") ? 0.15 : 0)
            return [cos(angle), sin(angle)]
        }
        var o = MiningOptions()
        o.numNegatives = 2
        configure(&o)
        return try Miner.select(anchors: anchors, positives: positives, extraCorpus: extra, dim: 2,
                                embedQueries: { $0.flatMap(vector) }, embedDocuments: { $0.flatMap(vector) }, rerank: rerank, options: o)
    }

    @Test("the reranker filter drops the candidates it judges relevant; the rest keep their similarity order")
    func rerankerFilter() throws {
        // The reranker calls "pI" and "dI" (a false negative) relevant to "qI", and nothing else.
        var calls = 0
        let judge: Miner.PairScorer = { pairs in
            calls += 1
            return pairs.map { $0.document.dropFirst() == $0.query.dropFirst() ? 0.9 : 0.1 }
        }
        let plain = try mineTiny(rerank: nil) { $0.rangeMax = 5 }
        #expect(plain.negatives[1].first == "d1")
        let filtered = try mineTiny(rerank: judge) { $0.rangeMax = 5; $0.maxRerankerScore = 0.5 }
        #expect(calls == 1)
        for (q, negatives) in filtered.negatives.enumerated() {
            #expect(negatives.count == 2 && !negatives.contains("d\(q)"), "\(q): \(negatives)")
        }
        // Every pool candidate is judged; the four "dI" of their own query are removed.
        #expect(filtered.summary.removed.first { $0.0 == "max_reranker_score" }?.1 == 4)
        #expect(filtered.summary.positiveRerankerScores == [0.9, 0.9, 0.9, 0.9])
        // Relative to the positive's reranker score: 0.9 − 0.9 × 0.5 = 0.45 keeps 0.1, drops 0.9.
        let relative = try mineTiny(rerank: judge) { $0.rangeMax = 5; $0.rerankerRelativeMargin = 0.5 }
        #expect(relative.negatives == filtered.negatives)
        // Without a reranker filter option the reranker is never asked.
        calls = 0
        _ = try mineTiny(rerank: judge) { $0.rangeMax = 5 }
        #expect(calls == 0)
    }

    /// A 48-row dataset whose rows carry no negatives: refresh has to mine them all.
    func bareDataset(_ url: URL) throws {
        let full = url.deletingLastPathComponent().appendingPathComponent("full.jsonl")
        try tinyDataset(full)
        let rows = try TripletReader.read(full.path).triplets
        try writeTriples(rows.map(\.query), rows.map(\.positive), rows.map { _ in [] }, to: url)
    }

    func refreshArguments(_ data: URL, _ out: URL) -> [String] {
        ["train", "--model", model, "--dataset", data.path, "--output_dir", out.path, "--max_steps", "8",
         "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--lora_r", "4", "--threads", "1",
         "--num_negatives", "2", "--refresh_negatives_steps", "3", "--split_dataset_ratio", "0.25", "--eval_steps", "4",
         "--range_max", "12", "--save_steps", "4"]
    }

    @Test("rows without negatives train with refreshed ones mined from the training corpus alone, and resume exactly")
    func refreshDuringTraining() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("bare.jsonl")
        try bareDataset(data)
        let straight = tmp.appendingPathComponent("straight"), stopped = tmp.appendingPathComponent("stopped")
        let r = try runCLI(refreshArguments(data, straight))
        #expect(r.status == 0, "\(r.stderr)")
        for step in [0, 3, 6] { #expect(r.stdout.contains("negatives refreshed at step \(step):"), "\(r.stdout)") }
        #expect(r.stdout.contains("eval step 8"))

        // The checkpoint keeps the negatives in force; training ones are training positives, never held-out texts.
        let saved = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: straight.appendingPathComponent("checkpoint-4/negatives.json"))) as? [String: [[String]]])
        let heldOut = try TripletReader.read(straight.appendingPathComponent("heldout.jsonl").path).triplets
        let heldOutPositives = Set(heldOut.map(\.positive))
        let train = try #require(saved["train"]), holdout = try #require(saved["holdout"])
        #expect(train.count + holdout.count == 48 && holdout.count == heldOut.count)
        #expect(train.allSatisfy { $0.count == 2 && heldOutPositives.isDisjoint(with: $0) })
        #expect(heldOut.allSatisfy { $0.negatives.count == 2 })

        // Filters that leave a row with nothing to train on stop the run before its first step, naming the row.
        let strict = try runCLI(refreshArguments(data, tmp.appendingPathComponent("strict")) + ["--max_score", "-1"])
        #expect(strict.status == 1 && strict.stderr.contains("bare.jsonl:1: mining left this row's query without a negative"),
                "\(strict.stderr)")

        // Stopped after a checkpoint between refreshes and resumed: the same adapter as straight through.
        #expect(try runCLI(refreshArguments(data, stopped) + ["--stop_after", "4"]).status == 0)
        let resumed = try runCLI(refreshArguments(data, stopped) + ["--resume", "latest"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("negatives refreshed at step 6:") && !resumed.stdout.contains("refreshed at step 3:"))
        let a = try Data(contentsOf: straight.appendingPathComponent("adapter_model.safetensors"))
        #expect(try Data(contentsOf: stopped.appendingPathComponent("adapter_model.safetensors")) == a)
    }

    @Test("mining filters without refresh_negatives_steps, refresh without num_negatives, and a reranker filter without a reranker are errors")
    func optionChecks() throws {
        func problem(_ arguments: [String]) throws -> String {
            var o = TrainingOptions()
            o.model = model
            o.dataset = "rows.jsonl"
            try o.apply(arguments: arguments)
            do { try o.validate() } catch { return "\(error)" }
            return ""
        }
        #expect(try problem(["--relative_margin", "0.1"]).contains("--relative_margin is a filter of refreshed negatives"))
        #expect(try problem(["--refresh_negatives_steps", "5"]).contains("needs --num_negatives"))
        #expect(try problem(["--refresh_negatives_steps", "5", "--num_negatives", "2", "--max_reranker_score", "0.5"]).contains("need --reranker"))
        #expect(try problem(["--refresh_negatives_steps", "5", "--num_negatives", "2", "--range_max", "20"]).isEmpty)
        var config = TrainingOptions()
        try config.apply(config: try TOML.parse("refresh_negatives_steps = 5\n[mining]\nrelative_margin = 0.05\n", file: "run.toml"),
                         file: "run.toml")
        #expect(config.mining.relativeMargin == 0.05)
    }
}

extension NegativeRefreshTests {
    @Test("mine --reranker: a threshold nothing reaches keeps every negative, one everything passes removes them all")
    func mineWithReranker() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("pairs.jsonl")
        try tinyDataset(data, rows: 12)
        let reranker = Paths.fixtures.appendingPathComponent("cross-encoder/bert").path
        func mine(_ threshold: String) throws -> (status: Int32, rows: Int, stderr: String) {
            let out = tmp.appendingPathComponent("mined-\(threshold).jsonl")
            let r = try runCLI(["mine", "--model", model, "--dataset", data.path, "--output", out.path, "--num_negatives", "2",
                                "--reranker", reranker, "--max_reranker_score", threshold, "--quiet"])
            let rows = (try? String(contentsOf: out, encoding: .utf8))?.split(separator: "\n").count ?? 0
            return (r.status, rows, r.stderr)
        }
        let lenient = try mine("1.5"), strict = try mine("0")
        #expect(lenient.status == 0 && lenient.rows == 24, "\(lenient.stderr)")
        #expect(lenient.stderr.contains("reranker, positives:"))
        #expect(strict.status == 0 && strict.rows == 0 && strict.stderr.contains("removed by max_reranker_score"), "\(strict.stderr)")
        let alone = try runCLI(["mine", "--model", model, "--dataset", data.path, "--output", tmp.appendingPathComponent("x.jsonl").path,
                                "--reranker", reranker])
        #expect(alone.status != 0 && alone.stderr.contains("--max_reranker_score or --reranker_relative_margin"), "\(alone.stderr)")
    }
}
