import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// A cheap identity of a model or adapter on disk, for refusing an index query with a model the
/// index was not built with: FNV-1a over each weight and config file's name, size, and first and
/// last MiB (weights that differ anywhere but the middle of a tensor file differ here; a full
/// hash of a multi-GB model would cost seconds at every start). A .gguf is one such file.
public enum ModelFingerprint {
    static let sampled = 1 << 20

    /// The fingerprint of a model directory, a .gguf file or a PEFT adapter directory.
    public static func of(_ url: URL) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw FormatError(url: url, "no such file or directory")
        }
        let files: [URL]
        if isDirectory.boolValue {
            let names = try FileManager.default.contentsOfDirectory(atPath: url.path).filter { name in
                [".safetensors", ".gguf", ".bin", ".json", ".e5s1", ".model", ".txt"].contains { name.hasSuffix($0) }
                    && name != "README.md"
            }.sorted()
            files = names.map { url.appendingPathComponent($0) }
        } else {
            files = [url]
        }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: UnsafeRawBufferPointer) { for b in bytes { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 } }
        for file in files {
            let map = try MappedFile(url: file)
            Array(file.lastPathComponent.utf8).withUnsafeBytes(mix)
            withUnsafeBytes(of: UInt64(map.size).littleEndian, mix)
            mix(map.bytes(0..<min(map.size, sampled)))
            if map.size > sampled { mix(map.bytes(max(sampled, map.size - sampled)..<map.size)) }
        }
        return String(format: "%016llx", hash)
    }
}
