import EmbedTuneFormats
import Foundation

/// A GGUF file (llama.cpp) read by Hugging Face parameter names, for the architectures whose
/// llama.cpp conversion only renames tensors (no permutation or fusion): qwen2, qwen3, bert.
/// The names follow gguf-py's tensor_mapping.py / constants.py (convert_hf_to_gguf.py):
///
///     qwen2/qwen3                                bert
///     embed_tokens.weight   token_embd.weight    embeddings.word_embeddings.weight      token_embd.weight
///     norm.weight           output_norm.weight   embeddings.position_embeddings.weight  position_embd.weight
///     lm_head.weight        output.weight        embeddings.token_type_embeddings.weight token_types.weight
///     layers.N.…            blk.N.…              embeddings.LayerNorm.{weight,bias}     token_embd_norm.…
///                                                encoder.layer.N.…                      blk.N.…
///
/// HF names are accepted bare (Qwen3-Embedding, BertModel checkpoints) or with the
/// "model." (qwen) / "bert." (bert) prefix that *For… checkpoints carry. Tensors are
/// dequantised to fp32 on read; shapes are in PyTorch order.
public final class GGUFTensorSource: TensorSource, @unchecked Sendable {
    public let file: GGUFFile
    /// `general.architecture`.
    public let architecture: String

    public static let supportedArchitectures = ["bert", "qwen2", "qwen3"]

    public convenience init(url: URL) throws {
        try self.init(file: GGUFFile(url: url))
    }

    public init(file: GGUFFile) throws {
        self.file = file
        guard let arch = file.metadata["general.architecture"] else {
            throw FormatError(url: file.url, item: "key \"general.architecture\"", "missing")
        }
        guard let name = arch.string else {
            throw FormatError(url: file.url, item: "key \"general.architecture\"", "must be a string, got \(arch.type)")
        }
        guard GGUFTensorSource.supportedArchitectures.contains(name) else {
            throw FormatError(url: file.url, item: "key \"general.architecture\"",
                "architecture \"\(name)\" is not supported (supported: \(GGUFTensorSource.supportedArchitectures.joined(separator: ", ")))")
        }
        architecture = name
    }

    // MARK: Name mapping

    private static let qwenGlobal = [
        "embed_tokens.weight": "token_embd.weight",
        "norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    ]
    private static let qwenLayer = [
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
        "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
        "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
        "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    ]
    /// Qwen3 only (gguf-py maps them for qwen3, not qwen2).
    private static let qwen3Layer = [
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
    ]
    private static let bertGlobal = [
        "embeddings.word_embeddings.weight": "token_embd.weight",
        "embeddings.position_embeddings.weight": "position_embd.weight",
        "embeddings.token_type_embeddings.weight": "token_types.weight",
        "embeddings.LayerNorm.weight": "token_embd_norm.weight",
        "embeddings.LayerNorm.bias": "token_embd_norm.bias",
    ]
    private static let bertLayer: [String: String] = {
        var m = [String: String]()
        for p in ["weight", "bias"] {
            m["attention.self.query.\(p)"] = "attn_q.\(p)"
            m["attention.self.key.\(p)"] = "attn_k.\(p)"
            m["attention.self.value.\(p)"] = "attn_v.\(p)"
            m["attention.output.dense.\(p)"] = "attn_output.\(p)"
            m["attention.output.LayerNorm.\(p)"] = "attn_output_norm.\(p)"
            m["intermediate.dense.\(p)"] = "ffn_up.\(p)"
            m["output.dense.\(p)"] = "ffn_down.\(p)"
            m["output.LayerNorm.\(p)"] = "layer_output_norm.\(p)"
        }
        return m
    }()

    private static func tables(_ arch: String) -> (global: [String: String], layer: [String: String], layerPrefix: String, modelPrefix: String) {
        switch arch {
        case "bert": return (bertGlobal, bertLayer, "encoder.layer.", "bert.")
        case "qwen3": return (qwenGlobal, qwenLayer.merging(qwen3Layer) { a, _ in a }, "layers.", "model.")
        default: return (qwenGlobal, qwenLayer, "layers.", "model.")
        }
    }

    /// The llama.cpp tensor name for a Hugging Face parameter name, or nil when it has none.
    public static func ggufName(forHuggingFace name: String, architecture: String) -> String? {
        let t = tables(architecture)
        var n = Substring(name)
        if n.hasPrefix(t.modelPrefix) { n = n.dropFirst(t.modelPrefix.count) }
        if let g = t.global[String(n)] { return g }
        guard n.hasPrefix(t.layerPrefix) else { return nil }
        let rest = n.dropFirst(t.layerPrefix.count)
        guard let dot = rest.firstIndex(of: "."), dot > rest.startIndex else { return nil }
        let index = rest[..<dot]
        guard index.allSatisfy(\.isASCII), index.allSatisfy(\.isNumber), let i = Int(index),
              String(i) == index  // no leading zeros: one spelling per layer
        else { return nil }
        guard let g = t.layer[String(rest[rest.index(after: dot)...])] else { return nil }
        return "blk.\(i).\(g)"
    }

    /// The (bare) Hugging Face name for a llama.cpp tensor name, or nil when it has none.
    public static func huggingFaceName(forGGUF name: String, architecture: String) -> String? {
        let t = tables(architecture)
        if let (hf, _) = t.global.first(where: { $0.value == name }) { return hf }
        guard name.hasPrefix("blk.") else { return nil }
        let rest = name.dropFirst(4)
        guard let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]), String(i) == rest[..<dot] else { return nil }
        let suffix = String(rest[rest.index(after: dot)...])
        guard let (hf, _) = t.layer.first(where: { $0.value == suffix }) else { return nil }
        return "\(t.layerPrefix)\(i).\(hf)"
    }

    /// Bare Hugging Face names of every tensor in the file that has one, sorted.
    public var names: [String] {
        file.tensors.compactMap { GGUFTensorSource.huggingFaceName(forGGUF: $0.name, architecture: architecture) }.sorted()
    }

    /// llama.cpp tensors with no Hugging Face counterpart (e.g. rope_freqs).
    public var unmappedTensors: [String] {
        file.tensors.map(\.name).filter { GGUFTensorSource.huggingFaceName(forGGUF: $0, architecture: architecture) == nil }
    }

    // MARK: TensorSource

    private func info(_ name: String) -> GGUFFile.TensorInfo? {
        GGUFTensorSource.ggufName(forHuggingFace: name, architecture: architecture).flatMap { file.tensorInfo($0) }
    }

    public func contains(_ name: String) -> Bool { info(name) != nil }

    public func shape(of name: String) -> [Int]? { info(name)?.shape }

    public func read(_ name: String, shape: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        guard let gguf = GGUFTensorSource.ggufName(forHuggingFace: name, architecture: architecture) else {
            throw FormatError(url: file.url, item: "tensor \"\(name)\"", "has no llama.cpp name for architecture \(architecture)")
        }
        guard let t = file.tensorInfo(gguf) else {
            throw FormatError(url: file.url, item: "tensor \"\(name)\" (\"\(gguf)\")", "missing")
        }
        guard t.shape == shape else {
            throw FormatError(url: file.url, item: "tensor \"\(name)\" (\"\(gguf)\")", "shape \(t.shape), expected \(shape)")
        }
        try file.read(t, into: destination)
    }

    public func readRows(_ name: String, shape: [Int], rows: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        guard shape.count == 2 else { throw FormatError(url: file.url, item: "tensor \"\(name)\"", "rows of a \(shape.count)-D shape") }
        guard let gguf = GGUFTensorSource.ggufName(forHuggingFace: name, architecture: architecture), let t = file.tensorInfo(gguf) else {
            throw FormatError(url: file.url, item: "tensor \"\(name)\"", "missing")
        }
        guard t.shape == shape else {
            throw FormatError(url: file.url, item: "tensor \"\(name)\" (\"\(gguf)\")", "shape \(t.shape), expected \(shape)")
        }
        try file.readRows(t, rows: rows, into: destination)
    }

    // MARK: Configuration

    /// `{arch}.pooling_type` as sentence-transformers' word ("mean", "cls", "last", ...), if set.
    public var poolingMode: String? {
        guard let v = file.metadata["\(architecture).pooling_type"]?.int else { return nil }
        return [0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"][v]
    }

    /// A Hugging Face config.json for the model, from the GGUF hyper-parameters
    /// (`{arch}.embedding_length`, `.block_count`, `.attention.head_count`, ...). Float32
    /// metadata is converted through its shortest decimal form, so 1e-6 stays 1e-6.
    public func huggingFaceConfig() throws -> [String: JSONValue] {
        let arch = architecture
        let meta = file.metadata
        func fail(_ key: String, _ problem: String) -> FormatError {
            FormatError(url: file.url, item: "key \"\(key)\"", problem)
        }
        func int(_ suffix: String) throws -> Int? {
            let key = "\(arch).\(suffix)"
            guard let v = meta[key] else { return nil }
            if let i = v.int, i >= 0 { return i }
            // Per-layer arrays (head counts) are accepted when uniform.
            if let a = v.ints, let first = a.first, first >= 0, a.allSatisfy({ $0 == first }) { return first }
            throw fail(key, "must be a non-negative integer, got \(v.type) \(v)")
        }
        func required(_ suffix: String) throws -> Int {
            guard let i = try int(suffix) else { throw fail("\(arch).\(suffix)", "missing") }
            return i
        }
        func double(_ suffix: String) throws -> Double? {
            let key = "\(arch).\(suffix)"
            guard let v = meta[key] else { return nil }
            switch v {
            case .float32(let f): return Double("\(f)") ?? Double(f)
            default:
                guard let d = v.double else { throw fail(key, "must be a number, got \(v.type) \(v)") }
                return d
            }
        }

        var c: [String: JSONValue] = ["model_type": .string(arch)]
        c["architectures"] = .array([.string(["qwen2": "Qwen2Model", "qwen3": "Qwen3Model", "bert": "BertModel"][arch]!)])
        let hidden = try required("embedding_length")
        let heads = try required("attention.head_count")
        c["hidden_size"] = .int(hidden)
        c["num_hidden_layers"] = .int(try required("block_count"))
        c["num_attention_heads"] = .int(heads)
        c["intermediate_size"] = .int(try required("feed_forward_length"))
        if let n = try int("context_length") { c["max_position_embeddings"] = .int(n) }

        // Vocabulary: the explicit key, else the embedding's rows, else the token list.
        if let v = try int("vocab_size") {
            c["vocab_size"] = .int(v)
        } else if let e = file.tensorInfo("token_embd.weight"), e.shape.count == 2 {
            c["vocab_size"] = .int(e.shape[0])
        } else if let tokens = meta["tokenizer.ggml.tokens"]?.array {
            c["vocab_size"] = .int(tokens.count)
        } else {
            throw fail("\(arch).vocab_size", "missing, and there is no token_embd.weight or tokenizer.ggml.tokens to count")
        }

        if arch == "bert" {
            guard let eps = try double("attention.layer_norm_epsilon") else {
                throw fail("\(arch).attention.layer_norm_epsilon", "missing")
            }
            c["layer_norm_eps"] = .double(eps)
            c["hidden_act"] = .string("gelu")
            c["position_embedding_type"] = .string("absolute")
            if let t = file.tensorInfo("token_types.weight"), t.shape.count == 2 {
                c["type_vocab_size"] = .int(t.shape[0])
            } else if let n = meta["tokenizer.ggml.token_type_count"]?.int {
                c["type_vocab_size"] = .int(n)
            }
        } else {
            c["num_key_value_heads"] = .int(try int("attention.head_count_kv") ?? heads)
            if let k = try int("attention.key_length") { c["head_dim"] = .int(k) }
            guard let eps = try double("attention.layer_norm_rms_epsilon") else {
                throw fail("\(arch).attention.layer_norm_rms_epsilon", "missing")
            }
            c["rms_norm_eps"] = .double(eps)
            c["rope_theta"] = .double(try double("rope.freq_base") ?? 10_000)
            c["hidden_act"] = .string("silu")
            c["tie_word_embeddings"] = .bool(!file.contains("output.weight"))
            c["attention_bias"] = .bool(file.contains("blk.0.attn_q.bias"))
            if let type = meta["\(arch).rope.scaling.type"]?.string, type != "none" {
                var s: [String: JSONValue] = ["rope_type": .string(type)]
                if let f = try double("rope.scaling.factor") { s["factor"] = .double(f) }
                if let n = try int("rope.scaling.original_context_length") { s["original_max_position_embeddings"] = .int(n) }
                c["rope_scaling"] = .object(s)
            }
        }
        for (hf, key) in [("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "padding")] {
            if let id = meta["tokenizer.ggml.\(key)_token_id"]?.int { c[hf] = .int(id) }
        }
        return c
    }
}
