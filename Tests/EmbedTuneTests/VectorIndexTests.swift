import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneRetrieval
import EmbedTuneSearch
import Foundation
import Testing

@Suite("Vector indexes (FAISS)")
struct VectorIndexTests {
    /// n rows of dim around the same 20 centres whatever the seed (search benchmarks' usual
    /// shape: real embeddings are clustered, and queries come from the corpus's distribution),
    /// deterministic.
    static func clustered(_ n: Int, dim: Int, seed: UInt64) -> [Float] {
        var state: UInt64 = 99
        func uniform() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
        let centres = (0..<(20 * dim)).map { _ in uniform() }
        state = seed
        var out = [Float](repeating: 0, count: n * dim)
        for r in 0..<n {
            let c = r % 20
            for d in 0..<dim { out[r * dim + d] = centres[c * dim + d] + 0.3 * uniform() }
        }
        return out
    }

    static func manifest(dim: Int) -> IndexManifest {
        IndexManifest(model: "m", modelFingerprint: "f", adapter: nil, adapterFingerprint: nil, dimension: dim, indexFactory: "",
                      faissFactory: "", precision: "float32", rescore: nil, count: 0, queryPrompt: "q: ", documentPrompt: "d: ",
                      maxLength: nil, buildSeconds: 0)
    }

    static func documents(_ n: Int) -> [VectorIndex.Document] { (0..<n).map { .init(id: "doc\($0)", text: "text \($0)") } }

    /// An index of `corpus` (rows of `dim`, documents doc0, doc1, …) in a fresh directory, opened.
    static func built(_ corpus: [Float], dim: Int, factory: String, precision: EmbeddingPrecision = .float32,
                      efConstruction: Int? = nil) throws -> VectorIndex {
        let dir = try Paths.temporaryDirectory().appendingPathComponent("idx")
        var options = VectorIndex.BuildOptions()
        options.factory = factory
        options.precision = precision
        options.efConstruction = efConstruction
        try VectorIndex.build(embeddings: corpus, documents: documents(corpus.count / dim), manifest: manifest(dim: dim), options: options, to: dir)
        return try VectorIndex(directory: dir)
    }

    @Test("a Flat index finds exactly what exact search finds, with the same scores, and keeps ids and texts")
    func flatIsExact() throws {
        let dim = 32, corpus = Self.clustered(800, dim: dim, seed: 1), queries = Self.clustered(25, dim: dim, seed: 2)
        let index = try Self.built(corpus, dim: dim, factory: "Flat")
        #expect(index.manifest.count == 800 && index.manifest.faissFactory == "Flat" && index.manifest.queryPrompt == "q: ")
        let hits = try index.search(queries: queries, k: 10)
        let exact = exactTopK(queries: queries, corpus: corpus, dim: dim, k: 10, normalize: true)
        for q in 0..<25 {
            #expect(Set(hits[q].map(\.row)) == Set(exact[q].map(\.index)))
            for (h, e) in zip(hits[q], exact[q]) { #expect(abs(h.score - e.score) <= 1e-5) }
            #expect(hits[q].allSatisfy { $0.id == "doc\($0.row)" && $0.text == "text \($0.row)" })
        }
    }

    @Test("HNSW and IVF reach recall@10 ≥ 0.95 of exact search on clustered vectors",
          arguments: [("HNSW32", "efSearch", 64.0), ("IVF16,Flat", "nprobe", 4.0)])
    func approximateRecall(_ factory: String, _ parameter: String, _ value: Double) throws {
        let dim = 32, corpus = Self.clustered(3000, dim: dim, seed: 3), queries = Self.clustered(50, dim: dim, seed: 4)
        let index = try Self.built(corpus, dim: dim, factory: factory)
        try index.faiss.setParameter(parameter, value)
        let hits = try index.search(queries: queries, k: 10)
        let exact = exactTopK(queries: queries, corpus: corpus, dim: dim, k: 10, normalize: true)
        let found = (0..<50).reduce(0) { $0 + Set(hits[$1].map(\.row)).intersection(exact[$1].map(\.index)).count }
        #expect(Double(found) / 500 >= 0.95, "\(factory): recall@10 \(Double(found) / 500)")
    }

    @Test("efConstruction builds a better HNSW graph (float and binary) and is refused, named, for an index without one")
    func efConstruction() throws {
        let dim = 32, corpus = Self.clustered(3000, dim: dim, seed: 7), queries = Self.clustered(50, dim: dim, seed: 8)
        let exact = exactTopK(queries: queries, corpus: corpus, dim: dim, k: 10, normalize: true)
        func recall(_ ef: Int, _ precision: EmbeddingPrecision = .float32) throws -> Int {
            let index = try Self.built(corpus, dim: dim, factory: "HNSW8", precision: precision, efConstruction: ef)
            try index.faiss.setParameter("efSearch", 10)
            let hits = try index.search(queries: queries, k: 10, rescoreMultiplier: 1)
            return (0..<50).reduce(0) { $0 + Set(hits[$1].map(\.row)).intersection(exact[$1].map(\.index)).count }
        }
        let sparse = try recall(1), dense = try recall(200)
        #expect(dense > sparse, "efConstruction 200: \(dense) of 500 found, 1: \(sparse)")
        _ = try recall(200, .binary)
        #expect(throws: FormatError.self) { try Self.built(corpus, dim: dim, factory: "Flat", efConstruction: 100) }
        var message = "no error"
        do { _ = try Self.built(corpus, dim: dim, factory: "IVF16,Flat", efConstruction: 100) } catch { message = "\(error)" }
        #expect(message.contains("efConstruction needs an HNSW index"), "\(message)")
    }

    @Test("a binary index rescoring every candidate by the float query ranks exactly as float search")
    func binaryRescoring() throws {
        let dim = 64, corpus = Self.clustered(300, dim: dim, seed: 5), queries = Self.clustered(10, dim: dim, seed: 6)
        let index = try Self.built(corpus, dim: dim, factory: "Flat", precision: .binary)
        #expect(index.manifest.faissFactory == "BFlat" && index.manifest.rescore == "float")
        #expect(index.manifest.centre?.count == dim)
        let all = try index.search(queries: queries, k: 5, rescoreMultiplier: 60)
        let exact = exactTopK(queries: queries, corpus: corpus, dim: dim, k: 5, normalize: true)
        for q in 0..<10 {
            #expect(all[q].map(\.row) == exact[q].map(\.index))
            for (h, e) in zip(all[q], exact[q]) { #expect(abs(h.score - e.score) <= 1e-5) }
        }
        // Without rescoring: the Hamming order, scored by agreeing bits.
        let hamming = try index.search(queries: queries, k: 5, rescoreMultiplier: 0)
        #expect(hamming.allSatisfy { $0.count == 5 && $0.allSatisfy { $0.score == $0.score.rounded() && $0.score <= Float(dim) } })
        #expect(throws: FormatError.self) { try VectorIndex.binaryFactory("IVF16,PQ8") }
        #expect(try VectorIndex.binaryFactory("HNSW16") == "BHNSW16" && VectorIndex.binaryFactory("IVF8,Flat") == "BIVF8")
    }

    @Test("a build never replaces a directory that is not an index, and a damaged index is an error naming its file")
    func safety() throws {
        let root = try Paths.temporaryDirectory()
        let precious = root.appendingPathComponent("notes")
        try FileManager.default.createDirectory(at: precious, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: precious.appendingPathComponent("a.txt"))
        let corpus = Self.clustered(40, dim: 8, seed: 7)
        #expect(throws: FormatError.self) {
            try VectorIndex.build(embeddings: corpus, documents: Self.documents(40), manifest: Self.manifest(dim: 8),
                                  options: .init(), to: precious)
        }
        #expect(try String(contentsOf: precious.appendingPathComponent("a.txt"), encoding: .utf8) == "keep me")
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path) == ["notes"])

        let dir = root.appendingPathComponent("idx")
        try VectorIndex.build(embeddings: corpus, documents: Self.documents(40), manifest: Self.manifest(dim: 8), options: .init(), to: dir)
        // A second build replaces the first whole.
        try VectorIndex.build(embeddings: Array(corpus.prefix(80)), documents: Self.documents(10), manifest: Self.manifest(dim: 8),
                              options: .init(), to: dir)
        #expect(try VectorIndex(directory: dir).manifest.count == 10)
        let documents = dir.appendingPathComponent("documents.jsonl")
        try Data("{\"_id\": \"a\", \"text\": \"b\"}\n".utf8).write(to: documents)
        #expect { try VectorIndex(directory: dir) } throws: { "\($0)".contains("documents.jsonl") && "\($0)".contains("1 documents") }
        try Data("{\"format\": 3}".utf8).write(to: dir.appendingPathComponent("index.json"))
        #expect { try VectorIndex(directory: dir) } throws: { "\($0)".contains("index.json") }
        try Data("not faiss".utf8).write(to: dir.appendingPathComponent("index.faiss"))
        #expect(throws: FormatError.self) { try FaissIndex(reading: dir.appendingPathComponent("index.faiss"), binary: false) }
    }

    @Test("index build and search: the CLI's hits are exact cosine search of embed's vectors; 2 MPI ranks build the same index; another model is refused")
    func commandLine() throws {
        let root = try Paths.temporaryDirectory()
        let model = Paths.fixtures.appendingPathComponent("tiny-bert-zh").path
        let beir = Paths.fixtures.appendingPathComponent("datasets/beir")
        let corpus = beir.appendingPathComponent("corpus.jsonl").path, queries = beir.appendingPathComponent("queries.jsonl").path
        let one = root.appendingPathComponent("one").path, two = root.appendingPathComponent("two").path
        let built = try runCLI(["index", "build", "--model", model, "--corpus", corpus, "--output", one, "--quiet"])
        #expect(built.status == 0, "\(built.stderr)")
        let mpi = try runMPI(2, ["index", "build", "--model", model, "--corpus", corpus, "--output", two, "--quiet"])
        #expect(mpi.status == 0, "\(mpi.stderr)")
        let a = try runCLI(["search", "--index", one, "--queries", queries, "--top_k", "3"])
        let b = try runCLI(["search", "--index", two, "--queries", queries, "--top_k", "3"])
        #expect(a.status == 0 && b.status == 0, "\(a.stderr) \(b.stderr)")
        func hits(_ text: String) throws -> [[(String, Double)]] {
            try text.split(separator: "\n").map { line in
                // Texts, not ids: the fixture corpus holds one text twice (doc2, doc4), whose order is a tie.
                try JSONValue.parse(Data(line.utf8), file: "stdout")["hits"]!.array!.map { ($0["text"]!.string!, $0["score"]!.double!) }
            }
        }
        let ha = try hits(a.stdout), hb = try hits(b.stdout)
        #expect(ha.count == 5 && ha.map { $0.map(\.0) } == hb.map { $0.map(\.0) })
        for (x, y) in zip(ha.joined(), hb.joined()) { #expect(abs(x.1 - y.1) <= 1e-5) }

        // The same ranking from embed's vectors and exact cosine search.
        let docs = try BEIRFiles.records(corpus), qs = try BEIRFiles.records(queries)
        let corpusTxt = root.appendingPathComponent("c.txt"), queryTxt = root.appendingPathComponent("q.txt")
        try docs.map(\.text).joined(separator: "\n").write(to: corpusTxt, atomically: true, encoding: .utf8)
        try qs.map(\.text).joined(separator: "\n").write(to: queryTxt, atomically: true, encoding: .utf8)
        let cv = root.appendingPathComponent("c.npy"), qv = root.appendingPathComponent("q.npy")
        #expect(try runCLI(["embed", "--model", model, "--input", corpusTxt.path, "--output", cv.path, "--quiet"]).status == 0)
        #expect(try runCLI(["embed", "--model", model, "--input", queryTxt.path, "--output", qv.path, "--quiet"]).status == 0)
        let c = try NPY.read(cv), q = try NPY.read(qv)
        let exact = exactTopK(queries: q.values, corpus: c.values, dim: c.columns, k: 3, normalize: true)
        for (i, row) in exact.enumerated() {
            for (hit, e) in zip(ha[i], row) { #expect(abs(hit.1 - Double(e.score)) <= 1e-5) }
            #expect(ha[i].map(\.0) == row.map { docs[$0.index].text })
        }

        let other = Paths.fixtures.appendingPathComponent("tiny-xlmr").path
        let refused = try runCLI(["search", "--index", one, "--query", "x", "--model", other])
        #expect(refused.status != 0 && refused.stderr.contains("fingerprints differ"))
        let wrongFactory = try runCLI(["index", "build", "--model", model, "--corpus", corpus, "--output", root.appendingPathComponent("x").path,
                                       "--index_factory", "IVF64,PQ8", "--precision", "binary"])
        #expect(wrongFactory.status != 0 && wrongFactory.stderr.contains("has no binary form"))
    }
}
