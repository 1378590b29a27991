import CEmbedTuneAVX2
import Foundation
import Synchronization

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

/// A weight (OC, C) quantised and packed for `embedtune_int8_gemm`, in groups of consecutive input
/// channels. Each group is a product of its own: an activation row gets one scale and one centre
/// per group, so a few channels with large values coarsen only their group's levels.
public final class Int8PackedWeight: @unchecked Sendable {
    public let outFeatures: Int
    public let inFeatures: Int
    /// SmoothQuant's per-input-channel factors 1/s (nil: none): the activations are multiplied by
    /// them before quantisation, the weight's columns were multiplied by s before packing, so the
    /// product is unchanged while an activation channel with outliers hands part of its range to
    /// the weight.
    let inverseSmoothing: [Float]?
    let groups: [Group]

    /// One group's packed weight: (OC, `channels.count`), the input channels `channels`.
    final class Group: @unchecked Sendable {
        let channels: Range<Int>
        let bytes: UnsafeMutableRawPointer
        let scales: UnsafeMutablePointer<Float>
        /// s_w[o] · Σ_p Wq[o][p] per output channel o. An activation row is quantised centred on
        /// the middle of its range, m, and m times this is added back; these are the quantised
        /// weight's own sums (the packed compensation term is 128 · Σ_p Wq[o][p]), so that
        /// Wq·(x − m) + m·ΣWq is Wq·x exactly. The float32 weight's sums would add
        /// m · Σ_p (W − Wq)[o][p]: k rounding errors times a large m.
        let rowSums: [Float]

        init(weight: UnsafePointer<Float>, outFeatures n: Int, inFeatures: Int, channels: Range<Int>, smoothing: [Float]?) {
            self.channels = channels
            let k = channels.count
            var part = [Float](repeating: 0, count: n * k)
            for o in 0..<n {
                for (t, j) in channels.enumerated() { part[o * k + t] = weight[o * inFeatures + j] * (smoothing?[j] ?? 1) }
            }
            bytes = UnsafeMutableRawPointer.allocate(byteCount: max(embedtune_int8_packed_size(n, k), 1), alignment: 64)
            let scales = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            self.scales = scales
            embedtune_int8_pack_weights(part, n, k, k, bytes, scales)
            let panel = Int(EMBEDTUNE_INT8_PANEL), npad = (n + panel - 1) / panel * panel
            let compensation = (bytes + npad * embedtune_int8_row_bytes(k)).assumingMemoryBound(to: Int32.self)
            rowSums = (0..<n).map { o in scales[o] * Float(compensation[o] / 128) }
        }

        deinit {
            bytes.deallocate()
            scales.deallocate()
        }
    }

    /// `smoothing` s (C values) scales the weight's columns before packing (nil: none). The input
    /// channels are split into ⌈C / groupSize⌉ groups of nearly equal size (nil: one group).
    public init(weight: UnsafePointer<Float>, outFeatures n: Int, inFeatures k: Int, smoothing: [Float]? = nil, groupSize: Int? = nil) {
        outFeatures = n
        inFeatures = k
        if let smoothing { precondition(smoothing.count == k, "one smoothing factor per input channel") }
        precondition(groupSize.map { $0 > 0 } ?? true, "a group has at least one channel")
        inverseSmoothing = smoothing.map { $0.map { 1 / $0 } }
        let size = min(groupSize ?? k, max(k, 1)), count = max(1, (k + size - 1) / size)
        groups = (0..<count).map { g in
            Group(weight: weight, outFeatures: n, inFeatures: k, channels: (g * k / count)..<((g + 1) * k / count), smoothing: smoothing)
        }
    }

    /// Bytes the packed weight takes (vs 4·OC·C as float32).
    public var byteCount: Int { groups.reduce(0) { $0 + embedtune_int8_packed_size(outFeatures, $1.channels.count) + 8 * outFeatures } }

    /// out (N, OC), rows `ldOut` apart, = Σ_groups dequant(quant(inp) · Wqᵀ) + bias; inp (N, C). Rows
    /// are split over the compute team; each share quantises its own rows.
    ///
    /// In each group a row is quantised as x' − m (x' = x/s smoothed, m the middle of x''s range in
    /// the group: `embedtune_int8_quantize_rows_centred`), so its 255 levels span [min, max] rather
    /// than [−max|x'|, max|x'|] — twice as fine for one-sided rows such as GELU's outputs.
    public func forward(out: UnsafeMutablePointer<Float>, ldOut: Int? = nil, inp: UnsafePointer<Float>, bias: UnsafePointer<Float>?, n: Int) {
        let c = inFeatures, oc = outFeatures, ld = ldOut ?? oc
        let rowBytes = embedtune_int8_row_bytes(groups.map(\.channels.count).max() ?? c)
        ComputeTeam.current.parallelFor(n, grain: GEMMKernel.rowGrain) { rows in
            let count = rows.count, r0 = rows.lowerBound
            let quantized = UnsafeMutablePointer<UInt8>.allocate(capacity: count * rowBytes)
            let rowScales = UnsafeMutablePointer<Float>.allocate(capacity: count)
            let middles = UnsafeMutablePointer<Float>.allocate(capacity: count)
            let partial = groups.count > 1 ? UnsafeMutablePointer<Float>.allocate(capacity: count * oc) : nil
            defer { quantized.deallocate(); rowScales.deallocate(); middles.deallocate(); partial?.deallocate() }
            for (g, group) in groups.enumerated() {
                let k = group.channels.count, first = group.channels.lowerBound
                if let inverse = inverseSmoothing {
                    inverse.withUnsafeBufferPointer { s in
                        embedtune_int8_quantize_rows_centred(inp + r0 * c + first, count, k, c, s.baseAddress! + first, quantized, rowBytes, rowScales, middles)
                    }
                } else {
                    embedtune_int8_quantize_rows_centred(inp + r0 * c + first, count, k, c, nil, quantized, rowBytes, rowScales, middles)
                }
                // The first group writes `out` (with the bias); each later one lands in `partial`, added.
                if g == 0 {
                    embedtune_int8_gemm(count, oc, k, quantized, rowBytes, rowScales, group.bytes, group.scales, bias, out + r0 * ld, ld)
                } else {
                    embedtune_int8_gemm(count, oc, k, quantized, rowBytes, rowScales, group.bytes, group.scales, nil, partial!, oc)
                }
                group.rowSums.withUnsafeBufferPointer { sums in
                    embedtune_int8_add_centring(out + r0 * ld, count, oc, ld, g == 0 ? nil : partial, oc, middles, sums.baseAddress!)
                }
            }
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
    // Read on every linear layer's call from any thread, written rarely: atomics, so that the hot
    // path takes no lock when nothing is registered or observed.
    private let empty = Atomic<Bool>(true)
    private let enabled = Atomic<Bool>(true)
    private let watching = Atomic<Bool>(false)
    /// false: registered weights run in float32 again (benchmarks alternate both in one process).
    public var isEnabled: Bool {
        get { enabled.load(ordering: .relaxed) }
        set { enabled.store(newValue, ordering: .relaxed) }
    }

    /// Per-input-channel max |x| of each observed weight's activations (calibration).
    private var observed = [UInt: [Float]]()

    /// Input channels per activation scale unless a registration says otherwise: measured on
    /// multilingual-e5-small (docs/serving.md), 128 cuts the embeddings' error vs float32 to
    /// 0.4× of one scale per row and keeps INT8 over 2× as fast as float32.
    public static let defaultGroupSize = 128

    /// Quantises and packs `weight` (OC, C); later products with this weight run in INT8, with one
    /// activation scale per row and per group of about `groupSize` input channels (0: per row).
    /// With `activationMaxima` (max |x| per input channel, from `observe`) the product is smoothed
    /// first (SmoothQuant, α = 0.5): s_j = √(max|x_j| / max|W_:j|).
    public func register(_ weight: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int, activationMaxima: [Float]? = nil,
                         groupSize: Int = Int8Weights.defaultGroupSize) {
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
        let packed = Int8PackedWeight(weight: weight, outFeatures: outFeatures, inFeatures: inFeatures, smoothing: smoothing,
                                      groupSize: groupSize > 0 ? groupSize : nil)
        lock.withLock {
            table[key] = packed
            empty.store(false, ordering: .releasing)
        }
    }

    /// The packed form of `weight`, if it was registered.
    @inline(__always)
    public func packed(_ weight: UnsafePointer<Float>) -> Int8PackedWeight? {
        if empty.load(ordering: .acquiring) || !isEnabled { return nil }
        return lock.withLock { table[UInt(bitPattern: weight)] }
    }

    public var count: Int { lock.withLock { table.count } }
    public var byteCount: Int { lock.withLock { table.values.reduce(0) { $0 + $1.byteCount } } }

    /// Starts recording the per-channel max |x| of the activations these weights multiply (their
    /// products stay float32 while observed), for `register(…, activationMaxima:)`.
    public func observe<S: Sequence>(_ weights: S, inFeatures: [Int]) where S.Element == UnsafePointer<Float> {
        lock.withLock { for (w, c) in zip(weights, inFeatures) { observed[UInt(bitPattern: w)] = [Float](repeating: 0, count: c) } }
        lock.withLock { watching.store(!observed.isEmpty, ordering: .releasing) }
    }

    /// Stops observing and returns what was seen, by weight address.
    public func stopObserving() -> [UInt: [Float]] {
        lock.withLock {
            defer { observed.removeAll(); watching.store(false, ordering: .releasing) }
            return observed
        }
    }

    /// Records the rows `inp` (N, C) that `weight` multiplies, if it is observed.
    @inline(__always)
    public func record(_ weight: UnsafePointer<Float>, inp: UnsafePointer<Float>, n: Int, c: Int) {
        guard watching.load(ordering: .acquiring) else { return }
        lock.withLock {
            guard var maxima = observed[UInt(bitPattern: weight)], maxima.count == c else { return }
            for i in 0..<n { for j in 0..<c { maxima[j] = max(maxima[j], abs(inp[i * c + j])) } }
            observed[UInt(bitPattern: weight)] = maxima
        }
    }

    /// Forgets these weights (a model going away: its addresses may be reused by other tensors).
    public func forget<S: Sequence>(_ weights: S) where S.Element == UnsafePointer<Float> {
        if empty.load(ordering: .acquiring) { return }
        lock.withLock {
            for w in weights { table[UInt(bitPattern: w)] = nil }
            empty.store(table.isEmpty, ordering: .releasing)
        }
    }

    /// Forgets every registration (the weights go back to float32).
    public func removeAll() {
        lock.withLock {
            table.removeAll()
            empty.store(true, ordering: .releasing)
        }
    }
}
