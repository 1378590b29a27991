import EmbedTuneFormats
import EmbedTuneGeneration
import EmbedTuneKernels
import Foundation
import Testing

@Suite("Drag-and-Drop's hyper-convolutional decoder")
struct HyperConvTests {
    @Test("output and every parameter's gradient match PyTorch (tools/reference/make_dnd_fixture.py) within 1e-4 relative")
    func pytorchParity() throws {
        let fixture = try JSONValue.load(Paths.fixtures.appendingPathComponent("dnd/hyperconv.json"))
        let features = fixture["features"]!.array!.map { $0.array!.map(\.int!) }
        let decoder = try HyperConvDecoder(config: .init(features: features, kernel: fixture["kernel"]!.int!))
        #expect(decoder.parameterCount == fixture["parameter_count"]!.int!)
        for i in 0..<decoder.parameterCount { decoder.params.pointer[i] = Float(0.3 * sin(0.37 * Double(i) + 0.1)) }
        let input = fixture["input"]!.array!.map { Float($0.double!) }
        let act = decoder.forward(input, samples: fixture["samples"]!.int!)
        func close(_ a: Float, _ b: Double) -> Bool { abs(Double(a) - b) <= 1e-4 * max(abs(b), 1e-2) }
        let expected = fixture["output"]!.array!.map(\.double!)
        #expect(act.output.count == expected.count)
        var badOutputs = 0
        for (a, b) in zip(act.output, expected) where !close(a, b) { badOutputs += 1 }
        #expect(badOutputs == 0, "\(badOutputs) of \(expected.count) outputs differ from PyTorch")
        let weights = (0..<act.output.count).map { Float(sin(1.3 * Double($0))) }
        decoder.zeroGrads()
        decoder.backward(act, dOutput: weights)
        let grads = fixture["grads"]!.array!.map(\.double!)
        var bad = 0
        for (i, want) in grads.enumerated() where !close(decoder.grads.pointer[i], want) { bad += 1 }
        #expect(bad == 0, "\(bad) of \(grads.count) gradients differ from PyTorch by more than 1e-4 relative")
    }

    @Test("the hand-written backward matches central finite differences (a residual layer, then one changing every axis; kernel 5)")
    func finiteDifferences() throws {
        let decoder = try HyperConvDecoder(config: .init(features: [[2, 3, 4], [2, 3, 4], [3, 2, 5]], kernel: 5), seed: 3)
        var rng = SplitMix64(seed: 5)
        func uniform() -> Float { Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 }
        // Norm affine and biases away from their 1/0 initialisation, so their gradients are exercised.
        for i in 0..<decoder.parameterCount { decoder.params.pointer[i] += 0.3 * uniform() }
        let input = (0..<(2 * 24)).map { _ in uniform() }
        let act = decoder.forward(input, samples: 2)
        let weights = act.output.map { _ in uniform() }
        func loss() -> Double {
            zip(decoder.forward(input, samples: 2).output, weights).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        }
        decoder.zeroGrads()
        decoder.backward(act, dOutput: weights)
        let worst = parameterFiniteDifferenceError(decoder.params.pointer, analytic: decoder.grads.array,
                                                   indices: Array(stride(from: 0, to: decoder.parameterCount, by: 3)), loss: loss)
        #expect(worst < 2e-2, "largest relative error \(worst)")
    }

    @Test("a configuration with fewer than two shapes, a non-3-D shape or an even kernel is refused")
    func badConfigurations() {
        #expect(throws: FormatError.self) { try HyperConvDecoder(config: .init(features: [[1, 2, 3]], kernel: 3)) }
        #expect(throws: FormatError.self) { try HyperConvDecoder(config: .init(features: [[1, 2], [1, 2, 3]], kernel: 3)) }
        #expect(throws: FormatError.self) { try HyperConvDecoder(config: .init(features: [[1, 2, 3], [1, 2, 3]], kernel: 4)) }
    }
}

@Suite("Drag-and-Drop through the CLI", .serialized)
struct DragAndDropCLITests {
    @Test("dnd train on the library's checkpoints and adapters gives the same generator on 1 and 2 MPI ranks; generate writes an adapter embed takes; bad input is refused")
    func trainGenerate() throws {
        let tmp = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let model = Paths.fixtures.appendingPathComponent("tiny-bert-zh").path
        let lib = try LibraryTests.library(in: tmp), out = tmp.appendingPathComponent("out")
        let trained = try runCLI(["library", "train", "--library", lib.path, "--output", out.path, "--model", model, "--max_steps", "3",
                                  "--per_device_train_batch_size", "2", "--lora_r", "4", "--save_steps", "1", "--quiet"])
        #expect(trained.status == 0, "\(trained.stderr)")
        let one = tmp.appendingPathComponent("g1"), two = tmp.appendingPathComponent("g2")
        let common = ["--library", lib.path, "--adapters", out.path, "--queries", "4", "--steps", "3", "--batch_size", "4",
                      "--hidden_shapes", "4,8,8", "--chunk_shape", "16,32"]
        let r1 = try runCLI(["dnd", "train", "--output", one.path] + common)
        #expect(r1.status == 0, "\(r1.stderr)")
        #expect(r1.stdout.contains("2 domains, 6 adapters (checkpoints included)"), "\(r1.stdout)")
        let r2 = try runMPI(2, ["dnd", "train", "--output", two.path] + common)
        #expect(r2.status == 0, "\(r2.stderr)")
        let a = try DragAndDrop.load(one).decoder, b = try DragAndDrop.load(two).decoder
        var largest: Float = 0
        for i in 0..<a.parameterCount { largest = max(largest, abs(a.params.pointer[i] - b.params.pointer[i])) }
        #expect(largest <= 1e-5, "1 vs 2 ranks: largest parameter difference \(largest)")

        let queries = tmp.appendingPathComponent("q.txt"), adapter = tmp.appendingPathComponent("generated")
        try "How do I water rice?\nWhen is wheat harvested?\n".write(to: queries, atomically: true, encoding: .utf8)
        let g = try runCLI(["dnd", "generate", "--generator", one.path, "--queries", queries.path, "--output", adapter.path])
        #expect(g.status == 0, "\(g.stderr)")
        #expect(FileManager.default.fileExists(atPath: adapter.appendingPathComponent("README.md").path))
        let e = try runCLI(["embed", "--model", model, "--adapter", adapter.path, "--input", queries.path,
                            "--output", tmp.appendingPathComponent("e.npy").path])
        #expect(e.status == 0, "\(e.stderr)")

        let empty = tmp.appendingPathComponent("empty.txt")
        try "\n  \n".write(to: empty, atomically: true, encoding: .utf8)
        let none = try runCLI(["dnd", "generate", "--generator", one.path, "--queries", empty.path, "--output", adapter.path])
        #expect(none.status != 0 && none.stderr.contains("no queries"), "\(none.stderr)")
        let notGenerator = try runCLI(["dnd", "generate", "--generator", tmp.path, "--queries", queries.path, "--output", adapter.path])
        #expect(notGenerator.status != 0 && notGenerator.stderr.contains("generator.json"), "\(notGenerator.stderr)")
        let badShape = try runCLI(["dnd", "train", "--output", one.path, "--library", lib.path, "--adapters", out.path, "--chunk_shape", "16"])
        #expect(badShape.status != 0 && badShape.stderr.contains("--chunk_shape"), "\(badShape.stderr)")
    }
}
