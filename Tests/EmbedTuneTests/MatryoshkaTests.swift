import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTraining
import Foundation
import Testing

@Suite("Matryoshka loss")
struct MatryoshkaTests {
    static let cases: [JSONValue] = {
        (try? JSONValue.load(Paths.fixtures.appendingPathComponent("training/matryoshka_cases.json")))?["cases"]?.array ?? []
    }()

    /// MNRL's semantics: every document a candidate, τ = 1/scale, no masking.
    static var mnrl: InfoNCEOptions {
        var o = InfoNCEOptions()
        o.maskDuplicates = false
        return o
    }

    /// The loss and its gradient with respect to raw (unnormalised) query and document rows `x`:
    /// normalised as the embedding pass does, the Matryoshka sum, and back through the normalisation.
    static func loss(raw q: [Float], _ d: [Float], dim: Int, positive: [Int], rows: [Int], matryoshka: Matryoshka,
                     tau: [Float], options: InfoNCEOptions = mnrl) -> (loss: Double, dq: [Float], dd: [Float], dLogTau: Double) {
        var qn = q, dn = d
        l2NormalizeRows(&qn, n: q.count / dim, c: dim)
        l2NormalizeRows(&dn, n: d.count / dim, c: dim)
        let batch = ContrastiveBatch(dim: dim, queries: qn, documents: dn, positiveIndex: positive, documentRow: rows,
                                     documentKey: rows.indices.map { UInt64($0) })
        let r = matryoshka.loss(batch) { infoNCE($0, temperatures: tau, options: options) }
        var dq = q, dd = d
        l2NormalizeBackward(dx: &dq, dy: r.dQueries, x: q, n: q.count / dim, c: dim)
        l2NormalizeBackward(dx: &dd, dy: r.dDocuments, x: d, n: d.count / dim, c: dim)
        return (r.loss, dq, dd, r.dLogTemperature)
    }

    @Test("loss and gradients match sentence-transformers' MatryoshkaLoss(MultipleNegativesRankingLoss) within 1e-5 relative",
          arguments: cases.map { $0["name"]!.string! })
    func matchesSentenceTransformers(_ name: String) throws {
        let c = Self.cases.first { $0["name"]?.string == name }!
        func matrix(_ key: String) -> [Float] { c[key]!.array!.flatMap { $0.array!.map { Float($0.double!) } } }
        func doubles(_ key: String) -> [Double] { c[key]!.array!.flatMap { $0.array!.map { $0.double! } } }
        let dim = c["dim"]!.int!, q = matrix("queries"), positive = c["positive_index"]!.array!.map { $0.int! }
        let m = Matryoshka(dims: c["matryoshka_dims"]!.array!.map { $0.int! },
                           weights: c["matryoshka_weights"]!.array!.map { Float($0.double!) })
        let tau = [Float](repeating: Float(c["temperature"]!.double!), count: positive.count)
        let r = Self.loss(raw: q, matrix("documents"), dim: dim, positive: positive,
                          rows: c["document_row"]!.array!.map { $0.int! }, matryoshka: m, tau: tau)
        let want = c["loss"]!.double!
        #expect(abs(r.loss - want) <= 1e-5 * abs(want), "loss \(r.loss) vs \(want)")
        for (got, key) in [(r.dq, "d_queries"), (r.dd, "d_documents")] {
            let ref = doubles(key), scale = ref.map(abs).max()!
            let worst = zip(got, ref).map { abs(Double($0) - $1) }.max()! / scale
            #expect(worst <= 1e-5, "\(key): max |Δ| / max |ref| = \(worst)")
        }
    }

    @Test("the gradient (embeddings and log τ) agrees with central finite differences within 1e-2 relative")
    func finiteDifferences() {
        var rng = SplitMix64(seed: 11)
        let dim = 24, rows = 3, perRow = 3
        let q = (0..<(rows * dim)).map { _ in Float.random(in: -1...1, using: &rng) }
        let d = (0..<(rows * perRow * dim)).map { _ in Float.random(in: -1...1, using: &rng) }
        let positive = (0..<rows).map { $0 * perRow }, owner = (0..<(rows * perRow)).map { $0 / perRow }
        let m = Matryoshka(dims: [24, 12, 6, 3], weights: [1, 0.5, 2, 1])
        var options = Self.mnrl
        options.includeQQ = true  // any member of the InfoNCE family: the wrapper does not care
        let tau: [Float] = [0.2, 0.25, 0.3]
        func value(_ q: [Float], _ d: [Float], _ t: [Float] = tau) -> Double {
            Self.loss(raw: q, d, dim: dim, positive: positive, rows: owner, matryoshka: m, tau: t, options: options).loss
        }
        let r = Self.loss(raw: q, d, dim: dim, positive: positive, rows: owner, matryoshka: m, tau: tau, options: options)
        let h: Float = 1e-2
        var worst = 0.0
        // Every component of one query and of one negative, including those past each truncation.
        for (isQuery, row) in [(true, 1), (false, 2)] {
            for k in 0..<dim {
                let i = row * dim + k
                var plus = isQuery ? q : d, minus = plus
                plus[i] += h; minus[i] -= h
                let numeric = isQuery ? (value(plus, d) - value(minus, d)) / Double(2 * h) : (value(q, plus) - value(q, minus)) / Double(2 * h)
                let analytic = Double(isQuery ? r.dq[i] : r.dd[i])
                worst = max(worst, abs(numeric - analytic) / max(abs(analytic), 1e-2))
            }
        }
        #expect(worst <= 1e-2, "worst relative error \(worst)")
        // dL/dlogτ with every row's τ scaled by e^±ε.
        let eps = 1e-2
        let numeric = (value(q, d, tau.map { $0 * Float(exp(eps)) }) - value(q, d, tau.map { $0 * Float(exp(-eps)) })) / (2 * eps)
        #expect(abs(numeric - r.dLogTau) <= 1e-2 * abs(r.dLogTau), "dL/dlogτ \(r.dLogTau) vs \(numeric)")
    }

    @Test("dimensions are sorted largest first with their weights; weights default to 1")
    func ordering() {
        let m = Matryoshka(dims: [8, 32, 16], weights: [2, 1, 0.5])
        #expect(m.dims == [32, 16, 8] && m.weights == [1, 0.5, 2])
        #expect(Matryoshka(dims: [4, 64]).weights == [1, 1])
    }

    /// A trainer on 8 rows of 1 positive + 2 hard negatives with `configure` applied, after one step's gradient.
    func stepGradient(_ configure: (inout TrainingOptions) -> Void) throws -> (loss: Double, grads: [Float]) {
        let tmp = try Paths.temporaryDirectory()
        try writeTriples((0..<8).map { "question \($0) about rice paddies and fish ponds number \($0 * 7)" },
                         (0..<8).map { "answer \($0): irrigate, fertilise and watch for pests in field \($0)" },
                         (0..<8).map { ["unrelated note \($0)", "another distractor \($0 + 1)"] }, to: tmp.appendingPathComponent("d.jsonl"))
        var o = TrainingOptions()
        o.model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path
        o.dataset = tmp.appendingPathComponent("d.jsonl").path
        o.perDeviceTrainBatchSize = 8; o.loraDropout = 0.1; o.maxSteps = 1
        configure(&o)
        let trainer = try Trainer(options: o)
        let loss = try trainer.accumulateGradients(step: 0).loss
        return (loss, trainer.adapter.grads.array)
    }

    @Test("one Matryoshka dimension equal to the full width is the plain loss")
    func fullWidthIsPlain() throws {
        let plain = try stepGradient { _ in }
        let full = try stepGradient { $0.matryoshkaDims = [64] }
        #expect(plain.grads.contains { $0 != 0 })
        #expect(abs(plain.loss - full.loss) <= 1e-6 * plain.loss, "\(plain.loss) vs \(full.loss)")
        #expect(relativeL2(plain.grads, full.grads) <= 1e-6, "relative difference \(relativeL2(plain.grads, full.grads))")
    }

    @Test("with Matryoshka dimensions, GradCache and a learnable temperature give the plain pass's gradient within 1e-5")
    func gradCache() throws {
        let configure = { (o: inout TrainingOptions) in
            o.matryoshkaDims = [64, 32, 16, 8]; o.matryoshkaWeights = [1, 1, 0.5, 0.5]; o.temperatureMode = "learnable"
        }
        let plain = try stepGradient(configure)
        let cached = try stepGradient { configure(&$0); $0.gradCacheMiniBatch = 5 }
        let full = try stepGradient { $0.temperatureMode = "learnable" }
        #expect(abs(plain.loss - cached.loss) <= 1e-5 * plain.loss)
        #expect(relativeL2(plain.grads, cached.grads) <= 1e-5, "relative difference \(relativeL2(plain.grads, cached.grads))")
        #expect(relativeL2(plain.grads, full.grads) > 1e-2, "the smaller dimensions change the gradient")
    }

    @Test("bad Matryoshka settings are clear errors naming the option")
    func validation() throws {
        func problem(_ dims: [Int], _ weights: [Float] = []) -> String? {
            var o = TrainingOptions()
            o.model = "m"; o.dataset = "d.jsonl"; o.matryoshkaDims = dims; o.matryoshkaWeights = weights
            do { try o.validate(); return nil } catch { return "\(error)" }
        }
        #expect(problem([64, 32]) == nil && problem([64, 32], [1, 0.5]) == nil)
        #expect(problem([64, 0])?.contains("--matryoshka_dims must be positive integers (got 64,0)") == true, "\(problem([64, 0]) ?? "")")
        #expect(problem([64, 32, 64])?.contains("--matryoshka_dims must be distinct (got 64,32,64)") == true)
        #expect(problem([64, 32], [1])?.contains("--matryoshka_weights has 1 weight(s) for 2 --matryoshka_dims") == true)
        #expect(problem([], [1])?.contains("--matryoshka_weights needs --matryoshka_dims") == true)
        #expect(problem([64], [-1])?.contains("--matryoshka_weights must be positive numbers (got -1.0)") == true, "\(problem([64], [-1]) ?? "")")
        do {
            _ = try stepGradient { $0.matryoshkaDims = [128, 64] }
            Issue.record("accepted a dimension above the model's")
        } catch {
            #expect("\(error)".contains("--matryoshka_dims 128 exceeds the model's embedding dimension 64"), "\(error)")
        }
        // Through the CLI: flags in both spellings, a bad list is a one-line error.
        let base = ["train", "--model", "m", "--dataset", "d.jsonl", "--print_config"]
        let r = try runCLI(base + ["--matryoshka-dims", "64, 32,16", "--matryoshka_weights", "1,1,0.5"])
        #expect(r.status == 0 && r.stdout.contains("matryoshka_dims = [64, 32, 16]") && r.stdout.contains("matryoshka_weights = [1.0, 1.0, 0.5]"),
                "\(r.stdout) \(r.stderr)")
        let bad = try runCLI(base + ["--matryoshka_dims", "64,half"])
        #expect(bad.status == 1 && bad.stderr.contains("--matryoshka_dims: expected list of integers, got \"64,half\""), "\(bad.stderr)")
    }
}

@Suite("Matryoshka truncation at inference")
struct TruncationTests {
    @Test("embed --dim D equals the full embedding cut to D and renormalised, which eval --truncate_dim scores")
    func embedDimMatchesTruncation() throws {
        let embedder = try Embedder(directory: ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-qwen3")))
        let texts = ["rice paddies", "carp in ponds", "tea on acid soil"]
        let (width, full) = try embedder.embed(texts, options: Embedder.Options())
        var options = Embedder.Options()
        options.dimension = 16
        let (dim, cut) = try embedder.embed(texts, options: options)
        #expect(width == 64 && dim == 16)
        #expect(maxAbsDifference(cut, truncatedRows(full, n: texts.count, c: width, dim: 16)) <= 1e-6)
    }

    @Test("eval --truncate_dim gives one row per dimension, scored on the cut and renormalised embeddings")
    func evalTruncateDim() throws {
        let tmp = try Paths.temporaryDirectory()
        func write(_ name: String, _ text: String) throws -> String { try writeText(text, named: name, in: tmp) }
        let corpus = try write("c.jsonl", (0..<3).map { #"{"_id": "d\#($0)", "text": "doc \#($0)"}"# }.joined(separator: "\n"))
        let queries = try write("q.jsonl", #"{"_id": "q0", "text": "query"}"#)
        let qrels = try write("r.tsv", "q0\td1\t1\n")
        // In 3 dimensions d0 is nearest the query; cut to the first 2, d1 (the relevant one) is.
        try NPY.write(rows: 1, columns: 3, values: [1, 0.2, 0], to: tmp.appendingPathComponent("q.npy"))
        try NPY.write(rows: 3, columns: 3, values: [0.9, 0, 0.1, 0.98, 0.2, -5, 0, 1, 0], to: tmp.appendingPathComponent("c.npy"))
        let r = try runCLI(["eval", "--corpus", corpus, "--queries", queries, "--qrels", qrels,
                            "--query_embeddings", tmp.appendingPathComponent("q.npy").path,
                            "--corpus_embeddings", tmp.appendingPathComponent("c.npy").path,
                            "--truncate_dim", "3", "--truncate-dim", "2", "--output", tmp.appendingPathComponent("m.json").path])
        #expect(r.status == 0, "\(r.stderr)")
        let rows = try JSONValue.load(tmp.appendingPathComponent("m.json"))["results"]!.array!
        #expect(rows.map { $0["name"]!.string! } == ["embeddings (3d)", "embeddings (2d)"])
        #expect(rows.map { $0["metrics"]!["cosine_accuracy@1"]!.double! } == [0, 1])
        #expect(rows.map { $0["metrics"]!["truncate_dim"]!.double! } == [3, 2])
        let bad = try runCLI(["eval", "--corpus", corpus, "--queries", queries, "--qrels", qrels,
                              "--query_embeddings", tmp.appendingPathComponent("q.npy").path,
                              "--corpus_embeddings", tmp.appendingPathComponent("c.npy").path, "--truncate_dim", "4"])
        #expect(bad.status == 1 && bad.stderr.contains("--truncate_dim 4 must be between 1 and the embeddings' 3 dimensions"), "\(bad.stderr)")
    }
}
