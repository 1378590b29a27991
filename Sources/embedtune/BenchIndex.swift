import ArgumentParser
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneRetrieval
import EmbedTuneSearch
import Foundation

/// `embedtune bench index`: FAISS index types on synthetic clustered vectors — build time, index
/// size, single-query latency (p50/p99) and recall@k against exact search, per search setting.
struct IndexBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index", abstract: "FAISS index types on synthetic clustered vectors: build time, size, latency, recall@k vs exact.")

    @Option(help: "Corpus vectors.") var documents = 100_000
    @Option(help: "Query vectors (searched one at a time).") var queries = 1000
    @Option(help: "Vector dimension.") var dim = 384
    @Option(help: "Clusters the vectors are drawn around (each a Gaussian around a random centre).") var clusters = 1000
    @Option(help: "Noise around a centre, relative to the centre's scale (1: a point's cosine to its centre ≈ 0.7).") var noise: Float = 1
    @Option(name: .spelled("top_k"), help: "Neighbours per query (recall@k).") var topK = 10
    @Option(name: .spelled("index_factory"), parsing: .singleValue, help: "FAISS factory strings to measure (repeatable).")
    var indexFactory: [String] = ["Flat", "HNSW32", "IVF1024,Flat", "IVF1024,PQ32"]
    @Option(name: .spelled("ef_search"), help: "HNSW efSearch values, one row each.") var efSearch = "32,64,128,256"
    @Option(help: "IVF nprobe values, one row each.") var nprobe = "8,16,32,64"
    @Option(name: .spelled("ef_construction"), help: "HNSW efConstruction while building (FAISS's default: 40).") var efConstruction: Int?
    @Option(help: "Threads FAISS builds with (searches run one query at a time).") var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(name: .spelled("corpus_embeddings"), help: "Real corpus embeddings (.npy) instead of synthetic vectors (with --query_embeddings).")
    var corpusEmbeddings: String?
    @Option(name: .spelled("query_embeddings"), help: "Real query embeddings (.npy, same width).") var queryEmbeddings: String?
    @Option(help: "Write results as JSON here.") var json: String?

    func run() throws {
        try runReportingErrors {
            let efs = try Self.integers(efSearch, "--ef_search"), probes = try Self.integers(nprobe, "--nprobe")
            var rng = SplitMix64(seed: 11)
            func gaussian() -> Float {
                let u1 = Float(rng.next() >> 40 + 1) / Float(1 << 24), u2 = Float(rng.next() >> 40) / Float(1 << 24)
                return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
            }
            let centres = (0..<(clusters * dim)).map { _ in gaussian() }
            func draw(_ n: Int) -> [Float] {
                var v = [Float](repeating: 0, count: n * dim)
                for r in 0..<n {
                    let c = Int(rng.next() % UInt64(clusters))
                    for d in 0..<dim { v[r * dim + d] = centres[c * dim + d] + noise * gaussian() }
                }
                v.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: n, c: dim) }
                return v
            }
            var corpus = [Float](), q = [Float](), documents = self.documents, queries = self.queries, dim = self.dim
            if let corpusEmbeddings, let queryEmbeddings {
                let c = try NPY.read(URL(fileURLWithPath: corpusEmbeddings)), qe = try NPY.read(URL(fileURLWithPath: queryEmbeddings))
                guard c.columns == qe.columns else { throw FormatError(file: queryEmbeddings, "\(qe.columns) columns, the corpus has \(c.columns)") }
                (documents, queries, dim) = (c.rows, qe.rows, c.columns)
                (corpus, q) = (c.values, qe.values)
                corpus.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: documents, c: dim) }
                q.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: queries, c: dim) }
            } else {
                guard corpusEmbeddings == nil && queryEmbeddings == nil else { throw ValidationError("--corpus_embeddings and --query_embeddings go together") }
                (corpus, q) = (draw(documents), draw(queries))
            }
            var truth = [RetrievalEvaluator.Ranking]()
            let exactSeconds = timed { truth = exactTopK(queries: q, corpus: corpus, dim: dim, k: topK, normalize: false) }
            FileHandle.standardError.write(Data("bench index: \(documents) × \(dim), exact top-\(topK) of \(queries) queries in \(String(format: "%.1f", exactSeconds)) s\n".utf8))
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("embedtune-bench-index-\(getpid()).faiss")
            defer { try? FileManager.default.removeItem(at: scratch) }
            var rows = [[String: Any]]()
            for factory in indexFactory {
                FaissIndex.setThreads(threads)
                let index = try FaissIndex(factory: factory, dim: dim)
                if let efConstruction, factory.hasPrefix("HNSW") { try index.setParameter("efConstruction", Double(efConstruction)) }
                let build = try timed {
                    try corpus.withUnsafeBytes { raw in
                        if !index.isTrained {
                            let take = min(documents, 100_000)
                            try index.train(rows: take, raw.baseAddress!)
                        }
                        try index.add(rows: documents, raw.baseAddress!, ids: (0..<documents).map(Int64.init))
                    }
                }
                try index.write(to: scratch)
                let bytes = (try FileManager.default.attributesOfItem(atPath: scratch.path)[.size] as? Int) ?? 0
                let settings: [(String, Double)?] = factory.hasPrefix("HNSW") ? efs.map { ("efSearch", Double($0)) }
                    : factory.hasPrefix("IVF") ? probes.map { ("nprobe", Double($0)) } : [nil]
                FaissIndex.setThreads(1)
                for setting in settings {
                    if let (name, value) = setting { try index.setParameter(name, value) }
                    var latencies = [Double](), found = 0
                    try q.withUnsafeBytes { raw in
                        for i in 0..<queries {
                            var result: (scores: [Float], ids: [Int64]) = ([], [])
                            latencies.append(try timed { result = try index.search(rows: 1, raw.baseAddress! + i * dim * 4, k: topK) })
                            found += Set(result.ids.map(Int.init)).intersection(truth[i].map(\.index)).count
                        }
                    }
                    latencies.sort()
                    func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(p * Double(latencies.count)))] * 1000 }
                    var row: [String: Any] = [
                        "factory": factory, "documents": documents, "dim": dim, "build_s": build, "index_mb": Double(bytes) / 1e6,
                        "recall": Double(found) / Double(queries * topK), "p50_ms": percentile(0.5), "p99_ms": percentile(0.99),
                        "setting": setting.map { "\($0.0)=\(Int($0.1))" } ?? "exact",
                    ]
                    row["threads"] = threads
                    if factory.hasPrefix("HNSW") { row["ef_construction"] = efConstruction ?? 40 }
                    rows.append(row)
                }
            }
            try report("bench index", rows, columns: ["factory", "setting", "documents", "build_s", "index_mb", "recall", "p50_ms", "p99_ms"],
                       jsonPath: json)
        }
    }

    static func integers(_ list: String, _ flag: String) throws -> [Int] {
        try list.split(separator: ",").map {
            guard let v = Int($0.trimmingCharacters(in: .whitespaces)), v > 0 else { throw ValidationError("\(flag): \"\($0)\" is not a positive integer") }
            return v
        }
    }
}
