import Foundation

/// Which EmbedTune produced a file. The binary normally runs from its own checkout
/// (.build/release/embedtune), so the commit is read from the nearest enclosing .git — files only,
/// no `git` process, which would be unsafe to fork under MPI. Outside a checkout it is unknown.
public enum BuildInfo {
    public static let commit: String? = {
        var dir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while dir.path != "/" {
            if let gitDir = gitDirectory(dir.appendingPathComponent(".git")) { return headCommit(gitDir) }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }()

    /// `.git` is a directory in a clone and a `gitdir: PATH` file in a worktree.
    static func gitDirectory(_ dotGit: URL) -> URL? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dotGit.path, isDirectory: &isDirectory) else { return nil }
        if isDirectory.boolValue { return dotGit }
        guard let text = try? String(contentsOf: dotGit, encoding: .utf8), text.hasPrefix("gitdir:") else { return nil }
        let path = text.dropFirst("gitdir:".count).trimmingCharacters(in: .whitespacesAndNewlines)
        return resolve(path, from: dotGit.deletingLastPathComponent())
    }

    static func resolve(_ path: String, from directory: URL) -> URL {
        path.hasPrefix("/") ? URL(fileURLWithPath: path) : directory.appendingPathComponent(path).standardizedFileURL
    }

    /// HEAD's commit: detached, a loose ref (in the worktree's or the common directory), or packed.
    static func headCommit(_ gitDir: URL) -> String? {
        func read(_ url: URL) -> String? {
            (try? String(contentsOf: url, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let head = read(gitDir.appendingPathComponent("HEAD")) else { return nil }
        guard head.hasPrefix("ref:") else { return head }
        let ref = head.dropFirst("ref:".count).trimmingCharacters(in: .whitespaces)
        let common = read(gitDir.appendingPathComponent("commondir"))
            .map { resolve($0, from: gitDir) } ?? gitDir
        for dir in [gitDir, common] {
            if let loose = read(dir.appendingPathComponent(ref)) { return loose }
        }
        let packed = read(common.appendingPathComponent("packed-refs")) ?? ""
        for line in packed.split(separator: "\n") where line.hasSuffix(" \(ref)") {
            return String(line.prefix { $0 != " " })
        }
        return nil
    }
}
