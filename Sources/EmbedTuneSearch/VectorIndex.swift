import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneRetrieval
import Foundation

/// What an index directory records about how it was built, so a search embeds its queries the
/// same way and refuses a model that would not (index.json).
public struct IndexManifest: Codable, Equatable, Sendable {
    public var format = "embedtune-index"
    public var version = 1
    /// The model directory (or .gguf) and adapter the corpus was embedded with, and their
    /// fingerprints (`ModelFingerprint`), which a query model must match.
    public var model: String
    public var modelFingerprint: String
    public var adapter: String?
    public var adapterFingerprint: String?
    public var dimension: Int
    /// Rows are L2-normalised and scored by inner product (= cosine).
    public var normalized = true
    public var metric = "inner_product"
    /// The factory string as given, and as FAISS built it (binary precisions use the binary factory).
    public var indexFactory: String
    public var faissFactory: String
    /// float32, or binary / ubinary: the rows as packed sign bits, searched by Hamming distance.
    public var precision: String
    /// With a binary precision, "float": the float queries rescore the Hamming search's candidates
    /// against the rows in embeddings.npy.
    public var rescore: String?
    /// With a binary precision: the corpus mean the rows (normalised) had subtracted before their
    /// signs were taken; queries subtract it too. nil: the signs of the rows themselves.
    public var centre: [Float]?
    public var count: Int
    public var queryPrompt: String
    public var documentPrompt: String
    public var maxLength: Int?
    public var buildSeconds: Double
    /// A routed index (nil: one adapter or none): every document was embedded with the adapters a
    /// router picked for it, and queries are routed the same way.
    public var routing: IndexRouting?

    public init(model: String, modelFingerprint: String, adapter: String?, adapterFingerprint: String?, dimension: Int,
                indexFactory: String, faissFactory: String, precision: String, rescore: String?, centre: [Float]? = nil, count: Int,
                queryPrompt: String, documentPrompt: String, maxLength: Int?, buildSeconds: Double, routing: IndexRouting? = nil) {
        self.model = model
        self.modelFingerprint = modelFingerprint
        self.adapter = adapter
        self.adapterFingerprint = adapterFingerprint
        self.dimension = dimension
        self.indexFactory = indexFactory
        self.faissFactory = faissFactory
        self.precision = precision
        self.rescore = rescore
        self.centre = centre
        self.count = count
        self.queryPrompt = queryPrompt
        self.documentPrompt = documentPrompt
        self.maxLength = maxLength
        self.buildSeconds = buildSeconds
        self.routing = routing
    }
}

/// How a routed index's rows were embedded (`RoutedEmbedding`): the router file, the adapters in
/// its domain order, their fingerprints (`ModelFingerprint`), and the mixing rule.
public struct IndexRouting: Codable, Equatable, Sendable {
    public var router: String
    public var routerFingerprint: String
    public var adapters: [String]
    public var adapterFingerprints: [String]
    public var threshold: Float
    public var mix: Bool

    public init(router: String, routerFingerprint: String, adapters: [String], adapterFingerprints: [String], threshold: Float, mix: Bool) {
        self.router = router
        self.routerFingerprint = routerFingerprint
        self.adapters = adapters
        self.adapterFingerprints = adapterFingerprints
        self.threshold = threshold
        self.mix = mix
    }

    /// The routing of files at these paths (fingerprinted now).
    public static func of(router: URL, adapters: [URL], threshold: Float, mix: Bool) throws -> IndexRouting {
        IndexRouting(router: router.path, routerFingerprint: try ModelFingerprint.of(router), adapters: adapters.map(\.path),
                     adapterFingerprints: try adapters.map(ModelFingerprint.of), threshold: threshold, mix: mix)
    }

    /// Throws unless the router and adapters at `router` and `adapters` are the ones recorded, in order.
    public func check(router routerURL: URL, adapters adapterURLs: [URL], index: URL) throws {
        guard try ModelFingerprint.of(routerURL) == routerFingerprint else {
            throw FormatError(url: index, "was routed by \(router); \(routerURL.path) is a different router (fingerprints differ)")
        }
        guard adapterURLs.count == adapters.count else {
            throw FormatError(url: index, "was routed over \(adapters.count) adapters, not \(adapterURLs.count)")
        }
        for (i, url) in adapterURLs.enumerated() where try ModelFingerprint.of(url) != adapterFingerprints[i] {
            throw FormatError(url: index, "was routed with adapter \(adapters[i]) for the router's domain \(i); \(url.path) is a different adapter (fingerprints differ)")
        }
    }
}

/// An index directory:
///
///     IDX/index.json        IndexManifest
///     IDX/index.faiss       the FAISS index (ids = row numbers)
///     IDX/documents.jsonl   row → {"_id", "text"}, one line per row, in row order
///     IDX/embeddings.npy    float32 rows, for rescoring (binary precisions with rescore "float")
public final class VectorIndex: @unchecked Sendable {
    public struct Document: Equatable, Sendable {
        public var id: String
        public var text: String
        public init(id: String, text: String) { self.id = id; self.text = text }
    }

    public struct Hit: Equatable, Sendable {
        public var row: Int
        public var id: String
        public var text: String
        public var score: Float
    }

    public struct BuildOptions: Sendable {
        public var factory = "Flat"
        public var precision = EmbeddingPrecision.float32
        /// Rows an index that needs training (IVF, PQ) trains on: an even sample of this many
        /// (all when fewer), as FAISS's own examples sample.
        public var maxTrainingRows = 100_000
        /// Binary precisions: bits are signs of the rows minus the corpus mean (embeddings that
        /// share a large common direction, as E5's, keep far more of their order this way).
        public var centreBinary = true
        /// HNSW: the candidate list while the graph is built (nil: FAISS's 40). Larger builds a
        /// better connected graph, slower.
        public var efConstruction: Int?
        public init() {}
    }

    public let directory: URL
    public let manifest: IndexManifest
    public let faiss: FaissIndex
    public let documents: [Document]
    private let floatRows: NPY.MappedMatrix?

    /// Opens IDX (every file checked against index.json).
    public init(directory: URL) throws {
        self.directory = directory
        let manifestURL = directory.appendingPathComponent("index.json")
        guard FileManager.default.fileExists(atPath: manifestURL.path) else {
            throw FormatError(url: directory, "not an index directory (no index.json; build one with `embedtune index build`)")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do { manifest = try decoder.decode(IndexManifest.self, from: Data(contentsOf: manifestURL)) }
        catch let error as DecodingError { throw FormatError(url: manifestURL, "not an EmbedTune index manifest: \(Self.describe(error))") }
        guard manifest.format == "embedtune-index", manifest.version == 1 else {
            throw FormatError(url: manifestURL, "format \(manifest.format) version \(manifest.version) (this build reads embedtune-index 1)")
        }
        guard let precision = EmbeddingPrecision(rawValue: manifest.precision), [.float32, .binary, .ubinary].contains(precision) else {
            throw FormatError(url: manifestURL, item: "precision", "\"\(manifest.precision)\" is not float32, binary or ubinary")
        }
        faiss = try FaissIndex(reading: directory.appendingPathComponent("index.faiss"), binary: precision != .float32)
        let expectedDimension = precision == .float32 ? manifest.dimension : (manifest.dimension + 7) / 8 * 8
        guard faiss.dimension == expectedDimension, faiss.count == manifest.count else {
            throw FormatError(url: directory.appendingPathComponent("index.faiss"),
                              "holds \(faiss.count) vectors of \(faiss.dimension), index.json says \(manifest.count) of \(expectedDimension)")
        }
        let documentsPath = directory.appendingPathComponent("documents.jsonl").path
        documents = try TextFile.lines(TextFile.read(documentsPath)).filter { !$0.text.allSatisfy(\.isWhitespace) }.map { n, line in
            let v = try JSONValue.parse(Data(line.utf8), file: "\(documentsPath):\(n)")
            guard let id = v["_id"]?.string, let text = v["text"]?.string else {
                throw FormatError(file: "\(documentsPath):\(n)", "needs string fields _id and text")
            }
            return Document(id: id, text: text)
        }
        if let centre = manifest.centre, centre.count != manifest.dimension {
            throw FormatError(url: manifestURL, item: "centre", "\(centre.count) values, the dimension is \(manifest.dimension)")
        }
        guard documents.count == manifest.count else {
            throw FormatError(file: documentsPath, "\(documents.count) documents, index.json says \(manifest.count)")
        }
        if precision != .float32 {
            let url = directory.appendingPathComponent("embeddings.npy")
            let rows = try NPY.mapped(url)
            guard rows.rows == manifest.count, rows.columns == manifest.dimension else {
                throw FormatError(url: url, "shape (\(rows.rows), \(rows.columns)), index.json says (\(manifest.count), \(manifest.dimension))")
            }
            floatRows = rows
        } else {
            floatRows = nil
        }
    }

    public var precision: EmbeddingPrecision { EmbeddingPrecision(rawValue: manifest.precision)! }

    /// Refuses a query model whose fingerprints differ from the build's.
    public func checkQueryModel(fingerprint: String, adapterFingerprint: String?, describedAs what: String) throws {
        guard fingerprint == manifest.modelFingerprint, adapterFingerprint == manifest.adapterFingerprint else {
            let built = manifest.model + (manifest.adapter.map { " + adapter \($0)" } ?? "")
            throw FormatError(url: directory, "was built with \(built); the query model \(what) is a different model or adapter (fingerprints differ): its embeddings would not match the index")
        }
    }

    /// The `k` best rows for each float query row (normalised here), best first. A binary index
    /// searches k·rescoreMultiplier rows by Hamming distance, then rescores them by the float
    /// query against embeddings.npy (rescoreMultiplier 0: the Hamming order, scored by agreeing bits).
    public func search(queries: [Float], k: Int, rescoreMultiplier: Int = 4) throws -> [[Hit]] {
        let dim = manifest.dimension
        guard queries.count % dim == 0 else { throw FormatError("query embeddings are not rows of \(dim)") }
        let n = queries.count / dim
        guard n > 0, k > 0, manifest.count > 0 else { return Array(repeating: [], count: n) }
        var q = queries
        q.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: n, c: dim) }
        if precision == .float32 {
            let (scores, ids) = try q.withUnsafeBytes { try faiss.search(rows: n, $0.baseAddress!, k: k) }
            return (0..<n).map { i in hits(ids: ids[(i * k)..<((i + 1) * k)], scores: scores[(i * k)..<((i + 1) * k)]) }
        }
        let depth = k * max(rescoreMultiplier, 1)
        let codes = try QuantizedEmbeddings(centredRows(q, manifest.centre), rows: n, dim: dim, precision: .ubinary)
        let (distances, ids) = try codes.bytes.withUnsafeBytes { try faiss.search(rows: n, $0.baseAddress!, k: depth) }
        return (0..<n).map { i in
            let query = q[(i * dim)..<((i + 1) * dim)]
            // FAISS pads with −1; an id past the documents is a damaged index.faiss, not a crash.
            let candidates = ids[(i * depth)..<((i + 1) * depth)].filter { $0 >= 0 && $0 < manifest.count }.map(Int.init)
            if rescoreMultiplier < 1 {
                // Hamming distance as a similarity: the number of agreeing bits.
                let agreeing = distances[(i * depth)..<((i + 1) * depth)].map { Float(dim) - $0 }
                return hits(ids: ids[(i * depth)..<((i + 1) * depth)], scores: ArraySlice(agreeing))
            }
            return rescored(query: query, candidates: candidates, topK: k) { floatRows!.row($0) }
                .map { Hit(row: $0.index, id: documents[$0.index].id, text: documents[$0.index].text, score: $0.score) }
        }
    }

    /// FAISS's binary factory string for a float one: Flat → BFlat, HNSWn → BHNSWn, IVFn,Flat →
    /// BIVFn; binary strings (B…) pass through.
    public static func binaryFactory(_ factory: String) throws -> String {
        let f = factory.replacingOccurrences(of: " ", with: "")
        if f.hasPrefix("B") { return f }
        if f == "Flat" { return "BFlat" }
        if f.hasPrefix("HNSW"), Int(f.dropFirst(4)) != nil { return "B" + f }
        if f.hasPrefix("IVF"), f.hasSuffix(",Flat"), Int(f.dropFirst(3).dropLast(5)) != nil { return "B" + f.dropLast(5) }
        throw FormatError("--index_factory \"\(factory)\" has no binary form: with --precision binary use Flat, HNSW<M> or IVF<n>,Flat (or FAISS's BFlat, BHNSW<M>, BIVF<n>)")
    }

    /// Writes the index directory for `embeddings` (row-major, `documents.count` rows of
    /// `manifest.dimension`, any scale: rows are normalised here). The directory is assembled
    /// beside `directory` and moved into place at the end, so an existing index is replaced only by
    /// a complete one. Returns the manifest as written (count, factory and build time filled in).
    @discardableResult
    public static func build(embeddings: [Float], documents: [Document], manifest base: IndexManifest, options: BuildOptions,
                             to directory: URL) throws -> IndexManifest {
        let dim = base.dimension, n = documents.count
        guard embeddings.count == n * dim else { throw FormatError("\(embeddings.count) values are not \(n) rows of \(dim)") }
        guard [.float32, .binary, .ubinary].contains(options.precision) else {
            throw FormatError("an index stores float32 or binary rows (--precision \(options.precision.rawValue): use --index_factory with SQ8 for 8-bit rows)")
        }
        let started = Date()
        var rows = embeddings
        rows.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: n, c: dim) }
        let binary = options.precision != .float32
        let factory = binary ? try binaryFactory(options.factory) : options.factory
        let index = try FaissIndex(factory: factory, dim: binary ? (dim + 7) / 8 * 8 : dim, binary: binary)
        let centre = binary && options.centreBinary ? columnMeans(rows, rows: n, dim: dim) : nil
        let vectors: [UInt8] = binary ? try QuantizedEmbeddings(centredRows(rows, centre), rows: n, dim: dim, precision: .ubinary).bytes
                                      : rows.withUnsafeBytes { Array($0) }
        let rowBytes = index.rowBytes
        if !index.isTrained {
            // An even sample: every (n / maxTrainingRows)-th row.
            let take = min(n, max(options.maxTrainingRows, 1))
            var sample = [UInt8](repeating: 0, count: take * rowBytes)
            for i in 0..<take {
                let r = i * n / take
                sample.replaceSubrange((i * rowBytes)..<((i + 1) * rowBytes), with: vectors[(r * rowBytes)..<((r + 1) * rowBytes)])
            }
            try sample.withUnsafeBytes { try index.train(rows: take, $0.baseAddress!) }
        }
        if let ef = options.efConstruction { try index.setParameter("efConstruction", Double(ef)) }
        try vectors.withUnsafeBytes { try index.add(rows: n, $0.baseAddress!, ids: (0..<n).map(Int64.init)) }

        let fm = FileManager.default
        let staging = directory.deletingLastPathComponent()
            .appendingPathComponent(".\(directory.lastPathComponent).building-\(ProcessInfo.processInfo.processIdentifier)")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        do {
            try index.write(to: staging.appendingPathComponent("index.faiss"))
            var lines = Data()
            for d in documents {
                lines.append(try JSONSerialization.data(withJSONObject: ["_id": d.id, "text": d.text], options: [.sortedKeys]))
                lines.append(0x0A)
            }
            try lines.write(to: staging.appendingPathComponent("documents.jsonl"))
            if binary { try NPY.write(rows: n, columns: dim, values: rows, to: staging.appendingPathComponent("embeddings.npy")) }
            var manifest = base
            manifest.indexFactory = options.factory
            manifest.faissFactory = factory
            manifest.precision = options.precision.rawValue
            manifest.rescore = binary ? QuantizedSearch.Rescoring.float.rawValue : nil
            manifest.centre = centre
            manifest.count = n
            manifest.buildSeconds = Date().timeIntervalSince(started)
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(manifest).write(to: staging.appendingPathComponent("index.json"))
            if fm.fileExists(atPath: directory.path) {
                let isIndex = fm.fileExists(atPath: directory.appendingPathComponent("index.json").path)
                guard try isIndex || fm.contentsOfDirectory(atPath: directory.path).isEmpty else {
                    throw FormatError(url: directory, "exists and is not an index directory: not replaced")
                }
                // Swap: the old index moves aside, the new one in, then the old one goes.
                let old = staging.deletingLastPathComponent()
                    .appendingPathComponent(".\(directory.lastPathComponent).old-\(ProcessInfo.processInfo.processIdentifier)")
                try? fm.removeItem(at: old)
                try fm.moveItem(at: directory, to: old)
                do { try fm.moveItem(at: staging, to: directory) } catch {
                    try? fm.moveItem(at: old, to: directory)  // the old index back in place
                    throw error
                }
                try? fm.removeItem(at: old)
            } else {
                try fm.moveItem(at: staging, to: directory)
            }
            return manifest
        } catch {
            try? fm.removeItem(at: staging)
            throw error
        }
    }

    private func hits(ids: ArraySlice<Int64>, scores: ArraySlice<Float>) -> [Hit] {
        zip(ids, scores).compactMap { id, score in
            guard id >= 0, Int(id) < documents.count else { return nil }
            return Hit(row: Int(id), id: documents[Int(id)].id, text: documents[Int(id)].text, score: score)
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): return "missing field \(key.stringValue)"
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
            return "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
