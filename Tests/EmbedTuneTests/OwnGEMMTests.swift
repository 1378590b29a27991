import EmbedTuneKernels
import Foundation
import Testing

/// The own kernels (AVX2/FMA and AVX-512) against OpenBLAS on every operand form `sgemm` routes to
/// them, and the fused low-rank products against the separate ones. A width the CPU lacks is skipped,
/// and the skip says so.
@Suite("Own GEMM kernels", .enabled(if: BLASRuntime.cpuInfo().flags.isSuperset(of: ["avx2", "fma"])))
struct OwnGEMMTests {
    static func random(_ count: Int, _ rng: inout SeededGenerator) -> [Float] {
        (0..<count).map { _ in Float.random(in: -1...1, using: &rng) }
    }

    /// Row counts around the 6- and 8-row strips, widths around the 16- and 32-column panels (8 and 16
    /// = LoRA ranks), depths around the 384-deep blocks and past the AVX2 kernel's 512.
    /// n ≤ 8 (AVX2) or ≤ 16 (AVX-512) goes to the narrow kernel (12- or 24-row strips and their tails).
    static let shapes = [(1, 8, 33), (5, 16, 1), (7, 19, 64), (9, 33, 100), (13, 40, 400), (37, 40, 800), (64, 8, 384), (130, 300, 130),
                         (20, 24, 3000), (29, 3, 700), (13, 1, 64), (50, 16, 200), (61, 12, 1024), (17, 70, 1100)]

    @Test("the AVX2 kernels' C = α·A·op(B) + β·C and C += α·Aᵀ·B equal OpenBLAS's, with strides and partial panels",
          .enabled(if: GEMMKernel.avx2.isAvailable, "this CPU has no AVX2 + FMA"))
    func avx2KernelsMatchOpenBLAS() { Self.kernelsMatchOpenBLAS(.avx2) }

    @Test("the AVX-512 kernels' C = α·A·op(B) + β·C and C += α·Aᵀ·B equal OpenBLAS's, with strides and partial panels",
          .enabled(if: GEMMKernel.avx512.isAvailable, "this CPU has no AVX-512 F/VL/DQ/BW: the AVX-512 kernels are not tested here"))
    func avx512KernelsMatchOpenBLAS() { Self.kernelsMatchOpenBLAS(.avx512) }

    static func kernelsMatchOpenBLAS(_ kernel: GEMMKernel) {
        var rng = SeededGenerator(seed: 11)
        for (m, n, k) in Self.shapes {
            let lda = k + 3, ldb = n + 5, ldbT = k + 2, ldc = n + 1
            let a = Self.random(m * lda, &rng), b = Self.random(k * ldb, &rng), bT = Self.random(n * ldbT, &rng)
            let c0 = Self.random(m * ldc, &rng)
            for (transB, alpha, beta) in [(false, Float(1), Float(0)), (true, 1, 0), (false, 0.5, 1), (true, -2, 1)] {
                var own = c0, blas = c0
                let bb = transB ? bT : b, ld = transB ? ldbT : ldb
                sgemm(transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: bb, ldb: ld, beta: beta, c: &own, ldc: ldc,
                      kernel: kernel)
                sgemm(transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: bb, ldb: ld, beta: beta, c: &blas, ldc: ldc,
                      kernel: .openblas)
                let diff = maxAbsDifference(own, blas)
                #expect(diff <= 1e-5 * Float(k + 1), "\(kernel) \(m)×\(n)×\(k) transB \(transB) α \(alpha) β \(beta): max |Δ| \(diff)")
            }
            // Aᵀ·B: A is (k, m), B (k, n); both the wide form and the narrow one computed transposed.
            let at = Self.random(k * (m + 2), &rng)
            for beta in [Float(0), 1] {
                var own = c0, blas = c0
                sgemm(transA: true, m: m, n: n, k: k, alpha: 0.7, a: at, lda: m + 2, b: b, ldb: ldb, beta: beta, c: &own, ldc: ldc,
                      kernel: kernel)
                sgemm(transA: true, m: m, n: n, k: k, alpha: 0.7, a: at, lda: m + 2, b: b, ldb: ldb, beta: beta, c: &blas, ldc: ldc,
                      kernel: .openblas)
                let diff = maxAbsDifference(own, blas)
                #expect(diff <= 1e-5 * Float(k + 1), "\(kernel) Aᵀ·B \(m)×\(n)×\(k) β \(beta): max |Δ| \(diff)")
            }
        }
        // Rows exactly 4 KB apart (K = 1024, as Qwen3-0.6B's): the narrow kernel's 6-row strips.
        let m = 31, k = 1024
        let a = Self.random(m * k, &rng), b = Self.random(16 * k, &rng), c0 = Self.random(m * 16, &rng)
        for n in [16, 13, 8, 5] {
            var own = c0, blas = c0
            sgemm(transB: true, m: m, n: n, k: k, alpha: 0.5, a: a, lda: k, b: b, ldb: k, beta: 1, c: &own, ldc: 16, kernel: kernel)
            sgemm(transB: true, m: m, n: n, k: k, alpha: 0.5, a: a, lda: k, b: b, ldb: k, beta: 1, c: &blas, ldc: 16, kernel: .openblas)
            #expect(maxAbsDifference(own, blas) <= 1e-5 * Float(k + 1), "\(kernel) \(m)×\(n)×\(k), rows 4 KB apart")
        }
    }

    @Test("a linear layer with its low-rank term in one GEMM equals the two products", .enabled(if: GEMMKernel.current.isOwn))
    func lowRankSums() {
        var rng = SeededGenerator(seed: 12)
        for (n, c, oc, rank) in [(37, 64, 48, 8), (200, 96, 400, 4), (7, 400, 16, 16)] {
            let inp = Self.random(n * c, &rng), weight = Self.random(oc * c, &rng), bias = Self.random(oc, &rng)
            let u = Self.random(n * rank, &rng), up = Self.random(oc * rank, &rng), down = Self.random(rank * c, &rng)
            for withBias in [false, true] {
                var fused = [Float](repeating: .nan, count: n * oc), plain = fused
                bias.withUnsafeBufferPointer { b in
                    let bias = withBias ? b.baseAddress : nil
                    linearForwardPlusLowRank(out: &fused, inp: inp, weight: weight, bias: bias, n: n, c: c, oc: oc, u: u, up: up,
                                             rank: rank, scale: 4)
                    linearForward(out: &plain, inp: inp, weight: weight, bias: bias, n: n, c: c, oc: oc)
                }
                sgemm(transB: true, m: n, n: oc, k: rank, alpha: 4, a: u, lda: rank, b: up, ldb: rank, beta: 1, c: &plain, ldc: oc,
                      kernel: .openblas)
                #expect(maxAbsDifference(fused, plain) <= 1e-5 * Float(c), "forward \(n)×\(oc)×\(c) r \(rank) bias \(withBias)")
            }
            let dout = Self.random(n * oc, &rng), du = Self.random(n * rank, &rng), start = Self.random(n * c, &rng)
            for accumulate in [false, true] {
                var fused = start, plain = start
                linearBackwardInputPlusLowRank(dinp: &fused, dout: dout, weight: weight, n: n, c: c, oc: oc, accumulate: accumulate,
                                               du: du, down: down, rank: rank)
                sgemm(m: n, n: c, k: oc, a: dout, lda: oc, b: weight, ldb: c, beta: accumulate ? 1 : 0, c: &plain, ldc: c, kernel: .openblas)
                sgemm(m: n, n: c, k: rank, a: du, lda: rank, b: down, ldb: c, beta: 1, c: &plain, ldc: c, kernel: .openblas)
                #expect(maxAbsDifference(fused, plain) <= 1e-5 * Float(oc), "input gradient \(n)×\(c)×\(oc) r \(rank) accumulate \(accumulate)")
                guard !accumulate else { continue }
                // Through an activation's slope in the same store: the plain result times the slope.
                let slope = Self.random(n * c, &rng)
                var through = start
                linearBackwardInputPlusLowRank(dinp: &through, dout: dout, weight: weight, n: n, c: c, oc: oc, accumulate: false,
                                               du: du, down: down, rank: rank, slope: slope)
                #expect(maxAbsDifference(through, zip(plain, slope).map { $0 * $1 }) <= 1e-5 * Float(oc),
                        "input gradient through a slope \(n)×\(c)×\(oc) r \(rank)")
            }
        }
    }

    @Test("GELU and its slope match erf in double precision, tails included")
    func geluMatchesErf() {
        for count in [1, 8, 13, 40_001] {
            let x = (0..<count).map { Float($0 % 997) / 997 * 12 - 6 }
            var out = [Float](repeating: 0, count: count), slope = x, plain = out
            geluForward(out: &out, slopeInPlace: &slope, count: count)
            geluForward(out: &plain, inp: x, count: count)
            var worst = 0.0
            for i in 0..<count {
                let v = Double(x[i]), cdf = 0.5 * (1 + erf(v / 2.0.squareRoot()))
                let pdf = exp(-0.5 * v * v) / (2 * Double.pi).squareRoot()
                worst = max(worst, abs(Double(out[i]) - v * cdf), abs(Double(plain[i]) - v * cdf), abs(Double(slope[i]) - (cdf + v * pdf)))
            }
            #expect(worst < 3e-6, "count \(count): max |Δ| \(worst) on \(GEMMKernel.current)")
        }
    }

    @Test("attention's row softmax and its backward match double precision, causal and tails included")
    func softmaxMatchesDouble() {
        var rng = SeededGenerator(seed: 17)
        for (rows, len, causal) in [(1, 1, false), (3, 5, false), (9, 9, true), (13, 37, false), (40, 40, true), (4, 128, false)] {
            let logits = Self.random(rows * len, &rng).map { $0 * 20 }, dp = Self.random(rows * len, &rng)
            var p = logits, ds = dp
            softmaxRows(&p, rows: rows, len: len, causal: causal)
            softmaxBackwardRows(&ds, probs: p, rows: rows, length: len, scale: 0.5)
            var worst = 0.0
            for i in 0..<rows {
                let valid = causal ? i + 1 : len, row = (0..<len).map { Double(logits[i * len + $0]) }
                let m = row[..<valid].max()!, e = row[..<valid].map { exp($0 - m) }, sum = e.reduce(0, +)
                let want = (0..<len).map { $0 < valid ? e[$0] / sum : 0 }
                let dot = (0..<len).map { want[$0] * Double(dp[i * len + $0]) }.reduce(0, +)
                for j in 0..<len {
                    worst = max(worst, abs(Double(p[i * len + j]) - want[j]),
                                abs(Double(ds[i * len + j]) - 0.5 * want[j] * (Double(dp[i * len + j]) - dot)))
                }
            }
            #expect(worst < 1e-6, "\(rows)×\(len) causal \(causal): max |Δ| \(worst) on \(GEMMKernel.current)")
        }
    }

    @Test("attention's output and kept probabilities match double precision for head dims 16–64, causal or not, grouped heads, probability dropout",
          arguments: [16, 32, 64])
    func attentionMatchesDouble(d: Int) {
        // Lengths around the fused kernel's 6-row strips and 16-column panels, one past 128.
        let batch = PackedBatch(lengths: [1, 7, 16, 17, 40, 131]), heads = 4, kvHeads = 2, group = heads / kvHeads
        let n = batch.tokens, scale = 1 / Float(d).squareRoot(), p: Float = 0.3, site: UInt64 = 77
        var rng = SeededGenerator(seed: 23)
        let q = Self.random(n * heads * d, &rng), k = Self.random(n * kvHeads * d, &rng), v = Self.random(n * kvHeads * d, &rng)
        let seeds: [UInt64] = (0..<n).map { mix64(UInt64($0) + 5) }
        let probsCount = (0..<batch.count).map { heads * batch.length($0) * batch.length($0) }.reduce(0, +)
        // Row r's head h of q, and token r's KV head of k and v, in double precision.
        func row(_ x: [Float], _ r: Int, _ hs: Int, _ h: Int) -> [Double] { (0..<d).map { Double(x[(r * hs + h) * d + $0]) } }
        // The dropout factors (0 or 1/(1 − p)) of token r's row of head h, from the public row kernel.
        func mask(_ r: Int, _ h: Int, _ t: Int) -> [Float] {
            var m = [Float](repeating: 0, count: t)
            dropoutRow(out: &m, inp: [Float](repeating: 1, count: t), count: t, p: p,
                       base: dropoutBase(tokenSeed: seeds[r], site: site &+ UInt64(h)))
            return m
        }
        for (causal, dropping) in [(false, false), (true, false), (false, true), (true, true)] {
            var out = [Float](repeating: 0, count: n * heads * d), probs = [Float](repeating: 0, count: probsCount)
            var unkeptOut = out, scratch = [Float](repeating: 0, count: attentionScratchCount(maxLength: batch.maxLength))
            seeds.withUnsafeBufferPointer { seedPointer in
                let dropout = dropping ? AttentionDropout(p: p, tokenSeeds: seedPointer.baseAddress!, site: site) : nil
                attentionForward(out: &out, probs: &probs, keepProbs: true, q: q, k: k, v: v, batch: batch, heads: heads,
                                 kvHeads: kvHeads, headDim: d, causal: causal, scale: scale, scratch: &scratch, dropout: dropout)
                var unkept = [Float](repeating: 0, count: attentionScratchCount(maxLength: batch.maxLength))
                attentionForward(out: &unkeptOut, probs: &unkept, keepProbs: false, q: q, k: k, v: v, batch: batch, heads: heads,
                                 kvHeads: kvHeads, headDim: d, causal: causal, scale: scale, dropout: dropout)
            }
            let label = "d \(d) causal \(causal) dropout \(dropping)"
            // Without kept probabilities the fused kernel normalises the output rows instead: rounding apart.
            #expect(maxAbsDifference(unkeptOut, out) <= 1e-6, "\(label): kept and unkept probabilities give the same output")
            var worst = 0.0, probBase = 0
            for s in 0..<batch.count {
                let t = batch.length(s), start = batch.offsets[s]
                for h in 0..<heads {
                    let keys = (0..<t).map { row(k, start + $0, kvHeads, h / group) }
                    let values = (0..<t).map { row(v, start + $0, kvHeads, h / group) }
                    for i in 0..<t {
                        let valid = causal ? i + 1 : t, query = row(q, start + i, heads, h)
                        let logits: [Double] = keys[..<valid].map { key in Double(scale) * zip(query, key).map { $0 * $1 }.reduce(0, +) }
                        let m = logits.max()!, e = logits.map { exp($0 - m) }, sum = e.reduce(0, +)
                        let factors = dropping ? mask(start + i, h, t) : [Float](repeating: 1, count: t)
                        for j in 0..<t {
                            let want = j < valid ? e[j] / sum : 0  // kept probabilities are P, before dropout
                            worst = max(worst, abs(Double(probs[probBase + (h * t + i) * t + j]) - want))
                        }
                        for c in 0..<d {
                            var want = 0.0
                            for j in 0..<valid { want += e[j] / sum * Double(factors[j]) * values[j][c] }
                            worst = max(worst, abs(Double(out[((start + i) * heads + h) * d + c]) - want))
                        }
                    }
                }
                probBase += heads * t * t
            }
            // Dropout's 1/(1 − p) scales the output's rounding; without it the earlier bound holds.
            #expect(worst < (dropping ? 3e-6 : 2e-6), "\(label): max |Δ| \(worst) on \(GEMMKernel.current)")
        }
    }

    @Test("LayerNorm, with and without the residual added first, matches double precision, tails included")
    func layernormMatchesDouble() {
        var rng = SeededGenerator(seed: 29)
        for c in [5, 8, 19, 384] {
            let rows = 7
            let x = Self.random(rows * c, &rng).map { $0 * 3 + 1 }, residual = Self.random(rows * c, &rng)
            let weight = Self.random(c, &rng), bias = Self.random(c, &rng)
            var plain = [Float](repeating: 0, count: rows * c), fused = plain, sum = x
            var mean = [Float](repeating: 0, count: rows), rstd = mean
            layernormForward(out: &plain, inp: x, weight: weight, bias: bias, n: rows, c: c, eps: 1e-12)
            addLayernormForward(out: &fused, mean: &mean, rstd: &rstd, sum: &sum, residual: residual, weight: weight, bias: bias,
                                n: rows, c: c, eps: 1e-12)
            var worst = 0.0
            for (input, output, addsResidual) in [(x, plain, false), (sum, fused, true)] {
                for i in 0..<rows {
                    let row = (0..<c).map { Double(input[i * c + $0]) }
                    if addsResidual {  // the sum is kept for backward
                        for j in 0..<c { worst = max(worst, abs(row[j] - (Double(x[i * c + j]) + Double(residual[i * c + j])))) }
                    }
                    let m = row.reduce(0, +) / Double(c)
                    let r = 1 / (row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(c) + 1e-12).squareRoot()
                    if addsResidual { worst = max(worst, abs(Double(mean[i]) - m), abs(Double(rstd[i]) - r) / r) }
                    for j in 0..<c {
                        worst = max(worst, abs(Double(output[i * c + j]) - ((row[j] - m) * r * Double(weight[j]) + Double(bias[j]))))
                    }
                }
            }
            #expect(worst < 2e-6, "c \(c): max |Δ| \(worst) on \(GEMMKernel.current)")
        }
    }

    @Test("RMSNorm and its backward match double precision, tails included")
    func rmsnormMatchesDouble() {
        var rng = SeededGenerator(seed: 31)
        for c in [5, 8, 19, 128, 1024] {
            let rows = 7
            let x = Self.random(rows * c, &rng).map { $0 * 3 }, weight = Self.random(c, &rng), g = Self.random(rows * c, &rng)
            let start = Self.random(rows * c, &rng)
            var out = [Float](repeating: 0, count: rows * c), rstd = [Float](repeating: 0, count: rows), dx = start
            rmsnormForward(out: &out, rstd: &rstd, inp: x, weight: weight, n: rows, c: c, eps: 1e-6)
            rmsnormBackward(dinp: &dx, dout: g, inp: x, weight: weight, rstd: rstd, n: rows, c: c)
            var worst = 0.0
            for i in 0..<rows {
                let row = (0..<c).map { Double(x[i * c + $0]) }, gr = (0..<c).map { Double(g[i * c + $0]) }
                let r = 1 / (row.map { $0 * $0 }.reduce(0, +) / Double(c) + 1e-6).squareRoot()
                worst = max(worst, abs(Double(rstd[i]) - r) / r)
                // y_j = x_j·r·w_j, so dL/dx_k = r·w_k·g_k − x_k·r³·Σ_j w_j·g_j·x_j / c
                let m = (0..<c).reduce(0.0) { $0 + Double(weight[$1]) * gr[$1] * row[$1] } / Double(c)
                for j in 0..<c {
                    worst = max(worst, abs(Double(out[i * c + j]) - row[j] * r * Double(weight[j])))
                    let grad = r * Double(weight[j]) * gr[j] - row[j] * r * r * r * m
                    worst = max(worst, abs(Double(dx[i * c + j]) - (Double(start[i * c + j]) + grad)))
                }
            }
            #expect(worst < 3e-6, "c \(c): max |Δ| \(worst) on \(GEMMKernel.current)")
        }
    }

    @Test("row-wise SwiGLU and its gradients match double precision, tails included")
    func swigluMatchesDouble() {
        var rng = SeededGenerator(seed: 13)
        for cols in [5, 8, 19, 768] {
            let rows = 3, ld = 2 * cols
            let gateUp = Self.random(rows * ld, &rng).map { $0 * 8 }, dout = Self.random(rows * cols, &rng)
            var out = [Float](repeating: 0, count: rows * cols), grads = [Float](repeating: 0, count: rows * ld)
            gateUp.withUnsafeBufferPointer { g in
                swigluForward(out: &out, gate: g.baseAddress!, up: g.baseAddress! + cols, rows: rows, cols: cols, ld: ld)
                grads.withUnsafeMutableBufferPointer { d in
                    swigluBackward(dgate: d.baseAddress!, dup: d.baseAddress! + cols, dout: dout, gate: g.baseAddress!,
                                   up: g.baseAddress! + cols, rows: rows, cols: cols, ld: ld)
                }
            }
            var worst = 0.0
            for r in 0..<rows {
                for i in 0..<cols {
                    let g = Double(gateUp[r * ld + i]), u = Double(gateUp[r * ld + cols + i]), d = Double(dout[r * cols + i])
                    let s = 1 / (1 + exp(-g))
                    worst = max(worst, abs(Double(out[r * cols + i]) - g * s * u) / max(1, abs(g * s * u)),
                                abs(Double(grads[r * ld + i]) - d * u * s * (1 + g * (1 - s))),
                                abs(Double(grads[r * ld + cols + i]) - d * g * s))
                }
            }
            #expect(worst < 1e-5, "cols \(cols): max |Δ| \(worst) on \(GEMMKernel.current)")
        }
    }

    @Test("the own kernels are chosen by the CPU's widest vectors, unless EMBEDTUNE_GEMM says otherwise")
    func selection() {
        #expect(GEMMKernel.select(environment: nil, cpu: .avx2, avx2Available: true, avx512Available: false) == .avx2)
        #expect(GEMMKernel.select(environment: nil, cpu: .avx512, avx2Available: true, avx512Available: true) == .avx512)
        #expect(GEMMKernel.select(environment: "avx2", cpu: .avx512, avx2Available: true, avx512Available: true) == .avx2)
        #expect(GEMMKernel.select(environment: "avx512", cpu: .avx2, avx2Available: true, avx512Available: false) == .avx2)
        #expect(GEMMKernel.select(environment: "openblas", cpu: .avx512, avx2Available: true, avx512Available: true) == .openblas)
        #expect(GEMMKernel.select(environment: "avx2", cpu: .sse, avx2Available: false, avx512Available: false) == .openblas)
    }
}
