import EmbedTuneTokenizers

/// Which rows of a global micro-batch each rank embeds.
///
/// Every rank waits at the embedding all-gather and the gradient all-reduce for the slowest one,
/// and a rank's work is its rows' tokens. Contiguous slices of a shuffled batch leave the slowest
/// rank 2–4% above the mean on real QA data at 16 rows per rank (the Zaragoza FAQ: answers of
/// 63 ± 21 tokens), 4–11% at 4 rows per rank on 2–8 ranks. With the gather on, the loss is the
/// same whichever rank embeds a row, so the rows are dealt out by estimated cost instead.
public enum RankBalance {
    /// Splits rows 0..<costs.count into `ranks` groups of equal size (costs.count must divide
    /// evenly) with nearly equal summed cost: rows in order of decreasing cost, each to the rank
    /// with the least cost so far that still has room (ties: the lower row, the lower rank).
    /// Each group comes back in ascending row order. The result depends only on the costs, so
    /// every rank computes the same split without communicating.
    public static func slices(costs: [Double], ranks: Int) -> [[Int]] {
        precondition(ranks > 0 && costs.count % ranks == 0, "\(costs.count) rows do not split evenly over \(ranks) ranks")
        let capacity = costs.count / ranks
        var load = [Double](repeating: 0, count: ranks), groups = [[Int]](repeating: [], count: ranks)
        let order = costs.indices.sorted { costs[$0] != costs[$1] ? costs[$0] > costs[$1] : $0 < $1 }
        for row in order {
            var best = -1
            for r in 0..<ranks where groups[r].count < capacity && (best < 0 || load[r] < load[best]) { best = r }
            groups[best].append(row)
            load[best] += costs[row]
        }
        return groups.map { $0.sorted() }
    }
}

/// A row's cost in the forward and backward pass, estimated from its texts' lengths without
/// tokenising them: tokens from UTF-8 bytes at a ratio measured once on the first training rows
/// (the same rows on every rank, so every rank estimates the same), capped at max_length, and
/// weighted by 1 + L/reach for attention, whose cost per token grows with the sequence length L.
struct TokenCostModel {
    var tokensPerByte: Double
    var maxLength: Int
    /// The length at which attention costs as much per token as the linear layers:
    /// linear FLOPs per token 2·P over attention's 4·L·C per layer and token.
    var reach: Double

    init(sample: [String], tokenizer: Tokenizer, maxLength: Int, linearParameters: Int, layers: Int, hiddenSize: Int) {
        let bytes = sample.reduce(0) { $0 + $1.utf8.count }
        let tokens = tokenizer.encodeBatch(sample).reduce(0) { $0 + $1.count }
        tokensPerByte = bytes > 0 && tokens > 0 ? Double(tokens) / Double(bytes) : 0.25
        self.maxLength = maxLength
        reach = layers > 0 && hiddenSize > 0 ? Double(linearParameters) / Double(2 * layers * hiddenSize) : .infinity
    }

    func cost(_ text: String) -> Double {
        let length = min(Double(maxLength), (Double(text.utf8.count) * tokensPerByte).rounded(.up) + 2)
        return length * (1 + length / reach)
    }
}
