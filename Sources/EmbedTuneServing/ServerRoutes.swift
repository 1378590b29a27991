import EmbedTuneFormats
import EmbedTuneModels
import Foundation

/// The routes' JSON, as text-embeddings-inference and the OpenAI embeddings API spell it: a
/// request body in, a status and a JSON body out. Kept apart from the HTTP server so every
/// route's contract is testable without sockets.
public struct ServerRoutes: Sendable {
    public let service: EmbeddingService
    /// Extra fields of /info (the dtype, the server's version).
    public var info: [String: String] = [:]

    public init(service: EmbeddingService) { self.service = service }

    public struct Reply: Sendable {
        public var status: Int
        public var body: Data
        public var contentType = "application/json"
    }

    public static let routes = ["/embed", "/v1/embeddings", "/rerank", "/tokenize", "/search"]

    /// Dispatches a POST to `route`; every failure is a JSON error with its status (TEI's shape
    /// {"error", "error_type"}, or OpenAI's {"error": {"message", "type", "code"}} on /v1/…).
    public func handle(_ route: String, body: Data) async -> Reply {
        let openAI = route.hasPrefix("/v1/")
        do {
            let request: [String: Any]
            do {
                guard let object = try JSONSerialization.jsonObject(with: body) as? [String: Any] else {
                    throw ServingError.badRequest("the request body must be a JSON object")
                }
                request = object
            } catch let error as ServingError { throw error } catch {
                throw ServingError.badRequest("malformed JSON in the request body: \(error.localizedDescription)")
            }
            let reply: Any
            switch route {
            case "/embed": reply = try await embed(request)
            case "/v1/embeddings": reply = try await openAIEmbeddings(request)
            case "/rerank": reply = try await rerank(request)
            case "/tokenize": reply = try tokenize(request)
            case "/search": reply = try await search(request)
            default: throw ServingError.notFound("no route \(route)")
            }
            return Reply(status: 200, body: try JSONSerialization.data(withJSONObject: reply, options: [.withoutEscapingSlashes]))
        } catch {
            return Self.errorReply(error, openAI: openAI)
        }
    }

    public static func errorReply(_ error: Error, openAI: Bool) -> Reply {
        let status: Int, message: String, kind: String
        switch error {
        case let e as ServingError:
            status = e.status
            message = e.description
            if case .empty = e { kind = "Empty" }
            else { kind = status == 413 || status == 422 || status == 400 ? "Validation" : status == 404 ? "NotFound" : "Backend" }
        case let e as BatchScheduler<String, [Float]>.Overloaded:
            (status, message, kind) = (429, e.description, "Overloaded")
        case let e as BatchScheduler<EmbeddingService.RerankPair, Float>.Overloaded:
            (status, message, kind) = (429, e.description, "Overloaded")
        default:
            (status, message, kind) = (500, "\(error)", "Backend")
        }
        let object: [String: Any] = openAI
            ? ["error": ["message": message, "type": status == 429 ? "rate_limit_error" : status >= 500 ? "server_error" : "invalid_request_error",
                         "code": status == 404 ? "model_not_found" : NSNull(), "param": NSNull()] as [String: Any]]
            : ["error": message, "error_type": kind]
        return Reply(status: status, body: (try? JSONSerialization.data(withJSONObject: object)) ?? Data())
    }

    // MARK: Request fields

    /// `inputs` / `input`: a string or an array of strings.
    static func texts(_ request: [String: Any], _ field: String) throws -> [String] {
        switch request[field] {
        case let s as String: return [s]
        case let a as [Any]:
            return try a.enumerated().map { i, v in
                guard let s = v as? String else { throw ServingError.unprocessable("\(field)[\(i)] must be a string (token arrays are not accepted)") }
                return s
            }
        case nil: throw ServingError.unprocessable("missing field \"\(field)\"")
        default: throw ServingError.unprocessable("\"\(field)\" must be a string or an array of strings")
        }
    }

    static func bool(_ request: [String: Any], _ field: String, default value: Bool) throws -> Bool {
        guard let v = request[field], !(v is NSNull) else { return value }
        guard let b = v as? Bool else { throw ServingError.unprocessable("\"\(field)\" must be true or false") }
        return b
    }

    static func int(_ request: [String: Any], _ field: String) throws -> Int? {
        guard let v = request[field], !(v is NSNull) else { return nil }
        guard let n = v as? NSNumber, !(v is Bool), n.doubleValue == n.doubleValue.rounded(), abs(n.doubleValue) < 1e9 else {
            throw ServingError.unprocessable("\"\(field)\" must be an integer")
        }
        return n.intValue
    }

    static func string(_ request: [String: Any], _ field: String) throws -> String? {
        guard let v = request[field], !(v is NSNull) else { return nil }
        guard let s = v as? String else { throw ServingError.unprocessable("\"\(field)\" must be a string") }
        return s
    }

    /// The prompt a request asks for by name (TEI's prompt_name), else the model's default one.
    func prompt(_ request: [String: Any]) throws -> String {
        let directory = service.embedder.directory
        if let name = try Self.string(request, "prompt_name") {
            guard let p = directory.prompts[name] else {
                throw ServingError.unprocessable("prompt \"\(name)\" is not one of the model's prompts (\(directory.prompts.keys.sorted().joined(separator: ", ")))")
            }
            return p
        }
        return directory.defaultPromptName.flatMap { directory.prompts[$0] } ?? ""
    }

    /// Rows cut to their first `dimensions` components and renormalised (Matryoshka), or as they are.
    static func shaped(_ rows: [[Float]], dimensions: Int?, normalize: Bool) throws -> [[Float]] {
        try rows.map { row in
            var r = row
            if let d = dimensions {
                guard d > 0 && d <= row.count else { throw ServingError.unprocessable("dimensions must be between 1 and \(row.count) (got \(d))") }
                r = Array(row.prefix(d))
            }
            if normalize || dimensions != nil {
                let norm = r.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
                if norm > 0 { r = r.map { $0 / norm } }
            }
            return r
        }
    }

    // MARK: Routes

    func embed(_ request: [String: Any]) async throws -> Any {
        let texts = try Self.texts(request, "inputs")
        let model = try service.resolveModel(Self.string(request, "model"))
        let (rows, _) = try await service.embed(texts, model: model, prefix: prompt(request), truncate: Self.bool(request, "truncate", default: false))
        return try Self.shaped(rows, dimensions: Self.int(request, "dimensions"), normalize: Self.bool(request, "normalize", default: true))
            .map { $0.map(Double.init) }
    }

    func openAIEmbeddings(_ request: [String: Any]) async throws -> Any {
        let texts = try Self.texts(request, "input")
        let model = try service.resolveModel(Self.string(request, "model"))
        let format = try Self.string(request, "encoding_format") ?? "float"
        guard format == "float" || format == "base64" else {
            throw ServingError.unprocessable("encoding_format must be \"float\" or \"base64\" (got \"\(format)\")")
        }
        let (rows, tokens) = try await service.embed(texts, model: model, prefix: prompt(request))
        // Unit vectors, as OpenAI's API and TEI's OpenAI route return them.
        let shaped = try Self.shaped(rows, dimensions: Self.int(request, "dimensions"), normalize: true)
        return [
            "object": "list",
            "model": model,
            "data": shaped.enumerated().map { i, row -> [String: Any] in
                let embedding: Any = format == "base64"
                    ? row.withUnsafeBytes { Data($0).base64EncodedString() }  // little-endian float32, as OpenAI's
                    : row.map(Double.init)
                return ["object": "embedding", "index": i, "embedding": embedding]
            },
            "usage": ["prompt_tokens": tokens, "total_tokens": tokens],
        ] as [String: Any]
    }

    func rerank(_ request: [String: Any]) async throws -> Any {
        guard let query = try Self.string(request, "query") else { throw ServingError.unprocessable("missing field \"query\"") }
        let texts = try Self.texts(request, "texts")
        let scores = try await service.rerank(query: query, documents: texts)
        let raw = try Self.bool(request, "raw_scores", default: false), withText = try Self.bool(request, "return_text", default: false)
        return scores.enumerated().sorted { $0.element != $1.element ? $0.element > $1.element : $0.offset < $1.offset }.map { i, s -> [String: Any] in
            // Scores are probabilities (sigmoid / softmax of the yes logit); raw_scores gives their logit back.
            var out: [String: Any] = ["index": i, "score": Double(raw && s > 0 && s < 1 ? log(s / (1 - s)) : s)]
            if withText { out["text"] = texts[i] }
            return out
        }
    }

    func tokenize(_ request: [String: Any]) throws -> Any {
        let texts = try Self.texts(request, "inputs")
        guard texts.count <= service.configuration.maxClientBatchSize else {
            throw ServingError.payloadTooLarge("batch size \(texts.count) > maximum allowed batch size \(service.configuration.maxClientBatchSize)")
        }
        let special = try Self.bool(request, "add_special_tokens", default: true)
        let tokenizer = service.embedder.tokenizer
        return texts.map { text in
            tokenizer.encode(text, addSpecialTokens: special).map { id -> [String: Any] in
                let piece = tokenizer.decode([id]), plain = tokenizer.decode([id], skipSpecialTokens: true)
                return ["id": Int(id), "text": piece, "special": plain.isEmpty && !piece.isEmpty, "start": NSNull(), "stop": NSNull()]
            }
        }
    }

    func search(_ request: [String: Any]) async throws -> Any {
        let k = try Self.int(request, "top_k") ?? 10
        func hits(_ query: String) async throws -> [String: Any] {
            let (hits, cached) = try await service.search(query: query, k: k)
            return ["cached": cached, "hits": hits.enumerated().map { rank, h -> [String: Any] in
                ["rank": rank + 1, "_id": h.id, "score": Double(h.score), "text": h.text]
            }]
        }
        if request["queries"] != nil {
            let queries = try Self.texts(request, "queries")
            guard queries.count <= service.configuration.maxClientBatchSize else {
                throw ServingError.payloadTooLarge("batch size \(queries.count) > maximum allowed batch size \(service.configuration.maxClientBatchSize)")
            }
            var results = [[String: Any]]()
            for q in queries { results.append(try await hits(q)) }
            return ["results": results]
        }
        guard let query = try Self.string(request, "query") else { throw ServingError.unprocessable("missing field \"query\" (or \"queries\")") }
        return try await hits(query)
    }

    /// GET /info.
    public func infoReply() -> Reply {
        let s = service
        var object: [String: Any] = [
            "model_id": s.configuration.modelID, "model_type": ["embedding": ["pooling": s.embedder.directory.pooling.rawValue]],
            "max_concurrent_requests": s.configuration.maxConcurrentRequests, "max_input_length": s.maxInputLength,
            "max_batch_tokens": s.configuration.maxBatchTokens, "max_client_batch_size": s.configuration.maxClientBatchSize,
            "tokenization_workers": 1, "served_models": s.servedModels, "dimension": s.embedder.backbone.hiddenSize,
            "reranker": s.reranker != nil,
        ]
        for (k, v) in info { object[k] = v }
        if let index = s.index {
            object["index"] = ["documents": index.manifest.count, "index_factory": index.manifest.faissFactory,
                               "precision": index.manifest.precision, "adapter": s.indexAdapter ?? s.configuration.modelID]
        }
        return Reply(status: 200, body: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }
}
