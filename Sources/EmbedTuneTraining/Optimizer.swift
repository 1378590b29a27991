import Foundation

/// AdamW over one flat parameter buffer (decoupled weight decay, bias-corrected moments), as
/// torch.optim.AdamW computes it.
public final class AdamW {
    public var beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    public private(set) var step = 0
    public var m: [Float], v: [Float]

    public init(count: Int, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        m = [Float](repeating: 0, count: count)
        v = [Float](repeating: 0, count: count)
    }

    /// One update of `params` (count floats) from `grads` at learning rate `lr`.
    public func update(params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, lr: Float) {
        step += 1
        let c1 = 1 - powf(beta1, Float(step)), c2 = 1 - powf(beta2, Float(step))
        let stepSize = lr / c1, c2Root = c2.squareRoot()
        m.withUnsafeMutableBufferPointer { mb in
            v.withUnsafeMutableBufferPointer { vb in
                for i in 0..<mb.count {
                    let g = grads[i]
                    params[i] *= 1 - lr * weightDecay
                    mb[i] = beta1 * mb[i] + (1 - beta1) * g
                    vb[i] = beta2 * vb[i] + (1 - beta2) * g * g
                    params[i] -= stepSize * mb[i] / (vb[i].squareRoot() / c2Root + epsilon)
                }
            }
        }
    }

    /// Restores a checkpointed state.
    public func restore(step: Int, m: [Float], v: [Float]) {
        precondition(m.count == self.m.count && v.count == self.v.count, "optimizer state size mismatch")
        self.step = step
        self.m = m
        self.v = v
    }
}

/// Learning-rate schedule: linear warm-up, then cosine, linear or constant decay (HF's
/// get_*_schedule_with_warmup).
public struct LearningRateSchedule: Sendable {
    public enum Decay: String, Codable, Sendable { case cosine, linear, constant }
    public var peak: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var decay: Decay

    public init(peak: Float, warmupSteps: Int, totalSteps: Int, decay: Decay) {
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.decay = decay
    }

    /// The rate for optimiser step `step` (0-based, as HF's LambdaLR sees it).
    public func rate(at step: Int) -> Float {
        if step < warmupSteps { return peak * Float(step) / Float(max(1, warmupSteps)) }
        let progress = Float(step - warmupSteps) / Float(max(1, totalSteps - warmupSteps))
        switch decay {
        case .constant: return peak
        case .linear: return peak * max(0, 1 - progress)
        case .cosine: return peak * max(0, 0.5 * (1 + cosf(Float.pi * progress)))
        }
    }
}

/// Scales `grads` so their global L2 norm is at most `maxNorm`; returns the norm before clipping.
@discardableResult
public func clipGlobalNorm(_ grads: UnsafeMutablePointer<Float>, count: Int, maxNorm: Float) -> Float {
    var ss = 0.0
    for i in 0..<count { ss += Double(grads[i]) * Double(grads[i]) }
    let norm = Float(ss.squareRoot())
    if maxNorm > 0 && norm > maxNorm {
        let scale = maxNorm / (norm + 1e-6)
        for i in 0..<count { grads[i] *= scale }
    }
    return norm
}

/// The temperature τ of InfoNCE and how it evolves.
public enum TemperatureMode: Equatable, Sendable {
    case fixed(Float)
    /// Cosine from τ₀ to τ₁ over the run.
    case scheduled(from: Float, to: Float)
    /// log τ trained jointly with the adapter, clamped to [min, max].
    case learnable(initial: Float, min: Float, max: Float)
    /// Per example: max(floor, base − step · count(domain terms in the query)), the seed's rule.
    case adaptive(base: Float, step: Float, floor: Float, terms: [String])

    /// The seed document's default term list and constants: max(0.03, 0.08 − 0.01·count).
    public static let seedAdaptive = TemperatureMode.adaptive(base: 0.08, step: 0.01, floor: 0.03,
                                                              terms: ["种植", "养殖", "病虫害", "育种"])

    /// Occurrences of the terms in `text` (non-overlapping, per term). The seed's regex wraps the
    /// terms in \b, which never matches inside running Chinese text; counting substrings is what
    /// its rule intends.
    public static func termCount(_ text: String, terms: [String]) -> Int {
        terms.reduce(0) { $0 + max(0, text.components(separatedBy: $1).count - 1) }
    }

    /// τ for each query at `progress` ∈ [0, 1] of training; `learnedLogTau` for the learnable mode.
    public func temperatures(queries: [String], progress: Float, learnedLogTau: Float) -> [Float] {
        switch self {
        case .fixed(let t): return Array(repeating: t, count: queries.count)
        case .scheduled(let a, let b):
            let t = b + (a - b) * 0.5 * (1 + cosf(Float.pi * min(max(progress, 0), 1)))
            return Array(repeating: t, count: queries.count)
        case .learnable(_, let lo, let hi):
            return Array(repeating: min(max(expf(learnedLogTau), lo), hi), count: queries.count)
        case .adaptive(let base, let step, let floor, let terms):
            return queries.map { max(floor, base - step * Float(Self.termCount($0, terms: terms))) }
        }
    }
}
