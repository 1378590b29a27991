import EmbedTuneFormats
import Foundation

/// Embeds each text with the domain adapter a router picks for it: the router reads the text's
/// base-model embedding (with the router's query prompt), then every group of texts that share a
/// route is embedded with that route's adapter — one adapter, or the top two mixed exactly on ΔW
/// (task arithmetic) when the top probability is below `threshold`. `embed --route auto`, `index
/// build --router` and `search` on a routed index all embed through it, so a routed index and its
/// queries see the same routes.
public struct RoutedEmbedding {
    public let router: Router
    /// The adapters in the router's domain order.
    public let adapters: [LoRAAdapter]
    public var threshold: Float
    public var mix: Bool

    /// What routing decided for the texts, in input order.
    public struct Result {
        public var dim: Int
        public var values: [Float]
        public var choices: [RouteChoice]
        public var probabilities: [[Float]]
    }

    /// Loads `adapterPaths` (one per router domain, in its order) for `embedder`'s model, checking
    /// the counts, the router's dimension and each adapter's fit. `routerPath` and `modelPath`
    /// name the files in errors.
    public init(router: Router, routerPath: String, adapterPaths: [String], embedder: Embedder, modelPath: String,
                threshold: Float = 0.5, mix: Bool = true) throws {
        guard adapterPaths.count == router.domains.count else {
            throw FormatError("\(adapterPaths.count) adapter(s) for the router \(routerPath), which has \(router.domains.count) domains (\(router.domains.joined(separator: ", ")))")
        }
        guard router.dim == embedder.backbone.hiddenSize else {
            throw FormatError("the router \(routerPath) was built on a \(router.dim)-dimensional model, \(modelPath) is \(embedder.backbone.hiddenSize)-dimensional")
        }
        guard let trainable = embedder.backbone as? TrainableBackbone else { throw FormatError("\(modelPath) cannot carry adapters") }
        let loaded = try adapterPaths.map { try PEFTAdapter.load(URL(fileURLWithPath: $0)) }
        try AdapterMerge.validate(loaded, MergeSpec(method: .taskArithmetic))
        try AdapterMerge.checkCompatible(loaded, with: trainable, modelPath: modelPath)
        self.router = router
        adapters = loaded
        self.threshold = threshold
        self.mix = mix
    }

    /// Embeds `texts` (with `options`, its prefix included) each on its route. `embedder`'s own
    /// adapter is set per group and cleared at the end.
    public func embed(_ texts: [String], embedder: Embedder, options: Embedder.Options) throws -> Result {
        var routing = options
        routing.prefix = router.queryPrompt
        routing.dimension = nil
        embedder.adapter = nil
        defer { embedder.adapter = nil }
        let base = try embedder.embed(texts, options: routing).values
        let dim = router.dim
        let probabilities = (0..<texts.count).map { router.probabilities(base[($0 * dim)..<(($0 + 1) * dim)]) }
        let choices = probabilities.map { RouteChoice.from($0, threshold: threshold, mix: mix) }
        var groups = [RouteChoice: [Int]]()
        for (i, c) in choices.enumerated() { groups[c, default: []].append(i) }
        var out = [Float](), width = options.dimension ?? embedder.backbone.hiddenSize
        for (choice, rows) in groups.sorted(by: { $0.value[0] < $1.value[0] }) {
            // One adapter, or the top two mixed: both are an exact task_arithmetic of the chosen ones.
            let merged = try AdapterMerge.factors(choice.adapters.map { adapters[$0] }, MergeSpec(method: .taskArithmetic, weights: choice.weights))
            embedder.adapter = try LoRAAdapter.fromFactors(merged.modules, rank: merged.rank)
            let (d, values) = try embedder.embed(rows.map { texts[$0] }, options: options)
            if out.isEmpty { width = d; out = [Float](repeating: 0, count: texts.count * d) }
            for (k, i) in rows.enumerated() { out.replaceSubrange((i * d)..<((i + 1) * d), with: values[(k * d)..<((k + 1) * d)]) }
        }
        return Result(dim: width, values: out, choices: choices, probabilities: probabilities)
    }
}
