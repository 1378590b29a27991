import Foundation
import Testing

/// The target graph as docs/architecture.md and Package.swift state it: every target imports
/// only targets below it. A new import that points up (data reaching into training, the
/// retrieval module into the CLI) fails here, naming the file.
@Suite("Layering: targets import only the targets below them")
struct LayeringTests {
    /// Bottom to top; a target may import any target listed before it. Distributed, Report and
    /// the fuzz harness are leaves with their own lists of who may import them.
    static let layers = ["EmbedTuneKernels", "EmbedTuneFormats", "EmbedTuneTokenizers", "EmbedTuneModels", "EmbedTuneData",
                         "EmbedTuneRetrieval", "EmbedTuneSearch", "EmbedTuneTraining", "EmbedTuneGeneration", "EmbedTuneServing", "embedtune"]
    static let leaves: [String: Set<String>] = [
        "EmbedTuneDistributed": ["EmbedTuneRetrieval", "EmbedTuneTraining", "EmbedTuneGeneration", "embedtune"],
        "EmbedTuneReport": ["embedtune"],
        "EmbedTuneFuzz": [],
    ]
    /// The fuzz harness sits beside the CLI: it reads files through the libraries, as the CLI does.
    static let leafDependencies: [String: Set<String>] = [
        "EmbedTuneDistributed": [], "EmbedTuneReport": ["EmbedTuneFormats"],
        "EmbedTuneFuzz": Set(layers.dropLast()).union(["EmbedTuneDistributed"]),
    ]

    /// Project modules each Swift file of `target` imports.
    static func imports(of target: String) throws -> [(file: String, module: String)] {
        let dir = Paths.repository.appendingPathComponent("Sources/\(target)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".swift") }
        let known = Set(layers + Array(leaves.keys))
        return try files.flatMap { name in
            try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8).split(separator: "\n")
                .compactMap { line -> (String, String)? in
                    let words = line.split(separator: " ")
                    guard words.first == "import" || (words.first?.hasPrefix("@") == true && words.dropFirst().first == "import"),
                          let module = words.last.map(String.init), known.contains(module) else { return nil }
                    return ("\(target)/\(name)", module)
                }
        }
    }

    @Test("every import points down the layers, and the leaves are imported only where documented")
    func oneWay() throws {
        for (level, target) in Self.layers.enumerated() {
            let below = Set(Self.layers.prefix(level)).union(Self.leaves.filter { $0.value.contains(target) }.map(\.key))
            for (file, module) in try Self.imports(of: target) {
                #expect(below.contains(module), "\(file) imports \(module), which is not below \(target)")
            }
        }
        for (leaf, allowed) in Self.leafDependencies {
            for (file, module) in try Self.imports(of: leaf) {
                #expect(allowed.contains(module), "\(file) imports \(module); \(leaf) may import only \(allowed.sorted())")
            }
        }
    }

    @Test("Package.swift lists the same targets the layers name")
    func packageNamesEveryTarget() throws {
        let manifest = try String(contentsOf: Paths.repository.appendingPathComponent("Package.swift"), encoding: .utf8)
        for target in Self.layers + Self.leaves.keys.sorted() {
            #expect(manifest.contains("name: \"\(target)\""), "Package.swift has no target \(target)")
        }
        let sources = try FileManager.default.contentsOfDirectory(atPath: Paths.repository.appendingPathComponent("Sources").path)
            .filter { $0.hasPrefix("EmbedTune") || $0 == "embedtune" }
        #expect(Set(sources) == Set(Self.layers + Self.leaves.keys), "Sources/ holds \(sources.sorted())")
    }
}
