import ArgumentParser
import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneRetrieval
import EmbedTuneTraining
import Foundation

/// `embedtune library`: the domain library (`make domains`) and one adapter per domain — the
/// training set of Text-to-LoRA.
struct LibraryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "library", abstract: "A library of retrieval domains and their adapters.", subcommands: [LibraryTrainCommand.self, LibraryMultitaskCommand.self])
}

/// A library directory: library.json listing the domains, one BEIR directory each.
struct DomainLibrary {
    struct Domain {
        var name: String
        var language: String
        var directory: URL
        var descriptions: [String]
    }

    let root: URL
    let domains: [Domain]

    init(_ root: URL) throws {
        self.root = root
        let file = root.appendingPathComponent("library.json")
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw FormatError(url: file, "missing: not a domain library (build one with `make domains`)")
        }
        let json = try JSONValue.parse(try Data(contentsOf: file), file: file.path)
        guard let list = json["domains"]?.array else { throw FormatError(url: file, item: "domains", "expected a list of domains") }
        domains = try list.enumerated().map { i, entry in
            guard let name = entry["name"]?.string, !name.isEmpty else { throw FormatError(url: file, item: "domains[\(i)].name", "missing") }
            let dir = root.appendingPathComponent(name)
            let descriptionsFile = dir.appendingPathComponent("descriptions.json")
            let descriptions = try JSONValue.parse(try Data(contentsOf: descriptionsFile), file: descriptionsFile.path).array?
                .compactMap(\.string) ?? []
            guard !descriptions.isEmpty else { throw FormatError(url: descriptionsFile, "expected a list of at least one description") }
            return Domain(name: name, language: entry["language"]?.string ?? "", directory: dir, descriptions: descriptions)
        }
    }

    /// The domains `names` (comma-separated; nil: all) minus `excluded`, in library order;
    /// an unknown name is an error naming the library's domains.
    func select(_ names: String?, excluding excluded: String?) throws -> [Domain] {
        func list(_ s: String?) -> [String] { (s ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        let known = Set(domains.map(\.name))
        for name in list(names) + list(excluded) where !known.contains(name) {
            throw ValidationError("no domain \"\(name)\" in \(root.path) (it has: \(domains.map(\.name).joined(separator: ", ")))")
        }
        let wanted = names == nil ? known : Set(list(names)), dropped = Set(list(excluded))
        return domains.filter { wanted.contains($0.name) && !dropped.contains($0.name) }
    }
}

/// `embedtune library train`: per domain, import its BEIR directory into the store, mine hard
/// negatives for its training queries with the base model, train a LoRA adapter, and evaluate
/// base and adapter on its test queries (recorded in the store and in OUTPUT/library-runs.json).
/// Every step runs under mpirun as the single commands do (ranks embed shards, train data-parallel;
/// rank 0 imports, evaluates and writes). A domain whose run is recorded as done is skipped, and an
/// interrupted domain resumes from its latest checkpoint.
struct LibraryTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train one LoRA adapter per domain of a library (import, mine negatives, train, evaluate base and tuned); resumable per domain.",
        discussion: """
            Training options (embedtune train's, as --key value or in --config) apply to every domain; each domain's \
            db, db_dataset, db_split and output_dir are set here: OUTPUT/adapters/DOMAIN from the store OUTPUT/library.sqlite.
            """)

    @Option(help: "The domain library (`make domains`: .cache/domains/library).") var library: String
    @Option(help: "Where the adapters (OUTPUT/adapters/DOMAIN), the store and library-runs.json go.") var output: String
    @Option(help: "Comma-separated domains to train (default: all).") var domains: String?
    @Option(help: "Comma-separated domains to leave out (held out from the library).") var exclude: String?
    @Option(name: .spelled("config"), help: "TOML config of training options for every domain; flags override it.") var config: String?
    @Option(name: .spelled("range_max"), help: "Mine each training query's negatives (the training option num_negatives; 3 when it is unset) among the base model's top this many documents.")
    var rangeMax = 30
    @Option(help: .boolean("Quieter: one line per domain and step.")) var quiet = false
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Training options, as --key value (see embedtune train --help).", valueName: "training_option"))
    var trainingArguments: [String] = []

    static let setHere = ["db", "db_dataset", "db_split", "output_dir"]

    func validate() throws {
        guard rangeMax > 1 else { throw ValidationError("--range_max must be at least 2") }
        for key in Self.setHere where trainingArguments.contains(where: { $0 == "--\(key)" || $0 == "--\(key.replacingOccurrences(of: "_", with: "-"))" }) {
            throw ValidationError("--\(key) is set per domain by library train")
        }
    }

    func run() throws { try runOnEveryRank(trainAll) }

    func trainAll(_ communicator: Communicator) throws {
        let library = try DomainLibrary(URL(fileURLWithPath: self.library))
        let selected = try library.select(domains, excluding: exclude)
        guard !selected.isEmpty else { throw ValidationError("no domains left to train") }
        let out = URL(fileURLWithPath: output)
        let storePath = out.appendingPathComponent("library.sqlite").path
        let runsFile = out.appendingPathComponent("library-runs.json")
        if communicator.isRoot { try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true) }
        try communicator.barrier()
        let base = try Self.options(config: config, arguments: trainingArguments)
        for (i, domain) in selected.enumerated() {
            var runs = try LibraryRuns.load(runsFile)
            let adapterDir = out.appendingPathComponent("adapters").appendingPathComponent(domain.name)
            if runs.done(domain.name), FileManager.default.fileExists(atPath: adapterDir.appendingPathComponent("adapter_config.json").path) {
                if communicator.isRoot { print("library: \(domain.name) (\(i + 1)/\(selected.count)) done before, skipped") }
                continue
            }
            let started = Date()
            if communicator.isRoot { print("library: \(domain.name) (\(i + 1)/\(selected.count))"); fflush(nil) }
            // 1. The domain in the store (rank 0), once.
            if communicator.isRoot {
                let store = try DatasetStore(path: storePath)
                if try !store.datasetNames().contains(domain.name) {
                    _ = try store.importDataset(name: domain.name, format: .beir, inputs: ImportInputs(input: domain.directory.path), replace: true)
                }
            }
            try communicator.barrier()
            var options = base
            options.db = storePath
            options.dbDataset = domain.name
            options.dbSplit = "train"
            options.outputDir = adapterDir.path
            try options.validate()
            // 2. Hard negatives from the base model (every rank embeds a shard; rank 0 stores them).
            try mineNegatives(domain, store: storePath, options: options, communicator: communicator)
            // 3. The adapter, resumed from its latest checkpoint when a run was interrupted.
            let trainer = try Trainer(options: options, communicator: communicator)
            let resume = Self.hasCheckpoint(adapterDir) ? "latest" : nil
            _ = try trainer.run(resume: resume, events: Self.progress(trainer, communicator: communicator, quiet: quiet))
            // 4. Base and adapter on the domain's test queries (rank 0), recorded.
            if communicator.isRoot {
                let store = try DatasetStore(path: storePath)
                let set = try store.retrievalSet(dataset: domain.name, split: "test")
                var evaluator = EmbeddingEvaluator(set: set)
                evaluator.maxLength = options.maxLength
                let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: options.model)))
                var metrics = [String: [String: Double]]()
                for (name, adapter) in [("base", nil), ("adapter", adapterDir)] as [(String, URL?)] {
                    try embedder.setAdapter(adapter)
                    let (dim, q, c) = try evaluator.embed(embedder)
                    metrics[name] = evaluator.score(queries: q, corpus: c, dim: dim)
                    try store.recordRun(dataset: domain.name, kind: "library-eval", split: "test", model: options.model,
                                        adapter: adapter?.path, metrics: metrics[name]!)
                }
                let b = metrics["base"]!["cosine_ndcg@10"] ?? 0, a = metrics["adapter"]!["cosine_ndcg@10"] ?? 0
                runs.record(domain.name, LibraryRuns.Run(status: "done", adapter: adapterDir.path, base: metrics["base"]!,
                                                         adapter_metrics: metrics["adapter"]!, seconds: Date().timeIntervalSince(started),
                                                         test_queries: set.relevant.filter { !$0.isEmpty }.count))
                try runs.save(runsFile)
                print(String(format: "library: %@ NDCG@10 base %.4f → adapter %.4f (%+.1f%%) in %.0f s",
                             domain.name, b, a, b > 0 ? (a / b - 1) * 100 : 0, Date().timeIntervalSince(started)))
                fflush(nil)
            }
            try communicator.barrier()
        }
    }

    func mineNegatives(_ domain: DomainLibrary.Domain, store storePath: String, options: TrainingOptions, communicator: Communicator) throws {
        let store = try DatasetStore(path: storePath)
        if try store.tripletSplits(dataset: domain.name)["train"] ?? 0 > 0 { return }
        let pairs = try store.pairs(dataset: domain.name, split: "train")
        guard !pairs.isEmpty else { throw FormatError(file: domain.directory.path, "domain \(domain.name) has no training queries") }
        let corpus = try store.corpus(dataset: domain.name).map(\.text)
        let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: options.model)))
        var embedOptions = Embedder.Options()
        embedOptions.maxLength = options.maxLength
        let dim = embedder.backbone.hiddenSize, dir = embedder.directory
        func embed(_ texts: [String], prefix: String) throws -> [Float] {
            embedOptions.prefix = prefix
            return try communicator.gatherRows(count: texts.count, width: dim) { shard in
                try embedder.embed(Array(texts[shard]), options: embedOptions).values
            }
        }
        var mining = MiningOptions()
        mining.numNegatives = options.numNegatives > 0 ? options.numNegatives : 3
        mining.rangeMax = max(rangeMax, mining.numNegatives + 1)
        mining.outputFormat = .nTuple
        let (rows, _) = try Miner.mine(anchors: pairs.map(\.query), positives: pairs.map(\.positive), extraCorpus: corpus, dim: dim,
                                       embedQueries: { try embed($0, prefix: dir.queryPrompt) },
                                       embedDocuments: { try embed($0, prefix: dir.documentPrompt) },
                                       rerank: nil, options: mining)
        if communicator.isRoot {
            try store.saveTriplets(dataset: domain.name, split: "train", source: "library mine \(options.model)", MineCommand.triplets(rows))
        }
        try communicator.barrier()
    }

    /// Training options from a TOML config and `--key value` arguments (which override it).
    static func options(config: String?, arguments: [String]) throws -> TrainingOptions {
        var options = TrainingOptions()
        if let config { try options.apply(config: TOML.parse(try TextFile.read(config), file: config), file: config) }
        try options.apply(arguments: arguments)
        return options
    }

    /// Rank 0 prints every 10th step's loss and each warning (only warnings when `quiet`).
    static func progress(_ trainer: Trainer, communicator: Communicator, quiet: Bool) -> (TrainingEvent) -> Void {
        { event in
            guard communicator.isRoot else { return }
            switch event {
            case .step(let s) where !quiet && (s.step % 10 == 0 || s.step == trainer.totalSteps):
                print(String(format: "  step %d/%d  loss %.4f", s.step, trainer.totalSteps, s.loss))
            case .warning(let w): FileHandle.standardError.write(Data("embedtune: warning: \(w)\n".utf8))
            default: break
            }
            fflush(nil)
        }
    }

    static func hasCheckpoint(_ dir: URL) -> Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).contains { $0.hasPrefix("checkpoint-") }
    }
}

/// The trained library a generator or the multi-task baseline learns from: the domains
/// `library train` finished, minus the held-out ones. One declaration of the options for `t2l
/// train`, `dnd train` and `library multitask`.
struct TrainedLibraryOptions: ParsableArguments {
    @Option(help: "The domain library (`make domains`: .cache/domains/library).") var library: String
    @Option(help: "The output of `embedtune library train` (adapters/DOMAIN, library.sqlite, library-runs.json).") var adapters: String
    @Option(help: "Comma-separated domains held out (never seen in training).") var exclude: String?

    var root: URL { URL(fileURLWithPath: adapters) }
    var store: String { root.appendingPathComponent("library.sqlite").path }
    func adapterDirectory(_ domain: String) -> URL { root.appendingPathComponent("adapters").appendingPathComponent(domain) }

    /// The trained domains outside --exclude, in library order; at least `minimum` of them.
    func domains(minimum: Int = 1) throws -> [DomainLibrary.Domain] {
        let library = try DomainLibrary(URL(fileURLWithPath: self.library))
        let runs = try LibraryRuns.load(root.appendingPathComponent("library-runs.json"))
        let domains = try library.select(nil, excluding: exclude).filter { runs.done($0.name) }
        guard domains.count >= minimum else {
            throw FormatError(url: root, "needs at least \(minimum) domain(s) trained by library train outside --exclude (found \(domains.map(\.name)))")
        }
        return domains
    }
}

/// `embedtune library multitask`: the multi-task baseline of Text-to-LoRA — one adapter trained on
/// the training triples of every trained domain of the library (minus the held-out ones), mixed in
/// each batch, with the library's training options.
struct LibraryMultitaskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "multitask",
        abstract: "Train one LoRA adapter on every trained domain's triples together (the multi-task baseline); data-parallel under mpirun.",
        discussion: """
            The rows are the library store's training triples (negatives as library train mined them) of each domain \
            library train has finished, minus --exclude. Training options as for library train; give max_steps for \
            the budget (the library's per-domain steps are too few for many domains).
            """)

    @OptionGroup var trained: TrainedLibraryOptions
    @Option(help: "The adapter directory to write (checkpoints and the final adapter).") var output: String
    @Option(name: .spelled("config"), help: "TOML config of training options; flags override it.") var config: String?
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Training options, as --key value (see embedtune train --help).", valueName: "training_option"))
    var trainingArguments: [String] = []

    func validate() throws {
        for key in LibraryTrainCommand.setHere where trainingArguments.contains(where: { $0 == "--\(key)" || $0 == "--\(key.replacingOccurrences(of: "_", with: "-"))" }) {
            throw ValidationError("--\(key) is set by library multitask (the rows are the library store's; --output is the adapter)")
        }
    }

    func run() throws { try runOnEveryRank(train) }

    func train(_ communicator: Communicator) throws {
        let domains = try trained.domains(), store = trained.store
        let rows = try DatasetStore(path: store)
        let triplets = try domains.flatMap { try rows.trainingRows(dataset: $0.name, split: "train") }
        var options = try LibraryTrainCommand.options(config: config, arguments: trainingArguments)
        options.db = store
        options.dbDataset = domains[0].name
        options.outputDir = output
        let trainer = try Trainer(options: options, communicator: communicator, rows: triplets)
        if communicator.isRoot {
            print("multitask: \(triplets.count) rows of \(domains.count) domains (\(domains.map(\.name).joined(separator: ", "))), \(trainer.totalSteps) steps")
        }
        let started = Date()
        let final = try trainer.run(resume: LibraryTrainCommand.hasCheckpoint(URL(fileURLWithPath: output)) ? "latest" : nil,
                                    events: LibraryTrainCommand.progress(trainer, communicator: communicator, quiet: false))
        if communicator.isRoot { print(String(format: "multitask: wrote %@ (%.0f s)", final.path, Date().timeIntervalSince(started))) }
    }
}

/// OUTPUT/library-runs.json: each trained domain's adapter, base and adapter metrics on its test
/// queries, and time taken.
struct LibraryRuns: Codable {
    struct Run: Codable {
        var status: String
        var adapter: String
        var base: [String: Double]
        var adapter_metrics: [String: Double]
        var seconds: Double
        var test_queries: Int
    }

    var domains: [String: Run] = [:]

    static func load(_ url: URL) throws -> LibraryRuns {
        guard FileManager.default.fileExists(atPath: url.path) else { return LibraryRuns() }
        do { return try JSONDecoder().decode(LibraryRuns.self, from: Data(contentsOf: url)) } catch {
            throw FormatError(url: url, "not a library runs file (\(error))")
        }
    }

    func done(_ name: String) -> Bool { domains[name]?.status == "done" }
    mutating func record(_ name: String, _ run: Run) { domains[name] = run }

    func save(_ url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(self), to: url)
    }
}
