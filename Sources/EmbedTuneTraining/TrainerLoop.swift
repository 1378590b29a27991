import EmbedTuneData
import EmbedTuneRetrieval
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import Foundation

extension Trainer {
    /// Accumulates the LoRA gradient of optimiser step `step` over its micro-batches (not yet
    /// all-reduced). Returns this rank's share of the loss, dL/dlogτ and tokens.
    public func accumulateGradients(step: Int) throws -> (loss: Double, dLogTau: Double, tokens: Int, tau: Float, examples: Int) {
        adapter.zeroGrads()
        let accum = options.gradientAccumulationSteps, size = communicator.size
        let gather = options.gatherAcrossRanks
        // Without gathering, each rank's loss is local; the objective is their mean.
        let scale = 1 / Float(accum) / Float(gather ? 1 : size)
        var loss = 0.0, dLogTau = 0.0, tokens = 0, tau: Float = 0
        let progress = Float(step) / Float(max(1, totalSteps))
        for a in 0..<accum {
            let micro = step * accum + a
            let epoch = micro / microBatchesPerEpoch
            let global = microBatch(micro), positions = rankRows(global, epoch: epoch)
            let indices = positions.map { global[$0] }
            let texts = localTexts(indices.map { train[$0] }, indices: indices, micro: micro, epoch: epoch, globalRows: positions)
            tokens += texts.tokens
            let chunk = options.gradCacheMiniBatch > 0 ? options.gradCacheMiniBatch : texts.ids.count
            if chunk >= texts.ids.count {
                // One pass: activations for the whole local batch.
                let (normalized, pooled) = try embed(texts.ids, seeds: texts.seeds, keep: true, training: true)
                let (result, dLocal, t) = try globalLoss(local: normalized, localKeys: texts.keys, queries: texts.queries,
                                                         rows: indices.count, progress: progress, gather: gather)
                try backward(texts.ids, pooled: pooled, dNormalized: ArraySlice(dLocal.map { $0 * scale }))
                loss += result.loss * Double(scale); dLogTau += result.dLogTemperature * Double(scale); tau = t
            } else {
                // GradCache: embed everything without activations, take the loss and its gradient
                // over the full batch, then recompute chunk by chunk and backpropagate the cached
                // embedding gradients. Memory is bounded by the chunk; the gradient is unchanged.
                var normalized = [Float]()
                for start in stride(from: 0, to: texts.ids.count, by: chunk) {
                    let end = min(start + chunk, texts.ids.count)
                    normalized += try embed(Array(texts.ids[start..<end]), seeds: Array(texts.seeds[start..<end]), keep: false,
                                            training: true).normalized
                }
                let (result, dLocal, t) = try globalLoss(local: normalized, localKeys: texts.keys, queries: texts.queries,
                                                         rows: indices.count, progress: progress, gather: gather)
                let c = model.hiddenSize
                for start in stride(from: 0, to: texts.ids.count, by: chunk) {
                    let end = min(start + chunk, texts.ids.count)
                    let ids = Array(texts.ids[start..<end])
                    let (_, pooled) = try embed(ids, seeds: Array(texts.seeds[start..<end]), keep: true, training: true)
                    try backward(ids, pooled: pooled, dNormalized: ArraySlice(dLocal[(start * c)..<(end * c)].map { $0 * scale }))
                }
                loss += result.loss * Double(scale); dLogTau += result.dLogTemperature * Double(scale); tau = t
            }
        }
        if !anchors.isEmpty { loss += try accumulatePreservation(step: step) }
        return (loss, dLogTau, tokens, tau, globalBatch * accum)
    }

    /// Runs (or resumes) training to the end; returns the final adapter directory.
    @discardableResult
    public func run(resume: String? = nil, stopAfter: Int? = nil, events: (TrainingEvent) -> Void = { _ in }) throws -> URL {
        let out = URL(fileURLWithPath: options.outputDir)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        if let resume {
            let dir = try Checkpoint.locate(resume, outputDir: out)
            step = try Checkpoint.load(dir, into: self)
            events(.started("resumed from \(dir.path) at step \(step)"))
        } else {
            events(.started("\(train.count) training / \(holdout.count) held-out rows, \(totalSteps) steps of \(globalBatch * options.gradientAccumulationSteps) triples, \(negatives) hard negatives per row, \(adapter.parameterCount) LoRA parameters, \(communicator.size) rank(s)"
                + (anchors.isEmpty ? "" : ", preserving \(anchors.count) texts per rank (weight \(options.preserveWeight), \(options.preserveBatch) per step)")))
        }
        for problem in skipped { events(.warning("skipped \(problem)")) }
        let logURL = out.appendingPathComponent("train_log.jsonl")
        // Every saved adapter's model card compares with these (the first is the base model).
        var evaluations = resume == nil ? [] : Self.loggedEvaluations(in: logURL, upTo: step)
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
        var best = -Double.infinity
        /// Evaluates, logs, and keeps the adapter with the best held-out NDCG@10 in OUTPUT_DIR/best.
        func evaluateAndTrack() throws {
            let e = try evaluate()
            try log?.write(e)
            evaluations.append(e)
            events(.eval(e))
            if step > 0 && e.ndcg10 > best {
                best = e.ndcg10
                if communicator.isRoot {
                    let dir = out.appendingPathComponent("best")
                    try PEFTAdapter.save(adapter, to: dir, baseModel: options.model)
                    try modelCard(for: .best, evaluations: evaluations).write(to: dir)
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    try writeAtomically(try encoder.encode(e), to: dir.appendingPathComponent("eval.json"))
                }
            }
        }
        if resume == nil && options.evalSteps > 0 && !holdout.isEmpty {
            try evaluateAndTrack()  // the baseline every later evaluation is compared with
        }
        while step < totalSteps {
            if let stopAfter, step >= stopAfter { break }
            let t0 = DispatchTime.now().uptimeNanoseconds, mpi0 = communicator.traffic.seconds
            var (loss, dLogTau, tokens, tau, examples) = try accumulateGradients(step: step)
            // One all-reduce per optimiser step: the flat LoRA gradient with three scalars behind it.
            let count = adapter.grads.count
            if communicator.size > 1 {
                let buffer = reductionBuffer
                buffer.pointer.update(from: adapter.grads.pointer, count: count)
                buffer.pointer[count] = Float(loss); buffer.pointer[count + 1] = Float(dLogTau); buffer.pointer[count + 2] = Float(tokens)
                try communicator.allReduceSum(buffer.pointer, count: count + 3)
                adapter.grads.pointer.update(from: buffer.pointer, count: count)
                // With gathering every rank computed the same global loss; without, each its own share.
                let ranksCounted = Float(options.gatherAcrossRanks ? communicator.size : 1)
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
                    var g = Float(dLogTau), p = logTau
                    tauOptimizer.update(params: &p, grads: &g, lr: lr)
                    logTau = min(max(p, logf(lo)), logf(hi))
                }
            } else {
                events(.warning("step \(step + 1): non-finite loss or gradient; the adapter was not updated"))
            }
            step += 1
            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            let entry = StepLog(step: step, epoch: Double(step * options.gradientAccumulationSteps) / Double(microBatchesPerEpoch),
                                loss: loss, lr: lr, tau: tau, gradNorm: norm, msPerStep: ms,
                                tokensPerSecond: Double(tokens) / (ms / 1000), examples: examples,
                                mpiFraction: communicator.size > 1 ? (communicator.traffic.seconds - mpi0) * 1000 / ms : nil)
            try log?.write(entry)
            events(.step(entry))
            if options.evalSteps > 0 && step % options.evalSteps == 0 && !holdout.isEmpty {
                try evaluateAndTrack()
            }
            if options.saveSteps > 0 && step % options.saveSteps == 0 {
                let card = modelCard(for: .checkpoint, evaluations: evaluations)
                if let dir = try Checkpoint.save(self, step: step, outputDir: out, card: card) { events(.checkpoint(dir)) }
            }
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

    /// Held-out InfoNCE loss and positive-minus-hardest-negative margin, in global-batch chunks.
    public func evaluate(on rows: [Triplet]? = nil) throws -> EvalLog {
        let rows = rows ?? holdout
        var loss = 0.0, pos = 0.0, hard = 0.0, counted = 0
        // Retrieval over the whole held-out set: every query against every distinct document.
        var queryVectors = [Float](), documentVectors = [Float](), documentIndex = [UInt64: Int](), relevant = [Set<Int>]()
        let chunkSize = max(2, globalBatch)
        for start in stride(from: 0, to: rows.count, by: chunkSize) {
            let chunk = Array(rows[start..<min(start + chunkSize, rows.count)])
            let texts = localTexts(chunk, indices: Array(start..<(start + chunk.count)), micro: -1 & Int.max, epoch: 0,
                                   globalRows: Array(0..<chunk.count))
            // Each rank embeds its share of the texts; the gather gives every rank all of them.
            let total = texts.ids.count, c = model.hiddenSize
            let step = max(1, options.gradCacheMiniBatch > 0 ? options.gradCacheMiniBatch : 64)
            let normalized = try communicator.gatherRows(count: total, width: c) { mine in
                var local = [Float]()
                for s in stride(from: mine.lowerBound, to: mine.upperBound, by: step) {
                    let e = min(s + step, mine.upperBound)
                    local += try embed(Array(texts.ids[s..<e]), seeds: [], keep: false, training: false).normalized
                }
                return local
            }
            let (result, _, _) = try globalLoss(local: normalized, localKeys: texts.keys, queries: texts.queries, rows: chunk.count,
                                                progress: 1, gather: false)
            let perRow = 2 + negatives
            for r in 0..<chunk.count {
                queryVectors += normalized[(r * perRow * c)..<((r * perRow + 1) * c)]
                for j in 1..<perRow {
                    let key = texts.keys[r * perRow + j]
                    if documentIndex[key] == nil {
                        documentIndex[key] = documentIndex.count
                        documentVectors += normalized[((r * perRow + j) * c)..<((r * perRow + j + 1) * c)]
                    }
                }
                relevant.append([documentIndex[texts.keys[r * perRow + 1]]!])
            }
            loss += result.loss * Double(chunk.count)
            pos += result.meanPositive * Double(chunk.count)
            if result.meanHardestNegative.isFinite { hard += result.meanHardestNegative * Double(chunk.count) }
            counted += chunk.count
        }
        let n = Double(max(counted, 1))
        var evaluator = RetrievalEvaluator()
        evaluator.scores = [.cosine]
        let ir = counted > 0 ? evaluator.evaluate(queries: queryVectors, corpus: documentVectors, dim: model.hiddenSize, relevant: relevant)
                             : [:]
        return EvalLog(step: step, loss: loss / n, margin: (pos - hard) / n, meanPositive: pos / n, meanHardestNegative: hard / n,
                       rows: counted, ndcg10: ir["cosine_ndcg@10"] ?? .nan, recall5: ir["cosine_recall@5"] ?? .nan,
                       mrr10: ir["cosine_mrr@10"] ?? .nan, documents: documentIndex.count)
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
