import Foundation

/// Text files the way every reader takes them: UTF-8 with an optional byte-order mark, lines
/// ended by LF or CRLF, the final newline optional. Readers of JSONL, CSV/TSV, BEIR, TOML,
/// vocab.txt and .txt inputs all go through here, so a file written on Windows or by an editor
/// that adds a BOM reads like any other.
public enum TextFile {
    /// The whole file as text, without a leading byte-order mark. Errors name the file.
    public static func read(_ path: String) throws -> String {
        // Read through a handle: Data(contentsOf:) refuses character devices such as /dev/stdin.
        let data: Data
        do { data = try FileHandle(forReadingFrom: URL(fileURLWithPath: path)).readToEnd() ?? Data() }
        catch { throw FormatError(file: path, "cannot read: \(error.localizedDescription)") }
        return try decode(data, file: path)
    }

    /// UTF-8 bytes as text, without a leading byte-order mark.
    public static func decode(_ data: Data, file: String) throws -> String {
        guard let text = String(data: data, encoding: .utf8) else { throw FormatError(file: file, "is not valid UTF-8") }
        return withoutBOM(text)
    }

    /// `text` without a leading byte-order mark.
    /// Compared by scalar: a BOM followed by a combining mark forms one Character with it.
    public static func withoutBOM(_ text: String) -> String {
        text.unicodeScalars.first == "\u{FEFF}" ? String(text.unicodeScalars.dropFirst()) : text
    }

    /// The lines of `text`, numbered from 1, without their LF or CRLF; a final line ending adds
    /// no empty line, and an empty text has none. Split on the byte: a CRLF pair is one
    /// Character, so a Character split would not see it.
    public static func lines(_ text: String) -> [(number: Int, text: Substring)] {
        var lines = text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        return lines.enumerated().map { i, line in
            (i + 1, Substring(line.last == 0x0D ? line.dropLast() : line))
        }
    }
}
