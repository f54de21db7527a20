import XCTest
import DaftKernels
@testable import DaftModels

/// The whole model's backward against central finite differences of its loss, in the two BN behaviours
/// the fixtures do not cover: evaluation behaviour while training (LP-FT) and frozen stages (freeze).
final class BackwardFiniteDifferenceTests: XCTestCase {
    func makeModel() throws -> (ResNet, [Float], Shape4, [Int32]) {
        let cfg = try ResNetConfig.named("resnet20", inChannels: 1, numClasses: 3, widths: [3, 4, 5])
        let model = ResNet(cfg)
        var rng = SplitMix64(seed: 9)
        model.resetParameters(rng: &rng)
        for bn in model.batchNorms {
            for c in 0..<bn.channels {
                bn.gamma[c] = Float(0.5 + rng.nextUnit()); bn.beta[c] = Float(rng.nextNormal() * 0.1)
                bn.runningMean[c] = Float(rng.nextNormal() * 0.1); bn.runningVar[c] = Float(0.5 + rng.nextUnit())
            }
        }
        let xs = Shape4(4, 1, 8, 8)
        let x = (0..<xs.count).map { _ in Float(rng.nextNormal()) }
        return (model, x, xs, [0, 1, 2, 1])
    }

    func loss(_ m: ResNet, _ x: [Float], _ xs: Shape4, _ y: [Int32], backward: Bool) throws -> Double {
        m.store.zeroGradients()
        try x.withUnsafeBufferPointer { try m.forward($0.baseAddress!, xs, training: true) }
        let r = y.withUnsafeBufferPointer {
            CrossEntropy.forwardBackward(logits: m.logits.pointer, labels: $0.baseAddress!, batch: xs.n, classes: 3,
                                         gradScale: 1 / Float(xs.n), dLogits: m.dLogits.pointer)
        }
        if backward { m.backward() }
        return r.lossSum / Double(xs.n)
    }

    func check(_ configure: (ResNet) -> Void, names: [String], expectZero: [String] = []) throws {
        let (m, x, xs, y) = try makeModel()
        configure(m)
        let before = m.store.bufferArray()
        _ = try loss(m, x, xs, y, backward: true)
        var grads: [String: [Float]] = [:]          // read before the finite differences re-run forward
        for name in names + expectZero { grads[name] = m.store.gradient(name) }
        let after = m.store.bufferArray()
        for name in names {
            let e = m.store.entry(name)!
            let g = grads[name]!
            for i in Swift.stride(from: 0, to: e.count, by: max(1, e.count / 5)) {
                let p = m.store.parameterPointer + e.offset + i
                // h small enough that no ReLU kink falls inside ±h on this net (1e-2 and 1e-3 crossed some, measured),
                // large enough that float32 rounding of the loss (~1e-7) stays below the tolerance
                let orig = p.pointee, h: Float = 2e-4
                p.pointee = orig + h; let lp = try loss(m, x, xs, y, backward: false)
                p.pointee = orig - h; let lm = try loss(m, x, xs, y, backward: false)
                p.pointee = orig
                let fd = (lp - lm) / Double(2 * h)
                XCTAssertEqual(Double(g[i]), fd, accuracy: 2e-3 + 2e-2 * abs(fd), "\(name)[\(i)]")
            }
        }
        for name in expectZero { XCTAssertTrue(grads[name]!.allSatisfy { $0 == 0 }, "\(name) should get no gradient") }
        // evaluation behaviour must not move running statistics
        if m.trainBatchNormMode == .eval { XCTAssertEqual(before, after) }
    }

    func testEvalBehaviourBatchNormGradients() throws {
        try check({ $0.trainBatchNormMode = .eval },
                  names: ["conv1.weight", "bn1.weight", "bn1.bias", "layer2.0.conv1.weight", "layer2.0.downsample.1.weight", "layer3.2.bn2.bias", "fc.weight"])
    }

    func testFrozenStagesGetNoGradientAndTheRestIsExact() throws {
        try check({ $0.trainableFromStage = 3 },
                  names: ["layer3.0.conv1.weight", "layer3.0.bn1.weight", "layer3.2.conv2.weight", "fc.bias"],
                  expectZero: ["conv1.weight", "layer1.0.conv1.weight", "layer2.2.bn2.weight"])
    }
}
