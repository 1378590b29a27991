import EmbedTuneData
import EmbedTuneRetrieval
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import Foundation

/// What the training loop needs from a run. The embedder's `Trainer` and the cross-encoder's
/// `RerankerTrainer` both conform, so checkpoints, resume, the log, held-out evaluation with the
/// best adapter, and the final PEFT output are one code path.
protocol TrainingRun: AnyObject {
    var options: TrainingOptions { get }
    var communicator: Communicator { get }
    var plan: DataPlan { get }
    var state: TrainerState { get }
    /// The objective's terms, summed in this order.
    var losses: [TrainingLoss] { get }
    var negativeRefresh: NegativeRefresh? { get }
    /// Ranks whose loss shares are the same global value (the gathered InfoNCE: all of them); the
    /// loop divides the all-reduced sum by it.
    var lossReplicas: Int { get }
    /// The `.started` line of a run that does not resume.
    var startSummary: String { get }
    /// What the adapters' model cards say the run trains.
    var cardText: TrainingCardText { get }
    /// Settings worth a warning when the run starts.
    var startWarnings: [String] { get }
    /// Held-out loss, margin and retrieval of `rows` (default: the run's held-out share).
    func evaluate(on rows: [Triplet]?) throws -> EvalLog
}

extension TrainingRun {
    var startWarnings: [String] { [] }

    var schedule: LearningRateSchedule {
        let warmup = options.warmupSteps > 0 ? options.warmupSteps : Int((options.warmupRatio * Float(plan.totalSteps)).rounded(.up))
        return LearningRateSchedule(peak: options.learningRate, warmupSteps: warmup, totalSteps: plan.totalSteps,
                                    decay: LearningRateSchedule.Decay(rawValue: options.lrSchedulerType)!)
    }

    /// Accumulates the adapter's gradient of optimiser step `step` over every loss term (not yet
    /// all-reduced). Returns this rank's share of the loss, dL/dlogτ and tokens, the last
    /// micro-batch's mean τ, and the triples of the step.
    func accumulateTerms(step: Int) throws -> (loss: Double, dLogTau: Double, tokens: Int, tau: Float, examples: Int) {
        state.adapter.zeroGrads()
        var loss = 0.0, dLogTau = 0.0, tokens = 0, tau: Float = 0
        for term in losses {
            let share = try term.accumulate(step: step)
            loss += share.loss
            dLogTau += share.dLogTau
            tokens += share.tokens
            if let t = share.tau { tau = t }
        }
        return (loss, dLogTau, tokens, tau, plan.globalBatch * options.gradientAccumulationSteps)
    }

    /// Runs (or resumes) training to the end; returns the final adapter directory.
    func runLoop(resume: String?, stopAfter: Int?, events: (TrainingEvent) -> Void) throws -> URL {
        let adapter = state.adapter, optimizer = state.optimizer, totalSteps = plan.totalSteps
        var step: Int { state.step }
        var holdout: [Triplet] { plan.holdout }  // a refresh mines negatives for rows without
        let out = URL(fileURLWithPath: options.outputDir)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        if communicator.isRoot { Checkpoint.removeUnfinished(in: out) }
        if let resume {
            let dir = try Checkpoint.resume(resume, outputDir: out, into: state, options: options, globalBatch: plan.globalBatch) {
                events(.warning($0))
            }
            try checkRanksResumedTogether()
            try negativeRefresh?.restore(from: dir)
            events(.started("resumed from \(dir.path) at step \(step)"))
        } else {
            events(.started(startSummary))
        }
        for problem in plan.skipped { events(.warning("skipped \(problem)")) }
        for warning in startWarnings + plan.warnings { events(.warning(warning)) }
        /// Mines the negatives again when step `step` + 1 is due for it.
        func refreshNegativesIfDue() throws {
            guard let refresh = negativeRefresh, refresh.isDue(at: step) else { return }
            communicator.setActivity("the negative refresh at step \(step)")
            events(.negativesRefreshed(step: step, summary: try refresh.refresh(step: step)))
        }
        // The first refresh comes first: held-out rows without negatives get theirs there.
        try refreshNegativesIfDue()
        let logURL = out.appendingPathComponent("train_log.jsonl")
        // Every saved adapter's model card compares with these (the first is the base model).
        var evaluations = resume == nil || !communicator.isRoot ? [] : Self.loggedEvaluations(in: logURL, upTo: step)
        let log = communicator.isRoot ? try JSONLLog(url: logURL, append: resume != nil) : nil
        if communicator.isRoot && !holdout.isEmpty {
            // The held-out rows, so evaluation after training uses exactly the same questions.
            var lines = ""
            for t in holdout {
                let o: [String: Any] = ["query": t.query, "response": t.positive, "rejected_response": t.negatives]
                lines += String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self) + "\n"
            }
            try writeAtomically(Data(lines.utf8), to: out.appendingPathComponent("heldout.jsonl"))
        }
        let schedule = self.schedule
        // The flat gradient plus three scalars (loss, dL/dlogτ, tokens), all-reduced together.
        let buffer = FloatBuffer(count: communicator.size > 1 ? adapter.grads.count + 3 : 0)
        // A resumed run competes with the best adapter saved before it stopped.
        var best = resume == nil ? -Double.infinity : BestAdapter.score(in: out) ?? -Double.infinity
        /// Evaluates, logs, and keeps the adapter with the best held-out NDCG@10 in OUTPUT_DIR/best.
        func evaluateAndTrack() throws {
            communicator.setActivity("the evaluation at step \(step)")
            let e = try evaluate(on: nil)
            try log?.write(e)
            evaluations.append(e)
            events(.eval(e))
            if step > 0 && e.ndcg10 > best {
                best = e.ndcg10
                if communicator.isRoot {
                    let dir = out.appendingPathComponent("best")
                    try PEFTAdapter.save(adapter, to: dir, baseModel: options.model)
                    try modelCard(for: .best, evaluations: evaluations).write(to: dir)
                    try BestAdapter.record(e, in: dir)
                }
            }
        }
        if resume == nil && options.evalSteps > 0 && !holdout.isEmpty {
            try evaluateAndTrack()  // the baseline every later evaluation is compared with
        }
        while step < totalSteps {
            if let stopAfter, step >= stopAfter { break }
            communicator.setActivity("step \(step + 1)")
            let t0 = DispatchTime.now().uptimeNanoseconds, mpi0 = communicator.traffic.seconds
            var (loss, dLogTau, tokens, tau, examples) = try accumulateTerms(step: step)
            // One all-reduce per optimiser step: the flat LoRA gradient with three scalars behind it.
            let count = adapter.grads.count
            if communicator.size > 1 {
                buffer.pointer.update(from: adapter.grads.pointer, count: count)
                buffer.pointer[count] = Float(loss); buffer.pointer[count + 1] = Float(dLogTau); buffer.pointer[count + 2] = Float(tokens)
                try communicator.allReduceSum(buffer.pointer, count: count + 3)
                adapter.grads.pointer.update(from: buffer.pointer, count: count)
                let ranksCounted = Float(lossReplicas)
                loss = Double(buffer.pointer[count] / ranksCounted)
                dLogTau = Double(buffer.pointer[count + 1] / ranksCounted)
                tokens = Int(buffer.pointer[count + 2])
            }
            let lr = schedule.rate(at: step)
            let finite = loss.isFinite && (0..<adapter.grads.count).allSatisfy { adapter.grads.pointer[$0].isFinite }
            var norm: Float = .nan
            if finite {
                norm = clipGlobalNorm(adapter.grads.pointer, count: adapter.grads.count, maxNorm: options.maxGradNorm)
                optimizer.update(params: adapter.params.pointer, grads: adapter.grads.pointer, lr: lr)
                if case .learnable(_, let lo, let hi) = options.temperatureSchedule {
                    var g = Float(dLogTau), p = state.logTau
                    state.tauOptimizer.update(params: &p, grads: &g, lr: lr)
                    state.logTau = min(max(p, logf(lo)), logf(hi))
                }
            } else {
                events(.warning("step \(step + 1): non-finite loss or gradient; the adapter was not updated"))
            }
            state.step += 1
            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            let entry = StepLog(step: step, epoch: plan.epochProgress(step * options.gradientAccumulationSteps),
                                loss: loss, lr: lr, tau: tau, gradNorm: norm, msPerStep: ms,
                                tokensPerSecond: Double(tokens) / (ms / 1000), examples: examples,
                                mpiFraction: communicator.size > 1 ? (communicator.traffic.seconds - mpi0) * 1000 / ms : nil)
            try log?.write(entry)
            events(.step(entry))
            if options.evalSteps > 0 && step % options.evalSteps == 0 && !holdout.isEmpty {
                try evaluateAndTrack()
            }
            if options.saveSteps > 0 && step % options.saveSteps == 0 {
                let card = communicator.isRoot ? modelCard(for: .checkpoint, evaluations: evaluations) : nil
                let extra = try negativeRefresh.map { [NegativeRefresh.fileName: try $0.saved()] } ?? [:]
                if let dir = try Checkpoint.save(state, options: options, communicator: communicator, outputDir: out, card: card,
                                                 extraFiles: extra) {
                    events(.checkpoint(dir))
                }
            }
            // After the checkpoint, which keeps the negatives before this refresh: a run resumed
            // from it refreshes at this step too.
            if step < totalSteps && step < (stopAfter ?? Int.max) { try refreshNegativesIfDue() }
        }
        if stopAfter == nil || step >= totalSteps {
            if options.evalSteps > 0 && !holdout.isEmpty && step % options.evalSteps != 0 {
                try evaluateAndTrack()
            }
            if communicator.isRoot {
                try PEFTAdapter.save(adapter, to: out, baseModel: options.model)
                try modelCard(for: .final, evaluations: evaluations).write(to: out)
            }
            try communicator.barrier()
            events(.finished(out))
        }
        return out
    }
}

/// Appends one JSON object per line (the run's log).
final class JSONLLog {
    let handle: FileHandle
    init(url: URL, append: Bool) throws {
        if !append || !FileManager.default.fileExists(atPath: url.path) {
            FileManager.default.createFile(atPath: url.path, contents: nil)
        }
        handle = try FileHandle(forWritingTo: url)
        handle.seekToEndOfFile()
    }
    func write<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        var data = try encoder.encode(value)
        data.append(0x0a)
        handle.write(data)
    }
    deinit { try? handle.close() }
}

extension TrainingRun {
    /// Every rank reads the checkpoints itself; an output directory that is not shared by all
    /// nodes (or damage only some of them see) would resume them at different steps and let
    /// them drift apart silently.
    func checkRanksResumedTogether() throws {
        guard communicator.size > 1 else { return }
        var mine = Int64(state.step), steps = [Int64](repeating: 0, count: communicator.size)
        try withUnsafeBytes(of: &mine) { source in
            try steps.withUnsafeMutableBytes { try communicator.allGatherBytes(source.baseAddress!, bytes: 8, into: $0.baseAddress!) }
        }
        guard Set(steps).count == 1 else {
            throw FormatError(file: options.outputDir, "the ranks resumed at different steps (\(steps.map(String.init).joined(separator: ", "))): every rank must see the same output directory")
        }
    }
}

/// OUTPUT_DIR/best: the adapter with the best held-out NDCG@10 and its evaluation (eval.json),
/// which a resumed run reads back so that only a better adapter replaces it.
enum BestAdapter {
    static func record(_ e: EvalLog, in dir: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(e), to: dir.appendingPathComponent("eval.json"))
    }

    /// The saved best adapter's NDCG@10, or nil when there is none.
    static func score(in outputDir: URL) -> Double? {
        let url = outputDir.appendingPathComponent("best/eval.json")
        guard let data = try? Data(contentsOf: url) else { return nil }
        return (try? JSONDecoder().decode(EvalLog.self, from: data))?.ndcg10
    }
}
