import EmbedTuneFormats
import Foundation
import Testing

/// Inputs libFuzzer (`make fuzz`) or a review of a fuzz target found to crash a reader, kept in
/// Tests/Fixtures/fuzz/<target>/. Each replays through the same target the fuzzer ran (the
/// embedtune-fuzz replay tool) and must be rejected with an error, never crash the process; the
/// findings whose reader is a single call are checked against that call directly too.
@Suite("Fuzz reproducers: each is rejected with an error")
struct FuzzRegressionTests {
    static let reproducers = Paths.fixtures.appendingPathComponent("fuzz")

    static var targets: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: reproducers.path)) ?? []).sorted()
    }

    @Test("every reproducer replays through its fuzz target as a rejected input", arguments: targets)
    func replay(target: String) throws {
        let dir = Self.reproducers.appendingPathComponent(target)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted().map { dir.appendingPathComponent($0).path }
        #expect(!files.isEmpty)
        let result = try runCLI(files, environment: ["EMBEDTUNE_FUZZ_TARGET": target], executable: Paths.fuzzReplay)
        #expect(result.status == 0, "embedtune-fuzz died on a \(target) reproducer: \(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == files.count, "\(result.stdout)")
        for line in lines { #expect(line.contains(": rejected: "), "\(line)") }
    }

    @Test(".npy: a shape whose byte size overflows Int is a FormatError")
    func npyShapeOverflow() throws {
        let url = Self.reproducers.appendingPathComponent("npy/shape-overflow")
        #expect(throws: FormatError.self) { try NPY.read(url) }
    }

    @Test("TOML: arrays nested past the cap are a FormatError, not a stack overflow")
    func tomlNestedArrays() throws {
        let url = Self.reproducers.appendingPathComponent("toml/nested-arrays")
        #expect(throws: FormatError.self) { try TOML.parse(try TextFile.read(url.path), file: url.path) }
        let deep = "a = " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "\n"
        #expect(throws: FormatError.self) { try TOML.parse(deep, file: "deep.toml") }
        let fine = "a = " + String(repeating: "[", count: 512) + "1" + String(repeating: "]", count: 512) + "\n"
        #expect(throws: Never.self) { try TOML.parse(fine, file: "fine.toml") }
    }

    @Test("zstd: a frame header claiming more than its blocks can hold is a FormatError, not an allocation")
    func zstdContentSizeClaims() throws {
        for size: UInt64 in [0xFFFF_FFFF_FFFF_FFF0, 1 << 40, 1 << 20] {
            var frame = Data([0x28, 0xB5, 0x2F, 0xFD, 0xE0])  // magic; single segment, 8-byte content size
            withUnsafeBytes(of: size.littleEndian) { frame.append(contentsOf: $0) }
            frame.append(contentsOf: [1, 0, 0])                // an empty last raw block
            #expect(throws: FormatError.self) { try Zstd.decompress(frame, file: "state.bin.zst") }
        }
    }
}
