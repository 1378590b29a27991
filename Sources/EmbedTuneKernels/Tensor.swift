import Foundation

/// A 64-byte aligned, owned block of fp32 values. Parameters, activations and gradients live in
/// a few of these; layers see raw pointers into them (llm.c style), never per-call allocations.
public final class FloatBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    /// Set when the values live in memory owned elsewhere (a read-only file mapping), kept alive here.
    private let owner: AnyObject?

    public init(count: Int, zeroed: Bool = true) {
        self.count = count
        owner = nil
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw: UnsafeMutableRawPointer
        if bytes >= FloatBuffer.hugePageBytes {
            // Large buffers (activations, weights, gradients) go on 2 MB pages where the kernel
            // allows them on request (transparent_hugepage = madvise): the GEMMs stream through
            // them and the attention gathers hop a row (1.5–4 KB) at a time, so with 4 KB pages
            // nearly every few rows cost a TLB miss.
            raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: FloatBuffer.hugePageBytes)
            #if os(Linux)
            _ = madvise(raw, bytes, MADV_HUGEPAGE)
            #endif
        } else {
            raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        }
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        if zeroed { pointer.initialize(repeating: 0, count: max(count, 1)) }
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count, zeroed: false)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    /// Floats that `owner` holds (e.g. a checkpoint's mapping); never written through, never freed here.
    public init(borrowing pointer: UnsafePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = UnsafeMutablePointer(mutating: pointer)
        self.count = count
        self.owner = owner
    }

    static let hugePageBytes = 2 << 20

    deinit { if owner == nil { UnsafeMutableRawPointer(pointer).deallocate() } }

    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// An n-dimensional row-major fp32 view into a `FloatBuffer`.
public struct Tensor: @unchecked Sendable {
    public let storage: FloatBuffer
    public let offset: Int
    public let shape: [Int]

    public init(storage: FloatBuffer, offset: Int = 0, shape: [Int]) {
        precondition(offset + shape.reduce(1, *) <= storage.count, "tensor view out of its buffer")
        self.storage = storage
        self.offset = offset
        self.shape = shape
    }

    public init(zeros shape: [Int]) {
        self.init(storage: FloatBuffer(count: shape.reduce(1, *)), shape: shape)
    }

    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        self.init(storage: FloatBuffer(values), shape: shape)
    }

    public var count: Int { shape.reduce(1, *) }
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer + offset }
    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    /// Rows `range` of the first dimension, as a view.
    public func rows(_ range: Range<Int>) -> Tensor {
        let rowSize = shape.dropFirst().reduce(1, *)
        return Tensor(storage: storage, offset: offset + range.lowerBound * rowSize,
                      shape: [range.count] + shape.dropFirst())
    }

    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(storage: storage, offset: offset, shape: newShape)
    }
}

/// Carves 64-byte aligned regions out of one growable buffer. Run the same layout code once to
/// measure (`Arena.measure`) and once to hand out pointers; buffers are reused across calls.
public final class ActivationArena: @unchecked Sendable {
    private var buffer = FloatBuffer(count: 0)
    private var cursor = 0
    private var measuring = false

    public init() {}

    /// Runs `layout` to size the arena, grows it if needed, then runs it again for real.
    public func layout<T>(_ body: (ActivationArena) -> T) -> T {
        measuring = true
        cursor = 0
        _ = body(self)
        let needed = cursor
        measuring = false
        // Grow with headroom, the first time too: batches differ in length, and every regrowth
        // faults in (and the kernel zeroes) fresh pages for the whole arena — for a 1.7 GB MiniLM
        // training arena, 0.15–0.5 s here. Pages never touched cost no memory.
        if needed > buffer.count { buffer = FloatBuffer(count: needed + needed / 4, zeroed: false) }
        peak = max(peak, needed)
        cursor = 0
        return body(self)
    }

    /// A region of `count` floats (meaningless while measuring).
    public func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        let p = buffer.pointer + (measuring ? 0 : cursor)
        cursor += (count + 15) / 16 * 16
        return p
    }

    /// Floats the largest layout needed (the buffer holds a quarter more).
    public private(set) var peak = 0
    public var storage: FloatBuffer { buffer }
}
