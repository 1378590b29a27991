import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import Foundation
import Testing

private let ggufFixtures = Paths.fixtures.appendingPathComponent("gguf")

// MARK: - A minimal GGUF writer for hand-built and hostile files

/// Little-endian GGUF bytes, recording where named fields start so a test can rewrite them.
private struct GGUFBytes {
    var data = Data()
    var marks: [String: Int] = [:]

    mutating func mark(_ label: String) { marks[label] = data.count }
    mutating func u8(_ v: UInt8) { data.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func string(_ s: String) { u64(UInt64(s.utf8.count)); data.append(contentsOf: Array(s.utf8)) }

    /// Overwrites the bytes at a recorded field.
    mutating func set32(_ label: String, _ v: UInt32) {
        let at = marks[label]!
        withUnsafeBytes(of: v.littleEndian) { data.replaceSubrange(at..<(at + 4), with: $0) }
    }
    mutating func set64(_ label: String, _ v: UInt64) {
        let at = marks[label]!
        withUnsafeBytes(of: v.littleEndian) { data.replaceSubrange(at..<(at + 8), with: $0) }
    }
}

/// A metadata entry: key, value type id, encoded value.
private typealias GGUFKV = (key: String, type: UInt32, value: (inout GGUFBytes) -> Void)
private typealias GGUFTensorSpec = (name: String, dims: [UInt64], type: UInt32, offset: UInt64)

private func kvString(_ key: String, _ s: String) -> GGUFKV { (key, 8, { $0.string(s) }) }
private func kvU32(_ key: String, _ v: UInt32) -> GGUFKV { (key, 4, { $0.u32(v) }) }

/// Two tensors: "a" F32 [8] = 0...7, "b" Q8_0 [2, 32] with d = 0.5 and qs = -16...15 per row.
private let smallKVs: [GGUFKV] = [
    kvString("general.architecture", "qwen3"),
    kvU32("general.alignment", 32),
    ("tokens", 9, { b in b.mark("tokens.elementType"); b.u32(8); b.mark("tokens.count"); b.u64(2); b.string("a"); b.string("bc") }),
]
private let smallTensors: [GGUFTensorSpec] = [("a", [8], 0, 0), ("b", [32, 2], 8, 32)]
private let smallData: Data = {
    var d = Data()
    for i in 0..<8 { withUnsafeBytes(of: Float(i).bitPattern.littleEndian) { d.append(contentsOf: $0) } }
    for _ in 0..<2 {
        d.append(contentsOf: [0x00, 0x38])  // fp16 0.5
        for q in -16..<16 { d.append(UInt8(bitPattern: Int8(q))) }
    }
    return d
}()

/// A valid GGUF (no padding after the last tensor, so any truncation cuts into something).
private func buildGGUF(version: UInt32 = 3, kvs: [GGUFKV] = smallKVs, tensors: [GGUFTensorSpec] = smallTensors,
                       data: Data = smallData, alignment: Int = 32) -> GGUFBytes {
    var b = GGUFBytes()
    b.data.append(contentsOf: Array("GGUF".utf8))
    b.mark("version"); b.u32(version)
    b.mark("tensorCount"); b.u64(UInt64(tensors.count))
    b.mark("kvCount"); b.u64(UInt64(kvs.count))
    for (i, kv) in kvs.enumerated() {
        b.mark("key\(i).length"); b.string(kv.key)
        b.mark("key\(i).type"); b.u32(kv.type)
        b.mark("key\(i).value"); kv.value(&b)
    }
    for t in tensors {
        b.mark("\(t.name).name"); b.string(t.name)
        b.mark("\(t.name).ndims"); b.u32(UInt32(t.dims.count))
        for (j, d) in t.dims.enumerated() { b.mark("\(t.name).ne\(j)"); b.u64(d) }
        b.mark("\(t.name).type"); b.u32(t.type)
        b.mark("\(t.name).offset"); b.u64(t.offset)
    }
    while b.data.count % alignment != 0 { b.u8(0) }
    b.mark("data")
    b.data.append(data)
    return b
}

private func writeTemporary(_ data: Data, name: String = "t.gguf") throws -> URL {
    let url = try Paths.temporaryDirectory().appendingPathComponent(name)
    try data.write(to: url)
    return url
}

/// Opens the bytes as a GGUF and reads every tensor EmbedTune can dequantise.
private func openAndRead(_ url: URL) throws -> GGUFFile {
    let file = try GGUFFile(url: url)
    for t in file.tensors where t.type.canDequantize {
        var out = [Float](repeating: 0, count: t.count)
        try file.read(t, into: &out)
    }
    return file
}

// MARK: - Hostile files

private struct HostileGGUF: Sendable {
    let name: String
    let bytes: @Sendable () -> Data
    let expected: String
    /// The FormatError's item, when the problem belongs to a key or a tensor.
    let item: String?
}

private func mutated(_ change: @escaping @Sendable (inout GGUFBytes) -> Void) -> @Sendable () -> Data {
    { var b = buildGGUF(); change(&b); return b.data }
}

private let hostileGGUF: [HostileGGUF] = [
    .init(name: "empty file", bytes: { Data() }, expected: "too short for the 4-byte GGUF magic", item: nil),
    .init(name: "truncated in the header", bytes: { buildGGUF().data.prefix(10) },
          expected: "file is truncated: the tensor count needs 8 bytes at offset 8, only 2 left", item: nil),
    .init(name: "truncated in the metadata", bytes: { buildGGUF().data.prefix(72) },
          expected: "file is truncated: the key length needs 8 bytes at offset 69, only 3 left", item: "metadata entry #1"),
    .init(name: "truncated right after the counts", bytes: { buildGGUF().data.prefix(40) },
          expected: "tensor count 2 is impossible", item: nil),
    .init(name: "truncated in the tensor data", bytes: { buildGGUF().data.dropLast(5) },
          expected: "runs past the end of the", item: "tensor \"b\""),
    .init(name: "bad magic", bytes: mutated { $0.data.replaceSubrange(0..<4, with: Array("GGML".utf8)) },
          expected: "bad magic 47 47 4d 4c (not a GGUF file", item: nil),
    .init(name: "version 99", bytes: mutated { $0.set32("version", 99) },
          expected: "unsupported GGUF version 99 (only 2 and 3 are supported)", item: nil),
    .init(name: "version 1", bytes: mutated { $0.set32("version", 1) }, expected: "GGUF version 1 is not supported", item: nil),
    .init(name: "big-endian file", bytes: mutated { $0.set32("version", UInt32(3).byteSwapped) },
          expected: "big-endian GGUF files are not supported", item: nil),
    .init(name: "unknown tensor type id", bytes: mutated { $0.set32("b.type", 99) },
          expected: "unknown tensor type id 99", item: "tensor \"b\""),
    .init(name: "removed tensor type id", bytes: mutated { $0.set32("b.type", 4) },
          expected: "unknown tensor type id 4", item: "tensor \"b\""),
    .init(name: "tensor data past the end", bytes: mutated { $0.set64("b.offset", 64) },
          expected: "runs past the end of the", item: "tensor \"b\""),
    .init(name: "tensor offset past the end", bytes: mutated { $0.set64("b.offset", 1 << 62) },
          expected: "data offset 4611686018427387904 is past the end", item: "tensor \"b\""),
    .init(name: "overlapping tensors", bytes: mutated { $0.set64("b.offset", 0) },
          expected: "overlaps tensor", item: nil),
    .init(name: "misaligned tensor offset", bytes: mutated { $0.set64("b.offset", 36) },
          expected: "data offset 36 is not a multiple of the alignment 32", item: "tensor \"b\""),
    .init(name: "key length 2^60", bytes: mutated { $0.set64("key0.length", 1 << 60) },
          expected: "the key length 1152921504606846976 runs past the end of the file", item: "metadata entry #0"),
    .init(name: "string value length 2^60", bytes: mutated { $0.set64("key0.value", 1 << 60) },
          expected: "the string length 1152921504606846976 runs past the end of the file", item: "key \"general.architecture\""),
    .init(name: "tensor count 2^40", bytes: mutated { $0.set64("tensorCount", 1 << 40) },
          expected: "tensor count 1099511627776 is impossible", item: nil),
    .init(name: "metadata count 2^40", bytes: mutated { $0.set64("kvCount", 1 << 40) },
          expected: "metadata count 1099511627776 is impossible", item: nil),
    .init(name: "array length 2^62", bytes: mutated { $0.set64("tokens.count", 1 << 62) },
          expected: "array length 4611686018427387904 is impossible", item: "key \"tokens\""),
    .init(name: "unknown array element type", bytes: mutated { $0.set32("tokens.elementType", 77) },
          expected: "unknown array element type 77", item: "key \"tokens\""),
    .init(name: "unknown value type", bytes: mutated { $0.set32("key2.type", 13) },
          expected: "unknown value type 13", item: "key \"tokens\""),
    .init(name: "n_dims 5", bytes: mutated { $0.set32("a.ndims", 5) },
          expected: "n_dims 5 exceeds ggml's maximum of 4", item: "tensor \"a\""),
    .init(name: "dimension over int64", bytes: mutated { $0.set64("a.ne0", UInt64.max) },
          expected: "exceeds the int64 range", item: "tensor \"a\""),
    .init(name: "row not a whole number of blocks", bytes: mutated { $0.set64("b.ne0", 16) },
          expected: "ne[0] = 16 is not a multiple of the Q8_0 block size 32", item: "tensor \"b\""),
    .init(name: "element count overflows", bytes: mutated { $0.set64("b.ne1", 1 << 62) },
          expected: "needs more bytes than the", item: "tensor \"b\""),
    .init(name: "key not UTF-8", bytes: mutated { b in b.data[b.marks["key0.length"]! + 8] = 0xff },
          expected: "the key is not valid UTF-8", item: "metadata entry #0"),
    .init(name: "duplicate key", bytes: { buildGGUF(kvs: smallKVs + [kvU32("general.alignment", 32)]).data },
          expected: "duplicate key", item: "key \"general.alignment\""),
    .init(name: "duplicate tensor name", bytes: { buildGGUF(tensors: smallTensors + [("a", [8], 0, 128)]).data },
          expected: "duplicate tensor name", item: "tensor \"a\""),
    .init(name: "alignment not a power of two", bytes: { buildGGUF(kvs: [kvU32("general.alignment", 24)]).data },
          expected: "must be a uint32 power of two", item: "key \"general.alignment\""),
    .init(name: "alignment of the wrong type", bytes: { buildGGUF(kvs: [kvString("general.alignment", "32")]).data },
          expected: "must be a uint32 power of two", item: "key \"general.alignment\""),
    .init(name: "bool that is neither 0 nor 1", bytes: { buildGGUF(kvs: [("flag", 7, { $0.u8(2) })]).data },
          expected: "bool value 2 is neither 0 nor 1", item: "key \"flag\""),
    .init(name: "arrays nested too deep", bytes: {
        buildGGUF(kvs: [("deep", 9, { b in for _ in 0..<20 { b.u32(9); b.u64(1) }; b.u32(4); b.u64(0) })]).data
    }, expected: "arrays nested more than 8 deep", item: "key \"deep\""),
]

@Suite("GGUF")
struct GGUFTests {
    @Test("a hand-built GGUF reads back its metadata, shapes and values")
    func handBuilt() throws {
        let url = try writeTemporary(buildGGUF().data)
        let file = try GGUFFile(url: url)
        #expect(file.version == 3)
        #expect(file.alignment == 32)
        #expect(file.metadataKeys == ["general.architecture", "general.alignment", "tokens"])
        #expect(file.architecture == "qwen3")
        #expect(file.metadata["tokens"] == .array(.string, [.string("a"), .string("bc")]))
        #expect(file.tensorNames == ["a", "b"])
        let b = try file.info("b")
        #expect(b.type == .Q8_0 && b.dimensions == [32, 2] && b.shape == [2, 32])
        #expect(try file.tensor("a").array == (0..<8).map(Float.init))
        let row = (-16..<16).map { Float($0) * 0.5 }
        #expect(try file.tensor("b", expectedShape: [2, 32]).array == row + row)
        #expect(throws: FormatError(url: url, item: "tensor \"b\"", "shape [2, 32], expected [32, 2]")) {
            try file.tensor("b", expectedShape: [32, 2])
        }
        // Version 2 shares the layout.
        #expect(try GGUFFile(url: writeTemporary(buildGGUF(version: 2).data)).version == 2)
    }

    @Test("every metadata value type reads back with its value")
    func metadataTypes() throws {
        let file = try GGUFFile(url: ggufFixtures.appendingPathComponent("quant_types.gguf"))
        let m = file.metadata
        #expect(m["general.architecture"] == .string("embedtune-test"))
        #expect(m["test.uint8"] == .uint8(200))
        #expect(m["test.int8"] == .int8(-100))
        #expect(m["test.uint16"] == .uint16(60000))
        #expect(m["test.int16"] == .int16(-30000))
        #expect(m["test.uint32"] == .uint32(4_000_000_000))
        #expect(m["test.int32"] == .int32(-2_000_000_000))
        #expect(m["test.float32"] == .float32(0.25))
        #expect(m["test.uint64"] == .uint64((1 << 63) + 5))
        #expect(m["test.uint64"]?.int == nil)  // does not fit in Int
        #expect(m["test.int64"] == .int64(-(1 << 62)))
        #expect(m["test.float64"] == .float64(-1.5e300))
        #expect(m["test.bool"] == .bool(true))
        #expect(m["test.string"]?.string == "héllo wörld ✓")
        #expect(m["test.array.int32"]?.ints == [1, -2, 3])
        #expect(m["test.array.int32"]?.elementType == .int32)
        #expect(m["test.array.string"]?.strings == ["a", "bc", ""])
        #expect(m["test.array.nested"]?.array?.map { $0.ints ?? [] } == [[1, 2], [3], [4, 5, 6]])
        #expect(m["test.array.nested"]?.elementType == .array)
        #expect(m["test.array.float32"]?.doubles == [0.5, -1.0])
        #expect(m["test.array.bool"] == .array(.bool, [.bool(true), .bool(false)]))
        #expect(m["test.uint32"]?.int == 4_000_000_000 && m["test.int8"]?.double == -100)
    }

    @Test("each tensor type dequantises exactly like gguf-py (ggml's reference loops)",
          arguments: ["f32", "f32_3d", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"])
    func dequantisation(_ name: String) throws {
        let file = try GGUFFile(url: ggufFixtures.appendingPathComponent("quant_types.gguf"))
        let oracle = try SafetensorsFile(url: ggufFixtures.appendingPathComponent("reference_dequant.safetensors"))
        let expected = try oracle.tensor(name)
        let info = try file.info(name)
        let got = try file.tensor(name, expectedShape: expected.shape)
        let delta = maxAbsDifference(got.array, expected.array)
        print("GGUF dequantisation \(info.type.name) \(info.shape): max |Δ| vs gguf-py = \(delta)")
        #expect(delta <= 1e-6)
        // Bit-exact, in fact (signed zeros and subnormals included).
        #expect(got.array.map(\.bitPattern) == expected.array.map(\.bitPattern))
    }

    @Test("rows read alone equal the same rows of the whole tensor, for every type", arguments: ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"])
    func rowsAlone(_ name: String) throws {
        let file = try GGUFFile(url: ggufFixtures.appendingPathComponent("quant_types.gguf"))
        let info = try file.info(name)
        let whole = try file.tensor(name).array
        let width = info.dimensions[0], height = info.count / width
        let rows = [height - 1, 0, height / 2, height - 1]
        var got = [Float](repeating: .nan, count: rows.count * width)
        try got.withUnsafeMutableBufferPointer { try file.readRows(info, rows: rows, into: $0.baseAddress!) }
        let expected = rows.flatMap { whole[($0 * width)..<(($0 + 1) * width)] }
        #expect(got.map(\.bitPattern) == expected.map(\.bitPattern))
        #expect(throws: FormatError.self) { try got.withUnsafeMutableBufferPointer { try file.readRows(info, rows: [height], into: $0.baseAddress!) } }
    }

    @Test("a tensor large enough to be split across cores dequantises like one block at a time")
    func parallelDequantisation() throws {
        // 8191 Q8_0 blocks (an odd count, so the chunks differ in size), each with its own scale.
        let rows = 8191
        var data = Data()
        var expected = [Float]()
        for r in 0..<rows {
            let d = UInt16(0x2000 + r % 0x3000)  // assorted positive fp16 scales
            withUnsafeBytes(of: d.littleEndian) { data.append(contentsOf: $0) }
            for j in 0..<32 {
                let q = Int8(truncatingIfNeeded: r &* 7 &+ j &* 13)
                data.append(UInt8(bitPattern: q))
                expected.append(Float(q) * floatFromHalf(d))
            }
        }
        let url = try writeTemporary(buildGGUF(kvs: [], tensors: [("big", [32, UInt64(rows)], 8, 0)], data: data).data)
        let got = try GGUFFile(url: url).tensor("big", expectedShape: [rows, 32]).array
        #expect(got.map(\.bitPattern) == expected.map(\.bitPattern))
    }

    @Test("shapes are reported in PyTorch order, outermost dimension first")
    func shapeOrder() throws {
        let file = try GGUFFile(url: ggufFixtures.appendingPathComponent("quant_types.gguf"))
        let t = try file.info("f32_3d")
        #expect(t.dimensions == [5, 3, 2])
        #expect(t.shape == [2, 3, 5])
        #expect(try file.info("q4_0").shape == [3, 64])
        #expect(try file.info("q8_0").type == .Q8_0)
        #expect(file.dataOffset % 32 == 0)
    }

    @Test("a type EmbedTune does not dequantise is named in the error, with its tensor")
    func unsupportedType() throws {
        let url = ggufFixtures.appendingPathComponent("quant_types.gguf")
        let file = try GGUFFile(url: url)
        let t = try file.info("q5_k_unsupported")
        #expect(t.type == .Q5_K && !t.type.canDequantize)
        do {
            _ = try file.tensor("q5_k_unsupported")
            Issue.record("Q5_K was dequantised")
        } catch let error as FormatError {
            #expect(error.file == url.path)
            #expect(error.item == "tensor \"q5_k_unsupported\"")
            #expect(error.problem.hasPrefix("unsupported tensor type Q5_K"), "\(error)")
        }
    }

    @Test("every hostile file is rejected with one error naming the file, the key or tensor, and the problem",
          arguments: hostileGGUF.map(\.name))
    func hostile(_ name: String) throws {
        let c = hostileGGUF.first { $0.name == name }!
        let url = try writeTemporary(c.bytes(), name: "bad.gguf")
        do {
            _ = try openAndRead(url)
            Issue.record("\(name): accepted")
        } catch let error as FormatError {
            #expect(error.file == url.path)
            #expect(error.problem.contains(c.expected), "\(error)")
            if let item = c.item { #expect(error.item == item, "\(error)") }
            #expect(!error.description.contains("\n"))
        }
    }

    @Test("every truncation of a valid file is a clean error, never a crash")
    func everyTruncation() throws {
        let data = buildGGUF().data
        let dir = try Paths.temporaryDirectory()
        for n in 0..<data.count {
            let url = dir.appendingPathComponent("cut-\(n).gguf")
            try data.prefix(n).write(to: url)
            #expect(throws: FormatError.self, "prefix of \(n) bytes") { try openAndRead(url) }
        }
    }

    @Test("corrupting any header byte gives a clean error or a still-valid file, never a crash")
    func byteCorruption() throws {
        let b = buildGGUF()
        let headerEnd = b.marks["data"]!
        let dir = try Paths.temporaryDirectory()
        var rejected = 0, accepted = 0
        for i in 0..<headerEnd {
            for v: UInt8 in [0x00, 0xff, 0x80, b.data[i] ^ 0x01, b.data[i] &+ 0x20] where v != b.data[i] {
                var d = b.data
                d[i] = v
                let url = dir.appendingPathComponent("flip.gguf")
                try d.write(to: url)
                do { _ = try openAndRead(url); accepted += 1 } catch is FormatError { rejected += 1 }
            }
        }
        #expect(rejected > 0 && accepted > 0)
    }

    @Test("Hugging Face names map to llama.cpp names for qwen2, qwen3 and bert, both ways")
    func nameMapping() {
        let cases: [(arch: String, hf: String, gguf: String?)] = [
            ("qwen3", "embed_tokens.weight", "token_embd.weight"),
            ("qwen3", "model.embed_tokens.weight", "token_embd.weight"),
            ("qwen3", "norm.weight", "output_norm.weight"),
            ("qwen3", "lm_head.weight", "output.weight"),
            ("qwen3", "layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"),
            ("qwen3", "model.layers.27.self_attn.q_proj.weight", "blk.27.attn_q.weight"),
            ("qwen3", "layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight"),
            ("qwen3", "layers.1.self_attn.v_proj.weight", "blk.1.attn_v.weight"),
            ("qwen3", "layers.1.self_attn.o_proj.weight", "blk.1.attn_output.weight"),
            ("qwen3", "layers.1.self_attn.q_norm.weight", "blk.1.attn_q_norm.weight"),
            ("qwen3", "layers.1.self_attn.k_norm.weight", "blk.1.attn_k_norm.weight"),
            ("qwen3", "layers.1.post_attention_layernorm.weight", "blk.1.ffn_norm.weight"),
            ("qwen3", "layers.1.mlp.gate_proj.weight", "blk.1.ffn_gate.weight"),
            ("qwen3", "layers.1.mlp.up_proj.weight", "blk.1.ffn_up.weight"),
            ("qwen3", "layers.1.mlp.down_proj.weight", "blk.1.ffn_down.weight"),
            ("qwen2", "layers.3.self_attn.q_proj.bias", "blk.3.attn_q.bias"),
            ("qwen2", "layers.3.self_attn.v_proj.bias", "blk.3.attn_v.bias"),
            ("qwen2", "layers.3.self_attn.q_norm.weight", nil),  // Qwen2 has no q/k norm
            ("qwen3", "layers.01.mlp.up_proj.weight", nil),
            ("qwen3", "layers.x.mlp.up_proj.weight", nil),
            ("qwen3", "layers.1.mlp.up_proj", nil),
            ("bert", "embeddings.word_embeddings.weight", "token_embd.weight"),
            ("bert", "bert.embeddings.word_embeddings.weight", "token_embd.weight"),
            ("bert", "embeddings.position_embeddings.weight", "position_embd.weight"),
            ("bert", "embeddings.token_type_embeddings.weight", "token_types.weight"),
            ("bert", "embeddings.LayerNorm.weight", "token_embd_norm.weight"),
            ("bert", "embeddings.LayerNorm.bias", "token_embd_norm.bias"),
            ("bert", "encoder.layer.11.attention.self.query.weight", "blk.11.attn_q.weight"),
            ("bert", "encoder.layer.0.attention.self.key.bias", "blk.0.attn_k.bias"),
            ("bert", "encoder.layer.0.attention.self.value.weight", "blk.0.attn_v.weight"),
            ("bert", "encoder.layer.0.attention.output.dense.bias", "blk.0.attn_output.bias"),
            ("bert", "encoder.layer.0.attention.output.LayerNorm.weight", "blk.0.attn_output_norm.weight"),
            ("bert", "encoder.layer.0.intermediate.dense.weight", "blk.0.ffn_up.weight"),
            ("bert", "encoder.layer.0.output.dense.bias", "blk.0.ffn_down.bias"),
            ("bert", "encoder.layer.0.output.LayerNorm.bias", "blk.0.layer_output_norm.bias"),
            ("bert", "pooler.dense.weight", nil),
        ]
        for c in cases {
            #expect(GGUFTensorSource.ggufName(forHuggingFace: c.hf, architecture: c.arch) == c.gguf, "\(c.arch) \(c.hf)")
            if let g = c.gguf {
                var bare = c.hf
                for p in ["model.", "bert."] where bare.hasPrefix(p) { bare.removeFirst(p.count) }
                #expect(GGUFTensorSource.huggingFaceName(forGGUF: g, architecture: c.arch) == bare, "\(c.arch) \(g)")
            }
        }
    }

    @Test("the tiny Qwen3 GGUF gives the safetensors weights by Hugging Face name, within Q8_0 error")
    func tinyQwen3Weights() throws {
        let source = try GGUFTensorSource(url: ggufFixtures.appendingPathComponent("tiny-qwen3-q8_0.gguf"))
        let store = try WeightStore(directory: Paths.fixtures.appendingPathComponent("tiny-qwen3"))
        #expect(source.architecture == "qwen3")
        #expect(source.names == store.names)
        #expect(source.unmappedTensors.isEmpty)
        #expect(source.contains("embed_tokens.weight") && source.contains("model.embed_tokens.weight"))
        #expect(!source.contains("lm_head.weight"))

        // Load both through the arena path a model uses.
        let fromGGUF = ParameterArena(), fromSafetensors = ParameterArena()
        for name in store.names {
            let shape = store.shape(of: name)!
            #expect(source.shape(of: name) == shape, "\(name)")
            fromGGUF.declare(name, shape)
            fromSafetensors.declare(name, shape)
        }
        fromGGUF.allocate()
        fromSafetensors.allocate()
        try fromGGUF.load(from: source)
        try fromSafetensors.load(from: store)
        var worst = (name: "", relative: Float(0))
        for slot in fromGGUF.layout {
            let a = fromGGUF.view(slot.offset, slot.shape).array, w = fromSafetensors.view(slot.offset, slot.shape).array
            let scale = w.map(abs).max()!
            let relative = maxAbsDifference(a, w) / scale
            if slot.shape.count == 1 {
                #expect(a == w, "\(slot.name) is F32 in the GGUF")
            } else {
                #expect(relative <= 0.01, "\(slot.name): max |Δ| / max |w| = \(relative)")
                #expect(relative > 0, "\(slot.name) should be quantised")
            }
            if relative > worst.relative { worst = (slot.name, relative) }
        }
        print("GGUF tiny-qwen3 Q8_0: worst max |Δ| / max |w| = \(worst.relative) (\(worst.name))")

        var buffer = [Float](repeating: 0, count: 64 * 64)
        #expect(throws: FormatError.self) { try source.read("layers.0.self_attn.q_proj.weight", shape: [32, 128], into: &buffer) }
        do { try source.read("layers.9.mlp.up_proj.weight", shape: [128, 64], into: &buffer) } catch {
            #expect("\(error)".contains("tensor \"layers.9.mlp.up_proj.weight\" (\"blk.9.ffn_up.weight\"): missing"), "\(error)")
        }
    }

    @Test("the config built from the GGUF metadata matches the model's config.json")
    func tinyQwen3Config() throws {
        let source = try GGUFTensorSource(url: ggufFixtures.appendingPathComponent("tiny-qwen3-q8_0.gguf"))
        let built = try source.huggingFaceConfig()
        let decoder = JSONDecoder()
        let fromGGUF = try decoder.decode(QwenConfig.self, from: JSONEncoder().encode(JSONValue.object(built)))
        let original = try decoder.decode(QwenConfig.self, from: Data(contentsOf: Paths.fixtures.appendingPathComponent("tiny-qwen3/config.json")))
        #expect(fromGGUF.modelType == original.modelType)
        #expect(fromGGUF.vocabSize == original.vocabSize)
        #expect(fromGGUF.hiddenSize == original.hiddenSize)
        #expect(fromGGUF.intermediateSize == original.intermediateSize)
        #expect(fromGGUF.numHiddenLayers == original.numHiddenLayers)
        #expect(fromGGUF.numAttentionHeads == original.numAttentionHeads)
        #expect(fromGGUF.numKeyValueHeads == original.numKeyValueHeads)
        #expect(fromGGUF.headDim == original.headDim)
        #expect(fromGGUF.theta == original.theta)
        #expect(fromGGUF.rmsNormEps == original.rmsNormEps)  // 1e-6 exactly, not float32's 9.99999997e-07
        #expect(fromGGUF.maxPositionEmbeddings == original.maxPositionEmbeddings)
        #expect(fromGGUF.tieWordEmbeddings == original.tieWordEmbeddings)
        #expect(fromGGUF.attentionBias == original.attentionBias)
        #expect(built["eos_token_id"] == .int(1500))
        #expect(source.poolingMode == "last")

        // The tokenizer metadata llama.cpp writes for the qwen2 family.
        let m = source.file.metadata
        #expect(m["tokenizer.ggml.model"]?.string == "gpt2")
        #expect(m["tokenizer.ggml.pre"]?.string == "qwen2")
        #expect(m["tokenizer.ggml.tokens"]?.strings?.count == 1505)
        #expect(m["tokenizer.ggml.tokens"]?.strings?[1500] == "<|endoftext|>")
        #expect(m["tokenizer.ggml.token_type"]?.ints?[1500] == 3)
        #expect(m["tokenizer.ggml.merges"]?.strings?.count == 1244)
    }

    @Test("an architecture whose conversion is more than a renaming is refused")
    func unsupportedArchitecture() throws {
        let url = try writeTemporary(buildGGUF(kvs: [kvString("general.architecture", "llama")]).data)
        #expect(throws: FormatError(url: url, item: "key \"general.architecture\"",
                                    "architecture \"llama\" is not supported (supported: bert, qwen2, qwen3)")) {
            try GGUFTensorSource(url: url)
        }
        let none = try writeTemporary(buildGGUF(kvs: []).data)
        #expect(throws: FormatError(url: none, item: "key \"general.architecture\"", "missing")) {
            try GGUFTensorSource(url: none)
        }
    }
}
