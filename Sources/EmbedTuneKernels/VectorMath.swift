// Eight-lane fp32 math for the element-wise kernels, in place of libm's scalar erff/expf (15% of
// an embedding pass when called per value). Each function is a polynomial evaluated on SIMD8 (two SSE or one AVX register),
// checked against Double references in the tests (VectorMathTests).

public typealias Float8 = SIMD8<Float>

/// min(max(x, lo), hi) lane-wise. (The standard library's generic `clamped` and
/// `pointwiseMax` did not specialise: one call per lane.)
@inline(__always)
public func vclamp(_ x: Float8, _ lo: Float, _ hi: Float) -> Float8 {
    let l = Float8(repeating: lo), h = Float8(repeating: hi)
    return x.replacing(with: l, where: x .< l).replacing(with: h, where: x .> h)
}

@inline(__always)
public func vmax(_ x: Float8, _ y: Float8) -> Float8 { x.replacing(with: y, where: y .> x) }

/// exp(x), Cephes' expf scheme: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two for an exact
/// n·ln2), a degree-6 polynomial for e^r, then 2^n through the exponent bits. Max relative error
/// ≈ 2 ulp; inputs are clamped to [−87.3, 88] (below that the result is ~1e-38, not 0).
/// n = round(x·log2 e) comes from adding 1.5·2²³, whose float then holds n in its low mantissa
/// bits, so no float→int conversion is needed.
@inline(__always)
public func vexp(_ x: Float8) -> Float8 {
    let x = vclamp(x, -87.336_54, 88)
    let shifter = Float8(repeating: 12_582_912)  // 1.5 · 2²³
    let t = x * 1.442_695_04 + shifter
    let n = t - shifter
    let r = x - n * 0.693_359_375 - n * -2.121_944_4e-4
    var p = Float8(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_1e-1
    p = p * r * r + r + 1
    let ni = unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let bits = (ni &+ 127) &<< 23
    return p * unsafeBitCast(bits, to: Float8.self)
}

/// erf(x) as a rational function x·P(x²)/Q(x²) on [−4, 4] (±1 outside in fp32), the form
/// Eigen and XLA use. Max absolute error 4.2e-7.
@inline(__always)
public func verf(_ x: Float8) -> Float8 {
    let x = vclamp(x, -4, 4)
    let x2 = x * x
    var p = Float8(repeating: -2.726_142_258_013_06e-10)
    p = p * x2 + 2.770_681_424_959_02e-08
    p = p * x2 - 2.101_024_020_825_08e-06
    p = p * x2 - 5.692_506_394_623_46e-05
    p = p * x2 - 7.349_906_303_268_55e-04
    p = p * x2 - 2.954_599_808_540_25e-03
    p = p * x2 - 1.609_603_332_624_15e-02
    var q = Float8(repeating: -1.456_607_184_649_96e-05)
    q = q * x2 - 2.133_740_552_789_05e-04
    q = q * x2 - 1.682_826_974_382_03e-03
    q = q * x2 - 7.373_329_167_204_68e-03
    q = q * x2 - 1.426_473_905_141_89e-02
    return x * p / q
}

/// 1 / (1 + e^−x).
@inline(__always)
public func vsigmoid(_ x: Float8) -> Float8 { 1 / (1 + vexp(-x)) }

/// tanh(x) = 1 − 2 / (e^{2x} + 1), exact enough away from 0 and continuous through it.
@inline(__always)
public func vtanh(_ x: Float8) -> Float8 {
    let one = Float8(repeating: 1), two = Float8(repeating: 2)
    let small: SIMDMask<SIMD8<Int32>> = (x .< Float8(repeating: 0.004)) .& (x .> Float8(repeating: -0.004))
    let t: Float8 = one - two / (vexp(two * x) + one)
    // Near 0 the subtraction cancels: use x − x³/3 there.
    let cubic: Float8 = x * x * x / Float8(repeating: 3)
    return t.replacing(with: x - cubic, where: small)
}

/// Eight values at p (no alignment needed).
@inlinable @inline(__always)
public func ld(_ p: UnsafePointer<Float>) -> Float8 { UnsafeRawPointer(p).loadUnaligned(as: Float8.self) }

@inlinable @inline(__always)
public func st(_ v: Float8, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float8.self) }

/// Eight values at p + i, zero-padded past `count`.
@inlinable @inline(__always)
public func load8(_ p: UnsafePointer<Float>, _ i: Int, _ count: Int) -> Float8 {
    if i + 8 <= count { return UnsafeRawPointer(p + i).loadUnaligned(as: Float8.self) }
    var v = Float8()
    for l in 0..<(count - i) { v[l] = p[i + l] }
    return v
}

@inlinable @inline(__always)
public func store8(_ v: Float8, _ p: UnsafeMutablePointer<Float>, _ i: Int, _ count: Int) {
    if i + 8 <= count { UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: Float8.self); return }
    for l in 0..<(count - i) { p[i + l] = v[l] }
}

/// Σ x[i]·y[i] over `count` values, eight partial sums.
@inline(__always)
func dot8(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ count: Int) -> Float {
    var acc = Float8()
    var i = 0
    while i + 8 <= count { acc += ld(x + i) * ld(y + i); i += 8 }
    var total = acc.sum()
    while i < count { total += x[i] * y[i]; i += 1 }
    return total
}

/// Σ x[i] over `count` values, eight partial sums.
@inline(__always)
func sum8(_ x: UnsafePointer<Float>, _ count: Int) -> Float {
    var acc = Float8()
    var i = 0
    while i + 8 <= count { acc += ld(x + i); i += 8 }
    var total = acc.sum()
    while i < count { total += x[i]; i += 1 }
    return total
}

/// Σ (x[i] − m)² over `count` values.
@inline(__always)
func squaredDeviation8(_ x: UnsafePointer<Float>, _ m: Float, _ count: Int) -> Float {
    var acc = Float8()
    var i = 0
    while i + 8 <= count { let d = ld(x + i) - m; acc += d * d; i += 8 }
    var total = acc.sum()
    while i < count { let d = x[i] - m; total += d * d; i += 1 }
    return total
}

/// Element-wise loops over the compute team: `body(i)` handles the eight values at i (fewer at
/// the tail, which load8/store8 pad).
@inline(__always)
func forEachVector(_ count: Int, _ body: (Int) -> Void) {
    ComputeTeam.current.parallelFor((count + 7) / 8, grain: 2048) { chunk in
        for v in chunk { body(v * 8) }
    }
}

/// `body(range)` over 0..<count in one contiguous range per thread, for kernels that loop
/// themselves (the AVX2 ones, which mask their own tails).
func forEachRange(_ count: Int, _ body: (Range<Int>) -> Void) {
    ComputeTeam.current.parallelFor(count, grain: 16_384, body)
}
