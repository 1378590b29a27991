import CZstd
import Foundation

/// zstd frames for checkpoints and caches.
public enum Zstd {
    public static var version: String { String(cString: ZSTD_versionString()) }

    public static func compress(_ input: Data, level: Int32 = 3) throws -> Data {
        let bound = ZSTD_compressBound(input.count)
        var out = Data(count: bound)
        let written = out.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in
                ZSTD_compress(dst.baseAddress, bound, src.baseAddress, input.count, level)
            }
        }
        if ZSTD_isError(written) != 0 { throw FormatError(file: "zstd", String(cString: ZSTD_getErrorName(written))) }
        out.count = written
        return out
    }

    public static func decompress(_ input: Data, file: String) throws -> Data {
        let size = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, input.count) }
        // ZSTD_CONTENTSIZE_UNKNOWN / _ERROR are the two largest UInt64 values.
        guard size < UInt64.max - 1 else { throw FormatError(file: file, "not a zstd frame with a known content size") }
        // The header's content size is only a claim: every block costs at least a 3-byte header and
        // yields at most 128 KiB, so a larger claim is corrupt and is never allocated.
        let largestPossible = UInt64(input.count / 3) * 131_072
        guard size <= largestPossible else {
            throw FormatError(file: file, "corrupt zstd data: a \(input.count)-byte frame cannot hold the \(size) bytes its header declares")
        }
        var out = Data(count: Int(size))
        let n = out.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in ZSTD_decompress(dst.baseAddress, Int(size), src.baseAddress, input.count) }
        }
        if ZSTD_isError(n) != 0 { throw FormatError(file: file, "corrupt zstd data: \(String(cString: ZSTD_getErrorName(n)))") }
        return out
    }
}
