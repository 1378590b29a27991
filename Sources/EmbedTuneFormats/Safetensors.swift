import EmbedTuneKernels
import Foundation

/// The element types the safetensors format defines.
public enum SafetensorsDType: String, CaseIterable, Sendable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL
    case F8_E4M3, F8_E5M2

    public var size: Int {
        switch self {
        case .F64, .I64, .U64: return 8
        case .F32, .I32, .U32: return 4
        case .F16, .BF16, .I16, .U16: return 2
        case .I8, .U8, .BOOL, .F8_E4M3, .F8_E5M2: return 1
        }
    }
}

/// A safetensors file, memory-mapped and validated as a whole on open:
/// an 8-byte little-endian header length, a UTF-8 JSON header, then the data buffer. Every
/// tensor's byte range must lie inside the buffer, match shape × dtype size, and the ranges
/// must tile the buffer without overlaps or holes (as the reference implementation requires).
public final class SafetensorsFile: TensorFile, @unchecked Sendable {
    public struct Entry: TensorFileEntry, Sendable {
        public let name: String
        public let dtype: SafetensorsDType
        public let shape: [Int]
        /// Absolute byte range in the file.
        public let range: Range<Int>
        public var count: Int { shape.reduce(1, *) }
    }

    /// The reference implementation's cap on the header (100 MB).
    public static let maxHeaderLength = 100_000_000

    public let url: URL
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let map: MappedFile

    public var names: [String] { entries.keys.sorted() }

    public init(url: URL) throws {
        self.url = url
        map = try MappedFile(url: url)
        guard map.size >= 8 else {
            throw FormatError(url: url, "file is \(map.size) bytes, shorter than the 8-byte header length")
        }
        let headerLength = Int(map.base.loadUnaligned(as: UInt64.self).littleEndian.clamped(to: UInt64(Int.max)))
        guard headerLength <= SafetensorsFile.maxHeaderLength else {
            throw FormatError(url: url, "header length \(headerLength) exceeds the 100 MB limit")
        }
        guard 8 + headerLength <= map.size else {
            throw FormatError(url: url, "header length \(headerLength) runs past the end of the \(map.size)-byte file")
        }
        let headerBytes = map.bytes(8..<(8 + headerLength))
        guard let text = String(validating: headerBytes, as: UTF8.self) else {
            throw FormatError(url: url, "header is not valid UTF-8")
        }
        let json: JSONValue
        do { json = try JSONValue.parse(Data(text.utf8), file: url.path) }
        catch let e as FormatError {
            throw FormatError(url: url, "header is not valid JSON (\(e.problem.replacingOccurrences(of: "invalid JSON ", with: "")))")
        }
        guard let object = json.object else {
            throw FormatError(url: url, "header is not a JSON object")
        }
        let dataStart = 8 + headerLength
        var entries = [String: Entry](), metadata = [String: String]()
        for (name, value) in object {
            if name == "__metadata__" {
                guard let m = value.object else {
                    throw FormatError(url: url, item: "__metadata__", "must be an object of strings")
                }
                for (k, v) in m {
                    guard let s = v.string else {
                        throw FormatError(url: url, item: "__metadata__", "value of \"\(k)\" is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            let item = "tensor \"\(name)\""
            guard let info = value.object else { throw FormatError(url: url, item: item, "entry is not an object") }
            guard let dtypeName = info["dtype"]?.string else { throw FormatError(url: url, item: item, "missing \"dtype\"") }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
                throw FormatError(url: url, item: item, "unknown dtype \"\(dtypeName)\"")
            }
            guard let shape = nonNegativeInts(info["shape"]) else {
                throw FormatError(url: url, item: item, "\"shape\" must be an array of non-negative integers")
            }
            guard let offsets = nonNegativeInts(info["data_offsets"]), offsets.count == 2 else {
                throw FormatError(url: url, item: item, "\"data_offsets\" must be two non-negative integers")
            }
            guard offsets[0] <= offsets[1] else {
                throw FormatError(url: url, item: item, "data_offsets [\(offsets[0]), \(offsets[1])] end before they begin")
            }
            guard dataStart + offsets[1] <= map.size else {
                throw FormatError(url: url, item: item,
                    "data_offsets [\(offsets[0]), \(offsets[1])] run past the end of the data (\(map.size - dataStart) bytes)")
            }
            let (elements, overflow) = shape.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d); return (p, acc.1 || o)
            }
            let expected = elements.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, !expected.overflow, expected.partialValue == offsets[1] - offsets[0] else {
                throw FormatError(url: url, item: item,
                    "shape \(shape) of \(dtype.rawValue) needs \(overflow ? "too many" : String(expected.partialValue)) bytes but data_offsets span \(offsets[1] - offsets[0])")
            }
            entries[name] = Entry(name: name, dtype: dtype, shape: shape,
                                  range: (dataStart + offsets[0])..<(dataStart + offsets[1]))
        }
        // The ranges must tile the data buffer: sorted by start, each begins where the last ended.
        var cursor = dataStart
        for entry in entries.values.sorted(by: { ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound) }) {
            if entry.range.lowerBound < cursor {
                throw FormatError(url: url, item: "tensor \"\(entry.name)\"", "data overlaps the previous tensor's bytes")
            }
            if entry.range.lowerBound > cursor {
                throw FormatError(url: url, item: "tensor \"\(entry.name)\"", "\(entry.range.lowerBound - cursor) unindexed bytes before its data")
            }
            cursor = entry.range.upperBound
        }
        if cursor != map.size {
            throw FormatError(url: url, "\(map.size - cursor) trailing bytes after the last tensor")
        }
        self.entries = entries
        self.metadata = metadata
    }

    public func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else { throw FormatError(url: url, item: "tensor \"\(name)\"", "missing") }
        return e
    }

    /// Converts the entry's elements to fp32 into `destination` (entry.count floats); F32, F16,
    /// BF16 and F64 are accepted.
    public func read(_ e: Entry, into destination: UnsafeMutablePointer<Float>) throws {
        try convert(map.bytes(e.range), count: e.count, of: e, into: destination)
        map.release(e.range)
    }

    /// Rows `rows` of a 2-D entry, converted to fp32 back to back into `destination`
    /// (rows.count × columns floats): a few rows of a large table (an lm_head) without converting
    /// the rest.
    public func readRows(_ e: Entry, rows: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        guard e.shape.count == 2 else { throw FormatError(url: url, item: "tensor \"\(e.name)\"", "shape \(e.shape) is not a matrix") }
        let columns = e.shape[1], rowBytes = columns * e.dtype.size
        for (k, row) in rows.enumerated() {
            guard row >= 0 && row < e.shape[0] else {
                throw FormatError(url: url, item: "tensor \"\(e.name)\"", "row \(row) is outside its \(e.shape[0]) rows")
            }
            let start = e.range.lowerBound + row * rowBytes
            try convert(map.bytes(start..<(start + rowBytes)), count: columns, of: e, into: destination + k * columns)
        }
    }

    /// `count` elements of `e`'s dtype in `raw`, as fp32.
    private func convert(_ raw: UnsafeRawBufferPointer, count n: Int, of e: Entry, into destination: UnsafeMutablePointer<Float>) throws {
        switch e.dtype {
        case .F32:
            if n > 0 { memcpy(destination, raw.baseAddress!, n * 4) }
        case .F16:
            for i in 0..<n { destination[i] = floatFromHalf(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .BF16:
            for i in 0..<n { destination[i] = floatFromBFloat16(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .F64:
            for i in 0..<n { destination[i] = Float(raw.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        default:
            throw FormatError(url: url, item: "tensor \"\(e.name)\"", "dtype \(e.dtype.rawValue) cannot be used as floating-point weights")
        }
    }

    /// The entry's values in place in the read-only mapping, when stored as 4-byte-aligned F32
    /// (nil otherwise): pages fault in as rows are read, so an embedding table costs memory only
    /// for the tokens actually looked up.
    public func mappedFloats(_ e: Entry) -> FloatBuffer? {
        let raw = map.bytes(e.range)
        guard e.dtype == .F32, e.count > 0, let base = raw.baseAddress, Int(bitPattern: base) % 4 == 0 else { return nil }
        return FloatBuffer(borrowing: base.assumingMemoryBound(to: Float.self), count: e.count, owner: self)
    }
}

/// Writes tensors as a safetensors file (sorted by name; header padded to 8 bytes), atomically.
public enum SafetensorsWriter {
    public struct Item {
        public let name: String
        public let shape: [Int]
        public let values: UnsafeBufferPointer<Float>
        public init(name: String, shape: [Int], values: UnsafeBufferPointer<Float>) {
            precondition(shape.reduce(1, *) == values.count, "\(name): shape \(shape) does not hold \(values.count) values")
            self.name = name
            self.shape = shape
            self.values = values
        }
    }

    public enum StorageType: String { case F32, BF16 }

    public static func write(_ items: [Item], metadata: [String: String] = [:], as storage: StorageType = .F32,
                             to url: URL) throws {
        let sorted = items.sorted { $0.name < $1.name }
        let elementSize = storage == .F32 ? 4 : 2
        var header = [String: Any]()
        var offset = 0
        for item in sorted {
            let bytes = item.values.count * elementSize
            header[item.name] = ["dtype": storage.rawValue, "shape": item.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var data = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for item in sorted {
            switch storage {
            case .F32:
                data.append(UnsafeBufferPointer(start: UnsafeRawPointer(item.values.baseAddress!).assumingMemoryBound(to: UInt8.self),
                                                count: item.values.count * 4))
            case .BF16:
                var halves = [UInt16](repeating: 0, count: item.values.count)
                for i in 0..<item.values.count { halves[i] = bfloat16FromFloat(item.values[i]).littleEndian }
                halves.withUnsafeBytes { data.append(contentsOf: $0) }
            }
        }
        try writeAtomically(data, to: url)
    }
}

private func nonNegativeInts(_ value: JSONValue?) -> [Int]? {
    guard let values = value?.array else { return nil }
    var out = [Int]()
    for v in values {
        guard let n = v.int, n >= 0 else { return nil }
        out.append(n)
    }
    return out
}

extension UInt64 {
    fileprivate func clamped(to upper: UInt64) -> UInt64 { Swift.min(self, upper) }
}
