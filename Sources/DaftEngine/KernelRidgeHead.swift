import Foundation
import CBLAS
import DaftKernels
import DaftDistributed
import DaftInterop

/// The dual (kernel) form of method.md §6's ridge head: kernel ridge regression on a frozen backbone's
/// L2-normalised penultimate features. Keeps every sample seen (X, n×d float64, rows normalised as
/// `RidgeHead` does: x / max(‖x‖₂, 1e-12)) with its label; α = (K + λI)⁻¹ Y with K = k(X, X) and Y one-hot
/// (n×K), prediction k(x, X)·α, all in float64 with a Cholesky solve (LAPACK dpotrf/dpotrs from OpenBLAS).
///
/// Kernels: linear k(x, x') = x·x' (the same predictor as the primal ridge head without a lift, whose
/// weights are W = Xᵀα), and RBF k(x, x') = exp(−γ‖x − x'‖²). On unit vectors ‖x − x'‖² = 2 − 2x·x' lies in
/// [0, 4], so γ has the same meaning for every backbone; the default γ = 1 makes the kernel fall from 1 to
/// e⁻² ≈ 0.14 between identical and orthogonal features.
///
/// Distributed: each rank extracts features of its shard; `append(…, communicator:)` all-gathers the shards
/// in rank order (contiguous `EvaluationShard` ranges, so the stored order is the data set's order on any
/// number of ranks) and every rank solves the same system: N ranks store the same X as one process.
/// Incremental: a new domain's samples are appended and the system re-solved over everything seen, which is
/// the joint solve. Memory: K and its factor take 2·8·n² bytes, so the number of samples is capped
/// (`maxSamples`, default 16,384 ≈ 4 GiB for both); past it `append` refuses with an error that says so —
/// the primal `RidgeHead` (memory D², independent of n) is the scalable alternative.
public final class KernelRidgeHead {
    /// The kernel function on normalised features.
    public enum Kernel: Equatable, CustomStringConvertible {
        /// k(x, x') = x·x'.
        case linear
        /// k(x, x') = exp(−γ‖x − x'‖²).
        case rbf(gamma: Double)

        public var description: String {
            switch self {
            case .linear: return "linear"
            case let .rbf(g): return "rbf (γ \(g))"
            }
        }
    }

    /// The default cap on stored samples (K and its Cholesky factor: 2 × 8 × 16,384² bytes = 4 GiB).
    public static let defaultMaxSamples = 16_384
    /// The default RBF γ for unit-norm features.
    public static let defaultGamma = 1.0

    /// d: feature dimension of the backbone.
    public let inputDimension: Int
    /// The kernel.
    public let kernel: Kernel
    /// The most samples this head will store (memory bound of the n×n system).
    public let maxSamples: Int
    /// K: number of classes (columns of Y and α).
    public private(set) var classCount: Int
    /// X: the normalised features of every sample seen, n×d row-major.
    public private(set) var samples: [Double] = []
    /// The labels of the stored samples.
    public private(set) var labels: [Int32] = []
    /// Σ ‖x‖₂ of the raw features appended (for `meanFeatureNorm`).
    public private(set) var normSum: Double = 0
    /// The regulariser chosen by `selectLambda` (or set by the caller).
    public var lambda: Double?

    /// n: number of stored samples.
    public var count: Int { labels.count }
    /// Mean ‖x‖₂ of the raw features appended so far (1 when empty).
    public var meanFeatureNorm: Double { count > 0 ? normSum / Double(count) : 1 }
    /// Bytes the n×n kernel matrix and its factor need for `n` samples.
    public static func systemBytes(samples n: Int) -> Int { 2 * 8 * n * n }

    /// An empty head for d-dimensional features and `classes` classes.
    public init(inputDimension: Int, classes: Int, kernel: Kernel, maxSamples: Int = KernelRidgeHead.defaultMaxSamples) throws {
        guard inputDimension > 0, classes > 0 else { throw RidgeError("kernel ridge: feature dimension and classes must be positive") }
        if case let .rbf(g) = kernel, !(g > 0 && g.isFinite) { throw RidgeError("kernel ridge: RBF γ must be positive, got \(g)") }
        guard maxSamples > 0 else { throw RidgeError("kernel ridge: the sample cap must be positive") }
        self.inputDimension = inputDimension
        self.kernel = kernel
        self.maxSamples = maxSamples
        self.classCount = classes
    }

    /// Appends samples (raw float32 features, count×d row-major, labels in 0..<classCount). With a
    /// communicator of size > 1 every rank passes its shard and every rank ends with all shards appended in
    /// rank order (the caller's shards must be contiguous ranges in rank order for that to be the data order).
    /// Throws on every rank alike when the total would pass `maxSamples`.
    public func append(features: UnsafePointer<Float>, labels newLabels: [Int32], count n: Int, communicator: Communicator? = nil) throws {
        guard newLabels.count == n else { throw RidgeError("kernel ridge: \(newLabels.count) labels for \(n) samples") }
        let d = inputDimension
        let (x, norms) = normalisedRows(features, count: n, dimension: d)
        // each row travels with its label: [x̂ | y], so one all-gather carries both
        var local = [Double](repeating: 0, count: n * (d + 1))
        for r in 0..<n {
            for j in 0..<d { local[r * (d + 1) + j] = x[r * d + j] }
            local[r * (d + 1) + d] = Double(newLabels[r])
        }
        var all = local, totalNorms = norms
        if let communicator, communicator.size > 1 {
            let total = communicator.allReduceSum(Int64(n))
            try checkCapacity(adding: Int(total))
            all = communicator.allGatherConcatenated(local)
            totalNorms = communicator.allReduceSum(norms)
        } else {
            try checkCapacity(adding: n)
        }
        let rows = all.count / (d + 1)
        var gotLabels = [Int32](repeating: 0, count: rows)
        for r in 0..<rows {
            let y = all[r * (d + 1) + d]
            guard y >= 0, Int(y) < classCount else { throw RidgeError("kernel ridge: label \(Int(y)) out of range 0..<\(classCount)") }
            gotLabels[r] = Int32(y)
        }
        samples.reserveCapacity(samples.count + rows * d)
        for r in 0..<rows { samples.append(contentsOf: all[(r * (d + 1))..<(r * (d + 1) + d)]) }
        labels.append(contentsOf: gotLabels)
        normSum += totalNorms
    }

    func checkCapacity(adding n: Int) throws {
        let total = count + n
        guard total <= maxSamples else {
            throw RidgeError(String(format: "kernel ridge: %d samples (%d stored + %d new) pass the cap of %d (--kernel-max-samples): the %d×%d float64 kernel and its factor would need %@; raise the cap if the memory is there, use fewer samples, or use --lp-solver ridge (memory independent of the sample count)",
                                    total, count, n, maxSamples, total, total, humanSize(KernelRidgeHead.systemBytes(samples: total))))
        }
    }

    /// Widens the head to `newCount` classes (classes not seen yet have no samples). `newCount` ≥ `classCount`.
    public func addClasses(_ newCount: Int) throws {
        guard newCount >= classCount else { throw RidgeError("kernel ridge: cannot shrink from \(classCount) to \(newCount) classes") }
        classCount = newCount
    }

    /// Appends another head's samples (same kernel and dimension); the class count becomes the larger.
    public func merge(_ other: KernelRidgeHead) throws {
        guard other.inputDimension == inputDimension, other.kernel == kernel else {
            throw RidgeError("kernel ridge: cannot merge samples of a different feature dimension or kernel")
        }
        try checkCapacity(adding: other.count)
        try addClasses(max(classCount, other.classCount))
        samples += other.samples; labels += other.labels; normSum += other.normSum
    }

    /// k(A, X) for `m` normalised query rows A (m×d): m×n row-major.
    func kernelMatrix(queries a: UnsafePointer<Double>, count m: Int) -> [Double] {
        let d = inputDimension, n = count
        var k = [Double](repeating: 0, count: m * n)
        guard m > 0, n > 0 else { return k }
        samples.withUnsafeBufferPointer { xp in k.withUnsafeMutableBufferPointer { kp in
            ComputeThreads.withBLASThreads {
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(d), 1,
                            a, Int32(d), xp.baseAddress, Int32(d), 0, kp.baseAddress, Int32(n))
            }
        } }
        if case let .rbf(gamma) = kernel {
            var sqA = [Double](repeating: 0, count: m), sqX = [Double](repeating: 0, count: n)
            for i in 0..<m { var s = 0.0; for j in 0..<d { s += a[i * d + j] * a[i * d + j] }; sqA[i] = s }
            for i in 0..<n { var s = 0.0; for j in 0..<d { s += samples[i * d + j] * samples[i * d + j] }; sqX[i] = s }
            for i in 0..<m { for j in 0..<n {
                k[i * n + j] = exp(-gamma * max(sqA[i] + sqX[j] - 2 * k[i * n + j], 0))
            } }
        }
        return k
    }

    /// K = k(X, X), n×n.
    func trainingKernel() -> [Double] {
        samples.withUnsafeBufferPointer { kernelMatrix(queries: $0.baseAddress!, count: count) }
    }

    /// α = (K + λI)⁻¹ Y (n×K row-major) by Cholesky. Throws when K + λI is not positive definite.
    public func solve(lambda: Double) throws -> [Double] {
        try solve(lambda: lambda, kernelMatrix: trainingKernel())
    }

    func solve(lambda: Double, kernelMatrix: [Double]) throws -> [Double] {
        guard lambda.isFinite else { throw RidgeError("kernel ridge: λ must be finite, got \(lambda)") }
        let n = count, K = classCount
        guard n > 0 else { throw RidgeError("kernel ridge: no samples to solve on") }
        var a = kernelMatrix
        for i in 0..<n { a[i * n + i] += lambda }
        // Y one-hot as the column-major n×K right-hand sides
        var b = [Double](repeating: 0, count: n * K)
        for i in 0..<n { b[Int(labels[i]) * n + i] = 1 }
        try choleskySolve(&a, n: n, &b, rightHandSides: K, name: "kernel ridge: K + λI (λ = \(lambda))")
        var alpha = [Double](repeating: 0, count: n * K)
        for i in 0..<n { for k in 0..<K { alpha[i * K + k] = b[k * n + i] } }
        guard alpha.allSatisfy(\.isFinite) else { throw RidgeError("kernel ridge: solution is not finite (λ = \(lambda))") }
        return alpha
    }

    /// Normalises raw float32 rows (as `append` does) to float64.
    public func normalised(features: UnsafePointer<Float>, count m: Int) -> [Double] {
        normalisedRows(features, count: m, dimension: inputDimension).rows
    }

    /// Scores k(x, X)·α (count×K row-major) of raw float32 features, in chunks of 1,024 queries.
    public func scores(features: UnsafePointer<Float>, count m: Int, alpha: [Double]) -> [Double] {
        let x = normalised(features: features, count: m)
        return x.withUnsafeBufferPointer { scores(normalised: $0.baseAddress!, count: m, alpha: alpha) }
    }

    func scores(normalised x: UnsafePointer<Double>, count m: Int, alpha: [Double]) -> [Double] {
        let n = count, K = classCount, d = inputDimension
        precondition(alpha.count == n * K, "kernel ridge: α must be n×K")
        var s = [Double](repeating: 0, count: m * K)
        var start = 0
        while start < m {
            let rows = min(1024, m - start)
            let k = kernelMatrix(queries: x + start * d, count: rows)
            k.withUnsafeBufferPointer { kp in alpha.withUnsafeBufferPointer { ap in s.withUnsafeMutableBufferPointer { sp in
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(K), Int32(n), 1,
                            kp.baseAddress, Int32(n), ap.baseAddress, Int32(K), 0, sp.baseAddress! + start * K, Int32(K))
            } } }
            start += rows
        }
        return s
    }

    /// Predicted classes (argmax of the scores, first maximum on ties) of raw float32 features.
    public func predict(features: UnsafePointer<Float>, count m: Int, alpha: [Double]) -> [Int32] {
        scores(features: features, count: m, alpha: alpha).withUnsafeBufferPointer { argmaxRows($0.baseAddress!, count: m, classes: classCount) }
    }

    /// The primal weights W = Xᵀα (d×K row-major) of a linear-kernel solution: the same scores on normalised
    /// features, so `RidgeHead`'s fc mapping applies (`headWeights`). Throws for the RBF kernel.
    public func primalWeights(alpha: [Double]) throws -> [Double] {
        guard kernel == .linear else { throw RidgeError("kernel ridge: an RBF kernel head is not a linear layer; it has no fc weights") }
        let n = count, K = classCount, d = inputDimension
        var w = [Double](repeating: 0, count: d * K)
        samples.withUnsafeBufferPointer { xp in alpha.withUnsafeBufferPointer { ap in w.withUnsafeMutableBufferPointer { wp in
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(K), Int32(n), 1,
                        xp.baseAddress, Int32(d), ap.baseAddress, Int32(K), 0, wp.baseAddress, Int32(K))
        } } }
        return w
    }

    /// Chooses λ by validation accuracy as `RidgeHead.selectLambda` does (K computed once, one Cholesky per
    /// candidate; sharded validation counts summed in one collective; ties go to the largest λ). Sets `lambda`
    /// and returns it with its accuracy and its α.
    @discardableResult
    public func selectLambda(candidates: [Double], validationFeatures: UnsafePointer<Float>, labels valLabels: [Int32],
                             communicator: Communicator? = nil) throws -> (lambda: Double, accuracy: Double, alpha: [Double]) {
        guard !candidates.isEmpty else { throw RidgeError("kernel ridge: no λ candidates") }
        let m = valLabels.count
        let kTrain = trainingKernel()
        let xv = normalised(features: validationFeatures, count: m)
        var counts = [Double](repeating: 0, count: candidates.count)
        var alphas: [[Double]] = []
        for (i, lam) in candidates.enumerated() {
            let alpha = try solve(lambda: lam, kernelMatrix: kTrain)
            alphas.append(alpha)
            let s = xv.withUnsafeBufferPointer { scores(normalised: $0.baseAddress!, count: m, alpha: alpha) }
            let p = s.withUnsafeBufferPointer { argmaxRows($0.baseAddress!, count: m, classes: classCount) }
            counts[i] = Double(zip(p, valLabels).filter { $0 == $1 }.count)
        }
        let best = try bestCandidate(candidates, correct: counts, validationCount: m, communicator: communicator, name: "kernel ridge")
        lambda = candidates[best.index]
        return (candidates[best.index], best.accuracy, alphas[best.index])
    }

    /// The samples and configuration as safetensors tensors: `<prefix>X` [n,d] F64, `<prefix>y` [n] I64,
    /// `<prefix>config` I64 [d, K, kernel kind (0 linear, 1 RBF), maxSamples], `<prefix>gamma` F64 [1] (RBF),
    /// `<prefix>stats` F64 [normSum], `<prefix>lambda` F64 [1] when set.
    public func tensors(prefix: String = "kernel.") -> [String: SafeTensor] {
        var t: [String: SafeTensor] = [:]
        t[prefix + "X"] = SafeTensor(doubles: samples, shape: [count, inputDimension])
        t[prefix + "y"] = SafeTensor(int64s: labels.map(Int64.init), shape: [count])
        var kind: Int64 = 0
        if case let .rbf(g) = kernel { kind = 1; t[prefix + "gamma"] = SafeTensor(doubles: [g], shape: [1]) }
        t[prefix + "config"] = SafeTensor(int64s: [Int64(inputDimension), Int64(classCount), kind, Int64(maxSamples)], shape: [4])
        t[prefix + "stats"] = SafeTensor(doubles: [normSum], shape: [1])
        if let lambda { t[prefix + "lambda"] = SafeTensor(doubles: [lambda], shape: [1]) }
        return t
    }

    /// Rebuilds a head from what `tensors(prefix:)` wrote.
    public convenience init(file: SafeTensorsFile, prefix: String = "kernel.", source: String) throws {
        let cfg = try file.tensor(prefix + "config", source: source).int64s()
        guard cfg.count == 4, cfg[0] > 0, cfg[1] > 0, cfg[3] > 0 else { throw RidgeError("\(source): \(prefix)config is malformed") }
        let kernel: Kernel
        switch cfg[2] {
        case 0: kernel = .linear
        case 1:
            guard let g = try file.tensor(prefix + "gamma", source: source).doubles().first else { throw RidgeError("\(source): \(prefix)gamma is empty") }
            kernel = .rbf(gamma: g)
        default: throw RidgeError("\(source): \(prefix)config has unknown kernel kind \(cfg[2])")
        }
        try self.init(inputDimension: Int(cfg[0]), classes: Int(cfg[1]), kernel: kernel, maxSamples: Int(cfg[3]))
        let x = try file.tensor(prefix + "X", source: source).doubles()
        let y = try file.tensor(prefix + "y", source: source).int64s()
        let s = try file.tensor(prefix + "stats", source: source).doubles()
        guard x.count == y.count * inputDimension, s.count == 1 else { throw RidgeError("\(source): kernel ridge samples have wrong sizes") }
        guard y.allSatisfy({ $0 >= 0 && $0 < Int64(classCount) }) else { throw RidgeError("\(source): \(prefix)y has a label outside 0..<\(classCount)") }
        samples = x; labels = y.map { Int32($0) }; normSum = s[0]
        if file.tensors[prefix + "lambda"] != nil { lambda = try file.tensor(prefix + "lambda", source: source).doubles().first }
    }
}
