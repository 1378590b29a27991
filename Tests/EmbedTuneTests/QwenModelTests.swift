import EmbedTuneFormats
import EmbedTuneModels
import Foundation
import Testing

/// The reference embeddings made by tools/reference/make_fixtures.py with transformers.
struct EmbeddingCase {
    let model: String, name: String, texts: [String], instruction: String?, maxLength: Int, dim: Int?
    let inputIDs: [[Int]], attentionMask: [[Int]], embeddings: [[Float]]

    static func all() throws -> [EmbeddingCase] {
        let data = try Data(contentsOf: Paths.reference.appendingPathComponent("qwen_embeddings.json"))
        let root = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (root["cases"] as! [[String: Any]]).map { c in
            EmbeddingCase(model: c["model"] as! String, name: c["name"] as! String, texts: c["texts"] as! [String],
                          instruction: c["instruction"] as? String, maxLength: c["max_length"] as! Int, dim: c["dim"] as? Int,
                          inputIDs: c["input_ids"] as! [[Int]], attentionMask: c["attention_mask"] as! [[Int]],
                          embeddings: (c["embeddings"] as! [[Double]]).map { $0.map(Float.init) })
        }
    }
}

@Suite("Qwen3 / Qwen2 embedding parity with transformers")
struct QwenModelTests {
    static let cases = (try? EmbeddingCase.all()) ?? []

    @Test("embeddings match transformers within 1e-4 per element", arguments: cases.map { "\($0.model)/\($0.name)" })
    func parity(_ id: String) throws {
        let c = Self.cases.first { "\($0.model)/\($0.name)" == id }!
        let embedder = try Embedder(directory: ModelDirectory(Paths.fixtures.appendingPathComponent(c.model)))
        var options = Embedder.Options()
        options.maxLength = c.maxLength
        options.dimension = c.dim
        options.batchSize = c.name == "single" ? 1 : 64
        options.prefix = c.instruction.map(Embedder.instructionPrefix) ?? ""
        // Token ids first: the unpadded rows HF fed the model.
        let ids = embedder.tokenizer.encodeBatch(c.texts.map { options.prefix + $0 }, maxLength: c.maxLength)
        let hfIDs = zip(c.inputIDs, c.attentionMask).map { row, mask in zip(row, mask).filter { $0.1 == 1 }.map { Int32($0.0) } }
        #expect(ids == hfIDs)
        let (dim, values) = try embedder.embed(c.texts, options: options)
        #expect(dim == c.embeddings[0].count)
        let worst = maxAbsDifference(values, c.embeddings.flatMap { $0 })
        #expect(worst <= 1e-4, "max |Δ| = \(worst)")
    }

    @Test("a batch embeds exactly like its texts one at a time")
    func batchedEqualsSingle() throws {
        let embedder = try Embedder(directory: ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-qwen3")))
        let texts = ["rice", "稻田养鱼是一种生态农业模式。", "Tilapia, carp and catfish grow well in warm ponds.", "🐟"]
        var options = Embedder.Options()
        options.batchSize = texts.count
        let batched = try embedder.embed(texts, options: options).values
        options.batchSize = 1
        let single = try embedder.embed(texts, options: options).values
        #expect(maxAbsDifference(batched, single) <= 1e-6)
    }

    @Test("sharded bf16 checkpoints load; the sentence-transformers files set pooling and prompts")
    func directoryLayout() throws {
        let dir = try ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-qwen2"))
        #expect(dir.modelType == "qwen2")
        #expect(dir.pooling == .lastToken)
        #expect(dir.normalize)
        #expect(dir.prompts["query"]?.hasPrefix("Instruct: ") == true)
        let store = try WeightStore(directory: dir.url)
        #expect(store.dominantDType == "BF16")
        #expect(Set(store.index.values).count >= 2)
    }

    @Test("a Q8_0 GGUF tiny Qwen3 tokenizes identically and embeds like its safetensors twin")
    func ggufTwin() throws {
        let gguf = try Embedder(directory: ModelDirectory(Paths.fixtures.appendingPathComponent("gguf/tiny-qwen3-q8_0.gguf")))
        let st = try Embedder(directory: ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-qwen3")))
        let texts = ["rice paddy", "稻田养鱼是一种生态农业模式。", "Tilapia, carp and catfish grow well in warm ponds 🐟", "<|im_start|>x"]
        for t in texts { #expect(gguf.tokenizer.encode(t) == st.tokenizer.encode(t)) }
        let a = try gguf.embed(texts, options: .init()).values, b = try st.embed(texts, options: .init()).values
        let dim = st.backbone.hiddenSize
        for i in 0..<texts.count {
            let cosine = (0..<dim).reduce(Float(0)) { $0 + a[i * dim + $1] * b[i * dim + $1] }
            #expect(cosine > 0.999, "text \(i): cosine \(cosine)")
        }
        #expect(maxAbsDifference(a, b) < 0.05)
    }

    @Test("the embed command writes an .npy with one normalised row per input line")
    func embedCLI() throws {
        let dir = try Paths.temporaryDirectory()
        let input = dir.appendingPathComponent("in.txt"), output = dir.appendingPathComponent("out.npy")
        try "rice paddy\n稻田养鱼\n\n🐟 fish\n".write(to: input, atomically: true, encoding: .utf8)
        let model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path
        let r = try runCLI(["embed", "--model", model, "--input", input.path, "--output", output.path, "--quiet", "--dim", "32"])
        #expect(r.status == 0, "\(r.stderr)")
        let (rows, cols, values) = try NPY.read(output)
        #expect(rows == 4 && cols == 32)
        for i in 0..<rows {
            let norm = (0..<cols).reduce(Float(0)) { $0 + values[i * cols + $1] * values[i * cols + $1] }
            #expect(abs(norm - 1) < 1e-5)
        }
        let missing = try runCLI(["embed", "--model", model + "-nope", "--input", input.path, "--output", output.path])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("model directory does not exist"))
    }
}
