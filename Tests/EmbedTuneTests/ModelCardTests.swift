import EmbedTuneFormats
import EmbedTuneModels
import Foundation
import Testing

@Suite("Model cards", .serialized)
struct ModelCardTests {
    @Test("a model card has YAML front matter, options as TOML that parses back, and its metrics table")
    func markdown() throws {
        var card = ModelCard(title: "LoRA adapter for tiny", library: .peft, baseModel: "models/tiny: v2", summary: "A test adapter.")
        card.extraTags = ["infonce", "lora"]
        card.data = [("training rows", "72"), ("held-out rows", "24")]
        card.commandLine = "embedtune train --lora_r 4"
        card.options = .object(["lora_r": .int(4), "learning_rate": .double(0.001), "target_modules": .array([.string("q_proj")]),
                                "query_prompt": .string("Instruct: \"x\"\nQuery:"), "infonce": .object(["use_batch": .bool(true)])])
        card.metrics = .init(header: ["evaluation", "step", "NDCG@10"], rows: [["base model", "0", "0.1141"], ["this adapter", "12", "0.2779"]])
        let text = card.markdown()
        #expect(text.hasPrefix("---\nbase_model: \"models/tiny: v2\"\nlibrary_name: peft\npipeline_tag: sentence-similarity\ntags:\n- embedtune\n- lora\n"))
        #expect(text.components(separatedBy: "- lora\n").count == 2, "a tag is listed once")
        #expect(text.contains("- infonce\n---\n\n# LoRA adapter for tiny\n"))
        #expect(text.contains("| evaluation | step | NDCG@10 |\n|---|---:|---:|\n| base model | 0 | 0.1141 |\n| this adapter | 12 | 0.2779 |\n"))
        #expect(text.contains("- training rows: 72\n"))
        #expect(text.contains("## Framework versions\n\n- EmbedTune: "))
        let toml = try #require(text.components(separatedBy: "```toml\n").last?.components(separatedBy: "```").first)
        #expect(try TOML.parse(toml, file: "card") == card.options)
    }

    @Test("written atomically as README.md, replacing an older card")
    func write() throws {
        let dir = try Paths.temporaryDirectory()
        let card = ModelCard(title: "t", library: .sentenceTransformers, baseModel: "b", summary: "s")
        try "old".write(to: dir.appendingPathComponent("README.md"), atomically: true, encoding: .utf8)
        try card.write(to: dir)
        #expect(try String(contentsOf: dir.appendingPathComponent("README.md"), encoding: .utf8) == card.markdown())
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["README.md"], "no temporary file left behind")
    }

    @Test("a training run writes a model card beside the final adapter, best/ and every checkpoint")
    func trainingRun() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl"), out = tmp.appendingPathComponent("out")
        try tinyDataset(data)
        // 8 steps: checkpoints at 4 and 8 (save_steps 4), held-out evaluation every 2 steps.
        let r = try runCLI(TrainCLITests().args(data, out, steps: 8) + ["--split_dataset_ratio", "0.25", "--eval_steps", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        for dir in ["", "best", "checkpoint-4", "checkpoint-8"] {
            let card = try String(contentsOf: out.appendingPathComponent(dir).appendingPathComponent("README.md"), encoding: .utf8)
            #expect(card.hasPrefix("---\nbase_model: "), "\(dir)")
            #expect(card.contains("library_name: peft\n"), "\(dir)")
            #expect(card.contains("| base model | 0 | "), "\(dir): the base model's held-out metrics")
        }
        let final = try String(contentsOf: out.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(final.contains("- training rows: ") && final.contains(" (split_dataset_ratio 0.25, by query)\n"))
        #expect(final.contains("| this adapter") && final.contains("## Command\n\n```sh\n"))
        #expect(final.contains("lora_r = 4\n") && final.contains("[infonce]\n"))
        let checkpoint = try String(contentsOf: out.appendingPathComponent("checkpoint-4/README.md"), encoding: .utf8)
        #expect(checkpoint.contains("checkpoint at step 4 of 8"))
    }

    @Test("merge writes a model card with the method and weights, as a peft adapter or a folded sentence-transformers model")
    func mergeOutputs() throws {
        let tmp = try Paths.temporaryDirectory()
        let adapters = ["a0", "a1"].map { Paths.fixtures.appendingPathComponent("merge/adapters/\($0)").path }
        for fold in [false, true] {
            let out = tmp.appendingPathComponent(fold ? "folded" : "adapter")
            let r = try runCLI(["merge", "--base", Paths.fixtures.appendingPathComponent("tiny-qwen3").path, "--adapters",
                                adapters.joined(separator: ","), "--method", "ties", "--weights", "1,0.7", "--output", out.path]
                               + (fold ? ["--fold"] : []))
            #expect(r.status == 0, "\(r.stderr)")
            let card = try String(contentsOf: out.appendingPathComponent("README.md"), encoding: .utf8)
            #expect(card.contains("library_name: \(fold ? "sentence-transformers" : "peft")\n"))
            #expect(card.contains("- ties\n"))
            #expect(card.contains("| \(adapters[1]) | 0.700 |"))
            #expect(card.contains("method = \"ties\"\n") && card.contains("weights = [1.0, 0.7]\n"))
        }
    }
}
