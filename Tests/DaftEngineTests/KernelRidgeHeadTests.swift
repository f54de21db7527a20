import Foundation
import XCTest
import DaftInterop
import DaftKernels
import DaftDistributed
import DaftEngine

/// Synthetic penultimate features: `classes` Gaussian clusters in d dimensions, moved by a per-domain offset.
struct SyntheticDomain {
    let features: [Float]
    let labels: [Int32]
    var count: Int { labels.count }

    init(count: Int, d: Int = 16, classes: Int, domain: Int, seed: UInt64, spread: Double = 0.6) {
        var centres = SplitMix64(seed: 1000)
        let classMeans = (0..<(classes * d)).map { _ in centres.nextNormal() }
        var offsets = SplitMix64(seed: 2000 + UInt64(domain))
        let offset = (0..<d).map { _ in domain == 0 ? 0 : 2.5 * offsets.nextNormal() }
        var rng = SplitMix64(seed: seed)
        var x = [Float](), y = [Int32]()
        for i in 0..<count {
            let k = i % classes
            y.append(Int32(k))
            for j in 0..<d { x.append(Float(classMeans[k * d + j] + offset[j] + spread * rng.nextNormal())) }
        }
        features = x; labels = y
    }

    func slice(_ r: Range<Int>, d: Int = 16) -> (x: [Float], y: [Int32]) {
        (Array(features[(r.lowerBound * d)..<(r.upperBound * d)]), Array(labels[r]))
    }
}

/// method.md §6's dual form: the linear kernel is the primal ridge head, the RBF solve matches an independent
/// dense solve, incremental domains equal the joint solve (≤1e-9), N ranks equal one (≤1e-10), the sample cap
/// refuses clearly, λ selection, and the file round trip.
final class KernelRidgeHeadTests: XCTestCase {
    func append(_ h: KernelRidgeHead, _ x: [Float], _ y: [Int32], _ comm: Communicator? = nil) throws {
        try x.withUnsafeBufferPointer { try h.append(features: $0.baseAddress ?? UnsafePointer(bitPattern: 8)!, labels: y, count: y.count, communicator: comm) }
    }

    func testLinearKernelEqualsPrimalRidge() throws {
        let data = SyntheticDomain(count: 120, classes: 4, domain: 0, seed: 1)
        let primal = try RidgeHead(inputDimension: 16, classes: 4)
        try data.features.withUnsafeBufferPointer { try primal.accumulate(features: $0.baseAddress!, labels: data.labels, count: 120) }
        let dual = try KernelRidgeHead(inputDimension: 16, classes: 4, kernel: .linear)
        try append(dual, data.features, data.labels)
        for lambda in [1e-2, 0.3, 5] {
            let w = try primal.solve(lambda: lambda), alpha = try dual.solve(lambda: lambda)
            let ps = data.features.withUnsafeBufferPointer { primal.scores(features: $0.baseAddress!, count: 120, weights: w) }
            let ds = data.features.withUnsafeBufferPointer { dual.scores(features: $0.baseAddress!, count: 120, alpha: alpha) }
            engineAssertClose(ds, ps, rtol: 1e-8, atol: 1e-10, "dual vs primal scores, λ \(lambda)")
            engineAssertClose(try dual.primalWeights(alpha: alpha), w, rtol: 1e-8, atol: 1e-10, "Xᵀα vs W, λ \(lambda)")
        }
        XCTAssertEqual(dual.meanFeatureNorm, primal.meanFeatureNorm, accuracy: 1e-12)
        let rbf = try KernelRidgeHead(inputDimension: 16, classes: 4, kernel: .rbf(gamma: 1))
        try append(rbf, data.features, data.labels)
        XCTAssertThrowsError(try rbf.primalWeights(alpha: try rbf.solve(lambda: 1))) { XCTAssert("\($0)".contains("not a linear layer"), "\($0)") }
    }

    /// α against a textbook solve: K built entry by entry from exp(−γ‖x̂ − x̂'‖²), Gaussian elimination with pivoting.
    func testRBFSolveMatchesDirectDenseSolve() throws {
        let n = 40, d = 16, K = 3, gamma = 1.7, lambda = 0.05
        let data = SyntheticDomain(count: n, classes: K, domain: 1, seed: 2)
        let h = try KernelRidgeHead(inputDimension: d, classes: K, kernel: .rbf(gamma: gamma))
        try append(h, data.features, data.labels)
        let alpha = try h.solve(lambda: lambda)
        let xs: [[Double]] = (0..<n).map { r in
            let row = (0..<d).map { Double(data.features[r * d + $0]) }
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return row.map { $0 / norm }
        }
        var a = [[Double]](repeating: [Double](repeating: 0, count: n + K), count: n)
        for i in 0..<n {
            for j in 0..<n {
                let dist = zip(xs[i], xs[j]).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
                a[i][j] = exp(-gamma * dist) + (i == j ? lambda : 0)
            }
            a[i][n + Int(data.labels[i])] = 1
        }
        for c in 0..<n {
            let p = (c..<n).max { abs(a[$0][c]) < abs(a[$1][c]) }!
            a.swapAt(c, p)
            for r in 0..<n where r != c {
                let f = a[r][c] / a[c][c]
                for j in c..<(n + K) { a[r][j] -= f * a[c][j] }
            }
        }
        var want = [Double](repeating: 0, count: n * K)
        for i in 0..<n { for k in 0..<K { want[i * K + k] = a[i][n + k] / a[i][i] } }
        engineAssertClose(alpha, want, rtol: 1e-9, atol: 1e-12, "Cholesky α vs Gaussian elimination")
    }

    /// Domains appended one at a time (through a file round trip each, as a checkpoint would) with classes
    /// growing 3 → 4 → 6 give the joint solve over all of them.
    func testIncrementalDomainsEqualJointSolve() throws {
        for kernel in [KernelRidgeHead.Kernel.linear, .rbf(gamma: 0.8)] {
            let classes = [3, 4, 6]
            let domains = (0..<3).map { SyntheticDomain(count: 30 + 7 * $0, classes: classes[$0], domain: $0, seed: 10 + UInt64($0)) }
            var h = try KernelRidgeHead(inputDimension: 16, classes: 3, kernel: kernel)
            for (k, dom) in domains.enumerated() {
                try h.addClasses(classes[k])
                try append(h, dom.features, dom.labels)
                let bytes = try SafeTensorsFile(tensors: h.tensors()).encode()
                h = try KernelRidgeHead(file: try SafeTensorsFile.decode(bytes, source: "ckpt"), source: "ckpt")
            }
            let joint = try KernelRidgeHead(inputDimension: 16, classes: 6, kernel: kernel)
            try append(joint, domains.flatMap(\.features), domains.flatMap(\.labels))
            XCTAssertEqual(h.count, joint.count)
            engineAssertClose(try h.solve(lambda: 0.1), try joint.solve(lambda: 0.1), rtol: 1e-9, atol: 1e-12, "\(kernel): incremental vs joint α")
            let q = SyntheticDomain(count: 25, classes: 6, domain: 2, seed: 99)
            let si = q.features.withUnsafeBufferPointer { h.scores(features: $0.baseAddress!, count: 25, alpha: try! h.solve(lambda: 0.1)) }
            let sj = q.features.withUnsafeBufferPointer { joint.scores(features: $0.baseAddress!, count: 25, alpha: try! joint.solve(lambda: 0.1)) }
            engineAssertClose(si, sj, rtol: 1e-9, atol: 1e-12, "\(kernel): incremental vs joint scores")
            // merging per-domain heads is the same thing
            let merged = try KernelRidgeHead(inputDimension: 16, classes: 1, kernel: kernel)
            for dom in domains {
                let one = try KernelRidgeHead(inputDimension: 16, classes: 6, kernel: kernel)
                try append(one, dom.features, dom.labels)
                try merged.merge(one)
            }
            engineAssertClose(try merged.solve(lambda: 0.1), try joint.solve(lambda: 0.1), rtol: 1e-9, atol: 1e-12, "\(kernel): merged vs joint α")
        }
    }

    /// Contiguous shards appended through a 3-rank all-gather (one rank empty) store exactly the one-process
    /// samples, so every rank's α equals the one-process α.
    func testShardedAppendEqualsOneProcess() throws {
        let data = SyntheticDomain(count: 90, classes: 5, domain: 1, seed: 3)
        let one = try KernelRidgeHead(inputDimension: 16, classes: 5, kernel: .rbf(gamma: 1))
        try append(one, data.features, data.labels)
        let want = try one.solve(lambda: 0.2)
        let ranges = [0..<41, 41..<41, 41..<90]
        let got = try ThreadGroup(size: 3).run { r, comm -> [Double] in
            let h = try KernelRidgeHead(inputDimension: 16, classes: 5, kernel: .rbf(gamma: 1))
            let s = data.slice(ranges[r])
            try self.append(h, s.x, s.y, comm)
            XCTAssertEqual(h.count, 90)
            XCTAssertEqual(h.normSum, one.normSum, accuracy: 1e-9)
            return try h.solve(lambda: 0.2)
        }
        for (r, alpha) in got.enumerated() { engineAssertClose(alpha, want, rtol: 1e-10, atol: 0, "rank \(r) vs one process") }
    }

    func testSampleCapRefusesOnEveryRankWithClearError() throws {
        let data = SyntheticDomain(count: 60, classes: 2, domain: 0, seed: 4)
        let h = try KernelRidgeHead(inputDimension: 16, classes: 2, kernel: .linear, maxSamples: 50)
        try append(h, Array(data.features[0..<(40 * 16)]), Array(data.labels[0..<40]))
        XCTAssertThrowsError(try append(h, Array(data.features[(40 * 16)...]), Array(data.labels[40...]))) { e in
            XCTAssert("\(e)".contains("60 samples (40 stored + 20 new) pass the cap of 50"), "\(e)")
            XCTAssert("\(e)".contains("--lp-solver ridge"), "\(e)")
        }
        XCTAssertEqual(h.count, 40, "a refused append stores nothing")
        let outcomes = try ThreadGroup(size: 2).run { r, comm -> String in
            let k = try KernelRidgeHead(inputDimension: 16, classes: 2, kernel: .linear, maxSamples: 50)
            let s = data.slice(r == 0 ? 0..<30 : 30..<60)
            do { try self.append(k, s.x, s.y, comm); return "ok" } catch { return "\(error)" }
        }
        for o in outcomes { XCTAssert(o.contains("pass the cap of 50"), o) }
    }

    func testSelectLambdaAndFileRoundTrip() throws {
        let train = SyntheticDomain(count: 80, classes: 4, domain: 0, seed: 5, spread: 1.2)
        let val = SyntheticDomain(count: 40, classes: 4, domain: 0, seed: 6, spread: 1.2)
        let h = try KernelRidgeHead(inputDimension: 16, classes: 4, kernel: .rbf(gamma: 2))
        try append(h, train.features, train.labels)
        let candidates = [1e-3, 0.1, 1, 10]
        let chosen = try val.features.withUnsafeBufferPointer {
            try h.selectLambda(candidates: candidates, validationFeatures: $0.baseAddress!, labels: val.labels)
        }
        var accuracies: [Double] = []
        for lam in candidates {
            let p = val.features.withUnsafeBufferPointer { h.predict(features: $0.baseAddress!, count: 40, alpha: try! h.solve(lambda: lam)) }
            accuracies.append(Double(zip(p, val.labels).filter { $0 == $1 }.count) / 40)
        }
        XCTAssertEqual(chosen.accuracy, accuracies.max()!)
        XCTAssertEqual(chosen.lambda, zip(candidates, accuracies).filter { $0.1 == chosen.accuracy }.map(\.0).max()!)
        XCTAssertEqual(chosen.alpha, try h.solve(lambda: chosen.lambda))
        XCTAssertEqual(h.lambda, chosen.lambda)
        let back = try KernelRidgeHead(file: try SafeTensorsFile.decode(try SafeTensorsFile(tensors: h.tensors()).encode(), source: "f"), source: "f")
        XCTAssertEqual(back.kernel, h.kernel)
        XCTAssertEqual(back.samples, h.samples)
        XCTAssertEqual(back.labels, h.labels)
        XCTAssertEqual(back.lambda, h.lambda)
        XCTAssertEqual(back.maxSamples, h.maxSamples)
        XCTAssertEqual(try back.solve(lambda: 0.1), try h.solve(lambda: 0.1))
        XCTAssertThrowsError(try KernelRidgeHead(inputDimension: 16, classes: 2, kernel: .rbf(gamma: 0)))
    }
}
