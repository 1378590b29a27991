import ArgumentParser
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import Foundation

struct ModelOptions: ParsableArguments {
    @Option(help: "Hugging Face model directory (config.json, safetensors, tokenizer.json).")
    var model: String

    func directory() throws -> ModelDirectory { try ModelDirectory(URL(fileURLWithPath: model)) }
}

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed", abstract: "Embed texts into a float32 .npy matrix (one row per input, input order).")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Input: .txt (one text per line) or .jsonl (see --field).") var input: String
    @Option(help: "Output .npy file (float32, C order).") var output: String
    @Option(help: "JSONL field holding the text.") var field = "text"
    @Option(name: .customLong("batch-size"), help: "Texts per forward pass.") var batchSize = 32
    @Option(name: .customLong("max-length"), help: "Maximum tokens per text, special tokens included (default: the model's max_seq_length, else 512).")
    var maxLength: Int?
    @Option(help: "Query instruction: texts become \"Instruct: TEXT\\nQuery:<text>\" (Qwen3-Embedding style).")
    var instruction: String?
    @Option(name: .customLong("prompt-name"), help: "A prompt from config_sentence_transformers.json, e.g. query.")
    var promptName: String?
    @Option(help: "Matryoshka: keep the first D dimensions, then renormalise.") var dim: Int?
    @Option(help: "A LoRA adapter directory in PEFT format (adapter_config.json + adapter_model.safetensors).")
    var adapter: String?
    @Flag(help: "No progress bar.") var quiet = false

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        if let maxLength, maxLength < 2 { throw ValidationError("--max-length must be at least 2") }
        if instruction != nil && promptName != nil { throw ValidationError("use --instruction or --prompt-name, not both") }
        guard output.hasSuffix(".npy") else { throw ValidationError("--output must end in .npy") }
    }

    func run() throws {
        try runReportingErrors {
            let dir = try modelOptions.directory()
            let texts = try readTexts(input, field: field)
            let embedder = try Embedder(directory: dir)
            try embedder.setAdapter(adapter.map { URL(fileURLWithPath: $0) })
            var options = Embedder.Options()
            options.batchSize = batchSize
            options.maxLength = maxLength
            options.dimension = dim
            options.prefix = try promptPrefix(dir)
            let progress = ProgressBar(total: texts.count, label: "embed", enabled: !quiet && texts.count > batchSize)
            let (d, values) = try embedder.embed(texts, options: options, progress: progress.update)
            try NPY.write(rows: texts.count, columns: d, values: values, to: URL(fileURLWithPath: output))
            if !quiet {
                FileHandle.standardError.write(Data("embedtune: wrote \(texts.count) × \(d) embeddings to \(output)\n".utf8))
            }
        }
    }

    func promptPrefix(_ dir: ModelDirectory) throws -> String {
        if let instruction { return Embedder.instructionPrefix(instruction) }
        if let promptName {
            guard let p = dir.prompts[promptName] else {
                let known = dir.prompts.keys.sorted().joined(separator: ", ")
                throw CLIError("prompt \"\(promptName)\" is not in \(dir.url.path)/config_sentence_transformers.json (known: \(known.isEmpty ? "none" : known))")
            }
            return p
        }
        if let name = dir.defaultPromptName { return dir.prompts[name] ?? "" }
        return ""
    }
}
