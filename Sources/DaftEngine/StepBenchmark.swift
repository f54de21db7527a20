import Foundation
import DaftKernels
import DaftModels
import DaftData
import DaftDistributed

/// Training-step throughput (what `daft bench` prints): the real `Trainer.trainStep` — batch assembly,
/// forward with (synchronized) BN, loss, backward with overlapped gradient buckets, SGD — on synthetic
/// images, or on a real data set (`data`: e.g. a JPEG folder, decoded and augmented by the prefetcher while the
/// previous step runs). Under `mpirun -np W` the global batch is split over the ranks, so images/s is the whole job's.
public struct StepBenchmark {
    /// What one benchmark run measured (identical on every rank).
    public struct Result: Codable {
        public var arch: String
        public var input: String
        public var batch: Int
        public var ranks: Int
        public var threads: Int
        public var steps: Int
        public var imagesPerSecond: Double
        public var stepMilliseconds: Double
        public var gflops: Double
        /// The job's sgemm rate in the steps' time window (`GemmPeak` sampled after every timed step, summed over ranks).
        public var sgemmPeakGflops: Double
        public var percentOfPeak: Double
        /// Slowest and fastest single sgemm sample of this process (GFLOP/s of its threads together): how far the
        /// machine's speed moved during the run.
        public var sgemmSlowestSampleGflops: Double
        public var sgemmFastestSampleGflops: Double
        /// Share of the gradient all-reduce time hidden behind backward (multi-rank only).
        public var allReduceHiddenFraction: Double?
        public var allReduceBlockedMilliseconds: Double?
        /// Mean time per step the step waited for its batch (0 when the prefetcher kept up).
        public var dataWaitMilliseconds: Double
        /// Where the images came from: `synthetic` or the data set's name.
        public var source: String
        /// Time per layer kind (`profile`), mean over ranks, in `LayerProfile.Kind` order, then `other`.
        public var layers: [LayerTime]?
    }

    /// One line of the per-layer-kind breakdown.
    public struct LayerTime: Codable {
        public var kind: String
        public var millisecondsPerStep: Double
        public var shareOfStep: Double
        /// GFLOP/s of this kind's own time (nil for kinds without floating-point work worth counting).
        public var gflops: Double?
        public var percentOfPeak: Double?
    }

    public var config: ResNetConfig
    public var channels: Int, height: Int, width: Int
    public var batch: Int
    public var steps: Int
    public var warmup: Int
    /// Real images instead of synthetic ones (their shape replaces channels/height/width; training augmentation on).
    public var data: (any LabelledImages)?
    /// Measure time per layer kind (`Result.layers`).
    public var profile = false

    public init(config: ResNetConfig, channels: Int, height: Int, width: Int, batch: Int, steps: Int = 20, warmup: Int = 3,
                data: (any LabelledImages)? = nil) {
        self.config = config; self.batch = batch; self.steps = steps; self.warmup = warmup; self.data = data
        self.channels = data?.channels ?? channels; self.height = data?.height ?? height; self.width = data?.width ?? width
    }

    public func run(communicator comm: Communicator = SingleProcessCommunicator()) throws -> Result {
        let data: any LabelledImages
        if let given = self.data {
            guard given.count >= batch else { throw ModelError("\(given.name): \(given.count) images do not fill one batch of \(batch)") }
            data = given
        } else {
            var rng = DaftKernels.SplitMix64(seed: 42)
            let n = batch * (warmup + steps)
            let pixels = (0..<(n * channels * height * width)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let labels = (0..<n).map { _ in Int32(rng.next() % UInt64(config.numClasses)) }
            data = try ImageDataset(name: "synthetic", channels: channels, height: height, width: width,
                                    numClasses: config.numClasses, pixels: pixels, labels: labels)
        }
        var options = TrainingOptions()
        options.method = .ft
        options.batchSize = batch
        options.epochs = 1
        options.augment = self.data != nil
        options.lrHead = 0.01; options.lrBackbone = 0.01
        let model = ResNet(config)
        let trainer = Trainer(model: model, communicator: comm, options: options, train: data,
                              normalization: Normalization(mean: Array(repeating: 0.5, count: channels), std: Array(repeating: 0.25, count: channels)),
                              log: { _ in })
        try trainer.prepareFineTune()
        let layerProfile = profile ? LayerProfile() : nil
        model.context.profile = layerProfile
        var total = 0.0, blocked = 0.0, hidden = 0.0, communication = 0.0, dataWait = 0.0
        // the yardstick, measured in the same window as the steps: one sgemm sample after each timed step (not timed
        // as part of it), so "% of peak" compares the step with the machine as fast as it was meanwhile. With real
        // data the prefetcher keeps decoding during a sample, so `dataWaitMilliseconds` can read up to one sample low.
        let peakSampler = GemmPeak()
        let perEpoch = trainer.plan.batchesPerEpoch
        for step in 0..<(warmup + steps) {
            // no barrier before a step: with real data the prefetcher works on the next batch in between
            if self.data == nil { comm.barrier() }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let r = try trainer.trainStep(epoch: step / perEpoch, step: step % perEpoch)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if step == warmup - 1 { layerProfile?.reset() }
            if step >= warmup {
                total += dt
                dataWait += r.dataWaitSeconds
                if let s = trainer.bucketStats { blocked += s.blockedSeconds; hidden += s.hiddenSeconds; communication += s.communicationSeconds }
                peakSampler.sample()
            }
        }
        var t = [total]
        comm.allReduceSum(&t)                      // the job's step time: mean over ranks
        total = t[0] / Double(comm.size)
        let macs = Double(model.forwardMACs(channels: channels, height: height, width: width))
        // training ≈ forward + 2× for backward (input and weight gradients); the stem needs no input gradient
        let stemMacs = Double(model.stem.geometry.forwardMACs(Shape4(1, channels, height, width)))
        let flopsPerImage = 2 * (3 * macs - stemMacs)
        let ips = Double(batch * steps) / total
        let gflops = flopsPerImage * ips / 1e9
        let peak = comm.allReduceSum(peakSampler.gflops)
        var layers: [LayerTime]? = nil
        if let layerProfile {
            // mean over ranks of each kind's seconds; FLOPs summed over ranks (the job's), like `gflops`
            let kinds = LayerProfile.Kind.allCases
            var sums = kinds.map { layerProfile.seconds[$0] ?? 0 } + kinds.map { layerProfile.flops[$0] ?? 0 }
            comm.allReduceSum(&sums)
            let stepSeconds = total / Double(steps)
            var rows: [LayerTime] = []
            for (i, kind) in kinds.enumerated() {
                let perStep = sums[i] / Double(comm.size) / Double(steps)
                let flopsPerStep = sums[kinds.count + i] / Double(steps)
                let g = flopsPerStep > 0 && perStep > 0 ? flopsPerStep / perStep / 1e9 : nil
                rows.append(LayerTime(kind: kind.rawValue, millisecondsPerStep: perStep * 1000, shareOfStep: perStep / stepSeconds,
                                      gflops: g, percentOfPeak: g.map { 100 * $0 / peak }))
            }
            let other = stepSeconds - rows.reduce(0) { $0 + $1.millisecondsPerStep / 1000 }
            rows.append(LayerTime(kind: "other (batch assembly, loss, gradient buckets, zeroing gradients)",
                                  millisecondsPerStep: other * 1000, shareOfStep: other / stepSeconds, gflops: nil, percentOfPeak: nil))
            layers = rows
        }
        return Result(arch: config.arch, input: "\(channels)x\(height)x\(width)", batch: batch, ranks: comm.size,
                      threads: ComputeThreads.count, steps: steps, imagesPerSecond: ips, stepMilliseconds: total / Double(steps) * 1000,
                      gflops: gflops, sgemmPeakGflops: peak, percentOfPeak: 100 * gflops / peak,
                      sgemmSlowestSampleGflops: peakSampler.samples.min() ?? 0, sgemmFastestSampleGflops: peakSampler.samples.max() ?? 0,
                      allReduceHiddenFraction: comm.size > 1 && communication > 0 ? hidden / communication : nil,
                      allReduceBlockedMilliseconds: comm.size > 1 ? blocked / Double(steps) * 1000 : nil,
                      dataWaitMilliseconds: dataWait / Double(steps) * 1000, source: self.data?.name ?? "synthetic", layers: layers)
    }
}
