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
        var worst = 0.0
        for i in stride(from: 0, to: decoder.parameterCount, by: 3) {
            let saved = decoder.params.pointer[i], h: Float = 1e-2
            decoder.params.pointer[i] = saved + h
            let up = loss()
            decoder.params.pointer[i] = saved - h
            let down = loss()
            decoder.params.pointer[i] = saved
            let numeric = (up - down) / (2 * Double(h)), analytic = Double(decoder.grads.pointer[i])
            worst = max(worst, abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-2))
        }
        #expect(worst < 2e-2, "largest relative error \(worst)")
    }

    @Test("a configuration with fewer than two shapes, a non-3-D shape or an even kernel is refused")
    func badConfigurations() {
        #expect(throws: FormatError.self) { try HyperConvDecoder(config: .init(features: [[1, 2, 3]], kernel: 3)) }
        #expect(throws: FormatError.self) { try HyperConvDecoder(config: .init(features: [[1, 2], [1, 2, 3]], kernel: 3)) }
        #expect(throws: FormatError.self) { try HyperConvDecoder(config: .init(features: [[1, 2, 3], [1, 2, 3]], kernel: 4)) }
    }
}
