import ArgumentParser
import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneRetrieval
import EmbedTuneSearch
import Foundation

/// `embedtune index build`: a corpus embedded by a model (+ adapter) into a FAISS index directory.
struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index", abstract: "Vector indexes (FAISS) over a corpus.", subcommands: [IndexBuildCommand.self])
}

struct IndexBuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Embed a corpus and write a FAISS index directory (index.json, index.faiss, documents.jsonl).",
        discussion: "Under mpirun every rank embeds a contiguous shard of the corpus and rank 0 builds and writes the index.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "A PEFT adapter applied to --model.") var adapter: String?
    @OptionGroup var routing: RoutingOptions
    @Option(help: "The corpus: BEIR corpus.jsonl ({_id, title, text}) or .txt (one document per line; ids are line numbers from 0).")
    var corpus: String?
    @Option(help: "Dataset store (SQLite): index --db_dataset's corpus.") var db: String?
    @Option(name: .spelled("db_dataset", "dataset"), help: "With --db: the dataset's name in the store.") var dbDataset: String?
    @Option(help: "The index directory to write (replaced only by a complete new index).") var output: String
    @Option(name: .spelled("index_factory"),
            help: "FAISS index_factory string: Flat (exact), HNSW32, IVF1024,Flat, IVF1024,PQ32, HNSW32,SQ8, …")
    var indexFactory = "Flat"
    @Option(help: "float32, or binary / ubinary: rows stored as sign bits (32× smaller), searched by Hamming distance and rescored by the float query against embeddings.npy.")
    var precision = EmbeddingPrecision.float32
    @Option(name: .spelled("binary_centering"),
            help: .boolean("With --precision binary/ubinary: bits are signs of the embeddings minus the corpus mean (false: of the embeddings themselves, as sentence-transformers)."))
    var binaryCentering = true
    @Option(name: .spelled("max_training_rows"), help: "Rows an IVF / PQ index trains on (an even sample).") var maxTrainingRows = 100_000
    @Option(name: .spelled("ef_construction"), help: "HNSW: candidate list while the graph is built (FAISS's efConstruction, default 40); larger is a better graph, built slower.")
    var efConstruction: Int?
    @Option(name: .spelled("document_prompt"), help: "Document prefix (default: the model's \"document\" prompt).") var documentPrompt: String?
    @Option(name: .spelled("query_prompt"), help: "Query prefix recorded for searches (default: the model's \"query\" prompt).") var queryPrompt: String?
    @Option(name: .spelled("batch_size"), help: "Texts per forward pass.") var batchSize = 32
    @Option(name: .spelled("max_length"), help: "Maximum tokens per text, special tokens included (default: the model's max_seq_length, else 512).")
    var maxLength: Int?
    @Option(help: .boolean("No progress bar.")) var quiet = false

    func validate() throws {
        if (corpus == nil) == (db == nil) { throw ValidationError("give --corpus FILE, or --db and --db_dataset") }
        if db != nil && dbDataset == nil { throw ValidationError("--db needs --db_dataset") }
        if adapter != nil && routing.adapters != nil { throw ValidationError("use --adapter or --adapters with --router, not both") }
        guard [.float32, .binary, .ubinary].contains(precision) else {
            throw ValidationError("--precision \(precision.rawValue): an index stores float32 or binary rows (8-bit rows: --index_factory with SQ8, e.g. \"HNSW32,SQ8\")")
        }
        guard batchSize > 0 else { throw ValidationError("--batch_size must be positive") }
        guard maxTrainingRows > 0 else { throw ValidationError("--max_training_rows must be positive") }
        if let efConstruction, efConstruction < 1 { throw ValidationError("--ef_construction must be at least 1") }
        if precision != .float32 { _ = try VectorIndex.binaryFactory(indexFactory) }
    }

    func run() throws { try runOnEveryRank(build) }

    func build(_ communicator: Communicator) throws {
        let documents: [VectorIndex.Document]
        if let db, let dbDataset {
            documents = try DatasetStore(path: db).corpus(dataset: dbDataset).map { .init(id: $0.id, text: $0.text) }
        } else {
            documents = try readCorpus(corpus!)
        }
        guard !documents.isEmpty else { throw FormatError(file: corpus ?? db!, "the corpus is empty") }
        let modelURL = URL(fileURLWithPath: modelOptions.model).standardizedFileURL
        let directory = try modelOptions.directory()
        let embedder = try Embedder(directory: directory)
        let adapterURL = adapter.map { URL(fileURLWithPath: $0).standardizedFileURL }
        try embedder.setAdapter(adapterURL)
        var options = Embedder.Options()
        options.batchSize = batchSize
        options.maxLength = maxLength
        options.prefix = documentPrompt ?? directory.documentPrompt
        let dim = embedder.backbone.hiddenSize
        let shard = communicator.shard(of: documents.count)
        let progress = ProgressBar(total: shard.count, label: communicator.size > 1 ? "embed (rank \(communicator.rank))" : "embed",
                                   enabled: !quiet && communicator.isRoot && shard.count > batchSize)
        // Routed: each rank routes and embeds its own shard, as `embed --route auto` would.
        let routed = routing.isRouted ? try routing.embedding(for: embedder, modelPath: modelOptions.model) : nil
        let rows = try communicator.gatherRows(count: documents.count, width: dim) { range in
            if let routed {
                let result = try routed.embed(documents[range].map(\.text), embedder: embedder, options: options)
                progress.update(range.count)
                return result.values
            }
            return try embedder.embed(documents[range].map(\.text), options: options, progress: progress.update).values
        }
        guard communicator.isRoot else { return }
        var buildOptions = VectorIndex.BuildOptions()
        buildOptions.factory = indexFactory
        buildOptions.precision = precision
        buildOptions.maxTrainingRows = maxTrainingRows
        buildOptions.efConstruction = efConstruction
        buildOptions.centreBinary = binaryCentering
        let manifest = IndexManifest(
            model: modelURL.path, modelFingerprint: try ModelFingerprint.of(modelURL), adapter: adapterURL?.path,
            adapterFingerprint: try adapterURL.map(ModelFingerprint.of), dimension: dim, indexFactory: indexFactory,
            faissFactory: indexFactory, precision: precision.rawValue, rescore: nil, centre: nil, count: documents.count,
            queryPrompt: queryPrompt ?? directory.queryPrompt, documentPrompt: options.prefix, maxLength: maxLength, buildSeconds: 0,
            routing: try routed.map { r in
                try IndexRouting.of(router: URL(fileURLWithPath: routing.router!).standardizedFileURL,
                                    adapters: routing.adapterPaths.map { URL(fileURLWithPath: $0).standardizedFileURL }, threshold: r.threshold, mix: r.mix)
            })
        let started = Date()
        let written = try VectorIndex.build(embeddings: rows, documents: documents, manifest: manifest, options: buildOptions,
                                            to: URL(fileURLWithPath: output))
        if !quiet {
            let seconds = String(format: "%.1f", Date().timeIntervalSince(started))
            FileHandle.standardError.write(Data("embedtune: indexed \(written.count) documents (\(written.faissFactory), \(written.precision), \(dim) dimensions) in \(output) (index built in \(seconds) s)\n".utf8))
        }
    }

    /// A BEIR corpus.jsonl, or a .txt file with one document per line (ids "0", "1", …).
    func readCorpus(_ path: String) throws -> [VectorIndex.Document] {
        if URL(fileURLWithPath: path).pathExtension.lowercased() == "jsonl" {
            var seen = Set<String>()
            return try BEIRFiles.records(path).map { r in
                guard seen.insert(r.id).inserted else { throw FormatError(file: r.origin, item: "_id", "duplicate id \"\(r.id)\"") }
                return .init(id: r.id, text: r.text)
            }
        }
        return try readTexts(path).enumerated().map { .init(id: String($0.offset), text: $0.element) }
    }
}

/// `embedtune search`: the best documents of an index for queries, embedded as the index records.
struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search", abstract: "Search an index directory (`embedtune index build`) with one or more queries.")

    @Option(help: "The index directory.") var index: String
    @Option(parsing: .singleValue, help: "A query text (repeatable).") var query: [String] = []
    @Option(help: "Queries: .txt (one per line) or .jsonl (BEIR queries.jsonl; --field holds the text, _id is kept).") var queries: String?
    @Option(help: "JSONL field holding the query text.") var field = "text"
    @Option(name: .spelled("top_k"), help: "Hits per query.") var topK = 10
    @Option(help: "Query model (default: the model the index was built with; a different one is refused).") var model: String?
    @Option(help: "Adapter on the query model (default: the index's).") var adapter: String?
    @Option(help: "IVF: inverted lists visited per query (FAISS's nprobe).") var nprobe: Int?
    @Option(name: .spelled("ef_search"), help: "HNSW: candidate list size during search (FAISS's efSearch).") var efSearch: Int?
    @Option(name: .spelled("rescore_multiplier"),
            help: "Binary indexes: the Hamming search keeps top_k × this, rescored by the float query (0: Hamming order only).")
    var rescoreMultiplier = 4
    @Option(name: .spelled("batch_size"), help: "Queries per forward pass.") var batchSize = 32
    @Option(help: "Write the hits as JSONL here (one line per query); default: stdout.") var output: String?

    func validate() throws {
        if query.isEmpty == (queries == nil) { throw ValidationError("give --query TEXT (repeatable) or --queries FILE") }
        guard topK > 0 else { throw ValidationError("--top_k must be at least 1") }
        guard rescoreMultiplier >= 0 else { throw ValidationError("--rescore_multiplier must be 0 or more") }
        if let nprobe, nprobe < 1 { throw ValidationError("--nprobe must be at least 1") }
        if let efSearch, efSearch < 1 { throw ValidationError("--ef_search must be at least 1") }
    }

    func run() throws {
        try runReportingErrors {
            let indexDirectory = URL(fileURLWithPath: index)
            let vectors = try VectorIndex(directory: indexDirectory)
            let m = vectors.manifest
            let modelURL = URL(fileURLWithPath: model ?? m.model).standardizedFileURL
            if m.routing != nil && adapter != nil {
                throw ValidationError("\(index) is a routed index: its queries take the router and adapters its index.json names, not --adapter")
            }
            let adapterURL = (adapter ?? (model == nil ? m.adapter : nil)).map { URL(fileURLWithPath: $0).standardizedFileURL }
            try vectors.checkQueryModel(fingerprint: ModelFingerprint.of(modelURL), adapterFingerprint: adapterURL.map(ModelFingerprint.of),
                                        describedAs: modelURL.path + (adapterURL.map { " + adapter \($0.path)" } ?? ""))
            if let nprobe { try vectors.faiss.setParameter("nprobe", Double(nprobe)) }
            if let efSearch { try vectors.faiss.setParameter("efSearch", Double(efSearch)) }
            var ids = [String?](), texts = [String]()
            if let queries {
                if URL(fileURLWithPath: queries).pathExtension.lowercased() == "jsonl" && field == "text" {
                    for r in try BEIRFiles.records(queries) { ids.append(r.id); texts.append(r.text) }
                } else {
                    texts = try readTexts(queries, field: field)
                    ids = Array(repeating: nil, count: texts.count)
                }
            } else {
                texts = query
                ids = Array(repeating: nil, count: texts.count)
            }
            let embedder = try Embedder(directory: ModelDirectory(modelURL))
            try embedder.setAdapter(adapterURL)
            var options = Embedder.Options()
            options.batchSize = batchSize
            options.maxLength = m.maxLength
            options.prefix = m.queryPrompt
            let embedded: [Float]
            if let routing = m.routing {
                let routerURL = URL(fileURLWithPath: routing.router), adapterURLs = routing.adapters.map { URL(fileURLWithPath: $0) }
                try routing.check(router: routerURL, adapters: adapterURLs, index: indexDirectory)
                let routed = try RoutedEmbedding(router: Router.load(routerURL), routerPath: routing.router, adapterPaths: routing.adapters,
                                                 embedder: embedder, modelPath: modelURL.path, threshold: routing.threshold, mix: routing.mix)
                embedded = try routed.embed(texts, embedder: embedder, options: options).values
            } else {
                embedded = try embedder.embed(texts, options: options).values
            }
            let hits = try vectors.search(queries: embedded, k: topK, rescoreMultiplier: rescoreMultiplier)
            var out = Data()
            for (i, text) in texts.enumerated() {
                var object: [String: Any] = [
                    "query": text,
                    "hits": hits[i].enumerated().map { rank, h -> [String: Any] in
                        ["rank": rank + 1, "_id": h.id, "score": Double(h.score), "text": h.text]
                    },
                ]
                if let id = ids[i] { object["query_id"] = id }
                out.append(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
                out.append(0x0A)
            }
            if let output { try writeAtomically(out, to: URL(fileURLWithPath: output)) } else { FileHandle.standardOutput.write(out) }
        }
    }
}
