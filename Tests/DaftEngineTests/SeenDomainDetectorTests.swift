import Foundation
import XCTest
import DaftInterop
import DaftKernels
import DaftDistributed
import DaftEngine

/// The seen-domain detector and the adapter's fusion (method.md §6): the threshold rejects the target fraction of
/// held-out seen-domain data, a distant domain is routed to the fallback, sharded fitting equals one process, and
/// fused counts follow the routing; adapter files round-trip exactly.
final class SeenDomainDetectorTests: XCTestCase {
    func detector(_ train: SyntheticDomain, _ held: SyntheticDomain, name: String, into det: SeenDomainDetector,
                  rate: Double = 0.05, comm: Communicator? = nil) throws {
        try train.features.withUnsafeBufferPointer { t in try held.features.withUnsafeBufferPointer { h in
            try det.addDomain(name: name, training: t.baseAddress!, labels: train.labels, classes: 5, heldOut: h.baseAddress!, heldOutCount: held.count,
                              falseRejectRate: rate, communicator: comm)
        } }
    }

    func routes(_ det: SeenDomainDetector, _ d: SyntheticDomain) -> [Int?] {
        d.features.withUnsafeBufferPointer { det.route(features: $0.baseAddress!, count: d.count) }
    }

    func testThresholdRejectsTargetFractionOfHeldOutAndDistantDomains() throws {
        let det = SeenDomainDetector(inputDimension: 16)
        let a = SyntheticDomain(count: 400, classes: 5, domain: 0, seed: 1), heldA = SyntheticDomain(count: 200, classes: 5, domain: 0, seed: 2)
        try detector(a, heldA, name: "a", into: det, rate: 0.05)
        let rejected = routes(det, heldA).filter { $0 == nil }.count
        XCTAssertEqual(rejected, 10, "⌈0.95·200⌉ = 190 held-out samples accepted, 10 rejected")
        let freshA = SyntheticDomain(count: 400, classes: 5, domain: 0, seed: 3)
        let freshRejected = Double(routes(det, freshA).filter { $0 == nil }.count) / 400
        XCTAssertLessThan(freshRejected, 0.15, "new samples of the seen domain are mostly accepted")
        let b = SyntheticDomain(count: 300, classes: 5, domain: 4, seed: 4), heldB = SyntheticDomain(count: 100, classes: 5, domain: 4, seed: 5)
        XCTAssertGreaterThan(Double(routes(det, b).filter { $0 == nil }.count) / 300, 0.95, "a distant unseen domain goes to the fallback")
        try detector(b, heldB, name: "b", into: det)
        let rb = routes(det, SyntheticDomain(count: 300, classes: 5, domain: 4, seed: 6))
        XCTAssertGreaterThan(Double(rb.filter { $0 == 1 }.count) / 300, 0.85, "once seen, domain b routes to its entry")
        XCTAssertEqual(det.domains.map(\.name), ["a", "b"])
        XCTAssertThrowsError(try detector(a, heldA, name: "c", into: det, rate: 1))
    }

    func testShardedFitEqualsOneProcessAndFileRoundTrip() throws {
        let a = SyntheticDomain(count: 150, classes: 3, domain: 1, seed: 7), held = SyntheticDomain(count: 61, classes: 3, domain: 1, seed: 8)
        let one = SeenDomainDetector(inputDimension: 16)
        try detector(a, held, name: "rotate", into: one, rate: 0.1)
        let tr = [0..<50, 50..<50, 50..<150], hr = [0..<20, 20..<61, 61..<61]
        let got = try ThreadGroup(size: 3).run { r, comm -> SeenDomainDetector.Domain in
            let det = SeenDomainDetector(inputDimension: 16)
            let t = a.slice(tr[r]), h = held.slice(hr[r])
            try t.x.withUnsafeBufferPointer { tp in try h.x.withUnsafeBufferPointer { hp in
                try det.addDomain(name: "rotate", training: tp.baseAddress ?? UnsafePointer(bitPattern: 8)!, labels: t.y, classes: 5,
                                  heldOut: hp.baseAddress ?? UnsafePointer(bitPattern: 8)!, heldOutCount: h.y.count, falseRejectRate: 0.1, communicator: comm)
            } }
            return det.domains[0]
        }
        let want = one.domains[0]
        for d in got {
            engineAssertClose(d.classMeans, want.classMeans, rtol: 1e-12, atol: 1e-15, "class means")
            XCTAssertEqual(d.classCounts, [50, 50, 50, 0, 0])
            engineAssertClose(d.variance, want.variance, rtol: 1e-9, atol: 1e-15, "variance")
            XCTAssertEqual(d.threshold, want.threshold, accuracy: 1e-12 * want.threshold)
            XCTAssertEqual(d.count, 150); XCTAssertEqual(d.heldOutCount, 61)
        }
        let saved = one.tensors()
        let back = try SeenDomainDetector(file: try SafeTensorsFile.decode(try SafeTensorsFile(tensors: saved.tensors).encode(), source: "f"),
                                          names: saved.names, source: "f")
        XCTAssertEqual(back.domains, one.domains)
    }

    /// Adapter counts against a recount from the routing and the two heads' predictions; files round-trip.
    func testAdapterFusionCountsFollowRoutingAndFilesRoundTrip() throws {
        func set(_ d: SyntheticDomain, headPredictions: [Int32]) -> FeatureSet {
            FeatureSet(features: d.features, labels: d.labels, count: d.count, dimension: 16, headPredictions: headPredictions)
        }
        for solver in ContinualAdapter.Solver.allCases {
            let adapter = try ContinualAdapter(solver: solver, inputDimension: 16, classes: 4)
            let comm = SingleProcessCommunicator()
            for (k, name) in ["id", "rotate"].enumerated() {
                let tr = SyntheticDomain(count: 120, classes: 4, domain: k, seed: 20 + UInt64(k)), va = SyntheticDomain(count: 40, classes: 4, domain: k, seed: 30 + UInt64(k))
                let step = try adapter.addDomain(name: name, training: set(tr, headPredictions: []), heldOut: set(va, headPredictions: []),
                                                 lambdaGrid: [1e-3, 0.1, 1], communicator: comm)
                XCTAssertEqual(step.samplesSeen, 120 * (k + 1))
            }
            XCTAssertThrowsError(try adapter.addDomain(name: "id", training: set(SyntheticDomain(count: 8, classes: 4, domain: 0, seed: 1), headPredictions: []),
                                                       heldOut: set(SyntheticDomain(count: 8, classes: 4, domain: 0, seed: 2), headPredictions: []),
                                                       lambdaGrid: [1], communicator: comm)) { XCTAssert("\($0)".contains("already added"), "\($0)") }
            // a seen domain and an unseen one; the "pretrained head" predicts class 0 everywhere
            for (k, seed) in [(1, UInt64(40)), (5, UInt64(41))] {
                let test = SyntheticDomain(count: 100, classes: 4, domain: k, seed: seed)
                let pre = [Int32](repeating: 0, count: 100)
                let c = adapter.evaluate(set(test, headPredictions: pre), communicator: comm)
                let predicted = test.features.withUnsafeBufferPointer { adapter.predict(features: $0.baseAddress!, count: 100) }
                let routed = test.features.withUnsafeBufferPointer { adapter.detector.route(features: $0.baseAddress!, count: 100) }
                var fused = 0, routedCount = 0
                for i in 0..<100 {
                    let p = routed[i] != nil ? predicted[i] : pre[i]
                    if p == test.labels[i] { fused += 1 }
                    if routed[i] != nil { routedCount += 1 }
                }
                XCTAssertEqual(c.total, 100)
                XCTAssertEqual(c.fusedCorrect, fused)
                XCTAssertEqual(c.routedToAdapter, routedCount)
                XCTAssertEqual(c.pretrainedCorrect, test.labels.filter { $0 == 0 }.count)
                XCTAssertEqual(c.adapterCorrect, zip(predicted, test.labels).filter { $0 == $1 }.count)
                if k == 1 { XCTAssertGreaterThan(c.adapterFraction, 0.8, "\(solver): the seen domain goes to the adapter") }
                if k == 5 { XCTAssertLessThan(c.adapterFraction, 0.05, "\(solver): an unseen distant domain goes to the pretrained head") }
            }
            let bytes = try adapter.file().encode()
            let back = try ContinualAdapter(file: try SafeTensorsFile.decode(bytes, source: "adapter.safetensors"), source: "adapter.safetensors")
            XCTAssertEqual(back.solver, solver)
            XCTAssertEqual(back.solution, adapter.solution)
            XCTAssertEqual(back.steps, adapter.steps)
            XCTAssertEqual(back.detector.domains, adapter.detector.domains)
            XCTAssert(try back.file().encode() == bytes, "\(solver): decode → encode is byte-identical")
            XCTAssert(back.summaryLines.joined().contains("step 2: domain rotate"), back.summaryLines.joined(separator: "\n"))
        }
        XCTAssertThrowsError(try ContinualAdapter(file: SafeTensorsFile(tensors: [:], metadata: ["kind": "other"]), source: "x.safetensors")) {
            XCTAssert("\($0)".contains("x.safetensors: not a daft adapter"), "\($0)")
        }
    }
}
