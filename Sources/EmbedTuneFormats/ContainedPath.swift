import Foundation

/// File names that one file gives for another (a shard in a sharded index, a module's folder in
/// modules.json) resolve only inside the directory the user named: an absolute path or a `..`
/// step is refused with one line naming the file and the entry, so a downloaded model cannot make
/// EmbedTune read elsewhere. Symbolic links the directory itself holds are followed, as Hugging
/// Face's cache links its snapshot files to shared blobs.
public enum ContainedPath {
    public static func resolve(_ name: String, in directory: URL, file: URL, item: String) throws -> URL {
        let steps = name.split(separator: "/", omittingEmptySubsequences: true)
        guard !name.hasPrefix("/"), !name.contains("\0"), !steps.contains("..") else {
            throw FormatError(url: file, item: item, "\"\(name)\" leaves the directory \(directory.path) (only names inside it are read)")
        }
        return steps.filter { $0 != "." }.reduce(directory) { $0.appendingPathComponent(String($1)) }
    }
}
