import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneRetrieval
import EmbedTuneSearch
import Foundation

/// What `embedtune serve` serves, without the HTTP layer: the routes' request bodies in, status
/// and JSON out. One embedding model with named LoRA adapters (a request's `model` field, or the
/// router, picks one), an optional reranker and an optional index; batching, limits and caches.
public final class EmbeddingService: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// The name the base model answers to (`model` field, /info's model_id).
        public var modelID = "embedtune"
        /// TEI's max_batch_tokens: tokens one batch may hold.
        public var maxBatchTokens = 16_384
        /// TEI's max_concurrent_requests: requests queued per model before 429.
        public var maxConcurrentRequests = 512
        /// TEI's max_client_batch_size: inputs one request may carry.
        public var maxClientBatchSize = 32
        /// Tokens per input (special tokens included); nil: the model's own limit.
        public var maxInputLength: Int?
        /// Entries per cache; 0 turns both caches off.
        public var cacheEntries = 10_000
        public var cacheBytes = 64 << 20
        /// Near-duplicate threshold (cosine) of the search cache; nil: exact hits only.
        public var searchCacheSimilarity: Float? = 0.99
        /// The adapter a request without a `model` field gets ("auto": the router's choice).
        public var defaultModel: String?
        public init() {}
    }

    /// Per-batch and per-cache events, for metrics.
    public struct Observer: Sendable {
        public var batch: @Sendable (_ model: String, _ record: BatchScheduler<String, [Float]>.BatchRecord) -> Void = { _, _ in }
        public var rerankBatch: @Sendable (_ record: BatchScheduler<RerankPair, Float>.BatchRecord) -> Void = { _ in }
        public var cache: @Sendable (_ cache: String, _ outcome: String) -> Void = { _, _ in }
        public init() {}
    }

    public struct RerankPair: Sendable {
        public var query: String
        public var document: String
    }

    public let configuration: Configuration
    public let embedder: Embedder
    /// Adapter name → adapter (nil value: the base model under its own name).
    public let adapters: [String: LoRAAdapter?]
    public let router: Router?
    /// Router domain i → adapter name.
    public let routerAdapters: [String]
    public let reranker: Reranker?
    public let index: VectorIndex?
    /// The adapter whose embeddings the index holds (nil: the base model).
    public let indexAdapter: String?
    public let maxInputLength: Int
    private var embedBatches: BatchScheduler<String, [Float]>!
    private var rerankBatches: BatchScheduler<RerankPair, Float>?
    private let embedCache: SemanticCache<[Float]>?
    private let searchCache: SemanticCache<[VectorIndex.Hit]>?
    private let observer: Observer

    /// Groups are "adapter name \u{1} prompt": one batch, one adapter, one prompt.
    static let separator: Character = "\u{1}"

    public init(configuration: Configuration, embedder: Embedder, adapters: [String: LoRAAdapter?], router: Router?, routerAdapters: [String],
                reranker: Reranker?, index: VectorIndex?, indexAdapter: String?, observer: Observer = .init()) throws {
        self.configuration = configuration
        self.embedder = embedder
        var named = adapters
        named[configuration.modelID] = .some(nil)
        self.adapters = named
        self.router = router
        self.routerAdapters = routerAdapters
        self.reranker = reranker
        self.index = index
        self.indexAdapter = indexAdapter
        self.observer = observer
        let positions = embedder.backbone.maxPositions
        if let asked = configuration.maxInputLength, asked > positions {
            throw ServingError.badRequest("--max_input_length \(asked) is more than the model's \(positions) positions")
        }
        maxInputLength = configuration.maxInputLength ?? embedder.maxLength(Embedder.Options())
        let cached = configuration.cacheEntries > 0
        embedCache = cached ? SemanticCache(maxEntries: configuration.cacheEntries, maxBytes: configuration.cacheBytes) : nil
        searchCache = cached ? SemanticCache(maxEntries: configuration.cacheEntries, maxBytes: configuration.cacheBytes,
                                             similarityThreshold: configuration.searchCacheSimilarity) : nil
        if let d = configuration.defaultModel, d != "auto", named[d] == nil {
            throw ServingError.badRequest("the default model \"\(d)\" is not among the served ones (\(named.keys.sorted().joined(separator: ", ")))")
        }
        if configuration.defaultModel == "auto" && router == nil { throw ServingError.badRequest("the default model \"auto\" needs a router") }
        let embedder = self.embedder, all = self.adapters, maxLength = maxInputLength
        embedBatches = BatchScheduler(maxBatchTokens: configuration.maxBatchTokens, maxQueued: configuration.maxConcurrentRequests,
                                      record: { observer.batch("embed", $0) }) { group, texts in
            let parts = group.split(separator: Self.separator, maxSplits: 1, omittingEmptySubsequences: false)
            embedder.adapter = all[String(parts[0])] ?? nil
            var options = Embedder.Options()
            options.batchSize = texts.count
            options.maxLength = maxLength
            options.prefix = parts.count > 1 ? String(parts[1]) : ""
            let (dim, values) = try embedder.embed(texts, options: options)
            return (0..<texts.count).map { Array(values[($0 * dim)..<(($0 + 1) * dim)]) }
        }
        if let reranker {
            rerankBatches = BatchScheduler(maxBatchTokens: configuration.maxBatchTokens, maxQueued: configuration.maxConcurrentRequests,
                                           record: { observer.rerankBatch($0) }) { _, pairs in
                // Requests of a batch keep their pairs together: score each query's run at once.
                var scores = [Float](), start = 0
                while start < pairs.count {
                    var end = start + 1
                    while end < pairs.count && pairs[end].query == pairs[start].query { end += 1 }
                    scores += try reranker.relevance(query: pairs[start].query, documents: pairs[start..<end].map(\.document))
                    start = end
                }
                return scores
            }
        }
    }

    /// Finishes queued work, then stops the batch workers.
    public func shutdown() {
        embedBatches.shutdown()
        rerankBatches?.shutdown()
    }

    public var queued: Int { embedBatches.queued + (rerankBatches?.queued ?? 0) }
    public var cacheStatistics: (embed: SemanticCache<[Float]>.Counters, search: SemanticCache<[VectorIndex.Hit]>.Counters) {
        (embedCache?.statistics ?? .init(), searchCache?.statistics ?? .init())
    }

    // MARK: Embedding

    /// Token counts of `texts` with `prefix`, after checking the request limits; with `truncate`
    /// a long input is cut to the limit instead of refused (413, as TEI).
    func tokenCounts(_ texts: [String], prefix: String, truncate: Bool) throws -> [Int] {
        guard !texts.isEmpty else { throw ServingError.empty("the input is empty: give at least one text") }
        guard texts.count <= configuration.maxClientBatchSize else {
            throw ServingError.payloadTooLarge("batch size \(texts.count) > maximum allowed batch size \(configuration.maxClientBatchSize)")
        }
        return try texts.enumerated().map { i, text in
            guard !text.isEmpty else { throw ServingError.empty("input \(i) is an empty string") }
            let n = embedder.tokenizer.encode(prefix + text).count
            if n > maxInputLength && !truncate {
                throw ServingError.payloadTooLarge("input \(i) has \(n) tokens; the maximum is \(maxInputLength) (or set truncate)")
            }
            return min(n, maxInputLength)
        }
    }

    /// The adapter name a request's `model` field asks for (nil field: the default).
    public func resolveModel(_ requested: String?) throws -> String {
        let name = requested ?? configuration.defaultModel ?? (router != nil ? "auto" : configuration.modelID)
        if name == "auto" {
            guard router != nil else { throw ServingError.notFound("model \"auto\" needs a router; served models: \(servedModels.joined(separator: ", "))") }
            return name
        }
        guard adapters[name] != nil else {
            throw ServingError.notFound("unknown model \"\(name)\"; served models: \(servedModels.joined(separator: ", "))")
        }
        return name
    }

    public var servedModels: [String] { adapters.keys.sorted() + (router != nil ? ["auto"] : []) }

    /// Embeddings of `texts` by `model` (an adapter name or "auto"), each with `prefix`; cached rows
    /// come from the cache. Returns the rows and the token count.
    public func embed(_ texts: [String], model: String, prefix: String, truncate: Bool = false) async throws -> (rows: [[Float]], tokens: Int) {
        let counts = try tokenCounts(texts, prefix: prefix, truncate: truncate)
        let tokens = counts.reduce(0, +)
        if model == "auto" {
            let router = self.router!
            let base = try await embedRows(texts, counts: counts, adapter: configuration.modelID, prefix: router.queryPrompt)
            let choice = base.map { row -> String in
                let p = router.probabilities(row)
                return routerAdapters[p.indices.max { p[$0] < p[$1] }!]
            }
            var rows = [[Float]](repeating: [], count: texts.count)
            for name in Set(choice).sorted() {
                let members = texts.indices.filter { choice[$0] == name }
                let got = try await embedRows(members.map { texts[$0] }, counts: members.map { counts[$0] }, adapter: name, prefix: prefix)
                for (k, i) in members.enumerated() { rows[i] = got[k] }
            }
            return (rows, tokens)
        }
        return (try await embedRows(texts, counts: counts, adapter: model, prefix: prefix), tokens)
    }

    private func embedRows(_ texts: [String], counts: [Int], adapter: String, prefix: String) async throws -> [[Float]] {
        var rows = [[Float]?](repeating: nil, count: texts.count)
        var missing = [Int]()
        // The exact text: two texts a tokenizer tells apart ("Apple", "apple") embed differently.
        let keys = texts.map { "\(adapter)\u{1}\(prefix)\u{1}\($0)" }
        for i in texts.indices {
            if let embedCache {
                if let row = embedCache.value(forKey: keys[i]) { rows[i] = row; observer.cache("embed", "hit"); continue }
                observer.cache("embed", "miss")
            }
            missing.append(i)
        }
        if !missing.isEmpty {
            let got = try await embedBatches.submit(group: "\(adapter)\u{1}\(prefix)", items: missing.map { texts[$0] },
                                                    tokens: missing.reduce(0) { $0 + counts[$1] })
            for (k, i) in missing.enumerated() {
                rows[i] = got[k]
                embedCache?.insert(got[k], forKey: keys[i], bytes: got[k].count * 4 + keys[i].utf8.count + 64)
            }
        }
        return rows.map { $0! }
    }

    // MARK: Reranking

    /// Reranker scores of `documents` for `query`, in document order.
    public func rerank(query: String, documents: [String]) async throws -> [Float] {
        guard let rerankBatches else { throw ServingError.notFound("no reranker is served (start the server with --reranker)") }
        guard !query.isEmpty else { throw ServingError.unprocessable("the query is empty") }
        guard !documents.isEmpty else { throw ServingError.unprocessable("texts is empty: give at least one text") }
        guard documents.count <= configuration.maxClientBatchSize else {
            throw ServingError.payloadTooLarge("batch size \(documents.count) > maximum allowed batch size \(configuration.maxClientBatchSize)")
        }
        let tokens = documents.reduce(0) { $0 + min(maxInputLength, embedder.tokenizer.encode(query + " " + $1).count) }
        return try await rerankBatches.submit(group: "rerank", items: documents.map { RerankPair(query: query, document: $0) }, tokens: tokens)
    }

    // MARK: Search

    /// A FAISS search blocks its thread for up to milliseconds: searches run on a queue of their
    /// own, never on the cooperative threads that answer requests. Searches of one index only read
    /// it, so they may overlap.
    private static let searchQueue = DispatchQueue(label: "embedtune.search", attributes: .concurrent)

    /// The index's best `k` documents for `query`: the query embedded as the index's queries are
    /// (its adapter and query prompt), then the cache (exact text, then a near-duplicate query),
    /// then the index.
    public func search(query: String, k: Int) async throws -> (hits: [VectorIndex.Hit], cached: Bool) {
        guard let index else { throw ServingError.notFound("no index is served (start the server with --index)") }
        guard k > 0 && k <= 1000 else { throw ServingError.unprocessable("top_k must be between 1 and 1000 (got \(k))") }
        let key = "\(k)\u{1}\(SemanticCache<[Float]>.normalised(query))"
        if let hits = searchCache?.value(forKey: key) { observer.cache("search", "hit"); return (hits, true) }
        let (rows, _) = try await embed([query], model: indexAdapter ?? configuration.modelID, prefix: index.manifest.queryPrompt)
        var q = rows[0]
        let width = q.count
        q.withUnsafeMutableBufferPointer { l2NormalizeRows($0.baseAddress!, n: 1, c: width) }
        if let hits = searchCache?.nearestValue(to: q), hits.count >= min(k, index.manifest.count) {
            observer.cache("search", "near_hit")
            return (Array(hits.prefix(k)), true)
        }
        if searchCache != nil { observer.cache("search", "miss") }
        let query = q
        let hits = try await withCheckedThrowingContinuation { (done: CheckedContinuation<[VectorIndex.Hit], Error>) in
            Self.searchQueue.async { done.resume(with: Result { try index.search(queries: query, k: k)[0] }) }
        }
        searchCache?.insert(hits, forKey: key, embedding: q, bytes: q.count * 4 + hits.reduce(0) { $0 + $1.text.utf8.count + $1.id.utf8.count + 32 })
        return (hits, false)
    }
}
