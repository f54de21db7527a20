import ArgumentParser
import Foundation
import DaftEngine
import DaftModels
import DaftKernels

struct Daft: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "daft", abstract: "Domain-Aware Fine-Tuning trainer",
                                                    subcommands: [Bench.self])
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Training-step throughput for a model, input size and batch.")
    @Option(help: "Architecture") var arch = "resnet20"
    @Option(help: "Input CxHxW") var input = "1x28x28"
    @Option var batch = 128
    @Option var threads = 1
    @Option var steps = 20
    @Option(name: .customLong("num-classes")) var numClasses = 10
    @Flag var json = false
    func run() throws {
        BLASThreads.set(threads)
        let d = input.split(separator: "x").compactMap { Int($0) }
        let cfg = try ResNetConfig.named(arch, inChannels: d[0], numClasses: numClasses)
        let r = try StepBenchmark(config: cfg, channels: d[0], height: d[1], width: d[2], batch: batch, steps: steps).run()
        print(String(format: "%@ %@ batch %d threads %d: %.1f img/s, %.1f ms/step (fwd %.1f, bwd+sgd %.1f), %.1f GFLOP/s = %.0f%% of sgemm peak %.1f",
                     r.arch, r.input, r.batch, r.threads, r.imagesPerSecond, r.stepMilliseconds, r.forwardMilliseconds, r.backwardMilliseconds, r.gflops, r.percentOfPeak, r.sgemmPeakGflops))
    }
}
Daft.main()
