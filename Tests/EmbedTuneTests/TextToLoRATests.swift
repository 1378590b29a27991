import EmbedTuneFormats
import EmbedTuneGeneration
import EmbedTuneKernels
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
        var worst = 0.0
        for i in stride(from: 0, to: net.parameterCount, by: 7) {
            let saved = net.params.pointer[i], h: Float = 1e-2
            net.params.pointer[i] = saved + h
            let up = loss()
            net.params.pointer[i] = saved - h
            let down = loss()
            net.params.pointer[i] = saved
            let numeric = (up - down) / (2 * Double(h)), analytic = Double(net.grads.pointer[i])
            let error = abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-2)
            worst = max(worst, error)
        }
        #expect(worst < 2e-2, "largest relative error \(worst)")
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
        let contrastive = try runCLI(["t2l", "train", "--output", one.path, "--objective", "contrastive"] + common)
        #expect(contrastive.status != 0 && contrastive.stderr.contains("only reconstruction"))
    }
}
