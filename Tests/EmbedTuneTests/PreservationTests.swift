import EmbedTuneModels
import EmbedTuneTraining
import Foundation
import Testing

@Suite("Preserving other domains' embeddings while training", .serialized)
struct PreservationTests {
    /// A trainer on tiny-qwen3 with a few in-domain triples and other-domain pairs to preserve.
    func trainer(weight: Float, steps: Int = 1) throws -> Trainer {
        let tmp = try Paths.temporaryDirectory()
        let q = (0..<8).map { "question \($0) about rice paddies and fish ponds number \($0 * 7)" }
        let p = (0..<8).map { "answer \($0): irrigate, fertilise and watch for pests in field \($0)" }
        try writeTriples(q, p, (0..<8).map { ["unrelated note \($0)"] }, to: tmp.appendingPathComponent("d.jsonl"))
        try writeTriples((0..<6).map { "how is concrete cured in winter, case \($0)?" },
                         (0..<6).map { "cover it and keep it above five degrees for \($0 + 3) days" },
                         (0..<6).map { _ in [] }, to: tmp.appendingPathComponent("other.jsonl"))
        var o = TrainingOptions()
        o.model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path
        o.dataset = tmp.appendingPathComponent("d.jsonl").path
        o.outputDir = tmp.appendingPathComponent("out").path
        o.perDeviceTrainBatchSize = 4; o.maxSteps = steps; o.learningRate = 5e-3; o.warmupRatio = 0
        o.preserveData = tmp.appendingPathComponent("other.jsonl").path
        o.preserveWeight = weight; o.preserveBatch = 5
        return try Trainer(options: o)
    }

    @Test("the preservation gradient matches finite differences of its loss")
    func gradient() throws {
        let t = try trainer(weight: 3)
        var rng = SeededGenerator(seed: 5)
        for i in 0..<t.adapter.params.count { t.adapter.params.pointer[i] = Float.random(in: -0.1...0.1, using: &rng) }
        t.adapter.zeroGrads()
        let loss = try t.accumulatePreservation(step: 0)
        #expect(loss > 0)
        let grad = t.adapter.grads.array, theta = t.adapter.params.array
        let v = (0..<theta.count).map { _ in Float.random(in: -1...1, using: &rng) }
        let h: Float = 1e-3
        func lossAt(_ sign: Float) throws -> Double {
            for i in theta.indices { t.adapter.params.pointer[i] = theta[i] + sign * h * v[i] }
            return try t.accumulatePreservation(step: 0)
        }
        let numeric = (try lossAt(1) - lossAt(-1)) / (2 * Double(h))
        let analytic = zip(grad, v).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(numeric - analytic) / max(abs(numeric), 1e-6) < 2e-2, "numeric \(numeric) vs analytic \(analytic)")
    }

    @Test("weight 0 trains the same adapter as no preservation; a large weight keeps the texts near the base")
    func effect() throws {
        func drift(_ t: Trainer) throws -> Double {
            _ = try t.run()
            // Zero gradients, then the term at weight w reports w · mean drift: use it as the probe.
            t.adapter.zeroGrads()
            return try t.accumulatePreservation(step: 0)
        }
        let free = try trainer(weight: 0, steps: 6)
        _ = try free.run()
        var o = free.options
        o.preserveData = nil
        let plain = try Trainer(options: o)
        _ = try plain.run()
        #expect(free.adapter.params.array == plain.adapter.params.array)

        let loose = try trainer(weight: 1e-6, steps: 6), tight = try trainer(weight: 50, steps: 6)
        let looseDrift = try drift(loose) / 1e-6, tightDrift = try drift(tight) / 50
        #expect(tightDrift < 0.5 * looseDrift, "mean drift \(tightDrift) with weight 50 vs \(looseDrift) without")
    }

    @Test("a malformed preservation file is refused with its path and line")
    func badFile() throws {
        let tmp = try Paths.temporaryDirectory()
        let bad = tmp.appendingPathComponent("bad.jsonl")
        try "{\"query\": \"q\", \"response\": \"a\"}\nnot json\n".write(to: bad, atomically: true, encoding: .utf8)
        var o = try trainer(weight: 1).options
        o.preserveData = bad.path
        #expect {
            _ = try Trainer(options: o)
        } throws: { error in
            let text = "\(error)"
            return text.contains("bad.jsonl") && text.contains(":2")
        }
        o.preserveData = tmp.appendingPathComponent("d.jsonl").path
        o.preserveWeight = -1
        #expect(throws: (any Error).self) { _ = try Trainer(options: o) }
    }
}
