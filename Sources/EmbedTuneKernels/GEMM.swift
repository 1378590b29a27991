import CBLAS
import CEmbedTuneAVX2
import Foundation

/// The kernel behind `sgemm` and the linear layers.
///
/// `avx2` and `avx512` are our own kernels (`Sources/CEmbedTuneAVX2`, one source compiled for
/// 256- and 512-bit vectors). Their gain is the low-rank adapter: OpenBLAS packs every operand of
/// every call, so through it a rank-8 projection copies the whole (N, in) activation to produce 8
/// columns, and the adapter's products take 13% of a MiniLM training step for 4% of its FLOPs. The
/// own kernels read activations in place, pack only the weight, run narrow outputs (a rank) in one
/// zero-padded panel, stream Aᵀ·B weight gradients without packing, and fold s·u·Bᵀ (forward) and
/// du·A (input gradient) into the frozen weight's product, so C is written once
/// (`linearForwardPlusLowRank`, `linearBackwardInputPlusLowRank`). Deep products into wide outputs
/// go to OpenBLAS where it is faster (`ownMaxDepth`); there the own kernel writes the adapter's term
/// first and OpenBLAS accumulates onto it (`loraForward`). The fused attention is built for both
/// widths too; the norms, the GELU / SwiGLU activations and the dropout masks are AVX2 code and
/// run with either.
///
/// Chosen by the CPU: `avx512` where it runs AVX-512 F/VL/DQ/BW, `avx2` where it runs AVX2 and
/// FMA; `EMBEDTUNE_GEMM=openblas|avx2|avx512` overrides the choice (a width the CPU lacks is never
/// taken).
public enum GEMMKernel: String, Sendable, CaseIterable {
    case openblas, avx2, avx512

    /// The process-wide choice, fixed at first use.
    public static let current: GEMMKernel = select(
        environment: ProcessInfo.processInfo.environment["EMBEDTUNE_GEMM"],
        cpu: BLASRuntime.cpuInfo().simdClass, avx2Available: avx2.isAvailable, avx512Available: avx512.isAvailable)

    /// Whether this CPU runs the kernel (OpenBLAS runs everywhere).
    public var isAvailable: Bool {
        switch self {
        case .openblas: return true
        case .avx2: return embedtune_gemm_available()
        case .avx512: return embedtune_gemm512_available()
        }
    }

    public static func select(environment: String?, cpu: BLASRuntime.SIMDClass, avx2Available: Bool,
                              avx512Available: Bool = false) -> GEMMKernel {
        let avx512 = avx512Available && cpu >= .avx512, avx2 = avx2Available && cpu >= .avx2
        switch environment {
        case "openblas": return .openblas
        case "avx2" where avx2: return .avx2
        case "avx512" where avx512: return .avx512
        default: return avx512 ? .avx512 : avx2 ? .avx2 : .openblas
        }
    }

    /// Whether this choice runs the own kernels (either width); the element-wise kernels are AVX2
    /// code and run with both.
    public var isOwn: Bool { self != .openblas }

    /// Columns of the own GEMM's panels: two vectors.
    public var panelColumns: Int { self == .avx512 ? 32 : 16 }

    /// What `info` and the benchmarks print.
    public static var summary: String {
        switch current {
        case .openblas: return "openblas (\(BLASRuntime.coreName))"
        case .avx512: return "avx512 (own: LoRA, linears, attention, norms, GELU, SwiGLU)"
        case .avx2: return "avx2 (own: LoRA, attention, linears ≤ \(current.ownMaxDepth) deep, norms, GELU, SwiGLU; OpenBLAS \(BLASRuntime.coreName) deeper)"
        }
    }

    /// The deepest product the own kernel takes into a wide output. AVX2: deeper, its C tile is
    /// re-read once per 384-deep block and OpenBLAS's Zen kernel is 3–5% faster (Qwen3-0.6B's
    /// 1024–3072-deep products). AVX-512: every depth; on Zen 5 the 8×32 kernel ran 0.97–1.11× OpenBLAS
    /// Cooperlake on 2048 × 384…3072 × 1024…3072 (and 2× the Haswell kernel the machine's environment
    /// forces). Narrow outputs (a LoRA rank) always stay with the own kernel.
    var ownMaxDepth: Int { self == .avx512 ? Int.max : 512 }

    /// Rows per chunk when a product is split over threads, chosen so that no split changes a
    /// value. OpenBLAS computes a row of C differently when it falls into a partial block of its
    /// micro-kernel (Zen's sgemm: 24 rows), so a product split at multiples of that block equals
    /// one call bit for bit, and split elsewhere it does not; the own kernels give the same row
    /// wherever a split falls. Found once by splitting a small product at multiples of candidate
    /// sizes and comparing with one call. `nil` when no candidate keeps every value: products are
    /// then split evenly at multiples of 16 (deterministic for one thread count).
    /// Three shapes: a narrow one, one whose pieces fall below the size where some OpenBLAS
    /// builds switch to a direct (unpacked) kernel while the whole does not, and one as wide and
    /// deep as several of OpenBLAS's blocks (≈ 25 ms in all on Zen, once per process).
    public static let splitInvariantRows: Int? = {
        var state: UInt32 = 12345
        func next() -> Float { state = state &* 1_664_525 &+ 1_013_904_223; return Float(state >> 8) / Float(1 << 24) - 0.5 }
        // Whether every split of op(A)·op(B) (m × n, depth k) at the cuts equals one call.
        func exact(m: Int, n: Int, k: Int, cuts: [Int]) -> Bool {
            let a = (0..<(m * k)).map { _ in next() }, b = (0..<(n * k)).map { _ in next() }
            var whole = [Float](repeating: 0, count: m * n), split = whole
            // C's rows `rows`; A is (m, k), or (k, m) read transposed.
            func product(_ transA: Bool, _ transB: Bool, rows: Range<Int>, into c: inout [Float]) {
                a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in c.withUnsafeMutableBufferPointer { c in
                    blasSGEMM(transA, transB, rows.count, n, k, 1, a.baseAddress! + (transA ? rows.lowerBound : rows.lowerBound * k),
                              transA ? m : k, b.baseAddress!, transB ? k : n, 0, c.baseAddress! + rows.lowerBound * n, n)
                } } }
            }
            return [(false, false), (false, true), (true, false)].allSatisfy { transA, transB in
                product(transA, transB, rows: 0..<m, into: &whole)
                return cuts.filter { $0 > 0 && $0 < m }.allSatisfy { cut in
                    product(transA, transB, rows: 0..<cut, into: &split)
                    product(transA, transB, rows: cut..<m, into: &split)
                    return split == whole
                }
            }
        }
        return [8, 16, 24, 32, 48, 64, 96].first { g in
            exact(m: 205, n: 24, k: 520, cuts: [g, 3 * g, (205 / g - 1) * g])
                && exact(m: 96, n: 320, k: 320, cuts: [g, 96 - g]) && exact(m: 300, n: 520, k: 600, cuts: [g, 5 * g, (300 / g - 1) * g])
        }
    }()

    /// Rows per chunk of a product's row split over threads (see `splitInvariantRows`).
    static var rowGrain: Int { splitInvariantRows ?? 16 }

    /// Whether this choice runs a product of depth k into n columns on the own kernel.
    /// A weight kept in bfloat16 (`BF16Base`) is read by the own kernels at any depth.
    @inline(__always)
    func takes(depth k: Int, columns n: Int, bf16Weight: Bool = false) -> Bool { isOwn && (k <= ownMaxDepth || n < 64 || bf16Weight) }

    /// Whether a linear layer of this depth has its adapter product ride in the frozen weight's GEMM.
    @inline(__always)
    public static func fusesLowRank(depth k: Int) -> Bool { current.isOwn && k <= current.ownMaxDepth }
}

/// Row-major single-precision GEMM: C = alpha · op(A) · op(B) + beta · C,
/// op(A) is (m, k), op(B) is (k, n), C is (m, n); lda/ldb/ldc are row strides.
///
/// Large products are split over the compute team into row blocks of C (or column blocks when C
/// has few rows), each a single-threaded call: the blocks write disjoint parts of C, row blocks
/// start at multiples of `GEMMKernel.rowGrain`, and every block takes the path the whole product
/// would (`GEMMRoute`), so the result equals one call's bit for bit, whatever the number of
/// threads. Column blocks are whole 16-wide panels, and only on the own kernels: a column split of
/// OpenBLAS's products is not known to be exact, so those few-row products run on one thread.
public func sgemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, kernel: GEMMKernel = .current
) {
    if m == 0 || n == 0 { return }
    let route = GEMMRoute(kernel, transA, transB, m, n, k, beta, bf16B: BF16Base.shared.lookup(b) != nil)
    let team = ComputeTeam.current
    if team.size > 1, m * n * k >= 1 << 20 {
        if m >= 64 {
            team.parallelFor(m, grain: GEMMKernel.rowGrain) { rows in
                blockSGEMM(route, transA, transB, rows.count, n, k, alpha, a + (transA ? rows.lowerBound : rows.lowerBound * lda), lda,
                           b, ldb, beta, c + rows.lowerBound * ldc, ldc)
            }
            return
        }
        if n >= 64, route != .openblas {
            // Whole panels; the last block takes the remainder, so no block is narrow enough for
            // the own kernel's one-vector path.
            let width = kernel.panelColumns, panels = n / width
            team.parallelFor(panels) { range in
                let lower = range.lowerBound * width, upper = range.upperBound == panels ? n : range.upperBound * width
                blockSGEMM(route, transA, transB, m, upper - lower, k, alpha, a, lda, b + (transB ? lower * ldb : lower),
                           ldb, beta, c + lower, ldc)
            }
            return
        }
    }
    blockSGEMM(route, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// The path of one product, chosen once from the whole product's shape and taken by every block
/// of a split: a block's own shape could choose another path, whose rounding differs.
enum GEMMRoute: Equatable {
    /// `cblas_sgemm`.
    case openblas
    /// `embedtune_sgemm_*`: C = α·A·op(B) (+ C), A read in place.
    case own(GEMMKernel)
    /// `embedtune_sgemm_tn_*`: C (+)= α·Aᵀ·B over the token dimension; a narrow C (an adapter's
    /// dB: out × rank) computed transposed, so the kernel's panel-wide tiles run along its long side.
    case ownTransposedA(GEMMKernel, transposeC: Bool)

    @inline(__always)
    init(_ kernel: GEMMKernel, _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ beta: Float, bf16B: Bool = false) {
        if kernel.isOwn, beta == 0 || beta == 1 {
            if !transA, kernel.takes(depth: k, columns: n, bf16Weight: bf16B) { self = .own(kernel); return }
            if transA, !transB { self = .ownTransposedA(kernel, transposeC: n < kernel.panelColumns && m > n); return }
        }
        self = .openblas
    }
}

/// One thread's GEMM on the chosen kernel, or OpenBLAS where the own kernels do not apply.
@inline(__always)
func blockSGEMM(
    _ kernel: GEMMKernel, _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    blockSGEMM(GEMMRoute(kernel, transA, transB, m, n, k, beta), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

@inline(__always)
func blockSGEMM(
    _ route: GEMMRoute, _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    switch route {
    case .own(let kernel):
        kernel.ownSGEMM(transB, m, n, k, alpha, a, lda, b, ldb, beta == 1, nil, c, ldc)
    case .ownTransposedA(let kernel, let transposeC):
        if beta == 0 { for row in 0..<m { (c + row * ldc).update(repeating: 0, count: n) } }
        if transposeC {
            kernel.ownSGEMMTN(n, m, k, alpha, b, ldb, a, lda, c, ldc, true)
        } else {
            kernel.ownSGEMMTN(m, n, k, alpha, a, lda, b, ldb, c, ldc, false)
        }
    case .openblas:
        blasSGEMM(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
}

@inline(__always)
func blasSGEMM(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
    _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    BLASRuntime.useOneThreadPerCall()
    precondition(BF16Base.shared.lookup(a) == nil && BF16Base.shared.lookup(b) == nil,
                 "a bfloat16 base weight reached OpenBLAS, which reads float32 only")
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Linear layer forward: out = α · inp · Wᵀ (+ bias).
/// inp is (N, C), weight is (OC, C) as PyTorch stores it, bias is (OC), out is (N, OC) with rows
/// `ldOut` apart (default OC; wider when several linears write side by side). With α it also
/// writes an adapter's scaled term s·u·Bᵀ (C = the rank), which a frozen product then
/// accumulates onto.
/// The own kernel starts from the bias; on OpenBLAS the bias is written first and the GEMM
/// accumulates onto it (β = 1): one pass over `out` fewer than a separate bias add, and no
/// zeroing pass inside OpenBLAS.
public func linearForward(
    out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, n: Int, c: Int, oc: Int, ldOut: Int? = nil, alpha: Float = 1
) {
    let ld = ldOut ?? oc
    Int8Weights.shared.record(weight, inp: inp, n: n, c: c)
    if let packed = Int8Weights.shared.packed(weight) {
        // A frozen weight registered for INT8 inference (never a LoRA factor: those are not registered).
        precondition(alpha == 1 && packed.inFeatures == c && packed.outFeatures == oc, "an INT8 weight used with another shape or scale")
        packed.forward(out: out, ldOut: ld, inp: inp, bias: bias, n: n)
        return
    }
    guard let bias else {
        sgemm(transB: true, m: n, n: oc, k: c, alpha: alpha, a: inp, lda: c, b: weight, ldb: c, c: out, ldc: ld)
        return
    }
    // One path for the whole product, as `GEMMRoute` chooses it: every block takes it.
    let own = GEMMKernel.current.takes(depth: c, columns: oc, bf16Weight: BF16Base.shared.lookup(weight) != nil)
    ComputeTeam.current.parallelFor(n, grain: GEMMKernel.rowGrain) { rows in
        let inp = inp + rows.lowerBound * c, out = out + rows.lowerBound * ld
        if own {
            // The kernel starts its tiles from the bias: no separate pass over `out`.
            GEMMKernel.current.ownSGEMM(true, rows.count, oc, c, alpha, inp, c, weight, c, false, bias, out, ld)
            return
        }
        for row in 0..<rows.count { (out + row * ld).update(from: bias, count: oc) }
        blasSGEMM(false, true, rows.count, oc, c, alpha, inp, c, weight, c, 1, out, ld)
    }
}

/// A linear layer plus a low-rank term in one GEMM (own kernels only, `GEMMKernel.fusesLowRank`);
/// out = inp · Wᵀ (+ bias) + scale · u · upᵀ. inp (N, C), weight (OC, C), u (N, R), up (OC, R) —
/// LoRA's B —, out (N, OC) with rows `ldOut` apart (default OC). `out` is written once.
public func linearForwardPlusLowRank(
    out: UnsafeMutablePointer<Float>, ldOut: Int? = nil, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    n: Int, c: Int, oc: Int, u: UnsafePointer<Float>, up: UnsafePointer<Float>, rank: Int, scale: Float
) {
    precondition(GEMMKernel.current.isOwn, "linearForwardPlusLowRank needs the own kernels")
    let ld = ldOut ?? oc
    ComputeTeam.current.parallelFor(n, grain: 16) { rows in
        let r0 = rows.lowerBound
        GEMMKernel.current.ownSGEMMSum(true, rows.count, oc, c, inp + r0 * c, c, weight, c, true, rank, scale, u + r0 * rank, rank,
                            up, rank, false, bias, out + r0 * ld, ld, nil, 0)
    }
}

/// Backward of a linear layer's input plus a low-rank term in one GEMM (own kernels only):
/// dinp (+)= dout · W + du · down. dout (N, OC), weight (OC, C), du (N, R), down (R, C) — LoRA's A
/// after the scale went into du —, dinp (N, C), written once. With `slope` (N, C), the kept
/// derivative of the activation that produced this linear's input, dinp = (dout · W + du · down) ⊙
/// slope: the gradient comes out already through the activation, in the same store.
public func linearBackwardInputPlusLowRank(
    dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, weight: UnsafePointer<Float>, n: Int, c: Int, oc: Int,
    accumulate: Bool, du: UnsafePointer<Float>, down: UnsafePointer<Float>, rank: Int, slope: UnsafePointer<Float>? = nil
) {
    precondition(GEMMKernel.current.isOwn, "linearBackwardInputPlusLowRank needs the own kernels")
    precondition(slope == nil || !accumulate, "a slope multiplies the whole input gradient: no accumulation")
    ComputeTeam.current.parallelFor(n, grain: 16) { rows in
        let r0 = rows.lowerBound
        GEMMKernel.current.ownSGEMMSum(false, rows.count, c, oc, dout + r0 * oc, oc, weight, c, false, rank, 1, du + r0 * rank, rank,
                            down, c, accumulate, nil, dinp + r0 * c, c, slope.map { $0 + r0 * c }, c)
    }
}

/// The own kernels' entry points, by width (the C functions of gemm_kernels.inc).
extension GEMMKernel {
    /// B (a weight) is read from its bfloat16 copy when it lies in a registered `BF16Base`.
    @inline(__always)
    func ownSGEMM(_ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
                  _ b: UnsafePointer<Float>, _ ldb: Int, _ accumulate: Bool, _ bias: UnsafePointer<Float>?,
                  _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        let half = BF16Base.shared.lookup(b), operand = half.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(b)
        if self == .avx512 {
            embedtune_sgemm_avx512(transB, m, n, k, alpha, a, lda, operand, half != nil, ldb, accumulate, bias, c, ldc)
        } else {
            embedtune_sgemm_avx2(transB, m, n, k, alpha, a, lda, operand, half != nil, ldb, accumulate, bias, c, ldc)
        }
    }

    @inline(__always)
    func ownSGEMMSum(_ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ lda: Int,
                     _ b: UnsafePointer<Float>, _ ldb: Int, _ transB2: Bool, _ k2: Int, _ alpha2: Float,
                     _ a2: UnsafePointer<Float>, _ lda2: Int, _ b2: UnsafePointer<Float>, _ ldb2: Int, _ accumulate: Bool,
                     _ bias: UnsafePointer<Float>?, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                     _ mul: UnsafePointer<Float>?, _ ldm: Int) {
        let half = BF16Base.shared.lookup(b), operand = half.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(b)
        if self == .avx512 {
            embedtune_sgemm_sum_avx512(transB, m, n, k, a, lda, operand, half != nil, ldb, transB2, k2, alpha2, a2, lda2, b2, ldb2,
                                       accumulate, bias, c, ldc, mul, ldm)
        } else {
            embedtune_sgemm_sum_avx2(transB, m, n, k, a, lda, operand, half != nil, ldb, transB2, k2, alpha2, a2, lda2, b2, ldb2,
                                     accumulate, bias, c, ldc, mul, ldm)
        }
    }

    @inline(__always)
    func ownSGEMMTN(_ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
                    _ b: UnsafePointer<Float>, _ ldb: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ transposeC: Bool) {
        if self == .avx512 {
            embedtune_sgemm_tn_avx512(m, n, k, alpha, a, lda, b, ldb, c, ldc, transposeC)
        } else {
            embedtune_sgemm_tn_avx2(m, n, k, alpha, a, lda, b, ldb, c, ldc, transposeC)
        }
    }
}

/// Naive triple-loop reference used by tests and `bench gemm --verify` to check whichever
/// OpenBLAS kernel was selected. Accumulates in Double.
public func referenceGEMM(
    m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>
) {
    for i in 0..<m {
        for j in 0..<n {
            var sum = 0.0
            for p in 0..<k { sum += Double(a[i * k + p]) * Double(b[p * n + j]) }
            c[i * n + j] = Float(sum)
        }
    }
}
