import EmbedTuneKernels
import EmbedTuneModels
import Foundation
import Testing

@Suite("INT8 inference", .serialized)
struct Int8Tests {
    static func random(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in (Float(rng.next() >> 40) / Float(1 << 24) - 0.5) * 2 * scale }
    }

    /// Symmetric quantisation as embedtune_int8.h defines it: scale max|x|/127 (1 when that is 0),
    /// round half to even, clamp to ±127, NaN → 0.
    static func quantizeSymmetric(_ x: [Float], reach: Float? = nil, shift: Float = 0) -> (q: [Int32], scale: Float) {
        let top = reach ?? x.reduce(Float(0)) { $1.isNaN ? $0 : max($0, abs($1)) }
        let scale = top / 127 > 0 ? top / 127 : 1
        return (x.map { v in
            let y = (v - shift) / scale
            return y.isNaN ? 0 : Int32(max(-127, min(127, y)).rounded(.toNearestOrEven))
        }, scale)
    }

    /// The product Int8PackedWeight computes, worked out here: the input channels in ⌈k / groupSize⌉
    /// nearly equal groups; per group, weights quantised symmetrically per output channel, and each
    /// activation row centred on the middle m of its [min, max] (0 if not finite) and quantised with
    /// scale max|x − m|/127; int32 sums; the first group fma(acc, sa·sw, bias) then fma(m, rowsum, ·),
    /// each later group added as out + fma(m, rowsum, acc·sa·sw), rowsum = sw · Σ Wq.
    static func reference(a: [Float], w: [Float], bias: [Float]?, m: Int, n: Int, k: Int, groupSize: Int? = nil) -> [Float] {
        let size = min(groupSize ?? k, k), count = (k + size - 1) / size
        var out = [Float](repeating: 0, count: m * n)
        for g in 0..<count {
            let channels = (g * k / count)..<((g + 1) * k / count)
            let wq = (0..<n).map { j in quantizeSymmetric(channels.map { w[j * k + $0] }) }
            for i in 0..<m {
                let x = channels.map { a[i * k + $0] }
                let finite = x.filter { !$0.isNaN }
                let lo = finite.min() ?? .infinity, hi = finite.max() ?? -.infinity
                var mid: Float = lo <= hi ? lo + (hi - lo) * 0.5 : 0
                if !mid.isFinite || mid == 0 { mid = 0 }
                let reach = lo <= hi ? max(hi - mid, mid - lo) : 0
                let (aq, sa) = quantizeSymmetric(x, reach: reach, shift: mid)
                for j in 0..<n {
                    var acc: Int32 = 0
                    for p in aq.indices { acc += aq[p] * wq[j].q[p] }
                    let s = sa * wq[j].scale, rowSum = wq[j].scale * Float(wq[j].q.reduce(0, +))
                    // addingProduct is IEEE's fused multiply-add, as the kernels' fmaf.
                    if g == 0 {
                        let product = bias.map { $0[j].addingProduct(Float(acc), s) } ?? Float(acc) * s
                        out[i * n + j] = mid == 0 ? product : product.addingProduct(mid, rowSum)
                    } else {
                        out[i * n + j] += (Float(acc) * s).addingProduct(mid, rowSum)
                    }
                }
            }
        }
        return out
    }

    static func packed(_ w: [Float], n: Int, k: Int, groupSize: Int? = nil) -> Int8PackedWeight {
        w.withUnsafeBufferPointer { Int8PackedWeight(weight: $0.baseAddress!, outFeatures: n, inFeatures: k, groupSize: groupSize) }
    }

    static func forward(_ packed: Int8PackedWeight, _ a: [Float], bias: [Float]?, m: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: m * packed.outFeatures)
        a.withUnsafeBufferPointer { ap in
            out.withUnsafeMutableBufferPointer { op in
                if let bias {
                    bias.withUnsafeBufferPointer { packed.forward(out: op.baseAddress!, inp: ap.baseAddress!, bias: $0.baseAddress!, n: m) }
                } else {
                    packed.forward(out: op.baseAddress!, inp: ap.baseAddress!, bias: nil, n: m)
                }
            }
        }
        return out
    }

    @Test("the portable INT8 product equals the quantised math worked out in Swift, bit for bit: groups, centring, tails, zero, one-sided and NaN rows",
          arguments: [(1, 1, 1, nil), (7, 5, 3, nil), (33, 70, 131, nil), (33, 70, 131, 40), (70, 64, 384, 128), (5, 129, 1537, nil), (5, 129, 1537, 128)] as [(Int, Int, Int, Int?)])
    func portableIsTheSpecification(_ m: Int, _ n: Int, _ k: Int, _ groupSize: Int?) {
        defer { Int8Path.force(nil) }
        Int8Path.force(.portable)
        var a = Self.random(m * k, seed: UInt64(m * 1000 + k), scale: 3), w = Self.random(n * k, seed: UInt64(n * 7 + k))
        for p in 0..<k { a[p] = 0 }  // an all-zero row: scale 1, output = bias
        if m > 2 { for p in 0..<k { a[2 * k + p] = abs(a[2 * k + p]) + 0.5 } }  // one-sided: centred on its middle
        if m > 3 { a[3 * k] = .nan }  // NaN quantises to 0 and takes no part in the range
        if n > 2 { for p in 0..<k { w[2 * k + p] = 0 } }
        let bias = Self.random(n, seed: 9)
        let packed = Self.packed(w, n: n, k: k, groupSize: groupSize)
        #expect(Self.forward(packed, a, bias: bias, m: m) == Self.reference(a: a, w: w, bias: bias, m: m, n: n, k: k, groupSize: groupSize))
        #expect(Self.forward(packed, a, bias: nil, m: m) == Self.reference(a: a, w: w, bias: nil, m: m, n: n, k: k, groupSize: groupSize))
    }

    @Test("every INT8 path this CPU runs equals the portable one bit for bit (the paths it lacks are named and skipped)")
    func pathsAgree() {
        defer { Int8Path.force(nil) }
        let best = Int8Path.best
        let skipped = Int8Path.allCases.filter { $0.rawValue > best.rawValue }
        if !skipped.isEmpty { print("INT8: this CPU's best path is \(best.name); skipped \(skipped.map(\.name).joined(separator: ", "))") }
        for (m, n, k, groupSize) in [(1, 3, 5, nil), (13, 64, 384, nil), (13, 64, 384, 128), (70, 200, 1536, 128), (6, 1152, 384, 100),
                                     (37, 65, 9000, nil), (37, 65, 9000, 1000)] as [(Int, Int, Int, Int?)] {
            var a = Self.random(m * k, seed: UInt64(k), scale: 5)
            for i in stride(from: 1, to: m, by: 3) { for p in 0..<k { a[i * k + p] = abs(a[i * k + p]) - 0.17 } }  // GELU-like rows
            if m > 4 { a[4 * k + k / 2] = .nan }
            if m > 5 { for p in 0..<k { a[5 * k + p] = -0.0 } }
            let w = Self.random(n * k, seed: UInt64(n)), bias = Self.random(n, seed: 3)
            let packed = Self.packed(w, n: n, k: k, groupSize: groupSize)
            Int8Path.force(.portable)
            let expected = Self.forward(packed, a, bias: bias, m: m)
            for path in Int8Path.allCases where path.rawValue <= best.rawValue && path != .portable {
                // A CPU may lack a path below its best (Ice Lake: AVX512-VNNI without AVX-VNNI).
                guard Int8Path.force(path) == path else { continue }
                let got = Self.forward(packed, a, bias: bias, m: m)
                #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "\(path.name), m \(m) n \(n) k \(k) group \(groupSize.map(String.init) ?? "row")")
            }
        }
    }

    @Test("centring and channel groups: on GELU-like rows with an outlier channel, each cuts the product's error")
    func centringAndGroups() {
        let m = 48, n = 64, k = 512
        var a = Self.random(m * k, seed: 31)
        for i in 0..<m {
            for p in 0..<k { a[i * k + p] = max(a[i * k + p], -0.17) }  // one-sided, as after GELU
            a[i * k + 7] = 12  // one large channel, in the first group
        }
        let w = Self.random(n * k, seed: 32)
        var exact = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { exact[i * n + j] = (0..<k).reduce(0) { $0 + a[i * k + $1] * w[j * k + $1] } } }
        func error(_ out: [Float]) -> Float { zip(out, exact).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot() }
        // One symmetric scale per row, uncentred: the scheme before centring, worked out here.
        let wq = (0..<n).map { j in Self.quantizeSymmetric(Array(w[(j * k)..<((j + 1) * k)])) }
        var symmetric = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            let (aq, sa) = Self.quantizeSymmetric(Array(a[(i * k)..<((i + 1) * k)]))
            for j in 0..<n { symmetric[i * n + j] = Float(zip(aq, wq[j].q).reduce(Int32(0)) { $0 + $1.0 * $1.1 }) * sa * wq[j].scale }
        }
        let centred = error(Self.forward(Self.packed(w, n: n, k: k), a, bias: nil, m: m))
        let grouped = error(Self.forward(Self.packed(w, n: n, k: k, groupSize: 64), a, bias: nil, m: m))
        #expect(centred < error(symmetric) * 0.8, "centred \(centred) vs symmetric \(error(symmetric))")
        #expect(grouped < centred / 2, "groups of 64: \(grouped) vs one group \(centred)")
    }

    @Test("an INT8 model embeds within cosine 0.99 of float32, with and without a LoRA adapter, and forgets its weights when released",
          arguments: ["tiny-qwen3", "tiny-bert-zh"])
    func model(_ name: String) throws {
        let texts = ["稻田养鱼是一种生态农业模式。", "How do I apply for a building permit?", "fish", "soil nitrogen and orchard irrigation"]
        var options = Embedder.Options()
        options.maxLength = 32
        let before = Int8Weights.shared.count
        do {
            let embedder = try Embedder(directory: ModelDirectory(Paths.fixtures.appendingPathComponent(name)))
            let adapters: [URL?] = name == "tiny-qwen3" ? [nil, Paths.fixtures.appendingPathComponent("merge/adapters/a2")] : [nil]
            for adapter in adapters {
                try embedder.setAdapter(adapter)
                Int8Weights.shared.isEnabled = false
                let fp32 = try embedder.embed(texts, options: options)
                Int8Weights.shared.isEnabled = true
                try embedder.backbone.quantizeLinearsToInt8()
                let int8 = try embedder.embed(texts, options: options)
                let d = fp32.dim
                for i in texts.indices {
                    let x = fp32.values[(i * d)..<((i + 1) * d)], y = int8.values[(i * d)..<((i + 1) * d)]
                    let dot = zip(x, y).reduce(Float(0)) { $0 + $1.0 * $1.1 }
                    let cosine = dot / (x.reduce(0) { $0 + $1 * $1 } * y.reduce(0) { $0 + $1 * $1 }).squareRoot()
                    #expect(cosine >= 0.99, "\(name) \(adapter?.lastPathComponent ?? "base") text \(i): cosine \(cosine)")
                    #expect(x != y, "the INT8 path did not run")
                }
            }
            #expect(Int8Weights.shared.count == before + embedder.backbone.frozenLinears.count)
        }
        #expect(Int8Weights.shared.count == before)
    }

    @Test("SmoothQuant: with an outlier activation channel, smoothing by the channel maxima cuts the INT8 product's error")
    func smoothing() {
        let m = 32, n = 48, k = 96
        var a = Self.random(m * k, seed: 21)
        for i in 0..<m { a[i * k + 5] *= 60 }  // one channel 60× the others, as LayerNorm outputs have
        let w = Self.random(n * k, seed: 22)
        var exact = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { exact[i * n + j] = (0..<k).reduce(0) { $0 + a[i * k + $1] * w[j * k + $1] } } }
        let maxima = (0..<k).map { j in (0..<m).reduce(Float(0)) { max($0, abs(a[$1 * k + j])) } }
        func error(_ smoothed: Bool) -> Float {
            w.withUnsafeBufferPointer { wp in
                Int8Weights.shared.register(wp.baseAddress!, outFeatures: n, inFeatures: k, activationMaxima: smoothed ? maxima : nil, groupSize: 0)
                defer { Int8Weights.shared.forget([wp.baseAddress!]) }
                let out = Self.forward(Int8Weights.shared.packed(wp.baseAddress!)!, a, bias: nil, m: m)
                return zip(out, exact).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
            }
        }
        let plain = error(false), smoothed = error(true)
        #expect(smoothed < plain / 2, "error \(smoothed) smoothed vs \(plain) plain")
    }
}
