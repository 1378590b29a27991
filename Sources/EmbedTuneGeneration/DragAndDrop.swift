import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTraining
import Foundation

/// Drag-and-Drop (Liang et al., 2025): a batch of a domain's unlabeled queries in, its LoRA
/// adapter out. The condition is the queries' pooled embeddings by the frozen base model
/// (standardised per dimension over the library's queries), one query per slice of the
/// hyper-convolutional decoder's S axis with its D values laid out as (H, W); the decoder's output
/// rows are cut into the adapter:
///
///     condition (N, H0, W0)  = N query embeddings, D = H0·W0
///     output    (R, H, W)    = R chunks of C = H·W values
///     module entry i's z-scored [A | B] (r·(in + out) values) = its ⌈·/C⌉ chunks, the last one
///     padded (the padding masked out of the loss)
///
/// Pooled embeddings rather than token-level states: the base model's own pooled embedding is
/// what retrieval sees of a query, it is one vector per query whatever its length (no padding
/// axis to mask), and N of them fit the decoder's S axis directly.
public final class DragAndDrop {
    public struct Manifest: Codable {
        public var format = "embedtune-dnd"
        public var version = 1
        public var decoder: HyperConvDecoder.Config
        public var baseModel: String
        public var queryPrompt: String
        public var modules: [String]
        public var moduleRank: Int
        public var moduleShapes: [[Int]]   // [in, out] per module
        public var scale: Float
        public var trainingDomains: [String]
        public var trainingAdapters: Int
        public var steps: Int

        public init(decoder: HyperConvDecoder.Config, baseModel: String, queryPrompt: String, modules: [String], moduleRank: Int,
                    moduleShapes: [[Int]], scale: Float, trainingDomains: [String], trainingAdapters: Int, steps: Int) {
            self.decoder = decoder; self.baseModel = baseModel; self.queryPrompt = queryPrompt; self.modules = modules
            self.moduleRank = moduleRank; self.moduleShapes = moduleShapes; self.scale = scale
            self.trainingDomains = trainingDomains; self.trainingAdapters = trainingAdapters; self.steps = steps
        }

        /// Queries per condition (the decoder's first S).
        public var queries: Int { decoder.features[0][0] }
        /// Values per output chunk.
        public var chunk: Int { decoder.features.last![1] * decoder.features.last![2] }
        /// Values of module entry i: A (r × in) then B (out × r).
        public func values(_ i: Int) -> Int { moduleRank * (moduleShapes[i][0] + moduleShapes[i][1]) }
        /// Output rows the modules need, in order.
        public var rows: Int { modules.indices.reduce(0) { $0 + (values($1) + chunk - 1) / chunk } }
    }

    public var manifest: Manifest
    public let decoder: HyperConvDecoder
    /// Per module entry: meanA, stdA, meanB, stdB (the library's z-scoring).
    public var statistics: [Float]
    /// Per dimension of a query embedding: the library's mean and standard deviation.
    public var conditionMean: [Float]
    public var conditionStd: [Float]

    public init(manifest: Manifest, decoder: HyperConvDecoder, statistics: [Float], conditionMean: [Float], conditionStd: [Float]) throws {
        let d = manifest.decoder
        guard d.features[0][1] * d.features[0][2] == conditionMean.count else {
            throw FormatError("the decoder's first shape \(d.features[0]) does not hold \(conditionMean.count)-dimensional query embeddings")
        }
        guard d.features.last![0] == manifest.rows else {
            throw FormatError("the decoder emits \(d.features.last![0]) rows of \(manifest.chunk); the adapter's modules need \(manifest.rows)")
        }
        self.manifest = manifest
        self.decoder = decoder
        self.statistics = statistics
        self.conditionMean = conditionMean
        self.conditionStd = conditionStd
    }

    /// The decoder's input for one batch of query embeddings (rows of D): standardised, cycled to
    /// the N the decoder takes when fewer are given, the first N when more.
    public func condition(_ embeddings: [Float]) -> [Float] {
        let dim = conditionMean.count, count = embeddings.count / dim, n = manifest.queries
        precondition(count > 0)
        var out = [Float](repeating: 0, count: n * dim)
        for q in 0..<n {
            let source = q % count
            for j in 0..<dim { out[q * dim + j] = (embeddings[source * dim + j] - conditionMean[j]) / conditionStd[j] }
        }
        return out
    }

    /// One adapter's z-scored [A | B] per module entry laid out as the decoder's output, and the
    /// mask of the positions that hold values (1) rather than padding (0).
    public func target(_ zScored: [[Float]]) -> (values: [Float], mask: [Float]) {
        let c = manifest.chunk
        var values = [Float](repeating: 0, count: manifest.rows * c), mask = values
        var row = 0
        for (i, v) in zScored.enumerated() {
            precondition(v.count == manifest.values(i))
            for j in 0..<v.count { values[row * c + j] = v[j]; mask[row * c + j] = 1 }
            row += (v.count + c - 1) / c
        }
        return (values, mask)
    }

    /// The adapter for one decoder output: each module's chunks, de-normalised; B scaled so that
    /// the saved adapter (alpha = r) has the library's ΔW.
    public func adapter(fromOutput y: ArraySlice<Float>) throws -> LoRAAdapter {
        let m = manifest, c = m.chunk, r = m.moduleRank
        var factors = [LoRAFactors](), row = 0
        let base = y.startIndex
        for (i, module) in m.modules.enumerated() {
            let (inF, outF) = (m.moduleShapes[i][0], m.moduleShapes[i][1]), na = r * inF
            let start = base + row * c
            let (ma, sa, mb, sb) = (statistics[4 * i], statistics[4 * i + 1], statistics[4 * i + 2], statistics[4 * i + 3])
            let a = y[start..<(start + na)].map { $0 * sa + ma }
            let b = y[(start + na)..<(start + m.values(i))].map { ($0 * sb + mb) * m.scale }
            factors.append(LoRAFactors(module: module, rank: r, inFeatures: inF, outFeatures: outF, a: a, b: b))
            row += (m.values(i) + c - 1) / c
        }
        return try LoRAAdapter.fromFactors(factors, rank: r)
    }

    /// The adapter for a batch of query embeddings (rows of D).
    public func generate(queryEmbeddings: [Float]) throws -> LoRAAdapter {
        let act = decoder.forward(condition(queryEmbeddings), samples: 1)
        return try adapter(fromOutput: act.output[...])
    }

    static func files(_ directory: URL) -> GeneratorDirectory {
        GeneratorDirectory(directory: directory, manifestName: "generator.json", weightsName: "generator.safetensors",
                           format: "embedtune-dnd", writer: "embedtune dnd train")
    }

    public func save(to directory: URL) throws {
        try Self.files(directory).save(manifest, params: decoder.params, vectors: [
            ("statistics", [statistics.count / 4, 4], statistics), ("condition_mean", [conditionMean.count], conditionMean),
            ("condition_std", [conditionStd.count], conditionStd),
        ])
    }

    public static func load(_ directory: URL) throws -> DragAndDrop {
        let files = files(directory)
        let manifest = try files.manifest(Manifest.self)
        guard manifest.format == "embedtune-dnd", manifest.modules.count == manifest.moduleShapes.count,
              manifest.moduleShapes.allSatisfy({ $0.count == 2 && $0.allSatisfy { $0 > 0 } }), manifest.moduleRank > 0 else {
            throw FormatError(url: files.manifestURL, "inconsistent manifest (format, module lists or shapes)")
        }
        let decoder = try HyperConvDecoder(config: manifest.decoder)
        let file = try files.weights(into: decoder.params)
        let dim = manifest.decoder.features[0][1] * manifest.decoder.features[0][2]
        do {
            return try DragAndDrop(manifest: manifest, decoder: decoder,
                                   statistics: try GeneratorDirectory.vector(file, "statistics", count: 4 * manifest.modules.count),
                                   conditionMean: try GeneratorDirectory.vector(file, "condition_mean", count: dim),
                                   conditionStd: try GeneratorDirectory.vector(file, "condition_std", count: dim))
        } catch let error as FormatError where error.file.isEmpty { throw FormatError(url: files.manifestURL, error.problem) }
    }
}

/// Training the generator: each step draws (adapter, query batch) pairs — an adapter of a
/// domain (a checkpoint of its training or the final one) and N of that domain's training
/// queries at random — and minimises the mean squared error between the decoder's output and the
/// adapter's z-scored tensors over the unpadded positions. Data-parallel: every rank draws the
/// same pairs and takes an equal share; the gradients are summed over ranks.
public struct DragAndDropTrainer {
    public var steps = 1000
    public var batch = 4
    public var learningRate: Float = 1e-3
    public var weightDecay: Float = 0.01
    public var warmupSteps = 50
    public var maxGradNorm: Float = 1
    public var seed: UInt64 = 42

    public init() {}

    /// `targets[a]`: adapter a's output-shaped target and mask; `domainOf[a]` its domain;
    /// `queries[d]`: domain d's query embeddings (rows of D). Returns each step's loss.
    public func train(_ dnd: DragAndDrop, targets: [(values: [Float], mask: [Float])], domainOf: [Int], queries: [[Float]],
                      communicator: Communicator, progress: (Int, Float) -> Void = { _, _ in }) throws -> [Float] {
        let decoder = dnd.decoder, dim = dnd.conditionMean.count, n = dnd.manifest.queries
        let optimizer = AdamW(count: decoder.parameterCount, weightDecay: weightDecay)
        let schedule = LearningRateSchedule(peak: learningRate, warmupSteps: warmupSteps, totalSteps: steps, decay: .cosine)
        // Each target's unpadded positions, times the pairs of a step: the mean's denominator.
        let denominators = targets.map { $0.mask.reduce(0, +) * Float(batch) }
        var rng = SplitMix64(seed: seed)
        var losses = [Float]()
        for step in 1...steps {
            let pairs = (0..<batch).map { _ -> (adapter: Int, queries: [Int]) in
                let a = Int(rng.next() % UInt64(targets.count)), count = queries[domainOf[a]].count / dim
                return (a, (0..<n).map { _ in Int(rng.next() % UInt64(count)) })
            }
            let mine = pairs.enumerated().filter { $0.offset % communicator.size == communicator.rank }.map(\.element)
            decoder.zeroGrads()
            var lossSum: Float = 0
            if !mine.isEmpty {
                var input = [Float]()
                for p in mine {
                    let q = queries[domainOf[p.adapter]]
                    input += dnd.condition(p.queries.flatMap { q[($0 * dim)..<(($0 + 1) * dim)] })
                }
                let act = decoder.forward(input, samples: mine.count)
                let per = dnd.decoder.config.outputCount
                var dOutput = [Float](repeating: 0, count: act.output.count)
                for (j, p) in mine.enumerated() {
                    let (values, mask) = targets[p.adapter]
                    let count = denominators[p.adapter]
                    for i in 0..<per where mask[i] != 0 {
                        let diff = act.output[j * per + i] - values[i]
                        lossSum += diff * diff / count
                        dOutput[j * per + i] = 2 * diff / count
                    }
                }
                decoder.backward(act, dOutput: dOutput)
            }
            var totals = [lossSum]
            if communicator.size > 1 {
                try communicator.allReduceSum(decoder.grads.pointer, count: decoder.parameterCount)
                try totals.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: 1) }
            }
            clipGlobalNorm(decoder.grads.pointer, count: decoder.parameterCount, maxNorm: maxGradNorm)
            optimizer.update(params: decoder.params.pointer, grads: decoder.grads.pointer, lr: schedule.rate(at: step - 1))
            losses.append(totals[0])
            progress(step, totals[0])
        }
        return losses
    }
}
