import Foundation
import DaftKernels
import DaftModels

/// Training-step throughput of a model on synthetic data (what `daft bench` prints).
public struct StepBenchmark {
    /// What one benchmark run measured.
    public struct Result: Codable {
        public var arch: String
        public var input: String
        public var batch: Int
        public var threads: Int
        public var steps: Int
        public var imagesPerSecond: Double
        public var stepMilliseconds: Double
        public var gflops: Double
        public var sgemmPeakGflops: Double
        public var percentOfPeak: Double
        public var forwardMilliseconds: Double
        public var backwardMilliseconds: Double
    }

    public var config: ResNetConfig
    public var channels: Int, height: Int, width: Int
    public var batch: Int
    public var steps: Int
    public var warmup: Int

    public init(config: ResNetConfig, channels: Int, height: Int, width: Int, batch: Int, steps: Int = 20, warmup: Int = 3) {
        self.config = config; self.channels = channels; self.height = height; self.width = width
        self.batch = batch; self.steps = steps; self.warmup = warmup
    }

    /// Runs forward + backward + SGD step `warmup + steps` times on one random batch (like the PyTorch anchor).
    public func run() throws -> Result {
        let model = ResNet(config)
        let xs = Shape4(batch, channels, height, width)
        var rng = SplitMix64(seed: 42)
        let x = (0..<xs.count).map { _ in Float(rng.nextNormal()) }
        let y = (0..<batch).map { _ in Int32(rng.next() % UInt64(config.numClasses)) }
        let sgd = SGD(store: model.store, groups: SGD.backboneAndHead(store: model.store, lrBackbone: 0.05, lrHead: 0.05))
        var fwd = 0.0, bwd = 0.0, total = 0.0
        for it in 0..<(warmup + steps) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            model.store.zeroGradients()
            try x.withUnsafeBufferPointer { try model.forward($0.baseAddress!, xs, training: true) }
            _ = y.withUnsafeBufferPointer {
                CrossEntropy.forwardBackward(logits: model.logits.pointer, labels: $0.baseAddress!, batch: batch,
                                             classes: config.numClasses, gradScale: 1 / Float(batch), dLogits: model.dLogits.pointer)
            }
            let t1 = DispatchTime.now().uptimeNanoseconds
            model.backward()
            sgd.step()
            let t2 = DispatchTime.now().uptimeNanoseconds
            if it >= warmup {
                fwd += Double(t1 - t0) / 1e9; bwd += Double(t2 - t1) / 1e9; total += Double(t2 - t0) / 1e9
            }
        }
        let macs = Double(model.forwardMACs(channels: channels, height: height, width: width))
        // training ≈ forward + 2× for backward (input and weight gradients); the stem needs no input gradient
        let stemMacs = Double(model.stem.geometry.forwardMACs(Shape4(1, channels, height, width)))
        let flopsPerImage = 2 * (3 * macs - stemMacs)
        let ips = Double(batch * steps) / total
        let gflops = flopsPerImage * ips / 1e9
        let peak = GemmPeak.measure()
        return Result(arch: config.arch, input: "\(channels)x\(height)x\(width)", batch: batch, threads: BLASThreads.current,
                      steps: steps, imagesPerSecond: ips, stepMilliseconds: total / Double(steps) * 1000, gflops: gflops,
                      sgemmPeakGflops: peak, percentOfPeak: 100 * gflops / peak,
                      forwardMilliseconds: fwd / Double(steps) * 1000, backwardMilliseconds: bwd / Double(steps) * 1000)
    }
}
