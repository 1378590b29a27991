import EmbedTuneData
import EmbedTuneFormats
import Foundation
import Testing

@Suite("Domain library training through the CLI", .serialized)
struct LibraryTests {
    let model = Paths.fixtures.appendingPathComponent("tiny-bert-zh").path

    /// A two-domain library: the fixture BEIR set twice, with descriptions.
    static func library(in root: URL) throws -> URL {
        let lib = root.appendingPathComponent("library")
        var entries = [String]()
        for name in ["farm", "garden"] {
            let dir = lib.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: lib, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: Paths.fixtures.appendingPathComponent("datasets/beir"), to: dir)
            try "[\"Questions about \(name)ing.\", \"\(name) questions\"]".write(to: dir.appendingPathComponent("descriptions.json"), atomically: true, encoding: .utf8)
            entries.append("{\"name\": \"\(name)\", \"language\": \"en\"}")
        }
        try "{\"domains\": [\(entries.joined(separator: ", "))]}".write(to: lib.appendingPathComponent("library.json"), atomically: true, encoding: .utf8)
        return lib
    }

    @Test("library train: one adapter per domain with base and adapter metrics recorded; a second run skips finished domains; held-out and unknown domains; library multitask trains one adapter on the trained domains")
    func train() throws {
        let tmp = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let lib = try Self.library(in: tmp), out = tmp.appendingPathComponent("out")
        let arguments = ["library", "train", "--library", lib.path, "--output", out.path, "--model", model, "--max_steps", "2",
                         "--per_device_train_batch_size", "2", "--lora_r", "4", "--quiet"]
        let first = try runCLI(arguments + ["--exclude", "garden"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("library: farm NDCG@10 base"), "\(first.stdout)")
        #expect(!first.stdout.contains("garden"))
        let adapter = out.appendingPathComponent("adapters/farm/adapter_model.safetensors")
        #expect(FileManager.default.fileExists(atPath: adapter.path))
        let runs = try JSONValue.parse(Data(contentsOf: out.appendingPathComponent("library-runs.json")), file: "library-runs.json")
        let farm = runs["domains"]?["farm"]
        #expect(farm?["status"]?.string == "done")
        #expect(farm?["base"]?["cosine_ndcg@10"]?.double != nil && farm?["adapter_metrics"]?["cosine_ndcg@10"]?.double != nil)
        let recorded = try DatasetStore(path: out.appendingPathComponent("library.sqlite").path).runs(dataset: "farm")
        #expect(recorded.filter { $0.kind == "library-eval" }.count == 2)
        #expect(try DatasetStore(path: out.appendingPathComponent("library.sqlite").path).tripletSplits(dataset: "farm")["train"] ?? 0 > 0)

        let second = try runCLI(arguments)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stdout.contains("farm (1/2) done before, skipped"), "\(second.stdout)")
        #expect(second.stdout.contains("library: garden NDCG@10 base"), "\(second.stdout)")

        let multitask = tmp.appendingPathComponent("multitask")
        let mt = try runCLI(["library", "multitask", "--library", lib.path, "--adapters", out.path, "--output", multitask.path,
                             "--exclude", "garden", "--model", model, "--max_steps", "2", "--per_device_train_batch_size", "2", "--lora_r", "4"])
        #expect(mt.status == 0, "\(mt.stderr)")
        #expect(mt.stdout.contains("of 1 domains (farm)"), "\(mt.stdout)")
        #expect(FileManager.default.fileExists(atPath: multitask.appendingPathComponent("adapter_model.safetensors").path))
        let mtSetHere = try runCLI(["library", "multitask", "--library", lib.path, "--adapters", out.path, "--output", multitask.path,
                                    "--model", model, "--db_dataset", "farm"])
        #expect(mtSetHere.status != 0 && mtSetHere.stderr.contains("set by library multitask"), "\(mtSetHere.stderr)")

        let unknown = try runCLI(arguments + ["--domains", "orchard"])
        #expect(unknown.status != 0 && unknown.stderr.contains("no domain \"orchard\"") && unknown.stderr.contains("farm, garden"), "\(unknown.stderr)")
        let setHere = try runCLI(arguments + ["--output_dir", "x"])
        #expect(setHere.status != 0 && setHere.stderr.contains("set per domain"), "\(setHere.stderr)")
        let notLibrary = try runCLI(["library", "train", "--library", tmp.path, "--output", out.path, "--model", model])
        #expect(notLibrary.status != 0 && notLibrary.stderr.contains("library.json") && notLibrary.stderr.contains("make domains"), "\(notLibrary.stderr)")
    }

    @Test("library train on 2 MPI ranks trains and records every domain")
    func twoRanks() throws {
        let tmp = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let lib = try Self.library(in: tmp), out = tmp.appendingPathComponent("out")
        let r = try runMPI(2, ["library", "train", "--library", lib.path, "--output", out.path, "--model", model, "--max_steps", "2",
                               "--per_device_train_batch_size", "1", "--lora_r", "4", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        let runs = try JSONValue.parse(Data(contentsOf: out.appendingPathComponent("library-runs.json")), file: "library-runs.json")
        #expect(runs["domains"]?["farm"]?["status"]?.string == "done" && runs["domains"]?["garden"]?["status"]?.string == "done")
    }
}
