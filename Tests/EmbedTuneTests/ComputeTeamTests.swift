import EmbedTuneKernels
import EmbedTuneModels
import Foundation
import Testing

@Suite("Vector math and the compute team", .serialized)
struct ComputeTeamTests {
    /// Evaluates an eight-lane function on every value of `xs`.
    func lanes(_ xs: [Float], _ f: (Float8) -> Float8) -> [Float] {
        stride(from: 0, to: xs.count, by: 8).flatMap { i -> [Float] in
            var v = Float8()
            for l in 0..<min(8, xs.count - i) { v[l] = xs[i + l] }
            let r = f(v)
            return (0..<min(8, xs.count - i)).map { r[$0] }
        }
    }

    @Test("vexp, verf, vtanh and vsigmoid are within a few ulp of the Double functions")
    func vectorMath() {
        let xs = (0...40_000).map { Float(-20 + Double($0) / 1000) }
        let exps = lanes(xs, vexp), erfs = lanes(xs, verf), tanhs = lanes(xs, vtanh), sigmoids = lanes(xs, vsigmoid)
        var expRel = 0.0, erfAbs = 0.0, tanhAbs = 0.0, sigmoidAbs = 0.0
        for (i, x) in xs.enumerated() {
            let d = Double(x)
            expRel = max(expRel, abs(Double(exps[i]) - Foundation.exp(d)) / Foundation.exp(d))
            erfAbs = max(erfAbs, abs(Double(erfs[i]) - Foundation.erf(d)))
            tanhAbs = max(tanhAbs, abs(Double(tanhs[i]) - Foundation.tanh(d)))
            sigmoidAbs = max(sigmoidAbs, abs(Double(sigmoids[i]) - 1 / (1 + Foundation.exp(-d))))
        }
        #expect(expRel < 3e-7, "exp relative error \(expRel)")
        #expect(erfAbs < 5e-7, "erf absolute error \(erfAbs)")
        #expect(tanhAbs < 3e-7, "tanh absolute error \(tanhAbs)")
        #expect(sigmoidAbs < 3e-7, "sigmoid absolute error \(sigmoidAbs)")
        let edges = lanes([-200, -87.5, 0, 88, 200, -.infinity, 5, 6], vexp)
        #expect(edges.allSatisfy { $0.isFinite && $0 >= 0 })
    }

    @Test("parallel loops cover every index exactly once, for every team size and length")
    func coverage() {
        let team = ComputeTeam(size: 1)
        defer { team.resize(1) }
        for size in [1, 2, 3] {
            team.resize(size)
            for count in [0, 1, 7, 31, 32, 33, 1000] {
                var hits = [Int](repeating: 0, count: count)
                hits.withUnsafeMutableBufferPointer { h in
                    team.parallelFor(count, grain: 16) { range in for i in range { h[i] += 1 } }
                }
                #expect(hits.allSatisfy { $0 == 1 }, "size \(size), count \(count)")
                var items = [Int](repeating: 0, count: count)
                items.withUnsafeMutableBufferPointer { h in team.parallelItems(count) { i, _ in h[i] += 1 } }
                #expect(items.allSatisfy { $0 == 1 }, "size \(size), count \(count)")
                // A loop nested in another finds the team busy and runs inline: still every index once.
                var nested = [Int](repeating: 0, count: 2 * count)
                nested.withUnsafeMutableBufferPointer { h in
                    team.parallelFor(2, grain: 1) { outer in
                        for o in outer { team.parallelFor(count, grain: 16) { range in for i in range { h[o * count + i] += 1 } } }
                    }
                }
                #expect(nested.allSatisfy { $0 == 1 }, "nested, size \(size), count \(count)")
            }
        }
    }

    @Test("a product split over two threads equals one call bit for bit, on OpenBLAS and on the own kernels")
    func splitProductsAreExact() {
        #expect(GEMMKernel.splitInvariantRows != nil, "this OpenBLAS keeps no row split exact")
        var rng = SeededGenerator(seed: 11)
        for kernel in GEMMKernel.allCases where kernel.isAvailable {
            // Row splits (OpenBLAS and own), a few-row product split by columns (whose blocks alone
            // would have chosen the own kernel: the path is chosen for the whole product), and
            // an adapter's dA (columns) and dB (rows, computed transposed).
            for (m, n, k, transA, transB) in [(611, 80, 1100, false, true), (611, 80, 1100, false, false), (300, 130, 384, false, true),
                                              (300, 70, 900, true, false), (32, 100, 1024, false, false), (8, 300, 700, true, false),
                                              (300, 8, 700, true, false)] {
                let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
                let b = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &rng) }
                func product(threads: Int) -> [Float] {
                    let team = ComputeTeam(size: threads)
                    defer { team.resize(1) }
                    var c = [Float](repeating: 0, count: m * n)
                    ComputeTeam.withTeam(team) {
                        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: transA ? m : k, b: b, ldb: transB ? k : n,
                              c: &c, ldc: n, kernel: kernel)
                    }
                    return c
                }
                #expect(product(threads: 1) == product(threads: 2), "\(kernel) m \(m) n \(n) k \(k) transA \(transA) transB \(transB)")
            }
        }
    }

    @Test("forward and LoRA backward on two threads equal one thread bit for bit",
          arguments: ["tiny-qwen3", "tiny-bert-zh"])
    func twoThreadsMatchOne(_ name: String) throws {
        func run(threads: Int) throws -> (hidden: [Float], grads: [Float]) {
            let team = ComputeTeam(size: threads)
            defer { team.resize(1) }
            return try ComputeTeam.withTeam(team) { try pass() }
        }
        func pass() throws -> (hidden: [Float], grads: [Float]) {
            let model = try loadBackbone(ModelDirectory(Paths.fixtures.appendingPathComponent(name))) as! Backbone & TrainableBackbone
            let adapter = try LoRAAdapter(config: LoRAConfig(r: 4, alpha: 8, dropout: 0.1, targetModules: model.defaultTargetModules),
                                          linears: model.linearLayers)
            var rng = SeededGenerator(seed: 3)
            adapter.initialize(using: &rng)
            for i in 0..<adapter.params.count { adapter.params.pointer[i] += Float.random(in: -0.05...0.05, using: &rng) }
            // Long enough that GEMMs, attention and element-wise loops all split.
            let sequences: [[Int32]] = (0..<6).map { (s: Int) -> [Int32] in
                (0..<(40 + 13 * s)).map { (p: Int) -> Int32 in Int32((p * 7 + s * 3) % 90 + 5) }
            }
            let context = LoRAContext(adapter: adapter, training: true, sequenceSeeds: sequences.indices.map { UInt64($0) + 9 })
            let hidden = try model.forward(sequences, lora: context, keepActivations: true, pooling: .mean)
            let h = hidden.array
            var dHidden = [Float](repeating: 0, count: h.count)
            for i in dHidden.indices { dHidden[i] = Float(sin(Double(i) * 0.37)) }
            adapter.zeroGrads()
            try model.backward(dHidden: dHidden)
            return (h, adapter.grads.array)
        }
        // Every split falls where it changes no value (`GEMMKernel.rowGrain`; row-wise kernels;
        // attention by (sequence, head)), so the thread count cannot change a result.
        let one = try run(threads: 1), two = try run(threads: 2)
        #expect(one.hidden == two.hidden, "max |difference| \(maxAbsDifference(one.hidden, two.hidden))")
        #expect(one.grads == two.grads, "max |difference| \(maxAbsDifference(one.grads, two.grads))")
    }
}

@Suite("LoRA dropout masks")
struct DropoutMaskTests {
    @Test("dropout zeroes a fraction p of the values, scales the rest by 1/(1 − p), and differs by site and token")
    func statistics() {
        let n = 64, c = 1000, p: Float = 0.1
        let x = [Float](repeating: 1, count: n * c)
        let seeds: [UInt64] = (0..<n).map { mix64(UInt64($0) &+ 17) }
        var a = [Float](repeating: 0, count: n * c), b = a
        dropoutRows(out: &a, inp: x, n: n, c: c, p: p, tokenSeeds: seeds, site: 1)
        dropoutRows(out: &b, inp: x, n: n, c: c, p: p, tokenSeeds: seeds, site: 2)
        let dropped = Double(a.filter { $0 == 0 }.count) / Double(n * c)
        #expect(abs(dropped - 0.1) < 0.005, "dropped fraction \(dropped)")
        #expect(a.allSatisfy { $0 == 0 || abs($0 - 1 / (1 - p)) < 1e-6 })
        let sameSite = zip(a, b).filter { ($0 == 0) && ($1 == 0) }.count
        #expect(Double(sameSite) / Double(n * c) < 0.02, "masks of two sites overlap like independent draws (~p²)")
        #expect(Array(a[0..<c]) != Array(a[c..<(2 * c)]))
        var again = [Float](repeating: 0, count: n * c)
        dropoutRows(out: &again, inp: x, n: n, c: c, p: p, tokenSeeds: seeds, site: 1)
        #expect(again == a)
    }

    @Test("the AVX2 kernel draws the Swift kernel's masks bit for bit, tails included",
          .enabled(if: GEMMKernel.current == .avx2))
    func avx2MatchesPortable() {
        for (count, p) in [(1, Float(0.1)), (7, 0.5), (128, 0.1), (383, 0.25), (1536, 0.1), (64, 0.999)] {
            let x = (0..<count).map { Float($0) * 0.37 - 9 }
            for base in [UInt64(0), 0xFFFF_FFFF_0000_0001, mix64(99)] {
                var fast = [Float](repeating: 7, count: count + 1), portable = fast
                dropoutRow(out: &fast, inp: x, count: count, p: p, base: base)
                portableDropoutRow(out: &portable, inp: x, count: count, p: p, base: base)
                #expect(fast.map(\.bitPattern) == portable.map(\.bitPattern), "count \(count), p \(p), base \(base)")
                #expect(fast[count] == 7, "nothing written past the row")
            }
        }
    }

    @Test("a low-rank input gradient through dropout equals du·A masked and added, bit for bit on AVX2",
          arguments: [(5, 1, 1), (37, 8, 384), (19, 8, 1536), (11, 4, 13), (3, 16, 100)])
    func lowRankThroughDropout(n: Int, rank: Int, c: Int) {
        let p: Float = 0.25, site: UInt64 = 9
        let du = (0..<(n * rank)).map { Float(($0 * 37) % 23) * 0.07 - 0.8 }
        let a = (0..<(rank * c)).map { Float(($0 * 53) % 29) * 0.05 - 0.7 }
        let seeds: [UInt64] = (0..<n).map { mix64(UInt64($0) &+ 5) }
        let start = (0..<(n * c)).map { Float($0 % 17) * 0.1 }
        var fused = start, scratch = [Float](repeating: 0, count: n * c)
        addLowRankThroughDropout(dx: &fused, du: du, rank: rank, a: a, n: n, c: c, p: p, tokenSeeds: seeds, site: site,
                                 scratch: &scratch)
        // The three passes: du·A with the kernel in use, the same masks, the add.
        var product = [Float](repeating: 0, count: n * c), expected = start
        sgemm(m: n, n: c, k: rank, a: du, lda: rank, b: a, ldb: c, c: &product, ldc: c)
        dropoutRows(out: &product, inp: product, n: n, c: c, p: p, tokenSeeds: seeds, site: site)
        for i in expected.indices { expected[i] += product[i] }
        if GEMMKernel.current == .avx2 {
            #expect(fused.map(\.bitPattern) == expected.map(\.bitPattern))
        }
        // And against double precision, with the masks read off `dropoutRows` applied to ones.
        var mask = [Float](repeating: 1, count: n * c)
        dropoutRows(out: &mask, inp: mask, n: n, c: c, p: p, tokenSeeds: seeds, site: site)
        var worst = 0.0
        for t in 0..<n {
            for j in 0..<c {
                var sum = 0.0
                for r in 0..<rank { sum += Double(du[t * rank + r]) * Double(a[r * c + j]) }
                let want = Double(start[t * c + j]) + sum * Double(mask[t * c + j])
                worst = max(worst, abs(Double(fused[t * c + j]) - want))
            }
        }
        #expect(worst < 1e-5, "max |error| \(worst)")
    }
}
