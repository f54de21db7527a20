import Foundation
import DaftKernels
import DaftModels
import DaftData
import DaftDistributed
import CBLAS

/// Penultimate features of a frozen backbone (BN in evaluation behaviour) for this rank's share of a data set.
public struct FeatureSet {
    public var features: [Float]   // count × dimension
    public var labels: [Int32]
    public var count: Int
    public var dimension: Int
    /// The model's own head's prediction (argmax of its logits, first maximum on ties) per sample.
    public var headPredictions: [Int32]
    public init(features: [Float], labels: [Int32], count: Int, dimension: Int, headPredictions: [Int32] = []) {
        self.features = features; self.labels = labels; self.count = count; self.dimension = dimension
        self.headPredictions = headPredictions
    }
}

public enum FeatureExtractor {
    /// Features of the samples in `shard` (no augmentation), in batches of `batchSize`.
    public static func extract(model: ResNet, dataset: any LabelledImages, indices: [Int], normalization: Normalization,
                               batchSize: Int, progress: ((Int, Int) -> Void)? = nil) throws -> FeatureSet {
        let F = model.config.featureDimension
        var out = [Float](); out.reserveCapacity(indices.count * F)
        var labels = [Int32](); labels.reserveCapacity(indices.count)
        var predictions = [Int32](); predictions.reserveCapacity(indices.count)
        let K = model.config.numClasses
        var start = 0
        while start < indices.count {
            let idx = Array(indices[start..<min(indices.count, start + batchSize)])
            let b = try dataset.batch(indices: idx, normalization: normalization, augmentation: nil, seed: 0, epoch: 0)
            try b.x.withUnsafeBufferPointer {
                try model.forward($0.baseAddress!, Shape4(idx.count, dataset.channels, dataset.height, dataset.width), training: false)
            }
            out.append(contentsOf: UnsafeBufferPointer(start: model.features.pointer, count: idx.count * F))
            labels.append(contentsOf: b.y)
            predictions += argmaxRows(UnsafePointer(model.logits.pointer), count: idx.count, classes: K)
            start += batchSize
            progress?(min(start, indices.count), indices.count)
        }
        return FeatureSet(features: out, labels: labels, count: indices.count, dimension: F, headPredictions: predictions)
    }
}

/// Method.md §4 LP (a), as the reference's `lp_log_reg.py` does it: multinomial logistic regression with an L2
/// penalty on frozen features standardised by **one scalar** mean and std over the whole training feature
/// matrix, the inverse strength C swept over `inverseStrengths` (λ = 1/(C·N) in the mean-loss form
/// CE_mean + λ/2·‖W‖², bias unpenalised — scikit-learn's `LogisticRegression(C)`), each fit warm-started from
/// the previous one and solved to a gradient-norm tolerance in float64. Each rank holds its share of the
/// features; the gradient (K·(F+1) values) and the loss are all-reduced every iteration, so every rank follows
/// the same iterates and N ranks equal one process. The fitted head is folded back into fc (weights divided by
/// the std, bias absorbing the mean), so the model's forward needs no extra standardisation.
public enum LogisticProbe {
    /// A fitted head on raw features, and how the solve ended.
    public struct Result {
        public var weight: [Float]; public var bias: [Float]; public var trainLoss: Double
        /// The solution in standardised coordinates, K × (F + 1) (weights then bias per class): the next warm start.
        public var standardisedSolution: [Double]
        public var iterations: Int
        /// max |∂objective/∂w| at the end (the stopping rule's quantity).
        public var gradientNorm: Double
        public var converged: Bool
    }

    /// The reference's sweep: C over logspace(−7, 2, 50).
    public static let referenceInverseStrengths: [Double] = (0..<50).map { pow(10, -7 + 9 * Double($0) / 49) }

    /// The scalar mean and (population) std of every feature value of every rank's training samples.
    public static func standardisation(_ f: FeatureSet, communicator comm: Communicator) -> (mean: Double, std: Double) {
        var s = [0.0, 0.0, 0.0]
        for v in f.features { let x = Double(v); s[0] += x; s[1] += x * x }
        s[2] = Double(f.features.count)
        comm.allReduceSum(&s)
        let n = max(s[2], 1), mean = s[0] / n
        return (mean, max(s[1] / n - mean * mean, 0).squareRoot())
    }

    /// Standardised features with a trailing 1 per row (the bias column), row-major N × (F + 1).
    static func design(_ f: FeatureSet, standard: (mean: Double, std: Double)) -> [Double] {
        let F = f.dimension, scale = standard.std > 0 ? 1 / standard.std : 0
        var z = [Double](repeating: 1, count: f.count * (F + 1))
        for n in 0..<f.count { for j in 0..<F { z[n * (F + 1) + j] = (Double(f.features[n * F + j]) - standard.mean) * scale } }
        return z
    }

    /// Fits a head for `classes` classes at inverse strength `C` (λ = 1/(C·N), N = all ranks' samples) by
    /// accelerated gradient descent (step 1/L with L = λ_max(ZᵀZ/N)/2 + λ, restarted when the objective rises),
    /// until max|∇| ≤ `tolerance` or `maxIterations`. `warmStart` is a previous fit's `standardisedSolution`.
    public static func fit(_ f: FeatureSet, classes K: Int, inverseStrength C: Double, standard: (mean: Double, std: Double),
                           warmStart: [Double]? = nil, tolerance: Double = 1e-4, maxIterations: Int = 1000,
                           communicator comm: Communicator) -> Result {
        let F = f.dimension, D = F + 1, P = K * D
        let z = design(f, standard: standard)
        var total = [Double(f.count)]
        comm.allReduceSum(&total)
        let N = max(total[0], 1)
        let lambda = 1 / (C * N)
        let L = 0.5 * largestEigenvalue(z, rows: f.count, columns: D, samples: N, communicator: comm) + lambda
        let step = 1 / L
        // objective and gradient at v (K × D), all ranks' samples
        var logits = [Double](repeating: 0, count: f.count * K)
        var buffer = [Double](repeating: 0, count: P + 1)
        func objective(_ v: [Double], gradient g: inout [Double]) -> (value: Double, loss: Double) {
            for i in 0..<buffer.count { buffer[i] = 0 }
            if f.count > 0 {
                // logits = Z · Vᵀ (N × K), then softmax − one-hot, then ∇ = (P − Y)ᵀ · Z
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(f.count), Int32(K), Int32(D), 1, z, Int32(D), v, Int32(D), 0, &logits, Int32(K))
                var lossSum = 0.0
                for n in 0..<f.count {
                    let row = n * K
                    var mx = -Double.infinity
                    for k in 0..<K { mx = max(mx, logits[row + k]) }
                    var s = 0.0
                    for k in 0..<K { logits[row + k] = exp(logits[row + k] - mx); s += logits[row + k] }
                    let label = Int(f.labels[n])
                    lossSum += -log(max(logits[row + label] / s, 1e-300))
                    for k in 0..<K { logits[row + k] = logits[row + k] / s - (k == label ? 1 : 0) }
                }
                buffer.withUnsafeMutableBufferPointer { b in
                    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(K), Int32(D), Int32(f.count), 1, logits, Int32(K), z, Int32(D), 0, b.baseAddress!, Int32(D))
                }
                buffer[P] = lossSum
            }
            comm.allReduceSum(&buffer)
            var penalty = 0.0
            for i in 0..<P {
                g[i] = buffer[i] / N
                if i % D != F { g[i] += lambda * v[i]; penalty += v[i] * v[i] }
            }
            let loss = buffer[P] / N
            return (loss + lambda / 2 * penalty, loss)
        }
        var w = warmStart ?? [Double](repeating: 0, count: P)
        precondition(w.count == P, "warm start has \(w.count) values, need \(P)")
        var y = w, previous = w
        var g = [Double](repeating: 0, count: P)
        var current = objective(w, gradient: &g)
        var gradientNorm = g.map(abs).max() ?? 0
        var iterations = 0, momentum = 0.0
        while gradientNorm > tolerance && iterations < maxIterations {
            iterations += 1
            // accelerated step from the extrapolated point y
            _ = objective(y, gradient: &g)
            previous = w
            for i in 0..<P { w[i] = y[i] - step * g[i] }
            let next = objective(w, gradient: &g)
            gradientNorm = g.map(abs).max() ?? 0
            if next.value > current.value {
                // adaptive restart (O'Donoghue & Candès): drop the momentum, take a plain gradient step from the last point
                w = previous; momentum = 0; y = w
                _ = objective(w, gradient: &g)
                for i in 0..<P { w[i] -= step * g[i] }
                current = objective(w, gradient: &g)
                gradientNorm = g.map(abs).max() ?? 0
            } else {
                current = next
            }
            let t = momentum
            momentum = (1 + (1 + 4 * t * t).squareRoot()) / 2
            let beta = t == 0 ? 0 : (t - 1) / momentum
            for i in 0..<P { y[i] = w[i] + beta * (w[i] - previous[i]) }
        }
        // fold the scalar standardisation into the head: W·((x−μ)/σ) + b = (W/σ)·x + (b − μ/σ·Σ_j W_j)
        var weight = [Float](repeating: 0, count: K * F), bias = [Float](repeating: 0, count: K)
        let inv = standard.std > 0 ? 1 / standard.std : 0
        for k in 0..<K {
            var b = w[k * D + F]
            for j in 0..<F {
                let wk = w[k * D + j] * inv
                weight[k * F + j] = Float(wk)
                b -= wk * standard.mean
            }
            bias[k] = Float(b)
        }
        return Result(weight: weight, bias: bias, trainLoss: current.loss, standardisedSolution: w,
                      iterations: iterations, gradientNorm: gradientNorm, converged: gradientNorm <= tolerance)
    }

    /// λ_max of ZᵀZ/N over all ranks' rows (power iteration on the (F+1)² matrix, all-reduced once).
    static func largestEigenvalue(_ z: [Double], rows: Int, columns D: Int, samples N: Double, communicator comm: Communicator) -> Double {
        var m = [Double](repeating: 0, count: D * D)
        if rows > 0 { cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(D), Int32(rows), 1 / N, z, Int32(D), 0, &m, Int32(D)) }
        comm.allReduceSum(&m)
        for i in 0..<D { for j in 0..<i { m[i * D + j] = m[j * D + i] } }
        var v = [Double](repeating: 1 / Double(D).squareRoot(), count: D), eigenvalue = 0.0
        var u = v
        for _ in 0..<200 {
            cblas_dgemv(CblasRowMajor, CblasNoTrans, Int32(D), Int32(D), 1, m, Int32(D), v, 1, 0, &u, 1)
            let norm = cblas_dnrm2(Int32(D), u, 1)
            guard norm > 0 else { return 0 }
            let change = abs(norm - eigenvalue)
            eigenvalue = norm
            for i in 0..<D { v[i] = u[i] / norm }
            if change <= 1e-10 * norm { break }
        }
        return eigenvalue * 1.01   // power iteration approaches from below; a 1% margin keeps 1/L a safe step
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
