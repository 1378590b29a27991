import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneData
import EmbedTuneTraining
import Foundation
import Testing

@Suite("InfoNCE against ms-swift and sentence-transformers")
struct InfoNCETests {
    static let cases: [JSONValue] = {
        (try? JSONValue.load(Paths.fixtures.appendingPathComponent("training/infonce_cases.json")))?["cases"]?.array ?? []
    }()

    @Test("loss and gradients match the reference for every option within 1e-5", arguments: cases.map { $0["name"]!.string! })
    func matches(_ name: String) throws {
        let c = Self.cases.first { $0["name"]?.string == name }!
        func matrix(_ key: String) -> [[Float]] { c[key]!.array!.map { $0.array!.map { Float($0.double!) } } }
        let queries = matrix("queries")
        var documents = matrix("documents"), dWant = matrix("d_documents")
        var positive = c["positive_index"]!.array!.map { $0.int! }, rows = c["document_row"]!.array!.map { $0.int! }
        if let kept = c["kept_documents"]?.array?.map({ $0.int! }) {
            // Truncation to a fixed hard-negative count: only the kept documents take part.
            #expect(dWant.indices.filter { !kept.contains($0) }.allSatisfy { dWant[$0].allSatisfy { $0 == 0 } })
            positive = positive.map { kept.firstIndex(of: $0)! }
            documents = kept.map { documents[$0] }; dWant = kept.map { dWant[$0] }; rows = kept.map { rows[$0] }
        }
        let o = c["options"]!
        var options = InfoNCEOptions()
        options.useBatch = o["use_batch"]!.bool!
        options.maskFakeNegative = o["mask_fake_negative"]!.bool!
        options.fakeNegativeMargin = Float(o["fake_negative_margin"]!.double!)
        options.includeQQ = o["include_qq"]!.bool!
        options.includeDD = o["include_dd"]!.bool!
        let tau = c["temperatures"]?.array?.map { Float($0.double!) }
            ?? Array(repeating: Float(c["temperature"]!.double!), count: queries.count)
        let batch = ContrastiveBatch(dim: c["dim"]!.int!, queries: queries.flatMap { $0 }, documents: documents.flatMap { $0 },
                                     positiveIndex: positive, documentRow: rows, documentKey: documents.indices.map { UInt64($0) })
        let r = infoNCE(batch, temperatures: tau, options: options)
        #expect(abs(r.loss - c["loss"]!.double!) <= 1e-5, "loss \(r.loss) vs \(c["loss"]!.double!)")
        var dq = r.dQueries, dd = r.dDocuments
        if c["kind"]?.string == "sentence-transformers-mnrl" {
            // MNRL normalises inside its cos_sim: its gradients are through that normalisation.
            let d = c["dim"]!.int!, q = queries.flatMap { $0 }, docs = documents.flatMap { $0 }
            l2NormalizeBackward(dx: &dq, dy: r.dQueries, x: q, n: queries.count, c: d)
            l2NormalizeBackward(dx: &dd, dy: r.dDocuments, x: docs, n: documents.count, c: d)
        }
        #expect(maxAbsDifference(dq, matrix("d_queries").flatMap { $0 }) <= 1e-5)
        #expect(maxAbsDifference(dd, dWant.flatMap { $0 }) <= 1e-5)
    }

    @Test("the adaptive temperature reproduces the seed's rule max(0.03, 0.08 − 0.01·count)")
    func adaptive() {
        let tau = TemperatureMode.seedAdaptive.temperatures(
            queries: ["水稻种植技术", "种植养殖病虫害育种", "种植 养殖 病虫害 育种 种植 养殖", "how to grow rice"], progress: 0, learnedLogTau: 0)
        #expect(tau == [0.07, 0.04, 0.03, 0.08].map { Float($0) } || zip(tau, [0.07, 0.04, 0.03, 0.08]).allSatisfy { abs($0 - Float($1)) < 1e-6 })
        let scheduled = TemperatureMode.scheduled(from: 0.1, to: 0.02)
        #expect(abs(scheduled.temperatures(queries: ["q"], progress: 0, learnedLogTau: 0)[0] - 0.1) < 1e-6)
        #expect(abs(scheduled.temperatures(queries: ["q"], progress: 1, learnedLogTau: 0)[0] - 0.02) < 1e-6)
    }
}

/// Writes a dataset file for a trainer from parallel lists.
func writeTriples(_ queries: [String], _ positives: [String], _ negatives: [[String]], to url: URL) throws {
    var lines = ""
    for i in queries.indices {
        let o: [String: Any] = ["query": queries[i], "response": positives[i], "rejected_response": negatives[i]]
        lines += String(decoding: try JSONSerialization.data(withJSONObject: o), as: UTF8.self) + "\n"
    }
    try lines.write(to: url, atomically: true, encoding: .utf8)
}

/// Options for one step of the tiny Qwen3 over 8 agriculture-flavoured triples (2 negatives each),
/// written into a fresh temporary directory.
func eightTriplesOptions() throws -> TrainingOptions {
    let tmp = try Paths.temporaryDirectory()
    let q = (0..<8).map { "question \($0) about rice paddies and fish ponds number \($0 * 7)" }
    let p = (0..<8).map { "answer \($0): irrigate, fertilise and watch for pests in field \($0)" }
    try writeTriples(q, p, (0..<8).map { ["unrelated note \($0)", "another distractor \($0 + 1)"] }, to: tmp.appendingPathComponent("d.jsonl"))
    var o = TrainingOptions()
    o.model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path
    o.dataset = tmp.appendingPathComponent("d.jsonl").path
    o.perDeviceTrainBatchSize = 8; o.maxSteps = 1
    return o
}

@Suite("LoRA training", .serialized)
struct TrainingTests {
    /// One InfoNCE step through our pipeline from the PEFT fixture's adapter and batch.
    func oneStep(model: String, fixture: String, maxLength: Int) throws -> (Trainer, SafetensorsFile, JSONValue) {
        let dir = Paths.fixtures.appendingPathComponent("training/\(fixture)")
        let batch = try JSONValue.load(dir.appendingPathComponent("batch.json"))
        let strings: (String) -> [String] = { batch[$0]!.array!.map { $0.string! } }
        let tmp = try Paths.temporaryDirectory()
        try writeTriples(strings("queries"), strings("positives"), strings("negatives").map { [$0] },
                         to: tmp.appendingPathComponent("batch.jsonl"))
        var o = TrainingOptions()
        o.model = Paths.fixtures.appendingPathComponent(model).path
        o.dataset = tmp.appendingPathComponent("batch.jsonl").path
        o.outputDir = tmp.appendingPathComponent("out").path
        o.loraR = 4; o.loraAlpha = 8; o.perDeviceTrainBatchSize = 3; o.maxLength = maxLength; o.temperature = 0.05
        o.queryPrompt = ""; o.documentPrompt = ""; o.maxSteps = 1
        let trainer = try Trainer(options: o)
        let reference = try PEFTAdapter.load(dir, for: trainer.model)
        for s in trainer.adapter.slots {
            let r = reference.slot(s.module)!
            trainer.adapter.a(s).update(from: reference.a(r), count: s.rank * s.inFeatures)
            trainer.adapter.b(s).update(from: reference.b(r), count: s.outFeatures * s.rank)
        }
        _ = try trainer.accumulateGradients(step: 0)
        return (trainer, try SafetensorsFile(url: dir.appendingPathComponent("grads.safetensors")),
                try JSONValue.load(dir.appendingPathComponent("meta.json")))
    }

    @Test("LoRA gradients after one InfoNCE step match PyTorch + peft within 1e-3 relative",
          arguments: [("tiny-qwen3", "peft-qwen3"), ("tiny-bert-zh", "peft-bert")])
    func peftGradients(_ model: String, _ fixture: String) throws {
        let (trainer, grads, meta) = try oneStep(model: model, fixture: fixture, maxLength: 32)
        let (loss, _, _, _, _) = try trainer.accumulateGradients(step: 0)
        #expect(abs(loss - meta["loss_value"]!.double!) < 1e-5, "loss \(loss) vs \(meta["loss_value"]!.double!)")
        var worst = 0.0
        for s in trainer.adapter.slots {
            for (which, pointer, count) in [("A", trainer.adapter.gradA(s), s.rank * s.inFeatures),
                                           ("B", trainer.adapter.gradB(s), s.outFeatures * s.rank)] {
                let want = try grads.tensor(PEFTAdapter.key(s.module, which)).array
                let got = Array(UnsafeBufferPointer(start: pointer, count: count))
                worst = max(worst, relativeL2(want, got))
            }
        }
        #expect(worst <= 1e-3, "worst per-tensor relative error \(worst)")
    }

    @Test("GradCache gives the plain gradient within 1e-5 relative")
    func gradCache() throws {
        var o = try eightTriplesOptions()
        o.loraDropout = 0.1
        let plain = try Trainer(options: o)
        _ = try plain.accumulateGradients(step: 0)
        o.gradCacheMiniBatch = 4
        let cached = try Trainer(options: o)
        _ = try cached.accumulateGradients(step: 0)
        let a = plain.adapter.grads.array, b = cached.adapter.grads.array
        #expect(a.contains { $0 != 0 })
        #expect(relativeL2(a, b) <= 1e-5, "relative difference \(relativeL2(a, b))")
        // The plain pass held activations for all 24 texts, GradCache for 4 at a time.
        let ratio = Double(plain.model.activationCapacity) / Double(cached.model.activationCapacity)
        #expect(ratio >= 4, "activation memory ratio \(ratio)")
    }

    @Test("an adapter trained elsewhere (peft) loads and embeds like PyTorch within 1e-4")
    func peftRoundTrip() throws {
        let dir = Paths.fixtures.appendingPathComponent("training/peft-roundtrip")
        let expected = try JSONValue.load(dir.appendingPathComponent("expected.json"))
        let embedder = try Embedder(directory: ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-qwen3")))
        embedder.adapter = try PEFTAdapter.load(dir, for: embedder.backbone as! TrainableBackbone)
        var options = Embedder.Options()
        options.maxLength = 64
        let texts = expected["texts"]!.array!.map { $0.string! }
        let (_, got) = try embedder.embed(texts, options: options)
        let want = expected["embeddings"]!.array!.flatMap { $0.array!.map { Float($0.double!) } }
        #expect(maxAbsDifference(got, want) <= 1e-4, "max |Δ| \(maxAbsDifference(got, want))")
    }

    @Test("loading refuses an adapter whose tensors match no module of the model")
    func refusesForeignAdapter() throws {
        let bert = try loadBackbone(ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-bert-zh"))) as! TrainableBackbone
        #expect(throws: FormatError.self) { _ = try PEFTAdapter.load(Paths.fixtures.appendingPathComponent("training/peft-qwen3"), for: bert) }
        do { _ = try PEFTAdapter.load(Paths.fixtures.appendingPathComponent("training/peft-qwen3"), for: bert) } catch {
            #expect("\(error)".contains("matches no linear layer of this model"), "\(error)")
        }
    }

    @Test("a non-finite loss stops the step without touching the adapter")
    func nonFinite() throws {
        let tmp = try Paths.temporaryDirectory()
        try writeTriples(["a b", "c d", "e f", "g h"], ["1", "2", "3", "4"], [["x"], ["y"], ["z"], ["w"]],
                         to: tmp.appendingPathComponent("d.jsonl"))
        var o = TrainingOptions()
        o.model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path
        o.dataset = tmp.appendingPathComponent("d.jsonl").path
        o.outputDir = tmp.appendingPathComponent("out").path
        o.perDeviceTrainBatchSize = 4; o.maxSteps = 1
        let trainer = try Trainer(options: o)
        trainer.adapter.params.pointer[0] = .nan
        let before = trainer.adapter.params.array.map(\.bitPattern)
        var warnings = [String]()
        try trainer.run { if case .warning(let w) = $0 { warnings.append(w) } }
        #expect(trainer.adapter.params.array.map(\.bitPattern) == before)
        #expect(warnings.contains { $0.contains("non-finite") })
    }
}

@Suite("Training data formats")
struct TripletFormatTests {
    @Test("ms-swift (old and messages), sentence-transformers JSONL, CSV and TSV all read to the same triples")
    func formats() throws {
        let tmp = try Paths.temporaryDirectory()
        let files: [(String, String)] = [
            ("swift.jsonl", #"{"query": "q", "response": "p", "rejected_response": ["n1", "n2"]}"#),
            ("messages.jsonl", #"{"messages": [{"role": "system", "content": "Find answers"}, {"role": "user", "content": "q"}], "positive_messages": [[{"role": "user", "content": "p"}]], "negative_messages": [[{"role": "user", "content": "n1"}], [{"role": "user", "content": "n2"}]]}"#),
            ("st.jsonl", #"{"anchor": "q", "positive": "p", "negative_1": "n1", "negative_2": "n2"}"#),
            ("st.csv", "anchor,positive,negative_1,negative_2\nq,p,n1,n2\n"),
            ("st.tsv", "anchor\tpositive\tnegative_1\tnegative_2\nq\tp\tn1\tn2\n"),
        ]
        for (name, body) in files {
            let url = tmp.appendingPathComponent(name)
            try body.write(to: url, atomically: true, encoding: .utf8)
            let t = try TripletReader.read(url.path).triplets
            #expect(t.count == 1)
            #expect(t[0].query == "q" && t[0].positive == "p" && t[0].negatives == ["n1", "n2"], "\(name): \(t[0])")
            #expect(t[0].instruction == (name == "messages.jsonl" ? "Find answers" : nil))
        }
        let quoted = tmp.appendingPathComponent("q.csv")
        try "anchor,positive\n\"a, \"\"quoted\"\" q\",\"multi\nline\"\n".write(to: quoted, atomically: true, encoding: .utf8)
        let t = try TripletReader.read(quoted.path).triplets
        #expect(t[0].query == "a, \"quoted\" q" && t[0].positive == "multi\nline")
    }
}
