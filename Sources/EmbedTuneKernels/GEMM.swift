import CBLAS

/// Row-major single-precision GEMM: C = alpha · op(A) · op(B) + beta · C,
/// op(A) is (m, k), op(B) is (k, n), C is (m, n); lda/ldb/ldc are row strides.
@inline(__always)
public func sgemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Linear layer forward: out = inp · Wᵀ (+ bias).
/// inp is (N, C), weight is (OC, C) as PyTorch stores it, bias is (OC), out is (N, OC).
public func linearForward(
    out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, n: Int, c: Int, oc: Int
) {
    sgemm(transB: true, m: n, n: oc, k: c, a: inp, lda: c, b: weight, ldb: c, c: out, ldc: oc)
    if let bias {
        for row in 0..<n {
            let o = out + row * oc
            for j in 0..<oc { o[j] += bias[j] }
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
