import Foundation
import DaftDistributed
import DaftInterop

/// Decides, per sample, whether it comes from a domain an adapter was fitted on (RAIL-Fusion's routing,
/// method.md §6). For every seen domain k it keeps, from that domain's labelled training samples, the class
/// centroids μ_kc of the L2-normalised penultimate features and their pooled within-class per-dimension variance
/// v_k (a class-conditional Gaussian with a tied diagonal covariance, the Mahalanobis detector of Lee et al.
/// 2018 in diagonal form), and a threshold τ_k. The score of a feature x against domain k is
///
///     s_k(x) = min_c (1/d) Σ_j (x̂_j − μ_kcj)² / (v_kj + 1e-6),   x̂ = x / max(‖x‖₂, 1e-12),
///
/// over the classes c present in the domain's training data. x is *seen* when s_k(x) ≤ τ_k for some k. τ_k is
/// the ⌈(1 − r)·m⌉-th smallest score of domain k's m held-out (validation) samples, so at most a fraction r of
/// that held-out set is rejected — r is the target false-reject rate. Statistics are float64 sums over every
/// rank's shard (one all-reduce) and the held-out scores are all-gathered, so N ranks give one process's
/// detector.
public final class SeenDomainDetector {
    /// What the detector keeps of one seen domain.
    public struct Domain: Equatable {
        /// The domain's name (e.g. the data specification's domain).
        public var name: String
        /// μ_kc, classes×d row-major (rows of classes without samples are zero and skipped).
        public var classMeans: [Double]
        /// Training samples per class.
        public var classCounts: [Int]
        /// v_k: pooled within-class variance (biased), d values.
        public var variance: [Double]
        /// τ_k.
        public var threshold: Double
        /// The false-reject rate τ_k was chosen for.
        public var falseRejectRate: Double
        /// Training samples the statistics were measured on.
        public var count: Int
        /// Held-out samples the threshold was chosen on.
        public var heldOutCount: Int
    }

    /// The default target false-reject rate on held-out seen-domain data.
    public static let defaultFalseRejectRate = 0.05
    /// Added to every variance.
    public static let varianceFloor = 1e-6

    /// d: feature dimension.
    public let inputDimension: Int
    /// The seen domains, in the order they were added.
    public private(set) var domains: [Domain] = []

    /// A detector that has seen nothing (every sample is unseen).
    public init(inputDimension: Int) { self.inputDimension = inputDimension }

    /// Adds a domain from this rank's shard of its labelled training features (raw float32, count×d, labels in
    /// 0..<classes) and of its held-out features (raw float32, heldOutCount×d); every rank must call it with the
    /// same name, classes and rate.
    public func addDomain(name: String, training: UnsafePointer<Float>, labels: [Int32], classes K: Int, heldOut: UnsafePointer<Float>, heldOutCount m: Int,
                          falseRejectRate r: Double = SeenDomainDetector.defaultFalseRejectRate, communicator: Communicator? = nil) throws {
        guard r >= 0, r < 1 else { throw RidgeError("seen-domain detector: the false-reject rate must be in [0, 1), got \(r)") }
        guard K > 0 else { throw RidgeError("seen-domain detector: classes must be positive") }
        if let bad = labels.first(where: { $0 < 0 || Int($0) >= K }) { throw RidgeError("seen-domain detector: label \(bad) outside 0..<\(K)") }
        let d = inputDimension, n = labels.count
        // [class sums K×d | Σ x̂² d | class counts K], one collective
        var sums = [Double](repeating: 0, count: K * d + d + K)
        let x = normalisedRows(training, count: n, dimension: d).rows
        for i in 0..<n {
            let c = Int(labels[i])
            for j in 0..<d { let v = x[i * d + j]; sums[c * d + j] += v; sums[K * d + j] += v * v }
            sums[K * d + d + c] += 1
        }
        if let communicator, communicator.size > 1 { communicator.allReduceSum(&sums) }
        let counts = (0..<K).map { Int(sums[K * d + d + $0]) }
        let total = counts.reduce(0, +)
        guard total > 0 else { throw RidgeError("seen-domain detector: domain '\(name)' has no training samples") }
        var means = [Double](repeating: 0, count: K * d)
        var within = (0..<d).map { sums[K * d + $0] }
        for c in 0..<K where counts[c] > 0 {
            for j in 0..<d {
                let mu = sums[c * d + j] / Double(counts[c])
                means[c * d + j] = mu
                within[j] -= Double(counts[c]) * mu * mu
            }
        }
        let variance = within.map { max($0 / Double(total), 0) }
        var domain = Domain(name: name, classMeans: means, classCounts: counts, variance: variance, threshold: .infinity,
                            falseRejectRate: r, count: total, heldOutCount: 0)
        let held = normalisedRows(heldOut, count: m, dimension: d).rows
        let local = held.withUnsafeBufferPointer { h in (0..<m).map { SeenDomainDetector.score(h.baseAddress! + $0 * d, domain) } }
        var scores = local
        if let communicator, communicator.size > 1 { scores = communicator.allGatherConcatenated(local) }
        guard !scores.isEmpty else { throw RidgeError("seen-domain detector: domain '\(name)' has no held-out samples to choose its threshold on") }
        scores.sort()
        let keep = Int((Double(scores.count) * (1 - r)).rounded(.up))
        domain.threshold = scores[max(keep, 1) - 1]
        domain.heldOutCount = scores.count
        domains.append(domain)
    }

    /// s_k(x̂) of one normalised row (d values at `x`).
    static func score(_ x: UnsafePointer<Double>, _ k: Domain) -> Double {
        let d = k.variance.count
        var best = Double.infinity
        for c in 0..<k.classCounts.count where k.classCounts[c] > 0 {
            var s = 0.0
            for j in 0..<d { let e = x[j] - k.classMeans[c * d + j]; s += e * e / (k.variance[j] + varianceFloor) }
            best = min(best, s / Double(d))
        }
        return best
    }

    /// For each of `count` raw float32 features (count×d): the index of the seen domain it is accepted by with
    /// the smallest score relative to its threshold (s_k/τ_k), or nil when no domain accepts it.
    public func route(features: UnsafePointer<Float>, count: Int) -> [Int?] {
        let d = inputDimension
        let x = normalisedRows(features, count: count, dimension: d).rows
        return x.withUnsafeBufferPointer { xp in (0..<count).map { i in
            var best: (k: Int, ratio: Double)? = nil
            for (k, domain) in domains.enumerated() {
                let s = SeenDomainDetector.score(xp.baseAddress! + i * d, domain)
                guard s <= domain.threshold else { continue }
                let ratio = domain.threshold > 0 ? s / domain.threshold : 0
                if best == nil || ratio < best!.ratio { best = (k, ratio) }
            }
            return best?.k
        } }
    }

    /// The detector as safetensors tensors: `<prefix>class_means` [m,K,d], `<prefix>class_counts` I64 [m,K],
    /// `<prefix>variance` [m,d], `<prefix>threshold` [m], `<prefix>false_reject` [m] F64, `<prefix>counts` I64 [m,2]
    /// (training, held-out), `<prefix>dimension` I64 [1]; the names are returned separately for the file's metadata
    /// (one per line) because safetensors tensors hold numbers only.
    public func tensors(prefix: String = "detector.") -> (tensors: [String: SafeTensor], names: String) {
        let m = domains.count, d = inputDimension
        var t: [String: SafeTensor] = [:]
        let K = domains.first?.classCounts.count ?? 0
        t[prefix + "class_means"] = SafeTensor(doubles: domains.flatMap(\.classMeans), shape: [m, K, d])
        t[prefix + "class_counts"] = SafeTensor(int64s: domains.flatMap { $0.classCounts.map(Int64.init) }, shape: [m, K])
        t[prefix + "variance"] = SafeTensor(doubles: domains.flatMap(\.variance), shape: [m, d])
        t[prefix + "threshold"] = SafeTensor(doubles: domains.map(\.threshold), shape: [m])
        t[prefix + "false_reject"] = SafeTensor(doubles: domains.map(\.falseRejectRate), shape: [m])
        t[prefix + "counts"] = SafeTensor(int64s: domains.flatMap { [Int64($0.count), Int64($0.heldOutCount)] }, shape: [m, 2])
        t[prefix + "dimension"] = SafeTensor(int64s: [Int64(d)], shape: [1])
        return (t, domains.map(\.name).joined(separator: "\n"))
    }

    /// Rebuilds a detector from what `tensors(prefix:)` wrote.
    public convenience init(file: SafeTensorsFile, names: String, prefix: String = "detector.", source: String) throws {
        let dim = try file.tensor(prefix + "dimension", source: source).int64s()
        guard dim.count == 1, dim[0] > 0 else { throw RidgeError("\(source): \(prefix)dimension is malformed") }
        self.init(inputDimension: Int(dim[0]))
        let d = inputDimension
        let means = try file.tensor(prefix + "class_means", source: source).doubles()
        let classCounts = try file.tensor(prefix + "class_counts", source: source).int64s()
        let variance = try file.tensor(prefix + "variance", source: source).doubles()
        let threshold = try file.tensor(prefix + "threshold", source: source).doubles()
        let rate = try file.tensor(prefix + "false_reject", source: source).doubles()
        let counts = try file.tensor(prefix + "counts", source: source).int64s()
        let m = threshold.count
        let nameList = names.isEmpty ? [] : names.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let K = m > 0 ? classCounts.count / m : 0
        guard classCounts.count == m * K, means.count == m * K * d, variance.count == m * d, rate.count == m, counts.count == 2 * m, nameList.count == m else {
            throw RidgeError("\(source): seen-domain detector tensors disagree on the number of domains (\(m))")
        }
        domains = (0..<m).map { k in
            Domain(name: nameList[k], classMeans: Array(means[(k * K * d)..<((k + 1) * K * d)]),
                   classCounts: classCounts[(k * K)..<((k + 1) * K)].map { Int($0) }, variance: Array(variance[(k * d)..<((k + 1) * d)]),
                   threshold: threshold[k], falseRejectRate: rate[k], count: Int(counts[2 * k]), heldOutCount: Int(counts[2 * k + 1]))
        }
    }
}
