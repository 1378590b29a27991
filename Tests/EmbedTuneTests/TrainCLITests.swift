import EmbedTuneFormats
import Foundation
import Testing

/// A small triple set for CLI runs on the tiny Qwen3 fixture.
func tinyDataset(_ url: URL, rows: Int = 48) throws {
    let crops = ["rice", "wheat", "tea", "apple", "pig", "carp", "cabbage", "maize"]
    let topics = ["fertiliser", "pests", "irrigation", "harvest", "disease", "pruning"]
    var q = [String](), p = [String](), n = [[String]]()
    for i in 0..<rows {
        let c = crops[i % crops.count], t = topics[(i / crops.count) % topics.count]
        q.append("How should I handle \(t) for \(c)? (\(i))")
        p.append("For \(c), \(t) depends on the season; check it weekly. (\(i))")
        n.append(["For \(crops[(i + 3) % crops.count]), \(topics[(i + 1) % topics.count]) differs. (\(i))"])
    }
    try writeTriples(q, p, n, to: url)
}

@Suite("embedtune train (CLI)", .serialized)
struct TrainCLITests {
    let model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path

    func args(_ data: URL, _ out: URL, steps: Int = 24) -> [String] {
        ["train", "--model", model, "--dataset", data.path, "--output_dir", out.path, "--max_steps", "\(steps)",
         "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--lora_r", "4", "--lora_dropout", "0.1",
         "--save_steps", "4", "--save_total_limit", "3", "--threads", "1", "--warmup_ratio", "0.1"]
    }

    @Test("kill -9 after a checkpoint, then --resume latest: the final adapter is bitwise identical")
    func killAndResume() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl")
        try tinyDataset(data)
        let straight = try runCLI(args(data, tmp.appendingPathComponent("straight")))
        #expect(straight.status == 0, "\(straight.stderr)")

        let out = tmp.appendingPathComponent("killed")
        let process = Process()
        process.executableURL = Paths.executable
        process.arguments = args(data, out)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Kill at some point after the first checkpoint is complete (renamed into place).
        let first = out.appendingPathComponent("checkpoint-4")
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: first.path) && Date() < deadline { usleep(2000) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal, "the run finished before it could be killed")
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("adapter_model.safetensors").path))

        let resumed = try runCLI(args(data, out) + ["--resume", "latest"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("resumed from"))
        let a = try Data(contentsOf: tmp.appendingPathComponent("straight/adapter_model.safetensors"))
        let b = try Data(contentsOf: out.appendingPathComponent("adapter_model.safetensors"))
        #expect(a == b, "resumed adapter differs from the uninterrupted run")
    }

    @Test("bad rows stop with file:line, or are counted and skipped with --skip_bad_rows")
    func badRows() throws {
        let tmp = try Paths.temporaryDirectory()
        let good = (0..<16).map { #"{"query": "q\#($0)", "response": "answer \#($0)", "rejected_response": ["other \#($0)"]}"# }
        let cases: [(String, String)] = [
            (#"{"query": "broken"#, "malformed JSON"),
            (#"{"query": "q", "rejected_response": ["n"]}"#, "response: missing field"),
            (#"{"query": "   ", "response": "r", "rejected_response": ["n"]}"#, "query: is empty"),
            (#"{"query": "q", "response": "same", "rejected_response": ["same"]}"#, "negative 1: is identical to a positive"),
        ]
        for (i, (bad, message)) in cases.enumerated() {
            let data = tmp.appendingPathComponent("d\(i).jsonl")
            try (good[..<5] + [bad] + good[5...]).joined(separator: "\n").write(to: data, atomically: true, encoding: .utf8)
            let r = try runCLI(["train", "--model", model, "--dataset", data.path, "--output_dir", tmp.appendingPathComponent("o\(i)").path,
                                "--max_steps", "1", "--per_device_train_batch_size", "4"])
            #expect(r.status == 1)
            #expect(r.stderr.contains("d\(i).jsonl:6: \(message)"), "\(r.stderr)")
            let skipped = try runCLI(["train", "--model", model, "--dataset", data.path, "--output_dir", tmp.appendingPathComponent("s\(i)").path,
                                      "--max_steps", "1", "--per_device_train_batch_size", "4", "--skip_bad_rows"])
            #expect(skipped.status == 0, "\(skipped.stderr)")
            #expect(skipped.stderr.contains("skipped") && skipped.stderr.contains("d\(i).jsonl:6"), "\(skipped.stderr)")
        }
    }

    @Test("a TOML config drives the run, flags override it, unknown keys are refused")
    func config() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl")
        try tinyDataset(data, rows: 16)
        let config = tmp.appendingPathComponent("run.toml")
        try """
        model = "\(model)"
        dataset = "\(data.path)"
        output_dir = "\(tmp.appendingPathComponent("out").path)"
        lora_r = 2
        max_steps = 3
        per_device_train_batch_size = 4   # comment
        [infonce]
        mask_fake_negative = true
        """.write(to: config, atomically: true, encoding: .utf8)
        let r = try runCLI(["train", "--config", config.path, "--lora_r", "3"])
        #expect(r.status == 0, "\(r.stderr)")
        let adapter = try JSONValue.load(tmp.appendingPathComponent("out/adapter_config.json"))
        #expect(adapter["r"]?.int == 3)
        #expect(r.stdout.contains("step 3/3"))
        try "lora_rank = 4\n".write(to: config, atomically: true, encoding: .utf8)
        let bad = try runCLI(["train", "--config", config.path, "--model", model, "--dataset", data.path])
        #expect(bad.status == 1 && bad.stderr.contains("run.toml: lora_rank: unknown option"), "\(bad.stderr)")
    }

    @Test("held-out evaluation reports retrieval metrics and keeps the best adapter by NDCG@10")
    func bestCheckpoint() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl")
        try tinyDataset(data)
        let out = tmp.appendingPathComponent("out")
        let r = try runCLI(["train", "--model", model, "--dataset", data.path, "--output_dir", out.path, "--max_steps", "6",
                            "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--split_dataset_ratio", "0.25",
                            "--eval_steps", "2", "--query_prompt", ""])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("NDCG@10"))
        let best = try JSONValue.load(out.appendingPathComponent("best/eval.json"))
        let ndcg = best["ndcg@10"]!.double!
        #expect(ndcg > 0 && ndcg <= 1)
        let logged = try readJSONLines(out.appendingPathComponent("train_log.jsonl")).compactMap { $0["ndcg@10"]?.double }
        #expect(logged.count == 4)  // before training and at steps 2, 4, 6
        #expect(ndcg == logged.dropFirst().max())
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("best/adapter_model.safetensors").path))
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("heldout.jsonl").path))
    }

    @Test("embed --adapter applies a trained adapter; a foreign adapter is refused")
    func embedWithAdapter() throws {
        let tmp = try Paths.temporaryDirectory()
        let input = tmp.appendingPathComponent("in.txt")
        try "rice paddy\n鱼塘增氧\n".write(to: input, atomically: true, encoding: .utf8)
        let adapter = Paths.fixtures.appendingPathComponent("training/peft-roundtrip").path
        let base = try runCLI(["embed", "--model", model, "--input", input.path, "--output", tmp.appendingPathComponent("a.npy").path, "--quiet"])
        let tuned = try runCLI(["embed", "--model", model, "--input", input.path, "--output", tmp.appendingPathComponent("b.npy").path,
                                "--quiet", "--adapter", adapter])
        #expect(base.status == 0 && tuned.status == 0, "\(tuned.stderr)")
        let a = try NPY.read(tmp.appendingPathComponent("a.npy")).values, b = try NPY.read(tmp.appendingPathComponent("b.npy")).values
        #expect(maxAbsDifference(a, b) > 1e-3)
        let foreign = try runCLI(["embed", "--model", Paths.fixtures.appendingPathComponent("tiny-bert-zh").path, "--input", input.path,
                                  "--output", tmp.appendingPathComponent("c.npy").path, "--adapter", adapter])
        #expect(foreign.status == 1 && foreign.stderr.contains("matches no linear layer"), "\(foreign.stderr)")
    }
}
