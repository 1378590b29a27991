import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTraining
import Foundation

/// Where each LoRA module of an adapter sits for the hypernetwork: its layer index (the first
/// number in its path) and its module type (the path with that number replaced by "*").
public struct ModuleLayout: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public let module: String
        public let layer: Int
        public let type: Int
    }

    public let types: [Hypernetwork.Config.ModuleType]
    public let layers: Int
    public let rank: Int
    public let entries: [Entry]

    public init(adapter: LoRAAdapter) throws {
        var types = [Hypernetwork.Config.ModuleType](), typeIndex = [String: Int](), entries = [Entry]()
        var maxLayer = -1
        for s in adapter.slots {
            let parts = s.module.split(separator: ".").map(String.init)
            guard let at = parts.firstIndex(where: { Int($0) != nil }), let layer = Int(parts[at]) else {
                throw FormatError("\(adapter.name): module \(s.module) has no layer index")
            }
            var typed = parts
            typed[at] = "*"
            let name = typed.joined(separator: ".")
            if typeIndex[name] == nil {
                typeIndex[name] = types.count
                types.append(.init(name: name, inFeatures: s.inFeatures, outFeatures: s.outFeatures))
            }
            let t = types[typeIndex[name]!]
            guard t.inFeatures == s.inFeatures, t.outFeatures == s.outFeatures else {
                throw FormatError("\(adapter.name): module \(s.module) is \(s.outFeatures)×\(s.inFeatures), others of its type are \(t.outFeatures)×\(t.inFeatures)")
            }
            entries.append(Entry(module: s.module, layer: layer, type: typeIndex[name]!))
            maxLayer = max(maxLayer, layer)
        }
        guard let rank = adapter.slots.first?.rank else { throw FormatError("\(adapter.name): the adapter has no LoRA modules") }
        self.types = types
        layers = maxLayer + 1
        self.rank = rank
        self.entries = entries
    }
}

/// The library's adapters as the hypernetwork's targets: per module (layer, type), A and B
/// z-scored by that module's mean and standard deviation over the library (separately for A and
/// B), so every module weighs alike in the loss.
public struct HypernetworkTargets {
    public let layout: ModuleLayout
    /// scale = lora_alpha / r of the library's adapters (they must share it).
    public let scale: Float
    /// Per domain: per entry of `layout`, the z-scored [A | B].
    public let targets: [[[Float]]]
    /// Per entry: (mean, std) of A and of B.
    public let statistics: [(meanA: Float, stdA: Float, meanB: Float, stdB: Float)]

    public init(adapters: [LoRAAdapter]) throws {
        guard let first = adapters.first else { throw FormatError("the library has no adapters") }
        let layout = try ModuleLayout(adapter: first)
        for a in adapters.dropFirst() {
            guard try ModuleLayout(adapter: a) == layout else { throw FormatError("adapter \(a.name) has other modules or shapes than \(first.name)") }
            guard a.scale == first.scale else { throw FormatError("adapter \(a.name) has scale \(a.scale), \(first.name) \(first.scale)") }
        }
        var statistics = [(meanA: Float, stdA: Float, meanB: Float, stdB: Float)]()
        var targets = [[[Float]]](repeating: [], count: adapters.count)
        for e in layout.entries {
            let factors = adapters.map { $0.factors(e.module)! }
            func moments(_ values: [[Float]]) -> (Float, Float) {
                let all = values.joined(), n = Double(all.count)
                let mean = all.reduce(0.0) { $0 + Double($1) } / n
                let variance = all.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n
                return (Float(mean), Float(max(variance.squareRoot(), 1e-8)))
            }
            let (ma, sa) = moments(factors.map(\.a)), (mb, sb) = moments(factors.map(\.b))
            statistics.append((ma, sa, mb, sb))
            for (d, f) in factors.enumerated() { targets[d].append(f.a.map { ($0 - ma) / sa } + f.b.map { ($0 - mb) / sb }) }
        }
        self.layout = layout
        scale = first.scale
        self.targets = targets
        self.statistics = statistics
    }
}

/// A trained hypernetwork with what generation needs: the layout it emits, the targets' scales,
/// the embedding model and prompt of descriptions. A directory: hypernetwork.json +
/// hypernetwork.safetensors.
public final class TextToLoRA {
    public struct Manifest: Codable {
        public var format = "embedtune-t2l"
        public var version = 1
        public var config: Hypernetwork.Config
        /// The base model the adapters are for, and the model and prompt descriptions are embedded with.
        public var baseModel: String
        public var descriptionModel: String
        public var descriptionPrompt: String
        public var modules: [String]
        public var moduleLayers: [Int]
        public var moduleTypes: [Int]
        public var scale: Float
        public var objective: String
        public var trainingDomains: [String]
        public var steps: Int

        public init(config: Hypernetwork.Config, baseModel: String, descriptionModel: String, descriptionPrompt: String, modules: [String],
                    moduleLayers: [Int], moduleTypes: [Int], scale: Float, objective: String, trainingDomains: [String], steps: Int) {
            self.config = config; self.baseModel = baseModel; self.descriptionModel = descriptionModel
            self.descriptionPrompt = descriptionPrompt; self.modules = modules; self.moduleLayers = moduleLayers
            self.moduleTypes = moduleTypes; self.scale = scale; self.objective = objective
            self.trainingDomains = trainingDomains; self.steps = steps
        }
    }

    public var manifest: Manifest
    public let network: Hypernetwork
    /// Per module entry: meanA, stdA, meanB, stdB.
    public var statistics: [Float]
    /// Per dimension of a description embedding: the library's mean and standard deviation. A
    /// model's embeddings of any texts share a large common component; the network sees each
    /// description standardised, (e − mean) / std, so that what tells domains apart is not a
    /// small ripple on a constant input.
    public var descriptionMean: [Float]
    public var descriptionStd: [Float]

    public init(manifest: Manifest, network: Hypernetwork, statistics: [Float], descriptionMean: [Float], descriptionStd: [Float]) {
        self.manifest = manifest
        self.network = network
        self.statistics = statistics
        self.descriptionMean = descriptionMean
        self.descriptionStd = descriptionStd
    }

    /// Each dimension's mean and standard deviation over the rows of `embeddings` (row-major, `dim` wide).
    public static func standardisation(_ embeddings: [Float], dim: Int) -> (mean: [Float], std: [Float]) {
        let n = embeddings.count / dim
        var mean = [Float](repeating: 0, count: dim), std = [Float](repeating: 0, count: dim)
        for j in 0..<dim {
            var s = 0.0, ss = 0.0
            for i in 0..<n { let v = Double(embeddings[i * dim + j]); s += v; ss += v * v }
            let m = s / Double(max(n, 1))
            mean[j] = Float(m)
            std[j] = Float(max((ss / Double(max(n, 1)) - m * m).squareRoot(), 1e-6))
        }
        return (mean, std)
    }

    /// `embeddings` (rows of the description dimension) standardised by the library's statistics.
    public func standardised(_ embeddings: [Float]) -> [Float] { Self.standardised(embeddings, mean: descriptionMean, std: descriptionStd) }

    /// Rows of `embeddings` as (e − mean) / std, per dimension.
    public static func standardised(_ embeddings: [Float], mean: [Float], std: [Float]) -> [Float] {
        embeddings.enumerated().map { i, v in (v - mean[i % mean.count]) / std[i % std.count] }
    }

    /// The hypernetwork's rows for one description: every module entry of the manifest, in order.
    public var rows: [(description: Int, layer: Int, module: Int)] {
        manifest.modules.indices.map { (description: 0, layer: manifest.moduleLayers[$0], module: manifest.moduleTypes[$0]) }
    }

    /// Where module entry i's outputs sit in `act.outputs[type]`: its rank among the entries of its type.
    var positionInType: [Int] {
        var seen = [Int](repeating: 0, count: manifest.config.moduleTypes.count)
        return manifest.moduleTypes.map { t in defer { seen[t] += 1 }; return seen[t] }
    }

    /// Per module entry, the outputs of a forward over `rows` with the library's z-scoring undone:
    /// A = y_A·stdA + meanA (r × in) and B = y_B·stdB + meanB (out × r), as the library's adapters
    /// hold them (B before the LoRA scale).
    public func factors(_ act: Hypernetwork.Activations) -> [(a: [Float], b: [Float])] {
        let m = manifest, position = positionInType
        return m.modules.indices.map { i in
            let t = m.moduleTypes[i], p = m.config.outputs(t), na = m.config.rank * m.config.moduleTypes[t].inFeatures
            let y = act.outputs[t][(position[i] * p)..<((position[i] + 1) * p)]
            let (ma, sa, mb, sb) = (statistics[4 * i], statistics[4 * i + 1], statistics[4 * i + 2], statistics[4 * i + 3])
            return (y.prefix(na).map { $0 * sa + ma }, y.dropFirst(na).map { $0 * sb + mb })
        }
    }

    /// The chain rule of `factors`: dL/dy per module type (the shapes of `act.outputs`) from each
    /// entry's dL/dA and dL/dB, read from `gradients(i)`.
    public func outputGradients(_ act: Hypernetwork.Activations,
                                _ gradients: (Int) -> (dA: UnsafePointer<Float>, dB: UnsafePointer<Float>)) -> [[Float]] {
        let m = manifest, position = positionInType
        var d = act.outputs.map { [Float](repeating: 0, count: $0.count) }
        for i in m.modules.indices {
            let t = m.moduleTypes[i], p = m.config.outputs(t), na = m.config.rank * m.config.moduleTypes[t].inFeatures
            let (sa, sb) = (statistics[4 * i + 1], statistics[4 * i + 3]), (dA, dB) = gradients(i), base = position[i] * p
            for j in 0..<na { d[t][base + j] = dA[j] * sa }
            for j in 0..<(p - na) { d[t][base + na + j] = dB[j] * sb }
        }
        return d
    }

    /// The adapter for one description embedding (normalised, D values): every module's A and B,
    /// de-normalised, with B scaled so that the saved adapter (alpha = r) has the library's ΔW.
    public func generate(descriptionEmbedding e: [Float]) throws -> LoRAAdapter {
        let m = manifest
        let act = network.forward(descriptions: standardised(e), rows: rows)
        let factors = zip(m.modules.indices, self.factors(act)).map { i, f in
            let type = m.config.moduleTypes[m.moduleTypes[i]]
            return LoRAFactors(module: m.modules[i], rank: m.config.rank, inFeatures: type.inFeatures, outFeatures: type.outFeatures,
                               a: f.a, b: f.b.map { $0 * m.scale })
        }
        return try LoRAAdapter.fromFactors(factors, rank: m.config.rank)
    }

    static func files(_ directory: URL) -> GeneratorDirectory {
        GeneratorDirectory(directory: directory, manifestName: "hypernetwork.json", weightsName: "hypernetwork.safetensors",
                           format: "embedtune-t2l", writer: "embedtune t2l train")
    }

    public func save(to directory: URL) throws {
        try Self.files(directory).save(manifest, params: network.params, vectors: [
            ("statistics", [statistics.count / 4, 4], statistics), ("description_mean", [descriptionMean.count], descriptionMean),
            ("description_std", [descriptionStd.count], descriptionStd),
        ])
    }

    public static func load(_ directory: URL) throws -> TextToLoRA {
        let files = files(directory)
        let manifest = try files.manifest(Manifest.self)
        guard manifest.format == "embedtune-t2l", manifest.modules.count == manifest.moduleLayers.count,
              manifest.modules.count == manifest.moduleTypes.count else {
            throw FormatError(url: files.manifestURL, "inconsistent manifest (format or module lists)")
        }
        let network = Hypernetwork(config: manifest.config)
        let file = try files.weights(into: network.params)
        let dim = manifest.config.descriptionDim
        return TextToLoRA(manifest: manifest, network: network,
                          statistics: try GeneratorDirectory.vector(file, "statistics", count: 4 * manifest.modules.count),
                          descriptionMean: try GeneratorDirectory.vector(file, "description_mean", count: dim),
                          descriptionStd: try GeneratorDirectory.vector(file, "description_std", count: dim))
    }
}

/// Reconstruction training: the L1 distance between the generated and the library's z-scored A
/// and B, for (domain, description) pairs drawn each step; data-parallel, each rank taking an
/// equal share of the step's pairs and the gradients summed over ranks.
public struct ReconstructionTrainer {
    public var steps = 1000
    public var batch = 8
    public var learningRate: Float = 1e-3
    public var weightDecay: Float = 0.01
    public var warmupSteps = 50
    public var seed: UInt64 = 42

    public init() {}

    /// `descriptions[d]`: domain d's description embeddings, (count, D) row-major. Returns the
    /// loss after each step (the mean over the step's pairs).
    public func train(_ network: Hypernetwork, targets: HypernetworkTargets, descriptions: [[Float]], communicator: Communicator,
                      progress: (Int, Float) -> Void = { _, _ in }) throws -> [Float] {
        let dim = network.config.descriptionDim
        let optimizer = AdamW(count: network.parameterCount, weightDecay: weightDecay)
        let schedule = LearningRateSchedule(peak: learningRate, warmupSteps: warmupSteps, totalSteps: steps, decay: .cosine)
        var rng = SplitMix64(seed: seed)
        var losses = [Float]()
        for step in 1...steps {
            // Every rank draws the same pairs; each takes its share.
            let pairs = (0..<batch).map { _ -> (Int, Int) in
                let d = Int(rng.next() % UInt64(descriptions.count))
                return (d, Int(rng.next() % UInt64(descriptions[d].count / dim)))
            }
            let mine = pairs.enumerated().filter { $0.offset % communicator.size == communicator.rank }.map(\.element)
            network.zeroGrads()
            var lossSum: Float = 0
            if !mine.isEmpty {
                var embeddings = [Float]()
                for (d, k) in mine { embeddings += descriptions[d][(k * dim)..<((k + 1) * dim)] }
                var rows = [(description: Int, layer: Int, module: Int)]()
                for (j, _) in mine.enumerated() { for e in targets.layout.entries { rows.append((j, e.layer, e.type)) } }
                let act = network.forward(descriptions: embeddings, rows: rows)
                // Per type, the outputs are in row order: pair j's entries of that type, in layout order.
                let count = Float(batch * targets.targets[0].reduce(0) { $0 + $1.count })
                var dOutputs = act.outputs.map { [Float](repeating: 0, count: $0.count) }
                var cursor = [Int](repeating: 0, count: network.config.moduleTypes.count)
                for (d, _) in mine {
                    for (ei, e) in targets.layout.entries.enumerated() {
                        let t = e.type, p = network.config.outputs(t), r = cursor[t]
                        cursor[t] += 1
                        let target = targets.targets[d][ei]
                        for q in 0..<p {
                            let diff = act.outputs[t][r * p + q] - target[q]
                            lossSum += abs(diff)
                            dOutputs[t][r * p + q] = diff > 0 ? 1 / count : diff < 0 ? -1 / count : 0
                        }
                    }
                }
                network.backward(act, dOutputs: dOutputs)
                lossSum /= count
            }
            var totals = [lossSum]
            if communicator.size > 1 {
                try communicator.allReduceSum(network.grads.pointer, count: network.parameterCount)
                try totals.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: 1) }
            }
            optimizer.update(params: network.params.pointer, grads: network.grads.pointer, lr: schedule.rate(at: step - 1))
            losses.append(totals[0])
            progress(step, totals[0])
        }
        return losses
    }
}
