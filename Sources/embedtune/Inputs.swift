import EmbedTuneFormats
import Foundation

/// Reads the texts of an input file: .txt (one text per line) or .jsonl (one object per line,
/// text in `field`). Blank JSONL lines are skipped; every other problem names file and line.
func readTexts(_ path: String, field: String = "text") throws -> [String] {
    let url = URL(fileURLWithPath: path)
    let lines = TextFile.lines(try TextFile.read(path)).map(\.text)
    switch url.pathExtension.lowercased() {
    case "txt", "text", "":
        return lines.map(String.init)
    case "jsonl", "ndjson":
        var texts = [String]()
        for (i, line) in lines.enumerated() {
            if line.allSatisfy(\.isWhitespace) { continue }
            let value = try JSONValue.parse(Data(line.utf8), file: "\(path):\(i + 1)")
            guard value.object != nil else { throw FormatError(file: "\(path):\(i + 1)", "line is not a JSON object") }
            guard let v = value[field] else { throw FormatError(file: "\(path):\(i + 1)", item: field, "missing field") }
            guard let s = v.string else { throw FormatError(file: "\(path):\(i + 1)", item: field, "is not a string") }
            texts.append(s)
        }
        return texts
    default:
        throw FormatError(url: url, "unknown input type \".\(url.pathExtension)\" (use .txt or .jsonl)")
    }
}

/// A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise.
final class ProgressBar {
    let total: Int
    let label: String
    let enabled: Bool
    let start = Date()
    var lastDecile = -1
    let tty = isatty(2) != 0

    init(total: Int, label: String, enabled: Bool) {
        self.total = total
        self.label = label
        self.enabled = enabled && total > 0
    }

    func update(_ done: Int) {
        guard enabled else { return }
        let fraction = Double(done) / Double(total)
        let rate = Double(done) / max(Date().timeIntervalSince(start), 1e-9)
        let width = 30, filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let line = String(format: "%@ [%@] %d/%d %.1f/s", label, bar, done, total, rate)
        if tty {
            FileHandle.standardError.write(Data("\r\(line)".utf8))
            if done >= total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else {
            let decile = Int(fraction * 10)
            if decile != lastDecile { lastDecile = decile; FileHandle.standardError.write(Data("\(line)\n".utf8)) }
        }
    }
}
