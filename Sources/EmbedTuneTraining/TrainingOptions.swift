import EmbedTuneFormats
import Foundation

/// Every setting of a training run. Each one is declared once in `TrainingOption.sections`
/// (its TOML key, which is also its command-line flag, help and check); the property here holds
/// its type and default.
public struct TrainingOptions: Equatable, Sendable {
    public var model = ""
    /// embedding (contrastive, an embedding model) | reranker (a cross-encoder scoring pairs)
    public var taskType = "embedding"
    public var trainType = "lora"
    public var lossType = "infonce"
    public var loraR = 8
    public var loraAlpha = 32.0
    public var loraDropout = 0.0
    /// Empty = every linear layer of the model.
    public var targetModules: [String] = []
    public var useRslora = false
    /// Train with the backbone's own dropout too (BERT hidden/attention dropout, as PyTorch's train mode).
    public var backboneDropout = false
    /// How the frozen base weights are stored: fp32, or bf16 (half the memory, products in fp32; `BF16Base`).
    public var basePrecision = "fp32"

    /// A triples file; or, with `db`, empty and the rows come from the store.
    public var dataset = ""
    public var db: String?
    public var dbDataset: String?
    public var dbSplit = "train"
    public var splitDatasetRatio: Float = 0
    public var maxLength = 256
    /// Fixed hard-negative count per row (pad by resampling, truncate); -1 = the dataset's maximum.
    public var numNegatives = -1
    public var skipBadRows = false
    /// Query/document prefixes; nil = the model's config_sentence_transformers.json prompts.
    public var queryPrompt: String?
    public var documentPrompt: String?

    public var outputDir = "output"
    public var learningRate: Float = 1e-4
    public var numTrainEpochs = 1
    /// > 0 overrides num_train_epochs.
    public var maxSteps = -1
    public var perDeviceTrainBatchSize = 4
    /// Triples per optimiser micro-step over all ranks; 0 = per_device × world size.
    public var globalBatchSize = 0
    public var gradientAccumulationSteps = 1
    public var warmupRatio: Float = 0
    public var warmupSteps = 0
    public var lrSchedulerType = "cosine"
    public var weightDecay: Float = 0
    public var maxGradNorm: Float = 1
    public var adamBeta1: Float = 0.9
    public var adamBeta2: Float = 0.999
    public var adamEpsilon: Float = 1e-8
    public var evalSteps = 0
    public var saveSteps = 0
    public var saveTotalLimit = 2
    public var dataloaderDropLast = true
    /// batch_sampler: the epoch's shuffled order; no_duplicates: no text twice in a global batch.
    public var batchSampler = "batch_sampler"
    /// no_duplicates: passes over fresh shuffles after the first while an epoch is short of batches.
    public var noDuplicatesResamplePasses = NoDuplicateBatches.extraPasses
    public var seed: UInt64 = 42

    public var infonce = InfoNCEOptions()
    /// fixed | scheduled | learnable | adaptive
    public var temperatureMode = "fixed"
    public var temperature: Float = 0.05
    public var temperatureEnd: Float = 0.02
    public var temperatureMin: Float = 0.01
    public var temperatureMax: Float = 1.0
    public var adaptiveBase: Float = 0.08
    public var adaptiveStep: Float = 0.01
    public var adaptiveFloor: Float = 0.03
    public var adaptiveTerms = ["种植", "养殖", "病虫害", "育种"]

    /// Matryoshka representation learning (sentence-transformers' MatryoshkaLoss around the
    /// InfoNCE term): the loss is also taken on the embeddings' first d components, renormalised,
    /// for each d here, and the terms summed with `matryoshkaWeights` (empty: all 1). Empty: off.
    public var matryoshkaDims: [Int] = []
    public var matryoshkaWeights: [Float] = []

    /// GradCache mini-batch in texts; 0 = one pass with activations for the whole local batch.
    public var gradCacheMiniBatch = 0
    /// Gather embeddings across ranks so every query sees every rank's documents.
    public var gatherAcrossRanks = true
    /// With the gather on, deal each global micro-batch's rows out to the ranks by estimated
    /// tokens, so no rank waits for a longer share (`RankBalance`); off: contiguous slices.
    public var balanceRanks = true
    /// Compute threads per process; 0 = the launcher's choice (cores ÷ local ranks).
    public var threads = 0
    /// Seconds one collective may wait for the other ranks before the job ends (0: forever).
    public var collectiveTimeout = 300.0

    /// Other domains' adapters to fuse with this run's adapter on rank 0 at the end (merge --search),
    /// and one dev set (BEIR directory) per domain: this run's first, then one per partner.
    public var fusionAdapters: [String] = []
    public var fusionDev: [String] = []
    /// Texts of other domains whose embeddings this adapter should leave where the base model puts
    /// them (a pairs/triplets file: its queries and positives, with the query/document prompts):
    /// each step adds preserve_weight · mean ‖e − e_base‖² over preserve_batch of them per rank.
    /// Adapters trained this way interfere less when fused with those domains' adapters.
    public var preserveData: String?
    public var preserveWeight: Float = 1
    public var preserveBatch = 16

    /// Every N steps (from step 0) the current adapter re-embeds the training corpus and each
    /// row's negatives are mined again with `mining`'s filters; 0 = the rows' own negatives
    /// throughout.
    public var refreshNegativesSteps = 0
    public var mining = NegativeMiningFilters()

    /// Labels of the new classification head a reranker gets on an embedding model; 0 = the
    /// cross-encoder checkpoint's own head.
    public var numLabels = 0
    /// bce (pointwise) | listwise (softmax over the positive and its negatives)
    public var rerankerLoss = "listwise"

    public init() {}

    public var temperatureSchedule: TemperatureMode {
        switch temperatureMode {
        case "scheduled": return .scheduled(from: temperature, to: temperatureEnd)
        case "learnable": return .learnable(initial: temperature, min: temperatureMin, max: temperatureMax)
        case "adaptive": return .adaptive(base: adaptiveBase, step: adaptiveStep, floor: adaptiveFloor, terms: adaptiveTerms)
        default: return .fixed(temperature)
        }
    }

    /// Every option's own check, then the checks across options; each error names the option.
    public func validate() throws {
        func fail(_ s: String) -> FormatError { FormatError(s) }
        for option in TrainingOption.all {
            if let problem = option.problem(self) { throw fail("--\(option.key) \(problem)") }
        }
        if model.isEmpty { throw fail("--model is required") }
        if db == nil && dataset.isEmpty { throw fail("give --dataset FILE, or --db STORE with --db_dataset NAME") }
        if db != nil && !dataset.isEmpty {
            throw fail("give --dataset FILE or --db STORE with --db_dataset NAME, not both (--dataset is always a file)")
        }
        if db != nil && dbDataset == nil { throw fail("--db needs --db_dataset (the dataset's name in the store)") }
        if db == nil && dbDataset != nil { throw fail("--db_dataset needs --db (the store)") }
        try validateRefresh()
        if !matryoshkaWeights.isEmpty && matryoshkaWeights.count != matryoshkaDims.count {
            throw fail(matryoshkaDims.isEmpty ? "--matryoshka_weights needs --matryoshka_dims"
                : "--matryoshka_weights has \(matryoshkaWeights.count) weight(s) for \(matryoshkaDims.count) --matryoshka_dims")
        }
        if !fusionAdapters.isEmpty && fusionDev.count != fusionAdapters.count + 1 {
            throw fail("--fusion_dev needs \(fusionAdapters.count + 1) dev sets (this run's domain first, then one per --fusion_adapters entry), got \(fusionDev.count)")
        }
    }
}

extension TrainingOption {
    /// The options by topic, in the order `embedtune train --help` lists them.
    public static let sections: [(title: String, options: [TrainingOption])] = [
        ("Model and adapter", [
            option("model", \.model, "Model directory or .gguf to adapt."),
            option("task_type", \.taskType,
                   "embedding (contrastive training of an embedding model) | reranker (a cross-encoder: the model's classification head, or a new one on an embedding model).",
                   check: oneOf(["embedding", "reranker"])),
            option("train_type", \.trainType, "Training type; lora is the one there is.", check: oneOf(["lora"])),
            option("loss_type", \.lossType, "Loss; infonce is the one there is.", check: oneOf(["infonce"])),
            option("lora_r", \.loraR, "LoRA rank.", check: positive),
            option("lora_alpha", \.loraAlpha, "LoRA scaling numerator (scale α/r, or α/√r with use_rslora).", check: positive),
            option("lora_dropout", \.loraDropout, "Dropout on the LoRA input, in [0, 1).", check: fraction),
            option("target_modules", \.targetModules, "Module names (or dotted suffixes) to adapt; empty = every linear layer."),
            option("use_rslora", \.useRslora, "Scale by α/√r instead of α/r."),
            option("backbone_dropout", \.backboneDropout, "Also train with the backbone's own dropout (BERT hidden and attention dropout)."),
            option("base_precision", \.basePrecision,
                   "fp32 | bf16: how the frozen base weights are kept. bf16 halves their memory; the products, the adapter and the optimiser stay fp32 (needs the own AVX2/AVX-512 kernels).",
                   check: oneOf(["fp32", "bf16"])),
        ]),
        ("Data", [
            option("dataset", \.dataset, "Triples file: JSONL (ms-swift or sentence-transformers columns), CSV or TSV."),
            option("db", \.db, "Dataset store (SQLite) to train from instead of --dataset."),
            option("db_dataset", \.dbDataset, "With --db: the dataset's name in the store."),
            option("db_split", \.dbSplit, "With --db: the split to train on (its mined triples, else its pairs)."),
            option("split_dataset_ratio", \.splitDatasetRatio, "Share of the queries held out for evaluation, in [0, 1).", check: fraction),
            option("max_length", \.maxLength, "Maximum tokens per text (for a reranker, per query–document pair), special tokens included.", check: atLeast(4)),
            option("num_negatives", \.numNegatives, "Hard negatives per row (truncate, or pad by resampling); -1 = the dataset's maximum.",
                   aliases: ["hard_negatives"], check: atLeast(-1)),
            option("skip_bad_rows", \.skipBadRows, "Skip and count malformed rows instead of stopping."),
            option("query_prompt", \.queryPrompt, "Prefix for queries (default: the model's \"query\" prompt; none for a reranker)."),
            option("document_prompt", \.documentPrompt, "Prefix for documents (default: the model's \"document\" prompt; none for a reranker)."),
        ]),
        ("Optimisation", [
            option("output_dir", \.outputDir, "Directory for checkpoints, logs and the adapter."),
            option("learning_rate", \.learningRate, "Peak learning rate.", check: positive),
            option("num_train_epochs", \.numTrainEpochs, "Passes over the training rows.", check: positive),
            option("max_steps", \.maxSteps, "Optimiser steps; > 0 overrides num_train_epochs."),
            option("per_device_train_batch_size", \.perDeviceTrainBatchSize, "Triples per rank per micro-step.", check: positive),
            option("global_batch_size", \.globalBatchSize, "Triples per micro-step over all ranks; 0 = per_device_train_batch_size × ranks.",
                   check: atLeast(0)),
            option("gradient_accumulation_steps", \.gradientAccumulationSteps, "Micro-steps per optimiser step.", check: positive),
            option("warmup_ratio", \.warmupRatio, "Share of the steps spent warming up, in [0, 1).", check: fraction),
            option("warmup_steps", \.warmupSteps, "Warm-up steps; > 0 overrides warmup_ratio.", check: atLeast(0)),
            option("lr_scheduler_type", \.lrSchedulerType, "Decay after warm-up: cosine | linear | constant.",
                   check: oneOf(["cosine", "linear", "constant"])),
            option("weight_decay", \.weightDecay, "AdamW decoupled weight decay.", check: atLeast(0)),
            option("max_grad_norm", \.maxGradNorm, "Clip the global gradient norm to this; 0 = no clipping.", check: atLeast(0)),
            option("adam_beta1", \.adamBeta1, "AdamW β1.", check: fraction),
            option("adam_beta2", \.adamBeta2, "AdamW β2.", check: fraction),
            option("adam_epsilon", \.adamEpsilon, "AdamW ε.", check: positive),
            option("eval_steps", \.evalSteps, "Evaluate the held-out split before training, every N steps and at the end; 0 = never.",
                   check: atLeast(0)),
            option("save_steps", \.saveSteps, "Write a checkpoint every N steps; 0 = none.", check: atLeast(0)),
            option("save_total_limit", \.saveTotalLimit, "Checkpoints kept (the newest); 0 = all."),
            option("dataloader_drop_last", \.dataloaderDropLast, "Drop the last incomplete batch of an epoch."),
            option("batch_sampler", \.batchSampler,
                   "batch_sampler: rows in shuffled order; no_duplicates: no text (query, positive or negative) twice in a global batch, a clashing row waits for a later one (sentence-transformers' NoDuplicatesBatchSampler).",
                   check: oneOf(["batch_sampler", "no_duplicates"])),
            option("no_duplicates_resample_passes", \.noDuplicatesResamplePasses,
                   "no_duplicates: passes over fresh shuffles after the first while an epoch is short of batches (sentence-transformers' _MAX_RESAMPLE_PASSES, 2); an epoch still short is shorter, with a warning.",
                   check: atLeast(0)),
            option("seed", \.seed, "Seed of the adapter initialisation, data order, dropout and held-out split."),
        ]),
        ("InfoNCE loss (also accepted under an [infonce] table)", [
            option("use_batch", \.infonce.useBatch, "Every other row's positive and negatives are candidates too.", table: "infonce"),
            option("mask_fake_negative", \.infonce.maskFakeNegative,
                   "Mask candidates scoring above the positive + fake_negative_margin.", table: "infonce"),
            option("fake_negative_margin", \.infonce.fakeNegativeMargin, "Cosine margin of mask_fake_negative.", table: "infonce"),
            option("include_qq", \.infonce.includeQQ, "Add query–query similarities to the denominator.", table: "infonce"),
            option("include_dd", \.infonce.includeDD, "Add positive–document similarities to the denominator.", table: "infonce"),
            option("mask_duplicates", \.infonce.maskDuplicates, "Mask candidates whose text equals the row's positive.", table: "infonce"),
        ]),
        ("Temperature", [
            option("temperature_mode", \.temperatureMode, "fixed | scheduled | learnable | adaptive",
                   check: oneOf(["fixed", "scheduled", "learnable", "adaptive"])),
            option("temperature", \.temperature, "τ (fixed), its start (scheduled) or initial value (learnable).", check: positive),
            option("temperature_end", \.temperatureEnd, "scheduled: τ at the end (cosine from temperature).", check: positive),
            option("temperature_min", \.temperatureMin, "learnable: lower clamp of τ.", check: positive),
            option("temperature_max", \.temperatureMax, "learnable: upper clamp of τ.", check: positive),
            option("adaptive_base", \.adaptiveBase, "adaptive: τ of a query without domain terms.", check: positive),
            option("adaptive_step", \.adaptiveStep, "adaptive: τ taken off per domain term in the query."),
            option("adaptive_floor", \.adaptiveFloor, "adaptive: lowest τ.", check: positive),
            option("adaptive_terms", \.adaptiveTerms, "adaptive: the domain terms counted in each query."),
        ]),
        ("Matryoshka (sentence-transformers' MatryoshkaLoss around the InfoNCE loss)", [
            option("matryoshka_dims", \.matryoshkaDims,
                   "Also take the loss on each embedding's first d components, renormalised, for each d listed (e.g. 384,256,128,64); empty = off.",
                   check: matryoshkaDimensions),
            option("matryoshka_weights", \.matryoshkaWeights, "Weight of each matryoshka_dims term, in the same order; empty = all 1.",
                   check: { $0.allSatisfy { $0 > 0 && $0.isFinite } ? nil : "positive numbers (got \($0.map { "\($0)" }.joined(separator: ",")))" }),
        ]),
        ("Memory and ranks", [
            option("gradcache_mini_batch", \.gradCacheMiniBatch, "GradCache chunk in texts; 0 = off.", check: atLeast(0)),
            option("gather_across_ranks", \.gatherAcrossRanks, "Gather embeddings so every query sees every rank's documents."),
            option("balance_ranks", \.balanceRanks, "Deal each global batch's rows to the ranks by estimated tokens (needs the gather)."),
            option("threads", \.threads, "Compute threads per process; 0 = cores ÷ local ranks.", check: atLeast(0)),
            option("collective_timeout", \.collectiveTimeout,
                   "Seconds one collective may wait for the other ranks before the job ends, naming the rank and step; 0 = forever.",
                   check: atLeast(0)),
        ]),
        ("Fusion", [
            option("fusion_adapters", \.fusionAdapters,
                   "Other domains' adapters: rank 0 fuses them with this run's adapter at the end (merge --search)."),
            option("fusion_dev", \.fusionDev, "Dev sets (BEIR directories): this run's domain first, then one per fusion adapter."),
            option("preserve_data", \.preserveData,
                   "Other domains' pairs/triplets file: keep their query and positive embeddings near the base model's."),
            option("preserve_weight", \.preserveWeight, "Weight of the mean squared embedding drift on preserve_data texts.",
                   check: atLeast(0)),
            option("preserve_batch", \.preserveBatch, "preserve_data texts per rank per step.", check: positive),
        ]),
        ("Reranker (task_type reranker)", [
            option("num_labels", \.numLabels,
                   "Labels of a new classification head on an embedding model (1: one logit, scored by sigmoid); 0 = the cross-encoder's own head.",
                   check: atLeast(0)),
            option("reranker_loss", \.rerankerLoss,
                   "bce: binary cross-entropy on every (query, positive) = 1 and (query, negative) = 0 pair; listwise: softmax cross-entropy over each query's positive and its negatives.",
                   check: oneOf(["bce", "listwise"])),
        ]),
        ("Refreshed negatives (the filters also accepted under a [mining] table; as `embedtune mine` takes them)", [
            option("refresh_negatives_steps", \.refreshNegativesSteps,
                   "Every N steps (from the first) re-mine each row's num_negatives negatives with the current adapter; 0 = never.",
                   check: atLeast(0)),
            option("range_min", \.mining.rangeMin, "Skip this many of the most similar candidates.", table: "mining", check: atLeast(0)),
            option("range_max", \.mining.rangeMax, "Consider only this many most similar candidates (default as mine).", table: "mining"),
            option("max_score", \.mining.maxScore, "Drop candidates more similar than this.", table: "mining"),
            option("min_score", \.mining.minScore, "Drop candidates less similar than this.", table: "mining"),
            option("absolute_margin", \.mining.absoluteMargin, "Keep a candidate only if it scores at least this much below the positive.",
                   table: "mining"),
            option("relative_margin", \.mining.relativeMargin, "Keep a candidate only if it scores at most (1 − this) × the positive's score.",
                   table: "mining"),
            option("sampling_strategy", \.mining.samplingStrategy, "top | random", table: "mining", check: oneOf(["top", "random"])),
            option("reranker", \.mining.reranker, "A reranker model directory whose judgement filters the candidates.", table: "mining"),
            option("reranker_adapter", \.mining.rerankerAdapter, "A PEFT adapter applied to the reranker.", table: "mining"),
            option("max_reranker_score", \.mining.maxRerankerScore, "Drop candidates the reranker scores above this.", table: "mining"),
            option("reranker_relative_margin", \.mining.rerankerRelativeMargin,
                   "Drop candidates the reranker scores above (1 − this) × the positive's reranker score.", table: "mining"),
        ]),
    ]
}

/// The filters `refresh_negatives_steps` mines with: `embedtune mine`'s, under the same names.
public struct NegativeMiningFilters: Equatable, Sendable {
    public var rangeMin = 0
    public var rangeMax: Int?
    public var maxScore: Float?
    public var minScore: Float?
    public var absoluteMargin: Float?
    public var relativeMargin: Float?
    public var samplingStrategy = "top"
    public var reranker: String?
    public var rerankerAdapter: String?
    public var maxRerankerScore: Float?
    public var rerankerRelativeMargin: Float?
    public init() {}
}

extension TrainingOptions {
    /// Options of contrastive embedding training that a reranker run does not use.
    static let embeddingOnly: Set<String> = [
        "loss_type", "temperature_mode", "temperature", "temperature_end", "temperature_min", "temperature_max", "adaptive_base",
        "adaptive_step", "adaptive_floor", "adaptive_terms", "gradcache_mini_batch", "gather_across_ranks", "balance_ranks",
        "fusion_adapters", "fusion_dev", "preserve_data", "preserve_weight", "preserve_batch", "refresh_negatives_steps",
    ]

    /// Each task's options only with that task: a setting the run would ignore is an error naming
    /// it. The trainers check it (a config may hold both tasks' settings, for `--print_config`).
    public func validateTask() throws {
        let defaults = TrainingOptions()
        let set = TrainingOption.all.filter { $0.value(self) != $0.value(defaults) }
        if taskType == "reranker" {
            if let o = set.first(where: { Self.embeddingOnly.contains($0.key) || $0.table == "infonce" || $0.table == "mining" }) {
                throw FormatError("--\(o.key) is an option of embedding training: a reranker (--task_type reranker) does not use it")
            }
            if numNegatives == 0 {
                throw FormatError("--task_type reranker trains each query's positive against its negatives: --num_negatives must be at least 1")
            }
        } else if let o = set.first(where: { ["num_labels", "reranker_loss"].contains($0.key) }) {
            throw FormatError("--\(o.key) is an option of reranker training: it needs --task_type reranker")
        }
    }

    /// Mining filters only mean something when negatives are refreshed, and a reranker filter needs a reranker.
    func validateRefresh() throws {
        if refreshNegativesSteps == 0 {
            if let set = TrainingOption.all.first(where: { $0.table == "mining" && $0.value(self) != $0.value(TrainingOptions()) }) {
                throw FormatError("--\(set.key) is a filter of refreshed negatives: it needs --refresh_negatives_steps N")
            }
            return
        }
        if numNegatives < 1 {
            throw FormatError("--refresh_negatives_steps needs --num_negatives N (N ≥ 1): how many negatives each row is mined")
        }
        if mining.reranker == nil && (mining.maxRerankerScore != nil || mining.rerankerRelativeMargin != nil || mining.rerankerAdapter != nil) {
            throw FormatError("--max_reranker_score, --reranker_relative_margin and --reranker_adapter need --reranker")
        }
        if mining.reranker != nil && mining.maxRerankerScore == nil && mining.rerankerRelativeMargin == nil {
            throw FormatError("--reranker filters with --max_reranker_score or --reranker_relative_margin: give one")
        }
    }
}
