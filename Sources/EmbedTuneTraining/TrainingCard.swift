import EmbedTuneFormats
import EmbedTuneModels
import Foundation

/// Which of a run's saved adapters a model card describes.
enum SavedAdapter {
    case final
    case best
    case checkpoint
}

/// What a run's model cards say it trains: the objective after "trained by EmbedTune", how to load
/// the adapter, the tags, and what the metrics rows measure.
struct TrainingCardText {
    var objective: String
    var usage: String
    var tags: [String]
    var metricsNote: String
    var pipelineTag = "sentence-similarity"
    /// Rows the card's data table adds for this kind of run.
    var data: [(String, String)] = []
}

extension TrainingRun {
    /// The README.md of an adapter this run saves at the current step. `evaluations` are the run's
    /// held-out evaluations so far; the one at step 0 measured the base model.
    func modelCard(for saved: SavedAdapter, evaluations: [EvalLog]) -> ModelCard {
        let baseName = URL(fileURLWithPath: options.model).lastPathComponent, step = state.step, totalSteps = plan.totalSteps
        let what: String
        switch saved {
        case .final: what = "the adapter at the end of training (step \(step) of \(totalSteps))"
        case .best: what = "the adapter with the best held-out NDCG@10 so far (step \(step) of \(totalSteps))"
        case .checkpoint: what = "checkpoint at step \(step) of \(totalSteps), with the optimiser state to resume from"
        }
        let text = cardText
        var card = ModelCard(
            title: "LoRA adapter for \(baseName)", library: .peft, baseModel: options.model,
            summary: "A PEFT LoRA adapter (r \(options.loraR), α \(options.loraAlpha)) trained by EmbedTune \(text.objective): \(what). "
                + text.usage)
        card.pipelineTag = text.pipelineTag
        card.extraTags = text.tags
        card.data = [
            ("dataset", plan.source),
            ("training rows", "\(plan.train.count)"),
            ("held-out rows", String(format: "%d (split_dataset_ratio %.2f, by query)", plan.holdout.count, options.splitDatasetRatio)),
            ("skipped rows", "\(plan.skipped.count)"),
            ("hard negatives per row", "\(plan.negatives)"),
            ("triples per optimiser step", "\(plan.globalBatch * options.gradientAccumulationSteps) over \(communicator.size) rank(s)"),
            ("LoRA parameters", "\(state.adapter.parameterCount)"),
        ]
        card.data += text.data
        card.commandLine = ModelCard.currentCommandLine
        card.options = options.json
        card.metrics = Self.metricsTable(evaluations, step: step)
        card.metricsNote = card.metrics == nil ? nil : text.metricsNote
        return card
    }

    /// Base (step 0), best by NDCG@10, and this step's evaluation — those that exist, once each.
    static func metricsTable(_ evaluations: [EvalLog], step: Int) -> ModelCard.Table? {
        var picked = [(String, EvalLog)]()
        if let base = evaluations.first(where: { $0.step == 0 }) { picked.append(("base model", base)) }
        let trained = evaluations.filter { $0.step > 0 && $0.step <= step }
        let best = trained.max(by: { $0.ndcg10 < $1.ndcg10 }), current = trained.last(where: { $0.step == step })
        if let best, best.step != current?.step { picked.append(("best so far", best)) }
        if let current { picked.append((current.step == best?.step ? "this adapter (best so far)" : "this adapter", current)) }
        guard !picked.isEmpty else { return nil }
        // Matryoshka runs: NDCG@10 at each smaller dimension too (the base model's included).
        let dims = picked.last!.1.truncatedDims
        return ModelCard.Table(
            header: ["evaluation", "step", "NDCG@10"] + dims.map { "NDCG@10 at \($0)d" } + ["Recall@5", "MRR@10", "held-out loss", "margin"],
            rows: picked.map { name, e in
                [name, "\(e.step)"] + ([e.ndcg10] + dims.map { e.ndcg10ByDim?["\($0)"] ?? .nan } + [e.recall5, e.mrr10, e.loss, e.margin])
                    .map { String(format: "%.4f", $0) }
            })
    }

    /// The evaluations an interrupted run logged up to the step it resumes from, so a resumed
    /// run's cards still compare with the base model.
    static func loggedEvaluations(in log: URL, upTo step: Int) -> [EvalLog] {
        guard let text = try? TextFile.read(log.path) else { return [] }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return TextFile.lines(text).compactMap { try? decoder.decode(EvalLog.self, from: Data($0.text.utf8)) }
            .filter { $0.step <= step }
    }
}
