import Foundation

/// A bounded LRU cache in front of the model: exact hits by normalised text (NFKC, lower case,
/// runs of white space as one space, trimmed), and — when a similarity threshold is set —
/// near-duplicate hits: a query whose embedding has cosine ≥ threshold with a cached entry's
/// embedding gets that entry's value (the embedding is computed either way; what is saved is the
/// work after it, a search or a rerank). Bounded by entries and by bytes (the caller's estimate
/// of a value plus its embedding); the least recently used entries go first. Thread-safe.
public final class SemanticCache<Value>: @unchecked Sendable {
    public struct Counters: Equatable, Sendable {
        public var hits = 0, nearHits = 0, misses = 0, evictions = 0
    }

    public let maxEntries: Int
    public let maxBytes: Int
    /// nil: exact hits only.
    public let similarityThreshold: Float?

    private struct Entry {
        var key: String
        var value: Value
        var embedding: [Float]?
        var bytes: Int
        var previous: Int  // towards the most recently used; -1 at the head
        var next: Int      // towards the least recently used; -1 at the tail
    }

    private let lock = NSLock()
    private var slots = [Entry?]()
    private var free = [Int]()
    private var index = [String: Int]()
    private var head = -1, tail = -1
    private var bytes = 0
    private var counters = Counters()

    public init(maxEntries: Int, maxBytes: Int, similarityThreshold: Float? = nil) {
        precondition(maxEntries > 0 && maxBytes > 0, "a cache needs room for at least one entry")
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
        self.similarityThreshold = similarityThreshold
    }

    /// The key a text is cached under.
    public static func normalised(_ text: String) -> String {
        text.precomposedStringWithCompatibilityMapping.lowercased()
            .split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    public var count: Int { lock.withLock { index.count } }
    public var storedBytes: Int { lock.withLock { bytes } }
    public var statistics: Counters { lock.withLock { counters } }

    /// The value cached for `key` (already normalised by the caller, with whatever else must
    /// match — the adapter, the prompt), counted as a hit or a miss.
    public func value(forKey key: String) -> Value? {
        lock.withLock {
            guard let slot = index[key] else { counters.misses += 1; return nil }
            counters.hits += 1
            touch(slot)
            return slots[slot]!.value
        }
    }

    /// The value of the cached entry most similar to `embedding` (unit length, as the cached
    /// ones), if its cosine reaches the threshold; counted as a near hit (a miss is counted by
    /// `value(forKey:)`, which callers ask first).
    public func nearestValue(to embedding: [Float]) -> Value? {
        guard let threshold = similarityThreshold else { return nil }
        return lock.withLock {
            var best = -1, bestScore = -Float.infinity
            var slot = head
            while slot >= 0 {
                let entry = slots[slot]!
                if let e = entry.embedding, e.count == embedding.count {
                    var dot: Float = 0
                    for i in 0..<e.count { dot += e[i] * embedding[i] }
                    if dot > bestScore { bestScore = dot; best = slot }
                }
                slot = entry.next
            }
            guard best >= 0, bestScore >= threshold else { return nil }
            counters.nearHits += 1
            counters.misses -= 1  // the exact lookup before counted this query as a miss
            touch(best)
            return slots[best]!.value
        }
    }

    /// Stores `value` under `key` (replacing an entry with that key), evicting the least recently
    /// used entries until both bounds hold. A value larger than the whole byte budget is not stored.
    public func insert(_ value: Value, forKey key: String, embedding: [Float]? = nil, bytes size: Int) {
        lock.withLock {
            guard size <= maxBytes else { return }
            if let slot = index[key] { remove(slot) }
            while index.count >= maxEntries || bytes + size > maxBytes, tail >= 0 {
                remove(tail)
                counters.evictions += 1
            }
            let entry = Entry(key: key, value: value, embedding: embedding, bytes: size, previous: -1, next: head)
            let slot: Int
            if let reused = free.popLast() { slot = reused; slots[slot] = entry } else { slot = slots.count; slots.append(entry) }
            if head >= 0 { slots[head]!.previous = slot }
            head = slot
            if tail < 0 { tail = slot }
            index[key] = slot
            bytes += size
        }
    }

    private func unlink(_ slot: Int) {
        let e = slots[slot]!
        if e.previous >= 0 { slots[e.previous]!.next = e.next } else { head = e.next }
        if e.next >= 0 { slots[e.next]!.previous = e.previous } else { tail = e.previous }
    }

    private func touch(_ slot: Int) {
        guard head != slot else { return }
        unlink(slot)
        slots[slot]!.previous = -1
        slots[slot]!.next = head
        if head >= 0 { slots[head]!.previous = slot }
        head = slot
        if tail < 0 { tail = slot }
    }

    private func remove(_ slot: Int) {
        unlink(slot)
        let e = slots[slot]!
        index[e.key] = nil
        bytes -= e.bytes
        slots[slot] = nil
        free.append(slot)
    }
}
