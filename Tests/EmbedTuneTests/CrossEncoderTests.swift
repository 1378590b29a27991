import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneRetrieval
import EmbedTuneTokenizers
import Foundation
import Testing

/// BERT / XLM-R cross-encoders against sentence-transformers' CrossEncoder and transformers
/// (tools/reference/make_cross_encoder_fixtures.py): tiny random *ForSequenceClassification models
/// with one and several labels, pairs that need longest_first truncation, and PEFT SEQ_CLS adapters.
@Suite("Cross-encoders: pair encoding, classification head, scores")
struct CrossEncoderTests {
    static let directory = Paths.fixtures.appendingPathComponent("cross-encoder")
    static let expected: JSONValue = try! JSONValue.load(directory.appendingPathComponent("expected.json"))
    static var pairs: [(query: String, document: String)] {
        expected["pairs"]!.array!.map { ($0["query"]!.string!, $0["document"]!.string!) }
    }

    static func encoder(_ name: String) throws -> CrossEncoder {
        let base = expected["models"]![name]!["base"]?.string
        let encoder = try CrossEncoder(directory: ModelDirectory(directory.appendingPathComponent(base ?? name)))
        if base != nil { try encoder.setAdapter(directory.appendingPathComponent(name)) }
        return encoder
    }

    static func floats(_ v: JSONValue) -> [Float] { v.array!.flatMap { $0.array ?? [$0] }.map { Float($0.double!) } }

    @Test("longest_first truncation of a pair equals Hugging Face tokenizers at odd and even budgets",
          arguments: ["tiny-bert-zh", "tiny-xlmr"])
    func pairTruncation(_ name: String) throws {
        let tokenizer = try ModelDirectory(Paths.fixtures.appendingPathComponent(name)).loadTokenizer()
        for row in Self.expected["truncation"]![name]!.array! {
            let (q, d) = Self.pairs[row["pair"]!.int!], maxLength = row["max_length"]!.int!
            let got = try tokenizer.encodePair(q, d, maxLength: maxLength).ids.map(Int.init)
            #expect(got == row["ids"]!.array!.map { $0.int! }, "pair \(row["pair"]!.int!) at max_length \(maxLength)")
        }
        #expect(throws: FormatError.self) { _ = try tokenizer.encodePair("a", "b", maxLength: tokenizer.postProcessor!.pairAddedCount!) }
    }

    @Test("the lengths longest_first keeps: whole when both fit, the shorter whole when it can be, else halves")
    func longestFirstRule() {
        #expect(Tokenizer.longestFirst(3, 4, budget: 10) == (3, 4))
        #expect(Tokenizer.longestFirst(3, 20, budget: 10) == (3, 7))
        #expect(Tokenizer.longestFirst(20, 3, budget: 10) == (7, 3))
        #expect(Tokenizer.longestFirst(8, 20, budget: 11) == (5, 6))
        #expect(Tokenizer.longestFirst(20, 8, budget: 11) == (6, 5))
        #expect(Tokenizer.longestFirst(6, 20, budget: 11) == (5, 6))
    }

    @Test("a BERT vocab.txt tokenizer joins pairs as its tokenizer.json does, second segment of type 1")
    func bertVocabPairTemplate() throws {
        let dir = Paths.fixtures.appendingPathComponent("tiny-bert-zh")
        let json = try Tokenizer.load(tokenizerJSON: dir.appendingPathComponent("tokenizer.json"))
        let vocab = try Tokenizer.loadBertVocab(dir.appendingPathComponent("vocab.txt"), lowercase: true)
        let a = try json.encodePair("水稻 rice", "稻瘟病 blast"), b = try vocab.encodePair("水稻 rice", "稻瘟病 blast")
        #expect(a.ids == b.ids && a.typeIDs == b.typeIDs)
        let sep = a.ids.firstIndex(of: a.ids.last!)!
        #expect(a.typeIDs[...sep].allSatisfy { $0 == 0 } && a.typeIDs[(sep + 1)...].allSatisfy { $0 == 1 })
    }

    @Test("token ids, logits and scores match transformers and CrossEncoder.predict within 1e-4",
          arguments: ["bert", "bert-3", "xlmr", "xlmr-2", "bert-adapter", "xlmr-adapter"])
    func parity(_ name: String) throws {
        let e = Self.expected["models"]![name]!, encoder = try Self.encoder(name)
        #expect(encoder.maxLength == Self.expected["max_length"]!.int!)
        #expect(encoder.labels.count == e["num_labels"]!.int!)
        for (i, p) in Self.pairs.enumerated() {
            let t = try encoder.tokens(query: p.query, document: p.document)
            #expect(t.ids.map(Int.init) == e["ids"]!.array![i].array!.map { $0.int! }, "pair \(i): ids")
            #expect(t.typeIDs.map(Int.init) == e["token_type_ids"]!.array![i].array!.map { $0.int! }, "pair \(i): token types")
        }
        encoder.batchSize = 3  // several packed batches
        let logits = try encoder.logits(Self.pairs)
        let logitDelta = maxAbsDifference(logits, Self.floats(e["logits"]!))
        // Every label's probability: the score with each label scored in turn.
        let l = encoder.labels.count
        var probabilities = [Float]()
        for i in Self.pairs.indices {
            for label in 0..<l {
                encoder.scoredLabel = label
                probabilities.append(encoder.score(logits: logits[(i * l)..<((i + 1) * l)]))
            }
        }
        let scoreDelta = maxAbsDifference(probabilities, Self.floats(e["scores"]!))
        print("\(name): max |Δ| logits \(logitDelta), scores \(scoreDelta)")
        #expect(logitDelta <= 1e-4 && scoreDelta <= 1e-4, "max |Δ| logits \(logitDelta), scores \(scoreDelta)")
        encoder.scoredLabel = l - 1
        let scores = try encoder.scores(query: Self.pairs[0].query, documents: Self.pairs.prefix(3).map(\.document))
        #expect(scores[0] == probabilities[l - 1])
    }

    @Test("an adapter changes the scores, and removing it restores the checkpoint's")
    func adapterSwap() throws {
        let encoder = try Self.encoder("bert")
        let base = try encoder.logits(Array(Self.pairs.prefix(2)))
        try encoder.setAdapter(Self.directory.appendingPathComponent("bert-adapter"))
        #expect(encoder.adapter?.slot("pooler.dense") != nil, "LoRA on the pooler is applied, not dropped")
        #expect(try encoder.logits(Array(Self.pairs.prefix(2))) != base)
        try encoder.setAdapter(nil)
        #expect(try encoder.logits(Array(Self.pairs.prefix(2))) == base)
    }

    @Test("an embedding model refuses an adapter that replaces a classification head")
    func embedderRefusesHeadAdapter() throws {
        let embedder = try Embedder(directory: ModelDirectory(Self.directory.appendingPathComponent("xlmr")))
        do {
            try embedder.setAdapter(Self.directory.appendingPathComponent("xlmr-adapter"))
            Issue.record("accepted a SEQ_CLS adapter")
        } catch {
            #expect("\(error)".contains("modules_to_save") && "\(error)".contains("classifier"), "\(error)")
        }
    }

    @Test("loadReranker picks the kind from config.json and names the field when it is neither")
    func rerankerKind() throws {
        let cross = try loadReranker(ModelDirectory(Self.directory.appendingPathComponent("xlmr")))
        #expect(cross is CrossEncoder)
        var options = RerankerOptions()
        options.answers = ("y", "n")
        let qwen = try loadReranker(ModelDirectory(RerankerTests.directory.appendingPathComponent("qwen3-tied")), options: options)
        #expect(qwen is QwenReranker)
        do {
            _ = try loadReranker(ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-bert-zh")))
            Issue.record("an embedding model loaded as a reranker")
        } catch {
            #expect("\(error)".contains("config.json") && "\(error)".contains("architectures") && "\(error)".contains("BertModel"), "\(error)")
        }
        options.instruction = "Find the answer"
        #expect(throws: FormatError.self) { _ = try loadReranker(ModelDirectory(Self.directory.appendingPathComponent("bert")), options: options) }
    }

    @Test("embedtune rerank scores with a cross-encoder and its adapter as the library does")
    func rerankCLI() throws {
        let dir = try Paths.temporaryDirectory()
        let queries = dir.appendingPathComponent("q.jsonl"), candidates = dir.appendingPathComponent("c.jsonl")
        try #"{"id": "q", "text": "how to control rice blast"}"#.write(to: queries, atomically: true, encoding: .utf8)
        let docs = Self.pairs.map(\.document)
        try docs.enumerated().map { #"{"query_id": "q", "id": \#($0.offset), "text": \#(String(decoding: try JSONEncoder().encode($0.element), as: UTF8.self))}"# }
            .joined(separator: "\n").write(to: candidates, atomically: true, encoding: .utf8)
        let adapter = Self.directory.appendingPathComponent("bert-adapter").path
        let r = try runCLI(["rerank", "--model", Self.directory.appendingPathComponent("bert").path, "--adapter", adapter,
                            "--queries", queries.path, "--candidates", candidates.path, "--top_k", "3"])
        #expect(r.status == 0, "\(r.stderr)")
        let rows = try r.stdout.split(separator: "\n").map { try JSONValue.parse(Data($0.utf8), file: "stdout") }
        let scores = try Self.encoder("bert-adapter").scores(query: "how to control rice blast", documents: docs)
        let best = topRanked(scores, topK: 3)
        #expect(rows.map { $0["id"]!.int! } == best.map(\.index))
        for (row, hit) in zip(rows, best) { #expect(abs(Float(row["score"]!.double!) - hit.score) <= 1e-6) }
        let bad = try runCLI(["rerank", "--model", Self.directory.appendingPathComponent("bert").path, "--instruction", "x",
                              "--queries", queries.path, "--candidates", candidates.path])
        #expect(bad.status == 1 && bad.stderr.contains("instruction"), "\(bad.stderr)")
    }
}

@Suite("BERT under CLS pooling")
struct BertFirstRowTests {
    @Test("the pruned final block gives each sequence's first row as the full pass does, with and without an adapter",
          arguments: ["bert", "xlmr"])
    func firstRowsMatchFullPass(_ name: String) throws {
        let encoder = try CrossEncoderTests.encoder(name)
        let pairs = try CrossEncoderTests.pairs.map { try encoder.tokens(query: $0.query, document: $0.document) }
        let batch = PackedBatch(lengths: pairs.map(\.ids.count)), c = encoder.model.hiddenSize
        for adapter in [nil, CrossEncoderTests.directory.appendingPathComponent("\(name)-adapter")] {
            try encoder.setAdapter(adapter)
            let lora = encoder.adapter.map { LoRAContext(adapter: $0, training: false) }
            func firstRows(_ pooling: PoolingConfig.Mode) throws -> [Float] {
                let hidden = try encoder.model.forward(pairs.map(\.ids), tokenTypes: pairs.map(\.typeIDs), lora: lora,
                                                       keepActivations: false, pooling: pooling)
                return (0..<batch.count).flatMap { s in (0..<c).map { hidden.pointer[batch.offsets[s] * c + $0] } }
            }
            let full = try firstRows(.mean), pruned = try firstRows(.cls)
            #expect(maxAbsDifference(full, pruned) <= 1e-5, "\(name) adapter \(adapter != nil): \(maxAbsDifference(full, pruned))")
        }
    }
}
