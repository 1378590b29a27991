import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// The language-model head of a Qwen3 / Qwen2 `*ForCausalLM` checkpoint: logits = final hidden
/// states (after the final RMSNorm, as the backbone returns them) · lm_headᵀ. The weight is the
/// checkpoint's untied `lm_head.weight`, or the token-embedding table when `tie_word_embeddings`
/// is true or the checkpoint has no lm_head. Only the logits asked for are computed: a few rows of
/// the hidden states against a few token ids, never the full vocabulary.
public struct CausalLMHead {
    /// (R, C): all V rows of lm_head (mapped in place when stored as fp32), or only the rows of
    /// the tokens the head was loaded for.
    public let weight: Tensor
    /// Token id → row of `weight` when it holds only some tokens' rows; nil when it holds all.
    let rowOfToken: [Int32: Int]?
    public let tied: Bool
    public let vocabularySize: Int

    /// The head of `backbone`, loaded from `directory`'s checkpoint (lm_head.weight is a top-level
    /// key, without the "model." prefix of the backbone's keys). With `tokens`, an untied head
    /// that is not fp32 on disk converts only those tokens' rows (a 4B reranker's bf16 lm_head is
    /// 1.5 GB as fp32).
    public init(directory: ModelDirectory, backbone: QwenModel, tokens: [Int32]? = nil) throws {
        let shape = [backbone.vocabularySize, backbone.hiddenSize]
        vocabularySize = shape[0]
        let source = try directory.tensorSource()
        let untied = backbone.config.tieWordEmbeddings != true && source.contains("lm_head.weight")
        tied = !untied
        if !untied {
            weight = backbone.arena.table("embed_tokens.weight")
            rowOfToken = nil
        } else if let mapped = try source.mapped("lm_head.weight", shape: shape) {
            weight = Tensor(storage: mapped, shape: shape)
            rowOfToken = nil
        } else if let tokens {
            let unique = Array(Set(tokens)).sorted()
            if let bad = unique.first(where: { $0 < 0 || Int($0) >= shape[0] }) {
                throw FormatError("token id \(bad) is outside the head's vocabulary of \(shape[0])")
            }
            let t = Tensor(zeros: [unique.count, shape[1]])
            try source.readRows("lm_head.weight", shape: shape, rows: unique.map(Int.init), into: t.pointer)
            weight = t
            rowOfToken = Dictionary(uniqueKeysWithValues: unique.enumerated().map { ($1, $0) })
        } else {
            let t = Tensor(zeros: shape)
            try source.read("lm_head.weight", shape: shape, into: t.pointer)
            weight = t
            rowOfToken = nil
        }
    }

    /// logits (R, T), row-major: hidden row `rows[r]` of `hidden` (N, C) against token `tokens[t]`.
    public func logits(hidden: Tensor, rows: [Int], tokens: [Int32]) throws -> [Float] {
        let c = weight.shape[1]
        guard hidden.shape.count == 2, hidden.shape[1] == c else {
            throw FormatError("hidden states of shape \(hidden.shape) do not match the head's \(c) features")
        }
        if let bad = rows.first(where: { $0 < 0 || $0 >= hidden.shape[0] }) {
            throw FormatError("row \(bad) is outside the \(hidden.shape[0]) rows of the hidden states")
        }
        let weightRows = try tokens.map { token -> Int in
            guard token >= 0 && Int(token) < vocabularySize else {
                throw FormatError("token id \(token) is outside the head's vocabulary of \(vocabularySize)")
            }
            guard let rowOfToken else { return Int(token) }
            guard let row = rowOfToken[token] else { throw FormatError("the head was loaded without token \(token)'s row") }
            return row
        }
        var out = [Float](repeating: 0, count: rows.count * tokens.count)
        let h = hidden.pointer, w = weight.pointer
        for (r, row) in rows.enumerated() {
            for (t, weightRow) in weightRows.enumerated() {
                let x = h + row * c, y = w + weightRow * c
                var sum: Float = 0
                for i in 0..<c { sum += x[i] * y[i] }
                out[r * tokens.count + t] = sum
            }
        }
        return out
    }
}
