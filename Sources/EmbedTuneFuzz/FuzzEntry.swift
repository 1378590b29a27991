import Foundation

// The fuzz harness for every reader of outside files. EMBEDTUNE_FUZZ_TARGET names the reader
// (FuzzTarget.all). Built with -DFUZZING and -sanitize=fuzzer,address it is a libFuzzer binary;
// built plainly (the normal `swift build`) it replays files through the same targets, which is
// how a crash reproducer is checked and how FuzzRegressionTests run them:
//
//   EMBEDTUNE_FUZZ_TARGET=gguf embedtune-fuzz FILE...      one line per file: accepted / rejected: why
//   embedtune-fuzz --pack OUT PART...                      a multi-file input from files (- = empty)
//   embedtune-fuzz --checkpoint-seeds DIR                  the checkpoint target's seeds

/// The target the environment names; exits with the list of names when it names none.
func selectedTarget() -> FuzzTarget {
    let name = ProcessInfo.processInfo.environment["EMBEDTUNE_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget.named(name) else {
        let names = FuzzTarget.all.map(\.name).joined(separator: " ")
        FileHandle.standardError.write(Data("EMBEDTUNE_FUZZ_TARGET must be one of: \(names) (got \"\(name)\")\n".utf8))
        exit(2)
    }
    return target
}

/// Runs one input; every thrown error is the reader rejecting the input, which is a pass.
@discardableResult
func runInput(_ target: FuzzTarget, _ bytes: [UInt8], scratch: FuzzScratch) -> Error? {
    do { try target(bytes, in: scratch.fresh()); return nil } catch { return error }
}

#if FUZZING
private nonisolated(unsafe) var fuzzTarget: FuzzTarget?
private nonisolated(unsafe) var fuzzScratch: FuzzScratch?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let target = fuzzTarget, let scratch = fuzzScratch else { return -1 }
    runInput(target, Array(UnsafeBufferPointer(start: data, count: size)), scratch: scratch)
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

/// SwiftPM links an executable target's entry point as `<module>_main` and points `main` at it,
/// so the fuzz build defines that symbol and hands the command line to libFuzzer's driver.
@_cdecl("EmbedTuneFuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    fuzzTarget = selectedTarget()
    fuzzScratch = FuzzScratch()
    var count = argc, arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzz)
}
#else
@main
enum FuzzReplay {
    static func main() throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        switch arguments.first {
        case "--pack":
            guard arguments.count >= 3 else { usage() }
            let parts = try arguments.dropFirst(2).map { $0 == "-" ? [] : [UInt8](try Data(contentsOf: URL(fileURLWithPath: $0))) }
            try Data(FuzzParts.pack(parts)).write(to: URL(fileURLWithPath: arguments[1]))
        case "--checkpoint-seeds":
            guard arguments.count == 2 else { usage() }
            let dir = URL(fileURLWithPath: arguments[1])
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try Data(try TrainingFuzzTargets.seed(withPlaceholder: false)).write(to: dir.appendingPathComponent("checkpoint"))
            try Data(try TrainingFuzzTargets.seed(withPlaceholder: true)).write(to: dir.appendingPathComponent("checkpoint-placeholder"))
        case nil:
            usage()
        default:
            let target = selectedTarget(), scratch = FuzzScratch()
            for path in arguments {
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
                if let error = runInput(target, bytes, scratch: scratch) { print("\(path): rejected: \(error)") }
                else { print("\(path): accepted") }
            }
        }
    }

    static func usage() -> Never {
        FileHandle.standardError.write(Data("""
            usage: EMBEDTUNE_FUZZ_TARGET=NAME embedtune-fuzz FILE...   replay inputs through a target
                   embedtune-fuzz --pack OUT PART...                  pack files (- for an empty one) into one input
                   embedtune-fuzz --checkpoint-seeds DIR              write the checkpoint target's seeds

            """.utf8))
        exit(2)
    }
}
#endif
