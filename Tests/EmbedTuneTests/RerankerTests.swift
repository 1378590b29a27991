import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneRetrieval
import EmbedTuneTokenizers
import Foundation
import Testing

/// Qwen3-Reranker scoring against transformers (tools/reference/make_reranker_fixtures.py): tiny
/// random Qwen3/Qwen2 ForCausalLM models, tied and untied lm_head, scored as the model card does.
/// The tiny vocabulary answers with "y" and "n" (it has no "yes"/"no" token).
@Suite("Qwen reranker: causal-LM head and yes/no scoring")
struct RerankerTests {
    static let directory = Paths.fixtures.appendingPathComponent("reranker")
    static let expected: JSONValue = try! JSONValue.load(directory.appendingPathComponent("expected.json"))

    struct Pair { var instruction: String?; var query: String; var document: String }

    static var pairs: [Pair] {
        expected["pairs"]!.array!.map { Pair(instruction: $0["instruction"]?.string, query: $0["query"]!.string!,
                                             document: $0["document"]!.string!) }
    }

    func reranker(_ name: String) throws -> QwenReranker {
        let e = Self.expected
        let r = try QwenReranker(directory: ModelDirectory(Self.directory.appendingPathComponent(name)),
                                 answers: (e["yes_token"]!.string!, e["no_token"]!.string!))
        r.maxLength = e["max_length"]!.int!
        return r
    }

    func floats(_ v: JSONValue?) -> [Float] { v!.array!.map { Float($0.double!) } }

    @Test("logits of the two answer tokens and scores match transformers",
          arguments: ["qwen3-tied", "qwen3-untied", "qwen2-tied", "qwen2-untied"])
    func parity(_ name: String) throws {
        let r = try reranker(name), e = Self.expected["models"]![name]!
        #expect(r.head.tied == e["tie_word_embeddings"]!.bool!)
        #expect(Int(r.yesID) == e["yes_id"]!.int! && Int(r.noID) == e["no_id"]!.int!)
        // Each pair with its own instruction, all in one packed batch.
        var judgements = [QwenReranker.Judgement]()
        for (i, p) in Self.pairs.enumerated() {
            let ids = try r.tokens(query: p.query, document: p.document, instruction: p.instruction)
            #expect(ids.map(Int.init) == e["ids"]!.array![i].array!.map { $0.int! }, "pair \(i): token ids")
        }
        let byInstruction = Dictionary(grouping: Self.pairs.indices, by: { Self.pairs[$0].instruction })
        judgements = Array(repeating: QwenReranker.Judgement(yesLogit: 0, noLogit: 0), count: Self.pairs.count)
        for (instruction, indices) in byInstruction {
            let got = try r.judge(indices.map { (Self.pairs[$0].query, Self.pairs[$0].document) }, instruction: instruction)
            for (k, i) in indices.enumerated() { judgements[i] = got[k] }
        }
        let yes = maxAbsDifference(judgements.map(\.yesLogit), floats(e["yes_logits"]))
        let no = maxAbsDifference(judgements.map(\.noLogit), floats(e["no_logits"]))
        let score = maxAbsDifference(judgements.map(\.score), floats(e["scores"]))
        print("\(name): max |Δ| yes logit \(yes), no logit \(no), score \(score)")
        #expect(yes <= 1e-4 && no <= 1e-4, "logits: max |Δ| yes \(yes), no \(no)")
        #expect(score <= 1e-4, "scores: max |Δ| \(score)")
    }

    @Test("truncation shortens the body only: prefix and suffix stay whole")
    func truncationKeepsPrompt() throws {
        let r = try reranker("qwen3-tied")
        let long = String(repeating: "Tilapia grow well in warm ponds. ", count: 200)
        for maxLength in [r.prefixIDs.count + r.suffixIDs.count + 8, 200, 320] {
            r.maxLength = maxLength
            let ids = try r.tokens(query: "why do fish need oxygen", document: long)
            #expect(ids.count == maxLength)
            #expect(Array(ids.prefix(r.prefixIDs.count)) == r.prefixIDs)
            #expect(Array(ids.suffix(r.suffixIDs.count)) == r.suffixIDs)
        }
        r.maxLength = r.prefixIDs.count + r.suffixIDs.count
        #expect(throws: FormatError.self) { _ = try r.tokens(query: "q", document: "d") }
    }

    @Test("a pair longer than max_length still scores, as its truncated form")
    func longPairScores() throws {
        let r = try reranker("qwen2-untied")
        let long = String(repeating: "Shrimp need clean water with dissolved oxygen above 5 mg/L. ", count: 100)
        let score = try r.scores(query: "why do fish need oxygen", documents: [long, "short"])
        #expect(score.count == 2 && score.allSatisfy { $0 > 0 && $0 < 1 })
        // Only the first maxLength tokens count: a longer tail does not change the score.
        let longer = try r.scores(query: "why do fish need oxygen", documents: [long + long])
        #expect(abs(longer[0] - score[0]) <= 1e-6)
    }

    @Test("the real Qwen vocabulary answers with yes 9693 and no 2152")
    func realQwenAnswerIDs() throws {
        let tokenizer = try Tokenizer.loadTiktoken(Paths.qwenTiktoken)
        #expect(try QwenReranker.vocabularyID("yes", in: tokenizer) == 9693)
        #expect(try QwenReranker.vocabularyID("no", in: tokenizer) == 2152)
        #expect(try QwenReranker.vocabularyID("<|im_end|>", in: tokenizer) == 151645)
    }

    @Test("the model-level answers are Qwen's: yes and no by vocabulary lookup")
    func defaultAnswersNeedTheirTokens() throws {
        // The tiny vocabulary has neither "yes" nor "no": the lookup fails with a clear error.
        #expect(throws: FormatError.self) {
            _ = try QwenReranker(directory: ModelDirectory(Self.directory.appendingPathComponent("qwen3-tied")))
        }
    }
}

@Suite("Reranker: top-k by score")
struct RerankTopKTests {
    @Test("rerank orders the candidates by the reranker's scores, best first, and keeps top_k")
    func ordersByScore() throws {
        let e = RerankerTests.expected
        let r = try QwenReranker(directory: ModelDirectory(RerankerTests.directory.appendingPathComponent("qwen3-untied")),
                                 answers: (e["yes_token"]!.string!, e["no_token"]!.string!))
        let candidates = ["Spray tricyclazole at the booting stage.", "Beijing is the capital.", "Gravity attracts bodies.", "rice"]
        let scores = try r.relevance(query: "how to control rice blast", documents: candidates)
        let top = try rerank(r, query: "how to control rice blast", candidates: candidates, topK: 3)
        #expect(top.count == 3)
        #expect(top.map(\.index) == Array(scores.indices.sorted { scores[$0] > scores[$1] }.prefix(3)))
        #expect(top.map(\.score) == top.map { scores[$0.index] })
    }
}

@Suite("embedtune rerank")
struct RerankCommandTests {
    @Test("JSONL in, each query's top_k candidates out, scored as the library scores them")
    func rerankCLI() throws {
        let dir = try Paths.temporaryDirectory()
        let queries = dir.appendingPathComponent("queries.jsonl"), candidates = dir.appendingPathComponent("candidates.jsonl")
        try """
        {"id": "q1", "text": "how to control rice blast"}
        {"id": 7, "text": "best time to plant maize"}
        """.write(to: queries, atomically: true, encoding: .utf8)
        let pool = [("q1", "a", "Spray tricyclazole at the booting stage."), ("q1", "b", "Beijing is the capital."),
                    ("q1", "c", "Gravity attracts bodies."), ("7", "d", "Plant after the last frost.")]
        try pool.map { q, id, text in
            "{\"query_id\": \(q == "7" ? "7" : "\"\(q)\""), \"id\": \"\(id)\", \"text\": \"\(text)\"}"
        }.joined(separator: "\n").write(to: candidates, atomically: true, encoding: .utf8)
        let model = RerankerTests.directory.appendingPathComponent("qwen3-tied")
        let result = try runCLI(["rerank", "--model", model.path, "--queries", queries.path, "--candidates", candidates.path,
                                 "--top-k", "2", "--max_length", "320", "--yes_token", "y", "--no-token", "n"])
        #expect(result.status == 0, "\(result.stderr)")
        let rows = try result.stdout.split(separator: "\n").map { try JSONValue.parse(Data($0.utf8), file: "stdout") }
        let r = try QwenReranker(directory: ModelDirectory(model), answers: ("y", "n"))
        r.maxLength = 320
        let scores = try r.scores(query: "how to control rice blast", documents: pool.prefix(3).map(\.2))
        let best = scores.indices.sorted { scores[$0] > scores[$1] }.prefix(2)
        #expect(rows.count == 3)
        #expect(rows.prefix(2).map { $0["id"]!.string! } == best.map { pool[$0].1 })
        #expect(rows.prefix(2).map { $0["rank"]!.int! } == [1, 2])
        for (row, k) in zip(rows.prefix(2), best) { #expect(abs(Float(row["score"]!.double!) - scores[k]) <= 1e-6) }
        #expect(rows[2]["query_id"] == .int(7) && rows[2]["id"]!.string == "d")
    }

    @Test("a candidate naming no query is a one-line error with exit 1")
    func orphanCandidate() throws {
        let dir = try Paths.temporaryDirectory()
        let queries = dir.appendingPathComponent("q.jsonl"), candidates = dir.appendingPathComponent("c.jsonl")
        try "{\"id\": \"q1\", \"text\": \"x\"}\n".write(to: queries, atomically: true, encoding: .utf8)
        try "{\"query_id\": \"q2\", \"text\": \"y\"}\n".write(to: candidates, atomically: true, encoding: .utf8)
        let result = try runCLI(["rerank", "--model", RerankerTests.directory.appendingPathComponent("qwen3-tied").path,
                                 "--queries", queries.path, "--candidates", candidates.path, "--yes_token", "y", "--no_token", "n"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("query_id") && result.stderr.contains("names no query"), "\(result.stderr)")
    }
}

@Suite("Causal-LM head")
struct CausalLMHeadTests {
    @Test("a head loaded for a few tokens gives the full head's logits and refuses other tokens",
          arguments: ["qwen3-untied", "qwen2-untied"])
    func restrictedRows(_ name: String) throws {
        let dir = try ModelDirectory(RerankerTests.directory.appendingPathComponent(name))
        let model = try QwenModel(directory: dir)
        let full = try CausalLMHead(directory: dir, backbone: model)
        let few = try CausalLMHead(directory: dir, backbone: model, tokens: [1502, 88, 77, 88])
        #expect(!full.tied && full.weight.shape == [1505, 32] && few.weight.shape == [3, 32])
        let sequences: [[Int32]] = [[5, 17, 300, 42], [9, 8, 1500]]
        let hidden = try model.forward(sequences, pooling: .mean)
        let tokens: [Int32] = [88, 1502, 77]
        #expect(try few.logits(hidden: hidden, rows: [0, 3, 6], tokens: tokens) == full.logits(hidden: hidden, rows: [0, 3, 6], tokens: tokens))
        #expect(throws: FormatError.self) { _ = try few.logits(hidden: hidden, rows: [3], tokens: [5]) }
        #expect(throws: FormatError.self) { _ = try full.logits(hidden: hidden, rows: [7], tokens: [5]) }
        #expect(throws: FormatError.self) { _ = try CausalLMHead(directory: dir, backbone: model, tokens: [1505]) }
    }

    @Test("reading rows checks them against the tensor")
    func rowReadsAreChecked() throws {
        let store = try WeightStore(directory: RerankerTests.directory.appendingPathComponent("qwen2-untied"))
        let rows = Tensor(zeros: [2, 32]), whole = Tensor(zeros: [1505, 32])
        try store.readRows("lm_head.weight", shape: [1505, 32], rows: [1504, 0], into: rows.pointer)
        try store.read("lm_head.weight", shape: [1505, 32], into: whole.pointer)
        #expect(Array(rows.array[0..<32]) == Array(whole.array[(1504 * 32)..<(1505 * 32)]))
        #expect(Array(rows.array[32..<64]) == Array(whole.array[0..<32]))
        #expect(throws: FormatError.self) { try store.readRows("lm_head.weight", shape: [1505, 32], rows: [1505], into: rows.pointer) }
        #expect(throws: FormatError.self) { try store.readRows("lm_head.weight", shape: [1505, 32], rows: [-1], into: rows.pointer) }
        #expect(throws: FormatError.self) { try store.readRows("model.norm.weight", shape: [32], rows: [0], into: rows.pointer) }
    }
}

@Suite("Qwen reranker with a LoRA adapter")
struct QwenRerankerAdapterTests {
    @Test("an adapter scores as its ΔW folded into the weights, in the library and through rerank --adapter")
    func adapterMatchesFolded() throws {
        let model = RerankerTests.directory.appendingPathComponent("qwen3-untied")
        let r = try QwenReranker(directory: ModelDirectory(model), answers: ("y", "n"))
        r.maxLength = 320
        let adapter = try LoRAAdapter(config: LoRAConfig(r: 4, alpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"]),
                                      linears: r.model.linearLayers)
        var rng = SplitMix64(seed: 7)
        adapter.initialize(using: &rng)
        for s in adapter.slots { for i in 0..<(s.outFeatures * s.rank) { adapter.b(s)[i] = Float.random(in: -0.3..<0.3, using: &rng) } }
        let dir = try Paths.temporaryDirectory().appendingPathComponent("adapter")
        try PEFTAdapter.save(adapter, to: dir, baseModel: model.path)
        let query = "how to control rice blast", documents = ["Spray tricyclazole at the booting stage.", "Beijing is the capital."]
        let base = try r.scores(query: query, documents: documents)
        try r.setAdapter(dir)
        let adapted = try r.scores(query: query, documents: documents)
        try r.setAdapter(nil)
        let folded = try r.model.withFolded(adapter.slots.map { ($0.module, adapter.delta($0.module)!) }) {
            try r.scores(query: query, documents: documents)
        }
        #expect(maxAbsDifference(adapted, folded) <= 1e-5, "\(adapted) vs \(folded)")
        #expect(maxAbsDifference(adapted, base) > 1e-3)
        #expect(try r.scores(query: query, documents: documents) == base)

        let tmp = dir.deletingLastPathComponent()
        let queries = tmp.appendingPathComponent("q.jsonl"), candidates = tmp.appendingPathComponent("c.jsonl")
        try #"{"id": "q", "text": "\#(query)"}"#.write(to: queries, atomically: true, encoding: .utf8)
        try documents.enumerated().map { #"{"query_id": "q", "id": \#($0.offset), "text": "\#($0.element)"}"# }.joined(separator: "\n")
            .write(to: candidates, atomically: true, encoding: .utf8)
        let result = try runCLI(["rerank", "--model", model.path, "--adapter", dir.path, "--queries", queries.path,
                                 "--candidates", candidates.path, "--max_length", "320", "--yes_token", "y", "--no_token", "n"])
        #expect(result.status == 0, "\(result.stderr)")
        let rows = try result.stdout.split(separator: "\n").map { try JSONValue.parse(Data($0.utf8), file: "stdout") }
        for row in rows { #expect(abs(Float(row["score"]!.double!) - adapted[row["id"]!.int!]) <= 1e-6) }
    }
}
