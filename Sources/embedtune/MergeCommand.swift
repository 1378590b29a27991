import ArgumentParser
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneTraining
import Foundation

/// `embedtune merge`: fuse several domain adapters into one, exactly on ΔW = scale·B·A.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Fuse LoRA adapters (linear, task_arithmetic, ties, dare_linear, dare_ties, magnitude_prune, svd, cat) on ΔW.",
        discussion: """
        The result is a PEFT adapter in --output, or with --fold the base model with ΔW added, written as a \
        Hugging Face + sentence-transformers directory. With --search, per-domain dev sets (--dev, one per \
        adapter, in the same order) choose the method and weights with the best mean NDCG@10.
        """)

    @Option(help: "Base model directory the adapters were trained on.") var base: String
    @Option(help: "Comma-separated adapter directories.") var adapters: String
    @Option(help: "Comma-separated weights, one per adapter (default all 1; linear normalises them).") var weights: String?
    @Option(help: "linear | task_arithmetic | ties | dare_linear | dare_ties | magnitude_prune | svd | cat") var method = "task_arithmetic"
    @Option(help: "Share of each ΔW kept by ties / dare_* / magnitude_prune, in (0, 1].") var density = 0.5
    @Option(name: .spelled("majority_sign"), help: "ties / dare_ties sign election: total | frequency") var majoritySign = "total"
    @Option(help: "DARE mask seed.") var seed: UInt64 = 0
    @Option(help: "Rank of the written adapter (svd: default the largest input rank; ties/dare/magnitude: the sum).") var rank: Int?
    @Option(help: .boolean("Write the base model with ΔW folded in (HF + sentence-transformers directory) instead of an adapter."))
    var fold = false
    @Option(help: "Output directory.") var output: String
    @Option(help: .boolean("Replace --output if it exists.")) var force = false
    @OptionGroup var search: MergeSearchOptions

    func run() throws {
        try runReportingErrors {
            guard let method = MergeMethod(rawValue: method) else {
                throw FormatError("--method \"\(method)\" is unknown (choose one of \(MergeMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard let sign = MergeSpec.MajoritySign(rawValue: majoritySign) else { throw FormatError("--majority_sign must be total or frequency") }
            let paths = adapters.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !paths.isEmpty else { throw FormatError("--adapters: give at least one adapter directory") }
            var spec = MergeSpec(method: method)
            if let weights {
                spec.weights = try weights.split(separator: ",").map {
                    guard let w = Double($0.trimmingCharacters(in: .whitespaces)) else { throw FormatError("--weights: \"\($0)\" is not a number") }
                    return w
                }
            }
            spec.density = density; spec.majoritySign = sign; spec.seed = seed; spec.rank = rank
            let outputURL = URL(fileURLWithPath: output)
            if FileManager.default.fileExists(atPath: outputURL.path) && !force {
                throw FormatError("\(output) exists (use --force to replace it)")
            }
            let loaded = try paths.map { try PEFTAdapter.load(URL(fileURLWithPath: $0)) }
            try AdapterMerge.validate(loaded, spec)
            let baseDir = try ModelDirectory(URL(fileURLWithPath: base))
            let backbone = try loadBackbone(baseDir)
            guard let model = backbone as? TrainableBackbone else { throw FormatError("\(baseDir.modelType) models cannot carry LoRA adapters") }
            try AdapterMerge.checkCompatible(loaded, with: model, modelPath: base)
            if search.enabled {
                spec = try FusionSearch(settings: search.settings(), base: baseDir, adapters: loaded, start: spec, backbone: backbone).run()
            }
            let searchTable = search.enabled ? search.report.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } : nil
            let card = ModelCard.merge(base: base, adapters: paths, spec: spec, folded: fold, searchTable: searchTable)
            if fold {
                let deltas = try AdapterMerge.deltas(loaded, spec)
                try ModelExport.writeFolded(base: baseDir, deltas: deltas, to: outputURL, force: force, card: card)
                print("merge: \(spec.method.rawValue) of \(loaded.count) adapters folded into \(base) → \(output) (\(deltas.count) weights changed)")
            } else {
                let merged = try AdapterMerge.factors(loaded, spec)
                let adapter = try LoRAAdapter.fromFactors(merged.modules, rank: merged.rank)
                if force { try? FileManager.default.removeItem(at: outputURL) }
                try PEFTAdapter.save(adapter, to: outputURL, baseModel: base, extra: [
                    "embedtune_merge": ["method": spec.method.rawValue, "adapters": paths, "weights": spec.weights ?? [],
                                        "density": spec.density, "majority_sign": spec.majoritySign.rawValue, "seed": spec.seed],
                ])
                try card.write(to: outputURL)
                var line = "merge: \(spec.method.rawValue) of \(loaded.count) adapters → \(output) (rank \(merged.rank), \(merged.modules.count) modules"
                line += spec.method.isLowRankExact || spec.method == .svd ? ", exact)" : String(format: ", relative truncation error %.2e; use --fold to keep it exact)", merged.relativeError)
                print(line)
            }
        }
    }
}
