import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneKernels
import Foundation

/// Retrieval and training data in one SQLite file: datasets of queries, a corpus, relevance
/// judgements (qrels), hard negatives given by the source, mined training triplets and a log of
/// runs. Imports and splits are single transactions, so a failure leaves the file as it was.
///
/// Texts are stored trimmed and deduplicated per dataset (identical question text is one query,
/// identical document text one document); row order is kept through SQLite's rowids.
public final class DatasetStore {
    public static let schemaVersion: Int64 = 1
    /// PRAGMA application_id ("EmTn"): marks a file as a store, so another SQLite database is refused.
    static let applicationID: Int64 = 0x456D_546E

    public let path: String
    let db: SQLiteDatabase

    /// Opens the store at `path`, creating it when the file is missing or empty. Refuses any
    /// other file: a non-SQLite file, another application's database, a newer schema.
    public init(path: String) throws {
        self.path = path
        db = try SQLiteDatabase(path: path)
        let application = try db.scalar("PRAGMA application_id")
        let version = try db.scalar("PRAGMA user_version")
        let tables = try db.scalar("SELECT COUNT(*) FROM sqlite_master")
        if application == 0 && version == 0 && tables == 0 {
            try db.execute("PRAGMA journal_mode=WAL")
            try db.execute("PRAGMA foreign_keys=ON")
            try db.transaction {
                try db.execute(Self.schema)
                try db.execute("PRAGMA application_id=\(Self.applicationID); PRAGMA user_version=\(Self.schemaVersion)")
            }
            return
        }
        guard application == Self.applicationID else {
            throw FormatError(file: path, "is an SQLite database but not an EmbedTune dataset store (application_id \(application), user_version \(version))")
        }
        guard version == Self.schemaVersion else {
            throw FormatError(file: path, "store schema version \(version) is not supported (this embedtune reads version \(Self.schemaVersion))")
        }
        try db.execute("PRAGMA foreign_keys=ON")
    }

    static let schema = """
        CREATE TABLE datasets(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, source TEXT, created TEXT);
        CREATE TABLE documents(
            dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            doc_id TEXT NOT NULL, text TEXT NOT NULL,
            PRIMARY KEY(dataset_id, doc_id));
        CREATE TABLE queries(
            dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            query_id TEXT NOT NULL, text TEXT NOT NULL, split TEXT,
            PRIMARY KEY(dataset_id, query_id));
        CREATE INDEX queries_split ON queries(dataset_id, split);
        CREATE TABLE qrels(
            dataset_id INTEGER NOT NULL, query_id TEXT NOT NULL, doc_id TEXT NOT NULL, score REAL NOT NULL,
            PRIMARY KEY(dataset_id, query_id, doc_id),
            FOREIGN KEY(dataset_id, query_id) REFERENCES queries(dataset_id, query_id) ON DELETE CASCADE,
            FOREIGN KEY(dataset_id, doc_id) REFERENCES documents(dataset_id, doc_id) ON DELETE CASCADE);
        CREATE INDEX qrels_doc ON qrels(dataset_id, doc_id);
        CREATE TABLE negatives(
            dataset_id INTEGER NOT NULL, query_id TEXT NOT NULL, doc_id TEXT NOT NULL,
            PRIMARY KEY(dataset_id, query_id, doc_id),
            FOREIGN KEY(dataset_id, query_id) REFERENCES queries(dataset_id, query_id) ON DELETE CASCADE,
            FOREIGN KEY(dataset_id, doc_id) REFERENCES documents(dataset_id, doc_id) ON DELETE CASCADE);
        CREATE INDEX negatives_doc ON negatives(dataset_id, doc_id);
        CREATE TABLE triplets(
            dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            split TEXT NOT NULL, row INTEGER NOT NULL, query TEXT NOT NULL, positive TEXT NOT NULL,
            negatives TEXT NOT NULL, source TEXT, instruction TEXT,
            PRIMARY KEY(dataset_id, split, row));
        CREATE TABLE runs(
            id INTEGER PRIMARY KEY, dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            kind TEXT NOT NULL, split TEXT, model TEXT NOT NULL, adapter TEXT, created TEXT NOT NULL, metrics TEXT NOT NULL);
        """

    static func now() -> String { ISO8601DateFormatter().string(from: Date()) }

    // MARK: Datasets

    /// The dataset's row id; an unknown name is an error listing the known ones.
    func datasetID(_ name: String) throws -> Int64 {
        let s = try db.prepare("SELECT id FROM datasets WHERE name = ?")
        try s.bind([.text(name)])
        if try s.step() { return s.int(0) }
        let known = try datasetNames()
        throw FormatError(file: path, "unknown dataset \"\(name)\" ("
            + (known.isEmpty ? "the store has no datasets; use `embedtune data import`" : "known: \(known.joined(separator: ", "))") + ")")
    }

    public func datasetNames() throws -> [String] {
        var names = [String]()
        try db.prepare("SELECT name FROM datasets ORDER BY name").forEach { names.append($0.string(0)) }
        return names
    }

    /// The named splits present among the dataset's queries, sorted.
    public func splits(dataset: String) throws -> [String] {
        try splitNames(try datasetID(dataset))
    }

    func splitNames(_ id: Int64) throws -> [String] {
        var names = [String]()
        try db.prepare("SELECT DISTINCT split FROM queries WHERE dataset_id = ? AND split IS NOT NULL ORDER BY split")
            .forEach(.int(id)) { names.append($0.string(0)) }
        return names
    }

    /// A named split must exist (nil means every query).
    func checkSplit(_ id: Int64, _ dataset: String, _ split: String?) throws {
        guard let split else { return }
        let named = try splitNames(id)
        guard named.contains(split) else {
            throw FormatError(file: path, "dataset \"\(dataset)\" has no split \"\(split)\" ("
                + (named.isEmpty ? "it is unsplit; use `embedtune data split`" : "splits: \(named.joined(separator: ", "))") + ")")
        }
    }

    /// Every dataset with its counts.
    public func datasets() throws -> [DatasetSummary] {
        var out = [DatasetSummary]()
        let count = { (table: String, id: Int64) throws -> Int in
            Int(try self.db.scalar("SELECT COUNT(*) FROM \(table) WHERE dataset_id = ?", .int(id)))
        }
        let rows = try db.prepare("SELECT id, name, source, created FROM datasets ORDER BY name")
        var list = [(Int64, String, String?, String?)]()
        try rows.forEach { list.append(($0.int(0), $0.string(1), $0.text(2), $0.text(3))) }
        for (id, name, source, created) in list {
            var splits = [String: Int]()
            try db.prepare("SELECT split, COUNT(*) FROM queries WHERE dataset_id = ? GROUP BY split")
                .forEach(.int(id)) { splits[$0.text(0) ?? ""] = Int($0.int(1)) }
            out.append(DatasetSummary(
                name: name, source: source, created: created, queries: try count("queries", id), documents: try count("documents", id),
                qrels: try count("qrels", id), negatives: try count("negatives", id), triplets: try count("triplets", id), splits: splits))
        }
        return out
    }

    // MARK: Reading

    /// The queries of `split` (nil: all) that have at least one relevant (score > 0) document,
    /// the whole corpus, and each query's relevant documents — what evaluation needs.
    public func retrievalSet(dataset: String, split: String?) throws -> RetrievalSet {
        let id = try datasetID(dataset)
        try checkSplit(id, dataset, split)
        var set = RetrievalSet()
        var docIndex = [String: Int]()
        try db.prepare("SELECT doc_id, text FROM documents WHERE dataset_id = ? ORDER BY rowid").forEach(.int(id)) {
            docIndex[$0.string(0)] = set.corpus.count
            set.corpusIDs.append($0.string(0))
            set.corpus.append($0.string(1))
        }
        var queryIndex = [String: Int]()
        try db.prepare("""
            SELECT query_id, text FROM queries q WHERE dataset_id = ?1 AND (?2 IS NULL OR split = ?2)
              AND EXISTS (SELECT 1 FROM qrels r WHERE r.dataset_id = q.dataset_id AND r.query_id = q.query_id AND r.score > 0)
            ORDER BY rowid
            """).forEach(.int(id), .optional(split)) {
            queryIndex[$0.string(0)] = set.queries.count
            set.queryIDs.append($0.string(0))
            set.queries.append($0.string(1))
        }
        set.relevant = Array(repeating: [], count: set.queries.count)
        try db.prepare("SELECT query_id, doc_id FROM qrels WHERE dataset_id = ? AND score > 0").forEach(.int(id)) {
            if let q = queryIndex[$0.string(0)], let d = docIndex[$0.string(1)] { set.relevant[q].insert(d) }
        }
        if set.queries.isEmpty {
            throw FormatError(file: path, "dataset \"\(dataset)\" has no queries with relevant documents"
                + (split.map { " in split \"\($0)\"" } ?? ""))
        }
        return set
    }

    /// One (query, positive) per relevant (score > 0) qrel of `split` (nil: all), in query
    /// insertion order, then document order.
    public func pairs(dataset: String, split: String?) throws -> [(queryID: String, query: String, docID: String, positive: String)] {
        let id = try datasetID(dataset)
        try checkSplit(id, dataset, split)
        var out = [(queryID: String, query: String, docID: String, positive: String)]()
        try db.prepare("""
            SELECT q.query_id, q.text, d.doc_id, d.text FROM qrels r
              JOIN queries q ON q.dataset_id = r.dataset_id AND q.query_id = r.query_id
              JOIN documents d ON d.dataset_id = r.dataset_id AND d.doc_id = r.doc_id
            WHERE r.dataset_id = ?1 AND r.score > 0 AND (?2 IS NULL OR q.split = ?2)
            ORDER BY q.rowid, d.rowid
            """).forEach(.int(id), .optional(split)) {
            out.append(($0.string(0), $0.string(1), $0.string(2), $0.string(3)))
        }
        return out
    }

    /// Every query of `split` (nil: all) in insertion order, with its split (nil: unsplit).
    public func queries(dataset: String, split: String?) throws -> [(id: String, text: String, split: String?)] {
        let id = try datasetID(dataset)
        try checkSplit(id, dataset, split)
        var out = [(id: String, text: String, split: String?)]()
        try db.prepare("SELECT query_id, text, split FROM queries WHERE dataset_id = ?1 AND (?2 IS NULL OR split = ?2) ORDER BY rowid")
            .forEach(.int(id), .optional(split)) { out.append(($0.string(0), $0.string(1), $0.text(2))) }
        return out
    }

    /// The whole corpus in insertion order.
    public func corpus(dataset: String) throws -> [(id: String, text: String)] {
        let id = try datasetID(dataset)
        var out = [(id: String, text: String)]()
        try db.prepare("SELECT doc_id, text FROM documents WHERE dataset_id = ? ORDER BY rowid")
            .forEach(.int(id)) { out.append(($0.string(0), $0.string(1))) }
        return out
    }

    /// The qrels of `split`'s queries (nil: all), every score, in query then document order.
    public func qrels(dataset: String, split: String?) throws -> [(queryID: String, docID: String, score: Double, split: String?)] {
        let id = try datasetID(dataset)
        try checkSplit(id, dataset, split)
        var out = [(queryID: String, docID: String, score: Double, split: String?)]()
        try db.prepare("""
            SELECT r.query_id, r.doc_id, r.score, q.split FROM qrels r
              JOIN queries q ON q.dataset_id = r.dataset_id AND q.query_id = r.query_id
              JOIN documents d ON d.dataset_id = r.dataset_id AND d.doc_id = r.doc_id
            WHERE r.dataset_id = ?1 AND (?2 IS NULL OR q.split = ?2)
            ORDER BY q.rowid, d.rowid
            """).forEach(.int(id), .optional(split)) { out.append(($0.string(0), $0.string(1), $0.double(2), $0.text(3))) }
        return out
    }

    /// The hard negatives the source gave, query id → texts, in import order.
    public func sourceNegatives(dataset: String) throws -> [String: [String]] {
        let id = try datasetID(dataset)
        var out = [String: [String]]()
        try db.prepare("""
            SELECT n.query_id, d.text FROM negatives n
              JOIN documents d ON d.dataset_id = n.dataset_id AND d.doc_id = n.doc_id
            WHERE n.dataset_id = ? ORDER BY n.rowid
            """).forEach(.int(id)) { out[$0.string(0), default: []].append($0.string(1)) }
        return out
    }

    // MARK: Splitting

    /// Splits the queries that have qrels into "train" and "test" by query: ordered by a
    /// SplitMix64 hash of (seed, FNV-1a of the text), the first round(testSize·n) — at least one,
    /// at most n − 1 — are "test". A testSize ≥ 1 is a count. The order depends only on the seed
    /// and the texts, never on insertion order. Queries without qrels become unsplit; the corpus
    /// is shared.
    public func split(dataset: String, testSize: Double, seed: UInt64) throws -> (train: Int, test: Int) {
        let id = try datasetID(dataset)
        var candidates = [(key: UInt64, text: String, id: String)]()
        try db.prepare("""
            SELECT query_id, text FROM queries q WHERE dataset_id = ?
              AND EXISTS (SELECT 1 FROM qrels r WHERE r.dataset_id = q.dataset_id AND r.query_id = q.query_id)
            """).forEach(.int(id)) {
            let text = $0.string(1)
            // Salted: the trainer's own dev hold-out hashes (seed, text) too, and an unsalted key here
            // would leave the training split with no small hashes, i.e. an empty dev share.
            var g = SplitMix64(seed: mix64(seed ^ 0x6461_7461_7370_6C74) ^ fnv1a(text))
            candidates.append((g.next(), text, $0.string(0)))
        }
        let n = candidates.count
        guard n >= 2 else { throw FormatError(file: path, "dataset \"\(dataset)\" has \(n) queries with qrels; a split needs at least 2") }
        let test: Int
        guard testSize.isFinite, testSize > 0 else { throw FormatError(file: path, item: "test_size", "\(testSize) is outside (0, 1)") }
        if testSize < 1 {
            test = min(n - 1, max(1, Int((testSize * Double(n)).rounded())))
        } else {
            guard testSize == testSize.rounded() else {
                throw FormatError(file: path, item: "test_size", "\(testSize) is outside (0, 1) and not a whole count")
            }
            guard testSize < Double(n) else {
                throw FormatError(file: path, item: "test_size", "a count of \(Int(testSize)) test queries leaves no training queries (the dataset has \(n) with qrels)")
            }
            test = Int(testSize)
        }
        candidates.sort { ($0.key, $0.text) < ($1.key, $1.text) }
        try db.transaction {
            try db.prepare("UPDATE queries SET split = NULL WHERE dataset_id = ?").run(.int(id))
            let update = try db.prepare("UPDATE queries SET split = ? WHERE dataset_id = ? AND query_id = ?")
            for (k, c) in candidates.enumerated() { try update.run(.text(k < test ? "test" : "train"), .int(id), .text(c.id)) }
        }
        return (n - test, test)
    }

    // MARK: Triplets and runs

    /// Replaces the stored triplets of `split` with `rows` (row order kept), in one transaction.
    public func saveTriplets(dataset: String, split: String, source: String, _ rows: [Triplet]) throws {
        let id = try datasetID(dataset)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        try db.transaction {
            try db.prepare("DELETE FROM triplets WHERE dataset_id = ? AND split = ?").run(.int(id), .text(split))
            let insert = try db.prepare("""
                INSERT INTO triplets(dataset_id, split, row, query, positive, negatives, source, instruction) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for (k, t) in rows.enumerated() {
                let negatives = String(decoding: try encoder.encode(t.negatives), as: UTF8.self)
                try insert.run(.int(id), .text(split), .int(k), .text(t.query), .text(t.positive), .text(negatives), .text(source),
                               .optional(t.instruction))
            }
        }
    }

    /// What a training run on `split` reads: its mined triplets, or, when none are mined, its
    /// (question, answer) pairs without negatives.
    public func trainingRows(dataset: String, split: String) throws -> [Triplet] {
        let mined = try triplets(dataset: dataset, split: split)
        if !mined.isEmpty { return mined }
        let pairs = try pairs(dataset: dataset, split: split)
        guard !pairs.isEmpty else {
            throw FormatError(file: path, "dataset \"\(dataset)\" has no \(split) pairs (run `embedtune data split` first?)")
        }
        return pairs.map { Triplet(query: $0.query, positive: $0.positive, negatives: [], origin: "\(path):\(dataset):\($0.queryID)") }
    }

    /// The stored triplets of `split`, in row order; origins read "store:dataset/split:row".
    public func triplets(dataset: String, split: String) throws -> [Triplet] {
        let id = try datasetID(dataset)
        var out = [Triplet]()
        var problem: FormatError?
        try db.prepare("SELECT row, query, positive, negatives, instruction FROM triplets WHERE dataset_id = ? AND split = ? ORDER BY row")
            .forEach(.int(id), .text(split)) { s in
                let origin = "\(path):\(dataset)/\(split):\(s.int(0) + 1)"
                let list = (try? JSONValue.parse(Data(s.string(3).utf8), file: origin))?.array
                let negatives = list?.compactMap(\.string) ?? []
                guard let list, negatives.count == list.count else {
                    if problem == nil { problem = FormatError(file: origin, item: "negatives", "is not a JSON array of strings") }
                    return
                }
                out.append(Triplet(query: s.string(1), positive: s.string(2), negatives: negatives, instruction: s.text(4), origin: origin))
            }
        if let problem { throw problem }
        return out
    }

    /// The splits that have stored triplets, with their row counts.
    public func tripletSplits(dataset: String) throws -> [String: Int] {
        let id = try datasetID(dataset)
        var out = [String: Int]()
        try db.prepare("SELECT split, COUNT(*) FROM triplets WHERE dataset_id = ? GROUP BY split").forEach(.int(id)) {
            out[$0.string(0)] = Int($0.int(1))
        }
        return out
    }

    static func metricsCoders() -> (JSONEncoder, JSONDecoder) {
        let e = JSONEncoder(), d = JSONDecoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return (e, d)
    }

    /// Logs a training or evaluation run with its metrics (a JSON object in the store).
    public func recordRun(dataset: String, kind: String, split: String?, model: String, adapter: String?, metrics: [String: Double]) throws {
        let id = try datasetID(dataset)
        let json = String(decoding: try Self.metricsCoders().0.encode(metrics), as: UTF8.self)
        try db.prepare("INSERT INTO runs(dataset_id, kind, split, model, adapter, created, metrics) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .run(.int(id), .text(kind), .optional(split), .text(model), .optional(adapter), .text(Self.now()), .text(json))
    }

    /// The recorded runs, oldest first, of one dataset or (nil) all.
    public func runs(dataset: String?) throws -> [RunRecord] {
        let id = try dataset.map { try datasetID($0) }
        let decoder = Self.metricsCoders().1
        var out = [RunRecord]()
        try db.prepare("""
            SELECT r.id, d.name, r.kind, r.split, r.model, r.adapter, r.created, r.metrics FROM runs r
              JOIN datasets d ON d.id = r.dataset_id
            WHERE ?1 IS NULL OR r.dataset_id = ?1 ORDER BY r.id
            """).forEach(id.map { SQLValue.int($0) } ?? .null) { s in
            let metrics = (try? decoder.decode([String: Double].self, from: Data(s.string(7).utf8))) ?? [:]
            out.append(RunRecord(id: s.int(0), dataset: s.string(1), kind: s.string(2), split: s.text(3), model: s.string(4),
                                 adapter: s.text(5), created: s.string(6), metrics: metrics))
        }
        return out
    }

    // MARK: Statistics

    /// Counts and length percentiles per split (the named ones, "unsplit" when some queries
    /// have no split, and "all"). Lengths are `tokenizer(text)` when given, else characters.
    public func stats(dataset: String, tokenizer: ((String) -> Int)?) throws -> DatasetStats {
        let id = try datasetID(dataset)
        let measure = tokenizer ?? { $0.count }
        var source: String?
        try db.prepare("SELECT source FROM datasets WHERE id = ?").forEach(.int(id)) { source = $0.text(0) }

        var docLength = [String: Int]()
        try db.prepare("SELECT doc_id, text FROM documents WHERE dataset_id = ? ORDER BY rowid").forEach(.int(id)) {
            docLength[$0.string(0)] = measure($0.string(1))
        }
        var queries = [(id: String, split: String?, length: Int)]()
        try db.prepare("SELECT query_id, split, text FROM queries WHERE dataset_id = ? ORDER BY rowid").forEach(.int(id)) {
            queries.append(($0.string(0), $0.text(1), measure($0.string(2))))
        }
        var qrels = [String: [(doc: String, score: Double)]]()
        try db.prepare("SELECT query_id, doc_id, score FROM qrels WHERE dataset_id = ?").forEach(.int(id)) {
            qrels[$0.string(0), default: []].append(($0.string(1), $0.double(2)))
        }
        var negatives = [String: Int]()
        try db.prepare("SELECT query_id, COUNT(*) FROM negatives WHERE dataset_id = ? GROUP BY query_id").forEach(.int(id)) {
            negatives[$0.string(0)] = Int($0.int(1))
        }
        let triplets = try tripletSplits(dataset: dataset)

        func summary(_ name: String, _ members: [(id: String, split: String?, length: Int)]) -> DatasetStats.Split {
            var s = DatasetStats.Split(name: name)
            s.queries = members.count
            var docs = Set<String>(), relevantCounts = [Int]()
            for q in members {
                let judged = qrels[q.id] ?? []
                s.qrels += judged.count
                for j in judged { docs.insert(j.doc) }
                let relevant = judged.filter { $0.score > 0 }.count
                if relevant > 0 { relevantCounts.append(relevant) }
                s.sourceNegatives += negatives[q.id] ?? 0
            }
            s.documents = docs.count
            s.queriesWithRelevant = relevantCounts.count
            s.relevantPerQueryMax = relevantCounts.max() ?? 0
            s.relevantPerQueryMean = relevantCounts.isEmpty ? 0 : Double(relevantCounts.reduce(0, +)) / Double(relevantCounts.count)
            s.triplets = name == "all" ? triplets.values.reduce(0, +) : triplets[name] ?? 0
            s.queryLengths = LengthPercentiles(members.map(\.length))
            s.documentLengths = LengthPercentiles(docs.compactMap { docLength[$0] })
            return s
        }
        var splits = [DatasetStats.Split]()
        let named = Set(queries.compactMap(\.split))
        let order = ["train", "dev", "validation", "test"]
        for name in named.sorted(by: { (order.firstIndex(of: $0) ?? 99, $0) < (order.firstIndex(of: $1) ?? 99, $1) }) {
            splits.append(summary(name, queries.filter { $0.split == name }))
        }
        let unsplit = queries.filter { $0.split == nil }
        if !unsplit.isEmpty && !named.isEmpty { splits.append(summary("unsplit", unsplit)) }
        splits.append(summary("all", queries))
        return DatasetStats(dataset: dataset, source: source, unit: tokenizer == nil ? "characters" : "tokens",
                            corpusSize: docLength.count, corpusLengths: LengthPercentiles(Array(docLength.values)), splits: splits)
    }
}
