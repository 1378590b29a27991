import Foundation

/// ms-swift's `infonce` loss options (its INFONCE_* settings).
public struct InfoNCEOptions: Codable, Equatable, Sendable {
    /// Candidates include every other row's positive and negatives (INFONCE_USE_BATCH).
    public var useBatch = true
    /// Mask candidates scoring above positive + margin (cosine, before τ) as likely false negatives.
    public var maskFakeNegative = false
    public var fakeNegativeMargin: Float = 0.1
    /// Add query–query similarities (j ≠ i) to the denominator.
    public var includeQQ = false
    /// Add positive–document similarities (the row's own positive excluded) to the denominator.
    public var includeDD = false
    /// Mask candidates whose text equals the row's positive (duplicates across the batch).
    public var maskDuplicates = true
    public init() {}

    enum CodingKeys: String, CodingKey {
        case useBatch = "use_batch", maskFakeNegative = "mask_fake_negative", fakeNegativeMargin = "fake_negative_margin"
        case includeQQ = "include_qq", includeDD = "include_dd", maskDuplicates = "mask_duplicates"
    }
}

/// One contrastive batch of unit-norm embeddings: B queries and M documents (each row's
/// positive and hard negatives, row after row).
public struct ContrastiveBatch {
    public var dim: Int
    public var queries: [Float]          // (B, D)
    public var documents: [Float]        // (M, D)
    public var positiveIndex: [Int]      // (B) row → its positive among documents
    public var documentRow: [Int]        // (M) document → owning row
    public var documentKey: [UInt64]     // (M) text identity, for duplicate masking
    public var rows: Int { positiveIndex.count }

    public init(dim: Int, queries: [Float], documents: [Float], positiveIndex: [Int], documentRow: [Int],
                documentKey: [UInt64]) {
        self.dim = dim
        self.queries = queries
        self.documents = documents
        self.positiveIndex = positiveIndex
        self.documentRow = documentRow
        self.documentKey = documentKey
    }
}

public struct InfoNCEResult {
    public var loss: Double
    public var dQueries: [Float]
    public var dDocuments: [Float]
    /// dL/d log τ summed over rows (for a learnable temperature).
    public var dLogTemperature: Double
    /// Mean positive score and mean hardest-negative score (cosine), for logging: over the rows
    /// scored, and over those of them that had a negative (`rowsWithNegative`).
    public var meanPositive: Double
    public var meanHardestNegative: Double
    public var rowsWithNegative = 0
}

/// InfoNCE over a contrastive batch: row i scores candidates by cosine / τᵢ and takes the cross
/// entropy of its positive; the loss is the mean over rows. Gradients are with respect to the
/// (already normalised) embeddings. τ may differ per row (adaptive temperature).
///
/// With `scored`, only those rows' terms are computed (still divided by the batch's row count):
/// the loss, dL/dlogτ and the gradients are that share of the whole batch's, so the shares of
/// disjoint row ranges add up to the whole (the sharded loss of `InfoNCELoss`); the logged means
/// are over the scored rows.
public func infoNCE(_ b: ContrastiveBatch, temperatures tau: [Float], options o: InfoNCEOptions,
                    scored: Range<Int>? = nil) -> InfoNCEResult {
    let d = b.dim, rows = b.rows, m = b.documentRow.count, scored = scored ?? 0..<rows
    precondition(tau.count == rows, "one temperature per row")
    var dq = [Float](repeating: 0, count: rows * d), dd = [Float](repeating: 0, count: m * d)
    var loss = 0.0, dLogTau = 0.0, posSum = 0.0, hardSum = 0.0, hardCount = 0
    func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>) -> Float {
        var s: Float = 0
        for k in 0..<d { s += x[k] * y[k] }
        return s
    }
    b.queries.withUnsafeBufferPointer { qs in
        b.documents.withUnsafeBufferPointer { ds in
            let q = qs.baseAddress!, docs = ds.baseAddress!
            // Candidate kinds: document j scored by query i (qd), query k (qq), or positive-vs-document (dd).
            enum Kind { case qd(Int), qq(Int), dd(Int) }
            for i in scored {
                let qi = q + i * d, pos = b.positiveIndex[i], pi = docs + pos * d
                let posScore = dot(qi, pi)
                let threshold = posScore + o.fakeNegativeMargin
                var kinds = [Kind](), sims = [Float]()
                var hardest = -Float.infinity
                for j in 0..<m where o.useBatch || b.documentRow[j] == i {
                    let s = dot(qi, docs + j * d)
                    if j != pos {
                        if o.maskFakeNegative && s > threshold { continue }
                        if o.maskDuplicates && b.documentKey[j] == b.documentKey[pos] { continue }
                        hardest = max(hardest, s)
                    }
                    kinds.append(.qd(j)); sims.append(s)
                }
                if o.includeQQ {
                    for k in 0..<rows where k != i {
                        let s = dot(qi, q + k * d)
                        if o.maskFakeNegative && s > threshold { continue }
                        kinds.append(.qq(k)); sims.append(s)
                    }
                }
                if o.includeDD {
                    for j in 0..<m where j != pos && (o.useBatch || b.documentRow[j] == i) {
                        kinds.append(.dd(j)); sims.append(dot(pi, docs + j * d))
                    }
                }
                posSum += Double(posScore)
                if hardest > -Float.infinity { hardSum += Double(hardest); hardCount += 1 }
                // Cross entropy with the positive as target, in Double for a stable log-sum-exp.
                let t = Double(tau[i])
                let logits = sims.map { Double($0) / t }
                let mx = logits.max() ?? 0
                let exps = logits.map { exp($0 - mx) }
                let z = exps.reduce(0, +)
                let label = kinds.firstIndex { if case .qd(let j) = $0 { return j == pos }; return false }!
                loss += (log(z) + mx - logits[label]) / Double(rows)
                for (c, kind) in kinds.enumerated() {
                    // dL/dlogit = (softmax − onehot) / rows; dlogit/dsim = 1/τ; dlogit/dlogτ = −logit.
                    let g = (exps[c] / z - (c == label ? 1 : 0)) / Double(rows)
                    dLogTau -= g * logits[c]
                    let gs = Float(g / t)
                    switch kind {
                    case .qd(let j):
                        for k in 0..<d { dq[i * d + k] += gs * docs[j * d + k]; dd[j * d + k] += gs * qi[k] }
                    case .qq(let j):
                        for k in 0..<d { dq[i * d + k] += gs * q[j * d + k]; dq[j * d + k] += gs * qi[k] }
                    case .dd(let j):
                        for k in 0..<d { dd[pos * d + k] += gs * docs[j * d + k]; dd[j * d + k] += gs * pi[k] }
                    }
                }
            }
        }
    }
    return InfoNCEResult(loss: loss, dQueries: dq, dDocuments: dd, dLogTemperature: dLogTau,
                         meanPositive: posSum / Double(max(scored.count, 1)),
                         meanHardestNegative: hardCount > 0 ? hardSum / Double(hardCount) : .nan, rowsWithNegative: hardCount)
}
