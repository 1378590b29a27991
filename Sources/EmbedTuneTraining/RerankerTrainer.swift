import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneRetrieval
import Foundation

/// Data-parallel LoRA training of a cross-encoder (`--task_type reranker`): a BERT / XLM-R
/// `*ForSequenceClassification` checkpoint whose head trains further, or an embedding model with a
/// new classification head. It trains on the embedder's rows — each query's positive against its K
/// negatives, scored as (query, document) pairs — under a `RerankerLoss`. The head's tensors are
/// trained whole (PEFT's modules_to_save, as task_type SEQ_CLS does) behind the LoRA pairs in the
/// adapter's one flat buffer, so the loop, the all-reduce, AdamW and checkpoints are the
/// embedder's (`TrainingRun`), and the output is a PEFT SEQ_CLS adapter.
public final class RerankerTrainer: TrainingRun {
    public let options: TrainingOptions
    public let communicator: Communicator
    public let encoder: CrossEncoder
    public let plan: DataPlan
    public let state: TrainerState
    public let term: RerankerTerm
    let evaluator: RerankerEvaluator

    /// `rows`: training triples given directly instead of read from `options.dataset` or the store.
    public init(options: TrainingOptions, communicator: Communicator = SingleProcessCommunicator(), rows: [Triplet]? = nil) throws {
        try options.validate()
        try options.validateTask()
        guard options.taskType == "reranker" else { throw FormatError("--task_type \(options.taskType) is not a reranker run") }
        guard options.basePrecision == "fp32" else { throw FormatError("--base_precision \(options.basePrecision) is for embedding runs; a reranker trains on an fp32 base") }
        self.options = options
        self.communicator = communicator
        let dir = try ModelDirectory(URL(fileURLWithPath: options.model))
        let (encoder, task) = try Self.crossEncoder(dir, options: options)
        self.encoder = encoder
        let model = encoder.model
        encoder.maxLength = min(options.maxLength, model.maxPositions)
        let targets = options.targetModules.isEmpty ? model.defaultTargetModules : options.targetModules
        let adapter = try LoRAAdapter(config: LoRAConfig(r: options.loraR, alpha: options.loraAlpha, dropout: options.loraDropout,
                                                         targetModules: targets, useRSLoRA: options.useRslora),
                                      linears: model.linearLayers + encoder.baseHead.linearLayers,
                                      whole: encoder.baseHead.tensors(in: task.modulesToSave), task: task)
        var rng = SplitMix64(seed: options.seed)
        adapter.initialize(using: &rng)
        encoder.attachForTraining(adapter)
        state = TrainerState(adapter: adapter,
                             optimizer: AdamW(count: adapter.parameterCount, beta1: options.adamBeta1, beta2: options.adamBeta2,
                                              epsilon: options.adamEpsilon, weightDecay: options.weightDecay),
                             logTau: 0)
        let source = try rows.map { (rows: $0, skipped: [FormatError](), source: "the rows given") } ?? DataPlan.rows(options)
        // Cross-encoders read the pair as it is: no prompts unless asked for.
        plan = try DataPlan(rows: source.rows, skipped: source.skipped, source: source.source, options: options, ranks: communicator.size,
                            queryPrefix: options.queryPrompt ?? "", documentPrefix: options.documentPrompt ?? "")
        guard plan.negatives > 0 else {
            throw FormatError(file: source.source, "the rows carry no negatives: a reranker trains each query's positive against its negatives (mine them with `embedtune mine`)")
        }
        term = RerankerTerm(plan: plan, encoder: encoder, objective: options.rerankerObjective, communicator: communicator)
        evaluator = RerankerEvaluator(plan: plan, encoder: encoder, objective: options.rerankerObjective, communicator: communicator)
    }

    /// The cross-encoder a run trains, and PEFT's layout of its adapter: a `*ForSequenceClassification`
    /// checkpoint with its own head, or an embedding model with a new head of `num_labels` labels
    /// (BERT's pooler stored whole too when the checkpoint has none).
    static func crossEncoder(_ dir: ModelDirectory, options: TrainingOptions) throws -> (CrossEncoder, PEFTTask) {
        let configURL = dir.url.appendingPathComponent("config.json")
        let architecture = dir.config["architectures"]?.array?.first?.string ?? dir.modelType
        var modulesToSave = [SequenceClassificationHead.savedModule]
        let encoder: CrossEncoder
        if CrossEncoder.architectures[architecture] != nil {
            encoder = try CrossEncoder(directory: dir)
            if options.numLabels != 0 && options.numLabels != encoder.labels.count {
                throw FormatError(url: configURL, item: "id2label",
                                  "the checkpoint's head has \(encoder.labels.count) label(s), not --num_labels \(options.numLabels) (leave it at 0 to train this head)")
            }
        } else if dir.gguf == nil, let kind = CrossEncoder.encoderKinds[dir.modelType] {
            guard options.numLabels > 0 else {
                throw FormatError(url: configURL, item: "architectures",
                                  "\(architecture) is an embedding model without a classification head: give --num_labels 1 to train a new head on it")
            }
            let source = try dir.tensorSource()
            let model = try BertModel(directory: dir, source: source), prefix = BertModel.checkpointPrefix(source)
            let head = try SequenceClassificationHead(newFor: kind, hiddenSize: model.hiddenSize, labels: options.numLabels,
                                                      initializerRange: Float(dir.config["initializer_range"]?.double ?? 0.02),
                                                      seed: mix64(options.seed ^ 0x4845_4144), source: source, encoderPrefix: prefix)
            if kind == .bert && !SequenceClassificationHead.checkpointHasPooler(kind: kind, source: source, encoderPrefix: prefix) {
                modulesToSave.append(SequenceClassificationHead.poolerModule)
            }
            encoder = try CrossEncoder(tokenizer: dir.loadTokenizer(), model: model, head: head,
                                       labels: (0..<options.numLabels).map { "LABEL_\($0)" }, activation: options.numLabels == 1 ? .sigmoid : .identity)
        } else {
            throw FormatError(url: configURL, item: "architectures",
                              "\"\(architecture)\" cannot be trained as a reranker: expected a BERT / XLM-R *ForSequenceClassification cross-encoder, or a BERT / XLM-R embedding model with --num_labels 1")
        }
        guard encoder.labels.count == 1 else {
            throw FormatError(url: configURL, item: "num_labels",
                              "a reranker trains one logit per pair (its score is the sigmoid); this head has \(encoder.labels.count) labels")
        }
        let prefix = encoder.baseHead.kind == .bert ? "bert." : "roberta."
        return (encoder, PEFTTask(taskType: "SEQ_CLS", backbonePrefix: prefix, modulesToSave: modulesToSave,
                                  topLevel: [SequenceClassificationHead.savedModule]))
    }

    public var adapter: LoRAAdapter { state.adapter }
    public var step: Int { state.step }
    public var totalSteps: Int { plan.totalSteps }
    var losses: [TrainingLoss] { [term] }
    var negativeRefresh: NegativeRefresh? { nil }
    /// Each rank's loss share covers its own groups.
    var lossReplicas: Int { 1 }

    /// Runs (or resumes) training to the end; returns the final adapter directory.
    @discardableResult
    public func run(resume: String? = nil, stopAfter: Int? = nil, events: (TrainingEvent) -> Void = { _ in }) throws -> URL {
        try runLoop(resume: resume, stopAfter: stopAfter, events: events)
    }

    /// The adapter's gradient of optimiser step `step` on this rank (LoRA and the head's whole
    /// tensors, not yet all-reduced) and this rank's share of the loss.
    public func accumulateGradients(step: Int) throws -> (loss: Double, tokens: Int) {
        let share = try accumulateTerms(step: step)
        return (share.loss, share.tokens)
    }

    /// Held-out loss, margin and reranking of `rows` (default: the run's held-out share).
    public func evaluate(on rows: [Triplet]? = nil) throws -> EvalLog { try evaluator.evaluate(rows ?? plan.holdout, step: step) }

    var startSummary: String {
        let head = adapter.wholeTensors.map(\.name).joined(separator: ", ")
        return "reranker \(options.rerankerLoss): \(plan.train.count) training / \(plan.holdout.count) held-out rows, \(totalSteps) steps of \(plan.globalBatch * options.gradientAccumulationSteps) queries × (1 positive + \(plan.negatives) negatives), \(adapter.parameterCount) parameters (LoRA + \(head)), \(communicator.size) rank(s)"
    }

    var cardText: TrainingCardText {
        TrainingCardText(
            objective: "as a cross-encoder (reranker) with the \(options.rerankerLoss == "bce" ? "binary cross-entropy" : "listwise softmax cross-entropy") loss on each query's positive and its hard negatives, the classification head trained whole (modules_to_save)",
            usage: "Load it with `PeftModel.from_pretrained` on `AutoModelForSequenceClassification.from_pretrained(BASE, num_labels=1)`, or `embedtune rerank --model BASE --adapter DIR` / `embedtune eval --reranker BASE --reranker_adapter DIR`.",
            tags: ["cross-encoder", "reranker", options.rerankerLoss == "bce" ? "bce" : "listwise", "peft"],
            metricsNote: "Held-out reranking: each held-out query's positive among its own negatives, ordered by the cross-encoder's score, and the held-out \(options.rerankerLoss) loss; margin = positive logit − hardest negative logit.",
            pipelineTag: "text-ranking")
    }
}

/// The reranker objective as a training term: rank r scores its contiguous share of each global
/// micro-batch's groups — a query with its positive and K negatives, as (query, document) pairs —
/// and backpropagates the `RerankerLoss` gradient divided by the global count, so the all-reduced
/// gradient is a single process's on the whole batch. Dropout masks derive from each pair's place
/// in the global batch, whichever rank scores it.
public final class RerankerTerm: TrainingLoss {
    let plan: DataPlan
    let encoder: CrossEncoder
    let objective: RerankerLoss
    let communicator: Communicator
    /// Pairs per forward pass (whole groups): the loss is a sum over groups, so passes of fewer
    /// groups give the same gradient and bound the activations kept for backward.
    static let pairsPerPass = 64

    init(plan: DataPlan, encoder: CrossEncoder, objective: RerankerLoss, communicator: Communicator) {
        self.plan = plan
        self.encoder = encoder
        self.objective = objective
        self.communicator = communicator
    }

    public func accumulate(step: Int) throws -> LossShare {
        let options = plan.options, accum = options.gradientAccumulationSteps, width = 1 + plan.negatives
        let groupsPerPass = max(1, Self.pairsPerPass / width)
        var share = LossShare()
        for a in 0..<accum {
            let micro = step * accum + a, epoch = plan.locate(micro).epoch
            let global = plan.microBatch(micro), mine = communicator.shard(of: global.count)
            let scale = 1 / Float(accum * objective.count(groups: global.count, width: width))
            for start in stride(from: mine.lowerBound, to: mine.upperBound, by: groupsPerPass) {
                let positions = start..<min(start + groupsPerPass, mine.upperBound)
                var pairs = [(ids: [Int32], typeIDs: [Int32])](), seeds = [UInt64]()
                for p in positions {
                    let index = global[p]
                    for (j, pair) in plan.pairs(plan.train[index], index: index, epoch: epoch).enumerated() {
                        pairs.append(try encoder.tokens(query: pair.query, document: pair.document))
                        seeds.append(mix64(options.seed ^ mix64(UInt64(micro) &* 0x1000_0000 &+ UInt64(p * width + j))))
                    }
                }
                // (G·W) logits → Σ loss and its gradient → backward through the head and the encoder.
                let logits = try encoder.trainingLogits(pairs, seeds: seeds, backboneDropout: options.backboneDropout)
                let (sum, dLogits) = objective.sumAndGradient(logits: logits, groups: positions.count, width: width)
                try encoder.backward(dLogits: dLogits.map { $0 * scale })
                share.loss += sum * Double(scale)
                share.tokens += pairs.reduce(0) { $0 + $1.ids.count }
            }
        }
        return share
    }
}

/// The reranker's held-out evaluation: each held-out query's candidates — its positive and fixed
/// negatives, as in training — scored by the cross-encoder with the ranks sharing the pairs; the
/// objective's mean loss, the positive's logit over the hardest negative's, and the candidates
/// ranked by score under Retrieval's metrics (a tie with a negative counts against the positive).
struct RerankerEvaluator {
    let plan: DataPlan
    let encoder: CrossEncoder
    let objective: RerankerLoss
    let communicator: Communicator

    func evaluate(_ rows: [Triplet], step: Int) throws -> EvalLog {
        let width = 1 + plan.negatives
        let pairs = rows.enumerated().flatMap { plan.pairs($0.element, index: $0.offset, epoch: 0) }
        let logits = try communicator.gatherRows(count: pairs.count, width: 1) { try encoder.logits(Array(pairs[$0])) }
        var rankings = [RetrievalEvaluator.Ranking](), positive = 0.0, hardest = 0.0
        for g in rows.indices {
            let group = logits[(g * width)..<((g + 1) * width)], first = group.startIndex
            positive += Double(group[first])
            hardest += Double(group.dropFirst().max()!)
            // Candidates: the negatives, then the positive (index width − 1).
            rankings.append(topRanked(Array(group.dropFirst()) + [group[first]]).map { ($0.index, $0.score) })
        }
        let metrics = RetrievalEvaluator().metrics(rankings: rankings, relevant: Array(repeating: [width - 1], count: rows.count), prefix: "")
        let n = Double(max(rows.count, 1))
        let loss = rows.isEmpty ? .nan : objective.sumAndGradient(logits: logits, groups: rows.count, width: width).sum
            / Double(objective.count(groups: rows.count, width: width))
        return EvalLog(step: step, loss: loss, margin: (positive - hardest) / n, meanPositive: positive / n,
                       meanHardestNegative: hardest / n, rows: rows.count, ndcg10: metrics["ndcg@10"] ?? .nan,
                       recall5: metrics["recall@5"] ?? .nan, mrr10: metrics["mrr@10"] ?? .nan, documents: pairs.count)
    }
}
