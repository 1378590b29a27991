import EmbedTuneFormats
import EmbedTuneRetrieval
import Foundation
import Testing

@Suite("Quantised embeddings")
struct EmbeddingQuantizationTests {
    /// sentence-transformers' quantize_embeddings of 5 × 13 float32 embeddings, ranges calibrated on
    /// 40 others (tools/reference/make_quantization_fixture.py); row 1 lies above every maximum.
    static let fixture = try! JSONValue.load(Paths.fixtures.appendingPathComponent("quantization/quantization.json"))

    static func floats(_ key: String) -> [Float] { fixture[key]!.array!.map { Float($0.double!) } }

    @Test("every precision gives sentence-transformers' integers exactly, clipping and the zero bit included",
          arguments: ["int8", "uint8", "binary", "ubinary"])
    func parity(_ name: String) throws {
        let rows = Self.fixture["rows"]!.int!, dim = Self.fixture["dim"]!.int!
        let ranges = try QuantizationRanges(calibration: Self.floats("calibration"), rows: Self.fixture["calibration_rows"]!.int!, dim: dim)
        let q = try QuantizedEmbeddings(Self.floats("embeddings"), rows: rows, dim: dim, precision: EmbeddingPrecision(rawValue: name)!,
                                        ranges: ranges)
        let expected = Self.fixture[name]!.array!.map { $0.array!.map { $0.int! } }
        #expect(q.stride == expected[0].count)
        for r in 0..<rows { #expect(q.integers(row: r) == expected[r], "row \(r)") }
    }

    @Test("int8 without ranges, ranges from one embedding and a width mismatch are errors, not crashes")
    func refusals() {
        #expect(throws: FormatError.self) { try QuantizedEmbeddings([1, 2], rows: 1, dim: 2, precision: .int8) }
        #expect(throws: FormatError.self) { try QuantizationRanges(calibration: [1, 2], rows: 1, dim: 2) }
        let ranges = QuantizationRanges(minima: [0, 0, 0], maxima: [1, 1, 1])
        #expect(throws: FormatError.self) { try QuantizedEmbeddings([1, 2], rows: 1, dim: 2, precision: .uint8, ranges: ranges) }
        #expect(throws: FormatError.self) { try QuantizedEmbeddings([1, 2, 3], rows: 1, dim: 2, precision: .binary) }
    }

    @Test("a constant dimension (zero range) quantises with step 1, as numpy does")
    func constantDimension() throws {
        let q = try QuantizedEmbeddings([0.5, 0.5], rows: 2, dim: 1, precision: .uint8,
                                        ranges: QuantizationRanges(minima: [0.5], maxima: [0.5]))
        #expect(q.bytes == [0, 0])
    }

    @Test("embed --precision writes .npy files of int8/uint8 bytes equal to quantising embed's float32 output; bad values are one-line errors")
    func embedCLI() throws {
        let tmp = try Paths.temporaryDirectory()
        let model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path
        let texts = tmp.appendingPathComponent("texts.txt")
        try ["rice paddies", "fish ponds", "tea gardens", "apple orchards"].joined(separator: "\n").write(to: texts, atomically: true, encoding: .utf8)
        let float = tmp.appendingPathComponent("float.npy")
        #expect(try runCLI(["embed", "--model", model, "--input", texts.path, "--output", float.path, "--quiet"]).status == 0)
        let f = try NPY.read(float)
        for (precision, calibration) in [(EmbeddingPrecision.binary, false), (.ubinary, false), (.int8, true), (.uint8, false)] {
            let out = tmp.appendingPathComponent("\(precision.rawValue).npy")
            var args = ["embed", "--model", model, "--input", texts.path, "--output", out.path, "--precision", precision.rawValue]
            if calibration { args += ["--calibration", float.path] }
            let r = try runCLI(args)
            #expect(r.status == 0, "\(r.stderr)")
            let ranges = precision == .int8 || precision == .uint8 ? try QuantizationRanges(calibration: f.values, rows: f.rows, dim: f.columns) : nil
            let expected = try QuantizedEmbeddings(f.values, rows: f.rows, dim: f.columns, precision: precision, ranges: ranges)
            let data = try Data(contentsOf: out)
            let signed = precision == .int8 || precision == .binary
            #expect(data == NPY.encode(rows: f.rows, columns: expected.stride, bytes: expected.bytes, signed: signed))
            #expect(String(decoding: data.prefix(64), as: UTF8.self).contains(signed ? "'|i1'" : "'|u1'"))
        }
        let bad = try runCLI(["embed", "--model", model, "--input", texts.path, "--output", float.path, "--precision", "int4"])
        #expect(bad.status != 0 && bad.stderr.contains("--precision must be one of"))
        let stray = try runCLI(["embed", "--model", model, "--input", texts.path, "--output", float.path, "--precision", "binary",
                                "--calibration", float.path])
        #expect(stray.status != 0 && stray.stderr.contains("--calibration goes with"))
    }
}
