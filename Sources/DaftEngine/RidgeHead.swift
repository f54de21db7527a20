import Foundation
import CBLAS
import DaftKernels
import DaftDistributed
import DaftInterop

/// Why a ridge-head operation failed.
public struct RidgeError: Error, CustomStringConvertible {
    /// What went wrong.
    public let message: String
    /// Creates an error with a message.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The closed-form ridge head of method.md §6 (RAIL family): a frozen backbone's penultimate features x,
/// L2-normalised per row, optionally lifted by a fixed random layer φ = ReLU(x·W_e), and the head
/// W = (G + λI)⁻¹ C from the sufficient statistics G = Σ φφᵀ (D×D) and C = Σ φyᵀ (D×K, y one-hot), all in
/// float64.
///
/// Normalisation: x ← x / max(‖x‖₂, 1e-12) (torch's `F.normalize`), so an all-zero row contributes nothing.
///
/// Random lift: W_e (d×D, row-major) has standard-normal entries drawn in row-major order from
/// `SplitMix64(seed:).nextNormal()`, identical on every rank for the same seed. Unit variance is chosen
/// because the inputs are unit vectors: every pre-activation x·W_e[:, j] is then exactly N(0, 1)
/// whatever d is, so E[φ_j²] = ½ and λ has the same meaning for every backbone width.
///
/// Distributed: every rank accumulates its shard, `allReduce` sums G, C and the sample count/norm sum
/// in one float64 collective, and every rank solves the same system (exactly the single-process
/// solve up to the summation order of the collective). Incremental: G and C are kept; new classes add
/// zero columns (`addClasses`), new data or another head's statistics add (`accumulate`, `merge`), and a
/// re-solve equals the joint solve over everything seen.
///
/// Use in the model: `ResNet.forward` feeds the *unnormalised* pooled features to `fc`. Without a lift,
/// `headWeights` gives fc.weight = Wᵀ/s, fc.bias = 0: its logits are the ridge scores times ‖x‖/s, a
/// positive per-sample factor, so predictions (argmax, accuracy) equal the ridge predictions exactly, and
/// with s = `meanFeatureNorm` the logits have the ridge scores' magnitude on average (use that to
/// initialise LP-FT's head). With a lift the head is not linear in x: evaluate with `predict` on the
/// model's `features` instead.
public final class RidgeHead {
    /// The optional random hidden layer.
    public enum Lift: Equatable {
        /// φ = normalised x (D = d).
        case none
        /// φ = ReLU(x·W_e), W_e drawn from `seed` (see the type's documentation).
        case random(dimension: Int, seed: UInt64)
        /// φ = ReLU(x·W_e) with a given W_e (d×D row-major), e.g. from another tool.
        case explicit(weights: [Double], dimension: Int)
    }

    /// d: feature dimension of the backbone.
    public let inputDimension: Int
    /// The lift.
    public let lift: Lift
    /// W_e (d×D row-major); empty without a lift.
    public let liftWeights: [Double]
    /// D: dimension of φ.
    public let dimension: Int
    /// K: number of classes (columns of C).
    public private(set) var classCount: Int
    /// G = Σ φφᵀ, D×D row-major (symmetric).
    public private(set) var gram: [Double]
    /// C = Σ φyᵀ, D×K row-major.
    public private(set) var cross: [Double]
    /// Number of samples accumulated.
    public private(set) var sampleCount: Double = 0
    /// Σ ‖x‖₂ of the raw features accumulated (for `meanFeatureNorm`).
    public private(set) var normSum: Double = 0
    /// The regulariser chosen by `selectLambda` (or set by the caller); saved with the statistics.
    public var lambda: Double?

    /// An empty head for d-dimensional features and `classes` classes.
    public init(inputDimension: Int, classes: Int, lift: Lift = .none) throws {
        guard inputDimension > 0, classes > 0 else { throw RidgeError("ridge head: feature dimension and classes must be positive") }
        self.inputDimension = inputDimension
        self.lift = lift
        switch lift {
        case .none:
            dimension = inputDimension
            liftWeights = []
        case let .random(D, seed):
            guard D > 0 else { throw RidgeError("ridge head: lift dimension must be positive") }
            dimension = D
            liftWeights = RidgeHead.randomLiftWeights(inputDimension: inputDimension, dimension: D, seed: seed)
        case let .explicit(w, D):
            guard D > 0, w.count == inputDimension * D else {
                throw RidgeError("ridge head: explicit lift needs \(inputDimension)×\(D) weights, got \(w.count)")
            }
            dimension = D
            liftWeights = w
        }
        classCount = classes
        gram = Array(repeating: 0, count: dimension * dimension)
        cross = Array(repeating: 0, count: dimension * classes)
    }

    /// W_e for `.random(dimension:seed:)`: d×D row-major standard normals from `SplitMix64(seed:)`.
    public static func randomLiftWeights(inputDimension d: Int, dimension D: Int, seed: UInt64) -> [Double] {
        var rng = SplitMix64(seed: seed)
        return (0..<(d * D)).map { _ in rng.nextNormal() }
    }

    /// Mean ‖x‖₂ of the raw features accumulated so far (1 when empty).
    public var meanFeatureNorm: Double { sampleCount > 0 ? normSum / sampleCount : 1 }

    /// φ of `count` rows of raw features (row-major count×d) as a count×D row-major float64 array.
    public func lifted(features: UnsafePointer<Float>, count: Int) -> [Double] {
        var x = [Double](repeating: 0, count: count * inputDimension)
        for i in 0..<(count * inputDimension) { x[i] = Double(features[i]) }
        return liftRows(&x, count: count).phi
    }

    /// φ of `count` rows of raw float64 features.
    public func lifted(features: UnsafePointer<Double>, count: Int) -> [Double] {
        var x = Array(UnsafeBufferPointer(start: features, count: count * inputDimension))
        return liftRows(&x, count: count).phi
    }

    /// Normalises the rows of `x` in place and lifts them; also returns Σ‖x‖ of the raw rows.
    func liftRows(_ x: inout [Double], count: Int) -> (phi: [Double], norms: Double) {
        let d = inputDimension, D = dimension
        let norms = normaliseRows(&x, count: count, dimension: d)
        if case .none = lift { return (x, norms) }
        var phi = [Double](repeating: 0, count: count * D)
        if count > 0 {
            x.withUnsafeBufferPointer { xp in liftWeights.withUnsafeBufferPointer { wp in phi.withUnsafeMutableBufferPointer { pp in
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(count), Int32(D), Int32(d), 1,
                            xp.baseAddress, Int32(d), wp.baseAddress, Int32(D), 0, pp.baseAddress, Int32(D))
            } } }
            for i in 0..<(count * D) where !(phi[i] > 0) { phi[i] = 0 }
        }
        return (phi, norms)
    }

    /// Adds `count` samples (raw float32 penultimate features, row-major count×d, and their labels in
    /// 0..<classCount) to G and C.
    public func accumulate(features: UnsafePointer<Float>, labels: [Int32], count: Int) throws {
        try accumulateChunks(labels: labels, count: count) { start, n in
            (0..<(n * inputDimension)).map { Double(features[start * inputDimension + $0]) }
        }
    }

    /// Adds `count` samples given as float64 features.
    public func accumulate(features: UnsafePointer<Double>, labels: [Int32], count: Int) throws {
        try accumulateChunks(labels: labels, count: count) { start, n in
            Array(UnsafeBufferPointer(start: features + start * inputDimension, count: n * inputDimension))
        }
    }

    func accumulateChunks(labels: [Int32], count: Int, rows: (Int, Int) -> [Double]) throws {
        guard labels.count == count else { throw RidgeError("ridge head: \(labels.count) labels for \(count) samples") }
        if let bad = labels.first(where: { $0 < 0 || Int($0) >= classCount }) {
            throw RidgeError("ridge head: label \(bad) out of range 0..<\(classCount)")
        }
        let D = dimension, K = classCount
        let chunk = max(1, min(count, 4096))
        var start = 0
        while start < count {
            let n = min(chunk, count - start)
            var x = rows(start, n)
            let (phi, norms) = liftRows(&x, count: n)
            normSum += norms
            sampleCount += Double(n)
            phi.withUnsafeBufferPointer { pp in gram.withUnsafeMutableBufferPointer { gp in
                ComputeThreads.withBLASThreads {
                    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(D), Int32(D), Int32(n), 1,
                                pp.baseAddress, Int32(D), pp.baseAddress, Int32(D), 1, gp.baseAddress, Int32(D))
                }
            } }
            for r in 0..<n {
                let y = Int(labels[start + r])
                for j in 0..<D { cross[j * K + y] += phi[r * D + j] }
            }
            start += n
        }
    }

    /// Sums G, C, the sample count and the norm sum over all ranks in one float64 collective. Every rank
    /// must call it with the same D and K (call `addClasses` consistently first).
    public func allReduce(_ communicator: Communicator) {
        guard communicator.size > 1 else { return }
        var buf = gram + cross + [sampleCount, normSum]
        communicator.allReduceSum(&buf)
        let g = gram.count, c = cross.count
        gram = Array(buf[0..<g]); cross = Array(buf[g..<(g + c)])
        sampleCount = buf[g + c]; normSum = buf[g + c + 1]
    }

    /// Widens C to `newCount` classes with zero columns (classes not seen yet). `newCount` ≥ `classCount`.
    public func addClasses(_ newCount: Int) throws {
        guard newCount >= classCount else { throw RidgeError("ridge head: cannot shrink from \(classCount) to \(newCount) classes") }
        guard newCount > classCount else { return }
        let D = dimension, K = classCount
        var c = [Double](repeating: 0, count: D * newCount)
        for j in 0..<D { for k in 0..<K { c[j * newCount + k] = cross[j * K + k] } }
        cross = c
        classCount = newCount
    }

    /// Adds another head's statistics (e.g. a new domain's): same lift required; the class count becomes
    /// the larger of the two (missing columns are zero).
    public func merge(_ other: RidgeHead) throws {
        guard other.inputDimension == inputDimension, other.dimension == dimension, other.liftWeights == liftWeights else {
            throw RidgeError("ridge head: cannot merge statistics of a different feature dimension or lift")
        }
        try addClasses(max(classCount, other.classCount))
        for i in 0..<gram.count { gram[i] += other.gram[i] }
        let K = classCount, Ko = other.classCount
        for j in 0..<dimension { for k in 0..<Ko { cross[j * K + k] += other.cross[j * Ko + k] } }
        sampleCount += other.sampleCount
        normSum += other.normSum
    }

    /// W = (G + λI)⁻¹ C (D×K row-major) by Cholesky (LAPACK dpotrf/dpotrs, float64). Throws when G + λI is
    /// not positive definite (λ ≤ 0 with a rank-deficient G, or non-finite statistics).
    public func solve(lambda: Double) throws -> [Double] {
        guard lambda.isFinite else { throw RidgeError("ridge head: λ must be finite, got \(lambda)") }
        let D = dimension, K = classCount
        // G + λI is symmetric: row-major and column-major are the same matrix.
        var a = gram
        for j in 0..<D { a[j * D + j] += lambda }
        // dpotrs wants the right-hand sides column-major (D×K, leading dimension D) = Cᵀ row-major.
        var b = [Double](repeating: 0, count: D * K)
        for j in 0..<D { for k in 0..<K { b[k * D + j] = cross[j * K + k] } }
        try choleskySolve(&a, n: D, &b, rightHandSides: K, name: "ridge head: G + λI (λ = \(lambda))")
        var w = [Double](repeating: 0, count: D * K)
        for j in 0..<D { for k in 0..<K { w[j * K + k] = b[k * D + j] } }
        guard w.allSatisfy(\.isFinite) else { throw RidgeError("ridge head: solution is not finite (λ = \(lambda))") }
        return w
    }

    /// Ridge scores φ(x)·W (count×K row-major) of raw float32 features.
    public func scores(features: UnsafePointer<Float>, count: Int, weights w: [Double]) -> [Double] {
        scores(phi: lifted(features: features, count: count), count: count, weights: w)
    }

    func scores(phi: [Double], count: Int, weights w: [Double]) -> [Double] {
        let D = dimension, K = w.count / max(dimension, 1)
        precondition(w.count == D * K, "ridge head: weights must be D×K")
        var s = [Double](repeating: 0, count: count * K)
        if count > 0 {
            phi.withUnsafeBufferPointer { pp in w.withUnsafeBufferPointer { wp in s.withUnsafeMutableBufferPointer { sp in
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(count), Int32(K), Int32(D), 1,
                            pp.baseAddress, Int32(D), wp.baseAddress, Int32(K), 0, sp.baseAddress, Int32(K))
            } } }
        }
        return s
    }

    /// Predicted classes (argmax of the ridge scores, first maximum on ties) of raw float32 features.
    public func predict(features: UnsafePointer<Float>, count: Int, weights w: [Double]) -> [Int32] {
        scores(features: features, count: count, weights: w).withUnsafeBufferPointer {
            argmaxRows($0.baseAddress!, count: count, classes: w.count / dimension)
        }
    }

    /// The model's fc tensors for W when there is no lift: fc.weight = Wᵀ / featureScale (K×F row-major),
    /// fc.bias = 0. On the model's unnormalised features the logits are the ridge scores times
    /// ‖x‖/featureScale, so predictions are identical; pass `meanFeatureNorm` as the scale to keep the
    /// logits' typical magnitude (head initialisation for LP-FT).
    public func headWeights(_ w: [Double], featureScale: Double = 1) throws -> (fcWeight: [Float], fcBias: [Float]) {
        guard case .none = lift else { throw RidgeError("ridge head: a lifted head is not a linear fc layer; use predict(features:)") }
        return try RidgeHead.fcTensors(w, inputDimension: dimension, featureScale: featureScale)
    }

    /// fc.weight = Wᵀ / featureScale, fc.bias = 0 for any linear head W (F×K row-major) on normalised F-dimensional
    /// features — the unlifted ridge head's, or a linear kernel-ridge head's primal image Xᵀα.
    public static func fcTensors(_ w: [Double], inputDimension F: Int, featureScale: Double) throws -> (fcWeight: [Float], fcBias: [Float]) {
        guard featureScale > 0, featureScale.isFinite else { throw RidgeError("ridge head: feature scale must be positive") }
        let K = w.count / F
        guard w.count == F * K, K > 0 else { throw RidgeError("ridge head: weights must be \(F)×K") }
        var fw = [Float](repeating: 0, count: K * F)
        for j in 0..<F { for k in 0..<K { fw[k * F + j] = Float(w[j * K + k] / featureScale) } }
        return (fw, [Float](repeating: 0, count: K))
    }

    /// Chooses λ by ID-validation accuracy: solves for every candidate and classifies the validation
    /// features (raw float32, count×d, count = labels.count). With a communicator of size > 1 the
    /// validation set may be sharded: per-candidate correct counts and the total are summed in one
    /// collective (every rank must pass the same candidates). Ties go to the largest λ (the most
    /// regularised). Sets `lambda` and returns it with its accuracy.
    @discardableResult
    public func selectLambda(candidates: [Double], validationFeatures: UnsafePointer<Float>, labels: [Int32],
                             communicator: Communicator? = nil) throws -> (lambda: Double, accuracy: Double) {
        guard !candidates.isEmpty else { throw RidgeError("ridge head: no λ candidates") }
        let n = labels.count
        let phi = lifted(features: validationFeatures, count: n)
        var counts = [Double](repeating: 0, count: candidates.count)
        for (i, lam) in candidates.enumerated() {
            let w = try solve(lambda: lam)
            let p = scores(phi: phi, count: n, weights: w).withUnsafeBufferPointer { argmaxRows($0.baseAddress!, count: n, classes: classCount) }
            counts[i] = Double(zip(p, labels).filter { $0 == $1 }.count)
        }
        let best = try bestCandidate(candidates, correct: counts, validationCount: n, communicator: communicator, name: "ridge head")
        lambda = candidates[best.index]
        return (candidates[best.index], best.accuracy)
    }

    /// The statistics and configuration as safetensors tensors (checkpoints): `<prefix>G` [D,D] F64,
    /// `<prefix>C` [D,K] F64, `<prefix>stats` F64 [sampleCount, normSum], `<prefix>config` I64
    /// [d, D, K, liftKind (0 none, 1 random, 2 explicit), seed bit pattern], `<prefix>lambda` F64 [1] when
    /// set, and `<prefix>W_e` [d,D] F64 for an explicit lift (a random lift is redrawn from its seed).
    public func tensors(prefix: String = "ridge.") -> [String: SafeTensor] {
        var t: [String: SafeTensor] = [:]
        t[prefix + "G"] = SafeTensor(doubles: gram, shape: [dimension, dimension])
        t[prefix + "C"] = SafeTensor(doubles: cross, shape: [dimension, classCount])
        t[prefix + "stats"] = SafeTensor(doubles: [sampleCount, normSum], shape: [2])
        var kind: Int64 = 0, seed: Int64 = 0
        switch lift {
        case .none: break
        case let .random(_, s): kind = 1; seed = Int64(bitPattern: s)
        case .explicit: kind = 2; t[prefix + "W_e"] = SafeTensor(doubles: liftWeights, shape: [inputDimension, dimension])
        }
        t[prefix + "config"] = SafeTensor(int64s: [Int64(inputDimension), Int64(dimension), Int64(classCount), kind, seed], shape: [5])
        if let lambda { t[prefix + "lambda"] = SafeTensor(doubles: [lambda], shape: [1]) }
        return t
    }

    /// Rebuilds a head from what `tensors(prefix:)` wrote.
    public convenience init(file: SafeTensorsFile, prefix: String = "ridge.", source: String) throws {
        let cfg = try file.tensor(prefix + "config", source: source).int64s()
        guard cfg.count == 5, cfg[0] > 0, cfg[1] > 0, cfg[2] > 0 else { throw RidgeError("\(source): \(prefix)config is malformed") }
        let d = Int(cfg[0]), D = Int(cfg[1]), K = Int(cfg[2])
        let lift: Lift
        switch cfg[3] {
        case 0: lift = .none
        case 1: lift = .random(dimension: D, seed: UInt64(bitPattern: cfg[4]))
        case 2: lift = .explicit(weights: try file.tensor(prefix + "W_e", source: source).doubles(), dimension: D)
        default: throw RidgeError("\(source): \(prefix)config has unknown lift kind \(cfg[3])")
        }
        try self.init(inputDimension: d, classes: K, lift: lift)
        guard dimension == D else { throw RidgeError("\(source): lift dimension \(D) does not match feature dimension \(d)") }
        let g = try file.tensor(prefix + "G", source: source).doubles()
        let c = try file.tensor(prefix + "C", source: source).doubles()
        let s = try file.tensor(prefix + "stats", source: source).doubles()
        guard g.count == D * D, c.count == D * K, s.count == 2 else { throw RidgeError("\(source): ridge statistics have wrong sizes") }
        gram = g; cross = c; sampleCount = s[0]; normSum = s[1]
        if file.tensors[prefix + "lambda"] != nil { lambda = try file.tensor(prefix + "lambda", source: source).doubles().first }
    }
}

/// Solves A·X = B for a symmetric positive-definite n×n A (row- and column-major alike) by Cholesky, LAPACK
/// `dpotrf`/`dpotrs` from OpenBLAS: `b` holds the right-hand sides column-major (n × rightHandSides) and is
/// overwritten by X; `a` by its factor. `name` (e.g. "ridge head: G + λI (λ = 0.1)") starts the error messages.
/// Runs on the rank's `--threads` OpenBLAS threads.
func choleskySolve(_ a: inout [Double], n: Int, _ b: inout [Double], rightHandSides: Int, name: String) throws {
    try ComputeThreads.withBLASThreads { try choleskySolveOnCurrentThreads(&a, n: n, &b, rightHandSides: rightHandSides, name: name) }
}

private func choleskySolveOnCurrentThreads(_ a: inout [Double], n: Int, _ b: inout [Double], rightHandSides: Int,
                                           name: String) throws {
    var nn = Int32(n), nrhs = Int32(rightHandSides), lda = Int32(n), ldb = Int32(n), info: Int32 = 0
    var uplo = CChar(UInt8(ascii: "L"))
    a.withUnsafeMutableBufferPointer { dpotrf_(&uplo, &nn, $0.baseAddress, &lda, &info) }
    if info > 0 {
        throw RidgeError("\(name) is not positive definite (Cholesky failed at leading minor \(info) of \(n)); use a larger λ")
    }
    guard info == 0 else { throw RidgeError("\(name): dpotrf argument \(-info) invalid") }
    a.withUnsafeBufferPointer { ap in b.withUnsafeMutableBufferPointer { bp in
        dpotrs_(&uplo, &nn, &nrhs, ap.baseAddress, &lda, bp.baseAddress, &ldb, &info)
    } }
    guard info == 0 else { throw RidgeError("\(name): dpotrs argument \(-info) invalid") }
}

/// λ selection's decision, shared by the primal and dual heads: `correct[i]` validation samples right under candidate
/// i on this rank (of `validationCount`); with a communicator the counts and the total are summed over the ranks in one
/// collective. The most correct wins, ties go to the largest λ (the most regularised).
func bestCandidate(_ candidates: [Double], correct: [Double], validationCount: Int, communicator: Communicator?,
                   name: String) throws -> (index: Int, accuracy: Double) {
    var counts = correct + [Double(validationCount)]
    if let communicator, communicator.size > 1 { communicator.allReduceSum(&counts) }
    let total = counts[candidates.count]
    guard total > 0 else { throw RidgeError("\(name): empty validation set") }
    var best = 0
    for i in 1..<candidates.count {
        if counts[i] > counts[best] || (counts[i] == counts[best] && candidates[i] > candidates[best]) { best = i }
    }
    return (best, counts[best] / total)
}
