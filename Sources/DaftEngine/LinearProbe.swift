import Foundation
import DaftKernels
import DaftModels
import DaftData
import DaftDistributed

/// Penultimate features of a frozen backbone (BN in evaluation behaviour) for this rank's share of a data set.
public struct FeatureSet {
    public var features: [Float]   // count × dimension
    public var labels: [Int32]
    public var count: Int
    public var dimension: Int
}

public enum FeatureExtractor {
    /// Features of the samples in `shard` (no augmentation), in batches of `batchSize`.
    public static func extract(model: ResNet, dataset: ImageDataset, indices: [Int], normalization: Normalization,
                               batchSize: Int) throws -> FeatureSet {
        let F = model.config.featureDimension
        var out = [Float](); out.reserveCapacity(indices.count * F)
        var labels = [Int32](); labels.reserveCapacity(indices.count)
        var start = 0
        while start < indices.count {
            let idx = Array(indices[start..<min(indices.count, start + batchSize)])
            let b = makeBatch(dataset: dataset, indices: idx, normalization: normalization, augmentation: nil, seed: 0, epoch: 0)
            try b.x.withUnsafeBufferPointer {
                try model.forward($0.baseAddress!, Shape4(idx.count, dataset.channels, dataset.height, dataset.width), training: false)
            }
            out.append(contentsOf: UnsafeBufferPointer(start: model.features.pointer, count: idx.count * F))
            labels.append(contentsOf: b.y)
            start += batchSize
        }
        return FeatureSet(features: out, labels: labels, count: indices.count, dimension: F)
    }
}

/// Method.md §4 LP (a): multinomial logistic regression with an L2 penalty on standardised frozen
/// features, fitted by full-batch Nesterov gradient descent. Each rank holds its share of the features;
/// the gradient (K·(F+1) values) and the loss are all-reduced every iteration, so every rank follows the
/// same iterates and N ranks equal one process. The fitted head is folded back into fc (weights divided
/// by the feature std, bias absorbing the mean), so the model's forward needs no extra standardisation.
public enum LogisticProbe {
    public struct Result { public var weight: [Float]; public var bias: [Float]; public var trainLoss: Double }

    /// Mean and std of each feature over all ranks' samples. A feature that is (numerically) constant —
    /// a channel the ReLUs switched off — gets std 0 and is left out of the fit (its weight stays 0).
    public static func standardisation(_ f: FeatureSet, communicator comm: Communicator) -> (mean: [Double], std: [Double]) {
        let F = f.dimension
        var s = [Double](repeating: 0, count: 2 * F + 1)
        for n in 0..<f.count { for j in 0..<F { let v = Double(f.features[n * F + j]); s[j] += v; s[F + j] += v * v } }
        s[2 * F] = Double(f.count)
        comm.allReduceSum(&s)
        let N = max(s[2 * F], 1)
        var mean = [Double](repeating: 0, count: F), std = mean
        for j in 0..<F { mean[j] = s[j] / N; std[j] = max(s[F + j] / N - mean[j] * mean[j], 0).squareRoot() }
        let floor = 1e-4 * (std.max() ?? 0)
        for j in 0..<F where std[j] <= floor { std[j] = 0 }
        return (mean, std)
    }

    /// Fits weights for `classes` classes with L2 strength `l2` (penalty l2/2·‖W‖², bias unpenalised).
    public static func fit(_ f: FeatureSet, classes K: Int, l2: Double, iterations: Int = 300,
                           standard: (mean: [Double], std: [Double]), communicator comm: Communicator) -> Result {
        let F = f.dimension
        let P = K * (F + 1)
        var z = [Double](repeating: 0, count: f.count * F)
        for n in 0..<f.count {
            for j in 0..<F where standard.std[j] > 0 { z[n * F + j] = (Double(f.features[n * F + j]) - standard.mean[j]) / standard.std[j] }
        }
        var total = [Double(f.count)]
        comm.allReduceSum(&total)
        let N = max(total[0], 1)
        // Lipschitz bound of the mean softmax-CE gradient on standardised features: ≤ 0.5·(F + 1) + l2
        let step = 1 / (0.5 * Double(F + 1) + l2)
        var w = [Double](repeating: 0, count: P), prev = w, y = w
        var grad = [Double](repeating: 0, count: P + 1)
        var loss = 0.0
        var logits = [Double](repeating: 0, count: K)
        for it in 0..<iterations {
            for i in 0..<grad.count { grad[i] = 0 }
            for n in 0..<f.count {
                let row = n * F
                var mx = -Double.infinity
                for k in 0..<K {
                    var a = y[k * (F + 1) + F]
                    for j in 0..<F { a += y[k * (F + 1) + j] * z[row + j] }
                    logits[k] = a; mx = max(mx, a)
                }
                var s = 0.0
                for k in 0..<K { logits[k] = exp(logits[k] - mx); s += logits[k] }
                let label = Int(f.labels[n])
                grad[P] += -log(max(logits[label] / s, 1e-300))
                for k in 0..<K {
                    let d = logits[k] / s - (k == label ? 1 : 0)
                    for j in 0..<F { grad[k * (F + 1) + j] += d * z[row + j] }
                    grad[k * (F + 1) + F] += d
                }
            }
            comm.allReduceSum(&grad)
            loss = grad[P] / N
            // Nesterov: w_{t+1} = y − step·∇(y); y = w_{t+1} + t/(t+3)·(w_{t+1} − w_t)
            for i in 0..<P {
                var g = grad[i] / N
                if i % (F + 1) != F { g += l2 * y[i] }
                prev[i] = w[i]
                w[i] = y[i] - step * g
            }
            let beta = Double(it) / Double(it + 3)
            for i in 0..<P { y[i] = w[i] + beta * (w[i] - prev[i]) }
        }
        // fold standardisation into the head: W·((x−μ)/σ) + b = (W/σ)·x + (b − Σ W μ/σ)
        var weight = [Float](repeating: 0, count: K * F), bias = [Float](repeating: 0, count: K)
        for k in 0..<K {
            var b = w[k * (F + 1) + F]
            for j in 0..<F where standard.std[j] > 0 {
                let wk = w[k * (F + 1) + j] / standard.std[j]
                weight[k * F + j] = Float(wk)
                b -= wk * standard.mean[j]
            }
            bias[k] = Float(b)
        }
        return Result(weight: weight, bias: bias, trainLoss: loss)
    }

    /// Accuracy of a head on features (all ranks' counts combined).
    public static func accuracy(_ f: FeatureSet, weight: [Float], bias: [Float], classes K: Int, communicator comm: Communicator) -> Double {
        let F = f.dimension
        var correct = 0
        for n in 0..<f.count {
            var best = -Float.infinity, arg = 0
            for k in 0..<K {
                var a = bias[k]
                for j in 0..<F { a += weight[k * F + j] * f.features[n * F + j] }
                if a > best { best = a; arg = k }
            }
            if arg == Int(f.labels[n]) { correct += 1 }
        }
        var c = [Double(correct), Double(f.count)]
        comm.allReduceSum(&c)
        return c[1] > 0 ? c[0] / c[1] : 0
    }
}
