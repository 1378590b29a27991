import Foundation

// Reading an E5S1 file: the memory-mapped `E5S1.File`, validated as a whole on open, and the
// bounds-checked cursor it reads the header, vocabulary, normalisation map and tensor directory with.

extension E5S1 {
    /// An E5S1 file, memory-mapped and validated as a whole on open: every count bounded, every
    /// offset and size inside the file, pieces and names valid UTF-8, and exactly the tensors
    /// the engine reads, with the dtypes and element counts the header implies.
    public final class File: @unchecked Sendable {
        public let url: URL
        public let header: Header
        public let vocabulary: Vocabulary
        public let normalization: [NormalizationRule]
        /// In directory order.
        public let tensors: [TensorEntry]
        private let index: [String: Int]
        private let map: MappedFile

        public init(url: URL) throws {
            self.url = url
            let map = try MappedFile(url: url)
            self.map = map
            var c = Cursor(map: map, url: url)

            // Header.
            let magicStart = try c.take(4, "magic")
            guard (0..<4).allSatisfy({ map.base.load(fromByteOffset: magicStart + $0, as: UInt8.self) == E5S1.magic[$0] }) else {
                let got = (0..<4).map { String(format: "%02x", map.base.load(fromByteOffset: magicStart + $0, as: UInt8.self)) }
                throw FormatError(url: url, item: "magic", "bytes \(got.joined(separator: " ")), expected \"E5S1\" (45 35 53 31): not an E5S1 model file")
            }
            let version = try c.u32("header field version")
            guard version == E5S1.supportedVersion else {
                throw FormatError(url: url, item: "header field version", "version \(version) is not supported (expected \(E5S1.supportedVersion))")
            }
            func field(_ name: String, _ range: ClosedRange<Int>) throws -> Int {
                let v = Int(try c.i32("header field \(name)"))
                guard range.contains(v) else {
                    throw FormatError(url: url, item: "header field \(name)", "\(v) is outside \(range.lowerBound)...\(range.upperBound)")
                }
                return v
            }
            let hidden = try field("hidden_size", 1...E5S1.maxHidden)
            let layers = try field("num_layers", 1...E5S1.maxLayers)
            let heads = try field("num_heads", 1...hidden)
            let intermediate = try field("intermediate_size", 1...E5S1.maxIntermediate)
            let vocab = try field("vocab_size", 1...E5S1.maxVocab)
            let maxPos = try field("max_positions", 1...E5S1.maxPositions)
            let typeVocab = try field("type_vocab_size", 1...E5S1.maxTypeVocab)
            let eps = try c.f32("header field layer_norm_eps")
            guard eps.isFinite, eps > 0, eps < 1 else {
                throw FormatError(url: url, item: "header field layer_norm_eps", "\(eps) is not a small positive number")
            }
            let block = try field("block_size", 1...1 << 16)
            guard block == E5S1.blockSize else {
                throw FormatError(url: url, item: "header field block_size", "\(block), expected \(E5S1.blockSize) (Q4_0)")
            }
            guard hidden % heads == 0 else {
                throw FormatError(url: url, item: "header field num_heads", "\(heads) does not divide hidden_size \(hidden)")
            }
            guard hidden % block == 0 else {
                throw FormatError(url: url, item: "header field hidden_size", "\(hidden) is not a multiple of the \(block)-weight Q4_0 block")
            }
            guard intermediate % block == 0 else {
                throw FormatError(url: url, item: "header field intermediate_size", "\(intermediate) is not a multiple of the \(block)-weight Q4_0 block")
            }
            header = Header(version: version, hiddenSize: hidden, layers: layers, heads: heads,
                            intermediateSize: intermediate, vocabSize: vocab, maxPositions: maxPos,
                            typeVocabSize: typeVocab, layerNormEps: eps, quantBlock: block)

            // Vocabulary.
            let nPieces = Int(try c.i32("header field n_pieces"))
            guard (1...vocab).contains(nPieces) else {
                throw FormatError(url: url, item: "header field n_pieces", "\(nPieces) is outside 1...\(vocab) (the embedding table's rows)")
            }
            var specials = [Int]()
            for name in ["bos_id", "eos_id", "pad_id", "unk_id"] {
                let id = Int(try c.i32("header field \(name)"))
                guard (0..<nPieces).contains(id) else {
                    throw FormatError(url: url, item: "header field \(name)", "\(id) is not a piece id (0..<\(nPieces))")
                }
                specials.append(id)
            }
            let blobLength = try c.u64("header field piece_bytes")
            let offsetsStart = try c.take(4 * (nPieces + 1), "piece offsets")
            let scoresStart = try c.take(4 * nPieces, "piece scores")
            guard blobLength <= UInt64(map.size) else {
                throw FormatError(url: url, item: "header field piece_bytes", "\(blobLength) exceeds the \(map.size)-byte file")
            }
            let blobStart = try c.take(Int(blobLength), "piece bytes")
            var pieces = [String](), scores = [Float]()
            pieces.reserveCapacity(nPieces)
            scores.reserveCapacity(nPieces)
            // Keyed by bytes: Swift's String equality is canonical equivalence, and the XLM-R
            // vocabulary holds canonically equivalent but distinct pieces (e.g. U+064E U+0651
            // and U+0651 U+064E).
            var seen = [[UInt8]: Int]()
            seen.reserveCapacity(nPieces)
            var previous = map.base.loadUnaligned(fromByteOffset: offsetsStart, as: UInt32.self).littleEndian
            guard previous == 0 else {
                throw FormatError(url: url, item: "piece offsets", "first offset is \(previous), expected 0")
            }
            for i in 0..<nPieces {
                let end = map.base.loadUnaligned(fromByteOffset: offsetsStart + 4 * (i + 1), as: UInt32.self).littleEndian
                guard end >= previous, UInt64(end) <= blobLength else {
                    throw FormatError(url: url, item: "piece \(i)", "byte range \(previous)..<\(end) is not inside the \(blobLength)-byte piece blob")
                }
                guard end > previous else { throw FormatError(url: url, item: "piece \(i)", "is empty") }
                guard let piece = String(validating: map.bytes((blobStart + Int(previous))..<(blobStart + Int(end))), as: UTF8.self) else {
                    throw FormatError(url: url, item: "piece \(i)", "is not valid UTF-8")
                }
                let bytes = Array(piece.utf8)
                if let first = seen[bytes] {
                    throw FormatError(url: url, item: "piece \(i)", "duplicates piece \(first) \"\(piece)\"")
                }
                seen[bytes] = i
                let score = Float(bitPattern: map.base.loadUnaligned(fromByteOffset: scoresStart + 4 * i, as: UInt32.self).littleEndian)
                guard score.isFinite else { throw FormatError(url: url, item: "piece \(i)", "score \(score) is not finite") }
                pieces.append(piece)
                scores.append(score)
                previous = end
            }
            guard UInt64(previous) == blobLength else {
                throw FormatError(url: url, item: "piece offsets", "last offset \(previous) leaves \(blobLength - UInt64(previous)) of the \(blobLength) piece bytes unused")
            }
            vocabulary = Vocabulary(pieces: pieces, scores: scores, bos: specials[0], eos: specials[1],
                                    pad: specials[2], unk: specials[3])

            // Normalisation map: code point → replacement code points, sorted by code point.
            let nRules = Int(try c.i32("header field n_rules"))
            guard (0...E5S1.maxRules).contains(nRules) else {
                throw FormatError(url: url, item: "header field n_rules", "\(nRules) is outside 0...\(E5S1.maxRules)")
            }
            let ruleBytes = Int(try c.u32("header field rule_bytes"))
            let rulesStart = try c.take(ruleBytes, "normalization map")
            var rules = [NormalizationRule]()
            rules.reserveCapacity(nRules)
            var r = Cursor(map: map, url: url, offset: rulesStart, end: rulesStart + ruleBytes,
                           region: "the \(ruleBytes)-byte normalization map")
            var last: UInt32? = nil
            for i in 0..<nRules {
                let item = "normalization rule \(i)"
                let cp = try r.u32(item)
                guard let source = Unicode.Scalar(cp) else {
                    throw FormatError(url: url, item: item, "code point 0x\(String(cp, radix: 16)) is not a Unicode scalar value")
                }
                if let last, cp <= last {
                    throw FormatError(url: url, item: item, "code point U+\(String(cp, radix: 16, uppercase: true)) is not above the previous rule's (the map must be sorted)")
                }
                last = cp
                let n = Int(try r.u8(item))
                var replacement = [Unicode.Scalar]()
                for _ in 0..<n {
                    let out = try r.u32(item)
                    guard let s = Unicode.Scalar(out), out != 0 else {
                        throw FormatError(url: url, item: item, "replacement 0x\(String(out, radix: 16)) is not a non-NUL Unicode scalar value")
                    }
                    replacement.append(s)
                }
                rules.append(NormalizationRule(source: source, replacement: replacement))
            }
            guard r.offset == r.end else {
                throw FormatError(url: url, item: "normalization map", "\(r.end - r.offset) bytes left over after \(nRules) rules")
            }
            normalization = rules

            // Tensor directory.
            let nTensors = Int(try c.i32("header field n_tensors"))
            guard (0...E5S1.maxTensors).contains(nTensors) else {
                throw FormatError(url: url, item: "header field n_tensors", "\(nTensors) is outside 0...\(E5S1.maxTensors)")
            }
            var entries = [TensorEntry](), index = [String: Int]()
            for i in 0..<nTensors {
                let item = "tensor directory entry \(i)"
                let nameLength = Int(try c.u16(item))
                guard (1...E5S1.maxNameBytes).contains(nameLength) else {
                    throw FormatError(url: url, item: item, "name length \(nameLength) is outside 1...\(E5S1.maxNameBytes)")
                }
                let nameStart = try c.take(nameLength, item)
                guard let name = String(validating: map.bytes(nameStart..<(nameStart + nameLength)), as: UTF8.self) else {
                    throw FormatError(url: url, item: item, "name is not valid UTF-8")
                }
                let tItem = "tensor \"\(name)\""
                let rawType = try c.u8(tItem)
                guard let dtype = DType(rawValue: rawType) else {
                    throw FormatError(url: url, item: tItem, "unknown dtype \(rawType) (0 = f32, 1 = Q4_0)")
                }
                let count = Int(try c.u32(tItem))
                let offset = try c.u64(tItem)
                let size = try c.u64(tItem)
                let expectedBytes: Int
                switch dtype {
                case .f32: expectedBytes = 4 * count
                case .q4_0:
                    guard count % E5S1.blockSize == 0 else {
                        throw FormatError(url: url, item: tItem, "\(count) Q4_0 weights is not a whole number of \(E5S1.blockSize)-weight blocks")
                    }
                    expectedBytes = count / E5S1.blockSize * E5S1.blockBytes
                }
                guard size == UInt64(expectedBytes) else {
                    throw FormatError(url: url, item: tItem, "byte size \(size), but \(count) \(dtype.name) weights take \(expectedBytes)")
                }
                guard offset <= UInt64(map.size), size <= UInt64(map.size) - offset else {
                    throw FormatError(url: url, item: tItem, "data \(offset)..<\(offset &+ size) runs past the end of the \(map.size)-byte file")
                }
                guard index[name] == nil else { throw FormatError(url: url, item: tItem, "appears twice in the directory") }
                index[name] = entries.count
                entries.append(TensorEntry(name: name, dtype: dtype, count: count, range: Int(offset)..<(Int(offset) + expectedBytes)))
            }
            let dataStart = c.offset
            var cursor = dataStart
            for e in entries.sorted(by: { ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound) }) {
                if e.range.lowerBound < dataStart {
                    throw FormatError(url: url, item: "tensor \"\(e.name)\"", "data at offset \(e.range.lowerBound) lies inside the header (data starts at \(dataStart))")
                }
                if e.range.lowerBound < cursor {
                    throw FormatError(url: url, item: "tensor \"\(e.name)\"", "data at offset \(e.range.lowerBound) overlaps the previous tensor's")
                }
                cursor = e.range.upperBound
            }
            tensors = entries
            self.index = index

            // Exactly the tensors the engine reads.
            let expected = E5S1.expectedTensors(header)
            for (name, dtype, count) in expected {
                guard let i = index[name] else {
                    if name == "emb.type" { continue }   // optional: converted as zeros
                    throw FormatError(url: url, item: "tensor \"\(name)\"", "missing")
                }
                let e = entries[i]
                guard e.dtype == dtype, e.count == count else {
                    throw FormatError(url: url, item: "tensor \"\(name)\"", "\(e.count) \(e.dtype.name) weights, expected \(count) \(dtype.name)")
                }
            }
            let known = Set(expected.map(\.0))
            if let extra = entries.first(where: { !known.contains($0.name) }) {
                throw FormatError(url: url, item: "tensor \"\(extra.name)\"", "is not a tensor of the E5S1 model")
            }
        }

        public func entry(_ name: String) throws -> TensorEntry {
            guard let i = index[name] else { throw FormatError(url: url, item: "tensor \"\(name)\"", "missing") }
            return tensors[i]
        }

        /// The tensor as fp32 (Q4_0 dequantised) into `destination` (`entry.count` floats).
        public func read(_ entry: TensorEntry, into destination: UnsafeMutablePointer<Float>) {
            let raw = map.bytes(entry.range)
            switch entry.dtype {
            case .f32:
                for i in 0..<entry.count {
                    destination[i] = Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian)
                }
            case .q4_0:
                E5S1.dequantizeQ4_0(raw, into: destination)
            }
        }

        public func floats(_ name: String) throws -> [Float] {
            let e = try entry(name)
            return [Float](unsafeUninitializedCapacity: e.count) { buffer, n in
                read(e, into: buffer.baseAddress!)
                n = e.count
            }
        }
    }
}

// MARK: - Reading helpers

/// Bounds-checked little-endian reads from a mapped file (or a region of it).
private struct Cursor {
    let map: MappedFile
    let url: URL
    var offset: Int
    let end: Int
    let region: String

    init(map: MappedFile, url: URL, offset: Int = 0, end: Int? = nil, region: String? = nil) {
        self.map = map
        self.url = url
        self.offset = offset
        self.end = end ?? map.size
        self.region = region ?? "the \(map.size)-byte file"
    }

    /// Reserves `count` bytes and returns where they start.
    mutating func take(_ count: Int, _ item: String) throws -> Int {
        guard count >= 0, offset <= end, count <= end - offset else {
            throw FormatError(url: url, item: item, "truncated: \(count) bytes needed at offset \(offset), past the end of \(region)")
        }
        defer { offset += count }
        return offset
    }

    mutating func u8(_ item: String) throws -> UInt8 { map.base.load(fromByteOffset: try take(1, item), as: UInt8.self) }
    mutating func u16(_ item: String) throws -> UInt16 {
        map.base.loadUnaligned(fromByteOffset: try take(2, item), as: UInt16.self).littleEndian
    }
    mutating func u32(_ item: String) throws -> UInt32 {
        map.base.loadUnaligned(fromByteOffset: try take(4, item), as: UInt32.self).littleEndian
    }
    mutating func i32(_ item: String) throws -> Int32 { Int32(bitPattern: try u32(item)) }
    mutating func u64(_ item: String) throws -> UInt64 {
        map.base.loadUnaligned(fromByteOffset: try take(8, item), as: UInt64.self).littleEndian
    }
    mutating func f32(_ item: String) throws -> Float { Float(bitPattern: try u32(item)) }
}
