import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// A base model with merged ΔW folded into its weights, written as a Hugging Face directory that
/// transformers and sentence-transformers load as they are: config.json, one fp32
/// model.safetensors, the tokenizer files, and modules.json / 1_Pooling /
/// config_sentence_transformers.json (with the query/document prompts).
public enum ModelExport {
    /// Writes into a temporary sibling and renames it into place: `output` is either complete or absent.
    /// `card` replaces the base's README.md.
    public static func writeFolded(base: ModelDirectory, deltas: [MergedDelta], to output: URL, force: Bool, card: ModelCard? = nil) throws {
        let fm = FileManager.default
        guard base.gguf == nil else {
            throw FormatError("--fold needs a safetensors base model directory; \(base.url.path) is a GGUF file")
        }
        if fm.fileExists(atPath: output.path) && !force {
            throw FormatError("\(output.path) exists (use --force to replace it)")
        }
        let store = try WeightStore(directory: base.url)
        // Resolve every ΔW to its checkpoint tensor before writing anything.
        var byName = [String: MergedDelta]()
        for d in deltas {
            let candidates = ["", "model.", "bert.", "roberta."].map { $0 + d.module + ".weight" }
            guard let name = candidates.first(where: store.contains) else {
                throw FormatError("the base model \(base.url.path) has no weight for module \(d.module) (looked for \(candidates[0]))")
            }
            guard store.shape(of: name) == [d.outFeatures, d.inFeatures] else {
                throw FormatError("\(name) in \(base.url.path) is \(store.shape(of: name) ?? []), the merged ΔW is [\(d.outFeatures), \(d.inFeatures)]")
            }
            byName[name] = d
        }
        let staging = output.deletingLastPathComponent().appendingPathComponent(".\(output.lastPathComponent).partial-\(getpid())")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        do {
            try copyNonWeightFiles(from: base.url, to: staging)
            // FloatBuffers give the writer stable pointers to every tensor at once.
            var buffers = [(name: String, shape: [Int], values: FloatBuffer)]()
            for name in store.names {
                // Integer buffers (BERT's position_ids) are rebuilt by transformers on load.
                guard let entry = store.entry(name), [.F32, .F16, .BF16].contains(entry.dtype) else { continue }
                let values = FloatBuffer(count: entry.count, zeroed: false)
                try store.read(name, shape: entry.shape, into: values.pointer)
                if let d = byName[name] { for i in 0..<values.count { values.pointer[i] = Float(Double(values.pointer[i]) + d.values[i]) } }
                buffers.append((name, entry.shape, values))
            }
            try SafetensorsWriter.write(buffers.map { .init(name: $0.name, shape: $0.shape, values: UnsafeBufferPointer(start: $0.values.pointer, count: $0.values.count)) },
                                        metadata: ["format": "pt"], to: staging.appendingPathComponent("model.safetensors"))
            try writeConfig(base, to: staging)
            try writeSentenceTransformersFiles(base, to: staging)
            try card?.write(to: staging)
            if fm.fileExists(atPath: output.path) { try fm.removeItem(at: output) }
            try fm.moveItem(at: staging, to: output)
        } catch {
            try? fm.removeItem(at: staging)
            throw error
        }
    }

    /// Everything but the weights (tokenizer, configs, 1_Pooling/, 2_Normalize/, README …).
    static func copyNonWeightFiles(from source: URL, to destination: URL) throws {
        let fm = FileManager.default
        let skip: Set<String> = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"]
        for name in try fm.contentsOfDirectory(atPath: source.path) where !skip.contains(name) && !name.hasPrefix(".") {
            if name.hasSuffix(".safetensors") || name.hasSuffix(".bin") || name.hasSuffix(".gguf") || name.hasSuffix(".onnx") { continue }
            try fm.copyItem(at: source.appendingPathComponent(name), to: destination.appendingPathComponent(name))
        }
    }

    /// config.json with the stored dtype: the weights are fp32 now, whatever the base used.
    static func writeConfig(_ base: ModelDirectory, to directory: URL) throws {
        let url = base.url.appendingPathComponent("config.json")
        guard var config = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] else {
            throw FormatError(url: url, "is not a JSON object")
        }
        config["torch_dtype"] = "float32"
        if config["dtype"] != nil { config["dtype"] = "float32" }
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try writeAtomically(data, to: directory.appendingPathComponent("config.json"))
    }

    /// The sentence-transformers pipeline of the base (pooling, normalisation, prompts), written
    /// when the base directory does not already carry it.
    static func writeSentenceTransformersFiles(_ base: ModelDirectory, to directory: URL) throws {
        func json(_ object: Any, _ name: String) throws {
            let url = directory.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try writeAtomically(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), to: url)
        }
        let fm = FileManager.default
        if !fm.fileExists(atPath: directory.appendingPathComponent("modules.json").path) {
            var modules: [[String: Any]] = [
                ["idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"],
                ["idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"],
            ]
            if base.normalize { modules.append(["idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"]) }
            try json(modules, "modules.json")
            if base.normalize { try fm.createDirectory(at: directory.appendingPathComponent("2_Normalize"), withIntermediateDirectories: true) }
        }
        if !fm.fileExists(atPath: directory.appendingPathComponent("1_Pooling/config.json").path) {
            let hidden = base.config["hidden_size"]?.int ?? 0
            let mode = base.pooling
            try json(["word_embedding_dimension": hidden, "pooling_mode_cls_token": mode == .cls, "pooling_mode_mean_tokens": mode == .mean,
                      "pooling_mode_max_tokens": mode == .max, "pooling_mode_mean_sqrt_len_tokens": mode == .meanSqrtLen,
                      "pooling_mode_weightedmean_tokens": false, "pooling_mode_lasttoken": mode == .lastToken, "include_prompt": true],
                     "1_Pooling/config.json")
        }
        if !fm.fileExists(atPath: directory.appendingPathComponent("sentence_bert_config.json").path) {
            try json(["max_seq_length": base.maxSequenceLength ?? 512, "do_lower_case": false], "sentence_bert_config.json")
        }
        let stConfig = directory.appendingPathComponent("config_sentence_transformers.json")
        var st = (try? JSONSerialization.jsonObject(with: Data(contentsOf: stConfig))) as? [String: Any] ?? [:]
        if st["prompts"] == nil || (st["prompts"] as? [String: Any])?.isEmpty == true {
            st["prompts"] = base.prompts.isEmpty ? ["query": "", "document": ""] : base.prompts
        }
        if st["similarity_fn_name"] == nil { st["similarity_fn_name"] = "cosine" }
        if st["default_prompt_name"] == nil { st["default_prompt_name"] = base.defaultPromptName ?? NSNull() }
        try json(st, "config_sentence_transformers.json")
    }
}
