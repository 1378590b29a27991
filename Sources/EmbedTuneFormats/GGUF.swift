import EmbedTuneKernels
import Foundation

/// A GGUF file (llama.cpp's format, versions 3 and 2, little-endian), memory-mapped and
/// validated as a whole on open:
///
///     "GGUF" · u32 version · u64 tensor count · u64 metadata count
///     metadata:    (string key, u32 value type, value) × count
///     tensor infos: (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset) × count
///     padding to `general.alignment` (default 32), then the data section
///
/// Strings are a u64 byte length then UTF-8 bytes. Every count and length is checked against
/// the bytes left in the file before anything is allocated; every tensor's byte range (its
/// size from the type's block layout) must lie inside the file, start at an aligned offset and
/// not overlap another tensor's. ggml stores dimensions innermost first (ne[0] is the row
/// length); `TensorInfo.shape` reverses them into PyTorch order, so a linear layer's weight
/// reads as [out, in].
public final class GGUFFile: TensorFile, @unchecked Sendable {
    public struct TensorInfo: TensorFileEntry, Sendable, Equatable {
        public let name: String
        public let type: GGMLType
        /// ggml order: `dimensions[0]` (ne[0]) is the innermost, contiguous dimension.
        public let dimensions: [Int]
        /// Offset inside the data section, as stored in the file.
        public let offset: Int
        /// Absolute byte range in the file.
        public let range: Range<Int>

        /// PyTorch order (outermost first).
        public var shape: [Int] { dimensions.reversed() }
        public var count: Int { dimensions.reduce(1, *) }
    }

    public static let defaultAlignment = 32
    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions = 4
    /// Nesting limit for arrays of arrays (llama.cpp itself writes none).
    public static let maxArrayDepth = 8

    public let url: URL
    /// 3 or 2 (the two share one layout).
    public let version: Int
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Tensor infos in file order.
    public let tensors: [TensorInfo]
    public let alignment: Int
    /// Absolute offset of the data section.
    public let dataOffset: Int
    private let byName: [String: Int]
    private let map: MappedFile

    public var tensorNames: [String] { tensors.map(\.name) }
    /// `general.architecture`, when present.
    public var architecture: String? { metadata["general.architecture"]?.string }

    public init(url: URL) throws {
        self.url = url
        map = try MappedFile(url: url)
        var r = GGUFReader(base: map.base, size: map.size, url: url)

        // Header.
        guard map.size >= 4 else {
            throw FormatError(url: url, "file is \(map.size) bytes, too short for the 4-byte GGUF magic")
        }
        let magic = Array(map.bytes(0..<4))
        if magic != Array("GGUF".utf8) {
            if magic == Array("FUGG".utf8) { throw FormatError(url: url, "big-endian GGUF files are not supported") }
            let hex = magic.map { String(format: "%02x", $0) }.joined(separator: " ")
            throw FormatError(url: url, "bad magic \(hex) (not a GGUF file; expected \"GGUF\")")
        }
        r.offset = 4
        let version = try r.u32("the version")
        guard version == 3 || version == 2 else {
            if version == 1 {
                throw FormatError(url: url, "GGUF version 1 is not supported (only 2 and 3); re-convert the model with a current llama.cpp")
            }
            if version.byteSwapped == 2 || version.byteSwapped == 3 {
                throw FormatError(url: url, "big-endian GGUF files are not supported")
            }
            throw FormatError(url: url, "unsupported GGUF version \(version) (only 2 and 3 are supported)")
        }
        self.version = Int(version)
        let tensorCount = try r.u64("the tensor count")
        let kvCount = try r.u64("the metadata count")
        // Each tensor info takes at least 24 bytes (name length, n_dims, type, offset); each
        // metadata entry at least 13 (key length, value type, a 1-byte value).
        guard tensorCount <= UInt64(r.remaining / 24) else {
            throw FormatError(url: url, "tensor count \(tensorCount) is impossible: each tensor info takes at least 24 bytes and only \(r.remaining) are left (corrupt or truncated file)")
        }
        guard kvCount <= UInt64(r.remaining / 13) else {
            throw FormatError(url: url, "metadata count \(kvCount) is impossible: each entry takes at least 13 bytes and only \(r.remaining) are left (corrupt or truncated file)")
        }

        // Metadata.
        var metadata = [String: GGUFValue](), keys = [String]()
        keys.reserveCapacity(Int(kvCount))
        for i in 0..<Int(kvCount) {
            r.item = "metadata entry #\(i)"
            let key = try r.string("the key")
            r.item = "key \"\(key)\""
            guard metadata[key] == nil else { throw r.error("duplicate key") }
            let typeID = try r.u32("the value type")
            guard let type = GGUFValueType(rawValue: typeID) else { throw r.error("unknown value type \(typeID)") }
            metadata[key] = try r.value(type, depth: 0)
            keys.append(key)
        }
        self.metadata = metadata
        metadataKeys = keys

        var alignment = GGUFFile.defaultAlignment
        if let a = metadata["general.alignment"] {
            guard case .uint32(let v) = a, v > 0, v & (v - 1) == 0 else {
                throw FormatError(url: url, item: "key \"general.alignment\"",
                                  "must be a uint32 power of two, got \(a.type) \(a)")
            }
            alignment = Int(v)
        }
        self.alignment = alignment

        // Tensor infos.
        struct Pending { let name: String; let type: GGMLType; let dims: [Int]; let offset: Int; let bytes: Int }
        var pending = [Pending]()
        pending.reserveCapacity(Int(tensorCount))
        var byName = [String: Int]()
        for i in 0..<Int(tensorCount) {
            r.item = "tensor info #\(i)"
            let name = try r.string("the tensor name")
            r.item = "tensor \"\(name)\""
            guard byName[name] == nil else { throw r.error("duplicate tensor name") }
            let nDims = try r.u32("n_dims")
            guard nDims <= UInt32(GGUFFile.maxDimensions) else {
                throw r.error("n_dims \(nDims) exceeds ggml's maximum of \(GGUFFile.maxDimensions)")
            }
            var dims = [Int]()
            for j in 0..<Int(nDims) {
                let d = try r.u64("ne[\(j)]")
                guard d <= UInt64(Int.max) else { throw r.error("dimension ne[\(j)] = \(d) exceeds the int64 range") }
                dims.append(Int(d))
            }
            let typeID = try r.u32("the tensor type")
            guard let type = GGMLType(rawValue: typeID) else { throw r.error("unknown tensor type id \(typeID)") }
            let offset = try r.u64("the data offset")

            let (qk, blockBytes) = type.blockLayout
            let rowLength = dims.first ?? 1
            guard rowLength % qk == 0 else {
                throw r.error("ne[0] = \(rowLength) is not a multiple of the \(type.name) block size \(qk)")
            }
            var elements = 1, overflow = false
            for d in dims {
                let (p, o) = elements.multipliedReportingOverflow(by: d)
                elements = p
                overflow = overflow || o
            }
            let bytes = (elements / qk).multipliedReportingOverflow(by: blockBytes)
            guard !overflow, !bytes.overflow, bytes.partialValue <= map.size else {
                throw r.error("shape \(Array(dims.reversed())) of \(type.name) needs more bytes than the \(map.size)-byte file holds")
            }
            guard offset <= UInt64(map.size) else {
                throw r.error("data offset \(offset) is past the end of the \(map.size)-byte file")
            }
            guard offset % UInt64(alignment) == 0 else {
                throw r.error("data offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            byName[name] = pending.count
            pending.append(Pending(name: name, type: type, dims: dims, offset: Int(offset), bytes: bytes.partialValue))
        }
        r.item = nil

        // Data section: aligned start; every range inside the file, none overlapping.
        let dataOffset = (r.offset + alignment - 1) / alignment * alignment
        self.dataOffset = dataOffset
        var tensors = [TensorInfo]()
        tensors.reserveCapacity(pending.count)
        for p in pending {
            let start = dataOffset + p.offset  // both ≤ file size: no overflow
            guard start <= map.size, p.bytes <= map.size - start else {
                throw FormatError(url: url, item: "tensor \"\(p.name)\"",
                    "data [\(start), \(start + p.bytes)) runs past the end of the \(map.size)-byte file (offset \(p.offset) in the data section at \(dataOffset), \(p.bytes) bytes of \(p.type.name))")
            }
            tensors.append(TensorInfo(name: p.name, type: p.type, dimensions: p.dims, offset: p.offset,
                                      range: start..<(start + p.bytes)))
        }
        var previous: TensorInfo?
        for t in tensors.filter({ !$0.range.isEmpty })
            .sorted(by: { ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound) }) {
            if let p = previous, t.range.lowerBound < p.range.upperBound {
                throw FormatError(url: url, item: "tensor \"\(t.name)\"",
                    "data [\(t.range.lowerBound), \(t.range.upperBound)) overlaps tensor \"\(p.name)\" at [\(p.range.lowerBound), \(p.range.upperBound))")
            }
            previous = t
        }
        self.tensors = tensors
        self.byName = byName
    }

    public func contains(_ name: String) -> Bool { byName[name] != nil }

    public func tensorInfo(_ name: String) -> TensorInfo? { byName[name].map { tensors[$0] } }

    /// TensorFile's lookup: the named tensor's info, or a FormatError naming it missing.
    public func entry(_ name: String) throws -> TensorInfo {
        guard let t = tensorInfo(name) else { throw FormatError(url: url, item: "tensor \"\(name)\"", "missing") }
        return t
    }

    /// The same as `entry(_:)`.
    public func info(_ name: String) throws -> TensorInfo { try entry(name) }

    /// The tensor's raw bytes in the file (validated on open).
    public func rawBytes(_ info: TensorInfo) -> UnsafeRawBufferPointer { map.bytes(info.range) }

    /// Dequantises the tensor's `info.count` elements into `destination` as fp32.
    public func read(_ info: TensorInfo, into destination: UnsafeMutablePointer<Float>) throws {
        guard info.type.canDequantize else { throw unsupportedType(info) }
        if info.count == 0 { return }
        _ = ggmlDequantize(info.type, map.base + info.range.lowerBound, count: info.count, into: destination)
    }

    private func unsupportedType(_ info: TensorInfo) -> FormatError {
        FormatError(url: url, item: "tensor \"\(info.name)\"",
            "unsupported tensor type \(info.type.name) (EmbedTune reads \(GGMLType.dequantizable.map(\.name).joined(separator: ", ")))")
    }

    /// Dequantises rows `rows` of the tensor (a row is `dimensions[0]` elements, a whole number of
    /// blocks, validated on open) back to back into `destination`: a few rows of a quantised
    /// lm_head without converting the other 150 000.
    public func readRows(_ info: TensorInfo, rows: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        guard info.type.canDequantize else { throw unsupportedType(info) }
        let width = info.dimensions.first ?? 1, height = width == 0 ? 0 : info.count / width
        if let bad = rows.first(where: { $0 < 0 || $0 >= height }) {
            throw FormatError(url: url, item: "tensor \"\(info.name)\"", "row \(bad) is outside its \(height) rows")
        }
        let (qk, blockBytes) = info.type.blockLayout
        let rowBytes = width / qk * blockBytes
        for (k, row) in rows.enumerated() {
            _ = ggmlDequantize(info.type, map.base + info.range.lowerBound + row * rowBytes, count: width,
                               into: destination + k * width)
        }
    }
}

/// A bounds-checked cursor over the mapped file. `item` names what is being read, for errors.
struct GGUFReader {
    let base: UnsafeRawPointer
    let size: Int
    let url: URL
    var offset = 0
    var item: String?

    init(base: UnsafeRawPointer, size: Int, url: URL) {
        self.base = base
        self.size = size
        self.url = url
    }

    var remaining: Int { size - offset }

    func error(_ problem: String) -> FormatError { FormatError(url: url, item: item, problem) }

    @inline(__always)
    private mutating func load<T: FixedWidthInteger>(_ type: T.Type, _ what: @autoclosure () -> String) throws -> T {
        let n = MemoryLayout<T>.size
        guard n <= remaining else {
            throw error("file is truncated: \(what()) needs \(n) bytes at offset \(offset), only \(remaining) left")
        }
        let v = T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += n
        return v
    }

    mutating func u8(_ what: @autoclosure () -> String) throws -> UInt8 { try load(UInt8.self, what()) }
    mutating func u16(_ what: @autoclosure () -> String) throws -> UInt16 { try load(UInt16.self, what()) }
    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 { try load(UInt32.self, what()) }
    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 { try load(UInt64.self, what()) }

    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let length = try u64("\(what()) length")
        guard length <= UInt64(remaining) else {
            throw error("\(what()) length \(length) runs past the end of the file (\(remaining) bytes left)")
        }
        let n = Int(length)
        guard let s = String(validating: UnsafeRawBufferPointer(start: base + offset, count: n), as: UTF8.self) else {
            throw error("\(what()) is not valid UTF-8")
        }
        offset += n
        return s
    }

    mutating func value(_ type: GGUFValueType, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try u8("a uint8 value"))
        case .int8: return .int8(Int8(bitPattern: try u8("an int8 value")))
        case .uint16: return .uint16(try u16("a uint16 value"))
        case .int16: return .int16(Int16(bitPattern: try u16("an int16 value")))
        case .uint32: return .uint32(try u32("a uint32 value"))
        case .int32: return .int32(Int32(bitPattern: try u32("an int32 value")))
        case .uint64: return .uint64(try u64("a uint64 value"))
        case .int64: return .int64(Int64(bitPattern: try u64("an int64 value")))
        case .float32: return .float32(Float(bitPattern: try u32("a float32 value")))
        case .float64: return .float64(Double(bitPattern: try u64("a float64 value")))
        case .bool:
            let b = try u8("a bool value")
            guard b <= 1 else { throw error("bool value \(b) is neither 0 nor 1") }
            return .bool(b == 1)
        case .string:
            return .string(try string("the string"))
        case .array:
            guard depth < GGUFFile.maxArrayDepth else {
                throw error("arrays nested more than \(GGUFFile.maxArrayDepth) deep")
            }
            let typeID = try u32("the array element type")
            guard let elementType = GGUFValueType(rawValue: typeID) else {
                throw error("unknown array element type \(typeID)")
            }
            let count = try u64("the array length")
            let least = elementType.minimumEncodedSize
            guard count <= UInt64(remaining / least) else {
                throw error("array length \(count) is impossible: \(count) \(elementType) elements need at least \(least) bytes each and only \(remaining) are left")
            }
            var items = [GGUFValue]()
            items.reserveCapacity(Int(count))
            for _ in 0..<Int(count) { items.append(try value(elementType, depth: depth + 1)) }
            return .array(elementType, items)
        }
    }
}
