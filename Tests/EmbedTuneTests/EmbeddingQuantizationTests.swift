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
        #expect(bad.status != 0 && bad.stderr.contains("invalid for '--precision <precision>'. Please provide one of"))
        let stray = try runCLI(["embed", "--model", model, "--input", texts.path, "--output", float.path, "--precision", "binary",
                                "--calibration", float.path])
        #expect(stray.status != 0 && stray.stderr.contains("--calibration goes with"))
    }
}

@Suite("Quantised search and rescoring")
struct QuantizedSearchTests {
    /// 60 random unit rows of 24 dimensions and 7 queries, deterministic.
    static func data() -> (corpus: [Float], queries: [Float], dim: Int) {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 1000
        }
        func unitRows(_ n: Int, _ d: Int) -> [Float] {
            var v = (0..<(n * d)).map { _ in next() }
            for r in 0..<n {
                let norm = sqrt((0..<d).reduce(Float(0)) { $0 + v[r * d + $1] * v[r * d + $1] })
                for c in 0..<d { v[r * d + c] /= norm }
            }
            return v
        }
        return (unitRows(60, 24), unitRows(7, 24), 24)
    }

    @Test("binary first stage orders rows by agreeing bits, worked out bit by bit", arguments: [EmbeddingPrecision.binary, .ubinary])
    func binaryFirstStage(_ precision: EmbeddingPrecision) throws {
        let (corpus, queries, dim) = Self.data()
        let search = try QuantizedSearch(corpus: QuantizedEmbeddings(corpus, rows: 60, dim: dim, precision: precision), ranges: nil)
        let hits = try search.search(queries: queries, topK: 60, rescoreMultiplier: nil)
        for qi in 0..<7 {
            let agreeing = (0..<60).map { r in (0..<dim).filter { (queries[qi * dim + $0] > 0) == (corpus[r * dim + $0] > 0) }.count }
            let scores = hits[qi].map { Int($0.score) }
            // ±1 dot products: agreeing − disagreeing = 2·agreeing − dim.
            #expect(scores == hits[qi].map { 2 * agreeing[$0.index] - dim })
            #expect(scores == scores.sorted(by: >))
        }
    }

    @Test("rescoring every row against the float corpus gives the exact float ranking", arguments: [EmbeddingPrecision.int8, .binary])
    func floatRescoringIsExact(_ precision: EmbeddingPrecision) throws {
        let (corpus, queries, dim) = Self.data()
        let ranges = precision.needsRanges ? try QuantizationRanges(calibration: corpus, rows: 60, dim: dim) : nil
        let search = try QuantizedSearch(corpus: QuantizedEmbeddings(corpus, rows: 60, dim: dim, precision: precision, ranges: ranges),
                                         ranges: ranges)
        let rescored = try search.search(queries: queries, topK: 5, rescoreMultiplier: 12, floatCorpus: corpus)
        let exact = exactTopK(queries: queries, corpus: corpus, dim: dim, k: 5, normalize: false)
        for qi in 0..<7 {
            #expect(rescored[qi].map(\.index) == exact[qi].map(\.index))
            for (a, b) in zip(rescored[qi], exact[qi]) { #expect(abs(a.score - b.score) <= 1e-5) }
        }
    }

    @Test("rescoring against the stored codes multiplies the float query by the dequantised values or the 0/1 bits")
    func storedRescoring() throws {
        let (corpus, queries, dim) = Self.data()
        let ranges = try QuantizationRanges(calibration: corpus, rows: 60, dim: dim)
        for precision in [EmbeddingPrecision.int8, .uint8, .binary, .ubinary] {
            let search = try QuantizedSearch(
                corpus: QuantizedEmbeddings(corpus, rows: 60, dim: dim, precision: precision, ranges: precision.needsRanges ? ranges : nil),
                ranges: precision.needsRanges ? ranges : nil)
            for r in [0, 17, 59] {
                let decoded = search.decodedRow(r)
                for d in 0..<dim {
                    let v = corpus[r * dim + d]
                    if precision.needsRanges {
                        // floor quantisation: the decoded value is the bottom of v's step.
                        #expect(decoded[d] <= v + 1e-6 && v - decoded[d] <= ranges.step(d) * 1.0001, "\(precision) row \(r) dim \(d)")
                    } else {
                        #expect(decoded[d] == (v > 0 ? 1 : 0))
                    }
                }
            }
            let hits = try search.search(queries: queries, topK: 3, rescoreMultiplier: 2)
            for qi in 0..<7 {
                for hit in hits[qi] {
                    let row = search.decodedRow(hit.index)
                    let dot = (0..<dim).reduce(Float(0)) { $0 + queries[qi * dim + $1] * row[$1] }
                    #expect(abs(hit.score - dot) <= 1e-5)
                }
                #expect(hits[qi].map(\.score) == hits[qi].map(\.score).sorted(by: >))
            }
        }
    }

    @Test("with a centre, the binary first stage compares the signs of rows and queries minus it")
    func centredBinary() throws {
        let (corpus, queries, dim) = Self.data()
        let centre = columnMeans(corpus, rows: 60, dim: dim).map { $0 + 0.3 }
        let shifted = (0..<corpus.count).map { corpus[$0] - centre[$0 % dim] }
        let search = try QuantizedSearch(corpus: QuantizedEmbeddings(shifted, rows: 60, dim: dim, precision: .ubinary), ranges: nil, centre: centre)
        let hits = try search.search(queries: queries, topK: 60, rescoreMultiplier: nil)
        for qi in 0..<7 {
            let agreeing = (0..<60).map { r in
                (0..<dim).filter { (queries[qi * dim + $0] - centre[$0] > 0) == (shifted[r * dim + $0] > 0) }.count
            }
            #expect(hits[qi].map { Int($0.score) } == hits[qi].map { 2 * agreeing[$0.index] - dim })
        }
        #expect(throws: FormatError.self) {
            try QuantizedSearch(corpus: QuantizedEmbeddings(shifted, rows: 60, dim: dim, precision: .ubinary), ranges: nil, centre: [1])
        }
    }

    @Test("a float corpus of the wrong size and int8 without ranges are refused")
    func refusals() throws {
        let (corpus, queries, dim) = Self.data()
        let codes = try QuantizedEmbeddings(corpus, rows: 60, dim: dim, precision: .binary)
        let search = try QuantizedSearch(corpus: codes, ranges: nil)
        #expect(throws: FormatError.self) { try search.search(queries: queries, topK: 3, rescoreMultiplier: 2, floatCorpus: [1, 2]) }
        let int8 = try QuantizedEmbeddings(corpus, rows: 60, dim: dim, precision: .int8,
                                           ranges: QuantizationRanges(calibration: corpus, rows: 60, dim: dim))
        #expect(throws: FormatError.self) { try QuantizedSearch(corpus: int8, ranges: nil) }
    }
}
