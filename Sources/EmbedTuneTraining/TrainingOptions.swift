import EmbedTuneFormats
import Foundation

/// Every knob of a training run, named like ms-swift's / HF Trainer's flags (snake_case in TOML
/// and on the command line).
public struct TrainingOptions: Codable, Equatable, Sendable {
    public var model = ""
    public var dataset = ""
    public var outputDir = "output"
    public var loraR = 8
    public var loraAlpha = 32.0
    public var loraDropout = 0.0
    /// Empty = every linear layer of the model.
    public var targetModules: [String] = []
    public var useRslora = false
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
    public var splitDatasetRatio: Float = 0
    public var dataloaderDropLast = true
    public var seed: UInt64 = 42
    public var maxLength = 256
    /// Fixed hard-negative count per row (pad by resampling, truncate); -1 = the dataset's maximum.
    public var hardNegatives = -1
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
    /// GradCache mini-batch in texts; 0 = one pass with activations for the whole local batch.
    public var gradCacheMiniBatch = 0
    public var skipBadRows = false
    /// Query/document prefixes; nil = the model's config_sentence_transformers.json prompts.
    public var queryPrompt: String?
    public var documentPrompt: String?
    /// Gather embeddings across ranks so every query sees every rank's documents.
    public var gatherAcrossRanks = true
    /// With the gather on, deal each global micro-batch's rows out to the ranks by estimated
    /// tokens, so no rank waits for a longer share (`RankBalance`); off: contiguous slices.
    public var balanceRanks = true
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
    /// Train with the backbone's own dropout too (BERT hidden/attention dropout, as PyTorch's train mode).
    public var backboneDropout = false
    public var threads = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case model, dataset, seed, infonce, temperature, threads
        case outputDir = "output_dir", loraR = "lora_r", loraAlpha = "lora_alpha", loraDropout = "lora_dropout"
        case targetModules = "target_modules", useRslora = "use_rslora", learningRate = "learning_rate"
        case numTrainEpochs = "num_train_epochs", maxSteps = "max_steps"
        case perDeviceTrainBatchSize = "per_device_train_batch_size", globalBatchSize = "global_batch_size"
        case gradientAccumulationSteps = "gradient_accumulation_steps", warmupRatio = "warmup_ratio"
        case warmupSteps = "warmup_steps", lrSchedulerType = "lr_scheduler_type", weightDecay = "weight_decay"
        case maxGradNorm = "max_grad_norm", adamBeta1 = "adam_beta1", adamBeta2 = "adam_beta2", adamEpsilon = "adam_epsilon"
        case evalSteps = "eval_steps", saveSteps = "save_steps", saveTotalLimit = "save_total_limit"
        case splitDatasetRatio = "split_dataset_ratio", dataloaderDropLast = "dataloader_drop_last"
        case maxLength = "max_length", hardNegatives = "hard_negatives", temperatureMode = "temperature_mode"
        case temperatureEnd = "temperature_end", temperatureMin = "temperature_min", temperatureMax = "temperature_max"
        case adaptiveBase = "adaptive_base", adaptiveStep = "adaptive_step", adaptiveFloor = "adaptive_floor"
        case adaptiveTerms = "adaptive_terms", gradCacheMiniBatch = "gradcache_mini_batch", skipBadRows = "skip_bad_rows"
        case queryPrompt = "query_prompt", documentPrompt = "document_prompt", gatherAcrossRanks = "gather_across_ranks", balanceRanks = "balance_ranks"
        case fusionAdapters = "fusion_adapters", fusionDev = "fusion_dev"
        case preserveData = "preserve_data", preserveWeight = "preserve_weight", preserveBatch = "preserve_batch", backboneDropout = "backbone_dropout"
    }

    public var temperatureSchedule: TemperatureMode {
        switch temperatureMode {
        case "scheduled": return .scheduled(from: temperature, to: temperatureEnd)
        case "learnable": return .learnable(initial: temperature, min: temperatureMin, max: temperatureMax)
        case "adaptive": return .adaptive(base: adaptiveBase, step: adaptiveStep, floor: adaptiveFloor, terms: adaptiveTerms)
        default: return .fixed(temperature)
        }
    }

    /// Cross-field checks, each naming the option.
    public func validate() throws {
        func fail(_ s: String) -> FormatError { FormatError(file: "options", s) }
        if model.isEmpty { throw fail("--model is required") }
        if dataset.isEmpty { throw fail("--dataset is required") }
        if loraR <= 0 { throw fail("--lora_r must be positive") }
        if !(0..<1).contains(loraDropout) { throw fail("--lora_dropout must be in [0, 1)") }
        if perDeviceTrainBatchSize <= 0 { throw fail("--per_device_train_batch_size must be positive") }
        if gradientAccumulationSteps <= 0 { throw fail("--gradient_accumulation_steps must be positive") }
        if !["fixed", "scheduled", "learnable", "adaptive"].contains(temperatureMode) {
            throw fail("--temperature_mode must be fixed, scheduled, learnable or adaptive (got \(temperatureMode))")
        }
        if temperature <= 0 { throw fail("--temperature must be positive") }
        if LearningRateSchedule.Decay(rawValue: lrSchedulerType) == nil {
            throw fail("--lr_scheduler_type must be cosine, linear or constant (got \(lrSchedulerType))")
        }
        if !fusionAdapters.isEmpty && fusionDev.count != fusionAdapters.count + 1 {
            throw fail("--fusion_dev needs \(fusionAdapters.count + 1) dev sets (this run's domain first, then one per --fusion_adapters entry), got \(fusionDev.count)")
        }
        if preserveData != nil && !(preserveWeight >= 0) { throw fail("--preserve_weight must be ≥ 0 (got \(preserveWeight))") }
        if preserveData != nil && preserveBatch <= 0 { throw fail("--preserve_batch must be positive (got \(preserveBatch))") }
        if !(0..<1).contains(splitDatasetRatio) { throw fail("--split_dataset_ratio must be in [0, 1)") }
        if maxLength < 4 { throw fail("--max_length must be at least 4") }
    }
}
