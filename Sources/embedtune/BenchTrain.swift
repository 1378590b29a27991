import EmbedTuneFormats
import ArgumentParser
import EmbedTuneDistributed
import EmbedTuneKernels
import EmbedTuneRetrieval
import EmbedTuneTraining
import Foundation

/// Synthetic contrastive data shared by `bench train` and the Python peer: queries of ~16 and
/// passages of ~110 word-piece tokens drawn from a fixed word list with a fixed seed.
enum SyntheticData {
    static let words = ["soil", "nitrogen", "orchard", "irrigation", "yield", "pest", "control", "harvest", "seedling",
                        "fertiliser", "pond", "oxygen", "livestock", "vaccine", "pruning", "drainage", "compost", "weather",
                        "disease", "fungus", "spray", "market", "storage", "greenhouse", "tractor", "season", "planting"]

    static func text(words count: Int, rng: inout SplitMix64) -> String {
        (0..<count).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ")
    }

    static func write(rows: Int, negatives: Int, to url: URL, seed: UInt64 = 7) throws {
        var rng = SplitMix64(seed: seed)
        var out = ""
        for _ in 0..<rows {
            let o: [String: Any] = ["query": text(words: 14, rng: &rng), "response": text(words: 108, rng: &rng),
                                    "rejected_response": (0..<negatives).map { _ in text(words: 108, rng: &rng) }]
            out += String(decoding: try JSONSerialization.data(withJSONObject: o), as: UTF8.self) + "\n"
        }
        try out.write(to: url, atomically: true, encoding: .utf8)
    }
}

struct TrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Training throughput and peak RSS; each configuration runs in its own process.")

    @Option(help: "Model directory.") var model: String
    @Option(name: .spelled("per_device_train_batch_size", "batch_size"), help: "Triples per rank per step.") var batchSize = 16
    @Option(name: .spelled("num_negatives", "negatives"), help: "Hard negatives per row.") var negatives = 3
    @Option(name: .spelled("max_length"), help: "Tokens per text (the synthetic texts are longer).") var maxLength = 128
    @Option(name: .spelled("gradcache_mini_batch", "gradcache"), help: "Comma-separated GradCache mini-batches to compare (0 = plain).")
    var gradcache = "0"
    @Option(help: "Comma-separated world sizes; > 1 runs under mpirun (global batch = per_device_train_batch_size × ranks).")
    var ranks = "1"
    @Option(help: "Timed steps after 2 warm-up steps.") var steps = 5
    @Option(name: .spelled("lora_dropout"), help: "Dropout on the LoRA input.") var loraDropout = 0.0
    @Option(name: .spelled("backbone_dropout"), help: .boolean("Also the backbone's own dropout (BERT hidden/attention), as PyTorch's train mode."))
    var backboneDropout = false
    @Option(name: .spelled("base_precision"), help: "fp32 | bf16: how the frozen base weights are kept (train's --base_precision).")
    var basePrecision = "fp32"
    @Option(help: "Train on this triplets file (any format train reads) instead of the synthetic rows.") var dataset: String?
    @Option(name: .spelled("balance_ranks"), help: "Comma-separated: true (triples dealt to ranks by length), false (contiguous slices), or both.")
    var balanceRanks = "true"
    @Option(help: "Write results as JSON here.") var json: String?
    @Option(name: .spelled("write_data"), help: "Only write the synthetic JSONL the bench trains on here (--rows rows) and exit.")
    var writeData: String?
    @Option(name: .spelled("rows"), help: "Rows for --write_data (default: per_device_train_batch_size × (steps + 2), one rank's run).")
    var dataRows: Int?
    @Option(name: .spelled("worker"), help: "Internal: run one configuration and print a JSON line.") var worker: Int?

    func run() throws {
        try runReportingErrors {
            if let writeData {
                try SyntheticData.write(rows: dataRows ?? batchSize * (steps + 2), negatives: negatives, to: URL(fileURLWithPath: writeData))
                return
            }
            if let worker { try runWorker(gradCache: worker); return }
            // The GEMM peak is taken before and after the runs (the best of both): one slow phase
            // of a shared machine must not make the MFU look better than it is.
            let cores = ProcessInfo.processInfo.activeProcessorCount
            let peakBefore = gemmPeakGFLOPs(threads: cores)
            var rows: [[String: Any]] = []
            let balances = try balanceRanks.split(separator: ",").map { b -> Bool in
                guard let value = Bool(String(b)) else { throw FormatError("--balance_ranks: \"\(b)\" is not true or false") }
                return value
            }
            let configs = ranks.split(separator: ",").compactMap { Int($0) }.flatMap { r in
                gradcache.split(separator: ",").compactMap { Int($0) }.flatMap { g in balances.map { (r, g, $0) } }
            }
            for (worldSize, mini, balance) in configs {
                let worker = ["bench", "train", "--model", model, "--per_device_train_batch_size", "\(batchSize)", "--num_negatives", "\(negatives)",
                              "--max_length", "\(maxLength)", "--steps", "\(steps)", "--lora_dropout", "\(loraDropout)",
                              "--balance_ranks", "\(balance)", "--backbone_dropout", "\(backboneDropout)", "--base_precision", basePrecision, "--worker", "\(mini)"]
                    + (dataset.map { ["--dataset", URL(fileURLWithPath: $0).path] } ?? [])
                let output = try runBenchWorker(worldSize: worldSize, arguments: worker, what: "gradcache \(mini)")
                guard let line = output.split(separator: "\n").last,
                      let row = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                    throw FormatError("bench worker for gradcache \(mini) printed no result")
                }
                rows.append(row)
            }
            // Model FLOPs: the frozen linears' forward and input-gradient GEMMs, 4·Σ(in·out) per
            // token (attention and the LoRA products left out; a pruned final block under
            // last-token pooling counted whole), against the sgemm peak of every core of this node.
            let peak = max(peakBefore, gemmPeakGFLOPs(threads: cores))
            rows = rows.map { row in
                var r = row
                let params = (row["linear_params"] as? Double) ?? 0, tps = (row["tokens_per_s"] as? Double) ?? 0
                r["gflops"] = 4 * params * tps / 1e9
                r["mfu"] = peak > 0 ? 4 * params * tps / 1e9 / peak : 0
                r["gemm_peak_gflops"] = peak
                return r
            }
            try report("bench train", rows, columns: ["model", "ranks", "batch", "negatives", "gradcache", "balance_ranks", "threads", "s_per_step",
                                                      "examples_per_s", "tokens_per_s", "peak_rss_mb", "gflops", "mfu", "mpi_fraction",
                                                      "mpi_bytes_per_step"], jsonPath: json)
        }
    }

    func runWorker(gradCache: Int) throws {
        // One directory per job (ranks share it): mpirun's job id, or this process.
        let job = ProcessInfo.processInfo.environment["OMPI_MCA_orte_ess_jobid"] ?? "\(getppid())"
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("embedtune-bench-\(job)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let communicator = try makeCommunicator()
        let world = communicator.size
        if communicator.isRoot && dataset == nil {
            try SyntheticData.write(rows: batchSize * world * (steps + 2), negatives: negatives, to: tmp.appendingPathComponent("d.jsonl"))
        }
        try communicator.barrier()
        var o = TrainingOptions()
        o.model = model
        o.dataset = dataset ?? tmp.appendingPathComponent("d.jsonl").path
        o.balanceRanks = balanceRanks == "true"
        o.outputDir = tmp.appendingPathComponent("out").path
        o.perDeviceTrainBatchSize = batchSize
        o.maxSteps = steps + 2
        o.maxLength = maxLength
        o.numNegatives = negatives
        o.loraDropout = loraDropout
        o.backboneDropout = backboneDropout
        o.basePrecision = basePrecision
        o.gradCacheMiniBatch = gradCache
        o.queryPrompt = ""; o.documentPrompt = ""
        let trainer = try Trainer(options: o, communicator: communicator)
        var times = [Double](), tokens = [Double]()
        try trainer.run(stopAfter: steps + 2) { event in
            guard case .step(let s) = event else { return }
            if s.step == 2 { communicator.resetTraffic() }  // measure after warm-up
            if s.step > 2 { times.append(s.msPerStep / 1000); tokens.append(s.tokensPerSecond) }
        }
        let traffic = communicator.traffic
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let s = median(times)
        let total = times.reduce(0, +), mpiFraction = total > 0 ? traffic.seconds / total : 0
        // Every rank's share of its steps inside MPI (waiting included): the rank far below the
        // others is the slow one they wait for.
        var fractions = [Float](repeating: 0, count: world)
        fractions[communicator.rank] = Float(mpiFraction)
        try fractions.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: world) }
        let row: [String: Any] = [
            "model": URL(fileURLWithPath: model).lastPathComponent, "ranks": world, "batch": batchSize * world, "negatives": negatives,
            "mpi_fraction": mpiFraction, "mpi_fraction_ranks": fractions.map(Double.init),
            "mpi_bytes_per_step": Double(traffic.bytes) / Double(max(times.count, 1)),
            "gradcache": gradCache, "balance_ranks": o.balanceRanks, "threads": BLASRuntime.threads, "s_per_step": s,
            "examples_per_s": Double(batchSize * world) / s, "tokens_per_s": median(tokens),
            "peak_rss_mb": Double(usage.ru_maxrss) / 1024,
            "linear_params": Double(trainer.model.linearParameterCount),
        ]
        if communicator.isRoot {
            print(String(decoding: try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys]), as: UTF8.self))
        }
        try communicator.barrier()
        if let mpi = communicator as? MPICommunicator { mpi.finalize() }
    }
}

/// Exact top-k search at mining scale on synthetic unit vectors: time and peak RSS.
struct MineBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mine", abstract: "Exact top-k search over a synthetic corpus (memory-bounded).")

    @Option(help: "Query vectors.") var queries = 10_000
    @Option(help: "Corpus vectors.") var documents = 100_000
    @Option(help: "Vector dimension.") var dim = 384
    @Option(help: "Nearest documents kept per query.") var k = 60
    @Option(help: "Write results as JSON here.") var json: String?

    func run() throws {
        try runReportingErrors {
            var rng = SplitMix64(seed: 3)
            func vectors(_ n: Int) -> [Float] { (0..<(n * dim)).map { _ in Float(Int64(bitPattern: rng.next() >> 1) % 2001 - 1000) / 1000 } }
            let q = vectors(queries), c = vectors(documents)
            var top = [RetrievalEvaluator.Ranking]()
            let seconds = timed { top = exactTopK(queries: q, corpus: c, dim: dim, k: k, normalize: true) }
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            let rows: [[String: Any]] = [[
                "queries": queries, "documents": documents, "dim": dim, "k": k, "seconds": seconds,
                "queries_per_s": Double(queries) / seconds, "gflops": 2 * Double(queries) * Double(documents) * Double(dim) / seconds / 1e9,
                "peak_rss_mb": Double(usage.ru_maxrss) / 1024, "found": top.reduce(0) { $0 + $1.count },
            ]]
            try report("bench mine", rows, columns: ["queries", "documents", "dim", "k", "seconds", "queries_per_s", "gflops", "peak_rss_mb"],
                       jsonPath: json)
        }
    }
}
