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

    /// The formulas in Double for linears side by side over one input (a group, or one linear):
    /// out = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ; dx = dOut·W + Σ s·(dOut·B)·A (then ⊙ slope, + start);
    /// dB = s·dOutᵀ·u and dA = duᵀ·x with u = x·Aᵀ and du = s·dOut·B.
    struct Reference {
        var out: [Float], dx: [Float], grads: [Float]

        init(x: [Float], w: [Float], b: [Float], dOut: [Float], outs: [Int], slots: [LoRASlot?], adapter: LoRAAdapter,
             n: Int, inF: Int, slope: [Float]? = nil, dxStart: [Float]? = nil) {
            let total = outs.reduce(0, +), rank = adapter.config.r, s = Double(adapter.scale)
            var out = [Double](repeating: 0, count: n * total), dx = [Double](repeating: 0, count: n * inF)
            var grads = [Double](repeating: 0, count: adapter.params.count)
            for t in 0..<n {
                for j in 0..<total {
                    var acc = Double(b[j])
                    for k in 0..<inF { acc += Double(x[t * inF + k]) * Double(w[j * inF + k]) }
                    out[t * total + j] = acc
                    for k in 0..<inF { dx[t * inF + k] += Double(dOut[t * total + j]) * Double(w[j * inF + k]) }
                }
            }
            var o = 0
            for (mi, slot) in slots.enumerated() {
                defer { o += outs[mi] }
                guard let slot else { continue }
                let a = adapter.a(slot), bb = adapter.b(slot)
                for t in 0..<n {
                    let u = (0..<rank).map { r in (0..<inF).reduce(0.0) { $0 + Double(x[t * inF + $1]) * Double(a[r * inF + $1]) } }
                    let du = (0..<rank).map { r in
                        s * (0..<outs[mi]).reduce(0.0) { $0 + Double(dOut[t * total + o + $1]) * Double(bb[$1 * rank + r]) }
                    }
                    for j in 0..<outs[mi] {
                        for r in 0..<rank {
                            out[t * total + o + j] += s * u[r] * Double(bb[j * rank + r])
                            grads[slot.bOffset + j * rank + r] += s * Double(dOut[t * total + o + j]) * u[r]
                        }
                    }
                    for r in 0..<rank {
                        for k in 0..<inF {
                            dx[t * inF + k] += du[r] * Double(a[r * inF + k])
                            grads[slot.aOffset + r * inF + k] += du[r] * Double(x[t * inF + k])
                        }
                    }
                }
            }
            if let slope { for i in dx.indices { dx[i] *= Double(slope[i]) } }
            if let dxStart { for i in dx.indices { dx[i] += Double(dxStart[i]) } }
            self.out = out.map { Float($0) }
            self.dx = dx.map { Float($0) }
            self.grads = grads.map { Float($0) }
        }
    }

    /// Shallow products fold the adapter into the frozen weight's GEMM (the own kernel); deep and
    /// wide ones (past `ownMaxDepth`, ≥ 64 columns: OpenBLAS's on AVX2 too) write the adapter's
    /// term first and accumulate the frozen product onto it, forward and, past 512 outputs in
    /// all, in the input gradient. Either way, with every member adapted or only some, the group
    /// must compute the plain formulas, overwriting `out` and `dx` or adding to `dx`.
    @Test("a group's outputs, input gradient and adapter gradients match the formulas, shallow and deep, all or some members adapted",
          arguments: [(24, [16, 24], ["a", "b"]), (24, [16, 24], ["b"]), (520, [320, 256], ["a", "b"]), (520, [320, 256], ["b"])])
    func matchesFormulas(depth inF: Int, outs: [Int], targets: [String]) throws {
        let n = 29, rank = 4, total = outs.reduce(0, +)
        var rng = SeededGenerator(seed: UInt64(inF + targets.count))
        func random(_ count: Int) -> [Float] { (0..<count).map { _ in Float.random(in: -1...1, using: &rng) } }
        let weights = FloatBuffer(random(total * inF)), biases = FloatBuffer(random(total))
        let x = random(n * inF), dOut = random(n * total), dxStart = random(n * inF)
        let offsets = [0, outs[0]]
        let group = LinearGroup(weights: offsets.map { UnsafePointer(weights.pointer + $0 * inF) },
                                biases: offsets.map { UnsafePointer(biases.pointer + $0) }, outFeatures: outs, inFeatures: inF)
        #expect(group.contiguous)
        let adapter = try LoRAAdapter(config: LoRAConfig(r: rank, alpha: 8, targetModules: targets),
                                      linears: zip(["a", "b"], outs).map { ($0, inF, $1) })
        for i in 0..<adapter.params.count { adapter.params.pointer[i] = Float.random(in: -0.3...0.3, using: &rng) }
        let slots = ["a", "b"].map { adapter.slot($0) }

        for accumulate in [false, true] {
            let want = Reference(x: x, w: weights.array, b: biases.array, dOut: dOut, outs: outs, slots: slots, adapter: adapter,
                                 n: n, inF: inF, dxStart: accumulate ? dxStart : nil)
            // Garbage where the result must be written over, not added to.
            let got = FloatBuffer(random(n * total)), gotDx = FloatBuffer(accumulate ? dxStart : random(n * inF))
            let u = outs.map { _ in FloatBuffer(count: n * rank) }, du = FloatBuffer(count: n * rank)
            let dropped = FloatBuffer(count: n * inF), context = LoRAContext(adapter: adapter, training: true)
            adapter.zeroGrads()
            withExtendedLifetime((weights, biases)) {
                x.withUnsafeBufferPointer { xp in
                    adaptedGroupForward(out: got.pointer, inp: xp.baseAddress!, group: group, n: n, slots: slots, context: context,
                                        u: u.map(\.pointer), dropped: dropped.pointer)
                    dOut.withUnsafeBufferPointer { d in
                        adaptedGroupBackward(dinp: gotDx.pointer, dout: d.baseAddress!, inp: xp.baseAddress!, group: group, n: n,
                                             accumulate: accumulate, slots: slots, context: context,
                                             u: u.map { UnsafePointer($0.pointer) }, du: du.pointer, dropped: dropped.pointer)
                    }
                }
            }
            // Sums of up to 576 products of values ≤ 1: float rounding stays well below this.
            let tolerance = Float(max(inF, total)).squareRoot() * 1e-5
            #expect(maxAbsDifference(got.array, want.out) <= tolerance)
            #expect(maxAbsDifference(gotDx.array, want.dx) <= tolerance, "accumulate \(accumulate)")
            #expect(maxAbsDifference(adapter.grads.array, want.grads) <= tolerance)
        }
    }

    /// One adapted linear on the deep path, its input gradient written or added, and through an
    /// activation's slope (BERT's GELU) — the order the adapter's term and the frozen product are
    /// computed in must not show.
    @Test("a deep adapted linear matches the formulas: bias, dx written or added, and through a slope",
          arguments: [(false, false), (true, false), (false, true)])
    func deepLinearMatchesFormulas(accumulate: Bool, throughSlope: Bool) throws {
        let n = 29, inF = 520, outF = 576, rank = 4
        var rng = SeededGenerator(seed: 5)
        func random(_ count: Int) -> [Float] { (0..<count).map { _ in Float.random(in: -1...1, using: &rng) } }
        let w = random(outF * inF), b = random(outF), x = random(n * inF), dOut = random(n * outF)
        let slope = throughSlope ? random(n * inF) : nil, dxStart = random(n * inF)
        let adapter = try LoRAAdapter(config: LoRAConfig(r: rank, alpha: 8, targetModules: ["a"]), linears: [("a", inF, outF)])
        for i in 0..<adapter.params.count { adapter.params.pointer[i] = Float.random(in: -0.3...0.3, using: &rng) }
        let slot = adapter.slot("a")!, context = LoRAContext(adapter: adapter, training: true)
        let want = Reference(x: x, w: w, b: b, dOut: dOut, outs: [outF], slots: [slot], adapter: adapter, n: n, inF: inF,
                             slope: slope, dxStart: accumulate ? dxStart : nil)
        let out = FloatBuffer(random(n * outF)), dx = FloatBuffer(accumulate ? dxStart : random(n * inF))
        let u = FloatBuffer(count: n * rank), du = FloatBuffer(count: n * rank), dropped = FloatBuffer(count: n * inF)
        adapter.zeroGrads()
        x.withUnsafeBufferPointer { xp in
            adaptedLinearForward(out: out.pointer, inp: xp.baseAddress!, weight: w, bias: b, n: n, inFeatures: inF, outFeatures: outF,
                                 slot: slot, context: context, u: u.pointer, dropped: dropped.pointer)
            adaptedLinearBackward(dinp: dx.pointer, dout: dOut, inp: xp.baseAddress!, weight: w, n: n, inFeatures: inF,
                                  outFeatures: outF, accumulate: accumulate, slot: slot, context: context, u: u.pointer,
                                  du: du.pointer, dropped: dropped.pointer, slope: slope)
        }
        let tolerance = Float(outF).squareRoot() * 1e-5
        #expect(maxAbsDifference(out.array, want.out) <= tolerance)
        #expect(maxAbsDifference(dx.array, want.dx) <= tolerance)
        #expect(maxAbsDifference(adapter.grads.array, want.grads) <= tolerance)
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
