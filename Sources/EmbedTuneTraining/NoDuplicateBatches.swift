/// `batch_sampler = "no_duplicates"`: batches in which no text appears twice, across rows and
/// columns (sentence-transformers' NoDuplicatesBatchSampler). With in-batch negatives a text
/// that is one row's positive and another row's hard negative, or two rows' positive, is scored
/// against itself; these batches never hold such a pair.
///
/// One pass walks a shuffled order and fills a batch with each row none of whose texts is in it
/// yet; a row that clashes waits, in order, for a later batch. Only full batches count. When a
/// pass gives fewer batches than the epoch needs, further passes over fresh shuffles add theirs.
public enum NoDuplicateBatches {
    /// sentence-transformers' `_MAX_RESAMPLE_PASSES`: passes after the first before giving up
    /// (the default of `no_duplicates_resample_passes`).
    public static let extraPasses = 2

    /// The full batches of `size` rows that one pass over `order` yields; `keys(row)` are the
    /// row's texts (hashed). The walk is sentence-transformers' `_iter_one_pass` with drop_last:
    /// a batch left short at the end of the list is dropped and the walk goes on from the
    /// rows it passed over, so a full batch may still follow.
    public static func pass(order: [Int], size: Int, keys: (Int) -> [UInt64]) -> [[Int]] {
        guard !order.isEmpty, size > 0 else { return [] }
        // A singly linked list over positions in `order`; -1 ends it.
        var next = Array(1...order.count)
        next[order.count - 1] = -1
        var head = 0, batches = [[Int]]()
        while head != -1 {
            var seen = Set<UInt64>(), batch = [Int](), current = head, previous = -1
            while current != -1 {
                let following = next[current], row = order[current], rowKeys = keys(row)
                if rowKeys.contains(where: seen.contains) {
                    previous = current
                    current = following
                    continue
                }
                batch.append(row)
                if previous == -1 { head = following } else { next[previous] = following }
                if batch.count == size { batches.append(batch); break }
                seen.formUnion(rowKeys)
                current = following
            }
        }
        return batches
    }

    /// Up to `count` batches: the first pass over `order(0)`, then passes over `order(1)`,
    /// `order(2)`… (at most `extraPasses` of them); fewer when the rows share too many texts.
    public static func batches(count: Int, size: Int, extraPasses: Int = extraPasses, order: (Int) -> [Int],
                               keys: (Int) -> [UInt64]) -> [[Int]] {
        var out = [[Int]]()
        for p in 0...max(0, extraPasses) where out.count < count {
            out += pass(order: order(p), size: size, keys: keys)
        }
        return Array(out.prefix(count))
    }
}
