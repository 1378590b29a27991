import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import Foundation
import Testing

/// Adapter fusion against tools/reference/make_merge_fixtures.py (NumPy, checked against
/// peft.utils.merge_utils): three adapters of ranks 2, 4, 8 with different alphas and targets.
@Suite("Adapter merging on ΔW")
struct MergeTests {
    static let root = Paths.fixtures.appendingPathComponent("merge")
    static let qwen = Paths.fixtures.appendingPathComponent("tiny-qwen3")

    struct Case {
        let name: String
        let spec: MergeSpec
        let adapters: [LoRAAdapter]
    }

    static func cases() throws -> [Case] {
        let list = try JSONValue.load(root.appendingPathComponent("cases.json")).array ?? []
        return try list.map { c in
            var spec = MergeSpec(method: MergeMethod(rawValue: c["method"]!.string!)!, weights: c["weights"]?.array?.compactMap(\.double))
            if let d = c["density"]?.double { spec.density = d }
            if let m = c["majority_sign_method"]?.string { spec.majoritySign = .init(rawValue: m)! }
            if let s = c["seed"]?.int { spec.seed = UInt64(s) }
            if let r = c["svd_rank"]?.int { spec.rank = r }
            let adapters = try (c["adapters"]?.array ?? []).map {
                try PEFTAdapter.load(root.appendingPathComponent("adapters/\($0.string!)"))
            }
            return Case(name: c["name"]!.string!, spec: spec, adapters: adapters)
        }
    }

    static func expected(_ name: String) throws -> [String: [Float]] {
        let file = try SafetensorsFile(url: root.appendingPathComponent("expected/\(name).safetensors"))
        var out = [String: [Float]]()
        for n in file.names {
            let e = try file.entry(n)
            var v = [Float](repeating: 0, count: e.count)
            try v.withUnsafeMutableBufferPointer { try file.read(e, into: $0.baseAddress!) }
            out[n] = v
        }
        return out
    }

    /// max over entries of |a − b| / max(1, |b|): the fixture stores float32, values reach ~9.
    static func worst(_ got: [Double], _ want: [Float]) -> Double {
        zip(got, want).reduce(0) { max($0, abs($1.0 - Double($1.1)) / max(1, abs(Double($1.1)))) }
    }

    /// ΔW of written factors (scale 1): B·A in Double.
    static func product(_ f: LoRAFactors) -> [Double] {
        var d = [Double](repeating: 0, count: f.outFeatures * f.inFeatures)
        dgemm(f.outFeatures, f.inFeatures, f.rank, f.b.map(Double.init), f.a.map(Double.init), &d)
        return d
    }

    @Test("the DARE streams equal the reference splitmix64 vectors")
    func dareStreams() throws {
        let json = try JSONValue.load(Self.root.appendingPathComponent("rng_vectors.json"))
        for v in json["splitmix64"]!.array! {
            #expect(mix64(UInt64(v["x"]!.string!)!) == UInt64(v["out"]!.string!)!)
        }
        for s in json["streams"]!.array! {
            let h = AdapterMerge.dareStream(seed: UInt64(s["seed"]!.int!), adapter: s["i"]!.int!, module: s["m"]!.int!)
            #expect(h == UInt64(s["h"]!.string!)!)
            let u = (0..<8).map { Int(mix64(h ^ UInt64($0)) >> 40) }
            #expect(u == s["u_first8"]!.array!.map { $0.int! })
        }
    }

    @Test("every method equals the NumPy / peft reference within 1e-6 on every fixture case")
    func methodsMatchReference() throws {
        let cases = try Self.cases()
        #expect(cases.count >= 14)
        for c in cases {
            let want = try Self.expected(c.name)
            let got = try AdapterMerge.deltas(c.adapters, c.spec)
            #expect(Set(got.map(\.module)) == Set(want.keys), "\(c.name): modules")
            for d in got {
                let err = Self.worst(d.values, want[d.module]!)
                #expect(err <= 1e-6, "\(c.name) \(d.module): \(err)")
            }
        }
    }

    @Test("written adapters: weighted sums and cat are exact concatenations, svd reconstructs its rank-r ΔW")
    func writtenFactors() throws {
        for c in try Self.cases() where c.spec.method.isLowRankExact || c.spec.method == .svd {
            let want = try Self.expected(c.name)
            let merged = try AdapterMerge.factors(c.adapters, c.spec)
            if c.spec.method.isLowRankExact {
                #expect(merged.rank == c.adapters.reduce(0) { $0 + $1.slots.first!.rank })
            } else {
                #expect(merged.rank == c.spec.rank)
            }
            for f in merged.modules {
                let err = Self.worst(Self.product(f), want[f.module]!)
                #expect(err <= 2e-6, "\(c.name) \(f.module): \(err)")
            }
        }
    }

    @Test("a folded adapter embeds like base + adapter on the fly; cat on the fly equals the adapters folded together")
    func foldingMatchesOnTheFly() throws {
        let dir = try ModelDirectory(Self.qwen)
        let embedder = try Embedder(directory: dir)
        let model = embedder.backbone as! TrainableBackbone
        let texts = ["稻田养鱼的放养密度是多少？", "How long does a building permit take?", "水稻纹枯病 防治", "a"]
        var options = Embedder.Options()
        options.batchSize = 3
        let base = try embedder.embed(texts, options: options).values
        let a2 = Self.root.appendingPathComponent("adapters/a2")
        try embedder.setAdapter(a2)
        let onTheFly = try embedder.embed(texts, options: options).values
        embedder.adapter = nil
        let single = try AdapterMerge.deltas([PEFTAdapter.load(a2)], MergeSpec(method: .taskArithmetic))
        let folded = try model.withFolded(single.map { ($0.module, $0.values) }) { try embedder.embed(texts, options: options).values }
        #expect(maxAbsDifference(folded, onTheFly) <= 1e-5)
        #expect(maxAbsDifference(folded, base) > 1e-3, "the adapter changes the embeddings")
        #expect(try embedder.embed(texts, options: options).values == base, "weights restored bit for bit")

        let catCase = try Self.cases().first { $0.spec.method == .cat }!
        let merged = try AdapterMerge.factors(catCase.adapters, catCase.spec)
        embedder.adapter = try LoRAAdapter.fromFactors(merged.modules, rank: merged.rank)
        let catOnTheFly = try embedder.embed(texts, options: options).values
        embedder.adapter = nil
        let together = try AdapterMerge.deltas(catCase.adapters, catCase.spec)
        let catFolded = try model.withFolded(together.map { ($0.module, $0.values) }) { try embedder.embed(texts, options: options).values }
        #expect(maxAbsDifference(catOnTheFly, catFolded) <= 1e-5)
    }

    @Test("merge --fold writes a Hugging Face + sentence-transformers directory that embeds like the in-memory fold")
    func foldedExport() throws {
        let tmp = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("fused")
        let adapters = ["a0", "a1", "a2"].map { Self.root.appendingPathComponent("adapters/\($0)").path }.joined(separator: ",")
        let r = try runCLI(["merge", "--base", Self.qwen.path, "--adapters", adapters, "--method", "ties", "--density", "0.5",
                            "--weights", "1,0.7,0.4", "--fold", "--output", out.path])
        #expect(r.status == 0, "\(r.stderr)")
        for file in ["config.json", "model.safetensors", "tokenizer.json", "modules.json", "1_Pooling/config.json", "config_sentence_transformers.json", "README.md"] {
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), "\(file)")
        }
        let texts = ["稻田养鱼的放养密度是多少？", "How long does a building permit take?"]
        let exported = try Embedder(directory: ModelDirectory(out)).embed(texts, options: .init()).values
        let embedder = try Embedder(directory: ModelDirectory(Self.qwen))
        var spec = MergeSpec(method: .ties, weights: [1, 0.7, 0.4])
        spec.density = 0.5
        let deltas = try AdapterMerge.deltas(["a0", "a1", "a2"].map { try PEFTAdapter.load(Self.root.appendingPathComponent("adapters/\($0)")) }, spec)
        let inMemory = try (embedder.backbone as! TrainableBackbone).withFolded(deltas.map { ($0.module, $0.values) }) {
            try embedder.embed(texts, options: .init()).values
        }
        #expect(maxAbsDifference(exported, inMemory) <= 1e-6)
    }

    @Test("bad requests fail before any file is written: weight count, unknown method, density, other base model")
    func badInput() throws {
        let tmp = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("out")
        let a = ["a0", "a1"].map { Self.root.appendingPathComponent("adapters/\($0)").path }.joined(separator: ",")
        func fails(_ args: [String], _ needle: String) throws {
            let r = try runCLI(["merge", "--base", Self.qwen.path, "--output", out.path] + args)
            #expect(r.status != 0)
            #expect(r.stderr.contains(needle), "\(args): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out.path))
        }
        try fails(["--adapters", a, "--weights", "1,2,3"], "3 weight(s) for 2 adapter(s)")
        try fails(["--adapters", a, "--method", "slerp"], "--method \"slerp\" is unknown")
        try fails(["--adapters", a, "--method", "dare_ties", "--density", "0"], "--density must be in (0, 1]")
        try fails(["--adapters", a, "--search", "--dev", tmp.path, "--dev", tmp.path, "--search_objective", "max_recall"],
                  "--search_objective: unknown objective")
        // An adapter for a BERT model against the Qwen base.
        let bert = tmp.appendingPathComponent("bert-adapter")
        let bertModel = try BertModel(directory: ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-bert-zh")))
        let adapter = try LoRAAdapter(config: LoRAConfig(r: 2, targetModules: ["query"]), linears: bertModel.linearLayers)
        try PEFTAdapter.save(adapter, to: bert, baseModel: "tiny-bert-zh")
        try fails(["--adapters", bert.path], "is not a linear layer of")
        // Two adapters whose shared module shapes disagree.
        try fails(["--adapters", "\(bert.path),\(Self.root.appendingPathComponent("adapters/a0").path)"], "different base models")
    }
}
