import ArgumentParser
import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTraining
import Foundation

/// `embedtune train`: flags named like ms-swift's `swift sft`, a TOML config they override, and
/// the same behaviour with or without mpirun.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "LoRA contrastive training (InfoNCE), single process or data-parallel under mpirun.")

    @Option(help: "TOML config (keys as the flags below, snake_case); flags override it.") var config: String?
    @Option(name: .customLong("model")) var model: String?
    @Option(name: .customLong("dataset"), help: "JSONL (ms-swift or sentence-transformers columns), CSV or TSV; with --db, a dataset name in the store.") var dataset: String?
    @Option(help: "Dataset store (SQLite): train on --dataset's mined triples of --db_split, or its pairs when none are mined.") var db: String?
    @Option(name: .customLong("db_split"), help: "Split of the store dataset to train on.") var dbSplit = "train"
    @Option(name: .customLong("output_dir")) var outputDir: String?
    @Option(name: .customLong("train_type"), help: "Only lora.") var trainType = "lora"
    @Option(name: .customLong("loss_type"), help: "Only infonce.") var lossType = "infonce"
    @Option(name: .customLong("lora_r")) var loraR: Int?
    @Option(name: .customLong("lora_alpha")) var loraAlpha: Double?
    @Option(name: .customLong("lora_dropout")) var loraDropout: Double?
    @Option(name: .customLong("target_modules"), help: "Comma-separated module names (default: every linear).") var targetModules: String?
    @Flag(name: .customLong("use_rslora")) var useRslora = false
    @Option(name: .customLong("learning_rate")) var learningRate: Float?
    @Option(name: .customLong("num_train_epochs")) var numTrainEpochs: Int?
    @Option(name: .customLong("max_steps")) var maxSteps: Int?
    @Option(name: .customLong("per_device_train_batch_size")) var perDeviceTrainBatchSize: Int?
    @Option(name: .customLong("global_batch_size"), help: "Triples per micro-step over all ranks (default per_device × ranks).")
    var globalBatchSize: Int?
    @Option(name: .customLong("gradient_accumulation_steps")) var gradientAccumulationSteps: Int?
    @Option(name: .customLong("warmup_ratio")) var warmupRatio: Float?
    @Option(name: .customLong("warmup_steps")) var warmupSteps: Int?
    @Option(name: .customLong("lr_scheduler_type"), help: "cosine | linear | constant") var lrSchedulerType: String?
    @Option(name: .customLong("weight_decay")) var weightDecay: Float?
    @Option(name: .customLong("max_grad_norm")) var maxGradNorm: Float?
    @Option(name: .customLong("eval_steps")) var evalSteps: Int?
    @Option(name: .customLong("save_steps")) var saveSteps: Int?
    @Option(name: .customLong("save_total_limit")) var saveTotalLimit: Int?
    @Option(name: .customLong("split_dataset_ratio")) var splitDatasetRatio: Float?
    @Option(name: .customLong("dataloader_drop_last")) var dataloaderDropLast: Bool?
    @Option(name: .customLong("seed")) var seed: UInt64?
    @Option(name: .customLong("max_length")) var maxLength: Int?
    @Option(name: .customLong("hard_negatives"), help: "Fixed hard negatives per row (pad by resampling / truncate).") var hardNegatives: Int?
    @Option(name: .customLong("temperature_mode"), help: "fixed | scheduled | learnable | adaptive") var temperatureMode: String?
    @Option(name: .customLong("temperature")) var temperature: Float?
    @Option(name: .customLong("temperature_end")) var temperatureEnd: Float?
    @Option(name: .customLong("use_batch"), help: "In-batch negatives (default true).") var useBatch: Bool?
    @Option(name: .customLong("mask_fake_negative")) var maskFakeNegative: Bool?
    @Option(name: .customLong("fake_negative_margin")) var fakeNegativeMargin: Float?
    @Option(name: .customLong("include_qq")) var includeQQ: Bool?
    @Option(name: .customLong("include_dd")) var includeDD: Bool?
    @Option(name: .customLong("gradcache_mini_batch"), help: "GradCache chunk in texts (0 = off).") var gradCacheMiniBatch: Int?
    @Option(name: .customLong("gather_across_ranks")) var gatherAcrossRanks: Bool?
    @Option(name: .customLong("balance_ranks"), help: "Deal each global batch's rows to the ranks by estimated tokens (default true; needs the gather).")
    var balanceRanks: Bool?
    @Option(name: .customLong("query_prompt"), help: "Prefix for queries (default: the model's \"query\" prompt).") var queryPrompt: String?
    @Option(name: .customLong("document_prompt"), help: "Prefix for documents (default: the model's \"document\" prompt).")
    var documentPrompt: String?
    @Flag(name: .customLong("skip_bad_rows"), help: "Skip and count malformed rows instead of stopping.") var skipBadRows = false
    @Option(name: .customLong("resume"), help: "latest, or a checkpoint directory.") var resume: String?
    @Option(name: .customLong("stop_after"), help: "Stop after this step without writing the final adapter (testing).")
    var stopAfter: Int?
    @Option(name: .customLong("fusion_adapters"), help: "Comma-separated adapters of other domains: rank 0 fuses them with this run's adapter at the end (merge --search).")
    var fusionAdapters: String?
    @Option(name: .customLong("fusion_dev"), help: "Comma-separated dev sets (BEIR directories): this run's domain first, then one per fusion adapter.")
    var fusionDev: String?
    @Option(name: .customLong("preserve_data"), help: "Other domains' pairs/triplets file: keep their query and positive embeddings near the base model's (fusion-friendly adapters).")
    var preserveData: String?
    @Option(name: .customLong("preserve_weight"), help: "Weight of the mean squared embedding drift on --preserve_data texts (default 1).")
    var preserveWeight: Float?
    @Option(name: .customLong("preserve_batch"), help: "--preserve_data texts per rank per step (default 16).")
    var preserveBatch: Int?
    @Flag(name: .customLong("backbone_dropout"), help: "Also train with the backbone's own dropout (BERT hidden and attention dropout).")
    var backboneDropout = false
    @Option(help: "Compute threads per process (default cores ÷ local ranks).") var threads: Int?
    @Flag(help: "Print from every rank.") var verbose = false

    func run() throws {
        let communicator: Communicator
        do { communicator = try makeCommunicator() } catch {
            FileHandle.standardError.write(Data("embedtune: error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        if let threads { BLASRuntime.setThreads(threads) }
        let speak = communicator.isRoot || verbose
        do {
            let options = try resolveOptions()
            let trainer = try Trainer(options: options, communicator: communicator, rows: try storeRows(options))
            let bar = communicator.size > 1 ? "[rank \(communicator.rank)/\(communicator.size)] " : ""
            try trainer.run(resume: resume, stopAfter: stopAfter) { event in
                guard speak else { return }
                switch event {
                case .started(let s): print("\(bar)train: \(s) (BLAS \(BLASRuntime.coreName) × \(BLASRuntime.threads))")
                case .step(let s):
                    print(String(format: "%@step %d/%d  loss %.4f  lr %.2e  tau %.4f  |g| %.3f  %.0f ms/step  %.0f tok/s",
                                 bar, s.step, trainer.totalSteps, s.loss, s.lr, s.tau, s.gradNorm, s.msPerStep, s.tokensPerSecond)
                          + (s.mpiFraction.map { String(format: "  MPI %.1f%%", $0 * 100) } ?? ""))
                case .eval(let e):
                    print(String(format: "%@eval step %d  held-out loss %.4f  margin %.4f  NDCG@10 %.4f  Recall@5 %.4f  MRR@10 %.4f (%d queries, %d documents)",
                                 bar, e.step, e.loss, e.margin, e.ndcg10, e.recall5, e.mrr10, e.rows, e.documents))
                case .checkpoint(let u): print("\(bar)checkpoint: \(u.path)")
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
        let adapters = try paths.map { try StandaloneAdapter.load(URL(fileURLWithPath: $0)) }
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

    /// Training rows from the dataset store (every rank reads them itself; SQLite reads are shared).
    func storeRows(_ options: TrainingOptions) throws -> [Triplet]? {
        guard let db else { return nil }
        let store = try DatasetStore(path: db)
        let mined = try store.triplets(dataset: options.dataset, split: dbSplit)
        if !mined.isEmpty { return mined }
        let pairs = try store.pairs(dataset: options.dataset, split: dbSplit)
        guard !pairs.isEmpty else { throw CLIError("\(db): dataset \"\(options.dataset)\" has no \(dbSplit) pairs (run `embedtune data split` first?)") }
        return pairs.map { Triplet(query: $0.query, positive: $0.positive, negatives: [], origin: "\(db):\(options.dataset):\($0.queryID)") }
    }

    /// Defaults ← TOML config ← flags.
    func resolveOptions() throws -> TrainingOptions {
        guard trainType == "lora" else { throw ValidationError("--train_type: only lora is supported") }
        guard lossType == "infonce" else { throw ValidationError("--loss_type: only infonce is supported") }
        var o = TrainingOptions()
        if let config {
            let url = URL(fileURLWithPath: config)
            let text: String
            do { text = try String(contentsOf: url, encoding: .utf8) } catch { throw FormatError(url: url, "cannot read") }
            o = try merge(TOML.parse(text, file: config), into: o, file: config)
        }
        func set<T>(_ v: T?, _ path: WritableKeyPath<TrainingOptions, T>) { if let v { o[keyPath: path] = v } }
        set(fusionAdapters.map { $0.split(separator: ",").map(String.init) }, \.fusionAdapters)
        set(fusionDev.map { $0.split(separator: ",").map(String.init) }, \.fusionDev)
        set(model, \.model); set(dataset, \.dataset); set(outputDir, \.outputDir); set(loraR, \.loraR)
        set(loraAlpha, \.loraAlpha); set(loraDropout, \.loraDropout)
        set(targetModules.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }, \.targetModules)
        if useRslora { o.useRslora = true }
        set(learningRate, \.learningRate); set(numTrainEpochs, \.numTrainEpochs); set(maxSteps, \.maxSteps)
        set(perDeviceTrainBatchSize, \.perDeviceTrainBatchSize); set(globalBatchSize, \.globalBatchSize)
        set(gradientAccumulationSteps, \.gradientAccumulationSteps); set(warmupRatio, \.warmupRatio)
        set(warmupSteps, \.warmupSteps); set(lrSchedulerType, \.lrSchedulerType); set(weightDecay, \.weightDecay)
        set(maxGradNorm, \.maxGradNorm); set(evalSteps, \.evalSteps); set(saveSteps, \.saveSteps)
        set(saveTotalLimit, \.saveTotalLimit); set(splitDatasetRatio, \.splitDatasetRatio)
        set(dataloaderDropLast, \.dataloaderDropLast); set(seed, \.seed); set(maxLength, \.maxLength)
        set(hardNegatives, \.hardNegatives); set(temperatureMode, \.temperatureMode); set(temperature, \.temperature)
        set(temperatureEnd, \.temperatureEnd); set(useBatch, \.infonce.useBatch); set(maskFakeNegative, \.infonce.maskFakeNegative)
        set(fakeNegativeMargin, \.infonce.fakeNegativeMargin); set(includeQQ, \.infonce.includeQQ)
        set(includeDD, \.infonce.includeDD); set(gradCacheMiniBatch, \.gradCacheMiniBatch)
        set(gatherAcrossRanks, \.gatherAcrossRanks); set(balanceRanks, \.balanceRanks)
        if let preserveData { o.preserveData = preserveData }
        set(preserveWeight, \.preserveWeight); set(preserveBatch, \.preserveBatch)
        if backboneDropout { o.backboneDropout = true }
        if let queryPrompt { o.queryPrompt = queryPrompt }
        if let documentPrompt { o.documentPrompt = documentPrompt }
        if skipBadRows { o.skipBadRows = true }
        try o.validate()
        return o
    }

    /// Overlays a config document on `base`; unknown keys are errors naming the key.
    func merge(_ doc: JSONValue, into base: TrainingOptions, file: String) throws -> TrainingOptions {
        var probe = base
        probe.queryPrompt = ""; probe.documentPrompt = ""
        let known = try JSONValue.parse(JSONEncoder().encode(probe), file: "defaults")
        guard var merged = try JSONValue.parse(JSONEncoder().encode(base), file: "defaults").object,
              let knownKeys = known.object else { return base }
        for (k, v) in doc.object ?? [:] {
            guard let def = knownKeys[k] else { throw FormatError(file: file, item: k, "unknown option") }
            if let table = v.object, var inner = merged[k]?.object ?? def.object {
                for (ik, iv) in table {
                    guard def.object?[ik] != nil else { throw FormatError(file: file, item: "\(k).\(ik)", "unknown option") }
                    inner[ik] = iv
                }
                merged[k] = .object(inner)
            } else {
                merged[k] = v
            }
        }
        do { return try JSONDecoder().decode(TrainingOptions.self, from: JSONEncoder().encode(JSONValue.object(merged))) }
        catch let DecodingError.typeMismatch(_, ctx) {
            throw FormatError(file: file, item: ctx.codingPath.map(\.stringValue).joined(separator: "."), "wrong type")
        }
    }
}
