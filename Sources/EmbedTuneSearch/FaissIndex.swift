import CFaiss
import EmbedTuneFormats
import Foundation

/// A FAISS index behind the C shim (CFaiss): float (inner product or L2) or binary (Hamming),
/// always with explicit 64-bit ids. FAISS's errors come back as `FormatError`s with its message.
public final class FaissIndex: @unchecked Sendable {
    public enum Metric: Int32, Sendable { case innerProduct = 0, l2 = 1 }

    private let handle: OpaquePointer

    /// `factory`: FAISS's index_factory string ("Flat", "HNSW32", "IVF1024,Flat", "IVF1024,PQ32",
    /// "HNSW32,SQ8", …), or for a binary index index_binary_factory's ("BFlat", "BHNSW32",
    /// "BIVF1024"), where `dim` counts bits.
    public init(factory: String, dim: Int, metric: Metric = .innerProduct, binary: Bool = false) throws {
        var out: OpaquePointer?
        try Self.check("index_factory(\(dim), \"\(factory)\")") { err, len in
            embedtune_faiss_create(factory, Int32(dim), metric.rawValue, binary ? 1 : 0, &out, err, len)
        }
        handle = out!
    }

    /// An index written by `write(to:)`.
    public init(reading url: URL, binary: Bool) throws {
        var out: OpaquePointer?
        try Self.check("reading \(url.path)") { err, len in embedtune_faiss_read(url.path, binary ? 1 : 0, &out, err, len) }
        handle = out!
    }

    deinit { embedtune_faiss_free(handle) }

    public var isBinary: Bool { embedtune_faiss_is_binary(handle) != 0 }
    public var isTrained: Bool { embedtune_faiss_is_trained(handle) != 0 }
    /// Dimensions (bits for a binary index).
    public var dimension: Int { Int(embedtune_faiss_dimension(handle)) }
    public var count: Int { Int(embedtune_faiss_count(handle)) }
    /// Bytes per row of the vectors it takes: 4·dim floats, or dim/8 bytes.
    public var rowBytes: Int { isBinary ? dimension / 8 : 4 * dimension }

    /// Trains on n rows (IVF centroids, PQ codebooks; a no-op for Flat and HNSW).
    public func train(rows n: Int, _ x: UnsafeRawPointer) throws {
        try Self.check("training on \(n) vectors") { err, len in embedtune_faiss_train(handle, Int64(n), x, err, len) }
    }

    public func add(rows n: Int, _ x: UnsafeRawPointer, ids: [Int64]) throws {
        precondition(ids.count == n, "one id per row")
        try Self.check("adding \(n) vectors") { err, len in embedtune_faiss_add_with_ids(handle, Int64(n), x, ids, err, len) }
    }

    /// The k best ids per query row (−1 where fewer were found) and their scores: similarities for
    /// inner product, distances for L2, Hamming distances for a binary index.
    public func search(rows n: Int, _ x: UnsafeRawPointer, k: Int) throws -> (scores: [Float], ids: [Int64]) {
        var scores = [Float](repeating: 0, count: n * k), ids = [Int64](repeating: -1, count: n * k)
        try Self.check("searching \(n) queries") { err, len in
            embedtune_faiss_search(handle, Int64(n), x, Int64(k), &scores, &ids, err, len)
        }
        return (scores, ids)
    }

    /// A parameter: "nprobe" (IVF), "efSearch" (HNSW) for searches; "efConstruction" (HNSW) for rows
    /// added after it.
    public func setParameter(_ name: String, _ value: Double) throws {
        try Self.check("setting \(name) = \(value)") { err, len in embedtune_faiss_set_parameter(handle, name, value, err, len) }
    }

    public func write(to url: URL) throws {
        try Self.check("writing \(url.path)") { err, len in embedtune_faiss_write(handle, url.path, err, len) }
    }

    /// OpenMP threads FAISS uses.
    public static func setThreads(_ n: Int) { embedtune_faiss_set_threads(Int32(n)) }

    private static func check(_ what: String, _ call: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
        var message = [CChar](repeating: 0, count: 1024)
        let status = message.withUnsafeMutableBufferPointer { call($0.baseAddress!, $0.count) }
        guard status == 0 else {
            let text = String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
            throw FormatError("FAISS: \(what): \(text.isEmpty ? "failed" : text)")
        }
    }
}
