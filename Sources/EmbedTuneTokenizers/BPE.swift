import EmbedTuneFormats
import Foundation

/// Byte-level BPE (GPT-2, Qwen): a piece's UTF-8 bytes start as one token each and the
/// adjacent pair of lowest merge rank is merged until no ranked pair remains, leftmost first
/// on ties — the outcome of HF's priority-queue loop and of tiktoken's byte_pair_merge.
public final class ByteLevelBPE: @unchecked Sendable {
    /// id of each single-byte token.
    let byteTokens: [Int32]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    let merges: [UInt64: UInt64]
    /// Token id → bytes, for decoding.
    public let tokenBytes: [[UInt8]]
    /// Bytes → id for whole-piece lookups (`ignore_merges`).
    let bytesToID: [[UInt8]: Int32]?
    let ignoreMerges: Bool

    private var cache = [[UInt8]: [Int32]]()
    private let lock = NSLock()

    init(byteTokens: [Int32], merges: [UInt64: UInt64], tokenBytes: [[UInt8]], bytesToID: [[UInt8]: Int32]?,
         ignoreMerges: Bool) {
        self.byteTokens = byteTokens
        self.merges = merges
        self.tokenBytes = tokenBytes
        self.bytesToID = bytesToID
        self.ignoreMerges = ignoreMerges
    }

    public var vocabularySize: Int { tokenBytes.count }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }

    public func encode(_ bytes: [UInt8]) -> [Int32] {
        if bytes.isEmpty { return [] }
        if ignoreMerges, let id = bytesToID?[bytes] { return [id] }
        if bytes.count < 64 {
            lock.lock()
            let hit = cache[bytes]
            lock.unlock()
            if let hit { return hit }
        }
        var symbols = bytes.map { byteTokens[Int($0)] }
        // Ranks of each adjacent pair; UInt64.max when the pair does not merge.
        var ranks = [UInt64](repeating: .max, count: max(symbols.count - 1, 0))
        for i in 0..<ranks.count { ranks[i] = merges[Self.key(symbols[i], symbols[i + 1])] ?? .max }
        while true {
            var best = UInt64.max, at = -1
            for i in 0..<ranks.count where ranks[i] < best { best = ranks[i]; at = i }
            if at < 0 { break }
            symbols[at] = Int32(truncatingIfNeeded: best & 0xffff_ffff)
            symbols.remove(at: at + 1)
            ranks.remove(at: at)
            if at > 0 { ranks[at - 1] = merges[Self.key(symbols[at - 1], symbols[at])] ?? .max }
            if at < ranks.count { ranks[at] = merges[Self.key(symbols[at], symbols[at + 1])] ?? .max }
        }
        if bytes.count < 64 {
            lock.lock()
            if cache.count > 200_000 { cache.removeAll(keepingCapacity: true) }
            cache[bytes] = symbols
            lock.unlock()
        }
        return symbols
    }

    /// From tokenizer.json's BPE model: `vocab` maps byte-level strings to ids and `merges` is a
    /// ranked list of pairs ("a b" strings, or [a, b] arrays in newer files).
    public static func fromVocabulary(_ vocab: [String: Int], merges: [(String, String)], ignoreMerges: Bool,
                                      file: String) throws -> ByteLevelBPE {
        let size = (vocab.values.max() ?? -1) + 1
        var tokenBytes = [[UInt8]](repeating: [], count: size)
        var bytesToID = [[UInt8]: Int32]()
        for (token, id) in vocab {
            guard let b = ByteLevel.bytes(fromToken: token) else {
                throw FormatError(file: file, item: "model.vocab[\"\(token)\"]", "not a byte-level token")
            }
            tokenBytes[id] = b
            bytesToID[b] = Int32(id)
        }
        var byteTokens = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            guard let id = bytesToID[[UInt8(b)]] else {
                throw FormatError(file: file, item: "model.vocab", "byte 0x\(String(b, radix: 16)) has no token; byte-level BPE needs all 256")
            }
            byteTokens[b] = id
        }
        var table = [UInt64: UInt64](minimumCapacity: merges.count)
        for (rank, (a, b)) in merges.enumerated() {
            guard let ia = vocab[a], let ib = vocab[b], let im = vocab[a + b] else {
                throw FormatError(file: file, item: "model.merges[\(rank)]", "\"\(a) \(b)\" uses a token missing from the vocabulary")
            }
            let k = key(Int32(ia), Int32(ib))
            if table[k] == nil { table[k] = UInt64(rank) << 32 | UInt64(im) }
        }
        return ByteLevelBPE(byteTokens: byteTokens, merges: table, tokenBytes: tokenBytes,
                            bytesToID: ignoreMerges ? bytesToID : nil, ignoreMerges: ignoreMerges)
    }

    /// From a tiktoken rank file (`base64-token rank` per line). A pair merges when its
    /// concatenation is a token, with that token's rank — exactly what tiktoken does, and what
    /// transformers' tiktoken conversion reproduces with explicit merges.
    public static func fromTiktoken(_ url: URL) throws -> ByteLevelBPE {
        let text = try TextFile.read(url.path)
        var tokenBytes = [[UInt8]]()
        var bytesToID = [[UInt8]: Int32]()
        for (lineNumber, line) in TextFile.lines(text) {
            if line.isEmpty { continue }
            let parts = line.split(separator: " ")
            guard parts.count == 2, let bytes = Data(base64Encoded: String(parts[0])), let rank = Int(parts[1]) else {
                throw FormatError(url: url, item: "line \(lineNumber)", "expected \"<base64 token> <rank>\"")
            }
            guard rank == tokenBytes.count else {
                throw FormatError(url: url, item: "line \(lineNumber)", "rank \(rank) out of order (expected \(tokenBytes.count))")
            }
            let b = [UInt8](bytes)
            guard bytesToID[b] == nil else { throw FormatError(url: url, item: "line \(lineNumber)", "duplicate token") }
            tokenBytes.append(b)
            bytesToID[b] = Int32(rank)
        }
        var byteTokens = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            guard let id = bytesToID[[UInt8(b)]] else {
                throw FormatError(url: url, "byte 0x\(String(b, radix: 16)) has no token; byte-level BPE needs all 256")
            }
            byteTokens[b] = id
        }
        var table = [UInt64: UInt64](minimumCapacity: tokenBytes.count * 4)
        for (id, bytes) in tokenBytes.enumerated() where bytes.count > 1 {
            for cut in 1..<bytes.count {
                guard let l = bytesToID[Array(bytes[..<cut])], let r = bytesToID[Array(bytes[cut...])] else { continue }
                table[key(l, r)] = UInt64(id) << 32 | UInt64(id)
            }
        }
        return ByteLevelBPE(byteTokens: byteTokens, merges: table, tokenBytes: tokenBytes, bytesToID: nil,
                            ignoreMerges: false)
    }
}
