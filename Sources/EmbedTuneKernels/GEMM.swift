import CBLAS
import CEmbedTuneGEMM
import Foundation

/// The kernel behind `sgemm`'s eligible products (no transposed A, β ∈ {0, 1}, n a multiple of
/// 16: every linear layer's forward and input gradient, LoRA's up-projection).
///
/// `avx2` is our own AVX2/FMA kernel (`Sources/CEmbedTuneGEMM`): it reads the activations in
/// place and packs only the weight, once per call, where OpenBLAS packs the activations once per
/// call and the weight once per block of rows (12% of a MiniLM step). It is chosen when the CPU
/// runs AVX2 and FMA but not AVX-512 — OpenBLAS's AVX-512 kernels are twice as wide.
/// `EMBEDTUNE_GEMM=openblas|avx2` overrides the choice.
public enum GEMMKernel: String, Sendable, CaseIterable {
    case openblas, avx2

    /// The process-wide choice, fixed at first use.
    public static let current: GEMMKernel = select(
        environment: ProcessInfo.processInfo.environment["EMBEDTUNE_GEMM"],
        cpu: BLASRuntime.cpuInfo().simdClass, avx2Available: embedtune_gemm_available())

    public static func select(environment: String?, cpu: BLASRuntime.SIMDClass, avx2Available: Bool) -> GEMMKernel {
        if environment == "openblas" || !avx2Available { return .openblas }
        if environment == "avx2" { return .avx2 }
        return cpu == .avx2 ? .avx2 : .openblas
    }

    /// What `info` and the benchmarks print, e.g. "avx2 (own, OpenBLAS Zen for the rest)".
    public static var summary: String {
        current == .avx2 ? "avx2 (own kernel for linear layers; OpenBLAS \(BLASRuntime.coreName) for the rest)"
            : "openblas (\(BLASRuntime.coreName))"
    }
}

/// Row-major single-precision GEMM: C = alpha · op(A) · op(B) + beta · C,
/// op(A) is (m, k), op(B) is (k, n), C is (m, n); lda/ldb/ldc are row strides.
///
/// Large products are split over the compute team into row blocks of C (or column blocks when C
/// has few rows), each a single-threaded OpenBLAS call: the blocks write disjoint parts of C, so
/// the result equals one call's bit for bit within each block's kernel path.
public func sgemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, kernel: GEMMKernel = .current
) {
    if m == 0 || n == 0 { return }
    let team = ComputeTeam.current
    if team.size > 1, m * n * k >= 1 << 20 {
        if m >= 64 {
            team.parallelFor(m, grain: 16) { rows in
                blockSGEMM(kernel, transA, transB, rows.count, n, k, alpha, a + (transA ? rows.lowerBound : rows.lowerBound * lda), lda,
                           b, ldb, beta, c + rows.lowerBound * ldc, ldc)
            }
            return
        }
        if n >= 64 {
            // Column blocks of a multiple of 16 keep the own kernel eligible.
            team.parallelFor(n, grain: 16) { cols in
                blockSGEMM(kernel, transA, transB, m, cols.count, k, alpha, a, lda, b + (transB ? cols.lowerBound * ldb : cols.lowerBound),
                           ldb, beta, c + cols.lowerBound, ldc)
            }
            return
        }
    }
    blockSGEMM(kernel, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// One thread's GEMM on the chosen kernel, or OpenBLAS where the own kernel does not apply.
@inline(__always)
func blockSGEMM(
    _ kernel: GEMMKernel, _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    if kernel == .avx2, !transA, beta == 0 || beta == 1, n % 16 == 0 {
        embedtune_sgemm(transB, m, n, k, alpha, a, lda, b, ldb, beta == 1, nil, c, ldc)
    } else {
        blasSGEMM(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
}

@inline(__always)
func blasSGEMM(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
    _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Linear layer forward: out = inp · Wᵀ (+ bias).
/// inp is (N, C), weight is (OC, C) as PyTorch stores it, bias is (OC), out is (N, OC) with rows
/// `ldOut` apart (default OC; wider when several linears write side by side).
/// The own kernel starts from the bias; on OpenBLAS the bias is written first and the GEMM
/// accumulates onto it (β = 1): one pass over `out` fewer than a separate bias add, and no
/// zeroing pass inside OpenBLAS.
public func linearForward(
    out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, n: Int, c: Int, oc: Int, ldOut: Int? = nil
) {
    let ld = ldOut ?? oc
    guard let bias else {
        sgemm(transB: true, m: n, n: oc, k: c, a: inp, lda: c, b: weight, ldb: c, c: out, ldc: ld)
        return
    }
    ComputeTeam.current.parallelFor(n, grain: 16) { rows in
        let inp = inp + rows.lowerBound * c, out = out + rows.lowerBound * ld
        if GEMMKernel.current == .avx2, oc % 16 == 0 {
            // The kernel starts its tiles from the bias: no separate pass over `out`.
            embedtune_sgemm(true, rows.count, oc, c, 1, inp, c, weight, c, false, bias, out, ld)
            return
        }
        for row in 0..<rows.count { (out + row * ld).update(from: bias, count: oc) }
        blasSGEMM(false, true, rows.count, oc, c, 1, inp, c, weight, c, 1, out, ld)
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
