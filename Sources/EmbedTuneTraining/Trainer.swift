import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneRetrieval
import Foundation

/// Data-parallel LoRA contrastive training, assembled from its parts: the `DataPlan` (rows and
/// their order), the `EmbeddingPass` (the model with its adapter), the loss terms (InfoNCE or its
/// GradCache form, and preservation when asked), the `HeldOutEvaluator`, and the checkpointable
/// `TrainerState`. Every rank runs the same loop (TrainerLoop.swift); one all-reduce of the flat
/// LoRA gradient per optimiser step makes the update identical to a single process on the same
/// global batch.
public final class Trainer: TrainingRun {
    public let options: TrainingOptions
    public let communicator: Communicator
    public let embedder: Embedder
    public let plan: DataPlan
    public let state: TrainerState
    public let pass: EmbeddingPass
    public let contrastive: InfoNCELoss
    public let preservation: PreservationLoss?
    /// The objective's terms, summed in this order.
    public let losses: [TrainingLoss]
    public let evaluator: HeldOutEvaluator
    /// Re-mines the rows' negatives as the adapter moves (`refresh_negatives_steps` > 0).
    let negativeRefresh: NegativeRefresh?
    /// The frozen linears' bfloat16 copies while this trainer lives (`--base_precision bf16`).
    public let bf16Base: BF16Base.Registration?

    /// `rows`: training triples given directly instead of read from `options.dataset` or the store.
    public init(options: TrainingOptions, communicator: Communicator = SingleProcessCommunicator(), rows: [Triplet]? = nil) throws {
        try options.validate()
        try options.validateTask()
        guard options.taskType == "embedding" else { throw FormatError("--task_type \(options.taskType) is not an embedding run (RerankerTrainer trains rerankers)") }
        self.options = options
        self.communicator = communicator
        let dir = try ModelDirectory(URL(fileURLWithPath: options.model))
        embedder = try Embedder(directory: dir)
        guard let model = embedder.backbone as? Backbone & TrainableBackbone else {
            throw FormatError(file: options.model, "this architecture cannot be trained")
        }
        if let wide = options.matryoshkaDims.first(where: { $0 > model.hiddenSize }) {
            throw FormatError(file: options.model, "--matryoshka_dims \(wide) exceeds the model's embedding dimension \(model.hiddenSize)")
        }
        bf16Base = try Self.keepBaseInBF16(model, options: options)
        let targets = options.targetModules.isEmpty ? model.defaultTargetModules : options.targetModules
        let adapter = try LoRAAdapter(config: LoRAConfig(r: options.loraR, alpha: options.loraAlpha, dropout: options.loraDropout,
                                                         targetModules: targets, useRSLoRA: options.useRslora),
                                      linears: model.linearLayers)
        var rng = SplitMix64(seed: options.seed)
        adapter.initialize(using: &rng)
        state = TrainerState(adapter: adapter,
                             optimizer: AdamW(count: adapter.parameterCount, beta1: options.adamBeta1, beta2: options.adamBeta2,
                                              epsilon: options.adamEpsilon, weightDecay: options.weightDecay),
                             logTau: logf(options.temperature))
        let source = try rows.map { (rows: $0, skipped: [FormatError](), source: "the rows given") } ?? DataPlan.rows(options)
        plan = try DataPlan(rows: source.rows, skipped: source.skipped, source: source.source, options: options, ranks: communicator.size,
                            queryPrefix: options.queryPrompt ?? dir.queryPrompt, documentPrefix: options.documentPrompt ?? dir.documentPrompt)
        let pass = EmbeddingPass(model: model, adapter: adapter, pooling: dir.pooling, backboneDropout: options.backboneDropout)
        let tokenizer = embedder.tokenizer, plan = self.plan, state = self.state
        self.pass = pass
        contrastive = options.gradCacheMiniBatch > 0
            ? CachedInfoNCELoss(plan: plan, pass: pass, state: state, communicator: communicator, tokenizer: tokenizer,
                                miniBatch: options.gradCacheMiniBatch)
            : InfoNCELoss(plan: plan, pass: pass, state: state, communicator: communicator, tokenizer: tokenizer)
        preservation = try options.preserveData.map {
            try PreservationLoss(path: $0, plan: plan, pass: pass, communicator: communicator, tokenizer: tokenizer)
        }
        losses = [contrastive] + (preservation.map { [$0] } ?? [])
        evaluator = HeldOutEvaluator(loss: contrastive, communicator: communicator)
        negativeRefresh = options.refreshNegativesSteps > 0
            ? NegativeRefresh(plan: plan, pass: pass, tokenizer: tokenizer, communicator: communicator,
                              reranker: try options.mining.reranker.map { path in
                                  var o = RerankerOptions()
                                  o.adapter = options.mining.rerankerAdapter.map { URL(fileURLWithPath: $0) }
                                  return try loadReranker(ModelDirectory(URL(fileURLWithPath: path)), options: o)
                              })
            : nil
    }

    public var model: Backbone & TrainableBackbone { pass.model }

    /// With `--base_precision bf16`: every frozen linear weight registered in `BF16Base` and its
    /// float32 pages given back. Only the own kernels read bfloat16 weights.
    static func keepBaseInBF16(_ model: TrainableBackbone, options: TrainingOptions) throws -> BF16Base.Registration? {
        guard options.basePrecision == "bf16" else { return nil }
        guard GEMMKernel.current.isOwn else {
            throw FormatError("--base_precision bf16 needs EmbedTune's own kernels (a CPU with AVX2 and FMA, EMBEDTUNE_GEMM not openblas); this process runs \(GEMMKernel.current.rawValue)")
        }
        let weights = try model.linearLayers.map { linear in
            let w = try model.linearWeight(linear.module)
            return (pointer: UnsafePointer(w.pointer), count: w.out * w.in)
        }
        return BF16Base.shared.register(weights, releaseFloat32: true)
    }
    public var adapter: LoRAAdapter { state.adapter }
    public var optimizer: AdamW { state.optimizer }
    public var step: Int { state.step }
    public var train: [Triplet] { plan.train }
    public var holdout: [Triplet] { plan.holdout }
    public var skipped: [FormatError] { plan.skipped }
    public var negatives: Int { plan.negatives }
    public var globalBatch: Int { plan.globalBatch }
    public var totalSteps: Int { plan.totalSteps }

    /// Runs (or resumes) training to the end; returns the final adapter directory.
    @discardableResult
    public func run(resume: String? = nil, stopAfter: Int? = nil, events: (TrainingEvent) -> Void = { _ in }) throws -> URL {
        try runLoop(resume: resume, stopAfter: stopAfter, events: events)
    }

    /// Accumulates the LoRA gradient of optimiser step `step` over every loss term (not yet
    /// all-reduced). Returns this rank's share of the loss, dL/dlogτ and tokens, the last
    /// micro-batch's mean τ, and the triples of the step.
    public func accumulateGradients(step: Int) throws -> (loss: Double, dLogTau: Double, tokens: Int, tau: Float, examples: Int) {
        try accumulateTerms(step: step)
    }

    /// With gathering every rank computes the same global InfoNCE loss; without, each its own share.
    var lossReplicas: Int { options.gatherAcrossRanks ? communicator.size : 1 }

    var startSummary: String {
        "\(train.count) training / \(holdout.count) held-out rows, \(totalSteps) steps of \(globalBatch * options.gradientAccumulationSteps) triples, \(negatives) hard negatives per row, \(adapter.parameterCount) LoRA parameters, \(communicator.size) rank(s)"
            + (preservation.map { ", preserving \($0.anchors.count) texts per rank (weight \(options.preserveWeight), \(options.preserveBatch) per step)" } ?? "")
    }

    var cardText: TrainingCardText {
        var text = TrainingCardText(
            objective: "with InfoNCE on (query, positive, hard negatives) triples",
            usage: "Load it with `PeftModel.from_pretrained` on the base model, or `embedtune embed --model BASE --adapter DIR`.",
            tags: ["infonce", "peft"],
            metricsNote: "Held-out retrieval: each held-out query's positive among all held-out documents (cosine), and the held-out InfoNCE loss.")
        if let m = options.matryoshka {
            let dims = m.dims.map(String.init).joined(separator: ", ")
            text.usage += " The loss is Matryoshka (sentence-transformers' MatryoshkaLoss): InfoNCE on the first \(dims) "
                + "components of each embedding, renormalised, summed with weights, so `embedtune embed --dim D` with D one "
                + "of them keeps its quality."
            text.tags.append("matryoshka")
            text.metricsNote += " At Nd: the embeddings cut to their first N components and renormalised; the loss is the Matryoshka sum."
            text.data.append(("Matryoshka dimensions (weight)",
                              zip(m.dims, m.weights).map { "\($0) (\($1))" }.joined(separator: ", ") + " of \(pass.width)"))
        }
        return text
    }

    var startWarnings: [String] {
        guard let dims = options.matryoshka?.dims, !dims.contains(pass.width) else { return [] }
        return ["--matryoshka_dims \(dims.map(String.init).joined(separator: ",")) leaves out the model's full dimension \(pass.width): the untruncated embedding is not trained as such"]
    }

    /// The preservation term of step `step` alone (0 without `preserve_data`); its gradient is
    /// added to the adapter's.
    public func accumulatePreservation(step: Int) throws -> Double { try preservation?.accumulate(step: step).loss ?? 0 }

    /// Held-out loss, margin and retrieval of `rows` (default: the run's held-out share).
    public func evaluate(on rows: [Triplet]? = nil) throws -> EvalLog { try evaluator.evaluate(rows ?? holdout, step: step) }
}
