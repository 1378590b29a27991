import EmbedTuneFormats
import Foundation
import Testing

/// Runs `mpirun -np N embedtune …` (as root and oversubscribed where needed).
func runMPI(_ ranks: Int, _ arguments: [String]) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["mpirun", "-np", "\(ranks)", "--oversubscribe", "-x", "OPENBLAS_NUM_THREADS=1",
                         Paths.executable.path] + arguments
    var env = ProcessInfo.processInfo.environment
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    process.environment = env
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                         stderr: String(decoding: e, as: UTF8.self))
}

/// Starts `mpirun -np N embedtune …` in the background; its standard error goes to `stderr`.
func startMPI(_ ranks: Int, _ arguments: [String], stderr: Any = FileHandle.nullDevice) throws -> Process {
    let mpirun = Process()
    mpirun.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    mpirun.arguments = ["mpirun", "-np", "\(ranks)", "--oversubscribe", "-x", "OPENBLAS_NUM_THREADS=1", Paths.executable.path] + arguments
    var env = ProcessInfo.processInfo.environment
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    mpirun.environment = env
    mpirun.standardOutput = FileHandle.nullDevice
    mpirun.standardError = stderr
    try mpirun.run()
    return mpirun
}

/// The ranks of a run, once `checkpoint` exists: embedtune processes whose command line names `out`.
func ranksOnceWritten(_ checkpoint: String, of out: URL) throws -> [Int32] {
    let deadline = Date().addingTimeInterval(120)
    while !FileManager.default.fileExists(atPath: out.appendingPathComponent(checkpoint).path) && Date() < deadline { usleep(5000) }
    return try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init).filter { pid in
        guard let cmd = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8) else { return false }
        return cmd.hasPrefix(Paths.executable.path) && cmd.contains(out.path)
    }.sorted()
}

/// max over tensors of ‖a − b‖ / ‖a‖.
func adapterDistance(_ a: URL, _ b: URL) throws -> Double {
    let fa = try SafetensorsFile(url: a.appendingPathComponent("adapter_model.safetensors"))
    let fb = try SafetensorsFile(url: b.appendingPathComponent("adapter_model.safetensors"))
    #expect(fa.names == fb.names)
    var worst = 0.0
    for name in fa.names {
        let x = try fa.tensor(name).array, y = try fb.tensor(name).array
        worst = max(worst, relativeL2(x, y))
    }
    return worst
}

@Suite("Data-parallel training under mpirun", .serialized)
struct MPITests {
    let model = Paths.fixtures.appendingPathComponent("tiny-qwen3").path

    func args(_ data: URL, _ out: URL, _ extra: [String] = []) -> [String] {
        ["train", "--model", model, "--dataset", data.path, "--output_dir", out.path, "--global_batch_size", "8",
         "--learning_rate", "1e-3", "--lora_r", "4", "--lora_dropout", "0.1", "--threads", "1", "--max_steps", "6"] + extra
    }

    @Test("1, 2, 4 and 8 ranks (oversubscribed) reach the same adapter within 1e-5, each rank scoring only its own queries, with accumulation and GradCache")
    func worldSizeInvariance() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl")
        try tinyDataset(data)
        let extra = ["--gradient_accumulation_steps", "2", "--split_dataset_ratio", "0.2", "--eval_steps", "3"]
        let one = try runCLI(args(data, tmp.appendingPathComponent("r1"), extra) + ["--gradcache_mini_batch", "5"])
        #expect(one.status == 0, "\(one.stderr)")
        let two = try runMPI(2, args(data, tmp.appendingPathComponent("r2"), extra))
        #expect(two.status == 0, "\(two.stderr)")
        let four = try runMPI(4, args(data, tmp.appendingPathComponent("r4"), extra) + ["--gradcache_mini_batch", "3"])
        #expect(four.status == 0, "\(four.stderr)")
        #expect(try adapterDistance(tmp.appendingPathComponent("r1"), tmp.appendingPathComponent("r2")) <= 1e-5)
        #expect(try adapterDistance(tmp.appendingPathComponent("r1"), tmp.appendingPathComponent("r4")) <= 1e-5)
        // 8 ranks, one row each of a micro-batch of 8: every rank's share of the loss is a single
        // query against the whole batch (no accumulation here, so a 1-rank run of its own).
        let unaccumulated = ["--split_dataset_ratio", "0.2", "--eval_steps", "3"]
        let single = try runCLI(args(data, tmp.appendingPathComponent("r1b"), unaccumulated))
        #expect(single.status == 0, "\(single.stderr)")
        let eight = try runMPI(8, args(data, tmp.appendingPathComponent("r8"), unaccumulated))
        #expect(eight.status == 0, "\(eight.stderr)")
        #expect(try adapterDistance(tmp.appendingPathComponent("r1b"), tmp.appendingPathComponent("r8")) <= 1e-5)
        // Rows dealt to ranks by length (the default) or in contiguous slices: the same adapter.
        let slices = try runMPI(2, args(data, tmp.appendingPathComponent("r2s"), extra) + ["--balance_ranks", "false"])
        #expect(slices.status == 0, "\(slices.stderr)")
        #expect(try adapterDistance(tmp.appendingPathComponent("r1"), tmp.appendingPathComponent("r2s")) <= 1e-5)
        // Each step logs its share of time in MPI.
        let log = try String(contentsOf: tmp.appendingPathComponent("r2/train_log.jsonl"), encoding: .utf8)
        let fractions = log.split(separator: "\n").compactMap { try? JSONValue.parse(Data($0.utf8), file: "train_log.jsonl")["mpi_fraction"]?.double }
        #expect(fractions.count == 6 && fractions.allSatisfy { $0 >= 0 && $0 <= 1 })
        // Only rank 0 speaks; held-out evaluation (sharded across ranks) prints the same numbers.
        let evalLines = { (s: String) in s.split(separator: "\n").filter { $0.contains("eval step") }.map { $0.split(separator: "]").last! } }
        #expect(evalLines(two.stdout).map { $0.trimmingCharacters(in: .whitespaces) } == evalLines(one.stdout).map { $0.trimmingCharacters(in: .whitespaces) })
        #expect(!two.stdout.contains("[rank 1/2]"))
    }

    @Test("Matryoshka training reaches the same adapter on 1 rank with GradCache and on 2 ranks over the gathered batch within 1e-5")
    func matryoshkaAcrossRanks() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl")
        try tinyDataset(data)
        let extra = ["--matryoshka_dims", "64,32,16", "--matryoshka_weights", "1,0.5,2", "--temperature_mode", "learnable",
                     "--split_dataset_ratio", "0.2", "--eval_steps", "3"]
        let one = try runCLI(args(data, tmp.appendingPathComponent("r1"), extra) + ["--gradcache_mini_batch", "5"])
        #expect(one.status == 0, "\(one.stderr)")
        let two = try runMPI(2, args(data, tmp.appendingPathComponent("r2"), extra))
        #expect(two.status == 0, "\(two.stderr)")
        #expect(try adapterDistance(tmp.appendingPathComponent("r1"), tmp.appendingPathComponent("r2")) <= 1e-5)
        // Held-out NDCG@10 at the smaller dimensions is printed, logged and in the model card.
        #expect(two.stdout.contains("NDCG@10 at 32d"), "\(two.stdout)")
        let card = try String(contentsOf: tmp.appendingPathComponent("r2/README.md"), encoding: .utf8)
        #expect(card.contains("NDCG@10 at 16d") && card.contains("- matryoshka") && card.contains("64 (1.0), 32 (0.5), 16 (2.0) of 64"), "\(card)")
    }

    @Test("without gathering, 2 ranks equal the local-only objective: one process accumulating the two halves")
    func gatherOff() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl")
        try tinyDataset(data)
        let noDrop = ["--lora_dropout", "0"]
        let local = try runCLI(["train", "--model", model, "--dataset", data.path, "--output_dir", tmp.appendingPathComponent("acc").path,
                                "--global_batch_size", "4", "--gradient_accumulation_steps", "2", "--learning_rate", "1e-3",
                                "--lora_r", "4", "--threads", "1", "--max_steps", "3"] + noDrop)
        #expect(local.status == 0, "\(local.stderr)")
        let split = try runMPI(2, ["train", "--model", model, "--dataset", data.path, "--output_dir", tmp.appendingPathComponent("off").path,
                                   "--global_batch_size", "8", "--learning_rate", "1e-3", "--lora_r", "4", "--threads", "1",
                                   "--max_steps", "3", "--gather_across_ranks", "false"] + noDrop)
        #expect(split.status == 0, "\(split.stderr)")
        #expect(try adapterDistance(tmp.appendingPathComponent("acc"), tmp.appendingPathComponent("off")) <= 1e-5)
    }

    @Test("kill -9 of one rank ends mpirun within 30 s; its last checkpoint resumes on 2 ranks to the same adapter")
    func rankFailureAndElasticResume() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl")
        try tinyDataset(data)
        // Long enough that the second run is still training when one of its ranks is killed.
        let plan = ["--max_steps", "150", "--save_steps", "4"]
        let uninterrupted = try runMPI(4, args(data, tmp.appendingPathComponent("full"), plan))
        #expect(uninterrupted.status == 0, "\(uninterrupted.stderr)")

        let out = tmp.appendingPathComponent("killed")
        let mpirun = try startMPI(4, args(data, out, plan))
        let ranks = try ranksOnceWritten("checkpoint-8", of: out)
        #expect(ranks.count == 4)
        let killedAt = Date()
        kill(ranks[1], SIGKILL)
        mpirun.waitUntilExit()
        let seconds = Date().timeIntervalSince(killedAt)
        #expect(mpirun.terminationStatus != 0)
        #expect(seconds < 30, "mpirun took \(seconds) s to end")

        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("adapter_model.safetensors").path))
        let resumed = try runMPI(2, args(data, out, plan + ["--resume", "latest"]))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try adapterDistance(tmp.appendingPathComponent("full"), out) <= 1e-5)
    }

    @Test("a stopped rank (SIGSTOP) ends the job within collective_timeout, naming a rank and the step; the last checkpoint resumes to the same adapter")
    func stalledRank() throws {
        let tmp = try Paths.temporaryDirectory()
        let data = tmp.appendingPathComponent("d.jsonl")
        try tinyDataset(data)
        let plan = ["--max_steps", "150", "--save_steps", "4", "--collective_timeout", "5", "--global_batch_size", "12"]
        let uninterrupted = try runMPI(3, args(data, tmp.appendingPathComponent("full"), plan))
        #expect(uninterrupted.status == 0, "\(uninterrupted.stderr)")

        let out = tmp.appendingPathComponent("stalled")
        let err = Pipe()
        let mpirun = try startMPI(3, args(data, out, plan), stderr: err)
        let ranks = try ranksOnceWritten("checkpoint-8", of: out)
        #expect(ranks.count == 3)
        let stopped = ranks[2]
        let stoppedAt = Date()
        kill(stopped, SIGSTOP)
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        mpirun.waitUntilExit()
        let seconds = Date().timeIntervalSince(stoppedAt)
        kill(stopped, SIGKILL)
        let message = String(decoding: stderr, as: UTF8.self)
        #expect(mpirun.terminationStatus != 0)
        #expect(seconds < 5 + 30, "mpirun took \(seconds) s to end")
        #expect(message.contains("(collective_timeout 5 s): another rank stopped answering") && message.contains(" at step "), "\(message)")

        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("adapter_model.safetensors").path))
        let resumed = try runMPI(3, args(data, out, plan + ["--resume", "latest"]))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try adapterDistance(tmp.appendingPathComponent("full"), out) <= 1e-5)
    }
}
