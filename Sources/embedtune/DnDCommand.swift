import ArgumentParser
import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneGeneration
import EmbedTuneKernels
import EmbedTuneModels
import Foundation

/// `embedtune dnd`: Drag-and-Drop — a generator trained on the library's adapters (each domain's
/// checkpoints and final adapter) that writes an adapter for a new domain from a batch of its
/// unlabeled queries.
struct DnDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dnd", abstract: "Drag-and-Drop: generate a domain adapter from a batch of its unlabeled queries.",
        subcommands: [DnDTrainCommand.self, DnDGenerateCommand.self])
}

struct DnDTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train the hyper-convolutional generator on the library's adapters (MSE to their z-scored tensors); data-parallel under mpirun.",
        discussion: """
            Each domain contributes its final adapter and every checkpoint-N/ adapter under OUTPUT/adapters/DOMAIN \
            (`library train --save_steps 1 --save_total_limit 20` keeps the last 20), each paired with random batches \
            of the domain's training queries (at most --max_domain_queries of them, embedded once by the base model).
            """)

    @OptionGroup var trained: TrainedLibraryOptions
    @Option(help: "The generator directory to write.") var output: String
    @Option(help: "Queries per condition (the decoder's first S).") var queries = 128
    @Option(name: .spelled("max_domain_queries"), help: "Training queries of a domain the conditions are drawn from.") var maxDomainQueries = 512
    @Option(name: .spelled("hidden_shapes"), help: "The decoder's shapes between condition and output, S,H,W;S,H,W;…") var hiddenShapes = "32,16,24"
    @Option(name: .spelled("chunk_shape"), help: "H,W of an output row: each module's tensors are cut into chunks of H·W values.") var chunkShape = "32,48"
    @Option(help: "Convolution kernel size (odd).") var kernel = 3
    @Option(help: "Optimiser steps.") var steps = 1000
    @Option(name: .spelled("batch_size"), help: "(adapter, query batch) pairs per step, over all ranks.") var batchSize = 4
    @Option(name: .spelled("learning_rate"), help: "Peak learning rate, linear warm-up then cosine decay.") var learningRate: Float = 1e-3
    @Option(help: "Seed of the initial weights and of the pairs drawn.") var seed: UInt64 = 42

    static func shape(_ s: String, _ count: Int, flag: String) throws -> [Int] {
        let v = s.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard v.count == count, v.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--\(flag) \"\(s)\": expected \(count) positive comma-separated sizes")
        }
        return v.map { $0! }
    }

    func validate() throws {
        guard queries > 0, maxDomainQueries > 0, steps > 0, batchSize > 0 else {
            throw ValidationError("--queries, --max_domain_queries, --steps and --batch_size must be positive")
        }
        guard kernel > 0, kernel % 2 == 1 else { throw ValidationError("--kernel \(kernel): expected an odd size") }
        _ = try Self.shape(chunkShape, 2, flag: "chunk_shape")
        for s in hiddenShapes.split(separator: ";") { _ = try Self.shape(String(s), 3, flag: "hidden_shapes") }
    }

    func run() throws { try runOnEveryRank(train) }

    func train(_ communicator: Communicator) throws {
        let domains = try trained.domains(minimum: 2), root = trained.root
        // The adapters: each domain's checkpoints, then its final adapter.
        var loaded = [LoRAAdapter](), domainOf = [Int]()
        for (d, domain) in domains.enumerated() {
            let dir = trained.adapterDirectory(domain.name)
            let checkpoints = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasPrefix("checkpoint-") }.sorted()
            for c in checkpoints + ["."] {
                let path = c == "." ? dir : dir.appendingPathComponent(c)
                guard FileManager.default.fileExists(atPath: path.appendingPathComponent("adapter_config.json").path) else { continue }
                loaded.append(try PEFTAdapter.load(path))
                domainOf.append(d)
            }
        }
        let targets = try HypernetworkTargets(adapters: loaded)
        guard let baseModel = loaded[0].baseModel else { throw FormatError(url: root, "the adapters do not name their base model") }
        let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: baseModel)))
        var options = Embedder.Options()
        options.prefix = embedder.directory.queryPrompt
        let dim = embedder.backbone.hiddenSize
        let store = try DatasetStore(path: trained.store)
        let queryEmbeddings = try domains.map { domain -> [Float] in
            let texts = Array(try store.pairs(dataset: domain.name, split: "train").map(\.query).prefix(maxDomainQueries))
            guard !texts.isEmpty else { throw FormatError(url: root, "domain \(domain.name) has no training queries in the store") }
            return try communicator.gatherRows(count: texts.count, width: dim) { shard in try embedder.embed(Array(texts[shard]), options: options).values }
        }
        let (mean, std) = TextToLoRA.standardisation(queryEmbeddings.flatMap { $0 }, dim: dim)
        // The decoder: condition (N, H0, W0) with H0·W0 = D, the hidden shapes, then (rows, chunk H, chunk W).
        let h0 = stride(from: Int(Double(dim).squareRoot()), through: 1, by: -1).first { dim % $0 == 0 }!
        let chunk = try Self.shape(chunkShape, 2, flag: "chunk_shape")
        let layout = targets.layout
        var manifest = DragAndDrop.Manifest(
            decoder: .init(features: [], kernel: kernel), baseModel: baseModel, queryPrompt: options.prefix,
            modules: layout.entries.map(\.module), moduleRank: layout.rank,
            moduleShapes: layout.entries.map { [layout.types[$0.type].inFeatures, layout.types[$0.type].outFeatures] },
            scale: targets.scale, trainingDomains: domains.map(\.name), trainingAdapters: loaded.count, steps: steps)
        manifest.decoder.features = [[queries, h0, dim / h0]]
            + (try hiddenShapes.split(separator: ";").map { try Self.shape(String($0), 3, flag: "hidden_shapes") })
            + [[0, chunk[0], chunk[1]]]
        manifest.decoder.features[manifest.decoder.features.count - 1][0] = manifest.rows
        let dnd = try DragAndDrop(manifest: manifest, decoder: try HyperConvDecoder(config: manifest.decoder, seed: seed),
                                  statistics: targets.statistics.flatMap { [$0.meanA, $0.stdA, $0.meanB, $0.stdB] },
                                  conditionMean: mean, conditionStd: std)
        if communicator.isRoot {
            print("dnd: \(domains.count) domains, \(loaded.count) adapters (checkpoints included), \(layout.entries.count) modules in "
                  + "\(manifest.rows) rows of \(manifest.chunk), decoder \(manifest.decoder.features), \(dnd.decoder.parameterCount) parameters, "
                  + "\(communicator.size) rank(s)")
            fflush(nil)
        }
        var trainer = DragAndDropTrainer()
        trainer.steps = steps
        trainer.batch = batchSize
        trainer.learningRate = learningRate
        trainer.seed = seed
        trainer.warmupSteps = max(1, steps / 20)
        let started = Date()
        _ = try trainer.train(dnd, targets: targets.targets.map { dnd.target($0) }, domainOf: domainOf, queries: queryEmbeddings,
                              communicator: communicator) { step, loss in
            if communicator.isRoot && (step % 50 == 0 || step == steps) {
                print(String(format: "step %d/%d  MSE %.4f  (%.2f s/step)", step, steps, loss, Date().timeIntervalSince(started) / Double(step)))
                fflush(nil)
            }
        }
        guard communicator.isRoot else { return }
        try dnd.save(to: URL(fileURLWithPath: output))
        print(String(format: "dnd: wrote %@ (%.0f s)", output, Date().timeIntervalSince(started)))
    }
}

struct DnDGenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write a PEFT adapter for a domain from a file of its unlabeled queries (embed, eval, merge and routing take it).")

    @Option(help: "The generator directory (`embedtune dnd train`).") var generator: String
    @Option(help: "A text file, one query per line (the generator's N are taken, cycled when fewer).") var queries: String
    @Option(help: "The adapter directory to write.") var output: String

    func run() throws {
        try runReportingErrors {
            let started = Date()
            let texts = TextFile.lines(try TextFile.read(queries)).map { String($0.1).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !texts.isEmpty else { throw FormatError(file: queries, "no queries (one per line)") }
            let dnd = try DragAndDrop.load(URL(fileURLWithPath: generator))
            let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: dnd.manifest.baseModel)))
            guard embedder.backbone.hiddenSize == dnd.conditionMean.count else {
                throw FormatError("\(dnd.manifest.baseModel) embeds in \(embedder.backbone.hiddenSize) dimensions, the generator takes \(dnd.conditionMean.count)")
            }
            var options = Embedder.Options()
            options.prefix = dnd.manifest.queryPrompt
            let used = Array(texts.prefix(dnd.manifest.queries))
            let adapter = try dnd.generate(queryEmbeddings: try embedder.embed(used, options: options).values)
            let out = URL(fileURLWithPath: output)
            try PEFTAdapter.save(adapter, to: out, baseModel: dnd.manifest.baseModel,
                                 extra: ["embedtune_generated_by": "dnd", "embedtune_queries": "\(used.count)"])
            let card = """
                # Generated LoRA adapter

                Written by `embedtune dnd generate` from \(used.count) unlabeled queries of `\(queries)` \
                (the generator takes \(dnd.manifest.queries); fewer are cycled), by the Drag-and-Drop generator in `\(generator)` \
                (trained on \(dnd.manifest.trainingAdapters) adapters of \(dnd.manifest.trainingDomains.count) domains: \
                \(dnd.manifest.trainingDomains.joined(separator: ", "))). No labelled data of this domain was used.

                - base model: `\(dnd.manifest.baseModel)`
                - rank \(dnd.manifest.moduleRank), \(dnd.manifest.modules.count) modules

                """
            try writeAtomically(Data(card.utf8), to: out.appendingPathComponent("README.md"))
            FileHandle.standardError.write(Data(String(format: "embedtune: wrote %@ in %.2f s\n", output, Date().timeIntervalSince(started)).utf8))
        }
    }
}
