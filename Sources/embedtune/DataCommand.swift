import ArgumentParser
import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneTraining
import Foundation

/// `embedtune data`: the SQLite dataset store. Sources are imported once (deduplicated, one
/// transaction), split by query, inspected, and exported as the files `train`, `mine` and
/// `eval` read.
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Import, split, inspect and export datasets kept in an SQLite store.",
        subcommands: [DataImportCommand.self, DataSplitCommand.self, DataStatsCommand.self, DataExportCommand.self, DataListCommand.self])
}

/// Opens an existing store; only `import` creates one, so a mistyped --db is an error, not a new empty file.
func openExistingStore(_ path: String) throws -> DatasetStore {
    guard FileManager.default.fileExists(atPath: path) else {
        throw FormatError("\(path): no such dataset store (create one with `embedtune data import`)")
    }
    return try DatasetStore(path: path)
}

/// A text table under a header row: numeric columns right-aligned, text columns left-aligned.
func renderTable(_ rows: [[String]]) -> String {
    guard let width = rows.map(\.count).max() else { return "" }
    var widths = [Int](repeating: 0, count: width), numeric = [Bool](repeating: true, count: width)
    for (r, row) in rows.enumerated() {
        for (i, cell) in row.enumerated() {
            widths[i] = max(widths[i], cell.count)
            if r > 0 && Double(cell) == nil { numeric[i] = false }
        }
    }
    return rows.map { row in
        row.enumerated().map { i, cell in
            let pad = String(repeating: " ", count: widths[i] - cell.count)
            return numeric[i] ? pad + cell : cell + pad
        }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
    }.joined(separator: "\n") + "\n"
}

struct DataImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Import a dataset into the store (one transaction; texts deduplicated).")

    @Option(help: "The dataset store (an SQLite file, created if missing).") var db: String
    @Option(name: .spelled("db_dataset"), help: "The dataset's name in the store.") var dbDataset: String
    @Option(help: "pairs | ms-swift | sentence-transformers | beir") var format: String
    @Option(help: "Input file (JSONL, CSV or TSV), or for beir a directory with corpus.jsonl, queries.jsonl, qrels/*.tsv.")
    var input: String?
    @Option(name: .spelled("query_field"), help: .questionField)
    var queryField: String?
    @Option(name: .spelled("answer_field"), help: .answerField)
    var answerField: String?
    @Option(name: .spelled("id_field"), help: "pairs: a field holding each question's id (default: ids q1, q2, …).")
    var idField: String?
    @Option(help: "beir: corpus.jsonl (overrides the directory's).") var corpus: String?
    @Option(help: "beir: queries.jsonl (overrides the directory's).") var queries: String?
    @Option(help: "beir: a qrels .tsv, or a directory of them; train/dev/test file names set the split.") var qrels: String?
    @Option(help: .boolean("Replace an existing dataset of that name (its run log is kept).")) var replace = false

    func validate() throws {
        guard let f = ImportFormat(rawValue: format) else {
            throw ValidationError("--format must be one of \(ImportFormat.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if f == .beir {
            if input == nil && (corpus == nil || queries == nil || qrels == nil) {
                throw ValidationError("--format beir needs --input DIR, or --corpus, --queries and --qrels")
            }
        } else {
            if input == nil { throw ValidationError("--format \(format) needs --input") }
            if corpus != nil || queries != nil || qrels != nil { throw ValidationError("--corpus, --queries and --qrels apply to --format beir") }
        }
        if f != .pairs && (queryField != nil || answerField != nil || idField != nil) {
            throw ValidationError("--query_field, --answer_field and --id_field apply to --format pairs")
        }
    }

    func run() throws {
        try runReportingErrors {
            let start = Date()
            let store = try DatasetStore(path: db)
            let inputs = ImportInputs(input: input, corpus: corpus, queries: queries, qrels: qrels,
                                      queryField: queryField, answerField: answerField, idField: idField)
            let report = try store.importDataset(name: dbDataset, format: ImportFormat(rawValue: format) ?? .pairs, inputs: inputs, replace: replace)
            print("\(report) in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        }
    }
}

struct DataSplitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split", abstract: "Split a dataset's queries into train and test (deterministic, by query; the corpus is shared).")

    @Option(help: "The dataset store.") var db: String
    @Option(name: .spelled("db_dataset"), help: "The dataset's name in the store.") var dbDataset: String
    @Option(name: .spelled("test_size"), help: "Fraction of queries for test, in (0, 1); a whole number ≥ 1 is a count.")
    var testSize = 0.2
    @Option(help: "Seed of the query order.") var seed: UInt64 = 42

    func run() throws {
        try runReportingErrors {
            let store = try openExistingStore(db)
            let (train, test) = try store.split(dataset: dbDataset, testSize: testSize, seed: seed)
            print("\(dbDataset): \(train) train, \(test) test queries (test size \(testSize), seed \(seed))")
        }
    }
}

struct DataStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Counts and length percentiles of a dataset, per split.")

    @Option(help: "The dataset store.") var db: String
    @Option(name: .spelled("db_dataset"), help: "The dataset's name in the store.") var dbDataset: String
    @Option(help: "A model directory whose tokenizer measures lengths in tokens, special tokens included (default: characters).") var model: String?
    @Option(help: "Also write the statistics as JSON here.") var json: String?

    func run() throws {
        try runReportingErrors {
            let store = try openExistingStore(db)
            var measure: ((String) -> Int)?
            if let model {
                let tokenizer = try ModelDirectory(URL(fileURLWithPath: model)).loadTokenizer()
                measure = { tokenizer.encode($0).count }
            }
            let stats = try store.stats(dataset: dbDataset, tokenizer: measure)
            print("\(stats.dataset)\(stats.source.map { " (\($0))" } ?? ""): \(stats.corpusSize) documents in the corpus; lengths in \(stats.unit)")
            var counts = [["split", "queries", "judged", "docs", "qrels", "rel/q mean", "rel/q max", "negatives", "triplets"]]
            for s in stats.splits {
                counts.append([s.name, "\(s.queries)", "\(s.queriesWithRelevant)", "\(s.documents)", "\(s.qrels)",
                               String(format: "%.2f", s.relevantPerQueryMean), "\(s.relevantPerQueryMax)", "\(s.sourceNegatives)", "\(s.triplets)"])
            }
            print(renderTable(counts))
            var lengths = [["lengths (\(stats.unit))", "count", "p50", "p90", "p99", "max"]]
            func add(_ label: String, _ l: LengthPercentiles) { lengths.append([label, "\(l.count)", "\(l.p50)", "\(l.p90)", "\(l.p99)", "\(l.max)"]) }
            add("corpus", stats.corpusLengths)
            for s in stats.splits {
                add("\(s.name) queries", s.queryLengths)
                add("\(s.name) documents", s.documentLengths)
            }
            print(renderTable(lengths), terminator: "")
            if let json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                try writeAtomically(try encoder.encode(stats) + Data("\n".utf8), to: URL(fileURLWithPath: json))
            }
        }
    }
}

struct DataExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write a dataset split as training pairs, ms-swift rows, triplets or a BEIR directory.")

    @Option(help: "The dataset store.") var db: String
    @Option(name: .spelled("db_dataset"), help: "The dataset's name in the store.") var dbDataset: String
    @Option(name: .spelled("db_split", "split"), help: "train | test | all (or another split the dataset has).") var dbSplit = "all"
    @Option(help: "pairs | ms-swift | beir | triplets") var format: String
    @Option(help: "Output file (JSONL), or for beir a directory.") var output: String

    static let formats = ["pairs", "ms-swift", "beir", "triplets"]

    func validate() throws {
        guard Self.formats.contains(format) else { throw ValidationError("--format must be one of \(Self.formats.joined(separator: ", "))") }
    }

    func run() throws {
        try runReportingErrors {
            let store = try openExistingStore(db)
            let splitFilter: String? = dbSplit == "all" ? nil : dbSplit
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes]
            func json(_ v: some Encodable) throws -> String { String(decoding: try encoder.encode(v), as: UTF8.self) }
            func object(_ fields: [(String, String)]) throws -> String {
                "{" + (try fields.map { try json($0.0) + ": " + $0.1 }).joined(separator: ", ") + "}\n"
            }
            func write(_ text: String, rows: Int, what: String) throws {
                try writeAtomically(Data(text.utf8), to: URL(fileURLWithPath: output))
                print("wrote \(rows) \(what) of \(dbDataset) (\(dbSplit)) to \(output)")
            }
            switch format {
            case "pairs":
                let pairs = try store.pairs(dataset: dbDataset, split: splitFilter)
                guard !pairs.isEmpty else { throw FormatError("\(dbDataset) (\(dbSplit)) has no relevant pairs") }
                var text = ""
                for p in pairs { text += try object([("query", try json(p.query)), ("response", try json(p.positive))]) }
                try write(text, rows: pairs.count, what: "pairs")
            case "ms-swift":
                var text = "", rows = 0
                let stored = try store.triplets(dataset: dbDataset, split: dbSplit)
                if !stored.isEmpty {
                    for t in stored {
                        text += try object([("query", try json(t.query)), ("response", try json(t.positive)),
                                            ("rejected_response", try json(t.negatives))])
                    }
                    rows = stored.count
                } else {
                    let pairs = try store.pairs(dataset: dbDataset, split: splitFilter)
                    guard !pairs.isEmpty else { throw FormatError("\(dbDataset) (\(dbSplit)) has no relevant pairs") }
                    let negatives = try store.sourceNegatives(dataset: dbDataset)
                    for p in pairs {
                        var fields = [("query", try json(p.query)), ("response", try json(p.positive))]
                        if let n = negatives[p.queryID], !n.isEmpty { fields.append(("rejected_response", try json(n))) }
                        text += try object(fields)
                    }
                    rows = pairs.count
                }
                try write(text, rows: rows, what: stored.isEmpty ? "ms-swift rows (source negatives)" : "ms-swift rows (stored triplets)")
            case "triplets":
                let stored = try store.triplets(dataset: dbDataset, split: dbSplit)
                guard !stored.isEmpty else {
                    let have = try store.tripletSplits(dataset: dbDataset).keys.sorted()
                    throw FormatError("\(dbDataset) has no stored triplets for split \"\(dbSplit)\" (" + (have.isEmpty ? "none stored" : "stored: \(have.joined(separator: ", "))") + ")")
                }
                var text = ""
                for t in stored {
                    var fields = [("anchor", try json(t.query)), ("positive", try json(t.positive))]
                    for (i, n) in t.negatives.enumerated() { fields.append(("negative_\(i + 1)", try json(n))) }
                    text += try object(fields)
                }
                try write(text, rows: stored.count, what: "triplets")
            default:
                try exportBEIR(store, splitFilter: splitFilter, json: json, object: object)
            }
        }
    }

    /// corpus.jsonl (whole), queries.jsonl (the split's), qrels/<split>.tsv — for `all`, one
    /// qrels file per split present and unsplit.tsv for queries without one, so a re-import
    /// restores the splits.
    func exportBEIR(_ store: DatasetStore, splitFilter: String?, json: (String) throws -> String,
                    object: ([(String, String)]) throws -> String) throws {
        let dir = URL(fileURLWithPath: output)
        let qrelsDir = dir.appendingPathComponent("qrels")
        do { try FileManager.default.createDirectory(at: qrelsDir, withIntermediateDirectories: true) }
        catch { throw FormatError("\(qrelsDir.path): cannot create: \(error.localizedDescription)") }
        let corpus = try store.corpus(dataset: dbDataset)
        var text = ""
        for d in corpus { text += try object([("_id", try json(d.id)), ("text", try json(d.text))]) }
        try writeAtomically(Data(text.utf8), to: dir.appendingPathComponent("corpus.jsonl"))
        let queries = try store.queries(dataset: dbDataset, split: splitFilter)
        text = ""
        for q in queries { text += try object([("_id", try json(q.id)), ("text", try json(q.text))]) }
        try writeAtomically(Data(text.utf8), to: dir.appendingPathComponent("queries.jsonl"))
        var files = [String: String]()
        for r in try store.qrels(dataset: dbDataset, split: splitFilter) {
            let name = splitFilter ?? r.split ?? "unsplit"
            files[name, default: "query-id\tcorpus-id\tscore\n"] += "\(r.queryID)\t\(r.docID)\t\(Self.score(r.score))\n"
        }
        for (name, body) in files { try writeAtomically(Data(body.utf8), to: qrelsDir.appendingPathComponent("\(name).tsv")) }
        print("wrote \(corpus.count) documents, \(queries.count) queries, qrels \(files.keys.sorted().joined(separator: ", ")) of \(dbDataset) (\(dbSplit)) to \(output)")
    }

    /// Integral scores print as integers (BEIR's convention).
    static func score(_ s: Double) -> String { s == s.rounded() && abs(s) < 1e15 ? String(Int(s)) : String(s) }
}

struct DataListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "The datasets in a store with their counts, and the recorded runs.")

    @Option(help: "The dataset store.") var db: String

    /// The metrics shown per run: these when present, else the first few by name.
    static let mainMetrics = ["ndcg@10", "mrr@10", "recall@10", "recall@100", "map@100", "loss"]

    func run() throws {
        try runReportingErrors {
            let store = try openExistingStore(db)
            let datasets = try store.datasets()
            if datasets.isEmpty { print("\(db): no datasets") ; return }
            var rows = [["dataset", "queries", "documents", "qrels", "negatives", "triplets", "splits", "source"]]
            for d in datasets {
                let splits = d.splits.sorted { $0.key < $1.key }.map { "\($0.key.isEmpty ? "unsplit" : $0.key) \($0.value)" }.joined(separator: ", ")
                rows.append([d.name, "\(d.queries)", "\(d.documents)", "\(d.qrels)", "\(d.negatives)", "\(d.triplets)", splits, d.source ?? ""])
            }
            print(renderTable(rows), terminator: "")
            let runs = try store.runs(dataset: nil)
            guard !runs.isEmpty else { return }
            var table = [["run", "dataset", "kind", "split", "model", "adapter", "created", "metrics"]]
            for r in runs {
                var keys = r.metrics.keys.filter { k in Self.mainMetrics.contains { k.hasSuffix($0) } }.sorted()
                if keys.isEmpty { keys = Array(r.metrics.keys.sorted().prefix(4)) }
                let metrics = keys.prefix(4).map { "\($0) \(String(format: "%.4f", r.metrics[$0] ?? 0))" }.joined(separator: ", ")
                table.append(["\(r.id)", r.dataset, r.kind, r.split ?? "all", r.model, r.adapter ?? "-", r.created, metrics])
            }
            print("\nruns")
            print(renderTable(table), terminator: "")
        }
    }
}

extension ArgumentHelp {
    /// The field options' help, listing the names `PairFields` tries.
    static var questionField: ArgumentHelp { ArgumentHelp("The question (anchor) field; default: the first of \(PairFields.questionList).") }
    static var answerField: ArgumentHelp { ArgumentHelp("The answer (positive) field; default: the first of \(PairFields.answerList).") }
}
