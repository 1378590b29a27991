import ArgumentParser
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneRetrieval
import Foundation

struct ModelOptions: ParsableArguments {
    @Option(help: "Hugging Face model directory (config.json, safetensors, tokenizer.json).")
    var model: String

    func directory() throws -> ModelDirectory { try ModelDirectory(URL(fileURLWithPath: model)) }
}

/// Domain adapters picked per text by a router (`embed --route auto`, `index build`).
struct RoutingOptions: ParsableArguments {
    @Option(help: "Comma-separated domain adapters to route between, in the router's domain order (with --router).") var adapters: String?
    @Option(help: "Router file from `embedtune route build` (its domains in --adapters order).") var router: String?
    @Option(name: .spelled("route_threshold"), help: "Below this top probability a text mixes its top two adapters by router weight.")
    var routeThreshold: Float = 0.5
    @Option(name: .spelled("route_mix"), help: .boolean("Mix the top two adapters of a text below --route_threshold (false: always the most likely one)."))
    var routeMix = true

    var isRouted: Bool { adapters != nil && router != nil }
    var adapterPaths: [String] { (adapters ?? "").split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }

    func validate() throws {
        if (adapters == nil) != (router == nil) { throw ValidationError("--adapters and --router go together") }
        guard routeThreshold >= 0 && routeThreshold <= 1 else { throw ValidationError("--route_threshold must be in [0, 1]") }
    }

    func embedding(for embedder: Embedder, modelPath: String) throws -> RoutedEmbedding {
        try RoutedEmbedding(router: Router.load(URL(fileURLWithPath: router!)), routerPath: router!, adapterPaths: adapterPaths,
                            embedder: embedder, modelPath: modelPath, threshold: routeThreshold, mix: routeMix)
    }
}

/// INT8 inference, for every command that embeds (embed, eval, serve, bench embed).
struct Int8Options: ParsableArguments {
    @Option(help: .boolean("INT8 inference: the attention and MLP projections in int8 (per-channel weights; activations per row and group of input channels, centred; int32 sums; VNNI where the CPU has it)."))
    var int8 = false
    @Option(name: .spelled("int8_group_size"),
            help: "With --int8: input channels that share an activation scale (0: one scale per row). Smaller groups are closer to float32 and slower.")
    var int8GroupSize = Int8Weights.defaultGroupSize

    func validate() throws {
        if int8GroupSize < 0 { throw ValidationError("--int8_group_size must be 0 (one scale per row) or positive, not \(int8GroupSize)") }
    }

    /// Switches `embedder` to INT8 when asked.
    func apply(to embedder: Embedder) throws {
        if int8 { try embedder.useInt8(groupSize: int8GroupSize) }
    }
}

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed", abstract: "Embed texts into a float32 .npy matrix (one row per input, input order).")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Input: .txt (one text per line) or .jsonl (see --field).") var input: String
    @Option(help: "Output .npy file (C order; float32, or int8/uint8 with --precision).") var output: String
    @Option(help: "sentence-transformers' quantize_embeddings (binary: one bit per dimension, packed; int8/uint8: per-dimension ranges from --calibration).")
    var precision = EmbeddingPrecision.float32
    @Option(help: "With --precision int8/uint8: float32 .npy embeddings whose per-dimension min and max set the ranges (default: the embeddings being written).")
    var calibration: String?
    @Option(help: "JSONL field holding the text.") var field = "text"
    @Option(name: .spelled("batch_size"), help: "Texts per forward pass.") var batchSize = 32
    @Option(name: .spelled("max_length"), help: "Maximum tokens per text, special tokens included (default: the model's max_seq_length, else 512).")
    var maxLength: Int?
    @Option(help: "Query instruction: texts become \"Instruct: TEXT\\nQuery:<text>\" (Qwen3-Embedding style).")
    var instruction: String?
    @Option(name: .spelled("prompt_name"), help: "A prompt from config_sentence_transformers.json, e.g. query.")
    var promptName: String?
    @Option(help: "Matryoshka: keep the first D dimensions, then renormalise.") var dim: Int?
    @Option(help: "A LoRA adapter directory in PEFT format (adapter_config.json + adapter_model.safetensors).")
    var adapter: String?
    @OptionGroup var routing: RoutingOptions
    @Option(help: "auto: pick each text's adapter with --router.") var route: String?
    @Option(name: .spelled("routes_output"), help: "Write each text's route (domains, weights, probabilities) as JSONL here.") var routesOutput: String?
    @OptionGroup var int8Options: Int8Options
    @Option(help: .boolean("No progress bar.")) var quiet = false

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch_size must be positive") }
        if let maxLength, maxLength < 2 { throw ValidationError("--max_length must be at least 2") }
        if instruction != nil && promptName != nil { throw ValidationError("use --instruction or --prompt_name, not both") }
        guard output.hasSuffix(".npy") else { throw ValidationError("--output must end in .npy") }
        if calibration != nil && !precision.needsRanges { throw ValidationError("--calibration goes with --precision int8 or uint8") }
        if let route, route != "auto" { throw ValidationError("--route: only auto is supported") }
        if route != nil && !routing.isRouted { throw ValidationError("--route auto needs --adapters and --router") }
        if routing.adapters != nil && route == nil { throw ValidationError("--adapters needs --route auto (one adapter: --adapter)") }
        if adapter != nil && routing.adapters != nil { throw ValidationError("use --adapter or --adapters, not both") }
    }

    func run() throws {
        try runReportingErrors {
            let dir = try modelOptions.directory()
            let texts = try readTexts(input, field: field)
            let embedder = try Embedder(directory: dir)
            try int8Options.apply(to: embedder)
            try embedder.setAdapter(adapter.map { URL(fileURLWithPath: $0) })
            var options = Embedder.Options()
            options.batchSize = batchSize
            options.maxLength = maxLength
            options.dimension = dim
            options.prefix = try promptPrefix(dir)
            let progress = ProgressBar(total: texts.count, label: "embed", enabled: !quiet && texts.count > batchSize)
            let (d, values) = route == nil ? try embedder.embed(texts, options: options, progress: progress.update)
                                           : try routedEmbed(texts, embedder: embedder, options: options)
            let url = URL(fileURLWithPath: output)
            if precision == .float32 {
                try NPY.write(rows: texts.count, columns: d, values: values, to: url)
            } else {
                var ranges: QuantizationRanges?
                if precision.needsRanges {
                    if let calibration {
                        let c = try NPY.read(URL(fileURLWithPath: calibration))
                        guard c.columns == d else { throw FormatError(file: calibration, "\(c.columns) columns, but the embeddings have \(d)") }
                        ranges = try QuantizationRanges(calibration: c.values, rows: c.rows, dim: d)
                    } else {
                        if texts.count < 100 && !quiet {
                            FileHandle.standardError.write(Data("embedtune: warning: \(precision.rawValue) ranges from only \(texts.count) embeddings; --calibration with a representative set is more stable\n".utf8))
                        }
                        ranges = try QuantizationRanges(calibration: values, rows: texts.count, dim: d)
                    }
                }
                let q = try QuantizedEmbeddings(values, rows: texts.count, dim: d, precision: precision, ranges: ranges)
                try writeAtomically(NPY.encode(rows: q.rows, columns: q.stride, bytes: q.bytes,
                                               signed: precision.isSigned), to: url)
            }
            if !quiet {
                let what = precision == .float32 ? "" : " (\(precision.rawValue))"
                FileHandle.standardError.write(Data("embedtune: wrote \(texts.count) × \(d) embeddings\(what) to \(output)\n".utf8))
            }
        }
    }

    /// Each text embedded with its routed adapter (RoutedEmbedding); the routes are written to
    /// --routes_output and counted on stderr.
    func routedEmbed(_ texts: [String], embedder: Embedder, options: Embedder.Options) throws -> (Int, [Float]) {
        let routed = try routing.embedding(for: embedder, modelPath: modelOptions.model)
        let result = try routed.embed(texts, embedder: embedder, options: options)
        let (router, choices, probabilities) = (routed.router, result.choices, result.probabilities)
        if let routesOutput {
            var lines = ""
            for (c, p) in zip(choices, probabilities) {
                let object: [String: Any] = ["domains": c.adapters.map { router.domains[$0] }, "weights": c.weights,
                                             "probabilities": Dictionary(uniqueKeysWithValues: zip(router.domains, p.map(Double.init)))]
                lines += String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self) + "\n"
            }
            try writeAtomically(Data(lines.utf8), to: URL(fileURLWithPath: routesOutput))
        }
        let counts = router.domains.indices.map { d in choices.filter { $0.adapters == [d] }.count }
        let mixed = choices.filter { $0.adapters.count > 1 }.count
        if !quiet {
            FileHandle.standardError.write(Data("embedtune: routed \(zip(router.domains, counts).map { "\($0) \($1)" }.joined(separator: ", ")), mixed \(mixed)\n".utf8))
        }
        return (result.dim, result.values)
    }

    func promptPrefix(_ dir: ModelDirectory) throws -> String {
        if let instruction { return Embedder.instructionPrefix(instruction) }
        if let promptName {
            guard let p = dir.prompts[promptName] else {
                let known = dir.prompts.keys.sorted().joined(separator: ", ")
                throw FormatError("prompt \"\(promptName)\" is not in \(dir.url.path)/config_sentence_transformers.json (known: \(known.isEmpty ? "none" : known))")
            }
            return p
        }
        if let name = dir.defaultPromptName { return dir.prompts[name] ?? "" }
        return ""
    }
}
