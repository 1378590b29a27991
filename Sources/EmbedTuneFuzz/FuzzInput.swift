import Foundation

/// One fuzz input as the files a reader opens. Multi-file targets split the bytes into parts:
/// every part but the last is a 4-byte little-endian length and that many bytes (a length past
/// the end takes what is left), the last part is the rest. `pack` writes the same layout, so a
/// seed for a multi-file target is made from real files.
enum FuzzParts {
    static func split(_ bytes: [UInt8], into count: Int) -> [[UInt8]] {
        var parts = [[UInt8]](), position = 0
        for _ in 0..<(count - 1) {
            let lengthBytes = bytes[position..<min(position + 4, bytes.count)]
            position += lengthBytes.count
            let length = lengthBytes.enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            let end = min(position + length, bytes.count)
            parts.append(Array(bytes[position..<end]))
            position = end
        }
        parts.append(Array(bytes[position...]))
        return parts
    }

    static func pack(_ parts: [[UInt8]]) -> [UInt8] {
        var out = [UInt8]()
        for part in parts.dropLast() {
            withUnsafeBytes(of: UInt32(part.count).littleEndian) { out += $0 }
            out += part
        }
        out += parts.last ?? []
        return out
    }
}

/// The directory a run writes its files into: one per process, emptied before every run, so a
/// file one input leaves behind never reaches the next.
final class FuzzScratch {
    let root: URL

    init() {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("embedtune-fuzz-\(getpid())")
        atexit { if let path = scratchToRemove { try? FileManager.default.removeItem(atPath: path) } }
        scratchToRemove = root.path
    }

    /// A fresh, empty run directory.
    func fresh() -> URL {
        let run = root.appendingPathComponent("run")
        try? FileManager.default.removeItem(at: run)
        try? FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        return run
    }

    /// Writes `bytes` to `name` under `directory`; an empty part writes no file, so a target can
    /// reach the reader's "file missing" paths.
    @discardableResult
    static func write(_ bytes: [UInt8], _ name: String, in directory: URL, keepEmpty: Bool = false) -> URL {
        let url = directory.appendingPathComponent(name)
        if !bytes.isEmpty || keepEmpty {
            try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? Data(bytes).write(to: url)
        }
        return url
    }
}

/// Read by the `atexit` hook, which cannot capture.
private var scratchToRemove: String?
