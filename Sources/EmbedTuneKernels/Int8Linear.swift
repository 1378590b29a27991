import CEmbedTuneAVX2
import Foundation

/// INT8 inference of frozen linear layers: per-output-channel symmetric int8 weights, packed once;
/// per-row symmetric int8 activations, quantised at each call; int32 accumulation; out =
/// scale_a · scale_w · acc + bias. Kernels: AVX-512 VNNI, AVX-VNNI, AVX2 (`vpmaddubsw` on
/// |a| and sign-adjusted w, exact since |a|, |w| ≤ 127) and a portable path, chosen at run time
/// (`EMBEDTUNE_INT8_ISA=0…3` caps it); every path equals the portable one bit for bit.
public enum Int8Path: Int32, CaseIterable, Sendable {
    case portable = 0, avx2 = 1, avxVNNI = 2, avx512VNNI = 3

    public var name: String {
        switch self {
        case .portable: return "portable"
        case .avx2: return "avx2"
        case .avxVNNI: return "avx-vnni"
        case .avx512VNNI: return "avx512-vnni"
        }
    }

    /// The best path this CPU runs.
    public static var best: Int8Path { Int8Path(rawValue: embedtune_int8_isa()) ?? .portable }
    /// The path calls take now.
    public static var active: Int8Path { Int8Path(rawValue: embedtune_int8_active_isa()) ?? .portable }
    /// Caps the path (tests, benchmarks); nil restores the best. Returns the path in effect.
    @discardableResult
    public static func force(_ path: Int8Path?) -> Int8Path { Int8Path(rawValue: embedtune_int8_set_isa(path?.rawValue ?? -1)) ?? .portable }
}

/// A weight (OC, C) quantised and packed for `embedtune_int8_gemm`.
public final class Int8PackedWeight: @unchecked Sendable {
    public let outFeatures: Int
    public let inFeatures: Int
    let bytes: UnsafeMutableRawPointer
    let scales: UnsafeMutablePointer<Float>
    /// SmoothQuant's per-input-channel factors 1/s (nil: none): the activations are multiplied by
    /// them before quantisation, the weight's columns were multiplied by s before packing, so the
    /// product is unchanged while an activation channel with outliers hands part of its range to
    /// the weight.
    let inverseSmoothing: [Float]?

    /// `smoothing` s (C values) scales the weight's columns before packing (nil: none).
    public init(weight: UnsafePointer<Float>, outFeatures n: Int, inFeatures k: Int, smoothing: [Float]? = nil) {
        outFeatures = n
        inFeatures = k
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(embedtune_int8_packed_size(n, k), 1), alignment: 64)
        scales = .allocate(capacity: max(n, 1))
        if let smoothing {
            precondition(smoothing.count == k, "one smoothing factor per input channel")
            var scaled = [Float](repeating: 0, count: n * k)
            for i in 0..<n { for j in 0..<k { scaled[i * k + j] = weight[i * k + j] * smoothing[j] } }
            embedtune_int8_pack_weights(scaled, n, k, k, bytes, scales)
            inverseSmoothing = smoothing.map { 1 / $0 }
        } else {
            embedtune_int8_pack_weights(weight, n, k, k, bytes, scales)
            inverseSmoothing = nil
        }
    }

    deinit {
        bytes.deallocate()
        scales.deallocate()
    }

    /// Bytes the packed weight takes (vs 4·OC·C as float32).
    public var byteCount: Int { embedtune_int8_packed_size(outFeatures, inFeatures) + 4 * outFeatures }

    /// out (N, OC), rows `ldOut` apart, = dequant(quant(inp) · Wqᵀ) + bias; inp (N, C). Rows are
    /// split over the compute team; each share quantises its own rows.
    public func forward(out: UnsafeMutablePointer<Float>, ldOut: Int? = nil, inp: UnsafePointer<Float>, bias: UnsafePointer<Float>?, n: Int) {
        let c = inFeatures, oc = outFeatures, ld = ldOut ?? oc, rowBytes = embedtune_int8_row_bytes(c)
        ComputeTeam.current.parallelFor(n, grain: GEMMKernel.rowGrain) { rows in
            let count = rows.count, r0 = rows.lowerBound
            let quantized = UnsafeMutablePointer<UInt8>.allocate(capacity: count * rowBytes)
            let rowScales = UnsafeMutablePointer<Float>.allocate(capacity: count)
            defer { quantized.deallocate(); rowScales.deallocate() }
            if let inverse = inverseSmoothing {
                let smoothed = UnsafeMutablePointer<Float>.allocate(capacity: count * c)
                defer { smoothed.deallocate() }
                inverse.withUnsafeBufferPointer { s in
                    for i in 0..<count {
                        let x = inp + (r0 + i) * c, y = smoothed + i * c
                        for j in 0..<c { y[j] = x[j] * s[j] }
                    }
                }
                embedtune_int8_quantize_rows(smoothed, count, c, c, quantized, rowBytes, rowScales)
            } else {
                embedtune_int8_quantize_rows(inp + r0 * c, count, c, c, quantized, rowBytes, rowScales)
            }
            embedtune_int8_gemm(count, oc, c, quantized, rowBytes, rowScales, bytes, scales, bias, out + r0 * ld, ld)
        }
    }
}

/// The frozen weights that run in INT8: registered by address (a model registers its linear
/// layers' weights when INT8 inference is asked for), looked up by `linearForward`. Weights not
/// registered — LoRA factors, heads, every weight in training — stay float32.
public final class Int8Weights: @unchecked Sendable {
    public static let shared = Int8Weights()
    private let lock = NSLock()
    private var table = [UInt: Int8PackedWeight]()
    private var empty = true
    /// false: registered weights run in float32 again (benchmarks alternate both in one process).
    public var isEnabled = true

    /// Per-input-channel max |x| of each observed weight's activations (calibration).
    private var observed = [UInt: [Float]]()

    /// Quantises and packs `weight` (OC, C); later products with this weight run in INT8. With
    /// `activationMaxima` (max |x| per input channel, from `observe`) the product is smoothed
    /// first (SmoothQuant, α = 0.5): s_j = √(max|x_j| / max|W_:j|).
    public func register(_ weight: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int, activationMaxima: [Float]? = nil) {
        let key = UInt(bitPattern: weight)
        if lock.withLock({ table[key] != nil }) { return }
        let smoothing = activationMaxima.map { a -> [Float] in
            (0..<inFeatures).map { j in
                var w: Float = 0
                for i in 0..<outFeatures { w = max(w, abs(weight[i * inFeatures + j])) }
                guard a[j] > 0, w > 0 else { return 1 }
                return min(max((a[j] / w).squareRoot(), 1e-3), 1e3)
            }
        }
        let packed = Int8PackedWeight(weight: weight, outFeatures: outFeatures, inFeatures: inFeatures, smoothing: smoothing)
        lock.withLock {
            table[key] = packed
            empty = false
        }
    }

    /// The packed form of `weight`, if it was registered.
    @inline(__always)
    public func packed(_ weight: UnsafePointer<Float>) -> Int8PackedWeight? {
        if empty || !isEnabled { return nil }
        return lock.withLock { table[UInt(bitPattern: weight)] }
    }

    public var count: Int { lock.withLock { table.count } }
    public var byteCount: Int { lock.withLock { table.values.reduce(0) { $0 + $1.byteCount } } }

    /// Starts recording the per-channel max |x| of the activations these weights multiply (their
    /// products stay float32 while observed), for `register(…, activationMaxima:)`.
    public func observe<S: Sequence>(_ weights: S, inFeatures: [Int]) where S.Element == UnsafePointer<Float> {
        lock.withLock { for (w, c) in zip(weights, inFeatures) { observed[UInt(bitPattern: w)] = [Float](repeating: 0, count: c) } }
        watching = !observed.isEmpty
    }

    /// Stops observing and returns what was seen, by weight address.
    public func stopObserving() -> [UInt: [Float]] {
        lock.withLock {
            defer { observed.removeAll(); watching = false }
            return observed
        }
    }

    private var watching = false

    /// Records the rows `inp` (N, C) that `weight` multiplies, if it is observed.
    @inline(__always)
    public func record(_ weight: UnsafePointer<Float>, inp: UnsafePointer<Float>, n: Int, c: Int) {
        guard watching else { return }
        lock.withLock {
            guard var maxima = observed[UInt(bitPattern: weight)], maxima.count == c else { return }
            for i in 0..<n { for j in 0..<c { maxima[j] = max(maxima[j], abs(inp[i * c + j])) } }
            observed[UInt(bitPattern: weight)] = maxima
        }
    }

    /// Forgets these weights (a model going away: its addresses may be reused by other tensors).
    public func forget<S: Sequence>(_ weights: S) where S.Element == UnsafePointer<Float> {
        if empty { return }
        lock.withLock {
            for w in weights { table[UInt(bitPattern: w)] = nil }
            empty = table.isEmpty
        }
    }

    /// Forgets every registration (the weights go back to float32).
    public func removeAll() {
        lock.withLock {
            table.removeAll()
            empty = true
        }
    }
}
