import ArgumentParser
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneRetrieval
import EmbedTuneSearch
import EmbedTuneServing
import Foundation

/// `embedtune serve`: text-embeddings-inference's routes and OpenAI's /v1/embeddings over one
/// model with named domain adapters (picked by a request's `model` field or by a router), an
/// optional reranker and an optional index.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve embeddings, reranking and search over HTTP (TEI routes, OpenAI /v1/embeddings, /search, /metrics).",
        discussion: """
            Routes: POST /embed, /v1/embeddings, /rerank, /tokenize, /search; GET /info, /health, /metrics.
            A request's "model" names the base model (--model_id), an adapter (--adapter / --adapters names), or "auto" (--router).
            Stops on SIGTERM or SIGINT after the requests in flight are answered.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .spelled("model_id"), help: "The name the base model answers to (default: its directory's name).") var modelID: String?
    @Option(help: "A PEFT adapter, served under its directory's name and used by requests that name no model.") var adapter: String?
    @Option(help: "Domain adapters: comma-separated PATH or NAME=PATH (name: the directory's name).") var adapters: String?
    @Option(help: "A router (`embedtune route build`) over --adapters, in its domain order: requests for model \"auto\" (the default) are routed.")
    var router: String?
    @Option(help: "A reranker for /rerank (cross-encoder or Qwen3-Reranker directory).") var reranker: String?
    @Option(name: .spelled("reranker_adapter"), help: "PEFT adapter for --reranker.") var rerankerAdapter: String?
    @Option(help: "An index directory (`embedtune index build`) for /search; it must have been built with this model and one of the served adapters.")
    var index: String?
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port (0: any free one, printed at start).") var port = 8080
    @Option(name: .spelled("max_batch_tokens"), help: "Tokens one batch may hold (TEI's max_batch_tokens).") var maxBatchTokens = 16_384
    @Option(name: .spelled("max_concurrent_requests"), help: "Requests queued before the server answers 429.") var maxConcurrentRequests = 512
    @Option(name: .spelled("max_client_batch_size"), help: "Inputs one request may carry.") var maxClientBatchSize = 32
    @Option(name: .spelled("max_input_length"), help: "Tokens per input (default: the model's limit); longer inputs get 413 unless the request sets truncate.")
    var maxInputLength: Int?
    @Option(name: .spelled("max_request_bytes"), help: "Largest request body (413 above it).") var maxRequestBytes = 2 << 20
    @Option(name: .spelled("cache_entries"), help: "Entries per cache (embeddings, search results); 0 turns the caches off.") var cacheEntries = 10_000
    @Option(name: .spelled("cache_mb"), help: "Megabytes per cache.") var cacheMB = 64
    @Option(name: .spelled("search_cache_similarity"),
            help: "Near-duplicate hits for /search: a query whose embedding has cosine ≥ this with a cached query gets its hits (1 or more: exact text only).")
    var searchCacheSimilarity: Float = 0.99
    @Option(help: "IVF indexes: inverted lists visited per /search query (FAISS's nprobe; default the index's own, 1).") var nprobe: Int?
    @Option(name: .spelled("ef_search"), help: "HNSW indexes: candidate list size during /search (FAISS's efSearch).") var efSearch: Int?
    @Option(help: "Threads of the model's forward pass (default: all cores).") var threads: Int?
    @OptionGroup var int8Options: Int8Options

    func validate() throws {
        if router != nil && adapters == nil { throw ValidationError("--router needs --adapters (its domains' adapters, in order)") }
        if adapter != nil && adapters != nil { throw ValidationError("use --adapter or --adapters, not both") }
        if rerankerAdapter != nil && reranker == nil { throw ValidationError("--reranker_adapter needs --reranker") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        for (flag, value) in [("--max_batch_tokens", maxBatchTokens), ("--max_concurrent_requests", maxConcurrentRequests),
                              ("--max_client_batch_size", maxClientBatchSize), ("--max_request_bytes", maxRequestBytes),
                              ("--cache_mb", cacheMB)] where value < 1 {
            throw ValidationError("\(flag) must be at least 1")
        }
        guard cacheEntries >= 0 else { throw ValidationError("--cache_entries must be 0 (off) or more") }
        if let maxInputLength, maxInputLength < 2 { throw ValidationError("--max_input_length must be at least 2") }
        if (nprobe != nil || efSearch != nil) && index == nil { throw ValidationError("--nprobe and --ef_search need --index") }
        if let nprobe, nprobe < 1 { throw ValidationError("--nprobe must be at least 1") }
        if let efSearch, efSearch < 1 { throw ValidationError("--ef_search must be at least 1") }
    }

    /// NAME=PATH or PATH (named by its last path component), in order.
    static func namedAdapters(_ list: String) throws -> [(name: String, path: String)] {
        try list.split(separator: ",").map { item in
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            let path = parts[parts.count - 1], name = parts.count == 2 ? parts[0] : URL(fileURLWithPath: path).lastPathComponent
            guard !name.isEmpty, !path.isEmpty else { throw ValidationError("--adapters: \"\(item)\" is not PATH or NAME=PATH") }
            return (name, path)
        }
    }

    func run() throws {
        try runReportingErrors {
            if let threads { BLASRuntime.setThreads(threads) }
            let modelURL = URL(fileURLWithPath: modelOptions.model).standardizedFileURL
            let directory = try modelOptions.directory()
            let embedder = try Embedder(directory: directory)
            try int8Options.apply(to: embedder)
            var configuration = EmbeddingService.Configuration()
            configuration.modelID = modelID ?? modelURL.lastPathComponent
            configuration.maxBatchTokens = maxBatchTokens
            configuration.maxConcurrentRequests = maxConcurrentRequests
            configuration.maxClientBatchSize = maxClientBatchSize
            configuration.maxInputLength = maxInputLength
            configuration.cacheEntries = cacheEntries
            configuration.cacheBytes = cacheMB << 20
            configuration.searchCacheSimilarity = searchCacheSimilarity >= 1 ? nil : searchCacheSimilarity

            // Adapters, loaded once; the base model is served under the model id.
            var named = [(name: String, path: String)]()
            if let adapter { named = [(URL(fileURLWithPath: adapter).lastPathComponent, adapter)] }
            if let adapters { named = try Self.namedAdapters(adapters) }
            var loaded = [String: LoRAAdapter?](), fingerprints = [String: String]()
            for (name, path) in named {
                guard loaded[name] == nil, name != configuration.modelID, name != "auto" else {
                    throw ValidationError("adapter name \"\(name)\" is used twice (or is the model id or \"auto\"): name them NAME=PATH")
                }
                let url = URL(fileURLWithPath: path).standardizedFileURL
                try embedder.setAdapter(url)
                loaded[name] = embedder.adapter
                fingerprints[name] = try ModelFingerprint.of(url)
            }
            embedder.adapter = nil
            if adapter != nil { configuration.defaultModel = named[0].name }
            var routerValue: Router?
            if let router {
                let r = try Router.load(URL(fileURLWithPath: router))
                guard r.domains.count == named.count else {
                    throw FormatError("--adapters has \(named.count) adapter(s), the router \(router) has \(r.domains.count) domains (\(r.domains.joined(separator: ", ")))")
                }
                guard r.dim == embedder.backbone.hiddenSize else {
                    throw FormatError("the router was built on a \(r.dim)-dimensional model, \(modelOptions.model) is \(embedder.backbone.hiddenSize)-dimensional")
                }
                routerValue = r
                configuration.defaultModel = "auto"
            }
            var rerankerOptions = RerankerOptions()
            rerankerOptions.adapter = rerankerAdapter.map { URL(fileURLWithPath: $0) }
            let rerankerValue = try reranker.map { try loadReranker(ModelDirectory(URL(fileURLWithPath: $0)), options: rerankerOptions) }

            var indexValue: VectorIndex?, indexAdapter: String?
            if let index {
                let vectors = try VectorIndex(directory: URL(fileURLWithPath: index))
                let modelFingerprint = try ModelFingerprint.of(modelURL)
                // The served adapter whose fingerprint the index records, the router for a routed
                // index, or the base model.
                if let routing = vectors.manifest.routing {
                    guard let router else {
                        throw FormatError(file: index, "is a routed index: serve it with --router \(routing.router) and --adapters in its domain order")
                    }
                    try routing.check(router: URL(fileURLWithPath: router), adapters: named.map { URL(fileURLWithPath: $0.path) },
                                      index: URL(fileURLWithPath: index))
                    // The server routes each query to its most likely adapter; an index whose documents
                    // near the threshold mixed two adapters would see its queries embedded differently.
                    guard !routing.mix || routing.threshold == 0 else {
                        throw FormatError(file: index, "mixes adapters below a route threshold of \(routing.threshold); the server routes to one adapter: build the index with --route_mix false to serve it (`embedtune search` handles it as built)")
                    }
                    indexAdapter = "auto"
                } else if let wanted = vectors.manifest.adapterFingerprint {
                    guard let name = fingerprints.first(where: { $0.value == wanted })?.key else {
                        throw FormatError(file: index, "was built with adapter \(vectors.manifest.adapter ?? "?"), which is not among the served adapters")
                    }
                    indexAdapter = name
                }
                try vectors.checkQueryModel(fingerprint: modelFingerprint, adapterFingerprint: vectors.manifest.adapterFingerprint,
                                            describedAs: modelURL.path)
                if let nprobe { try vectors.faiss.setParameter("nprobe", Double(nprobe)) }
                if let efSearch { try vectors.faiss.setParameter("efSearch", Double(efSearch)) }
                indexValue = vectors
            }

            let metrics = ServerMetrics()
            var observer = EmbeddingService.Observer()
            observer.batch = { model, r in
                metrics.batch(model: model, requests: r.requests, items: r.items, tokens: r.tokens, queueSeconds: r.queueSeconds, runSeconds: r.runSeconds)
            }
            observer.rerankBatch = { r in
                metrics.batch(model: "rerank", requests: r.requests, items: r.items, tokens: r.tokens, queueSeconds: r.queueSeconds, runSeconds: r.runSeconds)
            }
            observer.cache = { cache, outcome in metrics.cache(cache, outcome: outcome) }
            let service = try EmbeddingService(configuration: configuration, embedder: embedder, adapters: loaded, router: routerValue,
                                               routerAdapters: named.map(\.name), reranker: rerankerValue, index: indexValue,
                                               indexAdapter: indexAdapter, observer: observer)
            var routes = ServerRoutes(service: service)
            routes.info = ["model_dtype": int8Options.int8 ? "int8 (\(Int8Path.active.name))" : "float32", "version": BuildInfo.commit ?? "unknown"]
            var server = EmbeddingServer(routes: routes, metrics: metrics)
            server.host = host
            server.port = port
            server.maxRequestBytes = maxRequestBytes
            let models = service.servedModels.joined(separator: ", ")
            let host = self.host, ready = server
            try blockingRun {
                try await ready.run { port in
                    FileHandle.standardError.write(Data("embedtune: serving \(models) on http://\(host):\(port)\n".utf8))
                }
            }
            FileHandle.standardError.write(Data("embedtune: server stopped\n".utf8))
        }
    }
}

/// Runs async work from a synchronous command, blocking the calling thread until it finishes.
func blockingRun(_ work: @escaping @Sendable () async throws -> Void) throws {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var failure: Error?
    Task.detached {
        do { try await work() } catch { failure = error }
        done.signal()
    }
    done.wait()
    if let failure { throw failure }
}
