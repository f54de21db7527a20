import Foundation
import XCTest
import DaftTestSupport
import DaftInterop
import DaftKernels
import DaftDistributed
import DaftEngine

/// The logistic probe (method.md §4 LP (a)) against scikit-learn's `LogisticRegression(C)` on the reference's
/// scalar-standardised features, and sharded over thread-ranks against one process.
final class LogisticProbeTests: XCTestCase {
    /// 3 overlapping Gaussian classes in 6 dimensions (not separable, so every C has a finite optimum), positive
    /// like ReLU features.
    func features(count: Int, seed: UInt64) -> FeatureSet {
        var rng = SplitMix64(seed: seed)
        let F = 6, K = 3
        var x = [Float](), y = [Int32]()
        for n in 0..<count {
            let k = n % K
            for j in 0..<F {
                let u1 = max(rng.nextUnit(), 1e-12), u2 = rng.nextUnit()
                let g = (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
                x.append(Float(2 + (j % K == k ? 0.8 : 0) + 0.7 * Double(j) / Double(F) + g))
            }
            y.append(Int32(k))
        }
        return FeatureSet(features: x, labels: y, count: count, dimension: F)
    }

    func testMatchesScikitLearnOnScalarStandardisedFeatures() throws {
        let f = features(count: 240, seed: 11)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("daft-lp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try NpyArray(floats: f.features, shape: [f.count, f.dimension]).write(to: dir.appendingPathComponent("x.npy"))
        try NpyArray(int64s: f.labels.map(Int64.init), shape: [f.count]).write(to: dir.appendingPathComponent("y.npy"))
        let cs = [1e-3, 0.05, 3.0]
        // the reference's lp_log_reg.py: one scalar mean/std, LogisticRegression(C), head folded back to raw features
        let script = """
        import sys, json, numpy as np
        from sklearn.linear_model import LogisticRegression
        d = sys.argv[1]; x = np.load(d + '/x.npy').astype(np.float64); y = np.load(d + '/y.npy')
        mean, std = np.mean(x), np.std(x); z = (x - mean) / std
        out = []
        for c in json.loads(sys.argv[2]):
            clf = LogisticRegression(C=c, tol=1e-12, max_iter=100000).fit(z, y)
            w = clf.coef_ / std; b = clf.intercept_ - clf.coef_ @ (mean / std * np.ones(x.shape[1]))
            out.append({'w': w.ravel().tolist(), 'b': b.tolist()})
        print(json.dumps(out))
        """
        let text = try TestPython.run(script, [dir.path, "[\(cs.map { String($0) }.joined(separator: ","))]"])
        let sk = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [[String: [Double]]]
        let comm = SingleProcessCommunicator()
        let standard = LogisticProbe.standardisation(f, communicator: comm)
        for (i, c) in cs.enumerated() {
            let fit = LogisticProbe.fit(f, classes: 3, inverseStrength: c, standard: standard, tolerance: 1e-10,
                                        maxIterations: 200_000, communicator: comm)
            XCTAssertTrue(fit.converged, "C \(c): max|∇| \(fit.gradientNorm) after \(fit.iterations) iterations")
            let w = sk[i]["w"]!, b = sk[i]["b"]!
            let scale = max(w.map(abs).max()!, 1e-3)
            let dw = zip(fit.weight, w).map { abs(Double($0) - $1) }.max()!
            // the bias is defined up to a common shift (unpenalised softmax intercepts): compare centred values
            let bc = b.map { $0 - b.reduce(0, +) / 3 }, mine = fit.bias.map(Double.init), mc = mine.map { $0 - mine.reduce(0, +) / 3 }
            let db = zip(mc, bc).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(dw / scale, 1e-4, "C \(c): weights differ from scikit-learn by \(dw) (scale \(scale))")
            XCTAssertLessThan(db / max(bc.map(abs).max()!, 1e-3), 1e-4, "C \(c): bias differs from scikit-learn by \(db)")
        }
    }

    func testTwoThreadRanksEqualOneProcess() throws {
        let f = features(count: 90, seed: 5)
        let whole = LogisticProbe.fit(f, classes: 3, inverseStrength: 0.1,
                                      standard: LogisticProbe.standardisation(f, communicator: SingleProcessCommunicator()),
                                      tolerance: 1e-9, maxIterations: 50_000, communicator: SingleProcessCommunicator())
        let shards = try ThreadGroup(size: 2).run { rank, comm -> LogisticProbe.Result in
            let lo = rank == 0 ? 0 : 50, hi = rank == 0 ? 50 : 90     // unequal shards
            let part = FeatureSet(features: Array(f.features[(lo * 6)..<(hi * 6)]), labels: Array(f.labels[lo..<hi]), count: hi - lo, dimension: 6)
            return LogisticProbe.fit(part, classes: 3, inverseStrength: 0.1, standard: LogisticProbe.standardisation(part, communicator: comm),
                                     tolerance: 1e-9, maxIterations: 50_000, communicator: comm)
        }
        for s in shards {
            XCTAssertEqual(s.weight.count, whole.weight.count)
            let d = zip(s.standardisedSolution, whole.standardisedSolution).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(d, 1e-8, "sharded solution differs by \(d)")
        }
        XCTAssertEqual(shards[0].standardisedSolution, shards[1].standardisedSolution, "ranks must follow identical iterates")
    }

    func testReferenceSweepIsLogspaceMinus7To2With50Values() {
        let c = LogisticProbe.referenceInverseStrengths
        XCTAssertEqual(c.count, 50)
        XCTAssertEqual(c.first!, 1e-7, accuracy: 1e-20)
        XCTAssertEqual(c.last!, 100, accuracy: 1e-12)
        XCTAssertEqual(log10(c[1]) - log10(c[0]), 9.0 / 49, accuracy: 1e-12)
    }
}
