import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// Anything that yields checkpoint tensors by their literal names as fp32: safetensors
/// directories, GGUF files.
public protocol TensorSource: AnyObject {
    func contains(_ name: String) -> Bool
    /// Shape in PyTorch order, or nil when absent.
    func shape(of name: String) -> [Int]?
    /// Copies tensor `name` as fp32 into `destination`, checking its shape.
    func read(_ name: String, shape: [Int], into destination: UnsafeMutablePointer<Float>) throws
    /// Tensor `name` in place (read-only, e.g. a file mapping) when the source stores it as fp32;
    /// nil when it must be converted (then `read` it).
    func mapped(_ name: String, shape: [Int]) throws -> FloatBuffer?
    /// Rows `rows` of the (R, C) tensor `name` as fp32, back to back into `destination`
    /// (rows.count × C floats), checking its shape.
    func readRows(_ name: String, shape: [Int], rows: [Int], into destination: UnsafeMutablePointer<Float>) throws
}

extension TensorSource {
    public func mapped(_ name: String, shape: [Int]) throws -> FloatBuffer? { nil }

    /// Reads the whole tensor and keeps the rows: for sources that cannot read rows alone.
    public func readRows(_ name: String, shape: [Int], rows: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        guard shape.count == 2 else { throw FormatError("tensor \"\(name)\": rows of a \(shape.count)-D shape") }
        if let bad = rows.first(where: { $0 < 0 || $0 >= shape[0] }) {
            throw FormatError("tensor \"\(name)\": row \(bad) is outside its \(shape[0]) rows")
        }
        let whole = Tensor(zeros: shape)
        try read(name, shape: shape, into: whole.pointer)
        for (k, row) in rows.enumerated() { (destination + k * shape[1]).update(from: whole.pointer + row * shape[1], count: shape[1]) }
    }
}

/// The checkpoint tensors of a model directory: one model.safetensors, or shards listed by
/// model.safetensors.index.json. Names are the checkpoint's literal keys.
public final class WeightStore: TensorSource, @unchecked Sendable {
    public let directory: URL
    private var files: [String: SafetensorsFile] = [:]
    /// Tensor name → shard file name.
    public let index: [String: String]

    public init(directory: URL) throws {
        self.directory = directory
        let fm = FileManager.default
        let single = directory.appendingPathComponent("model.safetensors")
        let indexURL = directory.appendingPathComponent("model.safetensors.index.json")
        if fm.fileExists(atPath: single.path) {
            let file = try SafetensorsFile(url: single)
            files[single.lastPathComponent] = file
            index = Dictionary(uniqueKeysWithValues: file.names.map { ($0, single.lastPathComponent) })
        } else if fm.fileExists(atPath: indexURL.path) {
            let json = try JSONValue.load(indexURL)
            guard let map = json["weight_map"]?.object else {
                throw FormatError(url: indexURL, item: "weight_map", "missing or not an object")
            }
            var index = [String: String]()
            for (name, shard) in map {
                guard let s = shard.string, !s.contains("/"), s != "..", s != "." else {
                    throw FormatError(url: indexURL, item: "weight_map[\"\(name)\"]", "must name a shard file in this directory")
                }
                index[name] = s
            }
            for shard in Set(index.values) {
                let url = directory.appendingPathComponent(shard)
                guard fm.fileExists(atPath: url.path) else {
                    throw FormatError(url: indexURL, item: "shard \"\(shard)\"", "listed in weight_map but missing")
                }
                let file = try SafetensorsFile(url: url)
                files[shard] = file
            }
            for (name, shard) in index where files[shard]?.entries[name] == nil {
                throw FormatError(file: directory.appendingPathComponent(shard).path, item: "tensor \"\(name)\"",
                                  "listed in model.safetensors.index.json but missing from the shard")
            }
            self.index = index
        } else {
            throw FormatError(url: directory, "no model.safetensors or model.safetensors.index.json")
        }
    }

    public var names: [String] { index.keys.sorted() }
    public func contains(_ name: String) -> Bool { index[name] != nil }

    public func shape(of name: String) -> [Int]? { entry(name)?.shape }

    public func entry(_ name: String) -> SafetensorsFile.Entry? {
        guard let shard = index[name] else { return nil }
        return files[shard]?.entries[name]
    }

    /// The dtype most weights are stored in (for `info`).
    public var dominantDType: String {
        var counts = [String: Int]()
        for name in names { if let e = entry(name) { counts[e.dtype.rawValue, default: 0] += e.count } }
        return counts.max { $0.value < $1.value }?.key ?? "none"
    }

    /// Copies tensor `name` as fp32 into `destination`, checking its shape.
    public func read(_ name: String, shape: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        let (file, e) = try locate(name, shape: shape)
        try file.read(e, into: destination)
    }

    public func mapped(_ name: String, shape: [Int]) throws -> FloatBuffer? {
        let (file, e) = try locate(name, shape: shape)
        return file.mappedFloats(e)
    }

    public func readRows(_ name: String, shape: [Int], rows: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        let (file, e) = try locate(name, shape: shape)
        try file.readRows(e, rows: rows, into: destination)
    }

    private func locate(_ name: String, shape: [Int]) throws -> (SafetensorsFile, SafetensorsFile.Entry) {
        guard let shard = index[name], let file = files[shard], let e = file.entries[name] else {
            let where_ = files.count == 1 ? files.values.first!.url.path : directory.appendingPathComponent("model.safetensors.index.json").path
            throw FormatError(file: where_, item: "tensor \"\(name)\"", "missing")
        }
        guard e.shape == shape else {
            throw FormatError(url: file.url, item: "tensor \"\(name)\"", "shape \(e.shape), expected \(shape)")
        }
        return (file, e)
    }
}

/// All parameters of a model in one allocation; layers hold named `Tensor` views into it.
/// The checkpoint → parameter mapping is recorded so it can be loaded or saved in one pass.
public final class ParameterArena {
    public private(set) var layout: [(name: String, shape: [Int], offset: Int)] = []
    public private(set) var count = 0
    public private(set) var storage = FloatBuffer(count: 0)

    public init() {}

    /// Reserves a slot; call `allocate()` once every slot is declared.
    @discardableResult
    public func declare(_ name: String, _ shape: [Int]) -> Int {
        let offset = count
        layout.append((name, shape, offset))
        count += shape.reduce(1, *)
        // Keep every tensor 64-byte aligned.
        count = (count + 15) / 16 * 16
        return offset
    }

    public func allocate() { storage = FloatBuffer(count: count) }

    public func view(_ offset: Int, _ shape: [Int]) -> Tensor { Tensor(storage: storage, offset: offset, shape: shape) }

    /// Tables read a few rows at a time (token embeddings) live outside the arena: when the
    /// checkpoint stores them as fp32 they stay in its mapping, so only the rows of tokens actually
    /// seen become resident (a 151 936 × 1024 Qwen3 table is 622 MB otherwise).
    public private(set) var tables: [(name: String, shape: [Int])] = []
    private var tableValues: [String: Tensor] = [:]

    public func declareTable(_ name: String, _ shape: [Int]) { tables.append((name, shape)) }

    /// A table's values: mapped or loaded, else zeros until loaded.
    public func table(_ name: String) -> Tensor {
        if let t = tableValues[name] { return t }
        let shape = tables.first { $0.name == name }!.shape
        let t = Tensor(zeros: shape)
        tableValues[name] = t
        return t
    }

    /// Reads every slot from `store`; names in `optional` may be absent (the slot stays zero).
    public func load(from store: TensorSource, optional: Set<String> = [], checkpointName: (String) -> String = { $0 }) throws {
        for slot in layout {
            if optional.contains(slot.name) && !store.contains(checkpointName(slot.name)) { continue }
            try store.read(checkpointName(slot.name), shape: slot.shape, into: storage.pointer + slot.offset)
        }
        for (name, shape) in tables {
            if let mapped = try store.mapped(checkpointName(name), shape: shape) {
                tableValues[name] = Tensor(storage: mapped, shape: shape)
            } else {
                let t = Tensor(zeros: shape)
                try store.read(checkpointName(name), shape: shape, into: t.pointer)
                tableValues[name] = t
            }
        }
    }

    public var parameterCount: Int { (layout.map(\.shape) + tables.map(\.shape)).reduce(0) { $0 + $1.reduce(1, *) } }
}
