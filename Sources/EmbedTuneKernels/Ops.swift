import Foundation

// Elementwise and fused kernels, llm.c style: free functions over raw pointers, each headed by
// the shapes it expects. N is the number of tokens (packed, no padding), C the channel count.

/// RMSNorm: out = inp / sqrt(mean(inp²) + eps) · weight, statistics in fp32 as HF computes them.
/// inp, out are (N, C); weight is (C); rstd (optional, for backward) is (N).
public func rmsnormForward(
    out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>? = nil,
    inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, n: Int, c: Int, eps: Float
) {
    for row in 0..<n {
        let x = inp + row * c, o = out + row * c
        var sumSquares: Float = 0
        for i in 0..<c { sumSquares += x[i] * x[i] }
        let r = 1 / (sumSquares / Float(c) + eps).squareRoot()
        rstd?[row] = r
        for i in 0..<c { o[i] = (x[i] * r) * weight[i] }
    }
}

/// LayerNorm over the last dimension. inp, out are (N, C); weight, bias are (C);
/// mean and rstd (optional, for backward) are (N).
public func layernormForward(
    out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>? = nil,
    rstd: UnsafeMutablePointer<Float>? = nil, inp: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, n: Int, c: Int, eps: Float
) {
    for row in 0..<n {
        let x = inp + row * c, o = out + row * c
        var m: Float = 0
        for i in 0..<c { m += x[i] }
        m /= Float(c)
        var v: Float = 0
        for i in 0..<c { let d = x[i] - m; v += d * d }
        let r = 1 / (v / Float(c) + eps).squareRoot()
        mean?[row] = m
        rstd?[row] = r
        for i in 0..<c { o[i] = (x[i] - m) * r * weight[i] + bias[i] }
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
            for t in 0..<n {
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

/// SwiGLU: out = silu(gate) · up. All are (N·I).
public func swigluForward(
    out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int
) {
    for i in 0..<count {
        let g = gate[i]
        out[i] = g / (1 + expf(-g)) * up[i]
    }
}

/// Exact (erf) GELU in place, as BERT's "gelu" activation. x is (count).
public func geluForward(_ x: UnsafeMutablePointer<Float>, count: Int) {
    let invSqrt2: Float = 0.70710678118654752
    for i in 0..<count { x[i] = 0.5 * x[i] * (1 + erff(x[i] * invSqrt2)) }
}

/// Residual add in place: x += y. Both are (count).
public func addInPlace(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { x[i] += y[i] }
}

/// Row-wise L2 normalisation in place, as torch.nn.functional.normalize (eps 1e-12).
/// x is (N, C).
public func l2NormalizeRows(_ x: UnsafeMutablePointer<Float>, n: Int, c: Int) {
    for row in 0..<n {
        let v = x + row * c
        var s: Float = 0
        for i in 0..<c { s += v[i] * v[i] }
        let scale = 1 / max(s.squareRoot(), 1e-12)
        for i in 0..<c { v[i] *= scale }
    }
}

/// Softmax in place over the first `valid` entries of a row; entries past it become 0.
/// row is (len).
@inline(__always)
public func softmaxPrefix(_ row: UnsafeMutablePointer<Float>, valid: Int, len: Int) {
    var m = -Float.infinity
    for j in 0..<valid { m = max(m, row[j]) }
    var sum: Float = 0
    for j in 0..<valid { let e = expf(row[j] - m); row[j] = e; sum += e }
    let inv = 1 / sum
    for j in 0..<valid { row[j] *= inv }
    for j in valid..<len { row[j] = 0 }
}

/// tanh-approximated GELU in place ("gelu_new", "gelu_pytorch_tanh"). x is (count).
public func geluTanhForward(_ x: UnsafeMutablePointer<Float>, count: Int) {
    let k: Float = 0.7978845608028654
    for i in 0..<count {
        let v = x[i]
        x[i] = 0.5 * v * (1 + tanhf(k * (v + 0.044715 * v * v * v)))
    }
}
