import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// How PEFT lays out an adapter of a task model (`get_peft_model` on an
/// AutoModelForSequenceClassification with task_type SEQ_CLS): the backbone's modules under the
/// task model's prefix (`bert.`, `roberta.`), the head (`classifier`) at the top, and the modules
/// it stores whole (modules_to_save) rather than as LoRA pairs.
public struct PEFTTask: Sendable, Equatable {
    public var taskType: String
    public var backbonePrefix: String
    public var modulesToSave: [String]
    /// Modules of the task model outside the backbone, named without its prefix.
    public var topLevel: [String]

    public init(taskType: String, backbonePrefix: String, modulesToSave: [String], topLevel: [String]) {
        self.taskType = taskType
        self.backbonePrefix = backbonePrefix
        self.modulesToSave = modulesToSave
        self.topLevel = topLevel
    }

    /// A module's (or tensor's) path in the task model: "encoder.layer.0.attention.self.query" →
    /// "bert.encoder.layer.0.attention.self.query"; "classifier.weight" stays.
    public func path(_ module: String) -> String {
        topLevel.contains { module == $0 || module.hasPrefix($0 + ".") } ? module : backbonePrefix + module
    }

    /// Whether `module` lies inside a module stored whole (PEFT's rule: one of its dotted components
    /// begins the stored module's name).
    public func storesWhole(_ module: String) -> Bool {
        modulesToSave.contains { ("." + module + ".").contains("." + $0 + ".") }
    }
}

/// LoRA adapters in PEFT's on-disk format: adapter_config.json + adapter_model.safetensors with
/// keys `base_model.model.<module>.lora_A.weight` / `.lora_B.weight` (no adapter name), as
/// `PeftModel.save_pretrained` writes them for a base loaded with AutoModel.
public enum PEFTAdapter {
    public static let keyPrefix = "base_model.model."

    public static func key(_ module: String, _ which: String) -> String { "\(keyPrefix)\(module).lora_\(which).weight" }

    /// The key of a LoRA matrix of `module` as the adapter saves it (under the task model's path
    /// for a task adapter).
    public static func key(_ module: String, _ which: String, task: PEFTTask?) -> String { key(task?.path(module) ?? module, which) }

    /// Writes the adapter to `directory` (created if needed), each file atomically. A task adapter
    /// (`LoRAAdapter.task`) is written as PEFT writes one: LoRA keys under the task model's paths,
    /// the whole tensors as `base_model.model.<path>`, task_type and modules_to_save in the config.
    public static func save(_ adapter: LoRAAdapter, to directory: URL, baseModel: String, extra: [String: Any] = [:]) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var items = [SafetensorsWriter.Item]()
        let task = adapter.task
        for s in adapter.slots {
            items.append(.init(name: key(s.module, "A", task: task), shape: [s.rank, s.inFeatures],
                               values: UnsafeBufferPointer(start: adapter.a(s), count: s.rank * s.inFeatures)))
            items.append(.init(name: key(s.module, "B", task: task), shape: [s.outFeatures, s.rank],
                               values: UnsafeBufferPointer(start: adapter.b(s), count: s.outFeatures * s.rank)))
        }
        for t in adapter.wholeTensors {
            items.append(.init(name: keyPrefix + (task?.path(t.name) ?? t.name), shape: t.shape,
                               values: UnsafeBufferPointer(start: adapter.value(t), count: t.count)))
        }
        try SafetensorsWriter.write(items, metadata: ["format": "pt"], to: directory.appendingPathComponent("adapter_model.safetensors"))
        var config: [String: Any] = [
            "peft_type": "LORA", "r": adapter.config.r, "lora_alpha": adapter.config.loraAlpha,
            "lora_dropout": adapter.config.loraDropout, "target_modules": adapter.config.targetModules.sorted(),
            "use_rslora": adapter.config.useRslora, "bias": "none", "fan_in_fan_out": false, "inference_mode": true,
            "init_lora_weights": true, "task_type": task.map { $0.taskType as Any } ?? NSNull(), "base_model_name_or_path": baseModel,
            "modules_to_save": task.map { $0.modulesToSave as Any } ?? NSNull(), "use_dora": false, "rank_pattern": [String: Any](), "alpha_pattern": [String: Any](),
            "layers_to_transform": NSNull(), "layers_pattern": NSNull(), "revision": NSNull(),
        ]
        for (k, v) in extra { config[k] = v }
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try writeAtomically(data, to: directory.appendingPathComponent("adapter_config.json"))
    }

    /// Reads adapter_config.json into a LoRAConfig, refusing features we do not implement.
    public static func loadConfig(_ directory: URL) throws -> LoRAConfig {
        let url = directory.appendingPathComponent("adapter_config.json")
        guard FileManager.default.fileExists(atPath: url.path) else { throw FormatError(url: url, "missing (not a PEFT adapter directory)") }
        let json = try JSONValue.load(url)
        if let t = json["peft_type"]?.string, t != "LORA" { throw FormatError(url: url, item: "peft_type", "\"\(t)\" is not LORA") }
        guard let r = json["r"]?.int, r > 0 else { throw FormatError(url: url, item: "r", "missing or not a positive integer") }
        guard let alpha = json["lora_alpha"]?.double else { throw FormatError(url: url, item: "lora_alpha", "missing") }
        if json["use_dora"]?.bool == true { throw FormatError(url: url, item: "use_dora", "DoRA adapters are not supported") }
        for field in ["rank_pattern", "alpha_pattern"] where !(json[field]?.object?.isEmpty ?? true) {
            throw FormatError(url: url, item: field, "per-module ranks/alphas are not supported")
        }
        if json["fan_in_fan_out"]?.bool == true { throw FormatError(url: url, item: "fan_in_fan_out", "Conv1D-style weights are not supported") }
        var targets = [String]()
        if let list = json["target_modules"]?.array { targets = list.compactMap(\.string) }
        else if let one = json["target_modules"]?.string { targets = [one] }
        guard !targets.isEmpty else { throw FormatError(url: url, item: "target_modules", "missing") }
        return LoRAConfig(r: r, alpha: alpha, dropout: json["lora_dropout"]?.double ?? 0, targetModules: targets,
                          useRSLoRA: json["use_rslora"]?.bool ?? false)
    }

    /// Reads a PEFT adapter directory on its own, without the model it was trained for: one
    /// slot per module the file holds (in module order), module paths without a task-model
    /// prefix ("model." / "bert." / "roberta."), every tensor checked against the config's rank.
    public static func load(_ directory: URL) throws -> LoRAAdapter {
        let config = try loadConfig(directory)
        let baseModel = (try? JSONValue.load(directory.appendingPathComponent("adapter_config.json")))?["base_model_name_or_path"]?.string
        let weightsURL = directory.appendingPathComponent("adapter_model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsURL.path) else { throw FormatError(url: weightsURL, "missing") }
        let file = try SafetensorsFile(url: weightsURL)
        var pairs = [String: (a: SafetensorsFile.Entry?, b: SafetensorsFile.Entry?)]()
        let saved = try savedModuleNames(directory)
        for name in file.names {
            // Whole modules (modules_to_save, e.g. a classification head) are read by `savedModules`.
            if saved.contains(where: { savedTensor(name, belongsTo: $0) }) { continue }
            guard name.hasPrefix(keyPrefix), name.hasSuffix(".weight"), let range = name.range(of: ".lora_", options: .backwards) else {
                throw FormatError(url: weightsURL, item: "tensor \"\(name)\"", "is not a LoRA tensor (base_model.model.<module>.lora_A/B.weight)")
            }
            let module = canonicalModule(String(name[name.index(name.startIndex, offsetBy: keyPrefix.count)..<range.lowerBound]))
            switch name[range.upperBound...].dropLast(".weight".count) {
            case "A": pairs[module, default: (nil, nil)].a = try file.entry(name)
            case "B": pairs[module, default: (nil, nil)].b = try file.entry(name)
            default: throw FormatError(url: weightsURL, item: "tensor \"\(name)\"", "is neither lora_A nor lora_B")
            }
        }
        guard !pairs.isEmpty else { throw FormatError(url: weightsURL, "holds no LoRA tensors") }
        var linears = [(module: String, inFeatures: Int, outFeatures: Int)](), entries = [(a: SafetensorsFile.Entry, b: SafetensorsFile.Entry)]()
        for module in pairs.keys.sorted() {
            guard let a = pairs[module]!.a, let b = pairs[module]!.b else {
                throw FormatError(url: weightsURL, item: "module \"\(module)\"", "has lora_A or lora_B but not both")
            }
            guard a.shape.count == 2, b.shape.count == 2, a.shape[0] == b.shape[1], a.shape[0] == config.r else {
                throw FormatError(url: weightsURL, item: "module \"\(module)\"",
                                  "lora_A \(a.shape) and lora_B \(b.shape) do not form a rank-\(config.r) pair (r in adapter_config.json)")
            }
            linears.append((module, a.shape[1], b.shape[0]))
            entries.append((a, b))
        }
        var cfg = config
        cfg.targetModules = linears.map(\.module)
        let adapter = try LoRAAdapter(config: cfg, linears: linears)
        for (s, e) in zip(adapter.slots, entries) {
            try file.read(e.a, into: adapter.a(s))
            try file.read(e.b, into: adapter.b(s))
        }
        adapter.source = directory
        adapter.baseModel = baseModel
        return adapter
    }

    /// adapter_config.json's `modules_to_save`: modules the adapter stores whole, not as LoRA pairs
    /// (PEFT adds the classification head, "classifier" / "score", for task_type SEQ_CLS).
    public static func savedModuleNames(_ directory: URL) throws -> [String] {
        let url = directory.appendingPathComponent("adapter_config.json")
        let value = try JSONValue.load(url)["modules_to_save"]
        if value == nil || value!.isNull { return [] }
        guard let names = value!.array?.compactMap(\.string) ?? value!.string.map({ [$0] }) else {
            throw FormatError(url: url, item: "modules_to_save", "is neither a list of module names nor null")
        }
        return names
    }

    /// Whether tensor `name` (`base_model.model.<path>`) lies inside module `module` (PEFT's rule:
    /// the module's name is the path's last component or a dot-separated suffix).
    static func savedTensor(_ name: String, belongsTo module: String) -> Bool {
        guard name.hasPrefix(keyPrefix), !name.contains(".lora_") else { return false }
        let path = "." + name.dropFirst(keyPrefix.count)
        return path.range(of: "." + module + ".") != nil
    }

    /// The tensors of the modules an adapter stores whole (`modules_to_save`), as fp32, keyed by
    /// their path without `base_model.model.` and the task-model prefix ("classifier.weight").
    public static func savedModules(_ directory: URL) throws -> [String: (shape: [Int], values: [Float])] {
        let modules = try savedModuleNames(directory)
        guard !modules.isEmpty else { return [:] }
        let weightsURL = directory.appendingPathComponent("adapter_model.safetensors")
        let file = try SafetensorsFile(url: weightsURL)
        var out = [String: (shape: [Int], values: [Float])]()
        for name in file.names where modules.contains(where: { savedTensor(name, belongsTo: $0) }) {
            let entry = try file.entry(name)
            var values = [Float](repeating: 0, count: entry.shape.reduce(1, *))
            try values.withUnsafeMutableBufferPointer { try file.read(entry, into: $0.baseAddress!) }
            out[canonicalModule(String(name.dropFirst(keyPrefix.count)))] = (entry.shape, values)
        }
        return out
    }

    /// Adapters saved from a task model (AutoModelForXxx) carry "model." / "bert." / "roberta."
    /// before the backbone's own path; adapters here use the backbone path.
    static func canonicalModule(_ path: String) -> String {
        for prefix in ["model.", "bert.", "roberta."] where path.hasPrefix(prefix) { return String(path.dropFirst(prefix.count)) }
        return path
    }

    /// Loads an adapter for `model`: every module of the file must be a linear of the model with
    /// the same shape (modules the model drops, such as a pruned final block's, are skipped): an
    /// adapter that matches nothing is an error, never a silent no-op. `headLinears` are linears
    /// past the backbone that the caller applies the adapter to (a classification head's);
    /// `savedModules` the whole modules (`modules_to_save`) it reads with `savedModules(_:)`: an
    /// adapter storing any other module whole is an error.
    public static func load(_ directory: URL, for model: TrainableBackbone,
                            headLinears: [(module: String, inFeatures: Int, outFeatures: Int)] = [],
                            savedModules accepted: Set<String> = []) throws -> LoRAAdapter {
        let stored = try load(directory)
        let weightsURL = directory.appendingPathComponent("adapter_model.safetensors")
        if let other = try savedModuleNames(directory).first(where: { !accepted.contains($0) }),
           try SafetensorsFile(url: weightsURL).names.contains(where: { savedTensor($0, belongsTo: other) }) {
            throw FormatError(url: directory.appendingPathComponent("adapter_config.json"), item: "modules_to_save",
                              "the adapter replaces module \"\(other)\" whole, which this model does not have or apply")
        }
        let allLinears = model.linearLayers + headLinears
        let shapes = Dictionary(allLinears.map { ($0.module, ($0.inFeatures, $0.outFeatures)) }, uniquingKeysWith: { a, _ in a })
        let unknown = stored.slots.filter { shapes[$0.module] == nil && !model.unusedAdapterModules.contains($0.module) }
        if let first = unknown.first {
            throw FormatError(url: weightsURL, item: "tensor \"\(key(first.module, "A"))\"",
                              "matches no linear layer of this model (\(unknown.count * 2) such tensor(s); is the adapter for another base model?)")
        }
        for s in stored.slots {
            guard let (inFeatures, outFeatures) = shapes[s.module] else { continue }
            guard s.inFeatures == inFeatures, s.outFeatures == outFeatures else {
                throw FormatError(url: weightsURL, item: "module \"\(s.module)\"",
                                  "lora_A [\(s.rank), \(s.inFeatures)] and lora_B [\(s.outFeatures), \(s.rank)], expected [\(s.rank), \(inFeatures)] and [\(outFeatures), \(s.rank)]")
            }
        }
        // The model's linears the file covers, in the model's order.
        let linears = allLinears.filter { stored.slot($0.module) != nil }
        if linears.isEmpty { throw FormatError(url: weightsURL, "holds no LoRA tensors for this model's linear layers") }
        var config = stored.config
        config.targetModules = linears.map(\.module)
        let adapter = try LoRAAdapter(config: config, linears: linears)
        for s in adapter.slots {
            let from = stored.slot(s.module)!
            adapter.a(s).update(from: stored.a(from), count: s.rank * s.inFeatures)
            adapter.b(s).update(from: stored.b(from), count: s.outFeatures * s.rank)
        }
        adapter.source = stored.source
        adapter.baseModel = stored.baseModel
        return adapter
    }
}
