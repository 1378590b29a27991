import EmbedTuneFormats
import ArgumentParser
import EmbedTuneKernels
import EmbedTuneModels
import Foundation

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks: medians after warm-up, printed as a table and JSON.",
        subcommands: [GEMMBench.self, EmbedBench.self, TrainBench.self, MineBench.self, AllReduceBench.self, IndexBench.self, ServeBench.self])
}

/// Runs this executable with `arguments`, under mpirun when `worldSize` > 1 (each rank with
/// cores ÷ ranks threads), and returns its standard output.
func runBenchWorker(worldSize: Int, arguments: [String], what: String) throws -> String {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
    let p = Process()
    if worldSize > 1 {
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let cores = ProcessInfo.processInfo.activeProcessorCount
        p.arguments = ["mpirun", "-np", "\(worldSize)"] + (worldSize > cores ? ["--oversubscribe"] : [])
            + ["-x", "OPENBLAS_NUM_THREADS=\(max(1, cores / worldSize))", exe] + arguments
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
    } else {
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = arguments
    }
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw FormatError("bench worker for \(what) failed (exit \(p.terminationStatus))") }
    return String(decoding: data, as: UTF8.self)
}

/// Seconds of `repeats` sgemm calls of M×N×K (random operands) on `threads` compute threads,
/// after one warm-up call; the process's thread count is restored afterwards.
func sgemmTimes(m: Int, n: Int, k: Int, threads: Int, repeats: Int) -> [Double] {
    let previous = BLASRuntime.threads
    BLASRuntime.setThreads(threads)
    defer { BLASRuntime.setThreads(previous) }
    let a = Tensor(shape: [m, k], values: (0..<(m * k)).map { _ in Float.random(in: -1...1) })
    let b = Tensor(shape: [k, n], values: (0..<(k * n)).map { _ in Float.random(in: -1...1) })
    let c = Tensor(zeros: [m, n])
    let run = { sgemm(m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: n, c: c.pointer, ldc: n) }
    run()
    return (0..<repeats).map { _ in timed(run) }
}

/// sgemm GFLOP/s at 2048×1024×1024 on `threads` compute threads (the best of 16): the peak MFU is
/// measured against.
func gemmPeakGFLOPs(threads: Int) -> Double {
    let m = 2048, n = 1024, k = 1024
    return 2 * Double(m * n * k) / (sgemmTimes(m: m, n: n, k: k, threads: threads, repeats: 16).min() ?? 1) / 1e9
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
}

func timed(_ body: () throws -> Void) rethrows -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
}

/// Prints rows as an aligned table and, with `jsonPath`, writes them as JSON.
func report(_ title: String, _ rows: [[String: Any]], columns: [String], jsonPath: String?) throws {
    print("\n\(title)  (BLAS core \(BLASRuntime.coreName))")
    let cells = rows.map { r in columns.map { c -> String in
        if let d = r[c] as? Double {
            if d == d.rounded() && abs(d) < 1e9 && !(c.contains("per") || c.hasPrefix("s_") || c.hasSuffix("_s") || c.contains("ms") || c.contains("gflops") || c.contains("mb")) {
                return String(Int(d))
            }
            return String(format: d >= 100 ? "%.1f" : "%.3f", d)
        }
        return "\(r[c] ?? "")"
    } }
    let widths = columns.indices.map { i in max(columns[i].count, cells.map { $0[i].count }.max() ?? 0) }
    func line(_ xs: [String]) -> String {
        zip(xs, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
    }
    print(line(columns))
    print(line(widths.map { String(repeating: "-", count: $0) }))
    for c in cells { print(line(c)) }
    if let jsonPath {
        let object: [String: Any] = ["benchmark": title, "blas_core": BLASRuntime.coreName, "kernels": GEMMKernel.current.rawValue,
                                     "results": rows]
        try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: jsonPath))
    }
}

struct GEMMBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gemm", abstract: "sgemm GFLOP/s at M×N×K.")

    @Option(help: "Rows of A and C.") var m = 2048
    @Option(help: "Columns of B and C.") var n = 1024
    @Option(help: "Columns of A, rows of B.") var k = 1024
    @Option(help: "Comma-separated thread counts.") var threads = "1,\(ProcessInfo.processInfo.activeProcessorCount)"
    @Option(help: "Timed calls per thread count, after one warm-up call.") var repeats = 10
    @Option(help: "Write results as JSON here.") var json: String?
    @Option(help: .boolean("First check sgemm (plain and transposed) against a naive reference; exit 1 on mismatch."))
    var verify = false

    func run() throws {
        try runReportingErrors {
            if verify { try verifyGEMM() }
            var rows: [[String: Any]] = []
            for t in threads.split(separator: ",").compactMap({ Int($0) }) {
                let s = median(sgemmTimes(m: m, n: n, k: k, threads: t, repeats: repeats))
                rows.append(["shape": "\(m)x\(n)x\(k)", "threads": t, "median_ms": s * 1e3,
                             "gflops": 2 * Double(m) * Double(n) * Double(k) / s / 1e9])
            }
            try report("bench gemm", rows, columns: ["shape", "threads", "median_ms", "gflops"], jsonPath: json)
        }
    }

    func verifyGEMM() throws {
        var worst = 0.0
        for (mm, nn, kk) in [(131, 67, 259), (64, 64, 64), (1, 300, 17), (257, 1, 129)] {
            let a = (0..<(mm * kk)).map { _ in Float.random(in: -1...1) }
            let b = (0..<(kk * nn)).map { _ in Float.random(in: -1...1) }
            var want = [Float](repeating: 0, count: mm * nn), got = want
            // Bᵀ stored (nn, kk) exercises the transposed path the linear layers use.
            var bt = [Float](repeating: 0, count: kk * nn)
            for p in 0..<kk { for j in 0..<nn { bt[j * kk + p] = b[p * nn + j] } }
            referenceGEMM(m: mm, n: nn, k: kk, a: a, b: b, c: &want)
            for transposed in [false, true] {
                if transposed {
                    sgemm(transB: true, m: mm, n: nn, k: kk, a: a, lda: kk, b: bt, ldb: kk, c: &got, ldc: nn)
                } else {
                    sgemm(m: mm, n: nn, k: kk, a: a, lda: kk, b: b, ldb: nn, c: &got, ldc: nn)
                }
                for i in 0..<(mm * nn) { worst = max(worst, Double(abs(got[i] - want[i]))) }
            }
        }
        print("gemm verify: core \(BLASRuntime.coreName), max |Δ| vs naive reference = \(worst)")
        if worst > 1e-3 { throw FormatError("sgemm disagrees with the naive reference (max |Δ| \(worst))") }
    }
}

struct EmbedBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "embed", abstract: "Embedding throughput on synthetic texts.")

    @Option(help: "Model directory.") var model: String
    @Option(name: .spelled("batch_size"), help: "Texts per forward pass.") var batchSize = 64
    @Option(name: .spelled("max_length"), help: "Tokens per text (the synthetic texts fill it).") var maxLength = 128
    @Option(help: "Batches to time after one warm-up batch.") var repeats = 5
    /// --int8 here also runs INT8: fp32 and INT8 batches alternate in this one process; the ratio and
    /// the embeddings' agreement are reported.
    @OptionGroup var int8Options: Int8Options
    @Option(help: "Write results as JSON here.") var json: String?

    func run() throws {
        try runReportingErrors {
            let dir = try ModelDirectory(URL(fileURLWithPath: model))
            let embedder = try Embedder(directory: dir)
            if int8Options.int8 {
                try int8Options.apply(to: embedder)
                Int8Weights.shared.isEnabled = false
            }
            // Synthetic passages long enough to fill max-length after truncation.
            let words = ["soil", "nitrogen", "orchard", "irrigation", "the", "of", "yield", "pest", "control",
                         "水稻", "施肥", "病虫害", "fish", "pond", "oxygen", "2024", "livestock", "vaccine"]
            var rng = SystemRandomNumberGenerator()
            let texts = (0..<batchSize).map { _ in
                (0..<(maxLength * 2)).map { _ in words.randomElement(using: &rng)! }.joined(separator: " ")
            }
            var options = Embedder.Options()
            options.batchSize = batchSize
            options.maxLength = maxLength
            let reference = try embedder.embed(texts, options: options).values
            let tokens = embedder.tokenizer.encodeBatch(texts, maxLength: maxLength).reduce(0) { $0 + $1.count }
            let flopsPerToken = 2 * Double(embedder.backbone.parameterCount - embedder.backbone.vocabularySize * embedder.backbone.hiddenSize)
            // Modes alternate batch by batch, so both see the same machine state.
            let modes = int8Options.int8 ? [false, true] : [false]
            var times = [Bool: [Double]](), outputs = [Bool: [Float]]()
            for mode in modes {
                Int8Weights.shared.isEnabled = mode
                outputs[mode] = try embedder.embed(texts, options: options).values  // warm-up
            }
            for _ in 0..<repeats {
                for mode in modes {
                    Int8Weights.shared.isEnabled = mode
                    times[mode, default: []].append(try timed { _ = try embedder.embed(texts, options: options) })
                }
            }
            Int8Weights.shared.isEnabled = true
            let fp32 = median(times[false]!)
            let rows: [[String: Any]] = modes.map { mode in
                let s = median(times[mode]!)
                var row: [String: Any] = [
                    "model": dir.url.lastPathComponent, "precision": mode ? "int8 (\(Int8Path.active.name), group \(int8Options.int8GroupSize))" : "fp32", "batch": batchSize,
                    "max_length": maxLength, "threads": BLASRuntime.threads, "median_s_per_batch": s, "texts_per_s": Double(batchSize) / s,
                    "tokens_per_s": Double(tokens) / s, "gflops": flopsPerToken * Double(tokens) / s / 1e9, "speedup": fp32 / s,
                ]
                if mode {
                    // Agreement with fp32: the lowest cosine between a text's two embeddings.
                    let d = reference.count / batchSize, a = outputs[true]!
                    row["min_cosine_vs_fp32"] = (0..<batchSize).map { i -> Double in
                        var dot = 0.0, na = 0.0, nb = 0.0
                        for j in 0..<d {
                            let x = Double(reference[i * d + j]), y = Double(a[i * d + j])
                            dot += x * y; na += x * x; nb += y * y
                        }
                        return dot / (na * nb).squareRoot()
                    }.min()!
                }
                return row
            }
            try report("bench embed", rows, columns: ["model", "precision", "batch", "max_length", "threads", "median_s_per_batch",
                                                      "texts_per_s", "tokens_per_s", "gflops", "speedup", "min_cosine_vs_fp32"], jsonPath: json)
        }
    }
}
