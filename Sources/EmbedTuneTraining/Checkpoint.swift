import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import Foundation

/// Checkpoints: OUTPUT_DIR/checkpoint-STEP/ holding the adapter in PEFT format, the trainer
/// state (optimiser moments, learnable τ, step — the data cursor and every random stream derive
/// from the step and the seed) zstd-compressed in state.bin.zst, and trainer_state.json with the
/// options and a checksum of the state. Written under a temporary name after a barrier and
/// renamed, so a checkpoint is complete or absent; the oldest beyond save_total_limit are removed.
public enum Checkpoint {
    static let magic: UInt32 = 0x4B43_5445  // "ETCK"
    static let version: UInt32 = 1

    public struct State: Codable {
        public var step: Int
        public var checksum: String
        public var options: TrainingOptions
        public var world_size: Int
    }

    /// Saves `state` at its step as OUTPUT_DIR/checkpoint-STEP, with `extraFiles` (name → bytes)
    /// beside it. Rank 0 writes; every rank meets at the barriers. Returns the directory on rank 0.
    @discardableResult
    public static func save(_ state: TrainerState, options: TrainingOptions, communicator: Communicator, outputDir: URL,
                            card: ModelCard? = nil, extraFiles: [String: Data] = [:]) throws -> URL? {
        let step = state.step
        try communicator.barrier()
        var written: URL?
        if communicator.isRoot {
            let final = outputDir.appendingPathComponent("checkpoint-\(step)")
            let tmp = outputDir.appendingPathComponent(".checkpoint-\(step).tmp-\(getpid())")
            let fm = FileManager.default
            try? fm.removeItem(at: tmp)
            try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
            try PEFTAdapter.save(state.adapter, to: tmp, baseModel: options.model)
            try card?.write(to: tmp)
            for (name, data) in extraFiles { try writeAtomically(data, to: tmp.appendingPathComponent(name)) }
            let raw = encode(state)
            try writeAtomically(try Zstd.compress(raw), to: tmp.appendingPathComponent("state.bin.zst"))
            let header = State(step: step, checksum: String(format: "%016llx", fnv1a(raw)), options: options, world_size: communicator.size)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try writeAtomically(try encoder.encode(header), to: tmp.appendingPathComponent("trainer_state.json"))
            try? fm.removeItem(at: final)
            guard rename(tmp.path, final.path) == 0 else {
                throw FormatError(url: final, "cannot rename checkpoint into place: \(String(cString: strerror(errno)))")
            }
            written = final
            try prune(outputDir, keep: options.saveTotalLimit, step: step)
        }
        try communicator.barrier()
        return written
    }

    static func encode(_ t: TrainerState) -> Data {
        var d = Data()
        func put<T>(_ v: T) { withUnsafeBytes(of: v) { d.append(contentsOf: $0) } }
        func putFloats(_ a: UnsafeBufferPointer<Float>) { d.append(UnsafeBufferPointer(start: UnsafeRawPointer(a.baseAddress!).assumingMemoryBound(to: UInt8.self), count: a.count * 4)) }
        put(magic.littleEndian); put(version.littleEndian)
        put(Int64(t.step)); put(Int64(t.adapter.parameterCount)); put(Int64(t.optimizer.step))
        put(t.logTau); put(Int64(t.tauOptimizer.step)); put(t.tauOptimizer.m[0]); put(t.tauOptimizer.v[0])
        putFloats(UnsafeBufferPointer(start: t.adapter.params.pointer, count: t.adapter.parameterCount))
        t.optimizer.m.withUnsafeBufferPointer { putFloats($0) }
        t.optimizer.v.withUnsafeBufferPointer { putFloats($0) }
        return d
    }

    /// A checkpoint read back and verified against its checksum, not yet applied to a run.
    struct Saved {
        var header: State
        var step: Int, adamStep: Int, tauStep: Int
        var logTau: Float, tauM: Float, tauV: Float
        var params: [Float], m: [Float], v: [Float]
    }

    /// Reads `dir`'s state: a missing file, a checksum mismatch or a truncated blob is an error
    /// naming the file.
    static func read(_ dir: URL) throws -> Saved {
        let stateURL = dir.appendingPathComponent("trainer_state.json")
        let blobURL = dir.appendingPathComponent("state.bin.zst")
        guard let json = try? Data(contentsOf: stateURL),
              let header = try? JSONDecoder().decode(State.self, from: json) else {
            throw FormatError(url: stateURL, "missing or unreadable: not a complete checkpoint")
        }
        let compressed: Data
        do { compressed = try Data(contentsOf: blobURL) } catch { throw FormatError(url: blobURL, "missing") }
        let raw = try Zstd.decompress(compressed, file: blobURL.path)
        guard String(format: "%016llx", fnv1a(raw)) == header.checksum else {
            throw FormatError(url: blobURL, "checksum mismatch: the checkpoint is corrupt")
        }
        var offset = 0
        func get<T>(_ type: T.Type) throws -> T {
            let size = MemoryLayout<T>.size
            guard offset + size <= raw.count else { throw FormatError(url: blobURL, "truncated state") }
            defer { offset += size }
            return raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
        }
        func floats(_ n: Int) throws -> [Float] {
            guard n >= 0, n <= (raw.count - offset) / 4 else { throw FormatError(url: blobURL, "truncated state") }
            defer { offset += n * 4 }
            return raw.withUnsafeBytes { b in (0..<n).map { b.loadUnaligned(fromByteOffset: offset + $0 * 4, as: Float.self) } }
        }
        guard try get(UInt32.self) == magic, try get(UInt32.self) == version else { throw FormatError(url: blobURL, "not an EmbedTune state") }
        let step = Int(try get(Int64.self)), count = Int(try get(Int64.self)), adamStep = Int(try get(Int64.self))
        let logTau = try get(Float.self)
        let tauStep = Int(try get(Int64.self)), tauM = try get(Float.self), tauV = try get(Float.self)
        let params = try floats(count), m = try floats(count), v = try floats(count)
        return Saved(header: header, step: step, adamStep: adamStep, tauStep: tauStep, logTau: logTau, tauM: tauM, tauV: tauV,
                     params: params, m: m, v: v)
    }

    /// Restores adapter, optimiser, τ and the step to continue from into `t`, after checking that
    /// the checkpoint was written by a run with the same data order and adapter shape. `t` is
    /// changed only when every check passes.
    public static func load(_ dir: URL, into t: TrainerState, options o: TrainingOptions, globalBatch: Int) throws {
        try apply(try read(dir), from: dir, into: t, options: o, globalBatch: globalBatch)
    }

    static func apply(_ saved: Saved, from dir: URL, into t: TrainerState, options o: TrainingOptions, globalBatch: Int) throws {
        let stateURL = dir.appendingPathComponent("trainer_state.json")
        let s = saved.header.options
        if o.seed != s.seed || o.gradientAccumulationSteps != s.gradientAccumulationSteps || o.dataset != s.dataset
            || o.db != s.db || o.dbDataset != s.dbDataset || o.dbSplit != s.dbSplit
            || o.loraR != s.loraR || o.targetModules != s.targetModules || o.taskType != s.taskType || o.numLabels != s.numLabels {
            throw FormatError(url: stateURL, "written with different seed, dataset, accumulation, task or LoRA shape than this run")
        }
        let global = s.globalBatchSize > 0 ? s.globalBatchSize : s.perDeviceTrainBatchSize * saved.header.world_size
        if global != globalBatch {
            throw FormatError(url: stateURL, "global batch \(global) differs from this run's \(globalBatch) (set --global_batch_size \(global))")
        }
        let count = t.adapter.parameterCount
        guard saved.params.count == count else {
            throw FormatError(url: dir.appendingPathComponent("state.bin.zst"), "holds \(saved.params.count) LoRA parameters, this run has \(count)")
        }
        t.logTau = saved.logTau
        saved.params.withUnsafeBufferPointer { t.adapter.params.pointer.update(from: $0.baseAddress!, count: count) }
        t.optimizer.restore(step: saved.adamStep, m: saved.m, v: saved.v)
        t.tauOptimizer.restore(step: saved.tauStep, m: [saved.tauM], v: [saved.tauV])
        t.step = saved.step
    }

    /// Restores the checkpoint `spec` names — a directory, or "latest" — into `t` and returns its
    /// directory. For "latest", a checkpoint that cannot be read back intact (truncated,
    /// bit-flipped, half written) is reported through `warn` and the one before it is tried, so a
    /// crash during a write or a bad block costs the steps since the previous checkpoint, never
    /// the run. A checkpoint of another run's settings stops the resume whatever its age.
    public static func resume(_ spec: String, outputDir: URL, into t: TrainerState, options: TrainingOptions, globalBatch: Int,
                              warn: (String) -> Void) throws -> URL {
        guard spec == "latest" else {
            let dir = URL(fileURLWithPath: spec)
            try load(dir, into: t, options: options, globalBatch: globalBatch)
            return dir
        }
        let candidates = Array(list(outputDir).reversed())
        guard !candidates.isEmpty else { throw FormatError(url: outputDir, "no checkpoint-STEP directory to resume from") }
        var newestProblem: FormatError?
        for (i, candidate) in candidates.enumerated() {
            let saved: Saved
            do { saved = try read(candidate.url) } catch {
                let problem = error as? FormatError ?? FormatError(url: candidate.url, "\(error)")
                newestProblem = newestProblem ?? problem
                let next = i + 1 < candidates.count ? "resuming from \(candidates[i + 1].url.lastPathComponent) instead" : "no older checkpoint left"
                warn("\(candidate.url.lastPathComponent) is damaged (\(problem)); \(next)")
                continue
            }
            try apply(saved, from: candidate.url, into: t, options: options, globalBatch: globalBatch)
            return candidate.url
        }
        throw newestProblem!
    }

    static func list(_ outputDir: URL) -> [(step: Int, url: URL)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: outputDir.path)) ?? []
        return names.compactMap { name -> (Int, URL)? in
            guard name.hasPrefix("checkpoint-"), let s = Int(name.dropFirst("checkpoint-".count)) else { return nil }
            return (s, outputDir.appendingPathComponent(name))
        }.sorted { $0.0 < $1.0 }
    }

    /// Removes the temporary directories of checkpoints whose writer died before renaming them
    /// into place (`.checkpoint-STEP.tmp-PID`): they were never checkpoints.
    public static func removeUnfinished(in outputDir: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: outputDir.path)) ?? []
        for name in names where name.hasPrefix(".checkpoint-") && name.contains(".tmp-") {
            try? FileManager.default.removeItem(at: outputDir.appendingPathComponent(name))
        }
    }

    /// Keeps the newest `keep` checkpoints up to `step`. Checkpoints past `step` are removed
    /// too: a run at `step` resumed from before them (they were damaged, or the user chose an
    /// older one), so they belong to a history this run replaces, and keeping them would make
    /// the limit delete this run's own checkpoints.
    static func prune(_ outputDir: URL, keep: Int, step: Int) throws {
        let all = list(outputDir)
        for stale in all where stale.step > step { try FileManager.default.removeItem(at: stale.url) }
        guard keep > 0 else { return }
        for old in all.filter({ $0.step <= step }).dropLast(keep) { try FileManager.default.removeItem(at: old.url) }
    }
}
