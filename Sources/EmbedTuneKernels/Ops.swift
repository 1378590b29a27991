import CEmbedTuneAVX2
import Foundation

// Elementwise and fused kernels, llm.c style: free functions over raw pointers, each headed by
// the shapes it expects. N is the number of tokens (packed, no padding), C the channel count.

/// Rows per parallel chunk so that each chunk holds at least ~16k values.
@inline(__always)
func rowGrain(_ c: Int) -> Int { max(1, 16_384 / max(c, 1)) }

/// RMSNorm: out = inp / sqrt(mean(inp²) + eps) · weight, statistics in fp32 as HF computes them.
/// inp, out are (N, C); weight is (C); rstd (optional, for backward) is (N).
public func rmsnormForward(
    out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>? = nil,
    inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, n: Int, c: Int, eps: Float
) {
    ComputeTeam.current.parallelFor(n, grain: rowGrain(c)) { rows in
        if GEMMKernel.current.isOwn {  // the same arithmetic in C with FMA
            let r0 = rows.lowerBound
            return embedtune_rmsnorm_rows(out + r0 * c, rstd.map { $0 + r0 }, inp + r0 * c, weight, rows.count, c, eps)
        }
        for row in rows {
            let x = inp + row * c, o = out + row * c
            let r = 1 / (dot8(x, x, c) / Float(c) + eps).squareRoot()
            rstd?[row] = r
            var i = 0
            while i < c { store8(load8(x, i, c) * r * load8(weight, i, c), o, i, c); i += 8 }
        }
    }
}

/// LayerNorm over the last dimension. inp, out are (N, C); weight, bias are (C);
/// mean and rstd (optional, for backward) are (N). out may alias inp.
public func layernormForward(
    out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>? = nil,
    rstd: UnsafeMutablePointer<Float>? = nil, inp: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, n: Int, c: Int, eps: Float
) {
    ComputeTeam.current.parallelFor(n, grain: rowGrain(c)) { rows in
        if GEMMKernel.current.isOwn {
            let r0 = rows.lowerBound
            // inp is only read (no residual), and out may alias it.
            return embedtune_add_layernorm_rows(out + r0 * c, mean.map { $0 + r0 }, rstd.map { $0 + r0 },
                                                UnsafeMutablePointer(mutating: inp) + r0 * c, nil, weight, bias, rows.count, c, eps)
        }
        for row in rows { layernormRow(out, mean, rstd, inp, row, weight, bias, c, eps) }
    }
}

/// A residual add and the LayerNorm after it, row by row: sum += residual (backward reads the
/// sum), then out = LayerNorm(sum). Each row is normalised while it is still in L1, whereas adding
/// all rows first and normalising them after goes through memory twice. Same arithmetic as
/// `addInPlace` then `layernormForward`. (On AVX2 CPUs both run in C with FMA; Swift's SIMD8 is two
/// SSE halves without it.)
public func addLayernormForward(
    out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>? = nil,
    rstd: UnsafeMutablePointer<Float>? = nil, sum: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, n: Int, c: Int, eps: Float
) {
    ComputeTeam.current.parallelFor(n, grain: rowGrain(c)) { rows in
        if GEMMKernel.current.isOwn {
            let r0 = rows.lowerBound
            return embedtune_add_layernorm_rows(out + r0 * c, mean.map { $0 + r0 }, rstd.map { $0 + r0 }, sum + r0 * c,
                                                residual + r0 * c, weight, bias, rows.count, c, eps)
        }
        for row in rows {
            let x = sum + row * c, r = residual + row * c
            var i = 0
            while i < c { store8(load8(x, i, c) + load8(r, i, c), x, i, c); i += 8 }
            layernormRow(out, mean, rstd, sum, row, weight, bias, c, eps)
        }
    }
}

@inline(__always)
private func layernormRow(
    _ out: UnsafeMutablePointer<Float>, _ mean: UnsafeMutablePointer<Float>?, _ rstd: UnsafeMutablePointer<Float>?,
    _ inp: UnsafePointer<Float>, _ row: Int, _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>, _ c: Int, _ eps: Float
) {
    let x = inp + row * c, o = out + row * c
    let m = sum8(x, c) / Float(c)
    let r = 1 / (squaredDeviation8(x, m, c) / Float(c) + eps).squareRoot()
    mean?[row] = m
    rstd?[row] = r
    var i = 0
    while i < c {
        store8((load8(x, i, c) - m) * r * load8(weight, i, c) + load8(bias, i, c), o, i, c)
        i += 8
    }
}

/// Rotary position tables for head size D: cos/sin are (maxPositions, D/2), angle = p · θ^(-2i/D).
public struct RotaryTable {
    public let headDim: Int
    public let cos: [Float]
    public let sin: [Float]
    public let maxPositions: Int

    public init(headDim: Int, theta: Double, maxPositions: Int) {
        self.headDim = headDim
        self.maxPositions = maxPositions
        let half = headDim / 2
        // HF computes inv_freq in fp32, then the angle as an fp32 product; mirror that exactly.
        let invFreq = (0..<half).map { i in Float(1.0 / pow(theta, Double(2 * i) / Double(headDim))) }
        var c = [Float](repeating: 0, count: maxPositions * half), s = c
        for p in 0..<maxPositions {
            for i in 0..<half {
                let angle = Float(p) * invFreq[i]
                c[p * half + i] = Foundation.cos(angle)
                s[p * half + i] = Foundation.sin(angle)
            }
        }
        cos = c
        sin = s
    }
}

/// RoPE in place with HF's rotate_half pairing (i, i + D/2).
/// x is (N, H, D) packed tokens; positions is (N).
public func ropeForward(
    x: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>, n: Int, heads: Int, table: RotaryTable
) {
    ropeRotate(x: x, positions: positions, n: n, heads: heads, table: table, inverse: false)
}

/// Rotates each (i, i + D/2) pair by the position's angle, or by its negative (`inverse`).
func ropeRotate(
    x: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>, n: Int, heads: Int, table: RotaryTable, inverse: Bool
) {
    let d = table.headDim, half = d / 2, sign: Float = inverse ? -1 : 1
    table.cos.withUnsafeBufferPointer { cosTable in
        table.sin.withUnsafeBufferPointer { sinTable in
            ComputeTeam.current.parallelFor(n, grain: rowGrain(heads * d)) { tokens in
              for t in tokens {
                let cs = cosTable.baseAddress! + Int(positions[t]) * half
                let sn = sinTable.baseAddress! + Int(positions[t]) * half
                for h in 0..<heads {
                    let v = x + (t * heads + h) * d
                    for i in 0..<half {
                        let a = v[i], b = v[i + half], s = sign * sn[i]
                        v[i] = a * cs[i] - b * s
                        v[i + half] = b * cs[i] + a * s
                    }
                }
              }
            }
        }
    }
}

/// SwiGLU over rows whose gate and up halves sit in one fused projection: gate row i at
/// gate + i·ld, up row i at up + i·ld (a [gate | up] buffer has ld = 2I); out is (N, I).
public func swigluForward(
    out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int
) {
    ComputeTeam.current.parallelFor(rows, grain: rowGrain(cols)) { range in
        for r in range {
            let g0 = gate + r * ld, u0 = up + r * ld, o = out + r * cols
            if GEMMKernel.current.isOwn {
                embedtune_swiglu(o, g0, u0, cols)
                continue
            }
            var i = 0
            while i < cols {
                store8(swiglu8(load8(g0, i, cols), load8(u0, i, cols)), o, i, cols)
                i += 8
            }
        }
    }
}

/// SwiGLU: out = silu(gate) · up. All are (N·I).
public func swigluForward(
    out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int
) {
    if GEMMKernel.current.isOwn {
        forEachRange(count) { r in embedtune_swiglu(out + r.lowerBound, gate + r.lowerBound, up + r.lowerBound, r.count) }
        return
    }
    forEachVector(count) { i in store8(swiglu8(load8(gate, i, count), load8(up, i, count)), out, i, count) }
}

/// silu(g)·u for eight values.
@inline(__always)
func swiglu8(_ g: Float8, _ u: Float8) -> Float8 { g * vsigmoid(g) * u }

let invSqrt2: Float = 0.707_106_781_186_547_52
let invSqrt2Pi: Float = 0.398_942_280_401_432_7
let geluTanhK: Float = 0.797_884_560_802_865_4

/// Φ(x), the standard normal CDF, for eight values: GELU is x·Φ(x).
@inline(__always)
func geluCDF8(_ v: Float8) -> Float8 { 0.5 * (1 + verf(v * invSqrt2)) }

/// GELU's slope Φ(x) + x·φ(x), given Φ(x).
@inline(__always)
func geluSlope8(_ v: Float8, cdf: Float8) -> Float8 { cdf + v * vexp(-0.5 * v * v) * invSqrt2Pi }

/// tanh-GELU and its slope for eight values.
@inline(__always)
func geluTanh8(_ v: Float8) -> (value: Float8, slope: Float8) {
    let v2 = v * v
    let t = vtanh(geluTanhK * (v + 0.044715 * v2 * v))
    let dInner: Float8 = geluTanhK * (1 + 0.134145 * v2)
    return (0.5 * v * (1 + t), 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * dInner)
}

/// Exact (erf) GELU, as BERT's "gelu" activation: out = x·Φ(x). inp, out are (count); out may
/// alias inp.
public func geluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
    if GEMMKernel.current.isOwn {
        forEachRange(count) { r in embedtune_gelu(out + r.lowerBound, inp + r.lowerBound, r.count) }
        return
    }
    forEachVector(count) { i in
        let v = load8(inp, i, count)
        store8(v * geluCDF8(v), out, i, count)
    }
}

/// tanh-approximated GELU ("gelu_new", "gelu_pytorch_tanh"). inp, out are (count); may alias.
public func geluTanhForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
    forEachVector(count) { i in
        store8(geluTanh8(load8(inp, i, count)).value, out, i, count)
    }
}

/// Training forms: the activation and its slope in one pass. out = f(x) and x is overwritten
/// with f'(x) (the pre-activation is not needed again), so backward is one multiply
/// (`multiplySlope`) instead of recomputing erf/tanh and exp. All (count).
public func geluForward(out: UnsafeMutablePointer<Float>, slopeInPlace x: UnsafeMutablePointer<Float>, count: Int) {
    if GEMMKernel.current.isOwn {
        forEachRange(count) { r in embedtune_gelu_slope(out + r.lowerBound, x + r.lowerBound, r.count) }
        return
    }
    forEachVector(count) { i in
        let v = load8(x, i, count), cdf = geluCDF8(v)
        store8(v * cdf, out, i, count)
        store8(geluSlope8(v, cdf: cdf), x, i, count)
    }
}

public func geluTanhForward(out: UnsafeMutablePointer<Float>, slopeInPlace x: UnsafeMutablePointer<Float>, count: Int) {
    forEachVector(count) { i in
        let (value, slope) = geluTanh8(load8(x, i, count))
        store8(value, out, i, count)
        store8(slope, x, i, count)
    }
}

public func reluForward(out: UnsafeMutablePointer<Float>, slopeInPlace x: UnsafeMutablePointer<Float>, count: Int) {
    forEachVector(count) { i in
        let v = load8(x, i, count), positive = v .> 0
        store8(vmax(v, Float8()), out, i, count)
        store8(Float8(repeating: 0).replacing(with: 1, where: positive), x, i, count)
    }
}

/// ReLU. inp, out are (count); may alias.
public func reluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
    forEachVector(count) { i in store8(vmax(load8(inp, i, count), Float8()), out, i, count) }
}

public func geluForward(_ x: UnsafeMutablePointer<Float>, count: Int) { geluForward(out: x, inp: x, count: count) }
public func geluTanhForward(_ x: UnsafeMutablePointer<Float>, count: Int) { geluTanhForward(out: x, inp: x, count: count) }

/// Residual add in place: x += y. Both are (count).
public func addInPlace(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
    forEachVector(count) { i in store8(load8(x, i, count) + load8(y, i, count), x, i, count) }
}

/// out = x + y. All are (count); out may alias x or y.
public func add(out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
    forEachVector(count) { i in store8(load8(x, i, count) + load8(y, i, count), out, i, count) }
}

/// Row-wise L2 normalisation in place, as torch.nn.functional.normalize (eps 1e-12).
/// x is (N, C).
public func l2NormalizeRows(_ x: UnsafeMutablePointer<Float>, n: Int, c: Int) {
    ComputeTeam.current.parallelFor(n, grain: rowGrain(c)) { rows in
        for row in rows {
            let v = x + row * c
            let scale = 1 / max(dot8(v, v, c).squareRoot(), 1e-12)
            var i = 0
            while i < c { store8(load8(v, i, c) * scale, v, i, c); i += 8 }
        }
    }
}

/// Matryoshka truncation: the first `dim` components of each of the first `n` rows of x (N, C),
/// L2-normalised when `normalize` (sentence-transformers' truncate_dim, then normalize): (N, dim).
public func truncatedRows(_ x: [Float], n: Int, c: Int, dim: Int, normalize: Bool = true) -> [Float] {
    precondition(dim > 0 && dim <= c && x.count >= n * c, "truncation to \(dim) of \(n) rows of \(c)")
    var out = [Float](repeating: 0, count: n * dim)
    x.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            for row in 0..<n { (dst.baseAddress! + row * dim).update(from: src.baseAddress! + row * c, count: dim) }
            if normalize { l2NormalizeRows(dst.baseAddress!, n: n, c: dim) }
        }
    }
    return out
}

/// Softmax in place over each of `rows` rows of `len` (attention's score block): causal rows i keep
/// their first i + 1 entries (the rest become 0), otherwise every entry counts.
@inline(__always)
public func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, len: Int, causal: Bool) {
    if GEMMKernel.current.isOwn { return embedtune_softmax_rows(p, rows, len, causal) }
    for i in 0..<rows { softmaxPrefix(p + i * len, valid: causal ? i + 1 : len, len: len) }
}

/// Softmax in place over the first `valid` entries of a row; entries past it become 0.
/// row is (len).
@inline(__always)
public func softmaxPrefix(_ row: UnsafeMutablePointer<Float>, valid: Int, len: Int) {
    var maxima = Float8(repeating: -.infinity)
    var j = 0
    while j + 8 <= valid { maxima = vmax(maxima, ld(row + j)); j += 8 }
    var m = maxima.max()
    while j < valid { m = max(m, row[j]); j += 1 }
    var sums = Float8()
    j = 0
    while j + 8 <= valid {
        let e = vexp(ld(row + j) - m)
        sums += e
        st(e, row + j)
        j += 8
    }
    var sum = sums.sum()
    if j < valid {
        // The tail through the same vector exp, so every entry is computed alike.
        let e = vexp(load8(row, j, valid) - m)
        for l in 0..<(valid - j) { sum += e[l]; row[j + l] = e[l] }
    }
    let inv = 1 / sum
    j = 0
    while j + 8 <= valid { st(ld(row + j) * inv, row + j); j += 8 }
    while j < valid { row[j] *= inv; j += 1 }
    for j in valid..<len { row[j] = 0 }
}
