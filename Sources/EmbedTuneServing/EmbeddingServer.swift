import Foundation
import Hummingbird
import Prometheus

/// Prometheus metrics of the server (GET /metrics): requests by route and status, request
/// durations, queue time, batch sizes in requests, items and tokens, cache outcomes, queue depth.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    static let seconds: [Duration] = [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                      .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                                      .milliseconds(2500), .seconds(5), .seconds(10)]
    static let sizes: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
    private let queueDepth: Gauge

    public init() {
        queueDepth = registry.makeGauge(descriptor: .init(namespace: "embedtune", metricName: "queue", unitName: "depth",
                                                          helpText: "Requests waiting for a batch"))
    }

    private func descriptor(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "embedtune", metricName: name, unitName: unit, helpText: help)
    }

    public func request(route: String, status: Int, seconds: Double) {
        registry.makeCounter(descriptor: descriptor("requests", "total", "HTTP requests by route and status"),
                             labels: [("route", route), ("status", String(status))]).increment()
        registry.makeDurationHistogram(descriptor: descriptor("request_duration", "seconds", "Request durations by route"),
                                       labels: [("route", route)], buckets: Self.seconds)
            .record(.nanoseconds(Int64(seconds * 1e9)))
    }

    public func batch(model: String, requests: Int, items: Int, tokens: Int, queueSeconds: Double, runSeconds: Double) {
        let labels = [("model", model)]
        registry.makeDurationHistogram(descriptor: descriptor("queue_time", "seconds", "Time a request waited for its batch"),
                                       labels: labels, buckets: Self.seconds).record(.nanoseconds(Int64(queueSeconds * 1e9)))
        registry.makeDurationHistogram(descriptor: descriptor("batch_inference", "seconds", "Forward time of a batch"),
                                       labels: labels, buckets: Self.seconds).record(.nanoseconds(Int64(runSeconds * 1e9)))
        registry.makeValueHistogram(descriptor: descriptor("batch_size", "requests", "Requests per batch"), labels: labels,
                                    buckets: Self.sizes).record(Double(requests))
        registry.makeValueHistogram(descriptor: descriptor("batch_size", "items", "Texts per batch"), labels: labels,
                                    buckets: Self.sizes).record(Double(items))
        registry.makeValueHistogram(descriptor: descriptor("batch_size", "tokens", "Tokens per batch"), labels: labels,
                                    buckets: Self.sizes).record(Double(tokens))
    }

    public func cache(_ cache: String, outcome: String) {
        registry.makeCounter(descriptor: descriptor("cache", "total", "Cache lookups by cache and outcome (hit, near_hit, miss)"),
                             labels: [("cache", cache), ("outcome", outcome)]).increment()
    }

    public func exposition(queued: Int) -> String {
        queueDepth.set(Double(queued))
        return registry.emitToString()
    }
}

/// The HTTP server: Hummingbird routes over `ServerRoutes`, request size limits, and graceful
/// shutdown (SIGTERM / SIGINT stop accepting, finish the requests in flight, then the batches).
public struct EmbeddingServer {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Largest request body accepted (413 above it).
    public var maxRequestBytes = 2 << 20
    public let routes: ServerRoutes
    public let metrics: ServerMetrics

    public init(routes: ServerRoutes, metrics: ServerMetrics) {
        self.routes = routes
        self.metrics = metrics
    }

    static func response(_ reply: ServerRoutes.Reply) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = reply.contentType
        var buffer = ByteBuffer()
        buffer.writeBytes(reply.body)
        return Response(status: .init(code: reply.status), headers: headers, body: .init(byteBuffer: buffer))
    }

    /// Serves until a shutdown signal; `onListening` gets the bound port (useful with port 0).
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let router = Router()
        let routes = self.routes, metrics = self.metrics, limit = maxRequestBytes
        for route in ServerRoutes.routes {
            router.post(RouterPath(stringLiteral: route)) { request, _ -> Response in
                let started = ContinuousClock.now
                var request = request
                let reply: ServerRoutes.Reply
                do {
                    let body = try await request.collectBody(upTo: limit)
                    reply = await routes.handle(route, body: Data(buffer: body))
                } catch {
                    reply = ServerRoutes.errorReply(
                        ServingError.payloadTooLarge("the request body is larger than \(limit) bytes"), openAI: route.hasPrefix("/v1/"))
                }
                let elapsed = ContinuousClock.now - started
                metrics.request(route: route, status: reply.status,
                                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
                return Self.response(reply)
            }
        }
        router.get("/health") { _, _ -> Response in Self.response(.init(status: 200, body: Data())) }
        router.get("/info") { _, _ -> Response in Self.response(routes.infoReply()) }
        router.get("/metrics") { _, _ -> Response in
            Self.response(.init(status: 200, body: Data(metrics.exposition(queued: routes.service.queued).utf8),
                                contentType: "text/plain; version=0.0.4"))
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "embedtune"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) })
        defer { routes.service.shutdown() }
        try await app.runService()
    }
}
