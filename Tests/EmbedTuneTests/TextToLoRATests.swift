import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneGeneration
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTraining
import Foundation
import Testing

@Suite("Text-to-LoRA hypernetwork", .serialized)
struct TextToLoRATests {
    static func tinyConfig() -> Hypernetwork.Config {
        var c = Hypernetwork.Config(descriptionDim: 6, layers: 3, rank: 2, moduleTypes: [
            .init(name: "layer.*.q", inFeatures: 5, outFeatures: 4), .init(name: "layer.*.up", inFeatures: 4, outFeatures: 7),
        ])
        c.layerEmbeddingDim = 3
        c.moduleEmbeddingDim = 2
        c.hidden = 8
        c.blocks = 2
        return c
    }

    @Test("the hand-written backward matches central finite differences of a weighted sum of the outputs (every parameter group)")
    func finiteDifferences() {
        let net = Hypernetwork(config: Self.tinyConfig(), seed: 7)
        // Larger heads and second linears than the initialisation, so their gradients are not tiny.
        for i in 0..<net.parameterCount { net.params.pointer[i] *= 3 }
        var rng = SplitMix64(seed: 3)
        func uniform() -> Float { Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 }
        let descriptions = (0..<12).map { _ in uniform() }  // two descriptions of 6
        let rows = [(0, 0, 0), (0, 1, 1), (1, 2, 0), (1, 0, 1), (0, 2, 1)].map { (description: $0.0, layer: $0.1, module: $0.2) }
        let act = net.forward(descriptions: descriptions, rows: rows)
        let weights = act.outputs.map { $0.map { _ in uniform() } }
        func loss() -> Double {
            let a = net.forward(descriptions: descriptions, rows: rows)
            return zip(a.outputs, weights).reduce(0.0) { s, pair in s + zip(pair.0, pair.1).reduce(0.0) { $0 + Double($1.0 * $1.1) } }
        }
        net.zeroGrads()
        net.backward(act, dOutputs: weights)
        let worst = parameterFiniteDifferenceError(net.params.pointer, analytic: net.grads.array,
                                                   indices: Array(stride(from: 0, to: net.parameterCount, by: 7)), loss: loss)
        #expect(worst < 2e-2, "largest relative error \(worst)")
    }

    @Test("contrastive: the hypernetwork's gradient through the generated adapter and the model matches central finite differences of InfoNCE")
    func contrastiveFiniteDifferences() throws {
        let model = Paths.fixtures.appendingPathComponent("tiny-bert-zh").path
        let tmp = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let crops = ["rice", "wheat", "tea", "maize", "barley", "millet"]
        let lines = crops.enumerated().map { i, c in
            "{\"anchor\": \"How do I grow \(c)?\", \"positive\": \"Sow \(c) in spring, water weekly.\", \"negative_1\": \"\(crops[(i + 1) % 6]) is harvested in autumn.\"}"
        }
        var o = TrainingOptions()
        o.model = model
        o.dataset = tmp.appendingPathComponent("rows.jsonl").path
        try lines.joined(separator: "\n").write(toFile: o.dataset, atomically: true, encoding: .utf8)
        o.loraR = 2; o.loraAlpha = 4; o.perDeviceTrainBatchSize = 4; o.numNegatives = 1; o.temperature = 0.05; o.maxLength = 16
        o.queryPrompt = ""; o.documentPrompt = ""
        let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: model)))
        let backbone = try #require(embedder.backbone as? Backbone & TrainableBackbone)
        let adapter = try LoRAAdapter(config: LoRAConfig(r: 2, alpha: 4, targetModules: ["query", "value", "dense"]), linears: backbone.linearLayers)
        let layout = try ModuleLayout(adapter: adapter)
        var config = Hypernetwork.Config(descriptionDim: 6, layers: layout.layers, rank: 2, moduleTypes: layout.types)
        config.layerEmbeddingDim = 3; config.moduleEmbeddingDim = 2; config.hidden = 8; config.blocks = 1
        let net = Hypernetwork(config: config, seed: 5)
        for i in 0..<net.parameterCount { net.params.pointer[i] *= 3 }
        let manifest = TextToLoRA.Manifest(config: config, baseModel: model, descriptionModel: model, descriptionPrompt: "",
                                           modules: layout.entries.map(\.module), moduleLayers: layout.entries.map(\.layer),
                                           moduleTypes: layout.entries.map(\.type), scale: adapter.scale, objective: "contrastive",
                                           trainingDomains: ["d"], steps: 1)
        let t2l = TextToLoRA(manifest: manifest, network: net, statistics: layout.entries.flatMap { _ in [0.01, 0.2, -0.01, 0.2] },
                             descriptionMean: Array(repeating: 0, count: 6), descriptionStd: Array(repeating: 1, count: 6))
        let rows = try TripletReader.read(o.dataset, skipBadRows: false).triplets
        let plan = try DataPlan(rows: rows, skipped: [], source: "pairs", options: o, ranks: 1, queryPrefix: "", documentPrefix: "")
        let state = TrainerState(adapter: adapter, optimizer: AdamW(count: 0), logTau: logf(0.05))
        let pass = EmbeddingPass(model: backbone, adapter: adapter, pooling: embedder.directory.pooling, backboneDropout: false)
        let loss = InfoNCELoss(plan: plan, pass: pass, state: state, communicator: SingleProcessCommunicator(), tokenizer: embedder.tokenizer)
        var rng = SplitMix64(seed: 11)
        let descriptions = (0..<12).map { _ in Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 }
        let trainer = try ContrastiveTrainer(t2l: t2l, adapter: adapter, domains: [.init(name: "d", descriptions: descriptions, loss: loss)],
                                             communicator: SingleProcessCommunicator())
        net.zeroGrads()
        _ = try trainer.accumulate(domain: 0, description: 1, micro: 0, weight: 1)
        let analytic = net.grads.array
        func value() throws -> Double { try trainer.accumulate(domain: 0, description: 1, micro: 0, weight: 0) }
        let indices = Array(stride(from: 0, to: net.parameterCount, by: max(1, net.parameterCount / 80)))
        let worst = try parameterFiniteDifferenceError(net.params.pointer, analytic: analytic, indices: indices, loss: value)
        let checked = indices.count
        #expect(checked >= 80)
        #expect(worst < 2e-2, "largest relative error \(worst) over \(checked) parameters")
    }

    @Test("outputs and every parameter's gradient match PyTorch (tools/reference/make_t2l_fixture.py) within 1e-4 relative")
    func pytorchParity() throws {
        let fixture = try JSONValue.load(Paths.fixtures.appendingPathComponent("t2l/hypernetwork.json"))
        let net = Hypernetwork(config: Self.tinyConfig())
        #expect(net.parameterCount == fixture["parameter_count"]!.int!)
        for i in 0..<net.parameterCount { net.params.pointer[i] = Float(0.3 * sin(0.37 * Double(i) + 0.1)) }
        let descriptions = fixture["descriptions"]!.array!.map { Float($0.double!) }
        let rows = fixture["rows"]!.array!.map { $0.array!.map(\.int!) }.map { r in (description: r[0], layer: r[1], module: r[2]) }
        let act = net.forward(descriptions: descriptions, rows: rows)
        func close(_ a: Float, _ b: Double) -> Bool { abs(Double(a) - b) <= 1e-4 * max(abs(b), 1e-2) }
        let expectedOutputs = fixture["outputs"]!.array!.map { $0.array!.map(\.double!) }
        for (m, (got, want)) in zip(act.outputs, expectedOutputs).enumerated() {
            #expect(got.count == want.count)
            for (a, b) in zip(got, want) { #expect(close(a, b), "type \(m) output \(a) vs \(b)") }
        }
        let weights = act.outputs.enumerated().map { m, y in (0..<y.count).map { Float(sin(1.3 * Double($0) + Double(m))) } }
        net.zeroGrads()
        net.backward(act, dOutputs: weights)
        let grads = fixture["grads"]!.array!.map(\.double!)
        var bad = 0
        for (i, want) in grads.enumerated() where !close(net.grads.pointer[i], want) { bad += 1 }
        #expect(bad == 0, "\(bad) of \(grads.count) gradients differ from PyTorch by more than 1e-4 relative")
    }

    @Test("t2l train on 1 and 2 MPI ranks gives the same hypernetwork after 3 steps; generate writes an adapter embed takes; bad input is refused")
    func trainGenerate() throws {
        let tmp = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let model = Paths.fixtures.appendingPathComponent("tiny-bert-zh").path
        let lib = try LibraryTests.library(in: tmp), out = tmp.appendingPathComponent("out")
        let trained = try runCLI(["library", "train", "--library", lib.path, "--output", out.path, "--model", model, "--max_steps", "2",
                                  "--per_device_train_batch_size", "2", "--lora_r", "4", "--quiet"])
        #expect(trained.status == 0, "\(trained.stderr)")
        let one = tmp.appendingPathComponent("h1"), two = tmp.appendingPathComponent("h2")
        let common = ["--library", lib.path, "--adapters", out.path, "--steps", "3", "--batch_size", "4", "--hidden_size", "16"]
        let r1 = try runCLI(["t2l", "train", "--output", one.path] + common)
        #expect(r1.status == 0, "\(r1.stderr)")
        let r2 = try runMPI(2, ["t2l", "train", "--output", two.path] + common)
        #expect(r2.status == 0, "\(r2.stderr)")
        let a = try TextToLoRA.load(one).network, b = try TextToLoRA.load(two).network
        var largest: Float = 0
        for i in 0..<a.parameterCount { largest = max(largest, abs(a.params.pointer[i] - b.params.pointer[i])) }
        #expect(largest <= 1e-5, "1 vs 2 ranks: largest parameter difference \(largest)")

        let adapter = tmp.appendingPathComponent("generated")
        let g = try runCLI(["t2l", "generate", "--hyper", one.path, "--description", "Questions about growing rice.", "--output", adapter.path])
        #expect(g.status == 0, "\(g.stderr)")
        #expect(FileManager.default.fileExists(atPath: adapter.appendingPathComponent("README.md").path))
        let texts = tmp.appendingPathComponent("t.txt")
        try "How do I water rice?\n".write(to: texts, atomically: true, encoding: .utf8)
        let e = try runCLI(["embed", "--model", model, "--adapter", adapter.path, "--input", texts.path, "--output", tmp.appendingPathComponent("e.npy").path])
        #expect(e.status == 0, "\(e.stderr)")

        let empty = try runCLI(["t2l", "generate", "--hyper", one.path, "--description", " ", "--output", adapter.path])
        #expect(empty.status != 0 && empty.stderr.contains("--description is empty"))
        let notHyper = try runCLI(["t2l", "generate", "--hyper", tmp.path, "--description", "x", "--output", adapter.path])
        #expect(notHyper.status != 0 && notHyper.stderr.contains("hypernetwork.json"), "\(notHyper.stderr)")
        let unknown = try runCLI(["t2l", "train", "--output", one.path, "--objective", "sft"] + common)
        #expect(unknown.status != 0 && unknown.stderr.contains("expected reconstruction or contrastive"), "\(unknown.stderr)")

        // Contrastive, started from the reconstruction-trained network: 1 and 2 ranks agree.
        let config = tmp.appendingPathComponent("c.toml")
        try "global_batch_size = 2\nnum_negatives = 1\nmax_length = 32\ntemperature = 0.05\n".write(to: config, atomically: true, encoding: .utf8)
        let c1 = tmp.appendingPathComponent("c1"), c2 = tmp.appendingPathComponent("c2")
        let contrastive = ["--library", lib.path, "--adapters", out.path, "--objective", "contrastive", "--config", config.path,
                           "--init_from", one.path, "--steps", "2", "--batch_size", "2", "--learning_rate", "1e-2"]
        let k1 = try runCLI(["t2l", "train", "--output", c1.path] + contrastive)
        #expect(k1.status == 0 && k1.stdout.contains("step 2/2  InfoNCE"), "\(k1.stdout)\(k1.stderr)")
        let k2 = try runMPI(2, ["t2l", "train", "--output", c2.path] + contrastive)
        #expect(k2.status == 0, "\(k2.stderr)")
        let x = try TextToLoRA.load(c1), y = try TextToLoRA.load(c2)
        var moved: Float = 0, apart: Float = 0
        for i in 0..<x.network.parameterCount {
            moved = max(moved, abs(x.network.params.pointer[i] - a.params.pointer[i]))
            apart = max(apart, abs(x.network.params.pointer[i] - y.network.params.pointer[i]))
        }
        #expect(moved > 1e-3, "contrastive training left the network where it was")
        #expect(apart <= 1e-5, "contrastive, 1 vs 2 ranks: largest parameter difference \(apart)")
        #expect(x.manifest.objective == "reconstruction+contrastive")
    }
}
