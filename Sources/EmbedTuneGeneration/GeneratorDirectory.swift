import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// A generator's directory (a T2L hypernetwork, a DnD generator): a JSON manifest beside a
/// safetensors file holding the flat parameters and the named vectors generation needs.
struct GeneratorDirectory {
    let directory: URL
    let manifestName: String
    let weightsName: String
    /// The manifest's `format`, also the safetensors metadata's.
    let format: String
    /// What writes one, for the message when the manifest is missing.
    let writer: String

    var manifestURL: URL { directory.appendingPathComponent(manifestName) }

    func save<M: Encodable>(_ manifest: M, params: FloatBuffer, vectors: [(name: String, shape: [Int], values: [Float])]) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Each vector's buffer stays valid for the write: the pointers are taken one inside the other.
        func write(_ index: Int, _ entries: [SafetensorsWriter.Item]) throws {
            guard index < vectors.count else {
                try SafetensorsWriter.write(entries, metadata: ["format": format], to: directory.appendingPathComponent(weightsName))
                return
            }
            let v = vectors[index]
            try v.values.withUnsafeBufferPointer { try write(index + 1, entries + [.init(name: v.name, shape: v.shape, values: $0)]) }
        }
        try write(0, [.init(name: "params", shape: [params.count], values: UnsafeBufferPointer(start: params.pointer, count: params.count))])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(manifest), to: manifestURL)
    }

    func manifest<M: Decodable>(_ type: M.Type) throws -> M {
        guard FileManager.default.fileExists(atPath: manifestURL.path) else {
            throw FormatError(url: manifestURL, "missing: not a generator directory (`\(writer)` writes one)")
        }
        do { return try JSONDecoder().decode(M.self, from: Data(contentsOf: manifestURL)) } catch {
            throw FormatError(url: manifestURL, "not a \(format) manifest (\(error))")
        }
    }

    /// Reads the parameters into `params` and returns the weights file for `vector`.
    func weights(into params: FloatBuffer) throws -> SafetensorsFile {
        let file = try SafetensorsFile(url: directory.appendingPathComponent(weightsName))
        let entry = try file.entry("params")
        guard entry.count == params.count else {
            throw FormatError(url: file.url, item: "params", "\(entry.count) values, the configuration needs \(params.count)")
        }
        try file.read(entry, into: params.pointer)
        return file
    }

    /// The vector `name` of `file`, which must hold `count` values.
    static func vector(_ file: SafetensorsFile, _ name: String, count: Int) throws -> [Float] {
        let e = try file.entry(name)
        guard e.count == count else { throw FormatError(url: file.url, item: name, "\(e.count) values, expected \(count)") }
        var v = [Float](repeating: 0, count: count)
        try v.withUnsafeMutableBufferPointer { try file.read(e, into: $0.baseAddress!) }
        return v
    }
}
