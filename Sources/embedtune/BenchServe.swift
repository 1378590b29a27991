import ArgumentParser
import EmbedTuneFormats
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `embedtune bench serve`: a bounded load generator for a running `embedtune serve`. N clients
/// each send one request at a time for a fixed time (closed loop: at most N requests in flight);
/// every 200 response is checked against reference embeddings of the same text (`embedtune embed`
/// output), so a lost, mixed-up or wrong response is counted, not just a slow one.
struct ServeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Load test a running server: throughput, p50/p99, status counts, responses checked against reference embeddings.")

    @Option(help: "The server's base URL.") var url = "http://127.0.0.1:8080"
    @Option(help: "Texts to send (.txt, one per line), row i of --reference being text i's embedding.") var texts: String
    @Option(help: "Reference embeddings (.npy from `embedtune embed` of --texts with the served model and adapter).") var reference: String
    @Option(help: "Concurrent clients, one row each (comma-separated).") var clients = "1,8,64"
    @Option(help: "Seconds per row.") var seconds: Double = 10
    @Option(name: .spelled("texts_per_request"), help: "Inputs per request.") var textsPerRequest = 1
    @Option(help: "The request's model field (default: none, the server's default model).") var model: String?
    @Option(help: "Largest accepted |Δ| between a response and its reference row.") var tolerance: Float = 1e-5
    @Option(help: "Write results as JSON here.") var json: String?

    struct Row {
        var ok = 0, tooMany = 0, clientErrors = 0, serverErrors = 0, transportErrors = 0, mismatched = 0
        var maxDelta: Float = 0
        var latencies = [Double]()
    }

    func run() throws {
        try runReportingErrors {
            let lines = try readTexts(texts)
            let ref = try NPY.read(URL(fileURLWithPath: reference))
            guard ref.rows == lines.count else { throw FormatError(file: reference, "\(ref.rows) rows, but \(texts) has \(lines.count) texts") }
            let levels = try IndexBench.integers(clients, "--clients")
            guard let endpoint = URL(string: url + "/embed") else { throw ValidationError("--url \(url) is not a URL") }
            var rows = [[String: Any]]()
            for n in levels {
                let started = Date()
                let result = try measure(clients: n, endpoint: endpoint, texts: lines, reference: ref.values, dim: ref.columns)
                let elapsed = Date().timeIntervalSince(started)
                let sorted = result.latencies.sorted()
                func percentile(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(p * Double(sorted.count)))] * 1000 }
                rows.append([
                    "clients": n, "seconds": elapsed, "requests_per_s": Double(result.ok) / elapsed,
                    "texts_per_s": Double(result.ok * textsPerRequest) / elapsed, "p50_ms": percentile(0.5), "p99_ms": percentile(0.99),
                    "ok": result.ok, "429": result.tooMany, "4xx": result.clientErrors, "5xx": result.serverErrors,
                    "lost": result.transportErrors, "mismatched": result.mismatched, "max_delta": Double(result.maxDelta),
                ])
            }
            try report("bench serve (\(url), \(textsPerRequest) text(s) per request)", rows,
                       columns: ["clients", "requests_per_s", "texts_per_s", "p50_ms", "p99_ms", "ok", "429", "4xx", "5xx", "lost", "mismatched", "max_delta"],
                       jsonPath: json)
            let bad = rows.reduce(0) { $0 + ($1["5xx"] as! Int) + ($1["lost"] as! Int) + ($1["mismatched"] as! Int) }
            if bad > 0 { throw FormatError("\(bad) responses were 5xx, lost or did not match their reference") }
        }
    }

    func measure(clients: Int, endpoint: URL, texts: [String], reference: [Float], dim: Int) throws -> Row {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = clients
        configuration.timeoutIntervalForRequest = 60
        let session = URLSession(configuration: configuration)
        let deadline = Date().addingTimeInterval(seconds)
        let perRequest = textsPerRequest, model = self.model, tolerance = self.tolerance
        nonisolated(unsafe) var total = Row()
        try blockingRun {
            let merged = await withTaskGroup(of: Row.self) { group -> Row in
                for client in 0..<clients {
                    group.addTask {
                        var row = Row(), next = client * 7919
                        while Date() < deadline {
                            let picks = (0..<perRequest).map { (next + $0) % texts.count }
                            next += perRequest
                            var body: [String: Any] = ["inputs": picks.map { texts[$0] }]
                            if let model { body["model"] = model }
                            var request = URLRequest(url: endpoint)
                            request.httpMethod = "POST"
                            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                            request.httpBody = try? JSONSerialization.data(withJSONObject: body)
                            let t0 = Date()
                            guard let (data, response) = try? await session.data(for: request), let http = response as? HTTPURLResponse else {
                                row.transportErrors += 1
                                continue
                            }
                            let latency = Date().timeIntervalSince(t0)
                            switch http.statusCode {
                            case 200:
                                row.latencies.append(latency)
                                guard let rows = (try? JSONSerialization.jsonObject(with: data)) as? [[Double]], rows.count == picks.count else {
                                    row.mismatched += 1
                                    continue
                                }
                                var good = true
                                for (k, i) in picks.enumerated() {
                                    guard rows[k].count == dim else { good = false; break }
                                    for d in 0..<dim {
                                        let delta = abs(Float(rows[k][d]) - reference[i * dim + d])
                                        row.maxDelta = max(row.maxDelta, delta)
                                        if delta > tolerance { good = false }
                                    }
                                }
                                if good { row.ok += 1 } else { row.mismatched += 1 }
                            case 429: row.tooMany += 1
                            case 400..<500: row.clientErrors += 1
                            default: row.serverErrors += 1
                            }
                        }
                        return row
                    }
                }
                var all = Row()
                for await r in group {
                    all.ok += r.ok; all.tooMany += r.tooMany; all.clientErrors += r.clientErrors; all.serverErrors += r.serverErrors
                    all.transportErrors += r.transportErrors; all.mismatched += r.mismatched; all.maxDelta = max(all.maxDelta, r.maxDelta)
                    all.latencies += r.latencies
                }
                return all
            }
            total = merged
        }
        session.invalidateAndCancel()
        return total
    }
}
