import XCTest
@testable import DaftKernels
@testable import DaftModels

/// A whole training step (forward in training BN mode, cross-entropy, backward) with 2 and 3 compute threads
/// against 1 thread: logits and running statistics bit-identical, parameter gradients equal to float rounding
/// (weight gradients add one partial sum per thread), on a small-image BasicBlock net and an ImageNet-stem
/// Bottleneck net (max-pool, downsample shortcuts, both kinds of shared gradient buffers). The nets are
/// small, so the elementwise split threshold and the im2col chunk are lowered until every kernel splits.
final class ThreadedStepTests: XCTestCase {
    static let defaultFloatsPerPart = Elementwise.floatsPerPart
    override func setUp() { Elementwise.floatsPerPart = 256 }
    override func tearDown() { ComputeThreads.set(1); Elementwise.floatsPerPart = Self.defaultFloatsPerPart }

    func step(_ arch: String, widths: [Int], input xs: Shape4, threads: Int) throws -> (logits: [Float], gradients: [Float], buffers: [Float]) {
        ComputeThreads.set(threads)
        defer { ComputeThreads.set(1) }
        let model = ResNet(try ResNetConfig.named(arch, inChannels: xs.c, numClasses: 4, widths: widths))
        model.context.workspace.cacheColumnFloats = 4096      // im2col chunks of one or a few samples
        model.context.workspace.minimumColumns = 0
        var rng = SplitMix64(seed: 5)
        model.resetParameters(rng: &rng)
        let x = (0..<xs.count).map { _ in Float(rng.nextNormal()) }
        let labels = (0..<xs.n).map { Int32($0 % 4) }
        var logits: [Float] = []
        for _ in 0..<2 {                         // the second step reuses every buffer the first one grew
            model.store.zeroGradients()
            try x.withUnsafeBufferPointer { try model.forward($0.baseAddress!, xs, training: true) }
            logits = model.logits.array(xs.n * 4)
            _ = labels.withUnsafeBufferPointer {
                CrossEntropy.forwardBackward(logits: model.logits.pointer, labels: $0.baseAddress!, batch: xs.n, classes: 4,
                                             gradScale: 1 / Float(xs.n), dLogits: model.dLogits.pointer)
            }
            model.backward()
        }
        return (logits, model.store.gradients.array(model.store.parameterCount), model.store.bufferArray())
    }

    func check(_ arch: String, widths: [Int], input: Shape4) throws {
        let one = try step(arch, widths: widths, input: input, threads: 1)
        let scale = one.gradients.map { abs($0) }.max()!
        XCTAssertGreaterThan(scale, 1e-3, "\(arch): gradients are not trivially zero")
        for threads in [2, 3] {
            let many = try step(arch, widths: widths, input: input, threads: threads)
            XCTAssert(many.logits == one.logits, "\(arch): logits with \(threads) threads are bit-identical")
            XCTAssert(many.buffers == one.buffers, "\(arch): running statistics with \(threads) threads are bit-identical")
            let worst = zip(many.gradients, one.gradients).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "\(arch): gradients with \(threads) threads differ only by rounding")
        }
    }

    func testBasicBlockResNetStepWithThreadsMatchesOneThread() throws {
        try check("resnet20", widths: [8, 16, 32], input: Shape4(7, 1, 16, 16))
    }

    func testBottleneckImageNetStemStepWithThreadsMatchesOneThread() throws {
        try check("resnet50", widths: [4, 8, 8, 8], input: Shape4(5, 3, 40, 40))
    }

    /// SGD with momentum, weight decay and Nesterov: parameters and momentum buffers after three steps on 2 and 3
    /// threads are bit-identical to one thread (each element's update is the same arithmetic wherever it runs).
    func testSGDStepWithThreadsIsBitIdentical() throws {
        func run(threads: Int, nesterov: Bool) throws -> (parameters: [Float], momentum: [Float]) {
            ComputeThreads.set(threads)
            defer { ComputeThreads.set(1) }
            let model = ResNet(try ResNetConfig.named("resnet20", inChannels: 1, numClasses: 4, widths: [16, 32, 128]))
            let largest = model.store.parameterEntries.map(\.count).max()!
            XCTAssertGreaterThanOrEqual(largest, 3 * Elementwise.floatsPerPart, "the largest parameter splits over 3 threads")
            var rng = SplitMix64(seed: 9)
            model.resetParameters(rng: &rng)
            let sgd = SGD(store: model.store, groups: SGD.backboneAndHead(store: model.store, lrBackbone: 0.01, lrHead: 0.3,
                                                                         momentum: 0.9, weightDecay: 5e-4, nesterov: nesterov))
            for _ in 0..<3 {
                let g = model.store.gradientPointer
                for i in 0..<model.store.parameterCount { g[i] = Float(rng.nextNormal()) }
                sgd.step()
            }
            return (model.store.parameters.array(model.store.parameterCount),
                    sgd.momentumBuffers.array(model.store.parameterCount))
        }
        for nesterov in [false, true] {
            let one = try run(threads: 1, nesterov: nesterov)
            for threads in [2, 3] {
                let many = try run(threads: threads, nesterov: nesterov)
                XCTAssert(many.parameters == one.parameters, "parameters after SGD on \(threads) threads (nesterov \(nesterov))")
                XCTAssert(many.momentum == one.momentum, "momentum buffers on \(threads) threads (nesterov \(nesterov))")
            }
        }
    }
}
