import Foundation

// Converting an E5S1 file into a Hugging Face model directory: the XLM-RoBERTa tensor mapping,
// the staged write and rename into place, and the model and sentence-transformers JSON files.
// The tokenizer files are in E5S1Tokenizer.swift.

extension E5S1 {
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
        // Per layer, in this order: (Hugging Face module, engine tensor prefix, weight shape); each
        // module's bias has the weight's first dimension.
        let layerModules: [(hf: String, src: String, shape: [Int])] = [
            ("attention.self.query", "q", [H, H]), ("attention.self.key", "k", [H, H]),
            ("attention.self.value", "v", [H, H]), ("attention.output.dense", "ao", [H, H]),
            ("attention.output.LayerNorm", "aln", [H]), ("intermediate.dense", "fi", [F, H]),
            ("output.dense", "fo", [H, F]), ("output.LayerNorm", "oln", [H]),
        ]
        for l in 0..<h.layers {
            for m in layerModules {
                add("encoder.layer.\(l).\(m.hf).weight", m.shape, "l\(l).\(m.src).w")
                add("encoder.layer.\(l).\(m.hf).bias", [m.shape[0]], "l\(l).\(m.src).b")
            }
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
        // An existing directory is moved aside first, and moved back if the rename fails.
        var old: URL? = nil
        if exists {
            let aside = parent.appendingPathComponent(".\(destination.lastPathComponent).replaced-\(tag)")
            guard rename(destination.path, aside.path) == 0 else {
                let reason = String(cString: strerror(errno))
                try? fm.removeItem(at: staging)
                throw FormatError(url: destination, "cannot move the existing directory aside: \(reason)")
            }
            old = aside
        }
        guard rename(staging.path, destination.path) == 0 else {
            let reason = String(cString: strerror(errno))
            if let old { _ = rename(old.path, destination.path) }
            try? fm.removeItem(at: staging)
            throw FormatError(url: destination, "cannot rename the converted directory into place: \(reason)")
        }
        if let old { try? fm.removeItem(at: old) }
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
}
