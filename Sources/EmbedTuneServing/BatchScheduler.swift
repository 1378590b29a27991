import Foundation

/// Dynamic batching for one model, as text-embeddings-inference batches: requests wait in a
/// bounded FIFO queue; one worker thread (the model is not shared between threads) takes the
/// oldest request and every later queued request of the same group (the same adapter and
/// prompt) while their tokens fit `maxBatchTokens` (a single larger request runs alone), runs
/// them as one batch, and hands each request its own rows. A full queue refuses at once
/// (`Overloaded`: HTTP 429), so memory stays bounded by maxQueued × the request size limit.
public final class BatchScheduler<Item: Sendable, Output: Sendable>: @unchecked Sendable {
    public struct Overloaded: Error, CustomStringConvertible {
        public let queued: Int
        public var description: String { "the server is busy: \(queued) requests are queued; retry later" }
    }

    /// What a batch took: queue time of its oldest request, items, tokens, run time.
    public struct BatchRecord: Sendable {
        public var requests: Int, items: Int, tokens: Int
        public var queueSeconds: Double, runSeconds: Double
    }

    private struct Job {
        var group: String
        var items: [Item]
        var tokens: Int
        var enqueued: Date
        var finish: @Sendable (Result<[Output], Error>) -> Void
    }

    public let maxBatchTokens: Int
    public let maxQueued: Int
    private let execute: (_ group: String, _ items: [Item]) throws -> [Output]
    private let record: @Sendable (BatchRecord) -> Void
    private let condition = NSCondition()
    private var queue = [Job]()
    private var stopping = false

    /// `execute` runs one batch of one group on the worker thread and returns one output per item.
    public init(maxBatchTokens: Int, maxQueued: Int, record: @escaping @Sendable (BatchRecord) -> Void = { _ in },
                execute: @escaping (_ group: String, _ items: [Item]) throws -> [Output]) {
        self.maxBatchTokens = maxBatchTokens
        self.maxQueued = maxQueued
        self.execute = execute
        self.record = record
        // The worker holds the scheduler until `shutdown` lets it finish.
        let thread = Thread { self.loop() }
        thread.name = "embedtune-batch"
        thread.stackSize = 16 << 20
        thread.start()
    }

    public var queued: Int { condition.withLock { queue.count } }

    /// Runs `items` (with `tokens` tokens in all) in a batch of `group`; outputs in item order.
    public func submit(group: String, items: [Item], tokens: Int) async throws -> [Output] {
        if items.isEmpty { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            let job = Job(group: group, items: items, tokens: tokens, enqueued: Date()) { continuation.resume(with: $0) }
            condition.lock()
            defer { condition.unlock() }
            guard !stopping else {
                continuation.resume(throwing: Overloaded(queued: queue.count))
                return
            }
            guard queue.count < maxQueued else {
                continuation.resume(throwing: Overloaded(queued: queue.count))
                return
            }
            queue.append(job)
            condition.signal()
        }
    }

    /// Lets the queued requests finish, then stops the worker.
    public func shutdown() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping { condition.unlock(); return }
            // The oldest request, then later ones of its group that fit the token budget.
            let first = queue.removeFirst()
            var batch = [first], tokens = first.tokens
            var i = 0
            while i < queue.count {
                if queue[i].group == first.group && tokens + queue[i].tokens <= maxBatchTokens {
                    tokens += queue[i].tokens
                    batch.append(queue.remove(at: i))
                } else {
                    i += 1
                }
            }
            condition.unlock()

            let started = Date()
            let items = batch.flatMap(\.items)
            let result = Result { try execute(first.group, items) }
            let runSeconds = Date().timeIntervalSince(started)
            record(BatchRecord(requests: batch.count, items: items.count, tokens: tokens,
                               queueSeconds: started.timeIntervalSince(first.enqueued), runSeconds: runSeconds))
            switch result {
            case .success(let outputs) where outputs.count == items.count:
                var offset = 0
                for job in batch {
                    job.finish(.success(Array(outputs[offset..<(offset + job.items.count)])))
                    offset += job.items.count
                }
            case .success(let outputs):
                let error = ServingError.internalError("a batch of \(items.count) items gave \(outputs.count) outputs")
                for job in batch { job.finish(.failure(error)) }
            case .failure(let error):
                for job in batch { job.finish(.failure(error)) }
            }
        }
    }
}

/// Errors a request can end in, each with its HTTP status.
public enum ServingError: Error, CustomStringConvertible, Equatable {
    case badRequest(String)
    /// An empty input (TEI: 400, error_type "Empty").
    case empty(String)
    case notFound(String)
    case payloadTooLarge(String)
    case unprocessable(String)
    case internalError(String)

    public var status: Int {
        switch self {
        case .badRequest, .empty: return 400
        case .notFound: return 404
        case .payloadTooLarge: return 413
        case .unprocessable: return 422
        case .internalError: return 500
        }
    }

    public var description: String {
        switch self {
        case .badRequest(let m), .empty(let m), .notFound(let m), .payloadTooLarge(let m), .unprocessable(let m), .internalError(let m): return m
        }
    }
}
