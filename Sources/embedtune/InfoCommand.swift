import ArgumentParser
import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import Foundation

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Describe a model directory and the runtime (BLAS kernel, threads, MPI).")

    @Option(help: "Model directory or .gguf file to describe (optional).") var model: String?
    @Option(help: .boolean("Print JSON instead of text.")) var json = false

    func run() throws {
        try runReportingErrors {
            var fields: [(String, String)] = []
            if let model {
                let dir = try ModelDirectory(URL(fileURLWithPath: model))
                let backbone = try loadBackbone(dir)
                let dtype: String
                if let gguf = dir.gguf {
                    var counts = [String: Int]()
                    for t in gguf.file.tensors { counts[t.type.name, default: 0] += t.count }
                    dtype = counts.max { $0.value < $1.value }?.key ?? "none"
                } else {
                    dtype = try WeightStore(directory: dir.url).dominantDType
                }
                let tokenizer = try dir.loadTokenizer()
                fields += [
                    ("model", dir.url.path),
                    ("architecture", backbone.architecture),
                    ("shape", backbone.shapeSummary),
                    ("parameters", "\(backbone.parameterCount)"),
                    ("dtype", dtype + " on disk, float32 in memory"),
                    ("embedding_dimension", "\(backbone.hiddenSize)"),
                    ("max_positions", "\(backbone.maxPositions)"),
                    ("tokenizer", "\(type(of: tokenizer.model)) from \(tokenizer.source), vocabulary \(tokenizer.vocabularySize), \(tokenizer.specialTokensAdded) special token(s) added per text, padding \(tokenizer.paddingSide.rawValue)"),
                    ("pooling", dir.pooling.rawValue),
                    ("normalize", "\(dir.normalize)"),
                    ("prompts", dir.prompts.keys.sorted().joined(separator: ", ")),
                ]
            }
            let cpu = BLASRuntime.cpuInfo()
            fields += [
                ("blas_core", BLASRuntime.coreName),
                ("kernels", GEMMKernel.summary),
                ("blas_threads", "\(BLASRuntime.threads)"),
                ("thread_split", GEMMKernel.splitInvariantRows.map { "products split at multiples of \($0) rows: results independent of the thread count" }
                    ?? "no exact row split found for this OpenBLAS: results may differ in the last bits between thread counts"),
                ("blas_config", BLASRuntime.config),
                ("cpu", "\(cpu.vendor), \(cpu.simdClass) (best OpenBLAS core: \(cpu.bestCore))"),
                ("mpi", MPICommunicator.libraryVersion),
                ("zstd", Zstd.version),
                ("sqlite", SQLiteInfo.version),
            ]
            if json {
                let object = Dictionary(fields, uniquingKeysWith: { a, _ in a })
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
                print(String(decoding: data, as: UTF8.self))
            } else {
                let width = fields.map(\.0.count).max() ?? 0
                for (k, v) in fields { print(k.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + v) }
            }
        }
    }
}
