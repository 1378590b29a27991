import EmbedTuneData
import EmbedTuneRetrieval
import EmbedTuneFormats
import EmbedTuneModels
import Foundation

/// Metric-driven fusion: a grid over method × common weight scale, then coordinate ascent on each
/// adapter's weight, scoring every candidate by the mean NDCG@10 over the domains' dev sets. Each
/// candidate is folded into the base in memory (exact ΔW, nothing written) and undone afterwards.
/// Used by `embedtune merge --search` and by a training run that names fusion partners.
public struct FusionSearch {
    public struct Settings: Sendable {
        /// One BEIR directory per adapter, in adapter order.
        public var dev: [String] = []
        public var methods: [MergeMethod] = [.taskArithmetic, .ties, .dareTies, .magnitudePrune]
        public var scales: [Double] = [0.6, 0.8, 1.0, 1.2]
        public var rounds = 1
        public var maxQueries = 200
        public var maxDocuments = 0
        public var batchSize = 32
        public var maxLength: Int?
        public var report: String?
        public var objective: Objective = .meanNDCG
        public init() {}
    }

    /// What a candidate is scored by: the mean NDCG@10 over the domains, or the smallest share of
    /// its own adapter's NDCG@10 gain that any domain keeps (domains whose adapter gained nothing
    /// are left out; ties go to the higher mean) — "no domain left behind".
    public enum Objective: String, Sendable, CaseIterable {
        case meanNDCG = "mean_ndcg", minGainKept = "min_gain_kept"
    }

    public let settings: Settings
    public let base: ModelDirectory
    public let adapters: [LoRAAdapter]
    public let start: MergeSpec
    public var log: (String) -> Void = { print($0); fflush(stdout) }

    /// The base's backbone, when the caller has loaded it already (else it is loaded here).
    public let backbone: Backbone?

    public init(settings: Settings, base: ModelDirectory, adapters: [LoRAAdapter], start: MergeSpec, backbone: Backbone? = nil) {
        self.settings = settings; self.base = base; self.adapters = adapters; self.start = start; self.backbone = backbone
    }

    struct Domain { let name: String; let set: RetrievalSet }

    public func run() throws -> MergeSpec {
        guard settings.dev.count == adapters.count else {
            throw FormatError("fusion search needs one dev set per adapter (\(adapters.count) adapters, \(settings.dev.count) dev sets)")
        }
        let methods = settings.methods, scales = settings.scales
        let domains = try settings.dev.map(loadDomain)
        let embedder = try backbone.map { Embedder(directory: base, tokenizer: try base.loadTokenizer(), backbone: $0) } ?? Embedder(directory: base)
        guard let model = embedder.backbone as? TrainableBackbone else {
            throw FormatError(file: base.url.path, "\(base.modelType) models cannot carry LoRA adapters")
        }
        let evaluators = domains.map { domain in
            var e = EmbeddingEvaluator(set: domain.set)
            e.metrics.scores = [.cosine]
            e.batchSize = settings.batchSize
            e.maxLength = settings.maxLength
            return e
        }

        /// NDCG@10 per domain with `deltas` folded into the base.
        func score(_ deltas: [MergedDelta]) throws -> [Double] {
            try model.withFolded(deltas.map { ($0.module, $0.values) }) {
                try evaluators.map { try $0.evaluate(embedder)["cosine_ndcg@10"] ?? .nan }
            }
        }
        let baseline = try score([])
        log("search: base NDCG@10 " + zip(domains, baseline).map { String(format: "%@ %.4f", $0.name, $1) }.joined(separator: ", "))
        let own = try adapters.enumerated().map { i, a in
            try score(AdapterMerge.deltas([a], MergeSpec(method: .taskArithmetic)))[i]
        }
        log("search: own adapters " + zip(domains, own).map { String(format: "%@ %.4f", $0.name, $1) }.joined(separator: ", "))

        var cache = [String: [Double]]()
        func objective(_ scores: [Double]) -> Double {
            switch settings.objective {
            case .meanNDCG: return mean(scores)
            case .minGainKept:
                let kept = scores.indices.filter { own[$0] > baseline[$0] }
                    .map { (scores[$0] - baseline[$0]) / (own[$0] - baseline[$0]) }
                return (kept.min() ?? 0) + 1e-3 * mean(scores)
            }
        }
        func evaluate(_ spec: MergeSpec) throws -> Double {
            let key = "\(spec.method.rawValue) \(spec.weights ?? []) \(spec.density)"
            if cache[key] == nil {
                cache[key] = try score(AdapterMerge.deltas(adapters, spec))
                let w = (spec.weights ?? []).map { String(format: "%.2f", $0) }.joined(separator: ",")
                log(String(format: "search: %@ weights [%@] → mean NDCG@10 %.4f  (", spec.method.rawValue, w, mean(cache[key]!))
                    + cache[key]!.map { String(format: "%.4f", $0) }.joined(separator: ", ") + ")")
            }
            return objective(cache[key]!)
        }
        var best = start, bestScore = -Double.infinity
        for method in methods {
            for scale in scales {
                var spec = start
                spec.method = method
                spec.weights = Array(repeating: scale, count: adapters.count)
                let s = try evaluate(spec)
                if s > bestScore { best = spec; bestScore = s }
            }
        }
        for _ in 0..<settings.rounds {
            for i in adapters.indices {
                for step in [-0.2, 0.2] {
                    var spec = best
                    spec.weights![i] = max(0, spec.weights![i] + step)
                    let s = try evaluate(spec)
                    if s > bestScore { best = spec; bestScore = s }
                }
            }
        }
        let fused = cache["\(best.method.rawValue) \(best.weights ?? []) \(best.density)"]!
        var table = "| domain | base | own adapter | fused (\(best.method.rawValue)) | fused − base | gain kept |\n|---|---:|---:|---:|---:|---:|\n"
        for (i, d) in domains.enumerated() {
            // "Gain kept" is only meaningful where the domain's own adapter gained at all.
            let gain = own[i] - baseline[i]
            let kept = gain > 0 ? String(format: "%.0f%%", (fused[i] - baseline[i]) / gain * 100) : "n/a (own gain ≤ 0)"
            table += String(format: "| %@ | %.4f | %.4f | %.4f | %+.4f | %@ |\n", d.name, baseline[i], own[i], fused[i], fused[i] - baseline[i], kept)
        }
        table += String(format: "\nbest by %@: %@, weights %@, mean NDCG@10 %.4f (%d candidates)\n", settings.objective.rawValue,
                        best.method.rawValue, (best.weights ?? []).map { String(format: "%.2f", $0) }.joined(separator: ","),
                        mean(fused), cache.count)
        print(table)
        if let report = settings.report { try writeAtomically(Data(table.utf8), to: URL(fileURLWithPath: report)) }
        return best
    }

    func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(max(xs.count, 1)) }

    /// A dev set: a BEIR directory's dev (or test, validation) split, limited to the first
    /// `maxQueries` judged queries and, with `maxDocuments`, to that many documents.
    func loadDomain(_ path: String) throws -> Domain {
        let set = try RetrievalSet.loadBEIRDirectory(path, splits: ["dev", "test", "validation"])
            .limited(queries: settings.maxQueries, documents: settings.maxDocuments)
        return Domain(name: URL(fileURLWithPath: path).lastPathComponent, set: set)
    }
}
