import EmbedTuneFormats
import Foundation

/// The README.md that travels with every saved adapter and exported model, in the shape peft and
/// sentence-transformers give theirs: YAML front matter a model hub indexes (base model, library,
/// tags), then what a reader needs to trust or reproduce the weights — the base, the data and its
/// sizes, the command line, every option, the metrics before and after, the versions.
public struct ModelCard: Sendable {
    public enum Library: String, Sendable {
        case peft
        case sentenceTransformers = "sentence-transformers"
    }

    /// A Markdown table: a header row and rows of the same width.
    public struct Table: Sendable, Equatable {
        public var header: [String]
        public var rows: [[String]]
        public init(header: [String], rows: [[String]]) { self.header = header; self.rows = rows }
    }

    public var title: String
    public var library: Library
    public var baseModel: String
    /// Tags beyond the ones every EmbedTune card carries.
    public var extraTags: [String] = []
    /// One paragraph under the title: what these weights are.
    public var summary: String
    /// Data set name, row counts, held-out share, as label–value pairs.
    public var data: [(String, String)] = []
    public var commandLine: String?
    /// The options of the run as a JSON object; rendered as a TOML block that `train --config` reads
    /// back (nested objects become `[table]`s).
    public var options: JSONValue?
    public var metrics: Table?
    /// Lines under the metrics table saying what its rows are.
    public var metricsNote: String?
    /// Further sections, each a heading and its Markdown body (a fusion table, a merge recipe).
    public var sections: [(heading: String, body: String)] = []
    public var frameworkVersions: [(String, String)] = ModelCard.defaultFrameworkVersions
    /// The hub's task of the weights: sentence-similarity for embedders, text-ranking for rerankers.
    public var pipelineTag = "sentence-similarity"

    public init(title: String, library: Library, baseModel: String, summary: String) {
        self.title = title; self.library = library; self.baseModel = baseModel; self.summary = summary
    }

    public static let standardTags = ["embedtune", "lora", "sentence-similarity", "feature-extraction", "sentence-transformers"]

    public var tags: [String] {
        var seen = Set<String>()
        return (Self.standardTags + extraTags).filter { seen.insert($0).inserted }
    }

    public func markdown() -> String {
        var s = "---\n"
        s += "base_model: \(yamlString(baseModel))\n"
        s += "library_name: \(library.rawValue)\n"
        s += "pipeline_tag: \(pipelineTag)\n"
        s += "tags:\n" + tags.map { "- \(yamlString($0))\n" }.joined()
        s += "---\n\n# \(title)\n\n\(summary)\n\n"
        s += "## Base model\n\n`\(baseModel)`\n\n"
        if !data.isEmpty {
            s += "## Training data\n\n" + data.map { "- \($0.0): \($0.1)\n" }.joined() + "\n"
        }
        if let commandLine { s += "## Command\n\n```sh\n\(commandLine)\n```\n\n" }
        if let options { s += "## Options\n\n```toml\n\(TOML.document(options))```\n\n" }
        if let metrics {
            s += "## Metrics\n\n" + metrics.markdown() + "\n"
            if let metricsNote { s += metricsNote + "\n\n" }
        }
        for section in sections { s += "## \(section.heading)\n\n\(section.body.trimmingCharacters(in: .newlines))\n\n" }
        if !frameworkVersions.isEmpty {
            s += "## Framework versions\n\n" + frameworkVersions.map { "- \($0.0): \($0.1)\n" }.joined()
        }
        return s
    }

    /// Writes `directory`/README.md atomically, like the adapter and model files beside it.
    public func write(to directory: URL) throws {
        try writeAtomically(Data(markdown().utf8), to: directory.appendingPathComponent("README.md"))
    }

    /// The command line of this process, each argument shell-quoted where it needs it.
    public static var currentCommandLine: String {
        CommandLine.arguments.map(shellQuoted).joined(separator: " ")
    }

    public static var defaultFrameworkVersions: [(String, String)] {
        [("EmbedTune", BuildInfo.commit.map { "commit \($0)" } ?? "unknown commit"),
         ("OS", ProcessInfo.processInfo.operatingSystemVersionString)]
    }

    /// A double-quoted string with backslash escapes: valid in TOML and in YAML alike.
    static func quoted(_ text: String) -> String { JSONValue.string(text).tomlText }

    /// Plain YAML scalars stay bare; anything YAML could read as another type or syntax is quoted.
    func yamlString(_ text: String) -> String {
        let plain = !text.isEmpty && text.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) || "-_./".unicodeScalars.contains($0)
        } && !["true", "false", "null", "yes", "no", "~"].contains(text.lowercased()) && Double(text) == nil
        return plain ? text : Self.quoted(text)
    }

    static func shellQuoted(_ argument: String) -> String {
        let safe = !argument.isEmpty && argument.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) || "-_./=,:@+%".unicodeScalars.contains($0)
        }
        return safe ? argument : "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

extension ModelCard.Table {
    /// GitHub-flavoured Markdown; cells' pipes and newlines are escaped so a cell never breaks a row.
    /// Columns after the first are right-aligned (they hold numbers).
    public func markdown() -> String {
        func row(_ cells: [String]) -> String {
            "| " + cells.map { $0.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ") }
                .joined(separator: " | ") + " |\n"
        }
        let width = header.count
        let rule = "|" + (0..<width).map { $0 == 0 ? "---" : "---:" }.joined(separator: "|") + "|\n"
        return row(header) + rule + rows.map(row).joined()
    }
}
