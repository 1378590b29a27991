import Foundation

/// NumPy .npy files (version 1.0, little-endian float32, C order) — the exchange format for
/// embeddings.
public enum NPY {
    public static func encode(rows: Int, columns: Int, values: UnsafeBufferPointer<Float>) -> Data {
        precondition(rows * columns == values.count, "npy: \(rows)×\(columns) does not hold \(values.count) values")
        var data = header(descr: "<f4", rows: rows, columns: columns)
        data.append(UnsafeBufferPointer(start: UnsafeRawPointer(values.baseAddress!).assumingMemoryBound(to: UInt8.self),
                                        count: values.count * 4))
        return data
    }

    /// One-byte elements: `signed` int8 ('|i1', the bytes as two's complement) or uint8 ('|u1').
    public static func encode(rows: Int, columns: Int, bytes: [UInt8], signed: Bool) -> Data {
        precondition(rows * columns == bytes.count, "npy: \(rows)×\(columns) does not hold \(bytes.count) bytes")
        var data = header(descr: signed ? "|i1" : "|u1", rows: rows, columns: columns)
        data.append(contentsOf: bytes)
        return data
    }

    /// Magic, version 1.0 and the header dictionary, padded so the data starts at a multiple of 64.
    private static func header(descr: String, rows: Int, columns: Int) -> Data {
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(rows), \(columns)), }"
        // magic(6) + version(2) + length(2) + header + '\n' must be a multiple of 64.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        withUnsafeBytes(of: UInt16(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: Array(header.utf8))
        return data
    }

    public static func write(rows: Int, columns: Int, values: [Float], to url: URL) throws {
        try values.withUnsafeBufferPointer { try writeAtomically(encode(rows: rows, columns: columns, values: $0), to: url) }
    }

    /// Reads a 2-D (or 1-D, as one row) little-endian float32 C-order array.
    public static func read(_ url: URL) throws -> (rows: Int, columns: Int, values: [Float]) {
        let m = try mapped(url)
        var values = [Float](repeating: 0, count: m.rows * m.columns)
        values.withUnsafeMutableBytes { dst in
            if dst.count > 0 { memcpy(dst.baseAddress!, m.file.base + m.dataOffset, dst.count) }
        }
        return (m.rows, m.columns, values)
    }

    /// A float32 matrix left in its memory-mapped file: rows are read on demand, so a large
    /// matrix of which only a few rows are needed costs no more than those pages.
    public struct MappedMatrix: @unchecked Sendable {
        public let file: MappedFile
        public let rows: Int
        public let columns: Int
        let dataOffset: Int

        /// Row i (0 ≤ i < rows).
        public func row(_ i: Int) -> [Float] {
            precondition(i >= 0 && i < rows, "row \(i) of \(rows)")
            var out = [Float](repeating: 0, count: columns)
            out.withUnsafeMutableBytes { dst in
                if dst.count > 0 { memcpy(dst.baseAddress!, file.base + dataOffset + i * columns * 4, dst.count) }
            }
            return out
        }
    }

    /// The file's header checked as `read` checks it, its data left mapped.
    public static func mapped(_ url: URL) throws -> MappedMatrix {
        let map = try MappedFile(url: url)
        let all = map.bytes(0..<map.size)
        guard map.size >= 10, all[0] == 0x93, Array(all[1..<6]) == Array("NUMPY".utf8) else {
            throw FormatError(url: url, "not a .npy file (bad magic)")
        }
        let major = all[6]
        let headerLength: Int, headerStart: Int
        if major == 1 {
            headerLength = Int(all.loadUnaligned(fromByteOffset: 8, as: UInt16.self).littleEndian); headerStart = 10
        } else if major == 2 || major == 3 {
            guard map.size >= 12 else { throw FormatError(url: url, "truncated header") }
            headerLength = Int(all.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian); headerStart = 12
        } else { throw FormatError(url: url, "unsupported .npy version \(major)") }
        guard headerStart + headerLength <= map.size,
              let header = String(bytes: all[headerStart..<(headerStart + headerLength)], encoding: .utf8) else {
            throw FormatError(url: url, "truncated or non-text header")
        }
        guard header.contains("'descr': '<f4'") || header.contains("\"descr\": \"<f4\"") else {
            throw FormatError(url: url, "dtype must be little-endian float32 ('<f4'); header is \(header.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        guard header.contains("'fortran_order': False") else { throw FormatError(url: url, "Fortran order is not supported") }
        guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw FormatError(url: url, "header has no shape")
        }
        let dims = header[open.upperBound..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.compactMap(Int.init)
        let (rows, columns): (Int, Int)
        switch dims.count {
        case 1: (rows, columns) = (1, dims[0])
        case 2: (rows, columns) = (dims[0], dims[1])
        default: throw FormatError(url: url, "expected a 1-D or 2-D array, shape has \(dims.count) dimensions")
        }
        // The shape comes from the header's text: a product past Int.max or a negative side is a
        // corrupt header, not a size to compare with.
        let (elements, overflow) = rows.multipliedReportingOverflow(by: columns)
        let (bytes, bytesOverflow) = elements.multipliedReportingOverflow(by: 4)
        guard rows >= 0, columns >= 0, !overflow, !bytesOverflow else {
            throw FormatError(url: url, "shape (\(rows), \(columns)) is not a float32 matrix that fits in memory")
        }
        let start = headerStart + headerLength
        guard map.size - start == bytes else {
            throw FormatError(url: url, "data is \(map.size - start) bytes, shape (\(rows), \(columns)) needs \(bytes)")
        }
        return MappedMatrix(file: map, rows: rows, columns: columns, dataOffset: start)
    }
}
