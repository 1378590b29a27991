import ArgumentParser
import EmbedTuneFormats
import EmbedTuneModels
import Foundation

/// `embedtune route build`: a domain router from per-domain query sets, for
/// `embed --adapters a,b,c --route auto --router router.json`.
struct RouteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "route", abstract: "Domain routing between adapters.", subcommands: [RouteBuild.self])
}

struct RouteBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Build a router (domain centroids or a logistic classifier on base embeddings) from per-domain queries.")

    @Option(help: "Base model directory (the model the domain adapters were trained on).") var model: String
    @Option(parsing: .singleValue, help: "NAME=FILE: a domain's training queries (.txt, or .jsonl with --field). Repeat per domain, in adapter order.")
    var domain: [String] = []
    @Option(parsing: .singleValue, help: "NAME=FILE: held-out queries of a domain; routing accuracy is reported.") var test: [String] = []
    @Option(help: "JSONL field holding the query text.") var field = "text"
    @Option(help: "centroid | logistic") var kind = "centroid"
    @Option(help: "Softmax temperature over cosine scores.") var temperature: Float = 0.05
    @Option(help: "Router file to write (JSON).") var output: String
    @Option(name: .spelled("batch_size"), help: "Texts per forward pass.") var batchSize = 32

    func run() throws {
        try runReportingErrors {
            guard let kind = Router.Kind(rawValue: kind) else { throw FormatError("--kind must be centroid or logistic") }
            let train = try domain.map(Self.parse)
            guard train.count >= 2 else { throw FormatError("give at least two --domain NAME=FILE") }
            let names = train.map(\.name)
            guard Set(names).count == names.count else { throw FormatError("--domain names must be distinct (got \(names.joined(separator: ", ")))") }
            let tests = try test.map(Self.parse)
            for t in tests where !names.contains(t.name) { throw FormatError("--test \(t.name): no --domain of that name (have \(names.joined(separator: ", ")))") }
            let trainTexts = try train.map { try readTexts($0.path, field: field) }
            let testTexts = try tests.map { try readTexts($0.path, field: field) }
            let dir = try ModelDirectory(URL(fileURLWithPath: model))
            let embedder = try Embedder(directory: dir)
            var options = Embedder.Options()
            options.batchSize = batchSize
            options.prefix = dir.queryPrompt
            let dim = embedder.backbone.hiddenSize
            let router = try Router.train(kind: kind, domains: names, embeddings: try trainTexts.map { try embedder.embed($0, options: options).values },
                                          dim: dim, baseModel: model, queryPrompt: dir.queryPrompt, temperature: temperature)
            try router.save(to: URL(fileURLWithPath: output))
            print("route: \(kind.rawValue) router over \(names.joined(separator: ", ")) (\(trainTexts.map(\.count).reduce(0, +)) queries) → \(output)")
            var correct = 0, total = 0
            for (t, texts) in zip(tests, testTexts) {
                let truth = names.firstIndex(of: t.name)!
                let e = try embedder.embed(texts, options: options).values
                let hits = (0..<texts.count).filter { i in
                    let p = router.probabilities(e[(i * dim)..<((i + 1) * dim)])
                    return p.indices.max { p[$0] < p[$1] } == truth
                }.count
                correct += hits; total += texts.count
                print(String(format: "route: %@ held-out accuracy %.4f (%d/%d)", t.name, Double(hits) / Double(max(texts.count, 1)), hits, texts.count))
            }
            if total > 0 { print(String(format: "route: overall held-out accuracy %.4f (%d/%d)", Double(correct) / Double(total), correct, total)) }
        }
    }

    static func parse(_ spec: String) throws -> (name: String, path: String) {
        guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex, spec.index(after: eq) != spec.endIndex else {
            throw FormatError("\"\(spec)\": expected NAME=FILE")
        }
        return (String(spec[..<eq]), String(spec[spec.index(after: eq)...]))
    }
}
