import EmbedTuneFormats
import ArgumentParser
import EmbedTuneDistributed
import EmbedTuneKernels
import Foundation

/// The one collective a training step pays for: the sum of every rank's flat LoRA gradient.
struct AllReduceBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "MPI all-reduce of flat fp32 buffers (the LoRA gradient's shape): median time, algorithm and bus bandwidth.")

    @Option(help: "Comma-separated world sizes (each run under mpirun).") var ranks = "2"
    @Option(help: "Comma-separated buffer sizes in floats (default: the e5-small/MiniLM LoRA gradient, 1M, 16M).")
    var sizes = "663555,1048576,16777216"
    @Option(help: "Timed all-reduces per size, after three warm-up ones.") var repeats = 20
    @Option(help: "Write results as JSON here.") var json: String?
    @Option(help: .boolean("Internal: measure in this MPI job and print JSON lines on rank 0.")) var worker = false

    func run() throws {
        try runReportingErrors {
            let counts = sizes.split(separator: ",").compactMap { Int($0) }
            guard !counts.isEmpty, counts.allSatisfy({ $0 > 0 }) else { throw ValidationError("--sizes: positive float counts") }
            if worker { try measure(counts); return }
            var rows: [[String: Any]] = []
            for worldSize in ranks.split(separator: ",").compactMap({ Int($0) }) {
                guard worldSize >= 2 else { throw ValidationError("--ranks: all-reduce needs at least 2 ranks (got \(worldSize))") }
                let output = try runBenchWorker(worldSize: worldSize, arguments: ["bench", "allreduce", "--sizes", sizes,
                                                                                  "--repeats", "\(repeats)", "--worker"],
                                                what: "\(worldSize) ranks")
                for line in output.split(separator: "\n") where line.hasPrefix("{") {
                    if let row = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { rows.append(row) }
                }
            }
            try report("bench allreduce", rows, columns: ["ranks", "floats", "mb", "median_ms", "algbw_gb_per_s", "busbw_gb_per_s", "verified"],
                       jsonPath: json)
        }
    }

    /// Every rank fills its buffer with rank + 1, so each element of the sum is n(n+1)/2.
    func measure(_ counts: [Int]) throws {
        let comm = try makeCommunicator()
        defer { (comm as? MPICommunicator)?.finalize() }
        let n = comm.size
        for count in counts {
            let buffer = FloatBuffer(count: count)
            var times = [Double]()
            var verified = true
            for r in 0..<(repeats + 3) {
                buffer.pointer.initialize(repeating: Float(comm.rank + 1), count: count)
                try comm.barrier()
                let t = try timed { try comm.allReduceSum(buffer.pointer, count: count) }
                if r >= 3 { times.append(t) }
                let want = Float(n * (n + 1) / 2)
                verified = verified && buffer.pointer[0] == want && buffer.pointer[count - 1] == want && buffer.pointer[count / 2] == want
            }
            if comm.rank == 0 {
                let s = median(times), bytes = Double(count * 4)
                let row: [String: Any] = ["ranks": n, "floats": count, "mb": bytes / 1e6, "median_ms": s * 1e3,
                                          "algbw_gb_per_s": bytes / s / 1e9,
                                          "busbw_gb_per_s": bytes / s / 1e9 * 2 * Double(n - 1) / Double(n),
                                          "verified": verified ? "yes" : "NO"]
                let data = try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                fflush(stdout)
            }
            guard verified else { throw FormatError("all-reduce of \(count) floats gave a wrong sum on rank \(comm.rank)") }
        }
    }
}
