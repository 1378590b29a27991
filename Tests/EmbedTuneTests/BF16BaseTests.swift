import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneTraining
import Foundation
import Testing

/// The frozen base in bfloat16 (`BF16Base`, `--base_precision bf16`): products read the bfloat16
/// copy exactly as the float32 kernels read the rounded weight, and a LoRA step's gradients move
/// by the rounding only.
@Suite("A frozen base in bfloat16")
struct BF16BaseTests {
    static func random(_ count: Int, _ rng: inout SeededGenerator) -> [Float] {
        (0..<count).map { _ in Float.random(in: -1...1, using: &rng) }
    }

    static func rounded(_ x: [Float]) -> [Float] { x.map { BF16Base.float(BF16Base.bfloat16($0)) } }

    @Test("conversion rounds to nearest even and keeps infinities and NaN")
    func conversion() {
        #expect(BF16Base.bfloat16(1) == 0x3F80)
        #expect(BF16Base.bfloat16(-2) == 0xC000)
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: to the even one, 1; 1 + 3·2⁻⁸ to 1 + 2⁻⁶.
        #expect(BF16Base.bfloat16(Float(bitPattern: 0x3F80_8000)) == 0x3F80)
        #expect(BF16Base.bfloat16(Float(bitPattern: 0x3F81_8000)) == 0x3F82)
        #expect(BF16Base.bfloat16(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(BF16Base.float(BF16Base.bfloat16(.infinity)) == .infinity)
        #expect(BF16Base.float(BF16Base.bfloat16(-.infinity)) == -.infinity)
        #expect(BF16Base.float(BF16Base.bfloat16(.nan)).isNaN)
        var rng = SeededGenerator(seed: 3)
        let x = Self.random(1000, &rng).map { $0 * 100 }
        let worst = zip(x, Self.rounded(x)).map { abs($0 - $1) / abs($0) }.max()!
        #expect(worst <= 1.0 / 256, "relative rounding error \(worst) above 2⁻⁸")
    }

    /// Each own kernel width the CPU runs, on every operand form a weight takes: forward (Bᵀ),
    /// input gradient (B), narrow outputs, a split over two threads, and two weights side by side
    /// read as one matrix (a fused q/k/v group). Bit for bit wherever both take the own kernel.
    @Test("a product reading a bfloat16 weight equals the float32 product of the rounded weight bit for bit",
          .enabled(if: GEMMKernel.avx2.isAvailable, "this CPU has none of the own kernels that read bfloat16"))
    func productsEqualRoundedWeights() {
        var rng = SeededGenerator(seed: 41)
        for kernel in [GEMMKernel.avx2, .avx512] where kernel.isAvailable {
            for (m, n, k) in [(37, 80, 700), (200, 96, 1100), (29, 8, 300), (5, 13, 64)] {
                let a = Self.random(m * k, &rng), aT = Self.random(m * n, &rng)
                // Two weights side by side in one allocation: each registered on its own, read as one.
                let both = Self.random(2 * n * k, &rng), plain = Self.rounded(both)
                both.withUnsafeBufferPointer { w in
                    let half = n * k
                    let registration = BF16Base.shared.register([(w.baseAddress!, half), (w.baseAddress! + half, half)],
                                                                releaseFloat32: false)
                    defer { withExtendedLifetime(registration) {} }
                    for threads in [1, 2] {
                        let team = ComputeTeam(size: threads)
                        defer { team.resize(1) }
                        ComputeTeam.withTeam(team) {
                            // Forward: C (m, 2n) = A · Wᵀ over both weights.
                            var got = [Float](repeating: 0, count: m * 2 * n), want = got
                            sgemm(transB: true, m: m, n: 2 * n, k: k, a: a, lda: k, b: w.baseAddress!, ldb: k, c: &got, ldc: 2 * n,
                                  kernel: kernel)
                            sgemm(transB: true, m: m, n: 2 * n, k: k, a: a, lda: k, b: plain, ldb: k, c: &want, ldc: 2 * n, kernel: kernel)
                            // The float32 weight of an AVX2 product deeper than 512 goes to OpenBLAS (rounding
                            // apart); the bfloat16 one stays with the own kernel.
                            let bound: Float = kernel == .avx2 && k > 512 ? 1e-5 * Float(k) : 0
                            #expect(maxAbsDifference(got, want) <= bound, "\(kernel) forward \(m)×\(2 * n)×\(k), \(threads) threads")
                            // Input gradient: C (m, k) = dY (m, n) · W, the second weight alone.
                            var gotIn = [Float](repeating: 0, count: m * k), wantIn = gotIn
                            sgemm(m: m, n: k, k: n, a: aT, lda: n, b: w.baseAddress! + half, ldb: k, c: &gotIn, ldc: k, kernel: kernel)
                            plain.withUnsafeBufferPointer { p in
                                sgemm(m: m, n: k, k: n, a: aT, lda: n, b: p.baseAddress! + half, ldb: k, c: &wantIn, ldc: k, kernel: kernel)
                            }
                            #expect(maxAbsDifference(gotIn, wantIn) == 0, "\(kernel) input gradient \(m)×\(k)×\(n), \(threads) threads")
                        }
                    }
                }
            }
        }
    }

    @Test("a LoRA linear with its adapter folded into the product reads the bfloat16 weight",
          .enabled(if: GEMMKernel.current.isOwn, "this process runs OpenBLAS, which never reads bfloat16"))
    func fusedLowRank() {
        var rng = SeededGenerator(seed: 43)
        let (n, c, oc, rank) = (50, 96, 160, 8)
        let inp = Self.random(n * c, &rng), weight = Self.random(oc * c, &rng), bias = Self.random(oc, &rng)
        let u = Self.random(n * rank, &rng), up = Self.random(oc * rank, &rng), plain = Self.rounded(weight)
        var got = [Float](repeating: 0, count: n * oc), want = got
        weight.withUnsafeBufferPointer { w in
            let registration = BF16Base.shared.register([(w.baseAddress!, oc * c)], releaseFloat32: false)
            defer { withExtendedLifetime(registration) {} }
            linearForwardPlusLowRank(out: &got, inp: inp, weight: w.baseAddress!, bias: bias, n: n, c: c, oc: oc, u: u, up: up,
                                     rank: rank, scale: 2)
        }
        linearForwardPlusLowRank(out: &want, inp: inp, weight: plain, bias: bias, n: n, c: c, oc: oc, u: u, up: up, rank: rank, scale: 2)
        #expect(maxAbsDifference(got, want) == 0)
    }

    @Test("a LoRA step on a bfloat16 base: gradients within 2% of the float32 base's, the base weights' memory given back",
          .enabled(if: GEMMKernel.current.isOwn, "this process runs OpenBLAS, which never reads bfloat16"))
    func trainingStep() throws {
        var o = try eightTriplesOptions()
        let full = try Trainer(options: o)
        _ = try full.accumulateGradients(step: 0)
        o.basePrecision = "bf16"
        let half = try Trainer(options: o)
        #expect(half.bf16Base != nil)
        _ = try half.accumulateGradients(step: 0)
        let a = full.adapter.grads.array, b = half.adapter.grads.array
        let error = relativeL2(a, b)
        #expect(a.contains { $0 != 0 })
        #expect(error > 0 && error <= 0.02, "relative L2 difference of the adapter's gradients \(error)")
        // Released float32 pages read as zeros: the weights' memory is gone, only the copies remain.
        #expect(half.bf16Base!.releasedBytes > 0)
    }

    @Test("--base_precision takes fp32 or bf16 and names the option otherwise")
    func optionChecked() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl")
        try tinyDataset(data)
        let result = try runCLI(["train", "--model", Paths.fixtures.appendingPathComponent("tiny-qwen3").path, "--dataset", data.path,
                                 "--output_dir", tmp.appendingPathComponent("o").path, "--base_precision", "fp16"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("base_precision"), "\(result.stderr)")
    }
}
