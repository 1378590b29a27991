import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// Text-to-LoRA's "L" hypernetwork: a domain description's embedding, a learned embedding of the
/// layer index and one of the module type go through an MLP trunk of residual blocks; one linear
/// head per module type emits that layer's LoRA A and B (z-scored per module; `Hypernetwork
/// Targets` holds the scales).
///
///     x0 = [e (D) | layer[l] (Dl) | module[m] (Dm)]          (N, Din)   Din = D + Dl + Dm
///     h0 = x0 · Winᵀ + bin                                   (N, H)
///     block k: a = h · W1ᵀ + b1 (N, 2H); u = relu(a); h ← h + u · W2ᵀ + b2
///     y_m = h[rows of type m] · Wmᵀ + bm                     (Nm, P_m)  P_m = r·in_m + out_m·r
///
/// One row per (description, layer, module type); every parameter lives in one flat buffer
/// (`params`, gradients in `grads`) with named views, so an optimiser and an all-reduce see one
/// array.
public final class Hypernetwork {
    public struct Config: Codable, Equatable, Sendable {
        /// A module type: the LoRA target with the layer index taken out (e.g.
        /// "encoder.layer.*.attention.self.query"), and its linear's shape.
        public struct ModuleType: Codable, Equatable, Sendable {
            public var name: String
            public var inFeatures: Int
            public var outFeatures: Int
            public init(name: String, inFeatures: Int, outFeatures: Int) {
                self.name = name; self.inFeatures = inFeatures; self.outFeatures = outFeatures
            }
        }

        public var descriptionDim: Int
        public var layers: Int
        public var rank: Int
        public var moduleTypes: [ModuleType]
        public var layerEmbeddingDim = 32
        public var moduleEmbeddingDim = 32
        public var hidden = 256
        public var blocks = 2

        public init(descriptionDim: Int, layers: Int, rank: Int, moduleTypes: [ModuleType]) {
            self.descriptionDim = descriptionDim; self.layers = layers; self.rank = rank; self.moduleTypes = moduleTypes
        }

        var inputDim: Int { descriptionDim + layerEmbeddingDim + moduleEmbeddingDim }
        /// Values a head emits for a module type: A (r × in), then B (out × r).
        func outputs(_ m: Int) -> Int { rank * (moduleTypes[m].inFeatures + moduleTypes[m].outFeatures) }
    }

    /// A view into the flat buffers: `offset` and `count` floats.
    struct View { let offset: Int, count: Int }

    public let config: Config
    public let params: FloatBuffer
    public let grads: FloatBuffer
    let layerEmbedding: View, moduleEmbedding: View, inWeight: View, inBias: View
    let blockW1: [View], blockB1: [View], blockW2: [View], blockB2: [View]
    let headWeight: [View], headBias: [View]

    public var parameterCount: Int { params.count }

    public init(config: Config, seed: UInt64 = 0) {
        self.config = config
        var offset = 0
        func view(_ count: Int) -> View { defer { offset += count }; return View(offset: offset, count: count) }
        let c = config, h = c.hidden
        layerEmbedding = view(c.layers * c.layerEmbeddingDim)
        moduleEmbedding = view(c.moduleTypes.count * c.moduleEmbeddingDim)
        inWeight = view(h * c.inputDim)
        inBias = view(h)
        var w1 = [View](), b1 = [View](), w2 = [View](), b2 = [View]()
        for _ in 0..<c.blocks {
            w1.append(view(2 * h * h)); b1.append(view(2 * h)); w2.append(view(h * 2 * h)); b2.append(view(h))
        }
        (blockW1, blockB1, blockW2, blockB2) = (w1, b1, w2, b2)
        var hw = [View](), hb = [View]()
        for m in c.moduleTypes.indices { hw.append(view(c.outputs(m) * h)); hb.append(view(c.outputs(m))) }
        (headWeight, headBias) = (hw, hb)
        params = FloatBuffer(count: offset)
        grads = FloatBuffer(count: offset)
        initialise(seed: seed)
    }

    /// PyTorch's defaults: nn.Linear U(±1/√fan_in) for weights and biases, nn.Embedding N(0, 1);
    /// the heads and each block's second linear start at zero scale ×0.1 so that the trunk starts
    /// near the identity and the first outputs near the targets' mean.
    func initialise(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        func uniform(_ v: View, bound: Float) { params.fillUniform(offset: v.offset, count: v.count, bound: bound, rng: &rng) }
        func normal(_ v: View, scale: Float) {
            for i in 0..<v.count {
                let u1 = Float(rng.next() >> 40 + 1) / Float(1 << 24), u2 = Float(rng.next() >> 40) / Float(1 << 24)
                params.pointer[v.offset + i] = (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2) * scale
            }
        }
        let c = config, h = Float(c.hidden)
        normal(layerEmbedding, scale: 1)
        normal(moduleEmbedding, scale: 1)
        uniform(inWeight, bound: 1 / Float(c.inputDim).squareRoot()); uniform(inBias, bound: 1 / Float(c.inputDim).squareRoot())
        for k in 0..<c.blocks {
            uniform(blockW1[k], bound: 1 / h.squareRoot()); uniform(blockB1[k], bound: 1 / h.squareRoot())
            uniform(blockW2[k], bound: 0.1 / (2 * h).squareRoot()); uniform(blockB2[k], bound: 0.1 / (2 * h).squareRoot())
        }
        for m in c.moduleTypes.indices {
            uniform(headWeight[m], bound: 0.1 / h.squareRoot()); uniform(headBias[m], bound: 0.1 / h.squareRoot())
        }
    }

    func p(_ v: View) -> UnsafeMutablePointer<Float> { params.pointer + v.offset }
    func g(_ v: View) -> UnsafeMutablePointer<Float> { grads.pointer + v.offset }

    /// One forward pass's rows and what the backward pass needs of them.
    public struct Activations {
        /// Per row: which description (into the caller's embeddings), layer and module type.
        public let rows: [(description: Int, layer: Int, module: Int)]
        var x0: [Float]           // (N, Din)
        var hs: [[Float]]         // h before each block and after the last: blocks + 1 × (N, H)
        var pre: [[Float]]        // each block's a = h·W1ᵀ + b1, (N, 2H)
        /// Per module type: its rows (indices into `rows`) and the head's outputs (Nm, P_m).
        public var outputs: [[Float]]
        public var rowsOfType: [[Int]]
    }

    /// Forward for `rows`; `descriptions` are the description embeddings, (count, D) row-major.
    public func forward(descriptions: [Float], rows: [(description: Int, layer: Int, module: Int)]) -> Activations {
        let c = config, n = rows.count, h = c.hidden, din = c.inputDim, d = c.descriptionDim
        var x0 = [Float](repeating: 0, count: n * din)
        for (i, r) in rows.enumerated() {
            for j in 0..<d { x0[i * din + j] = descriptions[r.description * d + j] }
            for j in 0..<c.layerEmbeddingDim { x0[i * din + d + j] = p(layerEmbedding)[r.layer * c.layerEmbeddingDim + j] }
            for j in 0..<c.moduleEmbeddingDim {
                x0[i * din + d + c.layerEmbeddingDim + j] = p(moduleEmbedding)[r.module * c.moduleEmbeddingDim + j]
            }
        }
        var hcur = linear(x0, n: n, inFeatures: din, weight: p(inWeight), bias: p(inBias), outFeatures: h)
        var hs = [hcur], pre = [[Float]]()
        for k in 0..<c.blocks {
            let a = linear(hcur, n: n, inFeatures: h, weight: p(blockW1[k]), bias: p(blockB1[k]), outFeatures: 2 * h)
            let u = a.map { max($0, 0) }
            let v = linear(u, n: n, inFeatures: 2 * h, weight: p(blockW2[k]), bias: p(blockB2[k]), outFeatures: h)
            for i in 0..<(n * h) { hcur[i] += v[i] }
            pre.append(a)
            hs.append(hcur)
        }
        var rowsOfType = [[Int]](repeating: [], count: c.moduleTypes.count)
        for (i, r) in rows.enumerated() { rowsOfType[r.module].append(i) }
        let outputs = c.moduleTypes.indices.map { m -> [Float] in
            let idx = rowsOfType[m]
            guard !idx.isEmpty else { return [] }
            var gathered = [Float](repeating: 0, count: idx.count * h)
            for (t, i) in idx.enumerated() { for j in 0..<h { gathered[t * h + j] = hcur[i * h + j] } }
            return linear(gathered, n: idx.count, inFeatures: h, weight: p(headWeight[m]), bias: p(headBias[m]), outFeatures: c.outputs(m))
        }
        return Activations(rows: rows, x0: x0, hs: hs, pre: pre, outputs: outputs, rowsOfType: rowsOfType)
    }

    /// Accumulates into `grads` the gradient of a loss whose gradient with respect to each module
    /// type's outputs is `dOutputs` (same shapes as `activations.outputs`).
    public func backward(_ act: Activations, dOutputs: [[Float]]) {
        let c = config, n = act.rows.count, h = c.hidden, din = c.inputDim, d = c.descriptionDim
        var dh = [Float](repeating: 0, count: n * h)
        let hLast = act.hs[c.blocks]
        for m in c.moduleTypes.indices where !act.rowsOfType[m].isEmpty {
            let idx = act.rowsOfType[m], pm = c.outputs(m)
            var gathered = [Float](repeating: 0, count: idx.count * h)
            for (t, i) in idx.enumerated() { for j in 0..<h { gathered[t * h + j] = hLast[i * h + j] } }
            var dGathered = [Float](repeating: 0, count: idx.count * h)
            linearBackward(dOut: dOutputs[m], inp: gathered, n: idx.count, inFeatures: h, outFeatures: pm,
                           weight: p(headWeight[m]), dWeight: g(headWeight[m]), dBias: g(headBias[m]), dInp: &dGathered)
            for (t, i) in idx.enumerated() { for j in 0..<h { dh[i * h + j] += dGathered[t * h + j] } }
        }
        for k in stride(from: c.blocks - 1, through: 0, by: -1) {
            // h_out = h_in + relu(h_in·W1ᵀ + b1)·W2ᵀ + b2: dh passes through, and down the branch.
            let a = act.pre[k], u = a.map { max($0, 0) }
            var du = [Float](repeating: 0, count: n * 2 * h)
            linearBackward(dOut: dh, inp: u, n: n, inFeatures: 2 * h, outFeatures: h,
                           weight: p(blockW2[k]), dWeight: g(blockW2[k]), dBias: g(blockB2[k]), dInp: &du)
            for i in du.indices where a[i] <= 0 { du[i] = 0 }
            var dIn = [Float](repeating: 0, count: n * h)
            linearBackward(dOut: du, inp: act.hs[k], n: n, inFeatures: h, outFeatures: 2 * h,
                           weight: p(blockW1[k]), dWeight: g(blockW1[k]), dBias: g(blockB1[k]), dInp: &dIn)
            for i in dh.indices { dh[i] += dIn[i] }
        }
        var dx0 = [Float](repeating: 0, count: n * din)
        linearBackward(dOut: dh, inp: act.x0, n: n, inFeatures: din, outFeatures: h,
                       weight: p(inWeight), dWeight: g(inWeight), dBias: g(inBias), dInp: &dx0)
        for (i, r) in act.rows.enumerated() {
            for j in 0..<c.layerEmbeddingDim { g(layerEmbedding)[r.layer * c.layerEmbeddingDim + j] += dx0[i * din + d + j] }
            for j in 0..<c.moduleEmbeddingDim {
                g(moduleEmbedding)[r.module * c.moduleEmbeddingDim + j] += dx0[i * din + d + c.layerEmbeddingDim + j]
            }
        }
    }

    public func zeroGrads() { grads.pointer.update(repeating: 0, count: grads.count) }

    /// out (n, outFeatures) = inp (n, inFeatures) · weightᵀ + bias.
    func linear(_ inp: [Float], n: Int, inFeatures: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, outFeatures: Int) -> [Float] {
        var out = [Float](repeating: 0, count: n * outFeatures)
        for i in 0..<n { for j in 0..<outFeatures { out[i * outFeatures + j] = bias[j] } }
        inp.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in
                sgemm(transB: true, m: n, n: outFeatures, k: inFeatures, a: x.baseAddress!, lda: inFeatures, b: weight, ldb: inFeatures,
                      beta: 1, c: o.baseAddress!, ldc: outFeatures)
            }
        }
        return out
    }

    /// dWeight += dOutᵀ · inp, dBias += Σ dOut, dInp = dOut · weight (overwritten).
    func linearBackward(dOut: [Float], inp: [Float], n: Int, inFeatures: Int, outFeatures: Int, weight: UnsafePointer<Float>,
                        dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>, dInp: inout [Float]) {
        dOut.withUnsafeBufferPointer { dy in
            inp.withUnsafeBufferPointer { x in
                sgemm(transA: true, m: outFeatures, n: inFeatures, k: n, a: dy.baseAddress!, lda: outFeatures, b: x.baseAddress!, ldb: inFeatures,
                      beta: 1, c: dWeight, ldc: inFeatures)
            }
            for i in 0..<n { for j in 0..<outFeatures { dBias[j] += dy[i * outFeatures + j] } }
            dInp.withUnsafeMutableBufferPointer { dx in
                sgemm(m: n, n: inFeatures, k: outFeatures, a: dy.baseAddress!, lda: outFeatures, b: weight, ldb: inFeatures,
                      c: dx.baseAddress!, ldc: inFeatures)
            }
        }
    }
}

extension FloatBuffer {
    /// Values offset..<offset+count drawn from U(−bound, bound), as nn.init.uniform_ does.
    func fillUniform(offset: Int, count: Int, bound: Float, rng: inout SplitMix64) {
        for i in 0..<count { pointer[offset + i] = (Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1) * bound }
    }
}
