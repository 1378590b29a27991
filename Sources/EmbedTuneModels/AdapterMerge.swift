import EmbedTuneFormats
import EmbedTuneKernels
import Foundation

// Multi-domain adapter fusion, computed on ΔW = scale·B·A exactly (Double), for any mix of ranks,
// alphas and target modules. PEFT's own weighted merge scales A and B separately, which is only
// approximate in ΔW and needs equal ranks; here every method first forms each adapter's task
// tensor ΔWᵢ and follows peft.utils.merge_utils from there.

/// One module's LoRA factors: A is rank×in, B is out×rank, both row-major.
public struct LoRAFactors: Sendable {
    public let module: String
    public let rank: Int, inFeatures: Int, outFeatures: Int
    public var a: [Float]
    public var b: [Float]
    public init(module: String, rank: Int, inFeatures: Int, outFeatures: Int, a: [Float], b: [Float]) {
        self.module = module; self.rank = rank; self.inFeatures = inFeatures; self.outFeatures = outFeatures; self.a = a; self.b = b
    }
}

extension LoRAAdapter {
    /// The adapter's directory name, or "adapter" for one built in memory.
    public var name: String { source?.lastPathComponent ?? "adapter" }
    /// The adapter's directory, for messages.
    var origin: String { source?.path ?? "adapter" }

    /// One module's A and B as arrays, or nil when the adapter does not touch it.
    public func factors(_ module: String) -> LoRAFactors? {
        guard let s = slot(module) else { return nil }
        return LoRAFactors(module: module, rank: s.rank, inFeatures: s.inFeatures, outFeatures: s.outFeatures,
                           a: Array(UnsafeBufferPointer(start: a(s), count: s.rank * s.inFeatures)),
                           b: Array(UnsafeBufferPointer(start: b(s), count: s.outFeatures * s.rank)))
    }

    /// ΔW = scale · B · A for `module` (out×in, row-major), or nil when the adapter does not touch it.
    public func delta(_ module: String) -> [Double]? {
        guard let f = factors(module) else { return nil }
        let a = f.a.map(Double.init), b = f.b.map { Double($0) * Double(scale) }
        var d = [Double](repeating: 0, count: f.outFeatures * f.inFeatures)
        dgemm(f.outFeatures, f.inFeatures, f.rank, b, a, &d)
        return d
    }
}

public enum MergeMethod: String, CaseIterable, Sendable {
    case linear, taskArithmetic = "task_arithmetic", ties, dareLinear = "dare_linear", dareTies = "dare_ties"
    case magnitudePrune = "magnitude_prune", svd, cat

    /// Methods whose result is a weighted sum of the low-rank ΔWᵢ: exact as a concatenated LoRA.
    public var isLowRankExact: Bool { self == .linear || self == .taskArithmetic || self == .cat }
    var usesDensity: Bool { [.ties, .dareLinear, .dareTies, .magnitudePrune].contains(self) }
}

public struct MergeSpec: Sendable {
    public enum MajoritySign: String, Sendable { case total, frequency }
    public var method: MergeMethod
    /// One per adapter; nil = all 1 (linear normalises by their sum anyway).
    public var weights: [Double]?
    public var density = 0.5
    public var majoritySign = MajoritySign.total
    public var seed: UInt64 = 0
    /// Rank of the written adapter for svd (default: the largest input rank) and for the
    /// full-rank methods (default: the sum of input ranks).
    public var rank: Int?
    public init(method: MergeMethod, weights: [Double]? = nil) { self.method = method; self.weights = weights }
}

/// ΔW of one module after merging.
public struct MergedDelta: Sendable {
    public let module: String
    public let outFeatures: Int, inFeatures: Int
    public var values: [Double]
}

public enum AdapterMerge {
    /// Everything that can be wrong with a merge request, checked before any work or any file.
    public static func validate(_ adapters: [LoRAAdapter], _ spec: MergeSpec) throws {
        guard !adapters.isEmpty else { throw FormatError("no adapters to merge") }
        if let w = spec.weights {
            guard w.count == adapters.count else {
                throw FormatError("\(w.count) weight(s) for \(adapters.count) adapter(s): give one weight per adapter")
            }
            guard w.allSatisfy(\.isFinite) else { throw FormatError("weights must be finite numbers") }
            if spec.method == .linear && abs(w.reduce(0, +)) < 1e-12 { throw FormatError("linear merge: the weights sum to zero") }
        }
        if spec.method.usesDensity && !(spec.density > 0 && spec.density <= 1) {
            throw FormatError("--density must be in (0, 1], got \(spec.density)")
        }
        if let r = spec.rank, r < 1 { throw FormatError("--rank must be positive, got \(r)") }
        let bases = Set(adapters.compactMap(\.baseModel).map { URL(fileURLWithPath: $0).lastPathComponent })
        if bases.count > 1 {
            throw FormatError("the adapters were trained on different base models (\(bases.sorted().joined(separator: ", "))): \(adapters.map { "\($0.origin) → \($0.baseModel ?? "?")" }.joined(separator: "; "))")
        }
        var shapes = [String: (out: Int, in: Int, from: String)]()
        for adapter in adapters {
            for f in adapter.slots.sorted(by: { $0.module < $1.module }) {
                let module = f.module
                if let s = shapes[module], s.out != f.outFeatures || s.in != f.inFeatures {
                    throw FormatError("module \(module) is \(s.out)×\(s.in) in \(s.from) but \(f.outFeatures)×\(f.inFeatures) in \(adapter.origin): the adapters belong to different base models")
                }
                shapes[module] = (f.outFeatures, f.inFeatures, adapter.origin)
            }
        }
    }

    /// Every adapter module must be a linear of `model` with the same shape (BERT's pooler, which
    /// PEFT adapters may carry, is accepted and ignored).
    public static func checkCompatible(_ adapters: [LoRAAdapter], with model: TrainableBackbone, modelPath: String) throws {
        let linears = Dictionary(uniqueKeysWithValues: model.linearLayers.map { ($0.module, ($0.outFeatures, $0.inFeatures)) })
        for a in adapters {
            for f in a.slots.sorted(by: { $0.module < $1.module }) where !model.unusedAdapterModules.contains(f.module) {
                let module = f.module
                guard let shape = linears[module] else {
                    throw FormatError("\(a.origin): module \(module) is not a linear layer of \(modelPath) (is the adapter for another base model?)")
                }
                guard shape == (f.outFeatures, f.inFeatures) else {
                    throw FormatError("\(a.origin): module \(module) is \(f.outFeatures)×\(f.inFeatures), the base's is \(shape.0)×\(shape.1)")
                }
            }
        }
    }

    /// The union of the adapters' modules, byte-ordered (the order the DARE streams are numbered in).
    public static func modules(_ adapters: [LoRAAdapter]) -> [String] {
        Array(Set(adapters.flatMap { $0.slots.map(\.module) })).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    static func weights(_ adapters: [LoRAAdapter], _ spec: MergeSpec) -> [Double] {
        let w = spec.weights ?? Array(repeating: 1, count: adapters.count)
        if spec.method == .linear { let sum = w.reduce(0, +); return w.map { $0 / sum } }
        return w
    }

    /// Dense merged ΔW for every module in the union.
    public static func deltas(_ adapters: [LoRAAdapter], _ spec: MergeSpec) throws -> [MergedDelta] {
        try validate(adapters, spec)
        let w = weights(adapters, spec)
        return try modules(adapters).enumerated().map { m, module in
            let shape = adapters.lazy.compactMap { $0.slot(module) }.first!
            let n = shape.outFeatures * shape.inFeatures
            var tasks = adapters.map { $0.delta(module) ?? [Double](repeating: 0, count: n) }
            var merged = [Double](repeating: 0, count: n)
            switch spec.method {
            case .linear, .taskArithmetic, .cat, .svd:
                weightedSum(tasks, w, into: &merged)
            case .magnitudePrune:
                for i in tasks.indices { magnitudePrune(&tasks[i], density: spec.density) }
                weightedSum(tasks, w, into: &merged)
            case .ties:
                for i in tasks.indices { magnitudePrune(&tasks[i], density: spec.density) }
                signElectedMerge(tasks, w, spec.majoritySign, into: &merged)
            case .dareLinear, .dareTies:
                for i in tasks.indices { darePrune(&tasks[i], density: spec.density, seed: spec.seed, adapter: i, module: m) }
                if spec.method == .dareLinear { weightedSum(tasks, w, into: &merged) } else { signElectedMerge(tasks, w, spec.majoritySign, into: &merged) }
            }
            if spec.method == .svd {
                let r = spec.rank ?? adapters.filter { $0.slot(module) != nil }.map(\.config.r).max()!
                merged = try truncate(merged, rows: shape.outFeatures, columns: shape.inFeatures, rank: r).delta
            }
            return MergedDelta(module: module, outFeatures: shape.outFeatures, inFeatures: shape.inFeatures, values: merged)
        }
    }

    /// The merged adapter as LoRA factors with one rank for all modules. Weighted sums (linear,
    /// task_arithmetic, cat) are exact: the ranks are concatenated, Aᵢ scaled by wᵢ·scaleᵢ, and
    /// modules an adapter lacks padded with zeros. svd is exact by definition; the full-rank methods
    /// (ties, dare_*, magnitude_prune) are truncated by SVD and `relativeError` says how much was
    /// lost (‖ΔW − ΔW_r‖_F / ‖ΔW‖_F over all modules); fold them into the base to keep them exact.
    public static func factors(_ adapters: [LoRAAdapter], _ spec: MergeSpec)
        throws -> (modules: [LoRAFactors], rank: Int, relativeError: Double) {
        try validate(adapters, spec)
        let names = modules(adapters)
        if spec.method.isLowRankExact {
            let w = weights(adapters, spec)
            let rank = adapters.reduce(0) { $0 + $1.config.r }
            let out: [LoRAFactors] = names.map { module in
                let shape = adapters.lazy.compactMap { $0.slot(module) }.first!
                var a = [Float](repeating: 0, count: rank * shape.inFeatures), b = [Float](repeating: 0, count: shape.outFeatures * rank)
                var row = 0
                for (i, adapter) in adapters.enumerated() {
                    if let f = adapter.factors(module) {
                        let c = Float(w[i] * Double(adapter.scale))
                        for j in 0..<(f.rank * f.inFeatures) { a[row * shape.inFeatures + j] = c * f.a[j] }
                        for o in 0..<f.outFeatures { for j in 0..<f.rank { b[o * rank + row + j] = f.b[o * f.rank + j] } }
                    }
                    row += adapter.config.r
                }
                return LoRAFactors(module: module, rank: rank, inFeatures: shape.inFeatures, outFeatures: shape.outFeatures, a: a, b: b)
            }
            return (out, rank, 0)
        }
        let rank = spec.rank ?? (spec.method == .svd ? adapters.map(\.config.r).max()! : adapters.reduce(0) { $0 + $1.config.r })
        var dense = spec
        if spec.method == .svd { dense.method = .taskArithmetic }
        var lost = 0.0, total = 0.0
        let out: [LoRAFactors] = try deltas(adapters, dense).map { d in
            let t = try truncate(d.values, rows: d.outFeatures, columns: d.inFeatures, rank: rank)
            lost += t.discarded; total += t.energy
            return LoRAFactors(module: d.module, rank: rank, inFeatures: d.inFeatures, outFeatures: d.outFeatures, a: t.a, b: t.b)
        }
        return (out, rank, total > 0 ? (lost / total).squareRoot() : 0)
    }

    // MARK: the pieces of peft.utils.merge_utils, on Double task tensors

    static func weightedSum(_ tasks: [[Double]], _ w: [Double], into merged: inout [Double]) {
        for (t, wi) in zip(tasks, w) { for j in merged.indices { merged[j] += wi * t[j] } }
    }

    /// Keeps the k = ⌊density·n⌋ largest magnitudes (ties broken by position), zeroes the rest.
    static func magnitudePrune(_ t: inout [Double], density: Double) {
        guard density < 1 else { return }
        let k = Int(density * Double(t.count))
        let order = t.indices.sorted { abs(t[$0]) != abs(t[$1]) ? abs(t[$0]) > abs(t[$1]) : $0 < $1 }
        for j in order[k...] { t[j] = 0 }
    }

    /// DARE: keep each entry with probability `density` and rescale by 1/density. The mask comes from
    /// a counter-based stream per (seed, adapter, module), so it is reproducible anywhere.
    static func darePrune(_ t: inout [Double], density: Double, seed: UInt64, adapter: Int, module: Int) {
        guard density < 1 else { return }
        let stream = dareStream(seed: seed, adapter: adapter, module: module)
        let threshold = density * Double(1 << 24)
        for e in t.indices {
            let u = mix64(stream ^ UInt64(e)) >> 40
            t[e] = Double(u) < threshold ? t[e] / density : 0
        }
    }

    /// The DARE stream of (seed, adapter index in the merge, module index in the sorted union).
    public static func dareStream(seed: UInt64, adapter: Int, module: Int) -> UInt64 {
        mix64(mix64(mix64(seed) ^ UInt64(adapter)) ^ UInt64(module))
    }

    /// TIES sign election on the (unweighted, pruned) task tensors, then the disjoint mean of the
    /// weighted entries that agree with the elected sign. A zero entry has sign 0 and never counts.
    static func signElectedMerge(_ tasks: [[Double]], _ w: [Double], _ method: MergeSpec.MajoritySign, into merged: inout [Double]) {
        func sign(_ x: Double) -> Double { x > 0 ? 1 : (x < 0 ? -1 : 0) }
        for j in merged.indices {
            var magnitude = 0.0
            for t in tasks { magnitude += method == .total ? t[j] : sign(t[j]) }
            let elected: Double = magnitude >= 0 ? 1 : -1
            var sum = 0.0, kept = 0.0
            for (t, wi) in zip(tasks, w) where sign(t[j]) == elected { sum += wi * t[j]; kept += 1 }
            merged[j] = sum / max(kept, 1)
        }
    }

    /// Best rank-r approximation (Eckart–Young) as LoRA factors B = U_r·S_r, A = V_rᵀ (scale 1).
    static func truncate(_ m: [Double], rows: Int, columns: Int, rank: Int)
        throws -> (a: [Float], b: [Float], delta: [Double], discarded: Double, energy: Double) {
        let (u, s, vt) = try thinSVD(rows: rows, columns: columns, m)
        let k = min(rows, columns), r = min(rank, k)
        var a = [Float](repeating: 0, count: rank * columns), b = [Float](repeating: 0, count: rows * rank)
        var bd = [Double](repeating: 0, count: rows * r), ad = [Double](repeating: 0, count: r * columns)
        for o in 0..<rows { for j in 0..<r { bd[o * r + j] = u[o * k + j] * s[j]; b[o * rank + j] = Float(bd[o * r + j]) } }
        for j in 0..<r { for i in 0..<columns { ad[j * columns + i] = vt[j * columns + i]; a[j * columns + i] = Float(vt[j * columns + i]) } }
        var delta = [Double](repeating: 0, count: rows * columns)
        if r > 0 { dgemm(rows, columns, r, bd, ad, &delta) }
        let energy = s.reduce(0) { $0 + $1 * $1 }, discarded = s[r...].reduce(0) { $0 + $1 * $1 }
        return (a, b, delta, discarded, energy)
    }
}

extension LoRAAdapter {
    /// An adapter holding `factors` as they are (lora_alpha = rank, so the scale is 1).
    public static func fromFactors(_ factors: [LoRAFactors], rank: Int) throws -> LoRAAdapter {
        let adapter = try LoRAAdapter(
            config: LoRAConfig(r: rank, alpha: Double(rank), dropout: 0, targetModules: factors.map(\.module)),
            linears: factors.map { ($0.module, $0.inFeatures, $0.outFeatures) })
        for (slot, f) in zip(adapter.slots, factors) {
            precondition(slot.module == f.module && f.rank == rank)
            adapter.a(slot).update(from: f.a, count: f.a.count)
            adapter.b(slot).update(from: f.b, count: f.b.count)
        }
        return adapter
    }
}
