import ArgumentParser
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneGeneration
import EmbedTuneModels
import Foundation

/// `embedtune t2l`: Text-to-LoRA — a hypernetwork trained on a library of domain adapters that
/// writes an adapter for a new domain from its description.
struct T2LCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "t2l", abstract: "Text-to-LoRA: generate a domain adapter from a description.",
        subcommands: [T2LTrainCommand.self, T2LGenerateCommand.self])
}

struct T2LTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train the hypernetwork on the library's adapters (reconstruction: L1 to their z-scored A and B); data-parallel under mpirun.")

    @Option(help: "The domain library (`make domains`): descriptions of each domain.") var library: String
    @Option(help: "The output of `embedtune library train` (adapters/DOMAIN, library-runs.json).") var adapters: String
    @Option(help: "The hypernetwork directory to write.") var output: String
    @Option(help: "reconstruction (L1 to the library's z-scored A and B).") var objective = "reconstruction"
    @Option(help: "Comma-separated domains held out of training.") var exclude: String?
    @Option(help: "Model that embeds descriptions (default: the adapters' base model).") var model: String?
    @Option(help: "Optimiser steps.") var steps = 1000
    @Option(name: .spelled("batch_size"), help: "(domain, description) pairs per step, over all ranks.") var batchSize = 8
    @Option(name: .spelled("learning_rate"), help: "Peak learning rate (linear warm-up, cosine decay).") var learningRate: Float = 1e-3
    @Option(name: .spelled("hidden_size"), help: "Width of the hypernetwork's trunk.") var hiddenSize = 256
    @Option(help: "Residual blocks in the trunk.") var blocks = 2
    @Option(help: "Seed of the initial weights and of the pairs drawn.") var seed: UInt64 = 42

    func validate() throws {
        guard objective == "reconstruction" else {
            throw ValidationError("--objective \(objective): only reconstruction is built (the contrastive objective is not yet)")
        }
        guard steps > 0, batchSize > 0, hiddenSize > 0, blocks >= 0 else { throw ValidationError("--steps, --batch_size and --hidden_size must be positive") }
    }

    func run() throws { try runOnEveryRank(train) }

    func train(_ communicator: Communicator) throws {
        let library = try DomainLibrary(URL(fileURLWithPath: self.library))
        let root = URL(fileURLWithPath: adapters)
        let runs = try LibraryRuns.load(root.appendingPathComponent("library-runs.json"))
        let domains = try library.select(nil, excluding: exclude).filter { runs.done($0.name) }
        guard domains.count >= 2 else {
            throw FormatError(url: root, "needs at least two trained domains outside --exclude (found \(domains.map(\.name)))")
        }
        let loaded = try domains.map { try PEFTAdapter.load(root.appendingPathComponent("adapters").appendingPathComponent($0.name)) }
        let targets = try HypernetworkTargets(adapters: loaded)
        guard let baseModel = model ?? loaded[0].baseModel else {
            throw ValidationError("the adapters do not name their base model: give --model")
        }
        let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: baseModel)))
        var options = Embedder.Options()
        options.prefix = embedder.directory.queryPrompt
        let raw = try domains.map { try embedder.embed($0.descriptions, options: options).values }
        let (descriptionMean, descriptionStd) = TextToLoRA.standardisation(raw.flatMap { $0 }, dim: embedder.backbone.hiddenSize)
        let descriptions = raw.map { TextToLoRA.standardised($0, mean: descriptionMean, std: descriptionStd) }
        var config = Hypernetwork.Config(descriptionDim: embedder.backbone.hiddenSize, layers: targets.layout.layers,
                                         rank: targets.layout.rank, moduleTypes: targets.layout.types)
        config.hidden = hiddenSize
        config.blocks = blocks
        let network = Hypernetwork(config: config, seed: seed)
        var trainer = ReconstructionTrainer()
        trainer.steps = steps
        trainer.batch = batchSize
        trainer.learningRate = learningRate
        trainer.seed = seed
        trainer.warmupSteps = max(1, steps / 20)
        if communicator.isRoot {
            print("t2l: \(domains.count) domains (\(domains.map(\.name).joined(separator: ", "))), \(targets.layout.entries.count) modules, "
                  + "\(network.parameterCount) parameters, \(communicator.size) rank(s)")
        }
        let started = Date()
        _ = try trainer.train(network, targets: targets, descriptions: descriptions, communicator: communicator) { step, loss in
            if communicator.isRoot && (step % 50 == 0 || step == steps) { print(String(format: "step %d/%d  L1 %.4f", step, steps, loss)); fflush(nil) }
        }
        guard communicator.isRoot else { return }
        let layout = targets.layout
        let manifest = TextToLoRA.Manifest(
            config: config, baseModel: baseModel, descriptionModel: baseModel, descriptionPrompt: options.prefix,
            modules: layout.entries.map(\.module), moduleLayers: layout.entries.map(\.layer), moduleTypes: layout.entries.map(\.type),
            scale: targets.scale, objective: objective, trainingDomains: domains.map(\.name), steps: steps)
        let statistics = targets.statistics.flatMap { [$0.meanA, $0.stdA, $0.meanB, $0.stdB] }
        try TextToLoRA(manifest: manifest, network: network, statistics: statistics, descriptionMean: descriptionMean,
                       descriptionStd: descriptionStd).save(to: URL(fileURLWithPath: output))
        print(String(format: "t2l: wrote %@ (%.0f s)", output, Date().timeIntervalSince(started)))
    }
}

struct T2LGenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Write a PEFT adapter for a domain from its description (embed, eval, merge and routing take it).")

    @Option(help: "The hypernetwork directory (`embedtune t2l train`).") var hyper: String
    @Option(help: "The domain's description, in plain words.") var description: String
    @Option(help: "The adapter directory to write.") var output: String

    func run() throws {
        try runReportingErrors {
            guard !description.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw ValidationError("--description is empty") }
            let started = Date()
            let t2l = try TextToLoRA.load(URL(fileURLWithPath: hyper))
            let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: t2l.manifest.descriptionModel)))
            guard embedder.backbone.hiddenSize == t2l.manifest.config.descriptionDim else {
                throw FormatError("\(t2l.manifest.descriptionModel) embeds in \(embedder.backbone.hiddenSize) dimensions, the hypernetwork takes \(t2l.manifest.config.descriptionDim)")
            }
            var options = Embedder.Options()
            options.prefix = t2l.manifest.descriptionPrompt
            let e = try embedder.embed([description], options: options).values
            let adapter = try t2l.generate(descriptionEmbedding: e)
            let out = URL(fileURLWithPath: output)
            try PEFTAdapter.save(adapter, to: out, baseModel: t2l.manifest.baseModel,
                                 extra: ["embedtune_generated_by": "t2l", "embedtune_description": description])
            let card = """
                # Generated LoRA adapter

                Written by `embedtune t2l generate` from the description below, by the Text-to-LoRA hypernetwork in \
                `\(hyper)` (trained on \(t2l.manifest.trainingDomains.count) domains: \(t2l.manifest.trainingDomains.joined(separator: ", "))).
                No training data of this domain was used.

                - base model: `\(t2l.manifest.baseModel)`
                - rank \(t2l.manifest.config.rank), \(t2l.manifest.modules.count) modules

                Description:

                > \(description)

                """
            try writeAtomically(Data(card.utf8), to: out.appendingPathComponent("README.md"))
            FileHandle.standardError.write(Data(String(format: "embedtune: wrote %@ in %.2f s\n", output, Date().timeIntervalSince(started)).utf8))
        }
    }
}
