import ArgumentParser
import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneGeneration
import EmbedTuneModels
import EmbedTuneTraining
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
        abstract: "Train the hypernetwork on the library's adapters (reconstruction) or through the adapters it generates (contrastive); data-parallel under mpirun.",
        discussion: """
            reconstruction: L1 between the generated and the library's A and B, each module z-scored over the library. \
            contrastive: InfoNCE of each domain's training triples (the library store's, negatives as mined by library train) \
            through the adapter generated from its description, end to end into the hypernetwork; training options \
            (max_length, per_device_train_batch_size, num_negatives, temperature, [infonce]) come from --config. \
            --init_from starts from a trained hypernetwork (e.g. reconstruction first, then contrastive).
            """)

    @OptionGroup var trained: TrainedLibraryOptions
    @Option(help: "The hypernetwork directory to write.") var output: String
    @Option(help: "reconstruction (L1 to the library's z-scored A and B) or contrastive (InfoNCE through the generated adapter).")
    var objective = "reconstruction"
    @Option(help: "Model that embeds descriptions (default: the adapters' base model).") var model: String?
    @Option(name: .spelled("config"), help: "TOML training options of the contrastive objective (e.g. the library's configs/library-e5.toml).")
    var config: String?
    @Option(name: .spelled("init_from"), help: "A hypernetwork directory to start from (its configuration and scalings are kept).")
    var initFrom: String?
    @Option(help: "Optimiser steps (default: 1000 reconstruction, 200 contrastive).") var steps: Int?
    @Option(name: .spelled("batch_size"), help: "(domain, description) pairs per step, over all ranks (default: 8 reconstruction, 2 contrastive).")
    var batchSize: Int?
    @Option(name: .spelled("learning_rate"), help: "Peak learning rate, linear warm-up then cosine decay (default: 1e-3 reconstruction, 1e-4 contrastive).")
    var learningRate: Float?
    @Option(name: .spelled("hidden_size"), help: "Width of the hypernetwork's trunk.") var hiddenSize = 256
    @Option(help: "Residual blocks in the trunk.") var blocks = 2
    @Option(help: "Seed of the initial weights and of the pairs drawn.") var seed: UInt64 = 42

    var contrastive: Bool { objective == "contrastive" }

    func validate() throws {
        guard ["reconstruction", "contrastive"].contains(objective) else {
            throw ValidationError("--objective \(objective): expected reconstruction or contrastive")
        }
        guard (steps ?? 1) > 0, (batchSize ?? 1) > 0, hiddenSize > 0, blocks >= 0 else {
            throw ValidationError("--steps, --batch_size and --hidden_size must be positive")
        }
        if let learningRate, !(learningRate > 0) { throw ValidationError("--learning_rate must be positive") }
    }

    func run() throws { try runOnEveryRank(train) }

    func train(_ communicator: Communicator) throws {
        let domains = try trained.domains(minimum: 2)
        let loaded = try domains.map { try PEFTAdapter.load(trained.adapterDirectory($0.name)) }
        let targets = try HypernetworkTargets(adapters: loaded)
        guard let baseModel = model ?? loaded[0].baseModel else {
            throw ValidationError("the adapters do not name their base model: give --model")
        }
        let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: baseModel)))
        var options = Embedder.Options()
        options.prefix = embedder.directory.queryPrompt
        let raw = try domains.map { try embedder.embed($0.descriptions, options: options).values }
        let t2l: TextToLoRA
        if let initFrom {
            t2l = try TextToLoRA.load(URL(fileURLWithPath: initFrom))
            guard t2l.manifest.modules == targets.layout.entries.map(\.module), t2l.manifest.config.descriptionDim == embedder.backbone.hiddenSize else {
                throw FormatError(file: initFrom, "the hypernetwork emits other modules or takes other descriptions than this library's adapters and model")
            }
            t2l.manifest.objective += "+" + objective
            t2l.manifest.trainingDomains = domains.map(\.name)
            t2l.manifest.steps += steps ?? (contrastive ? 200 : 1000)
        } else {
            let (descriptionMean, descriptionStd) = TextToLoRA.standardisation(raw.flatMap { $0 }, dim: embedder.backbone.hiddenSize)
            var config = Hypernetwork.Config(descriptionDim: embedder.backbone.hiddenSize, layers: targets.layout.layers,
                                             rank: targets.layout.rank, moduleTypes: targets.layout.types)
            config.hidden = hiddenSize
            config.blocks = blocks
            let layout = targets.layout
            let manifest = TextToLoRA.Manifest(
                config: config, baseModel: baseModel, descriptionModel: baseModel, descriptionPrompt: options.prefix,
                modules: layout.entries.map(\.module), moduleLayers: layout.entries.map(\.layer), moduleTypes: layout.entries.map(\.type),
                scale: targets.scale, objective: objective, trainingDomains: domains.map(\.name), steps: steps ?? (contrastive ? 200 : 1000))
            t2l = TextToLoRA(manifest: manifest, network: Hypernetwork(config: config, seed: seed),
                             statistics: targets.statistics.flatMap { [$0.meanA, $0.stdA, $0.meanB, $0.stdB] },
                             descriptionMean: descriptionMean, descriptionStd: descriptionStd)
        }
        let descriptions = raw.map(t2l.standardised)
        if communicator.isRoot {
            print("t2l: \(objective), \(domains.count) domains (\(domains.map(\.name).joined(separator: ", "))), \(targets.layout.entries.count) modules, "
                  + "\(t2l.network.parameterCount) parameters, \(communicator.size) rank(s)")
        }
        let started = Date()
        if contrastive {
            try trainContrastive(t2l, domains: domains, descriptions: descriptions, library: loaded[0], embedder: embedder,
                                 store: trained.store, communicator: communicator)
        } else {
            var trainer = ReconstructionTrainer()
            trainer.steps = steps ?? 1000
            trainer.batch = batchSize ?? 8
            trainer.learningRate = learningRate ?? 1e-3
            trainer.seed = seed
            trainer.warmupSteps = max(1, trainer.steps / 20)
            _ = try trainer.train(t2l.network, targets: targets, descriptions: descriptions, communicator: communicator) { step, loss in
                if communicator.isRoot && (step % 50 == 0 || step == trainer.steps) {
                    print(String(format: "step %d/%d  L1 %.4f", step, trainer.steps, loss)); fflush(nil)
                }
            }
        }
        guard communicator.isRoot else { return }
        try t2l.save(to: URL(fileURLWithPath: output))
        print(String(format: "t2l: wrote %@ (%.0f s)", output, Date().timeIntervalSince(started)))
    }

    /// The contrastive objective: one training adapter of the library's configuration on the base
    /// model, each domain's triples from the library store behind an InfoNCE loss through it.
    func trainContrastive(_ t2l: TextToLoRA, domains: [DomainLibrary.Domain], descriptions: [[Float]], library first: LoRAAdapter,
                          embedder: Embedder, store: String, communicator: Communicator) throws {
        var training = TrainingOptions()
        if let config { try training.apply(config: TOML.parse(try TextFile.read(config), file: config), file: config) }
        training.model = t2l.manifest.baseModel
        training.splitDatasetRatio = 0
        training.db = store
        training.dbDataset = domains[0].name
        training.dataset = ""
        try training.validate()
        guard let model = embedder.backbone as? Backbone & TrainableBackbone else {
            throw FormatError(file: t2l.manifest.baseModel, "this architecture cannot be trained")
        }
        var loraConfig = first.config
        loraConfig.loraDropout = training.loraDropout
        let adapter = try LoRAAdapter(config: loraConfig, linears: model.linearLayers)
        let state = TrainerState(adapter: adapter, optimizer: AdamW(count: 0), logTau: logf(training.temperature))
        let directory = embedder.directory
        let pass = EmbeddingPass(model: model, adapter: adapter, pooling: directory.pooling, backboneDropout: training.backboneDropout)
        let rows = try DatasetStore(path: store)
        let trainingDomains = try zip(domains, descriptions).map { domain, described -> ContrastiveTrainer.Domain in
            let plan = try DataPlan(rows: try rows.trainingRows(dataset: domain.name, split: "train"), skipped: [],
                                    source: "\(store):\(domain.name)/train", options: training, ranks: communicator.size,
                                    queryPrefix: training.queryPrompt ?? directory.queryPrompt,
                                    documentPrefix: training.documentPrompt ?? directory.documentPrompt)
            let loss = training.gradCacheMiniBatch > 0
                ? CachedInfoNCELoss(plan: plan, pass: pass, state: state, communicator: communicator, tokenizer: embedder.tokenizer,
                                    miniBatch: training.gradCacheMiniBatch)
                : InfoNCELoss(plan: plan, pass: pass, state: state, communicator: communicator, tokenizer: embedder.tokenizer)
            return ContrastiveTrainer.Domain(name: domain.name, descriptions: described, loss: loss)
        }
        let trainer = try ContrastiveTrainer(t2l: t2l, adapter: adapter, domains: trainingDomains, communicator: communicator)
        trainer.steps = steps ?? 200
        trainer.batch = batchSize ?? 2
        trainer.learningRate = learningRate ?? 1e-4
        trainer.seed = seed
        trainer.warmupSteps = max(1, trainer.steps / 20)
        trainer.maxGradNorm = training.maxGradNorm
        let started = Date()
        _ = try trainer.train { step, loss in
            if communicator.isRoot && (step % 10 == 0 || step == trainer.steps) {
                print(String(format: "step %d/%d  InfoNCE %.4f  (%.1f s/step)", step, trainer.steps, loss,
                             Date().timeIntervalSince(started) / Double(step)))
                fflush(nil)
            }
        }
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
