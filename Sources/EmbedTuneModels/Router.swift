import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// Picks the domain adapter for a query from its base-model embedding. Two kinds:
/// - centroid: cosine to each domain's mean (normalised) query embedding, softmax at `temperature`;
/// - logistic: multinomial logistic regression on the normalised embedding (full-batch gradient
///   descent with L2, deterministic).
/// Scores are probabilities over the domains, in the router's domain order.
public struct Router: Codable, Sendable {
    public enum Kind: String, Codable, Sendable { case centroid, logistic }
    public var kind: Kind
    public var baseModel: String
    public var domains: [String]
    public var dim: Int
    public var queryPrompt: String
    /// domains × dim: centroids, or the logistic weights.
    public var weights: [Float]
    public var bias: [Float]
    public var temperature: Float

    enum CodingKeys: String, CodingKey {
        case kind, domains, dim, weights, bias, temperature
        case baseModel = "base_model", queryPrompt = "query_prompt"
    }

    /// `embeddings[d]`: row-major (n_d × dim) base embeddings of domain d's training queries.
    public static func train(kind: Kind, domains: [String], embeddings: [[Float]], dim: Int, baseModel: String,
                             queryPrompt: String, temperature: Float = 0.05, epochs: Int = 300, l2: Float = 1e-3) throws -> Router {
        guard domains.count >= 2 else { throw FormatError("a router needs at least two domains, got \(domains.count)") }
        for (d, e) in zip(domains, embeddings) where e.isEmpty { throw FormatError("domain \(d) has no queries") }
        let k = domains.count
        var normalized = embeddings
        for d in 0..<k { normalized[d].withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: $0.count / dim, c: dim) } }
        var router = Router(kind: kind, baseModel: baseModel, domains: domains, dim: dim, queryPrompt: queryPrompt,
                            weights: [Float](repeating: 0, count: k * dim), bias: [Float](repeating: 0, count: k), temperature: temperature)
        // Centroids first: the answer for .centroid and the starting point for .logistic.
        for d in 0..<k {
            let n = normalized[d].count / dim
            for i in 0..<n { for j in 0..<dim { router.weights[d * dim + j] += normalized[d][i * dim + j] } }
        }
        router.weights.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: k, c: dim) }
        guard kind == .logistic else { return router }
        // Softmax regression on logits W·x/τ + b, classes weighted equally whatever their sizes.
        var x = [Float](), y = [Int](), sampleWeight = [Float]()
        for d in 0..<k {
            let n = normalized[d].count / dim
            x += normalized[d]; y += Array(repeating: d, count: n); sampleWeight += Array(repeating: 1 / Float(n * k), count: n)
        }
        let lr: Float = 0.5
        for _ in 0..<epochs {
            var gw = [Float](repeating: 0, count: k * dim), gb = [Float](repeating: 0, count: k)
            for i in 0..<y.count {
                let p = router.probabilities(x[(i * dim)..<((i + 1) * dim)])
                for d in 0..<k {
                    let g = (p[d] - (d == y[i] ? 1 : 0)) * sampleWeight[i]
                    gb[d] += g
                    for j in 0..<dim { gw[d * dim + j] += g / temperature * x[i * dim + j] }
                }
            }
            for j in 0..<(k * dim) { router.weights[j] -= lr * temperature * (gw[j] + l2 * router.weights[j]) }
            for d in 0..<k { router.bias[d] -= lr * gb[d] }
        }
        return router
    }

    /// Probabilities over the domains for one base embedding (normalised here).
    public func probabilities<C: Collection>(_ embedding: C) -> [Float] where C.Element == Float {
        let e = Array(embedding)
        let norm = max(e.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
        var logits = (0..<domains.count).map { d -> Float in
            var s: Float = 0
            for j in 0..<dim { s += weights[d * dim + j] * e[j] }
            return s / norm / temperature + bias[d]
        }
        let m = logits.max()!
        logits = logits.map { expf($0 - m) }
        let z = logits.reduce(0, +)
        return logits.map { $0 / z }
    }

    public func save(to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(self), to: url)
    }

    public static func load(_ url: URL) throws -> Router {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw FormatError(url: url, "cannot read") }
        let router: Router
        do { router = try JSONDecoder().decode(Router.self, from: data) } catch { throw FormatError(url: url, "not a router file (\(error))") }
        guard router.weights.count == router.domains.count * router.dim, router.bias.count == router.domains.count else {
            throw FormatError(url: url, item: "weights", "expected \(router.domains.count) × \(router.dim) values")
        }
        return router
    }
}

/// What routing decided for one query: adapter indices with mixing weights (one entry, or the top two).
public struct RouteChoice: Hashable, Sendable {
    public var adapters: [Int]
    public var weights: [Double]

    /// The top domain alone when its probability reaches `threshold`, else the top two mixed by
    /// their renormalised probabilities (`mix` false: always the top one).
    public static func from(_ p: [Float], threshold: Float, mix: Bool) -> RouteChoice {
        let order = p.indices.sorted { p[$0] != p[$1] ? p[$0] > p[$1] : $0 < $1 }
        if !mix || p[order[0]] >= threshold || p.count < 2 { return RouteChoice(adapters: [order[0]], weights: [1]) }
        let a = Double(p[order[0]]), b = Double(p[order[1]])
        return RouteChoice(adapters: [order[0], order[1]], weights: [a / (a + b), b / (a + b)])
    }
}
