import Foundation

/// Frozen base weights kept in bfloat16 (`--base_precision bf16`), QLoRA-style: the weights a
/// LoRA run never updates take half their float32 memory, and every product that reads them
/// widens them back to float32 as the own GEMM packs its panels, so the products, their
/// accumulation, the adapter and the optimiser stay float32. The only change to the maths is the
/// weights' rounding to 8 significant bits (round to nearest even).
///
/// The products find a weight by its float32 address: `sgemm`, the linear layers and their fused
/// LoRA forms pass the float32 pointer as before, and the own kernels' entry points
/// (`GEMMKernel.ownSGEMM`, `ownSGEMMSum`) look it up here. A weight inside a registered region
/// is read from its bfloat16 copy; a product reading one takes the own kernels at any depth
/// (`GEMMRoute`), and OpenBLAS, which reads float32 only, refuses one.
///
/// Register before the weights' products run and keep the returned `Registration` for as long as
/// they are in use: it unregisters (and frees the copies) when released. Lookups take a lock
/// (tens of nanoseconds per product) so that registrations of other models may come and go
/// while products run.
public final class BF16Base: @unchecked Sendable {
    public static let shared = BF16Base()

    /// One run of adjacent weights: float32 addresses `start ..< start + count·4`.
    struct Region {
        let start: UInt
        let count: Int
        let values: UnsafeMutablePointer<UInt16>
    }

    /// Sorted by start; read and written under `lock`.
    private var regions: [Region] = []
    private let lock = NSLock()

    /// Whether any weight is registered.
    public var isActive: Bool { lock.withLock { !regions.isEmpty } }


    /// Holds a set of regions registered; releasing it unregisters them.
    public final class Registration: @unchecked Sendable {
        let starts: [UInt]
        /// Float32 bytes given back to the system (`releaseFloat32`).
        public let releasedBytes: Int
        init(starts: [UInt], releasedBytes: Int) {
            self.starts = starts
            self.releasedBytes = releasedBytes
        }
        deinit { BF16Base.shared.unregister(starts) }
    }

    /// Keeps `weights` (pointer, float count) in bfloat16. Weights that follow each other in
    /// memory (a fused q/k/v or gate/up group reads them as one matrix) become one region. With
    /// `releaseFloat32`, the float32 pages wholly inside each region are returned to the system
    /// (`madvise(MADV_DONTNEED)`): the memory saving. Those pages then read as zeros, so nothing
    /// may read the weights as float32 while the registration lives.
    public func register(_ weights: [(pointer: UnsafePointer<Float>, count: Int)], releaseFloat32: Bool) -> Registration {
        let sorted = weights.filter { $0.count > 0 }.sorted { UInt(bitPattern: $0.pointer) < UInt(bitPattern: $1.pointer) }
        var runs = [(start: UnsafePointer<Float>, count: Int)]()
        for w in sorted {
            if let last = runs.last, last.start + last.count == w.pointer {
                runs[runs.count - 1].count += w.count
            } else {
                precondition(runs.last.map { $0.start + $0.count <= w.pointer } ?? true, "overlapping weights registered for bfloat16")
                runs.append((w.pointer, w.count))
            }
        }
        var added = [Region](), released = 0
        for run in runs {
            let values = UnsafeMutablePointer<UInt16>.allocate(capacity: run.count)
            for i in 0..<run.count { values[i] = Self.bfloat16(run.start[i]) }
            added.append(Region(start: UInt(bitPattern: run.start), count: run.count, values: values))
            if releaseFloat32 { released += Self.releasePages(run.start, count: run.count) }
        }
        lock.lock()
        let merged = (regions + added).sorted { $0.start < $1.start }
        for (a, b) in zip(merged, merged.dropFirst()) {
            precondition(a.start + UInt(a.count * 4) <= b.start, "a weight registered twice for bfloat16")
        }
        regions = merged
        lock.unlock()
        return Registration(starts: added.map(\.start), releasedBytes: released)
    }

    private func unregister(_ starts: [UInt]) {
        lock.lock()
        let gone = Set(starts)
        for r in regions where gone.contains(r.start) { r.values.deallocate() }
        regions.removeAll { gone.contains($0.start) }
        lock.unlock()
    }

    /// The bfloat16 copy of the float32 weight at `p` (an element inside a registered region), or
    /// nil when `p` is not registered.
    @inline(__always)
    public func lookup(_ p: UnsafePointer<Float>) -> UnsafePointer<UInt16>? {
        lock.lock()
        defer { lock.unlock() }
        if regions.isEmpty { return nil }
        let address = UInt(bitPattern: p)
        // The last region starting at or before p.
        var low = 0, high = regions.count
        while low < high {
            let mid = (low + high) / 2
            if regions[mid].start <= address { low = mid + 1 } else { high = mid }
        }
        guard low > 0 else { return nil }
        let r = regions[low - 1], offset = Int(address - r.start) / 4
        return offset < r.count ? UnsafePointer(r.values + offset) : nil
    }

    /// Round to nearest even; NaN stays NaN.
    @inline(__always)
    public static func bfloat16(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(bits >> 16) | 0x0040 }
        return UInt16((bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }

    @inline(__always)
    public static func float(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

    /// Gives back the pages wholly inside `count` floats at `start`; returns the bytes.
    static func releasePages(_ start: UnsafePointer<Float>, count: Int) -> Int {
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let begin = (UInt(bitPattern: start) + page - 1) / page * page
        let end = (UInt(bitPattern: start) + UInt(count * 4)) / page * page
        guard end > begin, let pointer = UnsafeMutableRawPointer(bitPattern: begin) else { return 0 }
        return madvise(pointer, Int(end - begin), MADV_DONTNEED) == 0 ? Int(end - begin) : 0
    }
}
