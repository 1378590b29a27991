import EmbedTuneKernels
import EmbedTuneModels
import Foundation
import Testing

/// q/k/v-style groups of linears over one input: one GEMM when the weights are adjacent, one per
/// member otherwise; both must give the same outputs and gradients, LoRA paths included.
@Suite("Linear groups (fused projections)")
struct LinearGroupTests {
    @Test("adjacent weights (one GEMM) and scattered weights give the same outputs and gradients")
    func fusedEqualsSeparate() throws {
        let n = 37, inF = 24, outs = [16, 8, 8]
        var rng = SeededGenerator(seed: 21)
        func random(_ count: Int) -> [Float] { (0..<count).map { _ in Float.random(in: -1...1, using: &rng) } }
        let weights = outs.map { random($0 * inF) }, biases = outs.map { random($0) }
        let x = random(n * inF), dOut = random(n * outs.reduce(0, +))
        // Adjacent: one buffer; scattered: a buffer per member.
        let packed = FloatBuffer(weights.flatMap { $0 }), packedBias = FloatBuffer(biases.flatMap { $0 })
        let apart = weights.map { FloatBuffer($0) }, apartBias = biases.map { FloatBuffer($0) }
        let offsets = outs.indices.map { outs[..<$0].reduce(0, +) }
        let fused = LinearGroup(weights: offsets.map { UnsafePointer(packed.pointer + $0 * inF) },
                                biases: offsets.map { UnsafePointer(packedBias.pointer + $0) }, outFeatures: outs, inFeatures: inF)
        let separate = LinearGroup(weights: apart.map { UnsafePointer($0.pointer) }, biases: apartBias.map { UnsafePointer($0.pointer) },
                                   outFeatures: outs, inFeatures: inF)
        #expect(fused.contiguous && !separate.contiguous)

        let adapter = try LoRAAdapter(config: LoRAConfig(r: 4, alpha: 8, targetModules: ["a", "c"]),
                                      linears: zip(["a", "b", "c"], outs).map { ($0, inF, $1) })
        for i in 0..<adapter.params.count { adapter.params.pointer[i] = Float.random(in: -0.2...0.2, using: &rng) }
        let slots = ["a", "b", "c"].map { adapter.slot($0) }
        func run(_ group: LinearGroup) -> (out: [Float], dx: [Float], grads: [Float]) {
            let total = group.total
            let out = FloatBuffer(count: n * total), dx = FloatBuffer(count: n * inF)
            let u = outs.map { _ in FloatBuffer(count: n * 4) }, du = FloatBuffer(count: n * 4), dropped = FloatBuffer(count: n * inF)
            let context = LoRAContext(adapter: adapter, training: true)
            adapter.zeroGrads()
            do {
                x.withUnsafeBufferPointer { xp in
                    adaptedGroupForward(out: out.pointer, inp: xp.baseAddress!, group: group, n: n, slots: slots, context: context,
                                        u: u.map(\.pointer), dropped: dropped.pointer)
                    dOut.withUnsafeBufferPointer { d in
                        adaptedGroupBackward(dinp: dx.pointer, dout: d.baseAddress!, inp: xp.baseAddress!, group: group, n: n,
                                             accumulate: false, slots: slots, context: context, u: u.map { UnsafePointer($0.pointer) },
                                             du: du.pointer, dropped: dropped.pointer)
                    }
                }
            }
            return (out.array, dx.array, adapter.grads.array)
        }
        // The groups hold raw pointers: keep their buffers alive through both runs.
        let (a, b) = withExtendedLifetime((packed, packedBias, apart, apartBias)) { (run(fused), run(separate)) }
        #expect(maxAbsDifference(a.out, b.out) <= 1e-5)
        #expect(maxAbsDifference(a.dx, b.dx) <= 1e-5)
        #expect(a.grads == b.grads, "the LoRA paths do not depend on how the base product is computed")
        #expect(a.grads.contains { $0 != 0 })
    }

    @Test("row-wise SwiGLU over a [gate | up] buffer equals the flat kernels")
    func stridedSwiGLU() {
        let rows = 5, cols = 13
        var rng = SeededGenerator(seed: 3)
        let gu = (0..<(rows * 2 * cols)).map { _ in Float.random(in: -3...3, using: &rng) }
        let dOut = (0..<(rows * cols)).map { _ in Float.random(in: -1...1, using: &rng) }
        /// Columns lo..<hi of every row of a (rows, 2·cols) buffer.
        func half(_ v: [Float], _ second: Bool) -> [Float] {
            var out = [Float]()
            for r in 0..<rows {
                let start = r * 2 * cols + (second ? cols : 0)
                out.append(contentsOf: v[start..<(start + cols)])
            }
            return out
        }
        let gate = half(gu, false), up = half(gu, true)
        var flat = [Float](repeating: 0, count: rows * cols), strided = flat
        swigluForward(out: &flat, gate: gate, up: up, count: rows * cols)
        gu.withUnsafeBufferPointer { p in
            swigluForward(out: &strided, gate: p.baseAddress!, up: p.baseAddress! + cols, rows: rows, cols: cols, ld: 2 * cols)
        }
        #expect(flat == strided)
        var dg = flat, du = flat, dgu = gu
        swigluBackward(dgate: &dg, dup: &du, dout: dOut, gate: gate, up: up, count: rows * cols)
        gu.withUnsafeBufferPointer { p in
            dgu.withUnsafeMutableBufferPointer { d in
                swigluBackward(dgate: d.baseAddress!, dup: d.baseAddress! + cols, dout: dOut, gate: p.baseAddress!, up: p.baseAddress! + cols,
                               rows: rows, cols: cols, ld: 2 * cols)
            }
        }
        let dgStrided = half(dgu, false), duStrided = half(dgu, true)
        #expect(dg == dgStrided)
        #expect(du == duStrided)
    }
}
