import EmbedTuneModels
import Foundation

/// Everything a checkpoint saves and restores besides the step: the adapter's weights, the
/// optimiser's moments, and log τ with its own optimiser (used when τ is learnable). The data
/// order, the negatives' padding and every dropout mask derive from the step and the seed, so
/// these and the step are the whole state of a run.
public final class TrainerState {
    public let adapter: LoRAAdapter
    public let optimizer: AdamW
    /// log τ: the learnable temperature's parameter (the schedule's start in other modes).
    public var logTau: Float
    public let tauOptimizer = AdamW(count: 1)
    /// Optimiser steps taken.
    public var step = 0

    public init(adapter: LoRAAdapter, optimizer: AdamW, logTau: Float) {
        self.adapter = adapter
        self.optimizer = optimizer
        self.logTau = logTau
    }
}
