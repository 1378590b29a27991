import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneRetrieval
import EmbedTuneTraining
import Foundation
import Testing

/// Reranker training (`train --task_type reranker`): one step against PyTorch + peft
/// (tools/reference/make_reranker_training_fixtures.py), the head's backward and the losses
/// against finite differences, the new head's initialisation, and the trained adapter's loading.
@Suite("Reranker training: cross-encoder LoRA with the head trained whole")
struct RerankerTrainingTests {
    static let fixtures = Paths.fixtures.appendingPathComponent("training")

    /// A reranker run over the fixture's batch (3 queries, each with its positive and 2 negatives),
    /// its adapter set to the fixture's (LoRA pairs and the head's whole tensors).
    static func trainer(_ fixture: String, loss: String) throws -> (RerankerTrainer, JSONValue) {
        let dir = fixtures.appendingPathComponent(fixture)
        let meta = try JSONValue.load(dir.appendingPathComponent("meta.json"))
        let batch = try JSONValue.load(dir.appendingPathComponent("batch.json"))
        let strings: (JSONValue) -> [String] = { $0.array!.map { $0.string! } }
        let queries = strings(batch["queries"]!), positives = strings(batch["positives"]!)
        let rows = queries.indices.map { Triplet(query: queries[$0], positive: positives[$0], negatives: strings(batch["negatives"]!.array![$0])) }
        var o = TrainingOptions()
        o.taskType = "reranker"
        o.model = Paths.repository.appendingPathComponent(meta["base"]!.string!).path
        o.numLabels = fixture.hasSuffix("-new") ? 1 : 0
        o.rerankerLoss = loss
        o.dataset = "rows"
        o.outputDir = try Paths.temporaryDirectory().path
        o.loraR = 4; o.loraAlpha = 8; o.targetModules = ["query", "key", "value", "dense"]
        o.perDeviceTrainBatchSize = 3; o.maxLength = meta["max_length"]!.int!; o.maxSteps = 1
        let trainer = try RerankerTrainer(options: o, rows: rows)
        let adapter = trainer.adapter, model = trainer.encoder.model
        let reference = try PEFTAdapter.load(dir, for: model, headLinears: trainer.encoder.baseHead.linearLayers,
                                             savedModules: ["classifier"])
        #expect(Set(reference.slots.map(\.module)) == Set(adapter.slots.map(\.module)), "LoRA on the same modules as peft")
        for s in adapter.slots {
            let r = reference.slot(s.module)!
            adapter.a(s).update(from: reference.a(r), count: s.rank * s.inFeatures)
            adapter.b(s).update(from: reference.b(r), count: s.outFeatures * s.rank)
        }
        let saved = try PEFTAdapter.savedModules(dir)
        #expect(Set(saved.keys) == Set(adapter.wholeTensors.map(\.name)), "the head's tensors trained whole, as peft's modules_to_save")
        for t in adapter.wholeTensors { adapter.value(t).update(from: saved[t.name]!.values, count: t.count) }
        return (trainer, meta)
    }

    static let cases = ["reranker-bert", "reranker-bert-new", "reranker-xlmr-new"].flatMap { f in ["bce", "listwise"].map { (f, $0) } }

    @Test("loss and gradients after one step match PyTorch + peft within 1e-3 relative (both losses, a head trained further or new)",
          arguments: cases)
    func peftParity(_ fixture: String, _ loss: String) throws {
        let (trainer, meta) = try Self.trainer(fixture, loss: loss)
        let (value, _) = try trainer.accumulateGradients(step: 0)
        let want = meta["losses"]![loss]!["loss"]!.double!
        let grads = try SafetensorsFile(url: Self.fixtures.appendingPathComponent("\(fixture)/grads-\(loss).safetensors"))
        let adapter = trainer.adapter, task = adapter.task!
        var got = [String: [Float]]()
        for s in adapter.slots {
            got[PEFTAdapter.key(s.module, "A", task: task)] = Array(UnsafeBufferPointer(start: adapter.gradA(s), count: s.rank * s.inFeatures))
            got[PEFTAdapter.key(s.module, "B", task: task)] = Array(UnsafeBufferPointer(start: adapter.gradB(s), count: s.outFeatures * s.rank))
        }
        for t in adapter.wholeTensors {
            got[PEFTAdapter.keyPrefix + task.path(t.name)] = Array(UnsafeBufferPointer(start: adapter.gradient(t), count: t.count))
        }
        #expect(Set(got.keys) == Set(grads.names), "gradient keys are the adapter's keys as peft saves them")
        // Per tensor, relative to its norm floored at 1e-3 of the largest: the listwise loss is
        // invariant to shifting a group's logits, so the output bias's gradient is zero up to rounding.
        func norm(_ x: [Float]) -> Double { x.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
        let floor = 1e-3 * (try grads.names.map { norm(try grads.tensor($0).array) }.max() ?? 0)
        var worst = 0.0, worstName = ""
        for name in grads.names {
            let w = try grads.tensor(name).array, g = got[name] ?? []
            guard g.count == w.count else { Issue.record("\(name): \(g.count) values, peft has \(w.count)"); continue }
            if loss == "listwise" && (name.hasSuffix(".classifier.bias") || name.hasSuffix(".out_proj.bias")) {
                // Shifting a group's logits leaves softmax unchanged: this gradient is zero but for rounding.
                #expect(norm(g) <= 1e-5 * floor / 1e-3, "\(name): \(g) should be zero")
                continue
            }
            let rel = norm(zip(w, g).map { $0 - $1 }) / max(norm(w), floor)
            if rel > worst { (worst, worstName) = (rel, name) }
        }
        print("\(fixture) \(loss): loss \(value) vs \(want), worst gradient \(worst) (\(worstName))")
        #expect(abs(value - want) <= 1e-5 * max(1, abs(want)), "loss \(value) vs peft \(want)")
        #expect(worst <= 1e-3, "worst per-tensor relative error \(worst) at \(worstName)")
    }

    @Test("the head's backward matches finite differences: its whole tensors, LoRA on its dense layer, and dL/dh₀",
          arguments: [SequenceClassificationHead.Kind.bert, .roberta])
    func headFiniteDifferences(_ kind: SequenceClassificationHead.Kind) throws {
        let c = 16, lengths = [5, 3, 7], n = lengths.reduce(0, +), rows = Array(PackedBatch(lengths: lengths).offsets.prefix(3))
        var rng = SeededGenerator(seed: 5)
        let source = try ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-bert-zh")).tensorSource()
        var head = try SequenceClassificationHead(newFor: kind, hiddenSize: 64, labels: 2, initializerRange: 0.5, seed: 3,
                                                  source: source, encoderPrefix: "")
        // The fixture's checkpoint is 64 wide; a 16-wide head of the same kind, all tensors random.
        head = try head.resized(hiddenSize: c, using: &rng)
        let task = PEFTTask(taskType: "SEQ_CLS", backbonePrefix: kind == .bert ? "bert." : "roberta.",
                            modulesToSave: ["classifier"], topLevel: ["classifier"])
        // An encoder linear besides the head's, as a real adapter has.
        let adapter = try LoRAAdapter(config: LoRAConfig(r: 3, alpha: 6, targetModules: ["dense", "out_proj", "classifier"]),
                                      linears: head.linearLayers + [("encoder.layer.0.output.dense", c, c)],
                                      whole: head.tensors(in: task.modulesToSave), task: task)
        // BERT: LoRA on pooler.dense, classifier whole; XLM-R: classifier.dense and out_proj whole, without LoRA.
        let expectedSlots: [String] = (kind == .bert ? ["pooler.dense"] : []) + ["encoder.layer.0.output.dense"]
        #expect(adapter.slots.map { $0.module } == expectedSlots)
        #expect(adapter.wholeTensors.count == (kind == .bert ? 2 : 4))
        for i in 0..<adapter.params.count { adapter.params.pointer[i] = Float.random(in: -0.5...0.5, using: &rng) }
        let bound = head.bound(to: adapter), context = LoRAContext(adapter: adapter, training: true)
        let hidden = Tensor(shape: [n, c], values: (0..<(n * c)).map { _ in Float.random(in: -1...1, using: &rng) })
        let r = (0..<(rows.count * 2)).map { _ in Float.random(in: -1...1, using: &rng) }
        func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } }
        func loss() throws -> Double { dot(try bound.forward(hidden: hidden, rows: rows, context: context).logits, r) }
        let (_, kept) = try bound.forward(hidden: hidden, rows: rows, context: context)
        adapter.zeroGrads()
        var dHidden = [Float](repeating: 0, count: n * c)
        bound.backward(kept, dLogits: r, context: context, dHidden: &dHidden)
        #expect((0..<n).filter { !rows.contains($0) }.allSatisfy { row in (0..<c).allSatisfy { dHidden[row * c + $0] == 0 } },
                "only the first-token rows get a gradient")
        let grad = adapter.grads.array, theta = adapter.params.array, h0 = hidden.array
        var worst = 0.0
        // Small enough that tanh's curvature stays below the tolerance, large enough for fp32.
        let h: Float = 2e-3
        for _ in 0..<4 {
            let v = (0..<theta.count).map { _ in Float.random(in: -1...1, using: &rng) }
            let w = (0..<(n * c)).map { _ in Float.random(in: -1...1, using: &rng) }
            func set(_ sign: Float) {
                for i in theta.indices { adapter.params.pointer[i] = theta[i] + sign * h * v[i] }
                for i in h0.indices { hidden.pointer[i] = h0[i] + sign * h * w[i] }
            }
            set(1); let plus = try loss()
            set(-1); let minus = try loss()
            set(0)
            let numeric = (plus - minus) / (2 * Double(h))
            let analytic = dot(grad, v) + dot(dHidden, w)
            worst = max(worst, abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-3))
        }
        print("head backward \(kind): worst directional error \(worst)")
        #expect(worst <= 1e-3, "\(kind): worst directional error \(worst)")
    }

    @Test("BCE and listwise gradients are the derivatives of their sums; the counts are pairs and groups")
    func lossGradients() {
        let logits: [Float] = [2.0, -1.0, 0.5, -3.0, 1.5, 1.4, 0.0, 40.0, -40.0]
        for loss in [BinaryCrossEntropyLoss() as RerankerLoss, ListwiseSoftmaxLoss()] {
            let (sum, d) = loss.sumAndGradient(logits: logits, groups: 3, width: 3)
            #expect(sum.isFinite)
            for i in logits.indices {
                var up = logits, down = logits
                up[i] += 1e-2; down[i] -= 1e-2
                let numeric = (loss.sumAndGradient(logits: up, groups: 3, width: 3).sum - loss.sumAndGradient(logits: down, groups: 3, width: 3).sum) / 2e-2
                #expect(abs(numeric - Double(d[i])) <= 1e-3 * max(1, abs(numeric)), "\(type(of: loss)) logit \(i): \(numeric) vs \(d[i])")
            }
        }
        #expect(BinaryCrossEntropyLoss().count(groups: 4, width: 3) == 12 && ListwiseSoftmaxLoss().count(groups: 4, width: 3) == 4)
        // Equal logits: ln 2 per pair and ln W per group.
        #expect(abs(BinaryCrossEntropyLoss().sumAndGradient(logits: [0, 0], groups: 1, width: 2).sum - 2 * log(2)) < 1e-9)
        #expect(abs(ListwiseSoftmaxLoss().sumAndGradient(logits: [0, 0, 0, 0], groups: 1, width: 4).sum - log(4)) < 1e-9)
    }

    @Test("a new head is drawn N(0, initializer_range²) from the seed with zero biases, BERT's pooler taken from the checkpoint")
    func newHead() throws {
        let dir = try ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-bert-zh"))
        let source = try dir.tensorSource()
        func head(_ seed: UInt64) throws -> SequenceClassificationHead {
            try SequenceClassificationHead(newFor: .bert, hiddenSize: 64, labels: 1, initializerRange: 0.02, seed: seed, source: source,
                                           encoderPrefix: "")
        }
        let a = try head(7), b = try head(7), c = try head(8)
        #expect(a.output.array == b.output.array && a.output.array != c.output.array)
        #expect(a.outputBias.array == [0])
        var pooler = [Float](repeating: 0, count: 64 * 64)
        try source.read("pooler.dense.weight", shape: [64, 64], into: &pooler)
        #expect(a.dense.array == pooler, "the checkpoint's pooler")
        let xlmr = try ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-xlmr"))
        let r = try SequenceClassificationHead(newFor: .roberta, hiddenSize: 32, labels: 1, initializerRange: 0.02, seed: 7,
                                               source: xlmr.tensorSource(), encoderPrefix: "")
        let values = r.dense.array + r.output.array
        let mean = values.reduce(0.0) { $0 + Double($1) } / Double(values.count)
        let std = (values.reduce(0.0) { $0 + pow(Double($1) - mean, 2) } / Double(values.count)).squareRoot()
        #expect(abs(mean) < 0.003 && abs(std - 0.02) < 0.002, "mean \(mean), std \(std)")
        #expect(r.denseBias.array.allSatisfy { $0 == 0 } && r.outputBias.array == [0])
    }
}

extension SequenceClassificationHead {
    /// A head of the same kind and labels at another width, every tensor random (finite-difference tests).
    func resized<G: RandomNumberGenerator>(hiddenSize c: Int, using rng: inout G) throws -> SequenceClassificationHead {
        var saved = [String: (shape: [Int], values: [Float])]()
        for (name, shape) in [(denseModule + ".weight", [c, c]), (denseModule + ".bias", [c]),
                              (outputModule + ".weight", [labels, c]), (outputModule + ".bias", [labels])] {
            saved[name] = (shape, (0..<shape.reduce(1, *)).map { _ in Float.random(in: -0.5...0.5, using: &rng) })
        }
        let weights = URL(fileURLWithPath: "/dev/null")
        return try SequenceClassificationHead(kind: kind, hiddenSize: c, saved: saved, source: EmptySource(), encoderPrefix: "", file: weights)
    }
}

/// A checkpoint with no tensors.
final class EmptySource: TensorSource {
    func contains(_ name: String) -> Bool { false }
    func shape(of name: String) -> [Int]? { nil }
    func read(_ name: String, shape: [Int], into destination: UnsafeMutablePointer<Float>) throws { throw FormatError("no tensor \(name)") }
    func mapped(_ name: String, shape: [Int]) throws -> FloatBuffer? { nil }
    func readRows(_ name: String, shape: [Int], rows: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        throw FormatError("no tensor \(name)")
    }
}
