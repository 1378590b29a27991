import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// Drag-and-Drop's parameter generator (Liang et al., 2025): a cascade of hyper-convolutional
/// layers that turns a condition tensor — a batch of prompts' encodings — into the tensor the
/// LoRA weights are cut from. Each sample is a 3-D tensor (S, H, W); layer i maps
/// (S, H, W) → (S', H', W'):
///
///     n = LayerNorm over (H, W), affine                                  (S, H, W)
///     a = conv_h(conv_w(n))        width first: W→W' (channels W, spatial (H, S)), then H→H'
///                                  (channels H, spatial (S, W'))        (S, H', W')
///     b = tanh(conv_w'(conv_h'(n))) height first: H→H' (spatial (S, W)), then W→W' (spatial (H', S))
///     m = (a + b + bias) / 3       bias (H', W')
///     y = conv_s(m)                channels S→S', spatial (H', W'), with bias (S')
///     x ← x + y when the shapes agree, else y
///
/// Every convolution is a "same"-padded k × k Conv2d whose channels are one axis of the tensor
/// (the reference implementation's transposes); all but conv_s are without bias. One flat
/// parameter buffer with named views, gradients in a mirror, as `Hypernetwork`.
public final class HyperConvDecoder {
    public struct Config: Codable, Equatable, Sendable {
        /// The tensor's shape before the first layer and after each: [S, H, W] each.
        public var features: [[Int]]
        public var kernel: Int
        public init(features: [[Int]], kernel: Int) { self.features = features; self.kernel = kernel }
        public var inputCount: Int { features[0].reduce(1, *) }
        public var outputCount: Int { features.last!.reduce(1, *) }
    }

    struct View { let offset: Int, count: Int }
    struct Layer {
        let inShape: (s: Int, h: Int, w: Int), outShape: (s: Int, h: Int, w: Int)
        let normWeight: View, normBias: View, conv1w: View, conv1h: View, conv2h: View, conv2w: View, bias: View
        let convS: View, convSBias: View
    }

    public let config: Config
    public let params: FloatBuffer
    public let grads: FloatBuffer
    let layers: [Layer]
    public var parameterCount: Int { params.count }

    public init(config: Config, seed: UInt64 = 0) throws {
        guard config.features.count >= 2, config.features.allSatisfy({ $0.count == 3 && $0.allSatisfy { $0 > 0 } }) else {
            throw FormatError("hyper-convolution features: at least two shapes of three positive sizes [S, H, W]")
        }
        guard config.kernel > 0, config.kernel % 2 == 1 else { throw FormatError("hyper-convolution kernel \(config.kernel): expected an odd size") }
        self.config = config
        var offset = 0
        func view(_ count: Int) -> View { defer { offset += count }; return View(offset: offset, count: count) }
        let kk = config.kernel * config.kernel
        layers = zip(config.features, config.features.dropFirst()).map { i, o in
            Layer(inShape: (i[0], i[1], i[2]), outShape: (o[0], o[1], o[2]),
                  normWeight: view(i[1] * i[2]), normBias: view(i[1] * i[2]),
                  conv1w: view(o[2] * i[2] * kk), conv1h: view(o[1] * i[1] * kk),
                  conv2h: view(o[1] * i[1] * kk), conv2w: view(o[2] * i[2] * kk), bias: view(o[1] * o[2]),
                  convS: view(o[0] * i[0] * kk), convSBias: view(o[0]))
        }
        params = FloatBuffer(count: offset)
        grads = FloatBuffer(count: offset)
        initialise(seed: seed)
    }

    /// PyTorch's defaults: Conv2d U(±1/√(in·k²)) for weights and biases, LayerNorm 1 and 0, the
    /// layer bias U(±1/numel) as the reference implementation draws it.
    func initialise(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        func uniform(_ v: View, bound: Float) { params.fillUniform(offset: v.offset, count: v.count, bound: bound, rng: &rng) }
        let kk = Float(config.kernel * config.kernel)
        for l in layers {
            p(l.normWeight).update(repeating: 1, count: l.normWeight.count)
            p(l.normBias).update(repeating: 0, count: l.normBias.count)
            uniform(l.conv1w, bound: 1 / (Float(l.inShape.w) * kk).squareRoot())
            uniform(l.conv1h, bound: 1 / (Float(l.inShape.h) * kk).squareRoot())
            uniform(l.conv2h, bound: 1 / (Float(l.inShape.h) * kk).squareRoot())
            uniform(l.conv2w, bound: 1 / (Float(l.inShape.w) * kk).squareRoot())
            uniform(l.bias, bound: 1 / Float(l.bias.count))
            uniform(l.convS, bound: 1 / (Float(l.inShape.s) * kk).squareRoot())
            uniform(l.convSBias, bound: 1 / (Float(l.inShape.s) * kk).squareRoot())
        }
    }

    func p(_ v: View) -> UnsafeMutablePointer<Float> { params.pointer + v.offset }
    func g(_ v: View) -> UnsafeMutablePointer<Float> { grads.pointer + v.offset }
    public func zeroGrads() { grads.pointer.update(repeating: 0, count: grads.count) }

    /// What one layer's backward needs of its forward, per sample.
    struct LayerActivations {
        var x: [Float]            // input (S, H, W)
        var normalized: [Float]   // n
        var mean: [Float], rstd: [Float]   // per s
        var widthFirstMid: [Float]         // conv_w(n) as (S, H, W')
        var heightFirstMid: [Float]        // conv_h'(n) as (S, H', W)
        var tanhOut: [Float]               // b
        var mixed: [Float]                 // m
    }

    public struct Activations {
        let samples: Int
        var layers: [[LayerActivations]]   // [layer][sample]
        /// The generator's output, (samples, S, H, W) row-major.
        public var output: [Float]
    }

    /// Forward of `samples` condition tensors, (samples, S0, H0, W0) row-major.
    public func forward(_ input: [Float], samples: Int) -> Activations {
        precondition(input.count == samples * config.inputCount)
        var acts = [[LayerActivations]](repeating: [], count: layers.count)
        var output = [Float]()
        for n in 0..<samples {
            var x = Array(input[(n * config.inputCount)..<((n + 1) * config.inputCount)])
            for (li, l) in layers.enumerated() {
                let (a, y) = layerForward(l, x)
                acts[li].append(a)
                x = y.count == x.count && l.inShape == l.outShape ? zip(x, y).map(+) : y
            }
            output += x
        }
        return Activations(samples: samples, layers: acts, output: output)
    }

    func layerForward(_ l: Layer, _ x: [Float]) -> (LayerActivations, [Float]) {
        let (s, h, w) = l.inShape, (s2, h2, w2) = l.outShape, k = config.kernel, plane = h * w
        // LayerNorm over (H, W) of each s.
        var normalized = [Float](repeating: 0, count: x.count), mean = [Float](repeating: 0, count: s), rstd = mean
        for i in 0..<s {
            var sum = 0.0, sq = 0.0
            for j in 0..<plane { sum += Double(x[i * plane + j]) }
            let mu = sum / Double(plane)
            for j in 0..<plane { let d = Double(x[i * plane + j]) - mu; sq += d * d }
            let r = Float(1 / (sq / Double(plane) + 1e-5).squareRoot())
            mean[i] = Float(mu); rstd[i] = r
            for j in 0..<plane { normalized[i * plane + j] = (x[i * plane + j] - Float(mu)) * r * p(l.normWeight)[j] + p(l.normBias)[j] }
        }
        // Width first: (S,H,W) →[2,1,0] (W,H,S) conv → (W',H,S) →[2,1,0] (S,H,W') →[1,0,2] (H,S,W') conv → (H',S,W') →[1,0,2].
        let wMid = convOnAxis(normalized, dims: (s, h, w), perm: (2, 1, 0), weight: p(l.conv1w), outChannels: w2, k: k)
        let a = convOnAxis(wMid, dims: (s, h, w2), perm: (1, 0, 2), weight: p(l.conv1h), outChannels: h2, k: k)
        // Height first: (S,H,W) →[1,0,2] conv H→H' → (S,H',W) →[2,1,0] conv W→W' → (S,H',W'), tanh.
        let hMid = convOnAxis(normalized, dims: (s, h, w), perm: (1, 0, 2), weight: p(l.conv2h), outChannels: h2, k: k)
        let b = convOnAxis(hMid, dims: (s, h2, w), perm: (2, 1, 0), weight: p(l.conv2w), outChannels: w2, k: k).map { tanhf($0) }
        let plane2 = h2 * w2
        var mixed = [Float](repeating: 0, count: s * plane2)
        for i in 0..<s { for j in 0..<plane2 { mixed[i * plane2 + j] = (a[i * plane2 + j] + b[i * plane2 + j] + p(l.bias)[j]) / 3 } }
        // conv_s: channels S → S', spatial (H', W'), bias.
        var y = convOnAxis(mixed, dims: (s, h2, w2), perm: (0, 1, 2), weight: p(l.convS), outChannels: s2, k: k)
        for i in 0..<s2 { for j in 0..<plane2 { y[i * plane2 + j] += p(l.convSBias)[i] } }
        return (LayerActivations(x: x, normalized: normalized, mean: mean, rstd: rstd, widthFirstMid: wMid, heightFirstMid: hMid,
                                 tanhOut: b, mixed: mixed), y)
    }

    /// Accumulates into `grads` the gradient of a loss whose gradient with respect to the output
    /// is `dOutput` (the shape of `act.output`).
    public func backward(_ act: Activations, dOutput: [Float]) {
        for n in 0..<act.samples {
            var dy = Array(dOutput[(n * config.outputCount)..<((n + 1) * config.outputCount)])
            for li in stride(from: layers.count - 1, through: 0, by: -1) {
                let l = layers[li]
                let residual = l.inShape == l.outShape
                let dx = layerBackward(l, act.layers[li][n], dy)
                dy = residual ? zip(dy, dx).map(+) : dx
            }
        }
    }

    func layerBackward(_ l: Layer, _ a: LayerActivations, _ dy: [Float]) -> [Float] {
        let (s, h, w) = l.inShape, (s2, h2, w2) = l.outShape, k = config.kernel, plane = h * w, plane2 = h2 * w2
        for i in 0..<s2 { for j in 0..<plane2 { g(l.convSBias)[i] += dy[i * plane2 + j] } }
        let dMixed = convOnAxisBackward(a.mixed, dims: (s, h2, w2), perm: (0, 1, 2), weight: p(l.convS), dWeight: g(l.convS),
                                        outChannels: s2, k: k, dOut: dy)
        // m = (a + b + bias) / 3
        var dA = dMixed.map { $0 / 3 }
        for i in 0..<s { for j in 0..<plane2 { g(l.bias)[j] += dA[i * plane2 + j] } }
        let dB = zip(dA, a.tanhOut).map { $0 * (1 - $1 * $1) }
        // Height-first path back to n.
        let dHMid = convOnAxisBackward(a.heightFirstMid, dims: (s, h2, w), perm: (2, 1, 0), weight: p(l.conv2w), dWeight: g(l.conv2w),
                                       outChannels: w2, k: k, dOut: dB)
        var dNorm = convOnAxisBackward(a.normalized, dims: (s, h, w), perm: (1, 0, 2), weight: p(l.conv2h), dWeight: g(l.conv2h),
                                       outChannels: h2, k: k, dOut: dHMid)
        // Width-first path.
        let dWMid = convOnAxisBackward(a.widthFirstMid, dims: (s, h, w2), perm: (1, 0, 2), weight: p(l.conv1h), dWeight: g(l.conv1h),
                                       outChannels: h2, k: k, dOut: dA)
        dA = convOnAxisBackward(a.normalized, dims: (s, h, w), perm: (2, 1, 0), weight: p(l.conv1w), dWeight: g(l.conv1w),
                                outChannels: w2, k: k, dOut: dWMid)
        for i in dNorm.indices { dNorm[i] += dA[i] }
        // LayerNorm backward, per s over the (H, W) plane.
        var dx = [Float](repeating: 0, count: s * plane)
        for i in 0..<s {
            let mu = a.mean[i], r = a.rstd[i]
            var sumDxhat = 0.0, sumDxhatXhat = 0.0
            var dxhat = [Float](repeating: 0, count: plane), xhat = dxhat
            for j in 0..<plane {
                xhat[j] = (a.x[i * plane + j] - mu) * r
                let gnorm = dNorm[i * plane + j]
                g(l.normWeight)[j] += gnorm * xhat[j]
                g(l.normBias)[j] += gnorm
                dxhat[j] = gnorm * p(l.normWeight)[j]
                sumDxhat += Double(dxhat[j]); sumDxhatXhat += Double(dxhat[j] * xhat[j])
            }
            let m1 = Float(sumDxhat / Double(plane)), m2 = Float(sumDxhatXhat / Double(plane))
            for j in 0..<plane { dx[i * plane + j] = r * (dxhat[j] - m1 - xhat[j] * m2) }
        }
        return dx
    }
}

// MARK: convolutions on an axis of a 3-D tensor

/// The 3-D tensor `x` (dims d0, d1, d2) with its axes reordered: result axis i is x's axis perm.i.
func permute3(_ x: [Float], dims: (Int, Int, Int), perm: (Int, Int, Int)) -> [Float] {
    let d = [dims.0, dims.1, dims.2], p = [perm.0, perm.1, perm.2]
    if p == [0, 1, 2] { return x }
    let strides = [d[1] * d[2], d[2], 1]
    let (n0, n1, n2) = (d[p[0]], d[p[1]], d[p[2]]), (s0, s1, s2) = (strides[p[0]], strides[p[1]], strides[p[2]])
    var y = [Float](repeating: 0, count: x.count), o = 0
    for i in 0..<n0 { for j in 0..<n1 { for k in 0..<n2 { y[o] = x[i * s0 + j * s1 + k * s2]; o += 1 } } }
    return y
}

/// The inverse permutation's dims and order, to undo `permute3(_, dims:, perm:)` on its result.
func inverse(dims: (Int, Int, Int), perm: (Int, Int, Int)) -> (dims: (Int, Int, Int), perm: (Int, Int, Int)) {
    let d = [dims.0, dims.1, dims.2], p = [perm.0, perm.1, perm.2]
    var inv = [0, 0, 0]
    for i in 0..<3 { inv[p[i]] = i }
    return ((d[p[0]], d[p[1]], d[p[2]]), (inv[0], inv[1], inv[2]))
}

/// A "same"-padded k × k Conv2d without bias over `x` (dims) whose channels are axis perm.0 and
/// spatial axes perm.1, perm.2 (in that order, as PyTorch sees the transposed tensor); the
/// output has the channel axis resized to `outChannels` and its axes back in x's order.
/// weight: (outChannels, inChannels, k, k).
func convOnAxis(_ x: [Float], dims: (Int, Int, Int), perm: (Int, Int, Int), weight: UnsafePointer<Float>, outChannels: Int, k: Int) -> [Float] {
    let t = permute3(x, dims: dims, perm: perm)
    let d = [dims.0, dims.1, dims.2]
    let (c, ph, pw) = (d[perm.0], d[perm.1], d[perm.2])
    let cols = im2col(t, channels: c, height: ph, width: pw, k: k)
    var y = [Float](repeating: 0, count: outChannels * ph * pw)
    cols.withUnsafeBufferPointer { cb in
        y.withUnsafeMutableBufferPointer { yb in
            sgemm(m: outChannels, n: ph * pw, k: c * k * k, a: weight, lda: c * k * k, b: cb.baseAddress!, ldb: ph * pw,
                  c: yb.baseAddress!, ldc: ph * pw)
        }
    }
    var outDims = d
    outDims[perm.0] = outChannels
    let back = inverse(dims: (outDims[0], outDims[1], outDims[2]), perm: perm)
    return permute3(y, dims: back.dims, perm: back.perm)
}

/// Backward of `convOnAxis`: adds dL/dweight into `dWeight`, returns dL/dx.
func convOnAxisBackward(_ x: [Float], dims: (Int, Int, Int), perm: (Int, Int, Int), weight: UnsafePointer<Float>,
                        dWeight: UnsafeMutablePointer<Float>, outChannels: Int, k: Int, dOut: [Float]) -> [Float] {
    let d = [dims.0, dims.1, dims.2]
    let (c, ph, pw) = (d[perm.0], d[perm.1], d[perm.2])
    var outDims = d
    outDims[perm.0] = outChannels
    let dy = permute3(dOut, dims: (outDims[0], outDims[1], outDims[2]), perm: perm)
    let cols = im2col(permute3(x, dims: dims, perm: perm), channels: c, height: ph, width: pw, k: k)
    var dCols = [Float](repeating: 0, count: cols.count)
    dy.withUnsafeBufferPointer { dyb in
        cols.withUnsafeBufferPointer { cb in
            // dW (O, C·k²) += dy (O, P) · colsᵀ (P, C·k²)
            sgemm(transB: true, m: outChannels, n: c * k * k, k: ph * pw, a: dyb.baseAddress!, lda: ph * pw, b: cb.baseAddress!, ldb: ph * pw,
                  beta: 1, c: dWeight, ldc: c * k * k)
        }
        dCols.withUnsafeMutableBufferPointer { db in
            // dcols (C·k², P) = Wᵀ (C·k², O) · dy (O, P)
            sgemm(transA: true, m: c * k * k, n: ph * pw, k: outChannels, a: weight, lda: c * k * k, b: dyb.baseAddress!, ldb: ph * pw,
                  c: db.baseAddress!, ldc: ph * pw)
        }
    }
    let dt = col2im(dCols, channels: c, height: ph, width: pw, k: k)
    let back = inverse(dims: dims, perm: perm)
    return permute3(dt, dims: back.dims, perm: back.perm)
}

/// (C, H, W) → (C·k·k, H·W): row (c, ki, kj) holds x[c, y + ki − k/2, x + kj − k/2] (0 outside).
func im2col(_ x: [Float], channels c: Int, height h: Int, width w: Int, k: Int) -> [Float] {
    let r = k / 2
    var cols = [Float](repeating: 0, count: c * k * k * h * w)
    for ci in 0..<c { for ki in 0..<k { for kj in 0..<k {
        let row = ((ci * k + ki) * k + kj) * h * w
        for yy in 0..<h {
            let sy = yy + ki - r
            guard sy >= 0 && sy < h else { continue }
            for xx in 0..<w {
                let sx = xx + kj - r
                if sx >= 0 && sx < w { cols[row + yy * w + xx] = x[(ci * h + sy) * w + sx] }
            }
        }
    } } }
    return cols
}

/// The adjoint of `im2col`: sums each column entry back into the input position it was read from.
func col2im(_ cols: [Float], channels c: Int, height h: Int, width w: Int, k: Int) -> [Float] {
    let r = k / 2
    var x = [Float](repeating: 0, count: c * h * w)
    for ci in 0..<c { for ki in 0..<k { for kj in 0..<k {
        let row = ((ci * k + ki) * k + kj) * h * w
        for yy in 0..<h {
            let sy = yy + ki - r
            guard sy >= 0 && sy < h else { continue }
            for xx in 0..<w {
                let sx = xx + kj - r
                if sx >= 0 && sx < w { x[(ci * h + sy) * w + sx] += cols[row + yy * w + xx] }
            }
        }
    } } }
    return x
}
