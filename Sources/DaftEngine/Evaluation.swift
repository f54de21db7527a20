import Foundation
import DaftKernels
import DaftModels
import DaftData
import DaftDistributed

/// Accuracy, loss and feature distortion counted exactly once per sample on any number of ranks
/// (each rank takes a disjoint slice; per-rank counts are all-reduced; no padding duplicates).
public enum Evaluation {
    /// Accuracy and mean loss over a data set.
    public struct Result: Codable, Equatable {
        public var accuracy: Double
        public var loss: Double
        public var count: Int
    }

    /// Evaluation-mode accuracy and loss of `model` on `dataset`.
    /// `progress(done, total)` is called after each of this rank's batches.
    public static func evaluate(model: ResNet, dataset: any LabelledImages, normalization: Normalization, batchSize: Int,
                                communicator comm: Communicator, progress: ((Int, Int) -> Void)? = nil) throws -> Result {
        guard dataset.channels == model.config.inChannels else {
            throw ModelError("\(dataset.name): images have \(dataset.channels) channels, the model expects \(model.config.inChannels)")
        }
        try dataset.checkLabels(fitHeadOf: model.config.numClasses, head: "the head of the model")
        let shard = EvaluationShard(count: dataset.count, rank: comm.rank, worldSize: comm.size)
        var totals = [0.0, 0.0, 0.0]
        let batches = shard.batches(batchSize: batchSize)
        for (bi, idx) in batches.enumerated() where !idx.isEmpty {
            defer { progress?(bi + 1, batches.count) }
            let b = try dataset.batch(indices: idx, normalization: normalization, augmentation: nil, seed: 0, epoch: 0)
            try b.x.withUnsafeBufferPointer {
                try model.forward($0.baseAddress!, Shape4(idx.count, dataset.channels, dataset.height, dataset.width), training: false)
            }
            let r = b.y.withUnsafeBufferPointer {
                CrossEntropy.forwardBackward(logits: model.logits.pointer, labels: $0.baseAddress!, batch: idx.count,
                                             classes: model.config.numClasses, gradScale: 0, dLogits: nil)
            }
            totals[0] += Double(r.correct); totals[1] += r.lossSum; totals[2] += Double(idx.count)
        }
        comm.allReduceSum(&totals)
        let n = max(totals[2], 1)
        return Result(accuracy: totals[0] / n, loss: totals[1] / n, count: Int(totals[2]))
    }

    /// Feature distortion (method.md §8): per-sample L2 distance and cosine similarity between the
    /// penultimate features of `model` and `reference` on `dataset`, as mean and std over samples, and the
    /// per-sample L2 distances counted in `Histogram.distanceEdges` bins.
    public struct Distortion: Codable, Equatable {
        public var l2Mean: Double, l2Std: Double, cosineMean: Double, cosineStd: Double, count: Int
        public var l2Histogram: Histogram
    }

    /// Counts of non-negative values in fixed bins: bin i holds lowerEdges[i] ≤ v < lowerEdges[i + 1], the last
    /// bin everything from its lower edge up (non-finite values included). Fixed edges, the same on every rank,
    /// run and model, make per-rank counts add up to the 1-rank histogram with one all-reduce and put every run's
    /// histogram on one axis.
    public struct Histogram: Codable, Equatable {
        public var lowerEdges: [Double]
        public var counts: [Int]

        /// The feature-distance bins: [0, 10⁻³), then 20 bins per decade (edges 10^(k/20)) up to 10³, then [10³, ∞).
        /// Feature distances of the methods differ by orders of magnitude (LP-FT ≈ 1, FT ≈ 8 on the fashion-shift
        /// ResNet-20), so the bins are logarithmic; 20 per decade resolve a run's spread (12% wide each).
        public static let distanceEdges: [Double] = [0] + (-60...60).map { pow(10, Double($0) / 20) }

        /// Empty counts over `lowerEdges` (ascending, starting at 0).
        public init(lowerEdges: [Double] = Histogram.distanceEdges) {
            self.lowerEdges = lowerEdges
            counts = [Int](repeating: 0, count: lowerEdges.count)
        }

        /// The bin of `value`: the last one whose lower edge is ≤ value (0 for negative values, the last for NaN and ∞).
        public func bin(of value: Double) -> Int {
            if !value.isFinite { return lowerEdges.count - 1 }
            var lo = 0, hi = lowerEdges.count - 1
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if lowerEdges[mid] <= value { lo = mid } else { hi = mid - 1 }
            }
            return lo
        }

        public mutating func add(_ value: Double) { counts[bin(of: value)] += 1 }
    }

    public static func distortion(model: ResNet, reference: ResNet, dataset: any LabelledImages, normalization: Normalization,
                                  batchSize: Int, communicator comm: Communicator) throws -> Distortion {
        let shard = EvaluationShard(count: dataset.count, rank: comm.rank, worldSize: comm.size)
        let F = model.config.featureDimension
        var s = [0.0, 0.0, 0.0, 0.0, 0.0]
        var histogram = Histogram()
        var mine = [Float](), theirs = [Float]()
        for idx in shard.batches(batchSize: batchSize) where !idx.isEmpty {
            let b = try dataset.batch(indices: idx, normalization: normalization, augmentation: nil, seed: 0, epoch: 0)
            let xs = Shape4(idx.count, dataset.channels, dataset.height, dataset.width)
            try b.x.withUnsafeBufferPointer { try model.forward($0.baseAddress!, xs, training: false) }
            mine = model.features.array(idx.count * F)
            try b.x.withUnsafeBufferPointer { try reference.forward($0.baseAddress!, xs, training: false) }
            theirs = reference.features.array(idx.count * F)
            for n in 0..<idx.count {
                var d2 = 0.0, dot = 0.0, na = 0.0, nb = 0.0
                for j in 0..<F {
                    let a = Double(mine[n * F + j]), c = Double(theirs[n * F + j])
                    d2 += (a - c) * (a - c); dot += a * c; na += a * a; nb += c * c
                }
                let l2 = d2.squareRoot()
                let cos = (na > 0 && nb > 0) ? dot / (na.squareRoot() * nb.squareRoot()) : 0
                s[0] += l2; s[1] += l2 * l2; s[2] += cos; s[3] += cos * cos; s[4] += 1
                histogram.add(l2)
            }
        }
        // one all-reduce for the sums and the bin counts (whole numbers, exact in float64 below 2^53)
        var all = s + histogram.counts.map(Double.init)
        comm.allReduceSum(&all)
        s = Array(all[0..<5])
        histogram.counts = all[5...].map { Int($0) }
        let n = max(s[4], 1)
        func std(_ sum: Double, _ sq: Double) -> Double { max(sq / n - (sum / n) * (sum / n), 0).squareRoot() }
        return Distortion(l2Mean: s[0] / n, l2Std: std(s[0], s[1]), cosineMean: s[2] / n, cosineStd: std(s[2], s[3]), count: Int(s[4]),
                          l2Histogram: histogram)
    }

    /// Per-tensor relative distance ‖θ − θ0‖ / ‖θ0‖ (conv weights, BN γ/β/running stats, head), method.md §8.
    public static func parameterDistances(model: ResNet, reference: ResNet) -> [(name: String, relative: Double)] {
        model.store.entries.filter { $0.kind != .counter }.map { e in
            let a = model.store.values(e.name), b = reference.store.values(e.name)
            var d = 0.0, n = 0.0
            for i in 0..<a.count { let x = Double(a[i]) - Double(b[i]); d += x * x; n += Double(b[i]) * Double(b[i]) }
            return (e.name, n > 0 ? (d / n).squareRoot() : d.squareRoot())
        }
    }
}
