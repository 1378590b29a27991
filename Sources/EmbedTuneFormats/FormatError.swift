import Foundation

/// The project's one error type for bad input: which file (or file:line, or option), which item
/// inside it (a tensor, a field), and what is wrong. Rendered as one line, the way the CLI prints
/// it with exit status 1.
public struct FormatError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let item: String?
    public let problem: String

    public init(file: String, item: String? = nil, _ problem: String) {
        self.file = file
        self.item = item
        self.problem = problem
    }

    public init(url: URL, item: String? = nil, _ problem: String) {
        self.init(file: url.path, item: item, problem)
    }

    /// A problem with no file to name (values given on the command line, a model's input): the
    /// problem alone is printed.
    public init(_ problem: String) {
        self.init(file: "", problem)
    }

    public var description: String {
        let location = [file.isEmpty ? nil : file, item].compactMap { $0 }
        return (location + [problem]).joined(separator: ": ")
    }
}

/// A read-only memory map of a whole file.
public final class MappedFile: @unchecked Sendable {
    public let url: URL
    public let base: UnsafeRawPointer
    public let size: Int

    public init(url: URL) throws {
        self.url = url
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw FormatError(url: url, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FormatError(url: url, "cannot stat: \(String(cString: strerror(errno)))") }
        size = Int(st.st_size)
        if size == 0 {
            base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1))
            isMapped = false
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FormatError(url: url, "cannot map: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
        isMapped = true
    }

    private let isMapped: Bool

    deinit {
        if isMapped { munmap(UnsafeMutableRawPointer(mutating: base), size) }
        else { UnsafeMutableRawPointer(mutating: base).deallocate() }
    }

    /// Drops the whole pages inside `range` from this process (they stay in the page cache and
    /// fault back in if read again): after a tensor is copied out, its mapped pages need not count
    /// towards the resident set.
    public func release(_ range: Range<Int>) {
        guard isMapped else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (range.lowerBound + page - 1) / page * page, last = range.upperBound / page * page
        if last > first { madvise(UnsafeMutableRawPointer(mutating: base + first), last - first, MADV_DONTNEED) }
    }

    public func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }
}

/// Writes via a temporary file in the same directory and renames it over the target, so a
/// reader never sees a half-written file.
public func writeAtomically(_ data: Data, to url: URL) throws {
    let tmp = url.deletingLastPathComponent()
        .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    do {
        try data.write(to: tmp)
        if rename(tmp.path, url.path) != 0 {
            throw FormatError(url: url, "cannot rename temporary file: \(String(cString: strerror(errno)))")
        }
    } catch let error as FormatError {
        try? FileManager.default.removeItem(at: tmp)
        throw error
    } catch {
        try? FileManager.default.removeItem(at: tmp)
        throw FormatError(url: url, "cannot write: \(error.localizedDescription)")
    }
}

/// fp16 / bf16 bit patterns to fp32.
@inline(__always)
public func floatFromHalf(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1f
    var mantissa = UInt32(h & 0x3ff)
    if exponent == 0 {
        if mantissa == 0 { return Float(bitPattern: sign) }
        // Subnormal: renormalise.
        var e: UInt32 = 127 - 15 + 1
        while mantissa & 0x400 == 0 { mantissa <<= 1; e -= 1 }
        mantissa &= 0x3ff
        return Float(bitPattern: sign | (e << 23) | (mantissa << 13))
    }
    if exponent == 0x1f { return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13)) }
    return Float(bitPattern: sign | ((exponent + 127 - 15) << 23) | (mantissa << 13))
}

@inline(__always)
public func floatFromBFloat16(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

/// fp32 to bf16 with round-to-nearest-even (NaN stays NaN).
@inline(__always)
public func bfloat16FromFloat(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    if f.isNaN { return UInt16(bits >> 16) | 0x40 }
    let rounding = 0x7fff + ((bits >> 16) & 1)
    return UInt16((bits &+ rounding) >> 16)
}
