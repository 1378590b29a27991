import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTraining
import Foundation

/// The readers of a training run's own files: the TOML config and a checkpoint.
enum TrainingFuzzTargets {
    /// `train --config FILE`: the text as TextFile decodes it, TOML.parse, the options table.
    static func toml(_ dir: URL, _ parts: [[UInt8]]) throws {
        let file = dir.appendingPathComponent("config.toml").path
        let table = try TOML.parse(try TextFile.read(file), file: file)
        _ = try TOML.parse(TOML.document(table), file: file)
        var options = TrainingOptions()
        try options.apply(config: table, file: file)
    }

    /// Stands in for the checksum in a seed's trainer_state.json: the target writes the real
    /// checksum of the decompressed state in its place, so mutations of state.bin.zst reach the
    /// state's parser instead of stopping at the checksum. Inputs without it run as they are.
    static let checksumPlaceholder = "$CHECKSUM"

    /// `train --resume DIR`: Checkpoint.load of trainer_state.json + state.bin.zst into the
    /// state of a run with a two-module rank-8 adapter and default options.
    static func checkpoint(_ dir: URL, _ parts: [[UInt8]]) throws {
        let json = String(decoding: parts[0], as: UTF8.self)
        if json.contains(checksumPlaceholder), let raw = try? Zstd.decompress(Data(parts[1]), file: "state.bin.zst") {
            let filled = json.replacingOccurrences(of: checksumPlaceholder, with: String(format: "%016llx", fnv1a(raw)))
            FuzzScratch.write(Array(filled.utf8), "trainer_state.json", in: dir)
        }
        let options = TrainingOptions()
        try Checkpoint.load(dir, into: try runState(options), options: options, globalBatch: options.perDeviceTrainBatchSize)
    }

    static func runState(_ options: TrainingOptions) throws -> TrainerState {
        let config = LoRAConfig(r: options.loraR, alpha: options.loraAlpha, targetModules: ["q_proj", "v_proj"])
        let adapter = try LoRAAdapter(config: config, linears: [("q_proj", 4, 4), ("v_proj", 4, 2)])
        return TrainerState(adapter: adapter, optimizer: AdamW(count: adapter.parameterCount), logTau: 0)
    }

    /// A complete checkpoint of `runState`, packed as the checkpoint target's input, with the
    /// checksum replaced by the placeholder when asked: the corpus's seeds.
    static func seed(withPlaceholder: Bool) throws -> [UInt8] {
        let options = TrainingOptions()
        let state = try runState(options)
        var rng = SplitMix64(seed: 7)
        state.adapter.initialize(using: &rng)
        state.step = 3
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("embedtune-fuzz-seed-\(getpid())")
        defer { try? FileManager.default.removeItem(at: out) }
        guard let dir = try Checkpoint.save(state, options: options, communicator: SingleProcessCommunicator(), outputDir: out) else {
            throw FormatError(url: out, "no checkpoint written")
        }
        var json = try String(contentsOf: dir.appendingPathComponent("trainer_state.json"), encoding: .utf8)
        if withPlaceholder, let value = try JSONValue.load(dir.appendingPathComponent("trainer_state.json"))["checksum"]?.string {
            json = json.replacingOccurrences(of: value, with: checksumPlaceholder)
        }
        let blob = try Data(contentsOf: dir.appendingPathComponent("state.bin.zst"))
        return FuzzParts.pack([Array(json.utf8), Array(blob)])
    }
}
