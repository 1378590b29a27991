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

    public init(weight: UnsafePointer<Float>, outFeatures n: Int, inFeatures k: Int) {
        outFeatures = n
        inFeatures = k
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(embedtune_int8_packed_size(n, k), 1), alignment: 64)
        scales = .allocate(capacity: max(n, 1))
        embedtune_int8_pack_weights(weight, n, k, k, bytes, scales)
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
            embedtune_int8_quantize_rows(inp + r0 * c, count, c, c, quantized, rowBytes, rowScales)
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

    /// Quantises and packs `weight` (OC, C); later products with this weight run in INT8.
    public func register(_ weight: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int) {
        let key = UInt(bitPattern: weight)
        if lock.withLock({ table[key] != nil }) { return }
        let packed = Int8PackedWeight(weight: weight, outFeatures: outFeatures, inFeatures: inFeatures)
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
