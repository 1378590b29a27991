import ArgumentParser
import EmbedTuneModels
import EmbedTuneTokenizers
import Foundation

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize", abstract: "Write token ids as JSON lines, {\"ids\": [...]}, one per input.")

    @Option(help: "Model directory (uses its tokenizer.json).") var model: String?
    @Option(help: "A tokenizer.json or a tiktoken rank file (.tiktoken).") var tokenizer: String?
    @Option(help: "Input: .txt (one text per line) or .jsonl (see --field).") var input: String
    @Option(help: "JSONL field holding the text.") var field = "text"
    @Option(help: "Output file (default: standard output).") var output: String?
    @Option(name: .spelled("max_length"), help: "Truncate to this many tokens, special tokens included.") var maxLength: Int?
    @Option(name: .spelled("add_special_tokens"), help: .boolean("Add the special tokens the model adds (false: bare ids)."))
    var addSpecialTokens = true

    func validate() throws {
        guard (model == nil) != (tokenizer == nil) else { throw ValidationError("give exactly one of --model or --tokenizer") }
    }

    func run() throws {
        try runReportingErrors {
            let tok: Tokenizer = try model.map { try ModelDirectory(URL(fileURLWithPath: $0)).loadTokenizer() }
                ?? Tokenizer.load(file: URL(fileURLWithPath: tokenizer!))
            let texts = try readTexts(input, field: field)
            let ids = tok.encodeBatch(texts, addSpecialTokens: addSpecialTokens, maxLength: maxLength)
            var out = ""
            for row in ids { out += "{\"ids\": [" + row.map(String.init).joined(separator: ", ") + "]}\n" }
            if let output {
                try Data(out.utf8).write(to: URL(fileURLWithPath: output))
            } else {
                FileHandle.standardOutput.write(Data(out.utf8))
            }
        }
    }
}
