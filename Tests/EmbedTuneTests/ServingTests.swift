import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneServing
import Foundation
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("Serving: cache, batching, routes, server")
struct ServingTests {
    @Test("the semantic cache evicts the least recently used entry first, keeps its byte bound and counts hits, near hits and misses")
    func semanticCache() {
        let cache = SemanticCache<Int>(maxEntries: 3, maxBytes: 100, similarityThreshold: 0.9)
        #expect(SemanticCache<Int>.normalised("  Ｈｅｌｌｏ\t WORLD \n") == "hello world")
        cache.insert(1, forKey: "a", embedding: [1, 0], bytes: 10)
        cache.insert(2, forKey: "b", embedding: [0, 1], bytes: 10)
        cache.insert(3, forKey: "c", embedding: [0.6, 0.8], bytes: 10)
        #expect(cache.value(forKey: "a") == 1)  // a is now the most recent: b goes next
        cache.insert(4, forKey: "d", bytes: 10)
        #expect(cache.value(forKey: "b") == nil && cache.value(forKey: "a") == 1 && cache.count == 3)
        // A near duplicate of a ([1, 0]): cosine 0.995 ≥ 0.9.
        #expect(cache.value(forKey: "a2") == nil)
        #expect(cache.nearestValue(to: [0.995, 0.0999]) == 1)
        #expect(cache.nearestValue(to: [0, -1]) == nil)
        // A large entry pushes out as many old ones as its bytes need (c, then d; a was used last);
        // one over the whole budget is not stored.
        cache.insert(5, forKey: "e", bytes: 85)
        #expect(cache.count == 2 && cache.storedBytes == 95)
        #expect(cache.value(forKey: "e") == 5 && cache.value(forKey: "a") == 1)
        cache.insert(6, forKey: "f", bytes: 101)
        #expect(cache.value(forKey: "f") == nil)
        let s = cache.statistics
        #expect(s.hits == 4 && s.nearHits == 1 && s.evictions == 3 && s.misses == 2)
    }

    @Test("the batch scheduler batches waiting requests of one group within the token budget, returns each its rows, and refuses when full")
    func scheduler() async throws {
        let batches = Locked<[(String, Int)]>([])
        let gate = DispatchSemaphore(value: 0)
        let scheduler = BatchScheduler<Int, Int>(maxBatchTokens: 10, maxQueued: 6) { group, items in
            if items == [-1] { gate.wait() }  // holds the worker until the queue is filled
            batches.mutate { $0.append((group, items.count)) }
            return items.map { $0 * 10 }
        }
        let blocker = Task { try await scheduler.submit(group: "x", items: [-1], tokens: 1) }
        while scheduler.queued > 0 { try await Task.sleep(nanoseconds: 1_000_000) }  // the worker holds the blocker
        var tasks = [Task<[Int], Error>]()
        for (i, group) in ["a", "b", "a", "a", "b", "a"].enumerated() {
            tasks.append(Task { try await scheduler.submit(group: group, items: [i, i + 100], tokens: 4) })
            while scheduler.queued < i + 1 { try await Task.sleep(nanoseconds: 1_000_000) }
        }
        await #expect(throws: BatchScheduler<Int, Int>.Overloaded.self) { try await scheduler.submit(group: "a", items: [7], tokens: 1) }
        gate.signal()
        _ = try await blocker.value
        for (i, t) in tasks.enumerated() { #expect(try await t.value == [i * 10, (i + 100) * 10]) }
        // Oldest first; each batch takes later requests of its group while 4 + 4 ≤ 10 tokens.
        #expect(batches.value.map(\.0) == ["x", "a", "b", "a"] && batches.value.map(\.1) == [1, 4, 4, 4])
        scheduler.shutdown()
    }

    static func service(cacheEntries: Int = 100) throws -> EmbeddingService {
        let model = Paths.fixtures.appendingPathComponent("tiny-qwen3")
        let embedder = try Embedder(directory: ModelDirectory(model))
        var adapters = [String: LoRAAdapter?]()
        for name in ["a0", "a1"] {
            try embedder.setAdapter(Paths.fixtures.appendingPathComponent("merge/adapters/\(name)"))
            adapters[name] = embedder.adapter
        }
        embedder.adapter = nil
        var configuration = EmbeddingService.Configuration()
        configuration.modelID = "tiny"
        configuration.maxClientBatchSize = 4
        configuration.maxInputLength = 16
        configuration.cacheEntries = cacheEntries
        return try EmbeddingService(configuration: configuration, embedder: embedder, adapters: adapters, router: nil, routerAdapters: [],
                                    reranker: nil, index: nil, indexAdapter: nil)
    }

    static func json(_ reply: ServerRoutes.Reply) throws -> Any { try JSONSerialization.jsonObject(with: reply.body, options: [.fragmentsAllowed]) }

    @Test("concurrent requests for different adapters come back as embed gives each text alone (≤ 1e-5), mixed batches grouped by adapter")
    func routesMatchEmbed() async throws {
        let service = try Self.service(cacheEntries: 0)
        let routes = ServerRoutes(service: service)
        let texts = ["hello world", "稻田养鱼", "a longer sentence about rice", "fish", "wheat harvest", "tea"]
        let models = ["tiny", "a0", "a1"]
        let replies = await withTaskGroup(of: (Int, Int, ServerRoutes.Reply).self) { group in
            for (m, model) in models.enumerated() {
                for (t, text) in texts.enumerated() {
                    group.addTask {
                        let body = try! JSONSerialization.data(withJSONObject: ["inputs": [text], "model": model, "normalize": false])
                        return (m, t, await routes.handle("/embed", body: body))
                    }
                }
            }
            var out = [(Int, Int, ServerRoutes.Reply)]()
            for await r in group { out.append(r) }
            return out
        }
        let reference = try Embedder(directory: ModelDirectory(Paths.fixtures.appendingPathComponent("tiny-qwen3")))
        var options = Embedder.Options()
        options.maxLength = 16
        for (m, t, reply) in replies {
            #expect(reply.status == 200)
            try reference.setAdapter(m == 0 ? nil : Paths.fixtures.appendingPathComponent("merge/adapters/\(models[m])"))
            let expected = try reference.embed([texts[t]], options: options).values
            let got = try #require((try Self.json(reply)) as? [[Double]])[0]
            #expect(got.count == expected.count)
            #expect(zip(got, expected).map { abs(Float($0) - $1) }.max()! <= 1e-5, "model \(models[m]) text \(t)")
        }
        service.shutdown()
    }

    @Test("model \"auto\" routes each text to its router domain's adapter, as embedding it with that adapter directly")
    func routed() async throws {
        let model = Paths.fixtures.appendingPathComponent("tiny-qwen3")
        let embedder = try Embedder(directory: ModelDirectory(model))
        var options = Embedder.Options()
        options.maxLength = 16
        let texts = ["rice and fish", "building permits"]
        let base = try embedder.embed(texts, options: options)
        // One domain per text, its centroid that text's base embedding.
        let router = try Router.train(kind: .centroid, domains: ["a0", "a1"], embeddings: [Array(base.values[0..<base.dim]), Array(base.values[base.dim...])],
                                      dim: base.dim, baseModel: model.path, queryPrompt: "")
        var adapters = [String: LoRAAdapter?]()
        var direct = [[Float]]()
        for (i, name) in ["a0", "a1"].enumerated() {
            try embedder.setAdapter(Paths.fixtures.appendingPathComponent("merge/adapters/\(name)"))
            adapters[name] = embedder.adapter
            direct.append(try embedder.embed([texts[i]], options: options).values)
        }
        embedder.adapter = nil
        var configuration = EmbeddingService.Configuration()
        configuration.maxInputLength = 16
        let service = try EmbeddingService(configuration: configuration, embedder: embedder, adapters: adapters, router: router,
                                           routerAdapters: ["a0", "a1"], reranker: nil, index: nil, indexAdapter: nil)
        #expect(try service.resolveModel(nil) == "auto")
        let (rows, _) = try await service.embed(texts, model: "auto", prefix: "")
        for i in 0..<2 { #expect(zip(rows[i], direct[i]).map { abs($0 - $1) }.max()! <= 1e-5, "text \(i)") }
        service.shutdown()
    }

    @Test("the OpenAI route: base64 is the float32 bytes, dimensions cut and renormalise, usage counts tokens")
    func openAI() async throws {
        let service = try Self.service()
        let routes = ServerRoutes(service: service)
        func post(_ object: [String: Any]) async throws -> [String: Any] {
            let reply = await routes.handle("/v1/embeddings", body: try JSONSerialization.data(withJSONObject: object))
            #expect(reply.status == 200)
            return try #require(try Self.json(reply) as? [String: Any])
        }
        let floats = try await post(["input": ["rice", "fish farming"], "model": "a1"])
        let base64 = try await post(["input": ["rice", "fish farming"], "model": "a1", "encoding_format": "base64"])
        let short = try await post(["input": "rice", "model": "a1", "dimensions": 8])
        let rows = (floats["data"] as! [[String: Any]]).map { $0["embedding"] as! [Double] }
        for (i, item) in (base64["data"] as! [[String: Any]]).enumerated() {
            let data = try #require(Data(base64Encoded: item["embedding"] as! String))
            let decoded = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            #expect(decoded == rows[i].map(Float.init))
        }
        let cut = (short["data"] as! [[String: Any]])[0]["embedding"] as! [Double]
        let head = Array(rows[0].prefix(8)), norm = head.reduce(0) { $0 + $1 * $1 }.squareRoot()
        #expect(cut.count == 8 && zip(cut, head).allSatisfy { abs($0 - $1 / norm) <= 1e-6 })
        let tokenizer = service.embedder.tokenizer
        let tokens = tokenizer.encode("rice").count + tokenizer.encode("fish farming").count
        #expect((floats["usage"] as! [String: Int])["prompt_tokens"] == tokens && floats["model"] as? String == "a1")
        service.shutdown()
    }

    @Test("bad requests are 4xx with a JSON error naming the problem, in TEI's or OpenAI's shape",
          arguments: [
            ("/embed", "{not json", 400, "malformed JSON"),
            ("/embed", "[1, 2]", 400, "JSON object"),
            ("/embed", "{\"inputs\": []}", 400, "empty"),
            ("/embed", "{\"inputs\": \"\"}", 400, "empty string"),
            ("/embed", "{\"inputs\": [1]}", 422, "must be a string"),
            ("/embed", "{\"inputs\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", 413, "maximum allowed batch size 4"),
            ("/embed", "{\"inputs\": \"one two three four five six seven eight nine ten eleven twelve thirteen fourteen\"}", 413, "tokens; the maximum is 16"),
            ("/embed", "{\"inputs\": \"x\", \"model\": \"nope\"}", 404, "unknown model \\\"nope\\\""),
            ("/v1/embeddings", "{\"input\": \"x\", \"model\": \"nope\"}", 404, "model_not_found"),
            ("/v1/embeddings", "{\"input\": \"x\", \"encoding_format\": \"int8\"}", 422, "encoding_format"),
            ("/v1/embeddings", "{\"input\": \"x\", \"dimensions\": 0}", 422, "dimensions"),
            ("/rerank", "{\"query\": \"q\", \"texts\": [\"a\"]}", 404, "no reranker"),
            ("/search", "{\"query\": \"q\"}", 404, "no index"),
            ("/tokenize", "{}", 422, "missing field"),
          ])
    func badRequests(_ route: String, _ body: String, _ status: Int, _ message: String) async throws {
        let service = try Self.service()
        let reply = await ServerRoutes(service: service).handle(route, body: Data(body.utf8))
        let text = String(decoding: reply.body, as: UTF8.self)
        #expect(reply.status == status && text.contains(message), "\(text)")
        let object = try #require(try Self.json(reply) as? [String: Any])
        #expect(route.hasPrefix("/v1/") ? (object["error"] as? [String: Any])?["message"] != nil : object["error_type"] != nil)
        service.shutdown()
    }

    @Test("embed serve answers on HTTP, /metrics is Prometheus text, and SIGTERM stops it after answering")
    func server() async throws {
        let model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path
        let process = Process()
        process.executableURL = Paths.executable
        process.arguments = ["serve", "--model", model, "--adapters", "a0=\(Paths.fixtures.path)/merge/adapters/a0", "--port", "0"]
        let err = Pipe()
        process.standardError = err
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        // The port from the start line: "embedtune: serving … on http://127.0.0.1:PORT".
        var log = "", port = 0
        while port == 0 {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { Issue.record("the server exited: \(log)"); return }
            log += String(decoding: chunk, as: UTF8.self)
            if let r = log.range(of: #"serving .* on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                port = Int(log[r].split(separator: ":").last!) ?? 0
            }
        }
        let base = "http://127.0.0.1:\(port)"
        func request(_ path: String, _ body: String? = nil) async throws -> (Int, Data) {
            var r = URLRequest(url: URL(string: base + path)!)
            if let body { r.httpMethod = "POST"; r.httpBody = Data(body.utf8) }
            let (data, response) = try await URLSession.shared.data(for: r)
            return ((response as! HTTPURLResponse).statusCode, data)
        }
        #expect(try await request("/health").0 == 200)
        let (status, data) = try await request("/v1/embeddings", "{\"input\": [\"rice\"], \"model\": \"a0\"}")
        #expect(status == 200 && String(decoding: data, as: UTF8.self).contains("\"object\":\"list\""))
        #expect(try await request("/embed", "{\"inputs\": \"x\", \"model\": \"zz\"}").0 == 404)
        let info = try JSONSerialization.jsonObject(with: try await request("/info").1) as! [String: Any]
        #expect(info["served_models"] as? [String] == ["a0", "tiny-qwen3"])
        let metrics = String(decoding: try await request("/metrics").1, as: UTF8.self)
        let sample = #/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$/#
        for line in metrics.split(separator: "\n") where !line.hasPrefix("# HELP ") && !line.hasPrefix("# TYPE ") {
            #expect(String(line).wholeMatch(of: sample) != nil, "not Prometheus text: \(line)")
        }
        #expect(metrics.contains("embedtune_requests_total{route=\"/v1/embeddings\",status=\"200\"} 1"))
        #expect(metrics.contains("embedtune_requests_total{route=\"/embed\",status=\"404\"} 1"))
        process.terminate()  // SIGTERM
        process.waitUntilExit()
        log += String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0 && log.contains("server stopped"), "\(log)")
    }
}

/// A value shared between tasks under a lock.
final class Locked<Value>: @unchecked Sendable {
    private var stored: Value
    private let lock = NSLock()
    init(_ value: Value) { stored = value }
    var value: Value { lock.withLock { stored } }
    func mutate(_ body: (inout Value) -> Void) { lock.withLock { body(&stored) } }
}
