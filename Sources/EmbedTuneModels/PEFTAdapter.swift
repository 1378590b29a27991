import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

/// LoRA adapters in PEFT's on-disk format: adapter_config.json + adapter_model.safetensors with
/// keys `base_model.model.<module>.lora_A.weight` / `.lora_B.weight` (no adapter name), as
/// `PeftModel.save_pretrained` writes them for a base loaded with AutoModel.
public enum PEFTAdapter {
    public static let keyPrefix = "base_model.model."

    public static func key(_ module: String, _ which: String) -> String { "\(keyPrefix)\(module).lora_\(which).weight" }

    /// Writes the adapter to `directory` (created if needed), each file atomically.
    public static func save(_ adapter: LoRAAdapter, to directory: URL, baseModel: String, extra: [String: Any] = [:]) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var items = [SafetensorsWriter.Item]()
        for s in adapter.slots {
            items.append(.init(name: key(s.module, "A"), shape: [s.rank, s.inFeatures],
                               values: UnsafeBufferPointer(start: adapter.a(s), count: s.rank * s.inFeatures)))
            items.append(.init(name: key(s.module, "B"), shape: [s.outFeatures, s.rank],
                               values: UnsafeBufferPointer(start: adapter.b(s), count: s.outFeatures * s.rank)))
        }
        try SafetensorsWriter.write(items, metadata: ["format": "pt"], to: directory.appendingPathComponent("adapter_model.safetensors"))
        var config: [String: Any] = [
            "peft_type": "LORA", "r": adapter.config.r, "lora_alpha": adapter.config.loraAlpha,
            "lora_dropout": adapter.config.loraDropout, "target_modules": adapter.config.targetModules.sorted(),
            "use_rslora": adapter.config.useRslora, "bias": "none", "fan_in_fan_out": false, "inference_mode": true,
            "init_lora_weights": true, "task_type": NSNull(), "base_model_name_or_path": baseModel,
            "modules_to_save": NSNull(), "use_dora": false, "rank_pattern": [String: Any](), "alpha_pattern": [String: Any](),
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

    /// Loads an adapter for `model`. Every LoRA tensor in the file must belong to a linear of the
    /// model and every targeted linear must have both of its tensors: an adapter that matches
    /// nothing is an error, never a silent no-op.
    public static func load(_ directory: URL, for model: TrainableBackbone) throws -> LoRAAdapter {
        let config = try loadConfig(directory)
        let weightsURL = directory.appendingPathComponent("adapter_model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsURL.path) else { throw FormatError(url: weightsURL, "missing") }
        let file = try SafetensorsFile(url: weightsURL)
        // Map file keys to module paths: strip base_model.model., and a task-model prefix ("model.").
        var byModule = [String: (a: String?, b: String?)]()
        let modules = Set(model.linearLayers.map(\.module))
        var unknown = [String]()
        for name in file.names {
            guard name.hasPrefix(keyPrefix), name.hasSuffix(".weight"),
                  let range = name.range(of: ".lora_", options: .backwards) else { unknown.append(name); continue }
            var module = String(name[name.index(name.startIndex, offsetBy: keyPrefix.count)..<range.lowerBound])
            let which = name[range.upperBound...].dropLast(".weight".count)
            if !modules.contains(module) {
                for prefix in ["model.", "bert.", "roberta."] where module.hasPrefix(prefix) && modules.contains(String(module.dropFirst(prefix.count))) {
                    module = String(module.dropFirst(prefix.count))
                }
            }
            if model.unusedAdapterModules.contains(module) { continue }
            guard modules.contains(module), which == "A" || which == "B" else { unknown.append(name); continue }
            if which == "A" { byModule[module, default: (nil, nil)].a = name } else { byModule[module, default: (nil, nil)].b = name }
        }
        if !unknown.isEmpty {
            throw FormatError(url: weightsURL, item: "tensor \"\(unknown[0])\"",
                              "matches no linear layer of this model (\(unknown.count) such tensor(s); is the adapter for another base model?)")
        }
        if byModule.isEmpty { throw FormatError(url: weightsURL, "holds no LoRA tensors") }
        // Build the adapter over exactly the modules the file covers.
        let linears = model.linearLayers.filter { byModule[$0.module] != nil }
        var cfg = config
        cfg.targetModules = linears.map(\.module)
        let adapter = try LoRAAdapter(config: cfg, linears: linears)
        for s in adapter.slots {
            guard let pair = byModule[s.module], let aName = pair.a, let bName = pair.b else {
                throw FormatError(url: weightsURL, item: "module \"\(s.module)\"", "has lora_A or lora_B but not both")
            }
            let a = try file.entry(aName), b = try file.entry(bName)
            guard a.shape == [s.rank, s.inFeatures] else {
                throw FormatError(url: weightsURL, item: "tensor \"\(aName)\"", "shape \(a.shape), expected [\(s.rank), \(s.inFeatures)]")
            }
            guard b.shape == [s.outFeatures, s.rank] else {
                throw FormatError(url: weightsURL, item: "tensor \"\(bName)\"", "shape \(b.shape), expected [\(s.outFeatures), \(s.rank)]")
            }
            try file.read(a, into: adapter.a(s))
            try file.read(b, into: adapter.b(s))
        }
        return adapter
    }
}
