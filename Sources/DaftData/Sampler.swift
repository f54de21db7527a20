import Foundation

/// The plan of global batches for data-parallel training, with `DistributedSampler` semantics for a
/// **global** batch split over ranks.
///
/// Each epoch the sample order is a permutation that is a pure function of (seed, epoch): Fisher–Yates
/// driven by a SplitMix64 generator seeded with hash(seed, epoch), identical on every rank. The
/// permutation is cut into consecutive global batches of `globalBatch` samples; the short tail is
/// handled by `tail`. Rank r of W takes positions r, r+W, r+2W, ... of each global batch (strided), so
/// the union over ranks of their local batches is exactly the global batch, for any W.
public struct GlobalBatchPlan: Sendable, Equatable {
    /// What to do with the last global batch when `count` is not a multiple of `globalBatch`.
    public enum TailPolicy: String, Sendable, CaseIterable {
        /// Drop the short last global batch (every step has a full global batch).
        case drop
        /// Keep the short last global batch: ranks may get unequal counts, even zero.
        case short
        /// Pad the last global batch to full size with samples from the start of the epoch's
        /// permutation (cyclically if needed), so some samples appear twice. For training only.
        case pad
    }

    /// Number of samples in the dataset.
    public let count: Int
    /// Samples per global batch (summed over ranks).
    public let globalBatch: Int
    /// Number of ranks.
    public let worldSize: Int
    /// Base seed of the per-epoch permutations.
    public let seed: UInt64
    /// Whether to permute (`false`: natural order 0 ..< count every epoch).
    public let shuffle: Bool
    /// The tail policy.
    public let tail: TailPolicy

    /// A plan; `globalBatch` and `worldSize` must be positive and `count` non-negative.
    public init(count: Int, globalBatch: Int, worldSize: Int, seed: UInt64, shuffle: Bool, tail: TailPolicy) {
        precondition(count >= 0, "count must be non-negative")
        precondition(globalBatch > 0, "global batch must be positive")
        precondition(worldSize > 0, "world size must be positive")
        self.count = count
        self.globalBatch = globalBatch
        self.worldSize = worldSize
        self.seed = seed
        self.shuffle = shuffle
        self.tail = tail
    }

    /// Number of global batches (optimizer steps) per epoch.
    public var batchesPerEpoch: Int {
        switch tail {
        case .drop: return count / globalBatch
        case .short, .pad: return (count + globalBatch - 1) / globalBatch
        }
    }

    /// The sample order of `epoch` (a permutation of 0 ..< count, or the identity without shuffle).
    public func permutation(epoch: Int) -> [Int] {
        var p = Array(0..<count)
        guard shuffle, count > 1 else { return p }
        var rng = SplitMix64(keys: 0x5348_5546_464C_4500, seed, UInt64(bitPattern: Int64(epoch)))
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = Int(rng.next(upperBound: UInt64(i + 1)))
            p.swapAt(i, j)
        }
        return p
    }

    /// The global batches of `epoch`, in step order.
    public func globalBatches(epoch: Int) -> [[Int]] {
        let p = permutation(epoch: epoch)
        var batches: [[Int]] = []
        batches.reserveCapacity(batchesPerEpoch)
        var start = 0
        while start < count {
            let end = min(count, start + globalBatch)
            var b = Array(p[start..<end])
            if b.count < globalBatch {
                switch tail {
                case .drop: return batches
                case .short: break
                case .pad:
                    var k = 0
                    while b.count < globalBatch { b.append(p[k % count]); k += 1 }
                }
            }
            batches.append(b)
            start = end
        }
        return batches
    }

    /// The global batch `step` of `epoch` (0-based, `< batchesPerEpoch`).
    public func globalBatch(epoch: Int, step: Int) -> [Int] {
        globalBatches(epoch: epoch)[step]
    }

    /// The positions r, r+W, r+2W, ... of `globalBatch` that rank `rank` processes (possibly empty).
    public func localIndices(globalBatch: [Int], rank: Int) -> [Int] {
        precondition(rank >= 0 && rank < worldSize, "rank \(rank) out of 0..<\(worldSize)")
        return Self.strided(globalBatch, rank: rank, worldSize: worldSize)
    }

    /// Number of samples rank `rank` receives from a global batch of `size` samples.
    public static func localCount(globalBatchSize size: Int, rank: Int, worldSize: Int) -> Int {
        size > rank ? (size - rank + worldSize - 1) / worldSize : 0
    }

    /// Positions r, r+W, ... of `batch`.
    static func strided(_ batch: [Int], rank: Int, worldSize: Int) -> [Int] {
        guard rank < batch.count else { return [] }
        return Array(stride(from: rank, to: batch.count, by: worldSize).map { batch[$0] })
    }
}

/// Evaluation sharding: each rank gets a disjoint contiguous slice of `0 ..< count` (sizes differ
/// by at most one; the first `count % worldSize` ranks get one more), so every sample is evaluated
/// exactly once across ranks, with no padding. Sum per-rank correct/total counts with an all-reduce.
public struct EvaluationShard: Sendable, Equatable {
    /// Number of samples in the dataset.
    public let count: Int
    /// This rank.
    public let rank: Int
    /// Number of ranks.
    public let worldSize: Int

    /// The shard of `rank` among `worldSize` ranks.
    public init(count: Int, rank: Int, worldSize: Int) {
        precondition(count >= 0 && worldSize > 0 && rank >= 0 && rank < worldSize)
        self.count = count
        self.rank = rank
        self.worldSize = worldSize
    }

    /// This rank's sample indices.
    public var range: Range<Int> {
        let base = count / worldSize, extra = count % worldSize
        let lo = rank * base + min(rank, extra)
        return lo ..< lo + base + (rank < extra ? 1 : 0)
    }

    /// This rank's share of whole batches: the data set cut into consecutive batches of `batchSize` (the last may be
    /// short), the batches split over the ranks as `range` splits samples. A forward pass's float32 rounding depends on
    /// the batch an image is in (~1e-7 relative); with these ranges every image meets the same batch on any number of
    /// ranks, so per-sample features — and what is solved from them — do not change with the rank count.
    public func wholeBatchRange(batchSize: Int) -> Range<Int> {
        precondition(batchSize > 0)
        let batches = EvaluationShard(count: (count + batchSize - 1) / batchSize, rank: rank, worldSize: worldSize).range
        return min(batches.lowerBound * batchSize, count) ..< min(batches.upperBound * batchSize, count)
    }

    /// This rank's indices in consecutive batches of at most `batchSize`.
    public func batches(batchSize: Int) -> [[Int]] {
        precondition(batchSize > 0)
        let r = range
        return stride(from: r.lowerBound, to: r.upperBound, by: batchSize).map {
            Array($0 ..< min(r.upperBound, $0 + batchSize))
        }
    }

    /// The largest number of batches of `batchSize` any rank gets (ranks with fewer can join
    /// collectives with empty batches to stay in step).
    public func maxBatchCount(batchSize: Int) -> Int {
        let biggest = (count + worldSize - 1) / worldSize
        return (biggest + batchSize - 1) / batchSize
    }
}
