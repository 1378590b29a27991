import ArgumentParser
import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTraining
import Foundation

/// `embedtune train`: the options of `TrainingOption.sections` (ms-swift's `swift sft` names) as
/// flags or as keys of a TOML config they override, and the same behaviour with or without mpirun.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "LoRA training of an embedding model (InfoNCE) or, with --task_type reranker, a cross-encoder; single process or data-parallel under mpirun.",
        discussion: trainingOptionsHelp())

    @Option(name: .spelled("config"), help: "TOML config whose keys are the training options above; flags override it.")
    var config: String?
    @Option(name: .spelled("resume"), help: "latest, or a checkpoint directory.") var resume: String?
    @Option(name: .spelled("stop_after"), help: "Stop after this step without writing the final adapter (testing).")
    var stopAfter: Int?
    @Option(name: .spelled("print_config"), help: .boolean("Print the resolved training options as a TOML config and exit."))
    var printConfig = false
    @Option(name: .spelled("verbose"), help: .boolean("Print from every rank.")) var verbose = false
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("The training options above, as --key value.", valueName: "training_option"))
    var trainingArguments: [String] = []

    func run() throws {
        let options: TrainingOptions
        do { options = try resolveOptions() } catch {
            FileHandle.standardError.write(Data("embedtune: error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        if printConfig {
            print(options.tomlText, terminator: "")
            return
        }
        let communicator: Communicator
        do { communicator = try makeCommunicator() } catch {
            FileHandle.standardError.write(Data("embedtune: error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        if options.threads > 0 { BLASRuntime.setThreads(options.threads) }
        (communicator as? MPICommunicator)?.setCollectiveTimeout(options.collectiveTimeout)
        let speak = communicator.isRoot || verbose
        do {
            let reranker = options.taskType == "reranker"
            let run: (String?, Int?, (TrainingEvent) -> Void) throws -> URL, totalSteps: Int
            if reranker {
                let trainer = try RerankerTrainer(options: options, communicator: communicator)
                (run, totalSteps) = (trainer.run, trainer.totalSteps)
            } else {
                let trainer = try Trainer(options: options, communicator: communicator)
                (run, totalSteps) = (trainer.run, trainer.totalSteps)
            }
            let bar = communicator.size > 1 ? "[rank \(communicator.rank)/\(communicator.size)] " : ""
            _ = try run(resume, stopAfter) { event in
                guard speak else { return }
                switch event {
                case .started(let s): print("\(bar)train: \(s) (BLAS \(BLASRuntime.coreName) × \(BLASRuntime.threads))")
                case .step(let s):
                    print(String(format: "%@step %d/%d  loss %.4f  lr %.2e", bar, s.step, totalSteps, s.loss, s.lr)
                          + (reranker ? "" : String(format: "  tau %.4f", s.tau))
                          + String(format: "  |g| %.3f  %.0f ms/step  %.0f tok/s", s.gradNorm, s.msPerStep, s.tokensPerSecond)
                          + (s.mpiFraction.map { String(format: "  MPI %.1f%%", $0 * 100) } ?? ""))
                case .eval(let e):
                    print(String(format: "%@eval step %d  held-out loss %.4f  margin %.4f  NDCG@10 %.4f  Recall@5 %.4f  MRR@10 %.4f (%d queries, %d documents)",
                                 bar, e.step, e.loss, e.margin, e.ndcg10, e.recall5, e.mrr10, e.rows, e.documents)
                          + (e.ndcg10ByDim.map { byDim in
                              "  NDCG@10 at " + e.truncatedDims.map { String(format: "%dd %.4f", $0, byDim["\($0)"]!) }.joined(separator: ", ")
                          } ?? ""))
                case .checkpoint(let u): print("\(bar)checkpoint: \(u.path)")
                case .negativesRefreshed(let step, let summary):
                    print("\(bar)negatives refreshed at step \(step): " + summary.description.replacingOccurrences(of: "\n", with: "\n  "))
                case .warning(let w): FileHandle.standardError.write(Data("embedtune: warning: \(w)\n".utf8))
                case .finished(let u): print("\(bar)adapter: \(u.path)/adapter_config.json + adapter_model.safetensors")
                }
                fflush(nil)
            }
            if communicator.isRoot && stopAfter == nil && !options.fusionAdapters.isEmpty { try fuse(options) }
            if let mpi = communicator as? MPICommunicator { mpi.finalize() }
        } catch {
            FileHandle.standardError.write(Data("embedtune: error: \(communicator.size > 1 ? "rank \(communicator.rank): " : "")\(error)\n".utf8))
            // One failing rank must end the whole job, never leave the others waiting.
            if let mpi = communicator as? MPICommunicator { mpi.abort(code: 1) }
            throw ExitCode.failure
        }
    }

    /// Rank 0, after training: this run's adapter and the configured partners fused by mean dev
    /// NDCG@10; the fused model is folded into OUTPUT_DIR/fused-model, the table in OUTPUT_DIR/fusion.md.
    func fuse(_ options: TrainingOptions) throws {
        let out = URL(fileURLWithPath: options.outputDir)
        let paths = [options.outputDir] + options.fusionAdapters
        let adapters = try paths.map { try PEFTAdapter.load(URL(fileURLWithPath: $0)) }
        var spec = MergeSpec(method: .taskArithmetic)
        try AdapterMerge.validate(adapters, spec)
        var settings = FusionSearch.Settings()
        settings.dev = options.fusionDev
        settings.methods = [.taskArithmetic, .ties, .dareTies]
        settings.scales = [0.6, 1.0]
        settings.maxLength = options.maxLength
        settings.report = out.appendingPathComponent("fusion.md").path
        let base = try ModelDirectory(URL(fileURLWithPath: options.model))
        print("fusion: searching method and weights for \(paths.joined(separator: ", "))")
        spec = try FusionSearch(settings: settings, base: base, adapters: adapters, start: spec).run()
        let target = out.appendingPathComponent("fused-model")
        let card = ModelCard.merge(base: options.model, adapters: paths, spec: spec, folded: true,
                                   searchTable: try? String(contentsOfFile: settings.report!, encoding: .utf8))
        try ModelExport.writeFolded(base: base, deltas: AdapterMerge.deltas(adapters, spec), to: target, force: true, card: card)
        print("fusion: \(spec.method.rawValue) folded into \(target.path) (table in \(settings.report!))")
    }

    /// Defaults ← TOML config ← flags, then checked.
    func resolveOptions() throws -> TrainingOptions {
        var options = TrainingOptions()
        if let config {
            try options.apply(config: TOML.parse(try TextFile.read(config), file: config), file: config)
        }
        try options.apply(arguments: trainingArguments)
        try options.validate()
        return options
    }
}

/// The training options as `train --help` lists them: a heading per section, then each option's
/// spellings, type, help and default, laid out in ArgumentParser's columns.
func trainingOptionsHelp(width: Int = 79) -> String {
    let defaults = TrainingOptions()
    var lines = ["Every training option is also a key of the --config file (TOML); flags override the file, and the file "
                 + "overrides the defaults. A boolean option alone means true."]
    for section in TrainingOption.sections {
        lines += ["", section.title.uppercased() + ":"]
        for option in section.options {
            let label = "  " + CommandLineWords.spellings(option.key).map { "--\($0)" }.joined(separator: ", ") + " <\(option.typeName)>"
            var help = option.help
            if let value = option.argumentText(defaults) { help += " (default: \(value))" }
            if !option.aliases.isEmpty { help += " Also spelled " + option.aliases.map { "--\($0)" }.joined(separator: ", ") + "." }
            lines += helpColumns(label, help, width: width)
        }
    }
    return lines.joined(separator: "\n")
}

/// `label` in the first 26 columns (alone on its line when longer), `help` wrapped beside or under it.
func helpColumns(_ label: String, _ help: String, width: Int) -> [String] {
    let indent = 26
    var lines = [String](), line = label.count + 2 <= indent ? label.padding(toLength: indent, withPad: " ", startingAt: 0) : nil
    if line == nil { lines.append(label) }
    for word in help.split(separator: " ") {
        if let current = line, current.count > indent, current.count + 1 + word.count > width {
            lines.append(current)
            line = nil
        }
        let current = line ?? String(repeating: " ", count: indent)
        line = current + (current.count > indent ? " " : "") + word
    }
    if let line { lines.append(line) }
    return lines
}
