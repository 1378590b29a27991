import EmbedTuneFormats
import Foundation

/// Embeddings in fewer bits, with sentence-transformers' `quantize_embeddings` semantics, so a
/// corpus quantised here and one quantised in Python hold the same bytes.
///
/// - int8 / uint8: per dimension, [min, max] of a calibration set (`QuantizationRanges`) cut into
///   255 steps; a value v becomes clip(floor((v − min) / step), 0, 255) (uint8), minus 128 (int8).
/// - binary / ubinary: one bit per dimension, v > 0, packed eight to a byte, first dimension in
///   the high bit, the last byte padded with zeros (numpy's `packbits`); binary stores byte − 128.
public enum EmbeddingPrecision: String, CaseIterable, Sendable {
    case float32, int8, uint8, binary, ubinary

    /// int8 and binary: the stored bytes are signed values (numpy's int8).
    public var isSigned: Bool { self == .int8 || self == .binary }
    /// int8 and uint8: quantised within calibrated per-dimension ranges.
    public var needsRanges: Bool { self == .int8 || self == .uint8 }

    /// Stored bytes per row of `dim` dimensions (float32: 4 × dim).
    public func bytesPerRow(dim: Int) -> Int {
        switch self {
        case .float32: return 4 * dim
        case .int8, .uint8: return dim
        case .binary, .ubinary: return (dim + 7) / 8
        }
    }
}

/// Per-dimension calibration range of int8 / uint8 quantisation (sentence-transformers' `ranges`,
/// shape (2, dim): minima, then maxima).
public struct QuantizationRanges: Equatable, Sendable {
    public var minima: [Float]
    public var maxima: [Float]

    public init(minima: [Float], maxima: [Float]) {
        precondition(minima.count == maxima.count, "one minimum and one maximum per dimension")
        self.minima = minima
        self.maxima = maxima
    }

    /// Minimum and maximum of each dimension over `rows` row-major embeddings of width `dim`. A
    /// range needs at least two rows, as sentence-transformers requires.
    public init(calibration values: [Float], rows: Int, dim: Int) throws {
        guard rows >= 2, values.count == rows * dim, dim > 0 else {
            throw FormatError("int8/uint8 quantisation ranges need at least 2 calibration embeddings (got \(rows))")
        }
        var lo = Array(values[0..<dim]), hi = lo
        for r in 1..<rows {
            for d in 0..<dim {
                let v = values[r * dim + d]
                lo[d] = min(lo[d], v)
                hi[d] = max(hi[d], v)
            }
        }
        self.init(minima: lo, maxima: hi)
    }

    /// Width of one of the 255 steps of dimension d, in float32 as numpy computes it (1 where the
    /// range is empty).
    public func step(_ d: Int) -> Float {
        let s = (maxima[d] - minima[d]) / 255
        return s == 0 ? 1 : s
    }
}

/// Row-major quantised embeddings: `rows` rows of `precision.bytesPerRow(dim:)` bytes (int8 values
/// as their two's-complement bit patterns).
public struct QuantizedEmbeddings: Equatable, Sendable {
    public var precision: EmbeddingPrecision
    public var rows: Int
    public var dim: Int
    public var bytes: [UInt8]

    /// Bytes per row.
    public var stride: Int { precision.bytesPerRow(dim: dim) }

    /// `values` (row-major, `rows` × `dim`) in `precision`; int8 and uint8 need `ranges` (from a
    /// calibration set; `QuantizationRanges(calibration:rows:dim:)` of the values themselves is
    /// what sentence-transformers falls back to).
    public init(_ values: [Float], rows: Int, dim: Int, precision: EmbeddingPrecision, ranges: QuantizationRanges? = nil) throws {
        guard values.count == rows * dim else { throw FormatError("\(values.count) values are not \(rows) rows of \(dim)") }
        self.precision = precision
        self.rows = rows
        self.dim = dim
        switch precision {
        case .float32:
            bytes = values.withUnsafeBytes { Array($0) }
        case .int8, .uint8:
            guard let ranges else { throw FormatError("\(precision.rawValue) quantisation needs calibration ranges") }
            guard ranges.minima.count == dim else {
                throw FormatError("quantisation ranges have \(ranges.minima.count) dimensions, the embeddings \(dim)")
            }
            // float32 throughout, as numpy computes it.
            let steps = (0..<dim).map { ranges.step($0) }
            let offset: Int = precision.isSigned ? -128 : 0
            bytes = [UInt8](repeating: 0, count: rows * dim)
            for r in 0..<rows {
                for d in 0..<dim {
                    let q = min(max(((values[r * dim + d] - ranges.minima[d]) / steps[d]).rounded(.down), 0), 255)
                    bytes[r * dim + d] = UInt8(truncatingIfNeeded: Int(q) + offset)
                }
            }
        case .binary, .ubinary:
            let stride = (dim + 7) / 8, offset: Int = precision.isSigned ? -128 : 0
            bytes = [UInt8](repeating: 0, count: rows * stride)
            for r in 0..<rows {
                for byte in 0..<stride {
                    var packed = 0
                    for bit in 0..<8 where byte * 8 + bit < dim && values[r * dim + byte * 8 + bit] > 0 {
                        packed |= 0x80 >> bit
                    }
                    bytes[r * stride + byte] = UInt8(truncatingIfNeeded: packed + offset)
                }
            }
        }
    }

    /// Row `r` as the integers sentence-transformers returns (int8 values signed, bytes otherwise).
    public func integers(row r: Int) -> [Int] {
        let slice = bytes[(r * stride)..<((r + 1) * stride)]
        return precision.isSigned ? slice.map { Int(Int8(bitPattern: $0)) } : slice.map { Int($0) }
    }
}
