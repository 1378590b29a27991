import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// The language-model head of a Qwen3 / Qwen2 `*ForCausalLM` checkpoint: logits = final hidden
/// states (after the final RMSNorm, as the backbone returns them) · lm_headᵀ. The weight is the
/// checkpoint's untied `lm_head.weight`, or the token-embedding table when `tie_word_embeddings`
/// is true or the checkpoint has no lm_head. Only the logits asked for are computed: a few rows of
/// the hidden states against a few token ids, never the full vocabulary.
public struct CausalLMHead {
    /// (V, C) as PyTorch stores lm_head; the embedding table itself when tied.
    public let weight: Tensor
    public let tied: Bool

    /// The head of `backbone`, loaded from `directory`'s checkpoint (lm_head.weight is a top-level
    /// key, without the "model." prefix of the backbone's keys).
    public init(directory: ModelDirectory, backbone: QwenModel) throws {
        let shape = [backbone.vocabularySize, backbone.hiddenSize]
        let source = try directory.tensorSource()
        let untied = backbone.config.tieWordEmbeddings != true && source.contains("lm_head.weight")
        if untied {
            if let mapped = try source.mapped("lm_head.weight", shape: shape) {
                weight = Tensor(storage: mapped, shape: shape)
            } else {
                let t = Tensor(zeros: shape)
                try source.read("lm_head.weight", shape: shape, into: t.pointer)
                weight = t
            }
        } else {
            weight = backbone.arena.table("embed_tokens.weight")
        }
        tied = !untied
    }

    public var vocabularySize: Int { weight.shape[0] }

    /// logits (R, T), row-major: hidden row `rows[r]` of `hidden` (N, C) against token `tokens[t]`.
    public func logits(hidden: Tensor, rows: [Int], tokens: [Int32]) throws -> [Float] {
        let c = weight.shape[1]
        guard hidden.shape.count == 2, hidden.shape[1] == c else {
            throw FormatError("hidden states of shape \(hidden.shape) do not match the head's \(c) features")
        }
        if let bad = rows.first(where: { $0 < 0 || $0 >= hidden.shape[0] }) {
            throw FormatError("row \(bad) is outside the \(hidden.shape[0]) rows of the hidden states")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            throw FormatError("token id \(bad) is outside the head's vocabulary of \(vocabularySize)")
        }
        var out = [Float](repeating: 0, count: rows.count * tokens.count)
        let h = hidden.pointer, w = weight.pointer
        for (r, row) in rows.enumerated() {
            for (t, token) in tokens.enumerated() {
                let x = h + row * c, y = w + Int(token) * c
                var sum: Float = 0
                for i in 0..<c { sum += x[i] * y[i] }
                out[r * tokens.count + t] = sum
            }
        }
        return out
    }
}
