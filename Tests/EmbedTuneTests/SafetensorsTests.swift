import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import Foundation
import Testing

/// Builds raw safetensors bytes from a header JSON text and a data length.
func safetensorsBytes(header: String, dataBytes: Int, declaredHeaderLength: UInt64? = nil) -> Data {
    var d = Data()
    withUnsafeBytes(of: (declaredHeaderLength ?? UInt64(header.utf8.count)).littleEndian) { d.append(contentsOf: $0) }
    d.append(contentsOf: Array(header.utf8))
    d.append(Data(count: dataBytes))
    return d
}

/// The hostile cases of the core issue: each must be one clear error naming the problem.
let hostileSafetensors: [(name: String, data: Data, expected: String)] = [
    ("truncated", safetensorsBytes(header: #"{"w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}}"#, dataBytes: 20),
     "run past the end of the data"),
    ("shorter than the length field", Data([1, 2, 3]), "shorter than the 8-byte header length"),
    ("header length past the end", safetensorsBytes(header: #"{}"#, dataBytes: 0, declaredHeaderLength: 4096),
     "runs past the end"),
    ("header length over the cap", safetensorsBytes(header: #"{}"#, dataBytes: 0, declaredHeaderLength: 1 << 40),
     "exceeds the 100 MB limit"),
    ("offsets out of range", safetensorsBytes(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[64,72]}}"#, dataBytes: 8),
     "run past the end of the data"),
    ("offsets reversed", safetensorsBytes(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, dataBytes: 8),
     "end before they begin"),
    ("overlapping tensors", safetensorsBytes(
        header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        dataBytes: 12), "overlaps"),
    ("a hole between tensors", safetensorsBytes(
        header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
        dataBytes: 12), "unindexed bytes"),
    ("unknown dtype", safetensorsBytes(header: #"{"w":{"dtype":"F13","shape":[2],"data_offsets":[0,8]}}"#, dataBytes: 8),
     "unknown dtype \"F13\""),
    ("shape does not match the bytes", safetensorsBytes(header: #"{"w":{"dtype":"F32","shape":[3,3],"data_offsets":[0,16]}}"#, dataBytes: 16),
     "needs 36 bytes but data_offsets span 16"),
    ("negative dimension", safetensorsBytes(header: #"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, dataBytes: 4),
     "non-negative integers"),
    ("invalid JSON", safetensorsBytes(header: #"{"w": {"dtype": "F32", "shape": [1], "#, dataBytes: 4), "not valid JSON"),
    ("invalid UTF-8", safetensorsBytes(header: "{\"\u{00e9}\":1}", dataBytes: 0).replacing(Data([0xc3, 0xa9]), with: Data([0xff, 0xfe])),
     "not valid UTF-8"),
    ("header not an object", safetensorsBytes(header: "[1,2]", dataBytes: 0), "not a JSON object"),
    ("trailing bytes", safetensorsBytes(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, dataBytes: 9),
     "trailing bytes"),
]

@Suite("safetensors")
struct SafetensorsTests {
    @Test("writing then reading returns the same tensors, F32 and BF16")
    func roundTrip() throws {
        let dir = try Paths.temporaryDirectory()
        let a: [Float] = [1, -2.5, 3.25, 1e-3, 0, 7]
        let b: [Float] = [0.1, 0.2]
        let url = dir.appendingPathComponent("t.safetensors")
        try a.withUnsafeBufferPointer { pa in
            try b.withUnsafeBufferPointer { pb in
                try SafetensorsWriter.write([.init(name: "a", shape: [2, 3], values: pa), .init(name: "b", shape: [2], values: pb)],
                                            metadata: ["format": "pt"], to: url)
                try SafetensorsWriter.write([.init(name: "a", shape: [2, 3], values: pa)], as: .BF16,
                                            to: dir.appendingPathComponent("h.safetensors"))
            }
        }
        let file = try SafetensorsFile(url: url)
        #expect(file.names == ["a", "b"])
        #expect(file.metadata == ["format": "pt"])
        #expect(try file.tensor("a", expectedShape: [2, 3]).array == a)
        #expect(try file.tensor("b").array == b)
        let half = try SafetensorsFile(url: dir.appendingPathComponent("h.safetensors")).tensor("a").array
        #expect(maxAbsDifference(half, a) < 0.02)

        // Embedding tables are used in place when stored as fp32; other dtypes are converted.
        let mapped = try #require(file.mappedFloats(file.entries["a"]!))
        #expect(mapped.array == a)
        let bf16 = try SafetensorsFile(url: dir.appendingPathComponent("h.safetensors"))
        #expect(bf16.mappedFloats(bf16.entries["a"]!) == nil)
    }

    @Test("a model's token-embedding table stays in the checkpoint's mapping and embeds as a copied one")
    func mappedEmbeddingTable() throws {
        let dir = try ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-qwen3"))
        let store = try dir.tensorSource()
        let arena = ParameterArena()
        arena.declareTable("embed_tokens.weight", store.shape(of: "embed_tokens.weight")!)
        try arena.load(from: store)
        let table = arena.table("embed_tokens.weight")
        let copy = Tensor(zeros: table.shape)
        try store.read("embed_tokens.weight", shape: table.shape, into: copy.pointer)
        #expect(table.array == copy.array)
        if let weights = store as? WeightStore, weights.dominantDType == "F32" {
            #expect(try weights.mapped("embed_tokens.weight", shape: table.shape) != nil, "fp32 tables are not copied")
        }
    }

    @Test("every hostile file is rejected with an error naming the file and the problem",
          arguments: hostileSafetensors.map(\.name))
    func hostile(_ name: String) throws {
        let case_ = hostileSafetensors.first { $0.name == name }!
        let url = try Paths.temporaryDirectory().appendingPathComponent("bad.safetensors")
        try case_.data.write(to: url)
        do {
            _ = try SafetensorsFile(url: url)
            Issue.record("\(name): accepted")
        } catch let error as FormatError {
            #expect(error.description.contains(case_.expected), "\(error)")
            #expect(error.file == url.path)
            #expect(!error.description.contains("\n"))
        }
    }

    @Test("a missing tensor or a wrong shape is named when a model loads")
    func expectedTensors() throws {
        let dir = try Paths.temporaryDirectory()
        let values = [Float](repeating: 0.5, count: 12)
        try values.withUnsafeBufferPointer {
            try SafetensorsWriter.write([.init(name: "w", shape: [3, 4], values: $0)], to: dir.appendingPathComponent("model.safetensors"))
        }
        let store = try WeightStore(directory: dir)
        var out = [Float](repeating: 0, count: 16)
        #expect(throws: FormatError.self) { try store.read("w", shape: [4, 4], into: &out) }
        do { try store.read("w", shape: [4, 4], into: &out) } catch {
            #expect("\(error)".contains("tensor \"w\": shape [3, 4], expected [4, 4]"))
        }
        do { try store.read("missing.weight", shape: [1], into: &out) } catch {
            #expect("\(error)".contains("tensor \"missing.weight\": missing"))
        }
    }

    @Test("the CLI reports a hostile model file as one error line and a non-zero exit",
          arguments: ["truncated", "header length past the end", "offsets out of range", "overlapping tensors",
                      "unknown dtype", "shape does not match the bytes", "invalid JSON"])
    func cliHostile(_ name: String) throws {
        let case_ = hostileSafetensors.first { $0.name == name }!
        let dir = try Paths.temporaryDirectory()
        let source = Paths.fixtures.appendingPathComponent("tiny-qwen3")
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: source.appendingPathComponent(f), to: dir.appendingPathComponent(f))
        }
        try case_.data.write(to: dir.appendingPathComponent("model.safetensors"))
        let r = try runCLI(["info", "--model", dir.path])
        #expect(r.status == 1)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("embedtune: error: \(dir.path)/model.safetensors"), "\(r.stderr)")
        #expect(r.stderr.contains(case_.expected), "\(r.stderr)")
    }

    @Test("a model whose checkpoint lacks a tensor fails naming it")
    func missingTensorCLI() throws {
        let dir = try Paths.temporaryDirectory()
        let source = Paths.fixtures.appendingPathComponent("tiny-qwen3")
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: source.appendingPathComponent(f), to: dir.appendingPathComponent(f))
        }
        let file = try SafetensorsFile(url: source.appendingPathComponent("model.safetensors"))
        var items: [(String, [Int], [Float])] = []
        for name in file.names where name != "layers.1.mlp.up_proj.weight" {
            let t = try file.tensor(name)
            items.append((name, t.shape, t.array))
        }
        try writeTensors(items, to: dir.appendingPathComponent("model.safetensors"))
        let r = try runCLI(["info", "--model", dir.path])
        #expect(r.status == 1)
        #expect(r.stderr.contains("tensor \"layers.1.mlp.up_proj.weight\": missing"), "\(r.stderr)")
    }
}

func writeTensors(_ items: [(String, [Int], [Float])], to url: URL) throws {
    var buffers: [UnsafeMutableBufferPointer<Float>] = []
    defer { buffers.forEach { $0.deallocate() } }
    var writerItems: [SafetensorsWriter.Item] = []
    for (name, shape, values) in items {
        let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: values.count)
        _ = b.initialize(from: values)
        buffers.append(b)
        writerItems.append(.init(name: name, shape: shape, values: UnsafeBufferPointer(b)))
    }
    try SafetensorsWriter.write(writerItems, to: url)
}
