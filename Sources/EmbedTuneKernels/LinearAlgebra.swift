import CBLAS

/// Double-precision dense algebra for offline work on ΔW (adapter fusion, export): accuracy matters
/// more than speed there, and a merged matrix is computed once, never per step.

/// C[m×n] = A[m×k] · B[k×n] (+ C when accumulate), row-major Double.
public func dgemm(_ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>,
                  _ c: UnsafeMutablePointer<Double>, accumulate: Bool = false) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n),
                accumulate ? 1 : 0, c, Int32(n))
}

public struct LinearAlgebraError: Error, CustomStringConvertible {
    public let description: String
}

/// Thin SVD of a row-major m×n matrix: M = U · diag(S) · Vᵀ with k = min(m, n), singular values
/// descending. U comes back row-major m×k, Vᵀ row-major k×n.
///
/// LAPACK is column-major, so the row-major buffer is Mᵀ to it: dgesdd factors Mᵀ = U'·S·V'ᵀ, and
/// then M = V'·S·U'ᵀ — LAPACK's `vt` buffer read row-major is our U, its `u` buffer our Vᵀ.
public func thinSVD(rows m: Int, columns n: Int, _ matrix: [Double]) throws -> (u: [Double], s: [Double], vt: [Double]) {
    precondition(matrix.count == m * n)
    let k = min(m, n)
    var a = matrix
    var s = [Double](repeating: 0, count: k)
    var uLapack = [Double](repeating: 0, count: n * k)   // n×k column-major: our Vᵀ (k×n row-major)
    var vtLapack = [Double](repeating: 0, count: k * m)  // k×m column-major: our U (m×k row-major)
    var rowsL = Int32(n), colsL = Int32(m), lda = Int32(n), ldu = Int32(n), ldvt = Int32(k), info: Int32 = 0
    var iwork = [Int32](repeating: 0, count: 8 * k)
    var query = 0.0, lwork: Int32 = -1
    dgesdd_("S", &rowsL, &colsL, &a, &lda, &s, &uLapack, &ldu, &vtLapack, &ldvt, &query, &lwork, &iwork, &info, 1)
    guard info == 0 else { throw LinearAlgebraError(description: "dgesdd workspace query failed (info \(info))") }
    lwork = Int32(query)
    var work = [Double](repeating: 0, count: Int(lwork))
    dgesdd_("S", &rowsL, &colsL, &a, &lda, &s, &uLapack, &ldu, &vtLapack, &ldvt, &work, &lwork, &iwork, &info, 1)
    guard info == 0 else { throw LinearAlgebraError(description: "dgesdd did not converge (info \(info)) on a \(m)×\(n) matrix") }
    return (vtLapack, s, uLapack)
}
