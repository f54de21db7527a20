import Foundation
import DaftKernels
import DaftModels
import DaftData
import DaftDistributed

/// DAFT part 1 (method.md §2): measure the target domain's batch-norm statistics with the pretrained
/// network in evaluation behaviour, then rewrite every BN layer so the network computes the same function
/// while normalising with the target statistics.
///
/// Distributed: a "batch" is the global batch; each rank forwards its strided share, and the per-channel
/// Σx, Σx², counts of every BN layer are all-reduced in one float64 collective per batch, so m_b and v_b
/// are exactly the global-batch values and N ranks equal one process on the same data order.
public enum BNConversion {
    /// Target statistics per BN layer (same order as `ResNet.batchNorms`).
    public struct Statistics {
        public var means: [[Double]]
        public var variances: [[Double]]
        public var batches: Int
    }

    /// Step 2–3 on a data set: global batches of `plan` (no shuffle), this rank's strided share of each.
    public static func measure(model: ResNet, dataset: any LabelledImages, plan: GlobalBatchPlan, normalization: Normalization,
                               augmentation: Augmentation?, seed: UInt64, communicator comm: Communicator,
                               maxBatches: Int? = nil, progress: ((Int, Int) -> Void)? = nil) throws -> Statistics {
        let batches = plan.globalBatches(epoch: 0)
        let count = min(batches.count, maxBatches ?? batches.count)
        return try measure(model: model, batchCount: count, communicator: comm) { b in
            defer { progress?(b + 1, count) }
            let local = plan.localIndices(globalBatch: batches[b], rank: comm.rank)
            let batch = try dataset.batch(indices: local, normalization: normalization, augmentation: augmentation,
                                          seed: seed, epoch: 0)
            return (batch.x, Shape4(local.count, dataset.channels, dataset.height, dataset.width))
        }
    }

    /// Step 2–3: equal-weight mean over `batchCount` global batches of per-batch means and unbiased variances
    /// of every BN layer's input, with the network in evaluation behaviour. `localBatch(b)` gives this rank's
    /// share of global batch b (possibly empty); one float64 all-reduce per batch combines the ranks.
    public static func measure(model: ResNet, batchCount: Int, communicator comm: Communicator,
                               localBatch: (Int) throws -> ([Float], Shape4)) throws -> Statistics {
        let bns = model.batchNorms
        let total = bns.reduce(0) { $0 + 2 * $1.channels + 1 }
        var means = bns.map { Array(repeating: 0.0, count: $0.channels) }
        var vars = means
        for bn in bns { bn.recordInputMoments = true }
        defer { for bn in bns { bn.recordInputMoments = false } }
        var flat = [Double](repeating: 0, count: total)
        for b in 0..<batchCount {
            for bn in bns { for i in 0..<bn.recordedMoments.count { bn.recordedMoments[i] = 0 } }
            let (x, xs) = try localBatch(b)
            try x.withUnsafeBufferPointer { try model.forward($0.baseAddress!, xs, training: false) }
            var o = 0
            for bn in bns { for v in bn.recordedMoments { flat[o] = v; o += 1 } }
            comm.allReduceSum(&flat)
            o = 0
            for (l, bn) in bns.enumerated() {
                let C = bn.channels
                let count = flat[o + 2 * C]
                guard count > 1 else { throw ModelError("convert-bn: batch \(b) has \(Int(count)) values per channel at \(bn.name); need > 1") }
                for c in 0..<C {
                    let m = flat[o + c] / count
                    let v = max(flat[o + C + c] - count * m * m, 0) / (count - 1)
                    means[l][c] += m
                    vars[l][c] += v
                }
                o += 2 * C + 1
            }
        }
        guard batchCount > 0 else { throw ModelError("convert-bn: the data set gave no batch") }
        for l in 0..<bns.count { for c in 0..<bns[l].channels { means[l][c] /= Double(batchCount); vars[l][c] /= Double(batchCount) } }
        return Statistics(means: means, variances: vars, batches: batchCount)
    }

    /// Step 4: γ' = γ·√(σ²_t+ε)/√(σ²_s+ε), β' = β + γ·(μ_t−μ_s)/√(σ²_s+ε), running stats ← (μ_t, σ²_t).
    public static func apply(_ stats: Statistics, to model: ResNet) {
        for (l, bn) in model.batchNorms.enumerated() {
            let g = bn.gamma, b = bn.beta, rm = bn.runningMean, rv = bn.runningVar
            let eps = Double(bn.eps)
            for c in 0..<bn.channels {
                let muS = Double(rm[c]), varS = Double(rv[c]), gamma = Double(g[c]), beta = Double(b[c])
                let muT = stats.means[l][c], varT = stats.variances[l][c]
                let sdS = (varS + eps).squareRoot()
                g[c] = Float(gamma * (varT + eps).squareRoot() / sdS)
                b[c] = Float(beta + gamma * (muT - muS) / sdS)
                rm[c] = Float(muT)
                rv[c] = Float(varT)
            }
        }
    }
}
