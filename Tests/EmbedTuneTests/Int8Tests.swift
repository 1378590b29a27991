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

    /// The quantised product as embedtune_int8.h defines it, worked out here: per-row symmetric
    /// scales max|x|/127 (1 for an all-zero row), round half to even, int32 sums, then
    /// fma(acc, sa·sw, bias).
    static func reference(a: [Float], w: [Float], bias: [Float]?, m: Int, n: Int, k: Int) -> [Float] {
        func quantize(_ x: ArraySlice<Float>) -> (q: [Int32], scale: Float) {
            let top = x.reduce(Float(0)) { max($0, abs($1)) }
            let scale = top > 0 ? top / 127 : 1
            return (x.map { Int32(max(-127, min(127, ($0 / scale).rounded(.toNearestOrEven)))) }, scale)
        }
        let wq = (0..<n).map { quantize(w[($0 * k)..<(($0 + 1) * k)]) }
        var out = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            let (aq, sa) = quantize(a[(i * k)..<((i + 1) * k)])
            for j in 0..<n {
                var acc: Int32 = 0
                for p in 0..<k { acc += aq[p] * wq[j].q[p] }
                let s = sa * wq[j].scale
                // addingProduct is IEEE's fused multiply-add, as the kernels' fmaf.
                out[i * n + j] = bias.map { $0[j].addingProduct(Float(acc), s) } ?? Float(acc) * s
            }
        }
        return out
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

    @Test("the portable INT8 product equals the quantised math worked out in Swift, bit for bit, tails and zero rows included",
          arguments: [(1, 1, 1), (7, 5, 3), (33, 70, 131), (70, 64, 384), (5, 129, 1537)])
    func portableIsTheSpecification(_ m: Int, _ n: Int, _ k: Int) {
        defer { Int8Path.force(nil) }
        Int8Path.force(.portable)
        var a = Self.random(m * k, seed: UInt64(m * 1000 + k), scale: 3), w = Self.random(n * k, seed: UInt64(n * 7 + k))
        for p in 0..<k { a[p] = 0 }  // an all-zero row: scale 1, output = bias
        if n > 2 { for p in 0..<k { w[2 * k + p] = 0 } }
        let bias = Self.random(n, seed: 9)
        let packed = w.withUnsafeBufferPointer { Int8PackedWeight(weight: $0.baseAddress!, outFeatures: n, inFeatures: k) }
        #expect(Self.forward(packed, a, bias: bias, m: m) == Self.reference(a: a, w: w, bias: bias, m: m, n: n, k: k))
        #expect(Self.forward(packed, a, bias: nil, m: m) == Self.reference(a: a, w: w, bias: nil, m: m, n: n, k: k))
    }

    @Test("every INT8 path this CPU runs equals the portable one bit for bit (the paths it lacks are named and skipped)")
    func pathsAgree() {
        defer { Int8Path.force(nil) }
        let best = Int8Path.best
        let skipped = Int8Path.allCases.filter { $0.rawValue > best.rawValue }
        if !skipped.isEmpty { print("INT8: this CPU's best path is \(best.name); skipped \(skipped.map(\.name).joined(separator: ", "))") }
        for (m, n, k) in [(1, 3, 5), (13, 64, 384), (70, 200, 1536), (6, 1152, 384), (37, 65, 9000)] {
            let a = Self.random(m * k, seed: UInt64(k), scale: 5), w = Self.random(n * k, seed: UInt64(n)), bias = Self.random(n, seed: 3)
            let packed = w.withUnsafeBufferPointer { Int8PackedWeight(weight: $0.baseAddress!, outFeatures: n, inFeatures: k) }
            Int8Path.force(.portable)
            let expected = Self.forward(packed, a, bias: bias, m: m)
            for path in Int8Path.allCases where path.rawValue <= best.rawValue && path != .portable {
                // A CPU may lack a path below its best (Ice Lake: AVX512-VNNI without AVX-VNNI).
                guard Int8Path.force(path) == path else { continue }
                #expect(Self.forward(packed, a, bias: bias, m: m) == expected, "\(path.name), m \(m) n \(n) k \(k)")
            }
        }
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
                Int8Weights.shared.register(wp.baseAddress!, outFeatures: n, inFeatures: k, activationMaxima: smoothed ? maxima : nil)
                defer { Int8Weights.shared.forget([wp.baseAddress!]) }
                let out = Self.forward(Int8Weights.shared.packed(wp.baseAddress!)!, a, bias: nil, m: m)
                return zip(out, exact).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
            }
        }
        let plain = error(false), smoothed = error(true)
        #expect(smoothed < plain / 2, "error \(smoothed) smoothed vs \(plain) plain")
    }
}
