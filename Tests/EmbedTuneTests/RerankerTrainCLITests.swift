import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneRetrieval
import Foundation
import Testing

/// `embedtune train --task_type reranker` end to end: resume, MPI, the PEFT output as
/// `rerank --adapter`, `eval --reranker_adapter` and the library read it, and the option checks.
@Suite("embedtune train --task_type reranker (CLI)", .serialized)
struct RerankerTrainCLITests {
    static let crossEncoder = Paths.fixtures.appendingPathComponent("cross-encoder/bert").path
    static let encoder = Paths.fixtures.appendingPathComponent("tiny-bert-zh").path

    /// 48 rows of the trainer tests' farm questions, each with two negatives.
    static func data(_ tmp: URL) throws -> URL {
        let url = tmp.appendingPathComponent("d.jsonl")
        try tinyDataset(url)
        let rows = try String(contentsOf: url, encoding: .utf8).split(separator: "\n").enumerated().map { i, line -> String in
            var o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            o["rejected_response"] = (o["rejected_response"] as! [String]) + ["Tea needs acid soil and shade. (\(i))"]
            return String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
        }
        try (rows.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func args(_ model: String, _ data: URL, _ out: URL, _ extra: [String] = []) -> [String] {
        ["train", "--task_type", "reranker", "--model", model, "--dataset", data.path, "--output_dir", out.path,
         "--global_batch_size", "8", "--learning_rate", "1e-3", "--lora_r", "4", "--threads", "1", "--max_steps", "6",
         "--split_dataset_ratio", "0.2", "--eval_steps", "2"] + extra
    }

    @Test("stopped after a checkpoint and resumed: the final adapter is byte for byte the uninterrupted one",
          arguments: ["bce", "listwise"])
    func resume(_ loss: String) throws {
        let tmp = try Paths.temporaryDirectory(), data = try Self.data(tmp)
        let extra = ["--reranker_loss", loss, "--num_labels", "1", "--save_steps", "2", "--lora_dropout", "0.1", "--backbone_dropout"]
        let straight = try runCLI(args(Self.encoder, data, tmp.appendingPathComponent("straight"), extra))
        #expect(straight.status == 0, "\(straight.stderr)")
        let out = tmp.appendingPathComponent("stopped")
        let stopped = try runCLI(args(Self.encoder, data, out, extra) + ["--stop_after", "3"])
        #expect(stopped.status == 0, "\(stopped.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("adapter_model.safetensors").path))
        let resumed = try runCLI(args(Self.encoder, data, out, extra) + ["--resume", "latest"])
        #expect(resumed.status == 0 && resumed.stdout.contains("resumed from"), "\(resumed.stderr)")
        for file in ["adapter_model.safetensors", "best/adapter_model.safetensors"] {
            let a = try Data(contentsOf: tmp.appendingPathComponent("straight/\(file)")), b = try Data(contentsOf: out.appendingPathComponent(file))
            #expect(a == b, "\(file): the resumed run differs from the uninterrupted one")
        }
        let evals = { (s: String) in s.split(separator: "\n").filter { $0.hasPrefix("eval step 6") } }
        #expect(evals(straight.stdout) == evals(resumed.stdout) && evals(straight.stdout).count == 1)
    }

    @Test("1 and 2 ranks reach the same adapter within 1e-5 and print the same held-out evaluations, with accumulation")
    func worldSizeInvariance() throws {
        let tmp = try Paths.temporaryDirectory(), data = try Self.data(tmp)
        let extra = ["--gradient_accumulation_steps", "2", "--lora_dropout", "0.1", "--reranker_loss", "bce"]
        let one = try runCLI(args(Self.crossEncoder, data, tmp.appendingPathComponent("r1"), extra))
        #expect(one.status == 0, "\(one.stderr)")
        let two = try runMPI(2, args(Self.crossEncoder, data, tmp.appendingPathComponent("r2"), extra))
        #expect(two.status == 0, "\(two.stderr)")
        let distance = try adapterDistance(tmp.appendingPathComponent("r1"), tmp.appendingPathComponent("r2"))
        print("reranker 1 vs 2 ranks: max per-tensor relative distance \(distance)")
        #expect(distance <= 1e-5 && two.stdout.contains("[rank 0/2]"))
        let evals = { (s: String) in s.split(separator: "\n").filter { $0.contains("eval step") }.map { $0.split(separator: "]").last!.trimmingCharacters(in: .whitespaces) } }
        #expect(evals(one.stdout).count == 4 && evals(two.stdout) == evals(one.stdout), "\(one.stdout)\n\(two.stdout)")
    }

    @Test("a new head on an embedding model: the PEFT SEQ_CLS adapter that rerank --adapter, eval --reranker_adapter and the library load alike")
    func newHeadOutput() throws {
        let tmp = try Paths.temporaryDirectory(), data = try Self.data(tmp), out = tmp.appendingPathComponent("rr")
        let train = try runCLI(args(Self.encoder, data, out, ["--num_labels", "1"]))
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stdout.contains("classifier.weight, classifier.bias"), "\(train.stdout)")
        let config = try JSONValue.load(out.appendingPathComponent("adapter_config.json"))
        #expect(config["task_type"]?.string == "SEQ_CLS" && config["modules_to_save"]?.array?.compactMap(\.string) == ["classifier"])
        let names = try SafetensorsFile(url: out.appendingPathComponent("adapter_model.safetensors")).names
        #expect(names.contains("base_model.model.classifier.weight") && names.contains("base_model.model.bert.pooler.dense.lora_A.weight"))
        #expect(names.filter { $0.contains("lora_") }.allSatisfy { $0.hasPrefix("base_model.model.bert.") }, "\(names)")
        let card = try String(contentsOf: out.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(card.contains("pipeline_tag: text-ranking") && card.contains("AutoModelForSequenceClassification"))

        let documents = ["For rice, pests depends on the season; check it weekly. (9)", "Tea needs acid soil and shade. (9)",
                         "For pig, irrigation differs. (9)"]
        let library = try CrossEncoder(encoder: ModelDirectory(URL(fileURLWithPath: Self.encoder)), adapter: out)
        let scores = try library.scores(query: "How should I handle pests for rice? (9)", documents: documents)
        #expect(try loadReranker(ModelDirectory(URL(fileURLWithPath: Self.encoder)), options: { var o = RerankerOptions(); o.adapter = out; return o }())
            .relevance(query: "How should I handle pests for rice? (9)", documents: documents) == scores)
        let queries = tmp.appendingPathComponent("q.jsonl"), candidates = tmp.appendingPathComponent("c.jsonl")
        try #"{"id": "q", "text": "How should I handle pests for rice? (9)"}"#.write(to: queries, atomically: true, encoding: .utf8)
        try documents.enumerated().map { #"{"query_id": "q", "id": \#($0.offset), "text": "\#($0.element)"}"# }.joined(separator: "\n")
            .write(to: candidates, atomically: true, encoding: .utf8)
        let rerank = try runCLI(["rerank", "--model", Self.encoder, "--adapter", out.path, "--queries", queries.path, "--candidates", candidates.path])
        #expect(rerank.status == 0, "\(rerank.stderr)")
        let rows = try rerank.stdout.split(separator: "\n").map { try JSONValue.parse(Data($0.utf8), file: "stdout") }
        for row in rows { #expect(abs(Float(row["score"]!.double!) - scores[row["id"]!.int!]) <= 1e-6) }
        // Without the adapter the embedding model is no reranker.
        let bare = try runCLI(["rerank", "--model", Self.encoder, "--queries", queries.path, "--candidates", candidates.path])
        #expect(bare.status == 1 && bare.stderr.contains("architectures"), "\(bare.stderr)")

        let corpus = tmp.appendingPathComponent("corpus.jsonl"), evalQueries = tmp.appendingPathComponent("queries.jsonl")
        let qrels = tmp.appendingPathComponent("qrels.tsv")
        try documents.enumerated().map { #"{"_id": "d\#($0.offset)", "text": "\#($0.element)"}"# }.joined(separator: "\n")
            .write(to: corpus, atomically: true, encoding: .utf8)
        try #"{"_id": "q0", "text": "How should I handle pests for rice? (9)"}"#.write(to: evalQueries, atomically: true, encoding: .utf8)
        try "q0\td0\t1\n".write(to: qrels, atomically: true, encoding: .utf8)
        let eval = try runCLI(["eval", "--corpus", corpus.path, "--queries", evalQueries.path, "--qrels", qrels.path, "--model", Self.encoder,
                               "--reranker", Self.encoder, "--reranker_adapter", out.path, "--rerank_top_k", "3"])
        #expect(eval.status == 0 && eval.stdout.contains("tiny-bert-zh → tiny-bert-zh + rr (top 3)"), "\(eval.stderr)\(eval.stdout)")
    }

    @Test("options of the other task, a missing --num_labels and a model that is no encoder are errors naming what to change")
    func optionErrors() throws {
        let tmp = try Paths.temporaryDirectory(), data = try Self.data(tmp), out = tmp.appendingPathComponent("x")
        let cases: [([String], [String])] = [
            (args(Self.crossEncoder, data, out, ["--temperature", "0.02"]), ["--temperature", "embedding training"]),
            (args(Self.crossEncoder, data, out, ["--refresh_negatives_steps", "2", "--num_negatives", "2"]), ["--refresh_negatives_steps"]),
            (args(Self.encoder, data, out), ["config.json", "--num_labels 1"]),
            (args(Self.crossEncoder, data, out, ["--num_labels", "3"]), ["--num_labels 3"]),
            (args(Self.crossEncoder, data, out, ["--num_negatives", "0"]), ["--num_negatives"]),
            (args(Paths.fixtures.appendingPathComponent("tiny-qwen3").path, data, out, ["--num_labels", "1"]), ["config.json", "cannot be trained as a reranker"]),
            (["train", "--model", Self.encoder, "--dataset", data.path, "--reranker_loss", "bce"], ["--reranker_loss", "--task_type reranker"]),
        ]
        for (arguments, needles) in cases {
            let r = try runCLI(arguments)
            #expect(r.status == 1 && needles.allSatisfy { r.stderr.contains($0) }, "\(arguments.suffix(4)): \(r.stderr)")
        }
    }
}
