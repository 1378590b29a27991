import Foundation

/// This rank's share of one loss term over one optimiser step.
public struct LossShare {
    public var loss = 0.0
    /// dL/d(log τ), for a learnable temperature.
    public var dLogTau = 0.0
    /// Tokens this rank embedded for the term.
    public var tokens = 0
    /// The mean temperature of the term's last micro-batch (nil for terms without one).
    public var tau: Float?

    public init(loss: Double = 0, dLogTau: Double = 0, tokens: Int = 0, tau: Float? = nil) {
        self.loss = loss
        self.dLogTau = dLogTau
        self.tokens = tokens
        self.tau = tau
    }
}

/// One term of the training objective, as sentence-transformers' loss modules are: it embeds
/// what it needs through the shared `EmbeddingPass`, adds its gradient for optimiser step `step`
/// into the adapter's gradient buffer, and returns this rank's share of the loss. The trainer
/// sums the terms in order and all-reduces once per step; a new objective is a new conforming
/// type, the trainer does not change.
public protocol TrainingLoss: AnyObject {
    func accumulate(step: Int) throws -> LossShare
}
