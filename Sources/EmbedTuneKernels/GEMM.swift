import CBLAS

/// Row-major single-precision GEMM: C = alpha · op(A) · op(B) + beta · C,
/// op(A) is (m, k), op(B) is (k, n), C is (m, n); lda/ldb/ldc are row strides.
///
/// Large products are split over the compute team into row blocks of C (or column blocks when C
/// has few rows), each a single-threaded OpenBLAS call: the blocks write disjoint parts of C, so
/// the result equals one call's bit for bit within each block's kernel path.
public func sgemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    let team = ComputeTeam.current
    if team.size > 1, m * n * k >= 1 << 20 {
        if m >= 64 {
            team.parallelFor(m, grain: 16) { rows in
                blasSGEMM(transA, transB, rows.count, n, k, alpha, a + (transA ? rows.lowerBound : rows.lowerBound * lda), lda,
                          b, ldb, beta, c + rows.lowerBound * ldc, ldc)
            }
            return
        }
        if n >= 64 {
            team.parallelFor(n, grain: 16) { cols in
                blasSGEMM(transA, transB, m, cols.count, k, alpha, a, lda, b + (transB ? cols.lowerBound * ldb : cols.lowerBound),
                          ldb, beta, c + cols.lowerBound, ldc)
            }
            return
        }
    }
    blasSGEMM(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
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
/// The bias is written first and the GEMM accumulates onto it (β = 1): one pass over `out`
/// fewer than a separate bias add, and no zeroing pass inside OpenBLAS.
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
        for row in rows { (out + row * ld).update(from: bias, count: oc) }
        blasSGEMM(false, true, rows.count, oc, c, 1, inp + rows.lowerBound * c, c, weight, c, 1, out + rows.lowerBound * ld, ld)
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
