import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTraining
import Foundation

/// End-to-end training of the hypernetwork (Text-to-LoRA's SFT objective, with InfoNCE in place of
/// next-token loss): for a (domain, description) pair the network generates an adapter, the
/// domain's training triples go through the model with it, and InfoNCE's gradient with respect to
/// the generated A and B flows back into the hypernetwork:
///
///     y = H(description)            outputs per module (z-scored units)
///     A = y_A·stdA + meanA, B = y_B·stdB + meanB          written into `adapter`
///     L = InfoNCE(domain batch | base + scale·B·A)        dL/dA, dL/dB by the model's backward
///     dL/dy_A = dL/dA·stdA, dL/dy_B = dL/dB·stdB          then H's backward
///
/// Data-parallel as the embedder's training is: every rank generates the same adapter, embeds its
/// share of the domain's micro-batch (the embeddings gathered, so each computes the global loss),
/// and backpropagates into its own texts; the hypernetwork's gradients are summed over ranks once
/// per step.
public final class ContrastiveTrainer {
    /// One training domain: its description embeddings (standardised, rows of D) and the loss over
    /// its triples, whose `EmbeddingPass` uses the trainer's adapter.
    public struct Domain {
        public let name: String
        public let descriptions: [Float]
        public let loss: InfoNCELoss
        public init(name: String, descriptions: [Float], loss: InfoNCELoss) {
            self.name = name; self.descriptions = descriptions; self.loss = loss
        }
    }

    public var steps = 200
    /// (domain, description) pairs per step, over all ranks.
    public var batch = 2
    public var learningRate: Float = 1e-4
    public var weightDecay: Float = 0.01
    public var warmupSteps = 10
    public var maxGradNorm: Float = 1
    public var seed: UInt64 = 42

    public let t2l: TextToLoRA
    /// The adapter the domains' losses train through: the hypernetwork's output is written into it.
    public let adapter: LoRAAdapter
    public let domains: [Domain]
    let communicator: Communicator
    /// Per manifest module entry, the adapter's slot.
    let slots: [LoRASlot]
    /// Times each domain has been drawn: its next micro-batch.
    var drawn: [Int]

    public init(t2l: TextToLoRA, adapter: LoRAAdapter, domains: [Domain], communicator: Communicator) throws {
        let m = t2l.manifest
        slots = try m.modules.indices.map { i in
            let type = m.config.moduleTypes[m.moduleTypes[i]]
            guard let s = adapter.slot(m.modules[i]), s.rank == m.config.rank, s.inFeatures == type.inFeatures,
                  s.outFeatures == type.outFeatures else {
                throw FormatError("the training adapter has no \(m.config.rank)-rank \(type.outFeatures)×\(type.inFeatures) module \(m.modules[i])")
            }
            return s
        }
        guard abs(adapter.scale - m.scale) <= 1e-6 * m.scale else {
            throw FormatError("the training adapter's scale is \(adapter.scale), the library's \(m.scale)")
        }
        guard !domains.isEmpty else { throw FormatError("no training domains") }
        self.t2l = t2l
        self.adapter = adapter
        self.domains = domains
        self.communicator = communicator
        drawn = [Int](repeating: 0, count: domains.count)
    }

    /// The generated adapter for domain `d`'s description `k` written into `adapter`; returns the
    /// forward's activations for the backward.
    @discardableResult
    public func load(domain d: Int, description k: Int) -> Hypernetwork.Activations {
        let dim = t2l.manifest.config.descriptionDim
        let e = Array(domains[d].descriptions[(k * dim)..<((k + 1) * dim)])
        let act = t2l.network.forward(descriptions: e, rows: t2l.rows)
        for (s, f) in zip(slots, t2l.factors(act)) {
            adapter.a(s).update(from: f.a, count: f.a.count)
            adapter.b(s).update(from: f.b, count: f.b.count)
        }
        return act
    }

    /// InfoNCE of domain `d`'s micro-batch `micro` through the adapter generated from its
    /// description `k`; adds `weight` × its gradient into the hypernetwork's gradients (this rank's
    /// texts' share). Returns the loss as this rank computed it.
    public func accumulate(domain d: Int, description k: Int, micro: Int, weight: Float) throws -> Double {
        let act = load(domain: d, description: k)
        adapter.zeroGrads()
        let share = try domains[d].loss.accumulate(step: micro)
        let dOutputs = t2l.outputGradients(act) { i in (UnsafePointer(self.adapter.gradA(self.slots[i])), UnsafePointer(self.adapter.gradB(self.slots[i]))) }
        t2l.network.backward(act, dOutputs: dOutputs.map { $0.map { $0 * weight } })
        return share.loss
    }

    /// Trains for `steps`; returns the loss of each step (the mean over its pairs).
    public func train(progress: (Int, Float) -> Void = { _, _ in }) throws -> [Float] {
        let network = t2l.network, dim = t2l.manifest.config.descriptionDim
        let optimizer = AdamW(count: network.parameterCount, weightDecay: weightDecay)
        let schedule = LearningRateSchedule(peak: learningRate, warmupSteps: warmupSteps, totalSteps: steps, decay: .cosine)
        let gathered = domains[0].loss.plan.options.gatherAcrossRanks
        var rng = SplitMix64(seed: seed)
        var losses = [Float]()
        for step in 1...steps {
            network.zeroGrads()
            var total = 0.0
            // Every rank draws the same pairs and runs each one (the domain's micro-batch is what is split).
            for _ in 0..<batch {
                let d = Int(rng.next() % UInt64(domains.count))
                let k = Int(rng.next() % UInt64(domains[d].descriptions.count / dim))
                total += try accumulate(domain: d, description: k, micro: drawn[d], weight: 1 / Float(batch))
                drawn[d] += 1
            }
            var values = [Float(total / Double(batch))]
            if communicator.size > 1 {
                try communicator.allReduceSum(network.grads.pointer, count: network.parameterCount)
                try values.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: 1) }
                // Gathered, every rank computed the whole loss; otherwise each its share of the mean.
                if gathered { values[0] /= Float(communicator.size) }
            }
            clipGlobalNorm(network.grads.pointer, count: network.parameterCount, maxNorm: maxGradNorm)
            optimizer.update(params: network.params.pointer, grads: network.grads.pointer, lr: schedule.rate(at: step - 1))
            losses.append(values[0])
            progress(step, values[0])
        }
        return losses
    }
}
