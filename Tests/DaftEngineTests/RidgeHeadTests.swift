import Foundation
import XCTest
import DaftTestSupport
import DaftInterop
import DaftKernels
import DaftDistributed
import DaftEngine
import CBLAS

/// method.md §6 against `ridge.safetensors` (NumPy/SciPy float64): statistics, Cholesky solve,
/// incremental domains with new classes equal to the joint solve, sharded accumulation + all-reduce equal
/// to one process, a clear error for a non-SPD system, checkpoint round trip, fc mapping, λ selection.
final class RidgeHeadTests: XCTestCase {
    struct Data {
        let file: SafeTensorsFile
        let liftWeights: [Double]
        let lambda: Double
    }

    func data() throws -> Data {
        let f = try TestFixtures.load("ridge.safetensors")
        return Data(file: f, liftWeights: try f.fixtureDoubles("W_e"), lambda: Double(f.metadata["lambda"]!)!)
    }

    func labels(_ f: SafeTensorsFile, _ name: String) throws -> [Int32] {
        try f.tensor(name, source: "ridge").int64s().map(Int32.init)
    }

    func head(_ d: Data, classes: Int) throws -> RidgeHead {
        try RidgeHead(inputDimension: 16, classes: classes, lift: .explicit(weights: d.liftWeights, dimension: 64))
    }

    func accumulate(_ h: RidgeHead, _ x: [Double], _ y: [Int32]) throws {
        try x.withUnsafeBufferPointer { try h.accumulate(features: $0.baseAddress!, labels: y, count: y.count) }
    }

    func testStatisticsAndSolveMatchNumPy() throws {
        let d = try data()
        let h = try head(d, classes: 5)
        let x = try d.file.fixtureDoubles("X"), y = try labels(d.file, "labels")
        try accumulate(h, x, y)
        engineAssertClose(h.gram, try d.file.fixtureDoubles("G"), rtol: 1e-9, "G")
        engineAssertClose(h.cross, try d.file.fixtureDoubles("C"), rtol: 1e-9, "C")
        XCTAssertEqual(h.sampleCount, 200)
        let w = try h.solve(lambda: d.lambda)
        engineAssertClose(w, try d.file.fixtureDoubles("W"), rtol: 1e-9, "W")

        // float32 features take the same path (widened to float64 first)
        let x32 = x.map(Float.init)
        let h32 = try head(d, classes: 5), hw = try head(d, classes: 5)
        try x32.withUnsafeBufferPointer { try h32.accumulate(features: $0.baseAddress!, labels: y, count: y.count) }
        try accumulate(hw, x32.map(Double.init), y)
        XCTAssertEqual(h32.gram, hw.gram)
        XCTAssertEqual(h32.cross, hw.cross)
    }

    /// Under `--threads 2` the Gram accumulation and the Cholesky solve run on two OpenBLAS threads
    /// (`ComputeThreads.withBLASThreads`): still NumPy's answer, and OpenBLAS is back at one thread after.
    func testStatisticsAndSolveOnTwoThreadsMatchNumPy() throws {
        ComputeThreads.set(2)
        defer { ComputeThreads.set(1) }
        let d = try data()
        let h = try head(d, classes: 5)
        try accumulate(h, try d.file.fixtureDoubles("X"), try labels(d.file, "labels"))
        engineAssertClose(h.gram, try d.file.fixtureDoubles("G"), rtol: 1e-9, "G")
        engineAssertClose(try h.solve(lambda: d.lambda), try d.file.fixtureDoubles("W"), rtol: 1e-9, "W")
        XCTAssertEqual(openblas_get_num_threads(), 1, "kernel parts call sgemm single-threaded")
    }

    func testIncrementalDomainsEqualJointSolve() throws {
        let d = try data()
        let f = d.file
        let classes = [3, 4, 6]
        let h = try head(d, classes: 3)
        var perDomain: [RidgeHead] = []
        for k in 0..<3 {
            try h.addClasses(classes[k])
            let x = try f.fixtureDoubles("X_d\(k)"), y = try labels(f, "y_d\(k)")
            try accumulate(h, x, y)
            let single = try head(d, classes: classes[k])
            try accumulate(single, x, y)
            engineAssertClose(single.gram, try f.fixtureDoubles("G_d\(k)"), rtol: 1e-9, "G_d\(k)")
            engineAssertClose(single.cross, try f.fixtureDoubles("C_d\(k)"), rtol: 1e-9, "C_d\(k)")
            perDomain.append(single)
            let w = try h.solve(lambda: d.lambda)
            XCTAssertEqual(w.count, 64 * classes[k])
            let want = k == 2 ? "W_joint" : "W_after_d\(k)"
            engineAssertClose(w, try f.fixtureDoubles(want), rtol: 1e-9, "incremental after d\(k) vs \(want)")
        }
        // merging per-domain statistics (classes padded) is the same thing
        let merged = try head(d, classes: 1)
        for s in perDomain { try merged.merge(s) }
        XCTAssertEqual(merged.classCount, 6)
        engineAssertClose(try merged.solve(lambda: d.lambda), try f.fixtureDoubles("W_joint"), rtol: 1e-9, "merged domains vs W_joint")
        XCTAssertThrowsError(try h.addClasses(2))
    }

    /// Three shards accumulated separately and summed (in-process, and through a 3-rank all-reduce) give
    /// the one-shard solution; an empty shard is fine.
    func testShardedStatisticsEqualOneProcess() throws {
        let d = try data()
        let x = try d.file.fixtureDoubles("X"), y = try labels(d.file, "labels")
        let one = try head(d, classes: 5)
        try accumulate(one, x, y)
        let want = try one.solve(lambda: d.lambda)
        let bounds = [0, 70, 140, 200]
        let shards = try (0..<3).map { r -> RidgeHead in
            let h = try head(d, classes: 5)
            try accumulate(h, Array(x[(bounds[r] * 16)..<(bounds[r + 1] * 16)]), Array(y[bounds[r]..<bounds[r + 1]]))
            return h
        }
        let summed = try head(d, classes: 5)
        for s in shards { try summed.merge(s) }
        engineAssertClose(try summed.solve(lambda: d.lambda), want, rtol: 1e-10, "3 shards summed vs one shard")

        let ranks = [(0, 90), (90, 90), (90, 200)]  // rank 1 has no samples
        let solutions = try ThreadGroup(size: 3).run { r, comm -> [Double] in
            let h = try self.head(d, classes: 5)
            let (a, b) = ranks[r]
            try self.accumulate(h, Array(x[(a * 16)..<(b * 16)]), Array(y[a..<b]))
            h.allReduce(comm)
            XCTAssertEqual(h.sampleCount, 200)
            return try h.solve(lambda: d.lambda)
        }
        for (r, w) in solutions.enumerated() { engineAssertClose(w, want, rtol: 1e-10, "rank \(r) after all-reduce vs one process") }
        XCTAssertEqual(solutions[0], solutions[1])
        XCTAssertEqual(solutions[0], solutions[2])
    }

    func testNonPositiveDefiniteSystemThrowsClearError() throws {
        let h = try RidgeHead(inputDimension: 16, classes: 2)
        var rng = SplitMix64(seed: 3)
        let x = (0..<(3 * 16)).map { _ in Float(rng.nextNormal()) }
        try x.withUnsafeBufferPointer { try h.accumulate(features: $0.baseAddress!, labels: [0, 1, 1], count: 3) }
        XCTAssertThrowsError(try h.solve(lambda: 0)) { e in
            XCTAssert("\(e)".contains("not positive definite"), "\(e)")
        }
        XCTAssertThrowsError(try h.solve(lambda: -0.5)) { e in XCTAssert("\(e)".contains("not positive definite"), "\(e)") }
        XCTAssertNoThrow(try h.solve(lambda: 1e-3))
        XCTAssertThrowsError(try h.accumulate(features: x.withUnsafeBufferPointer { $0.baseAddress! }, labels: [0, 2, 1], count: 3))
    }

    func testCheckpointRoundTripAndRandomLift() throws {
        let d = try data()
        for lift in [RidgeHead.Lift.none, .random(dimension: 48, seed: 99), .explicit(weights: d.liftWeights, dimension: 64)] {
            let h = try RidgeHead(inputDimension: 16, classes: 5, lift: lift)
            try accumulate(h, try d.file.fixtureDoubles("X"), try labels(d.file, "labels"))
            h.lambda = 0.7
            let bytes = try SafeTensorsFile(tensors: h.tensors(prefix: "ridge.")).encode()
            let back = try RidgeHead(file: try SafeTensorsFile.decode(bytes, source: "ckpt"), prefix: "ridge.", source: "ckpt")
            XCTAssertEqual(back.lift, h.lift)
            XCTAssertEqual(back.liftWeights, h.liftWeights)
            XCTAssertEqual(back.gram, h.gram)
            XCTAssertEqual(back.cross, h.cross)
            XCTAssertEqual(back.sampleCount, h.sampleCount)
            XCTAssertEqual(back.normSum, h.normSum)
            XCTAssertEqual(back.lambda, 0.7)
            XCTAssertEqual(try back.solve(lambda: 0.7), try h.solve(lambda: 0.7))
        }
        // the random lift is a pure function of (d, D, seed), with unit-variance entries
        let a = RidgeHead.randomLiftWeights(inputDimension: 64, dimension: 512, seed: 7)
        XCTAssertEqual(a, RidgeHead.randomLiftWeights(inputDimension: 64, dimension: 512, seed: 7))
        XCTAssertNotEqual(a, RidgeHead.randomLiftWeights(inputDimension: 64, dimension: 512, seed: 8))
        let meanSquare = a.reduce(0) { $0 + $1 * $1 } / Double(a.count)
        XCTAssertEqual(meanSquare, 1, accuracy: 0.02)
    }

    /// Without a lift, fc = Wᵀ/s on the model's unnormalised features predicts exactly what the ridge
    /// head predicts, and its logits are the ridge scores times ‖x‖/s.
    func testHeadWeightsOnUnnormalisedFeatures() throws {
        let d = try data()
        let x = try d.file.fixtureDoubles("X").map(Float.init), y = try labels(d.file, "labels")
        let h = try RidgeHead(inputDimension: 16, classes: 5)
        try x.withUnsafeBufferPointer { try h.accumulate(features: $0.baseAddress!, labels: y, count: y.count) }
        let w = try h.solve(lambda: d.lambda)
        let scale = h.meanFeatureNorm
        let (fw, fb) = try h.headWeights(w, featureScale: scale)
        XCTAssertEqual(fw.count, 5 * 16)
        XCTAssertEqual(fb, [Float](repeating: 0, count: 5))
        let scores = x.withUnsafeBufferPointer { h.scores(features: $0.baseAddress!, count: 200, weights: w) }
        let predicted = x.withUnsafeBufferPointer { h.predict(features: $0.baseAddress!, count: 200, weights: w) }
        for r in 0..<200 {
            let row = x[(r * 16)..<((r + 1) * 16)].map(Double.init)
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            var logits = [Double](repeating: 0, count: 5)
            for k in 0..<5 { for j in 0..<16 { logits[k] += Double(fw[k * 16 + j]) * row[j] } }
            for k in 0..<5 { XCTAssertEqual(logits[k] * scale / norm, scores[r * 5 + k], accuracy: 1e-6) }
            XCTAssertEqual(Int32(logits.indices.max { logits[$0] < logits[$1] }!), predicted[r])
        }
        let lifted = try head(d, classes: 5)
        XCTAssertThrowsError(try lifted.headWeights(try { try accumulate(lifted, try d.file.fixtureDoubles("X"), y); return try lifted.solve(lambda: 1) }()))
    }

    func testSelectLambdaPicksBestValidationAccuracy() throws {
        let d = try data()
        let x = try d.file.fixtureDoubles("X").map(Float.init), y = try labels(d.file, "labels")
        let h = try head(d, classes: 5)
        try x.withUnsafeBufferPointer { try h.accumulate(features: $0.baseAddress!, labels: Array(y[0..<150]), count: 150) }
        let val = Array(x[(150 * 16)...]), vy = Array(y[150...])
        let candidates = [1e-3, 0.01, 0.1, 1, 10, 100]
        let (best, acc) = try val.withUnsafeBufferPointer {
            try h.selectLambda(candidates: candidates, validationFeatures: $0.baseAddress!, labels: vy)
        }
        XCTAssertEqual(h.lambda, best)
        var accuracies: [Double] = []
        for lam in candidates {
            let w = try h.solve(lambda: lam)
            let p = val.withUnsafeBufferPointer { h.predict(features: $0.baseAddress!, count: vy.count, weights: w) }
            accuracies.append(Double(zip(p, vy).filter { $0 == $1 }.count) / Double(vy.count))
        }
        XCTAssertEqual(acc, accuracies.max()!)
        XCTAssertEqual(best, zip(candidates, accuracies).filter { $0.1 == acc }.map(\.0).max()!)
    }
}
