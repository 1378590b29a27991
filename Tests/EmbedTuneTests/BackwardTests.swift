import EmbedTuneKernels
import Foundation
import Testing

/// Directional finite-difference check: for L(x) = Σ forward(x) ⊙ R with random R, compares
/// the analytic ∇L·v with (L(x + h v) − L(x − h v)) / 2h for random directions v, computing L in
/// Double. Returns the worst relative error.
func finiteDifferenceError(
    inputCount: Int, outputCount: Int, seed: UInt64 = 1, h: Float = 1e-2, directions: Int = 4,
    forward: ([Float]) -> [Float], backward: (_ x: [Float], _ dout: [Float]) -> [Float]
) -> Double {
    var rng = SeededGenerator(seed: seed)
    let x = (0..<inputCount).map { _ in Float.random(in: -1...1, using: &rng) }
    let r = (0..<outputCount).map { _ in Float.random(in: -1...1, using: &rng) }
    let grad = backward(x, r)
    func loss(_ x: [Float]) -> Double { zip(forward(x), r).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } }
    var worst = 0.0
    for _ in 0..<directions {
        let v = (0..<inputCount).map { _ in Float.random(in: -1...1, using: &rng) }
        let plus = zip(x, v).map { $0 + h * $1 }, minus = zip(x, v).map { $0 - h * $1 }
        let numeric = (loss(plus) - loss(minus)) / (2 * Double(h))
        let analytic = zip(grad, v).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        // Relative to the derivative, with a floor: a direction whose derivative is ~1e-3 (e.g. most
        // attention weights dropped) leaves only the fp32 noise of the two losses.
        worst = max(worst, abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-2))
    }
    return worst
}

/// Central finite differences over single parameters of a flat buffer: each parameter at `indices`
/// moved by ±h in place (and restored), `loss` (in Double) evaluated at both, the difference
/// quotient compared with `analytic[i]`. Returns the worst relative error, with the same 1e-2 floor
/// as `finiteDifferenceError`.
func parameterFiniteDifferenceError(
    _ params: UnsafeMutablePointer<Float>, analytic: [Float], indices: [Int], h: Float = 1e-2, loss: () throws -> Double
) rethrows -> Double {
    var worst = 0.0
    for i in indices {
        let saved = params[i]
        params[i] = saved + h
        let up = try loss()
        params[i] = saved - h
        let down = try loss()
        params[i] = saved
        let numeric = (up - down) / (2 * Double(h)), exact = Double(analytic[i])
        worst = max(worst, abs(numeric - exact) / max(abs(numeric), abs(exact), 1e-2))
    }
    return worst
}

@Suite("Layer backward passes (finite differences)")
struct BackwardTests {
    let n = 5, c = 12

    @Test("RMSNorm backward matches finite differences")
    func rmsnorm() {
        let w = (0..<c).map { Float($0) * 0.1 + 0.5 }
        let err = finiteDifferenceError(inputCount: n * c, outputCount: n * c, forward: { x in
            var out = [Float](repeating: 0, count: x.count)
            rmsnormForward(out: &out, inp: x, weight: w, n: n, c: c, eps: 1e-6)
            return out
        }, backward: { x, g in
            var out = [Float](repeating: 0, count: x.count), rstd = [Float](repeating: 0, count: n)
            rmsnormForward(out: &out, rstd: &rstd, inp: x, weight: w, n: n, c: c, eps: 1e-6)
            var dx = [Float](repeating: 0, count: x.count)
            rmsnormBackward(dinp: &dx, dout: g, inp: x, weight: w, rstd: rstd, n: n, c: c)
            return dx
        })
        #expect(err < 2e-3, "relative error \(err)")
    }

    @Test("LayerNorm backward matches finite differences")
    func layernorm() {
        let w = (0..<c).map { Float($0) * 0.1 + 0.5 }, b = (0..<c).map { Float($0) * -0.05 }
        let err = finiteDifferenceError(inputCount: n * c, outputCount: n * c, forward: { x in
            var out = [Float](repeating: 0, count: x.count)
            layernormForward(out: &out, inp: x, weight: w, bias: b, n: n, c: c, eps: 1e-5)
            return out
        }, backward: { x, g in
            var out = [Float](repeating: 0, count: x.count), mean = [Float](repeating: 0, count: n), rstd = mean
            layernormForward(out: &out, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, n: n, c: c, eps: 1e-5)
            var dx = [Float](repeating: 0, count: x.count)
            layernormBackward(dinp: &dx, dout: g, inp: x, weight: w, mean: mean, rstd: rstd, n: n, c: c)
            return dx
        })
        #expect(err < 2e-3, "relative error \(err)")
    }

    @Test("RoPE backward is the transpose of the rotation")
    func rope() {
        let table = RotaryTable(headDim: 8, theta: 10000, maxPositions: 16)
        let positions: [Int32] = [0, 3, 7, 15]
        let err = finiteDifferenceError(inputCount: 4 * 2 * 8, outputCount: 4 * 2 * 8, forward: { x in
            var y = x
            ropeForward(x: &y, positions: positions, n: 4, heads: 2, table: table)
            return y
        }, backward: { _, g in
            var d = g
            ropeBackward(dx: &d, positions: positions, n: 4, heads: 2, table: table)
            return d
        })
        #expect(err < 1e-3, "relative error \(err)")
    }

    @Test("SwiGLU and GELU backward match finite differences")
    func activations() {
        let count = 24
        let swiglu = finiteDifferenceError(inputCount: 2 * count, outputCount: count, forward: { x in
            var out = [Float](repeating: 0, count: count)
            swigluForward(out: &out, gate: Array(x[..<count]), up: Array(x[count...]), count: count)
            return out
        }, backward: { x, g in
            var dg = [Float](repeating: 0, count: count), du = dg
            swigluBackward(dgate: &dg, dup: &du, dout: g, gate: Array(x[..<count]), up: Array(x[count...]), count: count)
            return dg + du
        })
        #expect(swiglu < 2e-3, "swiglu relative error \(swiglu)")
        let gelus: [(String, (UnsafeMutablePointer<Float>, Int) -> Void, (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void)] = [
            ("gelu", { geluForward($0, count: $1) }, { geluBackward($0, preActivation: $1, count: $2) }),
            ("gelu_tanh", { geluTanhForward($0, count: $1) }, { geluTanhBackward($0, preActivation: $1, count: $2) }),
        ]
        for (name, fwd, bwd) in gelus {
            let err = finiteDifferenceError(inputCount: count, outputCount: count, forward: { x in
                var y = x.map { $0 * 3 }
                fwd(&y, count)
                return y
            }, backward: { x, g in
                var d = g
                bwd(&d, x.map { $0 * 3 }, count)
                return d.map { $0 * 3 }
            })
            #expect(err < 2e-3, "\(name) relative error \(err)")
        }
    }

    @Test("the slope a training forward keeps gives the same output and backward as recomputing it")
    func activationSlopes() {
        let count = 61
        var rng = SeededGenerator(seed: 8)
        let x = (0..<count).map { _ in Float.random(in: -5...5, using: &rng) }
        let g = (0..<count).map { _ in Float.random(in: -1...1, using: &rng) }
        typealias Plain = (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void
        typealias Sloped = (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
        let kinds: [(String, Plain, Sloped, Plain)] = [
            ("gelu", { geluForward(out: $0, inp: $1, count: $2) }, { geluForward(out: $0, slopeInPlace: $1, count: $2) },
             { d, x, n in geluBackward(d, preActivation: x, count: n) }),
            ("gelu_tanh", { geluTanhForward(out: $0, inp: $1, count: $2) }, { geluTanhForward(out: $0, slopeInPlace: $1, count: $2) },
             { d, x, n in geluTanhBackward(d, preActivation: x, count: n) }),
            ("relu", { reluForward(out: $0, inp: $1, count: $2) }, { reluForward(out: $0, slopeInPlace: $1, count: $2) },
             { d, x, n in reluBackward(dinp: d, dout: d, preActivation: x, count: n) }),
        ]
        for (name, plain, sloped, backward) in kinds {
            var expectedOut = [Float](repeating: 0, count: count), out = expectedOut
            plain(&expectedOut, x, count)
            var expectedGrad = g
            backward(&expectedGrad, x, count)
            var slope = x, grad = [Float](repeating: 0, count: count)
            sloped(&out, &slope, count)
            multiplySlope(dinp: &grad, dout: g, slope: slope, count: count)
            #expect(out == expectedOut, "\(name) forward")
            #expect(maxAbsDifference(grad, expectedGrad) <= 1e-6, "\(name) backward")
        }
    }

    /// Head dim 16 takes the fused AVX2 kernels where they run; lengths up to 17 cross their 6-row
    /// strips and 16-column panels.
    @Test("attention backward (causal and bidirectional, grouped heads, packed sequences, probability dropout) matches finite differences",
          arguments: [(true, false, 4), (false, false, 4), (false, true, 4), (true, true, 4), (true, false, 16), (false, false, 16),
                      (false, true, 16), (true, true, 16)])
    func attention(causal: Bool, dropping: Bool, d: Int) {
        let lengths = d == 4 ? [3, 5] : [3, 17]
        let batch = PackedBatch(lengths: lengths), heads = 4, kvHeads = 2
        let n = batch.tokens, qCount = n * heads * d, kvCount = n * kvHeads * d
        let scale: Float = 0.5
        func split(_ x: [Float]) -> ([Float], [Float], [Float]) {
            (Array(x[..<qCount]), Array(x[qCount..<(qCount + kvCount)]), Array(x[(qCount + kvCount)...]))
        }
        let probsCount = heads * lengths.map { $0 * $0 }.reduce(0, +)
        let seeds: [UInt64] = (0..<n).map { mix64(UInt64($0) + 3) }
        let scratchCount = attentionScratchCount(maxLength: lengths.max()!)
        let err = seeds.withUnsafeBufferPointer { seedPointer in
          let dropout = dropping ? AttentionDropout(p: 0.3, tokenSeeds: seedPointer.baseAddress!, site: 77) : nil
          return finiteDifferenceError(inputCount: qCount + 2 * kvCount, outputCount: qCount, forward: { x in
            let (q, k, v) = split(x)
            var out = [Float](repeating: 0, count: qCount), probs = [Float](repeating: 0, count: probsCount)
            var scratch = [Float](repeating: 0, count: scratchCount)
            attentionForward(out: &out, probs: &probs, keepProbs: true, q: q, k: k, v: v, batch: batch, heads: heads,
                             kvHeads: kvHeads, headDim: d, causal: causal, scale: scale, scratch: &scratch, dropout: dropout)
            return out
        }, backward: { x, g in
            let (q, k, v) = split(x)
            var out = [Float](repeating: 0, count: qCount), probs = [Float](repeating: 0, count: probsCount)
            var scratch = [Float](repeating: 0, count: scratchCount)
            attentionForward(out: &out, probs: &probs, keepProbs: true, q: q, k: k, v: v, batch: batch, heads: heads,
                             kvHeads: kvHeads, headDim: d, causal: causal, scale: scale, scratch: &scratch, dropout: dropout)
            var dq = [Float](repeating: 0, count: qCount), dk = [Float](repeating: 0, count: kvCount), dv = dk
            attentionBackward(dq: &dq, dk: &dk, dv: &dv, dout: g, q: q, k: k, v: v, probs: probs, scratch: &scratch,
                              batch: batch, heads: heads, kvHeads: kvHeads, headDim: d, scale: scale, causal: causal, dropout: dropout)
            return dq + dk + dv
          })
        }
        // fp32 central differences through a 17-token causal head with dropout's 1/(1 − p) reach
        // 2.5e-3 on either path (GEMMs or fused); the 4-wide heads keep the tighter bound.
        #expect(err < (d == 4 ? 2e-3 : 3e-3), "relative error \(err)")
    }

    @Test("L2 normalisation and frozen-linear backward match finite differences")
    func normalizeAndLinear() {
        let l2 = finiteDifferenceError(inputCount: n * c, outputCount: n * c, forward: { x in
            var y = x
            l2NormalizeRows(&y, n: n, c: c)
            return y
        }, backward: { x, g in
            var dx = [Float](repeating: 0, count: x.count)
            l2NormalizeBackward(dx: &dx, dy: g, x: x, n: n, c: c)
            return dx
        })
        #expect(l2 < 2e-3, "l2 relative error \(l2)")
        let oc = 7
        var rng = SeededGenerator(seed: 3)
        let w = (0..<(oc * c)).map { _ in Float.random(in: -1...1, using: &rng) }
        let lin = finiteDifferenceError(inputCount: n * c, outputCount: n * oc, forward: { x in
            var y = [Float](repeating: 0, count: n * oc)
            linearForward(out: &y, inp: x, weight: w, bias: nil, n: n, c: c, oc: oc)
            return y
        }, backward: { _, g in
            var dx = [Float](repeating: 0, count: n * c)
            linearBackwardInput(dinp: &dx, dout: g, weight: w, n: n, c: c, oc: oc, accumulate: false)
            return dx
        })
        #expect(lin < 1e-3, "linear relative error \(lin)")
    }
}
