import Foundation
import XCTest
import DaftTestSupport
import DaftInterop
import DaftKernels
import DaftModels
import DaftDistributed
import DaftEngine

/// method.md §5 against `priors.safetensors` (PyTorch, resnet20, the batch of parity_resnet20): the L2-SP
/// penalty and gradient, the feature-space prior's value and the gradients of CE + prior w.r.t. every
/// trained parameter and the variance parameters b; finite differences; bitwise no-op at zero weight; and
/// 2 thread-ranks × 4 samples equal to the 8-sample fixture (global statistics, gradient scaling).
///
/// Model tolerances are 1e-4 relative to each tensor's largest magnitude, as in TorchParityTests (float32
/// noise measured by the fixture script: feat_grad 2.9e-6 relative).
final class PriorsTests: XCTestCase {
    struct Setup {
        let file: SafeTensorsFile
        let reference: ResNet
        let model: ResNet
        let input: [Float]
        let labels: [Int32]
        let shape: Shape4
    }

    func setup() throws -> Setup {
        let f = try TestFixtures.load("priors.safetensors")
        let t = try f.tensor("input", source: "priors").shape
        return Setup(file: f, reference: try TestFixtures.model(f, prefix: "theta0."), model: try TestFixtures.model(f, prefix: "theta."),
                     input: try f.fixtureFloats("input"),
                     labels: try f.tensor("labels", source: "priors").int64s().map(Int32.init),
                     shape: Shape4(t[0], t[1], t[2], t[3]))
    }

    // MARK: L2-SP

    func testL2SPPenaltyAndGradientMatchPyTorch() throws {
        let s = try setup()
        let alpha = Double(s.file.metadata["alpha"]!)!, beta = Double(s.file.metadata["beta"]!)!
        let prior = L2SPPrior(reference: s.reference.store, alpha: alpha, beta: beta)
        let want = try s.file.fixtureDoubles("l2sp_penalty")[0]
        XCTAssertEqual(prior.penalty(s.model.store), want, accuracy: 1e-12 * abs(want))
        XCTAssertEqual(prior.penalty(s.reference.store), beta / 2 * (s.reference.store.values("fc.weight") + s.reference.store.values("fc.bias"))
            .reduce(0) { $0 + Double($1) * Double($1) }, accuracy: 1e-12)
        s.model.store.zeroGradients()
        prior.addGradient(to: s.model.store)
        for e in s.model.store.parameterEntries {
            let ours = s.model.store.gradient(e.name).map(Double.init)
            engineAssertClose(ours, try s.file.fixtureDoubles("l2sp_grad.\(e.name)"), rtol: 1e-6, "l2sp_grad.\(e.name)")
        }
    }

    func testL2SPGradientMatchesCentralDifferences() throws {
        let s = try setup()
        let prior = L2SPPrior(reference: s.reference.store, alpha: 0.03, beta: 0.2)
        let store = s.model.store
        store.zeroGradients()
        prior.addGradient(to: store)
        var rng = SplitMix64(seed: 5)
        var indices = (0..<40).map { _ in Int(rng.next() % UInt64(store.parameterCount)) }
        indices += [store.entry("fc.weight")!.offset + 3, store.entry("fc.bias")!.offset + 1, store.entry("bn1.weight")!.offset]
        let p = store.parameterPointer
        for i in indices {
            let v = p[i], h: Float = 1e-2
            p[i] = v + h; let up = prior.penalty(store); let hi = Double(p[i])
            p[i] = v - h; let down = prior.penalty(store); let lo = Double(p[i])
            p[i] = v
            let fd = (up - down) / (hi - lo)  // exact for a quadratic, up to float64 rounding
            XCTAssertEqual(Double(store.gradientPointer[i]), fd, accuracy: 1e-6 * max(1, abs(fd)), "parameter index \(i)")
        }
    }

    /// α = β = 0 adds nothing: the gradient arena is bitwise identical to a step without the prior. A
    /// frozen parameter gets no prior gradient.
    func testL2SPZeroWeightIsBitwiseNoOpAndFrozenGetsNothing() throws {
        let s = try setup()
        func gradients(prior: L2SPPrior?) throws -> [Float] {
            let m = s.model
            m.store.zeroGradients()
            prior?.addGradient(to: m.store)
            try s.input.withUnsafeBufferPointer { try m.forward($0.baseAddress!, s.shape, training: true) }
            _ = s.labels.withUnsafeBufferPointer {
                CrossEntropy.forwardBackward(logits: m.logits.pointer, labels: $0.baseAddress!, batch: s.shape.n,
                                             classes: m.config.numClasses, gradScale: 1 / Float(s.shape.n), dLogits: m.dLogits.pointer)
            }
            m.backward()
            return m.store.gradients.array(m.store.parameterCount)
        }
        let without = try gradients(prior: nil)
        let zero = try gradients(prior: L2SPPrior(reference: s.reference.store, alpha: 0, beta: 0))
        XCTAssertEqual(without.map(\.bitPattern), zero.map(\.bitPattern), "α = β = 0 must not change a single bit")
        XCTAssertNotEqual(without, try gradients(prior: L2SPPrior(reference: s.reference.store, alpha: 0.01, beta: 0.1)))

        let model = s.model
        let frozen = L2SPPrior(reference: s.reference.store, alpha: 0.5, beta: 0.5) { model.stage(of: $0.name) >= 2 }
        model.store.zeroGradients()
        frozen.addGradient(to: model.store)
        for e in model.store.parameterEntries {
            let g = model.store.gradient(e.name)
            if model.stage(of: e.name) < 2 { XCTAssert(g.allSatisfy { $0 == 0 }, "\(e.name) is frozen") }
            else { XCTAssert(g.contains { $0 != 0 }, "\(e.name) trains") }
        }
        // the penalty only counts trainable parameters
        let all = L2SPPrior(reference: s.reference.store, alpha: 0.5, beta: 0.5)
        XCTAssertLessThan(frozen.penalty(model.store), all.penalty(model.store))
    }

    // MARK: feature prior

    func makePrior(_ s: Setup) throws -> FeaturePrior {
        let config = s.model.config
        let stages = try s.file.metadata["feature_layers"]!.split(separator: ",").map { try FeaturePrior.stage(named: String($0), config: config) }
        XCTAssertEqual(stages, [2, 4])
        let prior = try FeaturePrior(reference: s.reference.store, config: config, stages: stages, lambda: Double(s.file.metadata["lambda"]!)!)
        for (i, l) in prior.layers.enumerated() {
            XCTAssertEqual(prior.variance(layer: i)[0], 0.1 + 1e-5, accuracy: 1e-12, "initial σ²")
            prior.setLogVariance(layer: i, try s.file.fixtureDoubles("prior_b.\(l.name)"))
        }
        return prior
    }

    func testFeaturePriorMatchesPyTorch() throws {
        let s = try setup()
        let prior = try makePrior(s)
        let m = s.model
        m.store.zeroGradients()
        try s.input.withUnsafeBufferPointer { try m.forward($0.baseAddress!, s.shape, training: true) }
        let ce = s.labels.withUnsafeBufferPointer {
            CrossEntropy.forwardBackward(logits: m.logits.pointer, labels: $0.baseAddress!, batch: s.shape.n,
                                         classes: m.config.numClasses, gradScale: 1 / Float(s.shape.n), dLogits: m.dLogits.pointer)
        }.lossSum / Double(s.shape.n)
        let value = try s.input.withUnsafeBufferPointer {
            try prior.forwardBackward(model: m, input: $0.baseAddress!, shape: s.shape, training: true, communicator: nil)
        }
        m.backward()
        XCTAssertEqual(ce, try s.file.fixtureDoubles("ce_loss")[0], accuracy: 1e-5)
        let wantPrior = try s.file.fixtureDoubles("feature_prior")[0]
        XCTAssertEqual(value, wantPrior, accuracy: 1e-4 * abs(wantPrior))
        let wantTotal = try s.file.fixtureDoubles("total_loss")[0]
        XCTAssertEqual(ce + value, wantTotal, accuracy: 1e-4 * abs(wantTotal))
        for e in m.store.parameterEntries {
            engineAssertClose(m.store.gradient(e.name), try s.file.fixtureFloats("feat_grad.\(e.name)"), rtol: 1e-4, atol: 1e-7,
                              "feat_grad.\(e.name)")
        }
        for l in prior.layers {
            engineAssertClose(l.bGradient, try s.file.fixtureDoubles("feat_grad_b.\(l.name)"), rtol: 1e-4, "feat_grad_b.\(l.name)")
        }
        // the frozen copy's parameters are untouched (only its BN running statistics move in train mode)
        XCTAssertEqual(prior.frozen.store.parameterArray(), s.reference.store.parameterArray())
        XCTAssertNotEqual(prior.frozen.store.bufferArray(), s.reference.store.bufferArray())

        // b follows SGD with momentum: first step b -= lr·g
        let b0 = prior.layers[1].b, g0 = prior.layers[1].bGradient
        prior.step(lr: 0.5)
        for c in 0..<b0.count { XCTAssertEqual(prior.layers[1].b[c], b0[c] - 0.5 * g0[c], accuracy: 1e-15) }
        // checkpoint round trip of b and momentum
        let bytes = try SafeTensorsFile(tensors: prior.stateTensors()).encode()
        let restored = try makePrior(s)
        try restored.loadState(try SafeTensorsFile.decode(bytes, source: "state"), source: "state")
        XCTAssertEqual(restored.layers.map(\.b), prior.layers.map(\.b))
        XCTAssertEqual(restored.layers.map(\.bMomentum), prior.layers.map(\.bMomentum))
    }

    /// Two thread-ranks with 4 samples each, synchronized BN and the prior's one float64 collective: the
    /// rank-averaged gradients equal the 8-sample PyTorch gradients, and both ranks see the same prior value
    /// and b gradients.
    func testTwoRanksEqualOneProcess() throws {
        let s = try setup()
        let W = 2, per = s.shape.n / W
        let sampleSize = s.shape.count / s.shape.n
        let results = try ThreadGroup(size: W).run { rank, comm -> (grads: [Float], ce: Double, prior: Double, bGrad: [[Double]]) in
            let m = try TestFixtures.model(s.file, prefix: "theta.")
            m.context.sync = comm
            let prior = try self.makePrior(s)
            let x = Array(s.input[(rank * per * sampleSize)..<((rank + 1) * per * sampleSize)])
            let y = Array(s.labels[(rank * per)..<((rank + 1) * per)])
            let xs = Shape4(per, s.shape.c, s.shape.h, s.shape.w)
            m.store.zeroGradients()
            try x.withUnsafeBufferPointer { try m.forward($0.baseAddress!, xs, training: true) }
            let ceSum = y.withUnsafeBufferPointer {
                CrossEntropy.forwardBackward(logits: m.logits.pointer, labels: $0.baseAddress!, batch: per, classes: m.config.numClasses,
                                             gradScale: Float(W) / Float(s.shape.n), dLogits: m.dLogits.pointer)
            }.lossSum
            let value = try x.withUnsafeBufferPointer {
                try prior.forwardBackward(model: m, input: $0.baseAddress!, shape: xs, training: true, communicator: comm)
            }
            m.backward()
            return (m.store.gradients.array(m.store.parameterCount), ceSum, value, prior.layers.map(\.bGradient))
        }
        XCTAssertEqual(results[0].prior, results[1].prior)
        XCTAssertEqual(results[0].bGrad, results[1].bGrad)
        let total = (results[0].ce + results[1].ce) / Double(s.shape.n) + results[0].prior
        let wantTotal = try s.file.fixtureDoubles("total_loss")[0]
        XCTAssertEqual(total, wantTotal, accuracy: 1e-4 * abs(wantTotal))
        let averaged = zip(results[0].grads, results[1].grads).map { ($0 + $1) / Float(W) }
        for e in s.model.store.parameterEntries {
            engineAssertClose(Array(averaged[e.offset..<(e.offset + e.count)]), try s.file.fixtureFloats("feat_grad.\(e.name)"),
                              rtol: 1e-4, atol: 1e-7, "2 ranks feat_grad.\(e.name)")
        }
        for (i, name) in ["layer2", "penultimate"].enumerated() {
            engineAssertClose(results[0].bGrad[i], try s.file.fixtureDoubles("feat_grad_b.\(name)"), rtol: 1e-4, "2 ranks feat_grad_b.\(name)")
        }
    }

    /// λ = 0: the prior adds exactly zero feature gradient (the value is the constant log σ² part).
    func testZeroLambdaAddsZeroGradient() throws {
        let s = try setup()
        let prior = try FeaturePrior(reference: s.reference.store, config: s.model.config, stages: [1, 2, 3, 4], lambda: 0)
        try s.input.withUnsafeBufferPointer { try s.model.forward($0.baseAddress!, s.shape, training: true) }
        let v = try s.input.withUnsafeBufferPointer {
            try prior.forwardBackward(model: s.model, input: $0.baseAddress!, shape: s.shape, training: true, communicator: nil)
        }
        XCTAssertEqual(v, 0)
        for l in prior.layers {
            let p = s.model.extraFeatureGradients[l.stage]!
            let n = l.stage == 4 ? s.shape.n * l.channels : s.model.stageOutput(l.stage).shape.count
            XCTAssert(UnsafeBufferPointer(start: p, count: n).allSatisfy { $0 == 0 })
        }
        prior.uninstall(from: s.model)
        XCTAssert(s.model.extraFeatureGradients.isEmpty)
    }

    /// Extra cost of the feature prior per training step (frozen forward + prior), resnet20 1×28×28, batch
    /// 128. Runs only with DAFT_PRIOR_BENCH=1 (meant for a release build).
    func testFeaturePriorCostBenchmark() throws {
        guard ProcessInfo.processInfo.environment["DAFT_PRIOR_BENCH"] == "1" else { throw XCTSkip("set DAFT_PRIOR_BENCH=1") }
        let config = try ResNetConfig.named("resnet20", inChannels: 1, numClasses: 10)
        let batch = 128, xs = Shape4(batch, 1, 28, 28)
        var rng = SplitMix64(seed: 1)
        let x = (0..<xs.count).map { _ in Float(rng.nextNormal()) }
        let y = (0..<batch).map { _ in Int32(rng.next() % 10) }
        let model = ResNet(config)
        let sgd = SGD(store: model.store, groups: SGD.backboneAndHead(store: model.store, lrBackbone: 0.01, lrHead: 0.1))
        func rss() -> Int {
            let s = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
            let line = s.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
        }
        func step(_ prior: FeaturePrior?) throws -> (total: Double, prior: Double) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            model.store.zeroGradients()
            try x.withUnsafeBufferPointer { try model.forward($0.baseAddress!, xs, training: true) }
            _ = y.withUnsafeBufferPointer {
                CrossEntropy.forwardBackward(logits: model.logits.pointer, labels: $0.baseAddress!, batch: batch, classes: 10,
                                             gradScale: 1 / Float(batch), dLogits: model.dLogits.pointer)
            }
            let t1 = DispatchTime.now().uptimeNanoseconds
            if let prior { try x.withUnsafeBufferPointer { _ = try prior.forwardBackward(model: model, input: $0.baseAddress!, shape: xs, training: true, communicator: nil) } }
            let t2 = DispatchTime.now().uptimeNanoseconds
            model.backward()
            sgd.step()
            prior?.step(lr: 0.1)
            let t3 = DispatchTime.now().uptimeNanoseconds
            return (Double(t3 - t0) / 1e6, Double(t2 - t1) / 1e6)
        }
        let steps = 20
        for _ in 0..<3 { _ = try step(nil) }
        var base = 0.0
        for _ in 0..<steps { base += try step(nil).total }
        let before = rss()
        let prior = try FeaturePrior(reference: model.store, config: config, stages: [1, 2, 3, 4], lambda: 0.5)
        for _ in 0..<3 { _ = try step(prior) }
        let after = rss()
        var with = 0.0, priorPart = 0.0
        for _ in 0..<steps { let r = try step(prior); with += r.total; priorPart += r.prior }
        let penult = try FeaturePrior(reference: model.store, config: config, stages: [4], lambda: 0.5)
        var withPenult = 0.0
        for _ in 0..<3 { _ = try step(penult) }
        for _ in 0..<steps { withPenult += try step(penult).total }
        print(String(format: "[feature-prior bench] resnet20 1x28x28 batch %d, BLAS threads %d: step %.2f ms without prior, %.2f ms with prior on layer1-3+penultimate (prior part %.2f ms = frozen forward + prior), %.2f ms with penultimate only; RSS +%.1f MB",
                     batch, BLASThreads.current, base / Double(steps), with / Double(steps), priorPart / Double(steps),
                     withPenult / Double(steps), Double(after - before) / 1e6))
    }
}
