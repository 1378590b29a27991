import EmbedTuneFormats
import Foundation

extension DatasetStore {
    /// Imports one dataset in a single transaction (BEGIN IMMEDIATE … COMMIT): any error rolls
    /// everything back, so a failed import — or a failed `replace` — leaves the store exactly as
    /// before. An existing name is an error unless `replace`, which keeps the dataset's run log
    /// and drops its queries, corpus, qrels, negatives and triplets before re-inserting.
    public func importDataset(name: String, format: ImportFormat, inputs: ImportInputs, replace: Bool) throws -> ImportReport {
        guard !name.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw FormatError(file: path, item: "dataset", "the dataset name is empty")
        }
        let source = "\(format.rawValue):" + ([inputs.input, inputs.corpus, inputs.queries, inputs.qrels].compactMap { $0 }.joined(separator: ","))
        return try db.transaction {
            var existing: Int64?
            try db.prepare("SELECT id FROM datasets WHERE name = ?").forEach(.text(name)) { existing = $0.int(0) }
            let id: Int64
            if let existing {
                guard replace else {
                    throw FormatError(file: path, "dataset \"\(name)\" already exists (use --replace to replace it)")
                }
                for table in ["triplets", "negatives", "qrels", "queries", "documents"] {
                    try db.prepare("DELETE FROM \(table) WHERE dataset_id = ?").run(.int(existing))
                }
                try db.prepare("UPDATE datasets SET source = ?, created = ? WHERE id = ?").run(.text(source), .text(Self.now()), .int(existing))
                id = existing
            } else {
                try db.prepare("INSERT INTO datasets(name, source, created) VALUES (?, ?, ?)").run(.text(name), .text(source), .text(Self.now()))
                id = db.lastInsertRowID
            }
            let importer = try Importer(db: db, datasetID: id)
            importer.report.dataset = name
            importer.report.replaced = existing != nil
            switch format {
            case .beir: try importer.importBEIR(inputs)
            case .pairs, .msSwift, .sentenceTransformers:
                guard let input = inputs.input else { throw FormatError(file: path, "the \(format.rawValue) format needs an input file") }
                try importer.importRows(input, format: format, inputs: inputs)
            }
            return importer.report
        }
    }
}

/// One import's inserts: texts deduplicated through in-memory maps, prepared statements reused.
final class Importer {
    struct Pair: Hashable { let query: String, doc: String }

    let db: SQLiteDatabase
    let datasetID: Int64
    var report = ImportReport()
    var documentByText = [String: String](), queryByText = [String: String]()
    var documentIDs = Set<String>(), queryIDs = Set<String>()
    var judged = Set<Pair>(), negativePairs = Set<Pair>()
    var nextQuery = 1, nextDocument = 1
    let insertDocument, insertQuery, insertQrel, insertNegative: Statement

    init(db: SQLiteDatabase, datasetID: Int64) throws {
        self.db = db
        self.datasetID = datasetID
        insertDocument = try db.prepare("INSERT INTO documents(dataset_id, doc_id, text) VALUES (?, ?, ?)")
        insertQuery = try db.prepare("INSERT INTO queries(dataset_id, query_id, text, split) VALUES (?, ?, ?, ?)")
        insertQrel = try db.prepare("""
            INSERT INTO qrels(dataset_id, query_id, doc_id, score) VALUES (?, ?, ?, ?)
            ON CONFLICT(dataset_id, query_id, doc_id) DO UPDATE SET score = max(score, excluded.score)
            """)
        insertNegative = try db.prepare("INSERT OR IGNORE INTO negatives(dataset_id, query_id, doc_id) VALUES (?, ?, ?)")
    }

    /// The id of the document with this (trimmed) text, inserting it when new.
    func document(_ text: String, id given: String? = nil) throws -> (id: String, merged: Bool) {
        if let id = documentByText[text] { return (id, true) }
        var id = given ?? "d\(nextDocument)"
        if given == nil { while documentIDs.contains(id) { nextDocument += 1; id = "d\(nextDocument)" }; nextDocument += 1 }
        try insertDocument.run(.int(datasetID), .text(id), .text(text))
        documentByText[text] = id
        documentIDs.insert(id)
        report.documents += 1
        return (id, false)
    }

    func insertQuery(_ text: String, id: String, split: String?) throws {
        try insertQuery.run(.int(datasetID), .text(id), .text(text), .optional(split))
        queryByText[text] = id
        queryIDs.insert(id)
        report.queries += 1
        report.splits[split ?? "", default: 0] += 1
    }

    /// A judgement; a repeated pair keeps the higher score and counts as skipped.
    func qrel(_ query: String, _ doc: String, score: Double) throws {
        try insertQrel.run(.int(datasetID), .text(query), .text(doc), .double(score))
        if judged.insert(Pair(query: query, doc: doc)).inserted { report.qrels += 1 } else { report.skipped += 1 }
    }

    func negative(_ query: String, _ doc: String) throws {
        guard negativePairs.insert(Pair(query: query, doc: doc)).inserted else { return }
        try insertNegative.run(.int(datasetID), .text(query), .text(doc))
        report.negatives += 1
    }

    // MARK: Row formats (pairs, ms-swift, sentence-transformers)

    /// Adds a row: a repeated question is one query (a different answer adds a relevant
    /// document); a row whose every (question, answer) pair is already present is skipped,
    /// keeping only new negatives.
    func add(_ row: QueryRow, idField: String?) throws {
        report.rowsRead += 1
        try row.checkNegatives()
        let existing = queryByText[row.query]
        if existing == nil, let given = row.queryID, queryIDs.contains(given) {
            throw FormatError(file: row.origin, item: idField, "id \"\(given)\" already names a different question")
        }
        if let q = existing, row.positives.allSatisfy({ documentByText[$0].map { judged.contains(Pair(query: q, doc: $0)) } ?? false }) {
            report.skipped += 1
            for n in row.negatives { try negative(q, try document(n).id) }
            return
        }
        let q: String
        if let existing {
            q = existing
            report.duplicatesMerged += 1
        } else {
            var id = row.queryID ?? "q\(nextQuery)"
            if row.queryID == nil { while queryIDs.contains(id) { nextQuery += 1; id = "q\(nextQuery)" }; nextQuery += 1 }
            try insertQuery(row.query, id: id, split: nil)
            q = id
        }
        for p in row.positives {
            let d = try document(p)
            if d.merged { report.duplicatesMerged += 1 }
            try qrel(q, d.id, score: 1)
        }
        for n in row.negatives {
            let d = try document(n)
            if d.merged { report.duplicatesMerged += 1 }
            try negative(q, d.id)
        }
    }

    /// The rows of a JSONL / CSV / TSV file and its columns in file order (the CSV header, or
    /// the keys of the first JSON line: a parsed object forgets its key order).
    static func table(_ path: String) throws -> (rows: [TableRows.Row], columns: [String]) {
        let text = try TextFile.read(path)
        let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
        let rows = try TableRows.read(text, path: path, format: ext)
        var columns = [String]()
        if ext == "csv" || ext == "tsv" {
            let header = text.prefix { $0 != "\n" && $0 != "\r\n" }
            columns = (try DelimitedText.parse(String(header), separator: ext == "tsv" ? "\t" : ",", file: path)).first ?? []
        } else {
            // Only the first non-blank line: splitting the whole file here cost as much as parsing it.
            var rest = text.utf8[...]
            while !rest.isEmpty {
                let end = rest.firstIndex(of: 0x0A) ?? rest.endIndex
                let line = Substring(rest[..<end])
                if !line.allSatisfy(\.isWhitespace) { columns = orderedKeys(line); break }
                rest = end < rest.endIndex ? rest[rest.index(after: end)...] : rest[rest.endIndex...]
            }
        }
        if rows.isEmpty { throw FormatError(file: path, "no rows") }
        return (rows, columns)
    }

    /// Parses a row's fields, naming JSONL's likely mistake (a CSV/TSV file named .jsonl).
    static func fields(_ row: TableRows.Row) throws -> [String: JSONValue] {
        do { return try row.fields() } catch let p as FormatError where p.problem == "malformed JSON" {
            throw FormatError(file: p.file, "malformed JSON (expected one JSON object per line; CSV/TSV files need a .csv/.tsv name)")
        }
    }

    /// The top-level keys of one JSON object line, in order.
    static func orderedKeys(_ line: Substring) -> [String] {
        var keys = [String](), depth = 0, inString = false, escaped = false
        var raw = [UInt8](), last: [UInt8]?
        for b in line.utf8 {
            if inString {
                if escaped { escaped = false; raw.append(b) }
                else if b == UInt8(ascii: "\\") { escaped = true; raw.append(b) }
                else if b == UInt8(ascii: "\"") { inString = false; last = raw }
                else { raw.append(b) }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true; raw = []
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1; last = nil
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1; last = nil
            case UInt8(ascii: ":"):
                if depth == 1, let k = last {
                    let quoted = Data([UInt8(ascii: "\"")] + k + [UInt8(ascii: "\"")])
                    keys.append((try? JSONValue.parse(quoted, file: ""))?.string ?? String(decoding: k, as: UTF8.self))
                }
                last = nil
            case 0x20, 0x09, 0x0D, 0x0A: continue
            default: last = nil
            }
        }
        return keys
    }

    func importRows(_ path: String, format: ImportFormat, inputs: ImportInputs) throws {
        let (rows, columns) = try Self.table(path)
        switch format {
        case .pairs:
            let first = try Self.fields(rows[0])
            let q = try PairFields.pick(inputs.queryField, PairFields.questionNames, what: "question", flag: "--query_field",
                                        first: first, columns: columns, origin: rows[0].origin)
            let a = try PairFields.pick(inputs.answerField, PairFields.answerNames, what: "answer", flag: "--answer_field",
                                        first: first, columns: columns, origin: rows[0].origin)
            for row in rows {
                let o = try Self.fields(row)
                var id: String?
                if let field = inputs.idField {
                    guard let v = o[field], !v.isNull else { throw FormatError(file: row.origin, item: field, "missing field") }
                    guard let s = v.string.map(RowFields.trimmed) ?? v.int.map(String.init), !s.isEmpty else {
                        throw FormatError(file: row.origin, item: field, "is not a non-empty string or integer")
                    }
                    id = s
                }
                try add(QueryRow(origin: row.origin, query: try RowFields.text(o, q, row.origin), positives: [try RowFields.text(o, a, row.origin)],
                            negatives: [], queryID: id), idField: inputs.idField)
            }
        case .msSwift:
            for row in rows { try add(try RowFields.queryRow(try Self.fields(row), origin: row.origin), idField: nil) }
        case .sentenceTransformers:
            let first = try Self.fields(rows[0])
            let cols = columns.isEmpty ? first.keys.sorted() : columns
            if let labeled = cols.first(where: { ["label", "score"].contains($0) }) {
                throw FormatError(file: rows[0].origin, item: labeled, "labeled pairs are not supported (expected anchor, positive, negative… columns)")
            }
            let queryColumn: String, positiveColumn: String, negativeColumns: [String]
            if let named = ["anchor", "query"].first(where: cols.contains), cols.contains("positive") {
                queryColumn = named
                positiveColumn = "positive"
                negativeColumns = cols.filter { $0.hasPrefix("negative") }
            } else {
                guard cols.count >= 2 else {
                    throw FormatError(file: rows[0].origin, "expected at least two columns (query, positive), found \(cols.count)")
                }
                queryColumn = cols[0]
                positiveColumn = cols[1]
                negativeColumns = Array(cols.dropFirst(2))
            }
            for row in rows {
                let o = try Self.fields(row)
                let negatives = try negativeColumns.compactMap { try RowFields.optionalText(o, $0, row.origin) }
                try add(QueryRow(origin: row.origin, query: try RowFields.text(o, queryColumn, row.origin),
                            positives: [try RowFields.text(o, positiveColumn, row.origin)], negatives: negatives), idField: nil)
            }
        case .beir:
            break
        }
        if report.queries == 0 { throw FormatError(file: path, "no queries") }
    }

    // MARK: BEIR

    /// Named qrels files set their queries' split; a query judged in several takes the most
    /// held-out one (test, then dev/validation, then train). Other names leave queries unsplit.
    static let splitRank = ["train": 1, "dev": 2, "validation": 2, "test": 3]

    func importBEIR(_ inputs: ImportInputs) throws {
        let dir = inputs.input.map { URL(fileURLWithPath: $0) }
        guard let corpusPath = inputs.corpus ?? dir?.appendingPathComponent("corpus.jsonl").path,
              let queriesPath = inputs.queries ?? dir?.appendingPathComponent("queries.jsonl").path,
              let qrelsPath = inputs.qrels ?? dir?.appendingPathComponent("qrels").path else {
            throw FormatError(file: "beir", "needs an input directory, or corpus, queries and qrels paths")
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: qrelsPath, isDirectory: &isDir) else {
            throw FormatError(file: qrelsPath, "missing (expected a qrels .tsv file or a qrels/ directory of them)")
        }
        var qrelsFiles = [qrelsPath]
        if isDir.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: qrelsPath)) ?? []
            qrelsFiles = names.filter { $0.lowercased().hasSuffix(".tsv") }.sorted().map { qrelsPath + "/" + $0 }
            if qrelsFiles.isEmpty { throw FormatError(file: qrelsPath, "no .tsv qrels files in the directory") }
        }

        // Corpus: ids kept; a text seen before makes its id an alias of the first.
        var documentAlias = [String: String](), emptyDocuments = Set<String>()
        try forEachRecord(corpusPath, isKnown: { documentAlias[$0] != nil }, empty: &emptyDocuments) { r, text in
            let d = try document(text, id: r.id)
            if d.merged { report.duplicatesMerged += 1 }
            documentAlias[r.id] = d.id
        }
        if report.documents == 0 { throw FormatError(file: corpusPath, "the corpus is empty") }

        var queryAlias = [String: String](), emptyQueries = Set<String>()
        var newQueries = [(id: String, text: String)](), textToQuery = [String: String]()
        try forEachRecord(queriesPath, isKnown: { queryAlias[$0] != nil }, empty: &emptyQueries) { r, text in
            if let first = textToQuery[text] { queryAlias[r.id] = first; report.duplicatesMerged += 1; return }
            textToQuery[text] = r.id
            queryAlias[r.id] = r.id
            newQueries.append((r.id, text))
        }
        if newQueries.isEmpty { throw FormatError(file: queriesPath, "no queries") }

        var judgements = [(query: String, doc: String, score: Double)](), split = [String: String]()
        for file in qrelsFiles {
            let stem = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent.lowercased()
            let rank = Self.splitRank[stem]
            for j in try BEIRFiles.qrels(file) {
                report.rowsRead += 1
                if emptyQueries.contains(j.queryID) || emptyDocuments.contains(j.documentID) { report.skipped += 1; continue }
                guard let q = queryAlias[j.queryID] else {
                    throw FormatError(file: j.origin, item: "query-id", "unknown query id \"\(j.queryID)\" (not in \(queriesPath))")
                }
                guard let d = documentAlias[j.documentID] else {
                    throw FormatError(file: j.origin, item: "corpus-id", "unknown corpus id \"\(j.documentID)\" (not in \(corpusPath))")
                }
                judgements.append((q, d, j.score))
                if let rank, rank > (split[q].flatMap { Self.splitRank[$0] } ?? 0) { split[q] = stem }
            }
        }
        for q in newQueries { try insertQuery(q.text, id: q.id, split: split[q.id]) }
        for j in judgements { try qrel(j.query, j.doc, score: j.score) }
        if report.qrels == 0 { throw FormatError(file: qrelsFiles[0], "no qrels") }
    }

    /// The records of a BEIR corpus or queries file, in order: each counts as a row read; an id
    /// already `isKnown` or in `empty` is an error; an empty (trimmed) text is skipped and
    /// counted, its id added to `empty` so that qrels naming it are skipped too. `body` gets every
    /// other record with its trimmed text.
    private func forEachRecord(_ path: String, isKnown: (String) -> Bool, empty: inout Set<String>,
                               _ body: (BEIRFiles.Record, String) throws -> Void) throws {
        for r in try BEIRFiles.records(path) {
            let text = RowFields.trimmed(r.text)
            report.rowsRead += 1
            guard !isKnown(r.id), !empty.contains(r.id) else {
                throw FormatError(file: r.origin, item: "_id", "duplicate id \"\(r.id)\"")
            }
            if text.isEmpty { empty.insert(r.id); report.skipped += 1; continue }
            try body(r, text)
        }
    }
}
