import Foundation

/// The metadata value types of GGUF (gguf.h `enum gguf_type`).
public enum GGUFValueType: UInt32, CaseIterable, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Bytes of a scalar of this type; nil for string and array.
    public var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }

    /// The fewest bytes one value can take: a string is at least its 8-byte length, an array
    /// its 4-byte element type and 8-byte count. Bounds element counts before allocating.
    var minimumEncodedSize: Int {
        switch self {
        case .string: return 8
        case .array: return 12
        default: return fixedSize!
        }
    }
}

/// One GGUF metadata value. Arrays keep their declared element type (an empty array has one too).
public enum GGUFValue: Equatable, Sendable, CustomStringConvertible {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double)
    case bool(Bool)
    case string(String)
    case array(GGUFValueType, [GGUFValue])

    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }

    /// Any integer type whose value fits in `Int` (not floats, not bools).
    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    /// Floats, and integers as doubles.
    public var double: Double? {
        switch self {
        case .float32(let f): return Double(f)
        case .float64(let d): return d
        default: return int.map(Double.init)
        }
    }

    public var float: Float? { double.map(Float.init) }

    public var array: [GGUFValue]? { if case .array(_, let a) = self { return a }; return nil }
    public var elementType: GGUFValueType? { if case .array(let t, _) = self { return t }; return nil }
    /// An array whose elements are all strings.
    public var strings: [String]? { elements(\.string) }
    /// An array whose elements are all integers that fit in `Int`.
    public var ints: [Int]? { elements(\.int) }
    /// An array whose elements are all numbers.
    public var doubles: [Double]? { elements(\.double) }

    /// The array's elements through `element`, or nil when this is not an array or any element
    /// gives nil.
    private func elements<T>(_ element: (GGUFValue) -> T?) -> [T]? {
        guard let a = array else { return nil }
        var out = [T]()
        out.reserveCapacity(a.count)
        for v in a { guard let x = element(v) else { return nil }; out.append(x) }
        return out
    }

    /// Short rendering for messages and `info`: arrays show their type, length and first items.
    public var description: String {
        switch self {
        case .uint8(let v): return "\(v)"
        case .int8(let v): return "\(v)"
        case .uint16(let v): return "\(v)"
        case .int16(let v): return "\(v)"
        case .uint32(let v): return "\(v)"
        case .int32(let v): return "\(v)"
        case .uint64(let v): return "\(v)"
        case .int64(let v): return "\(v)"
        case .float32(let v): return "\(v)"
        case .float64(let v): return "\(v)"
        case .bool(let v): return "\(v)"
        case .string(let s): return s.count <= 80 ? "\"\(s)\"" : "\"\(s.prefix(77))...\""
        case .array(let t, let a):
            let head = a.prefix(4).map(\.description).joined(separator: ", ")
            return "[\(t); \(a.count)]" + (a.isEmpty ? "" : " [\(head)\(a.count > 4 ? ", ..." : "")]")
        }
    }
}

/// The tensor element types of ggml (ggml.h `enum ggml_type`). Ids 4, 5, 31–33 and 36–38
/// belonged to types ggml has removed; files using them are rejected as unknown.
public enum GGMLType: UInt32, CaseIterable, Sendable {
    case F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9
    case Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15
    case IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23
    case I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30
    case TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41

    /// ggml's name for the type ("Q4_K").
    public var name: String { String(describing: self) }

    /// (elements per block, bytes per block), as ggml's type traits / gguf-py's GGML_QUANT_SIZES.
    public var blockLayout: (elements: Int, bytes: Int) {
        let qk = 256
        switch self {
        case .F32: return (1, 4)
        case .F16: return (1, 2)
        case .Q4_0: return (32, 2 + 16)
        case .Q4_1: return (32, 2 + 2 + 16)
        case .Q5_0: return (32, 2 + 4 + 16)
        case .Q5_1: return (32, 2 + 2 + 4 + 16)
        case .Q8_0: return (32, 2 + 32)
        case .Q8_1: return (32, 4 + 4 + 32)
        case .Q2_K: return (qk, 2 + 2 + qk / 16 + qk / 4)
        case .Q3_K: return (qk, 2 + qk / 4 + qk / 8 + 12)
        case .Q4_K: return (qk, 2 + 2 + qk / 2 + 12)
        case .Q5_K: return (qk, 2 + 2 + qk / 2 + qk / 8 + 12)
        case .Q6_K: return (qk, 2 + qk / 2 + qk / 4 + qk / 16)
        case .Q8_K: return (qk, 4 + qk + qk / 8)
        case .IQ2_XXS: return (qk, 2 + qk / 4)
        case .IQ2_XS: return (qk, 2 + qk / 4 + qk / 32)
        case .IQ3_XXS: return (qk, 2 + qk / 4 + qk / 8)
        case .IQ1_S: return (qk, 2 + qk / 8 + qk / 16)
        case .IQ4_NL: return (32, 2 + 16)
        case .IQ3_S: return (qk, 2 + qk / 4 + qk / 8 + qk / 32 + 4)
        case .IQ2_S: return (qk, 2 + qk / 4 + qk / 16)
        case .IQ4_XS: return (qk, 2 + 2 + qk / 2 + qk / 64)
        case .I8: return (1, 1)
        case .I16: return (1, 2)
        case .I32: return (1, 4)
        case .I64: return (1, 8)
        case .F64: return (1, 8)
        case .IQ1_M: return (qk, qk / 8 + qk / 16 + qk / 32)
        case .BF16: return (1, 2)
        case .TQ1_0: return (qk, 2 + 4 * 13)
        case .TQ2_0: return (qk, 2 + 64)
        case .MXFP4: return (32, 1 + 16)
        case .NVFP4: return (64, 4 + 32)
        case .Q1_0: return (128, 2 + 16)
        }
    }

    /// The types EmbedTune converts to fp32.
    public static let dequantizable: [GGMLType] = [.F32, .F16, .BF16, .Q8_0, .Q4_0, .Q4_K, .Q6_K]

    public var canDequantize: Bool { GGMLType.dequantizable.contains(self) }
}

// MARK: - Dequantisation (ggml-quants.c reference loops)

/// Converts `count` elements of `type` at `source` to fp32. `count` must be a whole number of
/// blocks and `source` must hold `count / blockElements * blockBytes` bytes (the caller has
/// validated both). Returns false for a type EmbedTune cannot dequantise. Large tensors are
/// split across cores by whole blocks; the result does not depend on the split.
func ggmlDequantize(_ type: GGMLType, _ source: UnsafeRawPointer, count: Int,
                    into destination: UnsafeMutablePointer<Float>) -> Bool {
    guard type.canDequantize else { return false }
    let (qk, blockBytes) = type.blockLayout
    let blocks = count / qk
    // Chunks of at least 64 Ki elements; one per core at most.
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let chunks = max(1, min(cores, count / 65_536))
    if chunks == 1 {
        dequantizeBlocks(type, source, blocks: blocks, into: destination)
        return true
    }
    let perChunk = (blocks + chunks - 1) / chunks
    let src = UnsafeRawPointer(source), dst = destination  // captured as plain pointers
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let first = c * perChunk
        let n = min(perChunk, blocks - first)
        if n > 0 {
            dequantizeBlocks(type, src + first * blockBytes, blocks: n, into: dst + first * qk)
        }
    }
    return true
}

@inline(__always)
private func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    floatFromHalf(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
}

private func dequantizeBlocks(_ type: GGMLType, _ x: UnsafeRawPointer, blocks nb: Int,
                              into y: UnsafeMutablePointer<Float>) {
    switch type {
    case .F32:
        if nb > 0 { memcpy(y, x, nb * 4) }
    case .F16:
        for i in 0..<nb { y[i] = half(x, 2 * i) }
    case .BF16:
        for i in 0..<nb {
            y[i] = floatFromBFloat16(UInt16(littleEndian: x.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        }
    case .Q8_0:
        // block_q8_0 { ggml_half d; int8_t qs[32]; }   y = qs[j] * d
        for i in 0..<nb {
            let b = x + i * 34
            let d = half(b, 0)
            let qs = (b + 2).assumingMemoryBound(to: Int8.self)
            let out = y + i * 32
            for j in 0..<32 { out[j] = Float(qs[j]) * d }
        }
    case .Q4_0:
        // block_q4_0 { ggml_half d; uint8_t qs[16]; }  low nibbles → 0..<16, high → 16..<32, minus 8
        for i in 0..<nb {
            let b = x + i * 18
            let d = half(b, 0)
            let qs = (b + 2).assumingMemoryBound(to: UInt8.self)
            let out = y + i * 32
            for j in 0..<16 {
                let x0 = Int32(qs[j] & 0x0F) - 8
                let x1 = Int32(qs[j] >> 4) - 8
                out[j] = Float(x0) * d
                out[j + 16] = Float(x1) * d
            }
        }
    case .Q4_K:
        // block_q4_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qs[128]; }
        for i in 0..<nb {
            let b = x + i * 144
            let d = half(b, 0)
            let min = half(b, 2)
            let scales = (b + 4).assumingMemoryBound(to: UInt8.self)
            var q = (b + 16).assumingMemoryBound(to: UInt8.self)
            var out = y + i * 256
            var scaleIndex = 0
            for _ in 0..<4 {  // j = 0, 64, 128, 192
                let (sc1, m1raw) = scaleMinK4(scaleIndex, scales)
                let d1 = d * Float(sc1), m1 = min * Float(m1raw)
                let (sc2, m2raw) = scaleMinK4(scaleIndex + 1, scales)
                let d2 = d * Float(sc2), m2 = min * Float(m2raw)
                for l in 0..<32 { out[l] = d1 * Float(q[l] & 0xF) - m1 }
                for l in 0..<32 { out[32 + l] = d2 * Float(q[l] >> 4) - m2 }
                out += 64
                q += 32
                scaleIndex += 2
            }
        }
    case .Q6_K:
        // block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d; }
        for i in 0..<nb {
            let b = x + i * 210
            let d = half(b, 208)
            var ql = b.assumingMemoryBound(to: UInt8.self)
            var qh = (b + 128).assumingMemoryBound(to: UInt8.self)
            var sc = (b + 192).assumingMemoryBound(to: Int8.self)
            var out = y + i * 256
            for _ in 0..<2 {  // n = 0, 128
                for l in 0..<32 {
                    let s = l / 16
                    let h = qh[l]
                    let q1 = Int32((ql[l] & 0xF) | ((h & 3) << 4)) - 32
                    let q2 = Int32((ql[l + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32
                    let q3 = Int32((ql[l] >> 4) | (((h >> 4) & 3) << 4)) - 32
                    let q4 = Int32((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32
                    out[l] = d * Float(sc[s]) * Float(q1)
                    out[l + 32] = d * Float(sc[s + 2]) * Float(q2)
                    out[l + 64] = d * Float(sc[s + 4]) * Float(q3)
                    out[l + 96] = d * Float(sc[s + 6]) * Float(q4)
                }
                out += 128
                ql += 64
                qh += 32
                sc += 8
            }
        }
    default:
        preconditionFailure("no dequantiser for \(type.name)")
    }
}

/// ggml-quants.c get_scale_min_k4: the j-th 6-bit scale and min of a Q4_K/Q5_K super-block.
@inline(__always)
private func scaleMinK4(_ j: Int, _ q: UnsafePointer<UInt8>) -> (UInt8, UInt8) {
    if j < 4 { return (q[j] & 63, q[j + 4] & 63) }
    return ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
}
