import ArgumentParser
import Foundation
import DaftKernels
import DaftModels
import DaftData
import DaftDistributed
import DaftEngine
import DaftCoordinator
import DaftInterop

/// A one-line error for users (printed as `daft: error: …`, exit status 1).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Process-wide setup shared by every command: compute threads and the communicator.
enum Runtime {
    static func communicator(threads: Int?) -> Communicator {
        setComputeThreads(threads)
        return Communicators.fromEnvironment()
    }

    /// `--threads`, else OPENBLAS_NUM_THREADS, else 1.
    static func setComputeThreads(_ threads: Int?) {
        ComputeThreads.set(threads ?? ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"].flatMap { Int($0) } ?? 1)
    }

    /// Loads a named data set into memory (`fashion-mnist:SPLIT[@DOMAIN]`, `npy:X,Y`, `idx:I,L`), optionally
    /// only its first `limit` samples.
    static func dataset(_ spec: String, limit: Int?) throws -> ImageDataset {
        let d = try DataCatalog.load(try DataSpec.parse(spec))
        guard let limit, limit < d.count else { return d }
        return d.subset(0..<max(limit, 0), name: d.name)
    }

    /// The data set a model with `config` reads (`folder:DIR` streamed, anything else in memory), optionally only
    /// its first `limit` samples, converted to the model's channels (grey ↔ RGB as torchvision's loader does).
    static func dataset(_ spec: String, limit: Int?, for config: ResNetConfig, input: PreprocessingFlags) throws -> any LabelledImages {
        let parsed = try DataSpec.parse(spec)
        var d: any LabelledImages
        if case .folder = parsed {
            d = try DataCatalog.open(parsed, folder: input.folderOptions(config: config))
            if let f = d as? ImageFolderDataset, !f.skipped.isEmpty {
                FileHandle.standardError.write(Data("data: \(spec): skipped \(f.skipped.count) unreadable image(s) (--skip-bad-images); first: \(f.skipped[0])\n".utf8))
            }
        } else {
            d = try DataCatalog.load(parsed).converted(toChannels: config.inChannels)
        }
        if let limit, limit < d.count { d = d.prefix(limit) }
        return d
    }

    /// Pretrained weights for a run: rank 0 reads the file, every rank decodes the same bytes.
    static func broadcastWeights(_ path: String, communicator comm: Communicator) throws -> SafeTensorsFile {
        var bytes: [UInt8] = []
        if comm.rank == 0 {
            guard let d = FileManager.default.contents(atPath: path) else { throw CLIError("\(path): cannot read weights (missing or unreadable)") }
            bytes = [UInt8](d)
        }
        return try SafeTensorsFile.decode(comm.broadcast(bytes, root: 0), source: path)
    }
}

/// `--mean/--std`: the model's input normalisation for weights that carry none (`ModelPreprocessing`).
struct PreprocessingFlags: ParsableArguments {
    @Option(help: "Per-channel mean of pixel/255, comma-separated (one value: every channel); for weights without mean/std metadata") var mean: String?
    @Option(help: "Per-channel std of pixel/255, comma-separated (one value: every channel)") var std: String?
    @Option(name: .customLong("image-size"), help: "folder: data: crop size S of torchvision's transforms (default 224 for a 7×7-stem model, the images' own size for small-image models)") var imageSize: Int?
    @Flag(name: .customLong("skip-bad-images"), help: "folder: data: decode every image once at load and leave out the unreadable ones (counted) instead of stopping at the first") var skipBadImages = false

    @Option(help: "folder: data: threads decoding each batch (default: every core)") var workers: Int?

    /// How a model with `config` reads image folders.
    func folderOptions(config: ResNetConfig) -> FolderImageOptions {
        FolderImageOptions(channels: config.inChannels, imageSize: imageSize ?? (config.stem == .imagenet ? 224 : nil), skipBadImages: skipBadImages,
                           workers: workers ?? ProcessInfo.processInfo.activeProcessorCount)
    }

    /// The normalisation of a model with `config` whose weights carry `metadata` (empty: trained from scratch).
    func normalization(config: ResNetConfig, metadata: [String: String], source: String) throws -> Normalization {
        try ModelPreprocessing.normalization(config: config, metadata: metadata,
                                             mean: try mean.map { try ModelPreprocessing.parse($0, key: "--mean", source: "command line") },
                                             std: try std.map { try ModelPreprocessing.parse($0, key: "--std", source: "command line") },
                                             source: source)
    }
}

/// Flags every training command shares (cli.md).
struct TrainingFlags: ParsableArguments {
    @Option(help: "Training set: fashion-mnist:SPLIT[@DOMAIN], npy:X.npy,Y.npy, idx:IMAGES,LABELS or folder:DIR (torchvision ImageFolder)") var data: String = "fashion-mnist:target-train@id"
    @Option(name: .customLong("val-data"), help: "ID validation set (model selection, probe regularisation)") var valData: String?
    @Option(name: .customLong("test-data"), help: "ID test set reported at the end") var testData: String?
    @Option(help: "OOD test set NAME=DATA (repeatable)") var ood: [String] = []
    @Option(help: "Use only the first N training samples") var limit: Int?
    @Option(name: .customLong("eval-limit"), help: "Use only the first N samples of val/test/OOD sets") var evalLimit: Int?
    @Option var epochs: Int = 5
    @Option(name: .customLong("max-steps"), help: "Stop after this many optimizer steps") var maxSteps: Int?
    @Option(name: .customLong("batch-size"), help: "Global batch size, split over ranks") var batchSize: Int = 128
    @Option(help: "Learning rate of every parameter group (default: the method's tuned rate; see `daft finetune --help`)") var lr: Double?
    @Option(name: .customLong("lr-head"), help: "Head learning rate (two-rate methods: daft, fast-head-only)") var lrHead: Double?
    @Option(name: .customLong("lr-backbone"), help: "Backbone learning rate (two-rate methods)") var lrBackbone: Double?
    @Option var momentum: Double = 0.9
    @Option(name: .customLong("weight-decay")) var weightDecay: Double = 0
    @Option var seed: UInt64 = 0
    @Option(help: "Output directory (checkpoints under DIR/checkpoints, DIR/final.safetensors)") var out: String = "runs/daft"
    @Option(name: .customLong("checkpoint-every"), help: "Checkpoint every N steps (and at each phase change and epoch end)") var checkpointEvery: Int = 200
    @Option(help: "Keep the last K checkpoints (plus the best)") var keep: Int = 3
    @Option(help: "auto (newest valid checkpoint in --out) or a checkpoint directory") var resume: String?
    @Option(help: "Short last batch: drop, short (keep it; ranks may get unequal counts), pad") var tail: String = "drop"
    @Flag(name: .customLong("no-augment"), help: "Disable the training augmentation") var noAugment = false
    @Option(help: "Training augmentation recipe: standard (±2 px translation with edge padding, horizontal flip) or robust (plus a per-image mix of rotation, shrink, blur, gain/bias, noise, salt-and-pepper and inversion; see docs/fashion-shift.md)") var augment: String = "standard"
    @Option(name: .customLong("bucket-mb"), help: "Gradient all-reduce bucket size (MB)") var bucketMB: Double = 25
    @Option(name: .customLong("consistency-every"), help: "Compare parameter checksums across ranks every N steps (0: off)") var consistencyEvery: Int = 50
    @Option(name: .customLong("early-stop"), help: "Stop after N epochs without ID val improvement (0: never)") var earlyStop: Int = 0
    @Option(help: "Threads per rank (default 1, or OPENBLAS_NUM_THREADS): kernels split the batch over them") var threads: Int?
    @Option(help: "Config file (TOML or YAML) setting any flag; command-line flags win") var config: String?
    @Option(name: .customLong("log-every"), help: "A step line and a metrics.jsonl record every N steps") var logEvery: Int = 10
    @Flag(help: "No step lines or progress bars (phase and epoch summaries only)") var quiet = false
    @Flag(name: .customLong("no-epoch-ood"), help: "Do not evaluate the OOD sets and the feature distortion at every epoch end (only at the end)") var noEpochOOD = false

    /// The run-record and display settings of RunInputs.
    func apply(to inputs: inout RunInputs) throws {
        guard logEvery > 0 else { throw CLIError("--log-every must be positive, got \(logEvery)") }
        inputs.logEvery = logEvery
        inputs.quiet = quiet
        inputs.progressBars = ProgressBar.terminalAttached()
        inputs.epochEvaluation = !noEpochOOD
    }

    func options(method: Method) throws -> TrainingOptions {
        var o = TrainingOptions()
        o.method = method
        o.epochs = epochs
        o.maxSteps = maxSteps
        guard batchSize > 0 else { throw CLIError("--batch-size must be positive") }
        o.batchSize = batchSize
        o.momentum = momentum
        o.weightDecay = weightDecay
        o.seed = seed
        guard let t = GlobalBatchPlan.TailPolicy(rawValue: tail) else { throw CLIError("--tail must be drop, short or pad, got '\(tail)'") }
        o.tail = t
        o.augment = !noAugment
        guard Augmentation.named(augment) != nil else {
            throw CLIError("--augment must be \(Augmentation.recipes.map(\.name).joined(separator: " or ")), got '\(augment)'")
        }
        if noAugment && augment != "standard" { throw CLIError("--no-augment and --augment \(augment) contradict each other") }
        o.augmentation = augment == "standard" ? nil : augment
        o.bucketMegabytes = bucketMB
        o.consistencyEvery = consistencyEvery
        o.earlyStopPatience = earlyStop
        // learning rates: --lr sets both groups; --lr-head / --lr-backbone override (methods with one rate use --lr);
        // unset, the method's tuned defaults (Method.defaultLearningRates)
        let defaults = method.defaultLearningRates
        if method.twoLearningRates {
            o.lrHead = lrHead ?? lr ?? defaults.head
            o.lrBackbone = lrBackbone ?? lr ?? defaults.backbone
        } else {
            let one = lr ?? lrBackbone ?? lrHead ?? defaults.backbone
            o.lrHead = lrHead ?? one
            o.lrBackbone = lrBackbone ?? one
        }
        return o
    }

    func evalSets(for config: ResNetConfig, input: PreprocessingFlags) throws -> (val: (any LabelledImages)?, test: (any LabelledImages)?, ood: [(String, any LabelledImages)]) {
        let val = try valData.map { try Runtime.dataset($0, limit: evalLimit, for: config, input: input) }
        let test = try testData.map { try Runtime.dataset($0, limit: evalLimit, for: config, input: input) }
        var oods: [(String, any LabelledImages)] = []
        for o in ood {
            guard let eq = o.firstIndex(of: "="), eq != o.startIndex else { throw CLIError("--ood wants NAME=DATA, got '\(o)'") }
            oods.append((String(o[..<eq]), try Runtime.dataset(String(o[o.index(after: eq)...]), limit: evalLimit, for: config, input: input)))
        }
        return (val, test, oods)
    }
}
