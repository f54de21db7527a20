import ArgumentParser
import Foundation
import DaftKernels
import DaftModels
import DaftData
import DaftInterop
import DaftEngine
import DaftDistributed
import DaftCoordinator
import DaftCommandLine

/// What a closed-form head file holds, in words (empty when `f` is none): a `daft adapt` adapter, ridge statistics,
/// or kernel-ridge samples. A file that claims to be one but does not decode says why.
func closedFormSummary(_ f: SafeTensorsFile, source: String) -> [String] {
    if f.metadata["kind"] == ContinualAdapter.fileKind {
        do { return try ContinualAdapter(file: f, source: source).summaryLines } catch { return ["adapter: INVALID: \(error)"] }
    }
    if f.tensors["ridge.config"] != nil {
        do {
            let r = try RidgeHead(file: f, source: source)
            let lift: String
            switch r.lift {
            case .none: lift = "no lift"
            case let .random(D, seed): lift = "random ReLU lift to \(D) (seed \(seed))"
            case let .explicit(_, D): lift = "explicit ReLU lift to \(D)"
            }
            return ["ridge statistics: d \(r.inputDimension), \(lift), \(r.classCount) classes, G \(r.dimension)×\(r.dimension) + C \(r.dimension)×\(r.classCount) over \(Int(r.sampleCount)) samples"
                    + (r.lambda.map { String(format: ", λ %.0e", $0) } ?? "")]
        } catch { return ["ridge statistics: INVALID: \(error)"] }
    }
    if f.tensors["kernel.config"] != nil {
        do {
            let k = try KernelRidgeHead(file: f, source: source)
            return ["kernel-ridge samples: \(k.kernel) kernel, d \(k.inputDimension), \(k.classCount) classes, \(k.count) stored samples (cap \(k.maxSamples))"
                    + (k.lambda.map { String(format: ", λ %.0e", $0) } ?? "")]
        } catch { return ["kernel-ridge samples: INVALID: \(error)"] }
    }
    return []
}

/// Prints one JSON object on the last line of stdout (for scripts).
func printJSON(_ object: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

/// Loads weights from a safetensors file or a checkpoint directory (its weights.safetensors, checksum-verified).
/// `member`: which weights file of a checkpoint directory (`weights.safetensors`, or `reference.safetensors` for the
/// model the run started from).
func loadModel(_ path: String, member: String = "weights.safetensors") throws -> (ResNet, SafeTensorsFile) {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw CLIError("\(path): no such file or directory") }
    let file: SafeTensorsFile
    let source: String
    if isDir.boolValue {
        let store = CheckpointStore(root: URL(fileURLWithPath: path).deletingLastPathComponent(), keep: 1)
        let info = try store.validate(URL(fileURLWithPath: path))
        source = path + "/" + member
        file = try SafeTensorsFile.decode(try info.read(member), source: source)
    } else {
        source = path
        file = try SafeTensorsFile.read(URL(fileURLWithPath: path))
    }
    let model = ResNet(try ResNetConfig.infer(from: file, source: source))
    try StateDict.load(file, into: model, source: source)
    return (model, file)
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Accuracy and loss of weights on a data set, each sample counted once on any number of ranks.")
    @Option(help: "Weights: safetensors file (any torchvision ResNet state_dict) or checkpoint directory") var weights: String
    @Option(help: "Data set (repeatable: each is evaluated in turn, one line and one JSON record each)") var data: [String] = ["fashion-mnist:test@id"]
    @Option var limit: Int?
    @Option(name: .customLong("batch-size")) var batchSize: Int = 256
    @Option var threads: Int?
    @Flag var json = false
    @Option(name: .customLong("bn-stats"), help: "BN running statistics to evaluate with: own (as saved), source (the pretrained source statistics restored, γ/β re-folded from the run's start statistics), or mix:α ((1−α)·own + α·start statistics); see docs/usage.md") var bnStats: String = "own"
    @Option(help: "--bn-stats source|mix: the model the run started fine-tuning from (default: start.safetensors beside --weights, or a checkpoint directory's reference.safetensors)") var start: String?
    @Option(help: "--bn-stats source: the pretrained weights (default: the file named in the start model's daft_init metadata)") var source: String?
    @OptionGroup var preprocessing: PreprocessingFlags
    @Option(help: "Config file (TOML or YAML)") var config: String?
    @OptionGroup var logging: LoggingFlags

    func run() throws {
        let comm = Runtime.communicator(threads: threads)
        let policy = try EvaluationStatistics(parsing: bnStats)
        let (model, file) = try loadModel(weights)
        if policy.needsStart { try applyStatistics(policy, to: model) }
        let norm = try preprocessing.normalization(config: model.config, metadata: file.metadata, source: weights)
        for spec in data {
            let d = try Runtime.dataset(spec, limit: limit, for: model.config, input: preprocessing)
            let r = try Evaluation.evaluate(model: model, dataset: d, normalization: norm, batchSize: batchSize, communicator: comm)
            guard comm.rank == 0 else { continue }
            let stats = policy == .own ? "" : " [bn-stats \(policy)]"
            print(String(format: "%@%@ on %@: accuracy %.4f  loss %.4f  (%d samples, %d rank(s))", weights, stats, spec, r.accuracy, r.loss, r.count, comm.size))
            if json { try printJSON(["data": spec, "accuracy": r.accuracy, "loss": r.loss, "count": r.count, "bn_stats": policy.description] as [String: Any]) }
        }
    }

    /// Loads the start (and for `source` the pretrained) model and rewrites `model`'s BN statistics.
    func applyStatistics(_ policy: EvaluationStatistics, to model: ResNet) throws {
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: weights, isDirectory: &isDir)
        let startPath = start ?? (isDir.boolValue ? weights : URL(fileURLWithPath: weights).deletingLastPathComponent().appendingPathComponent("start.safetensors").path)
        guard FileManager.default.fileExists(atPath: startPath) else {
            throw CLIError("\(startPath): no start model for --bn-stats \(policy) (runs write start.safetensors beside final.safetensors); pass --start FILE")
        }
        // a checkpoint directory carries its start model as reference.safetensors
        let fromCheckpoint = start == nil && isDir.boolValue
        let (startModel, startFile) = try loadModel(startPath, member: "reference.safetensors")
        let startName = fromCheckpoint ? startPath + "/reference.safetensors" : startPath
        var sourceModel: ResNet? = nil, sourceName = ""
        if policy == .source {
            guard let path = source ?? startFile.metadata["daft_init"].flatMap({ $0.isEmpty ? nil : $0 }) else {
                throw CLIError("\(startName): names no pretrained file (daft_init metadata); pass --source FILE")
            }
            sourceName = path
            sourceModel = try loadModel(path).0
        }
        try policy.apply(to: model, start: startModel, source: sourceModel, startName: startName, sourceName: sourceName)
    }
}

struct ConvertBN: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "convert-bn",
        abstract: "DAFT BN conversion alone: pretrained weights + target data in, converted weights out (same function, target statistics).")
    @Option(name: [.customLong("weights"), .customLong("init")], help: "Pretrained weights (safetensors or checkpoint directory)") var weights: String
    @Option var data: String = "fashion-mnist:target-train@id"
    @Option var limit: Int?
    @Option(name: .customLong("batch-size"), help: "Global batch size B of the statistics") var batchSize: Int = 128
    @Option var seed: UInt64 = 0
    @Flag(name: .customLong("no-augment")) var noAugment = false
    @Flag(help: "Measure batches in file order instead of shuffled training batches (method.md §2: shuffled by default)") var sequential = false
    @Option(help: "Output safetensors") var out: String
    @Option var threads: Int?
    @OptionGroup var preprocessing: PreprocessingFlags
    @Option(help: "Config file (TOML or YAML)") var config: String?
    @OptionGroup var logging: LoggingFlags

    func run() throws {
        let comm = Runtime.communicator(threads: threads)
        let (model, file) = try loadModel(weights)
        let norm = try preprocessing.normalization(config: model.config, metadata: file.metadata, source: weights)
        let d = try Runtime.dataset(data, limit: limit, for: model.config, input: preprocessing)
        let plan = GlobalBatchPlan(count: d.count, globalBatch: batchSize, worldSize: comm.size, seed: seed, shuffle: !sequential, tail: .drop)
        model.context.sync = comm
        let stats = try BNConversion.measure(model: model, dataset: d, plan: plan, normalization: norm,
                                             augmentation: noAugment ? nil : .standard, seed: seed, communicator: comm)
        BNConversion.apply(stats, to: model)
        if comm.rank == 0 {
            var meta = file.metadata.merging(ModelPreprocessing.metadata(norm)) { _, new in new }
            meta["daft_converted_on"] = data
            meta["daft_conversion_batch"] = String(batchSize)
            try StateDict.file(model, extraMetadata: meta).write(to: URL(fileURLWithPath: out))
            logging.logger.info("convert-bn: \(model.batchNorms.count) BN layers rewritten from \(stats.batches) global batches of \(batchSize) on \(data) -> \(out)")
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "What a safetensors file or checkpoint directory holds.")
    @Argument(help: "safetensors file or checkpoint directory") var file: String?
    @Option(help: "The same as the argument") var weights: String?
    @Flag var json = false
    @OptionGroup var logging: LoggingFlags

    func run() throws {
        guard let path = weights ?? file else { throw CLIError("inspect: give a safetensors file or checkpoint directory (argument or --weights)") }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw CLIError("\(path): no such file or directory") }
        if isDir.boolValue {
            print(try CheckpointStore.describe(URL(fileURLWithPath: path)))
            // closed-form heads inside the checkpoint (daft adapt's adapter, a ridge / kernel-ridge probe's state)
            for member in ["adapter.safetensors", "ridge.safetensors", "kernel-ridge.safetensors"] {
                let url = URL(fileURLWithPath: path).appendingPathComponent(member)
                guard FileManager.default.fileExists(atPath: url.path), let f = try? SafeTensorsFile.read(url) else { continue }
                for line in closedFormSummary(f, source: url.path) { print("  \(member): \(line)") }
            }
            if json {
                let store = CheckpointStore(root: URL(fileURLWithPath: path).deletingLastPathComponent(), keep: 1)
                let info = try store.validate(URL(fileURLWithPath: path))
                var files: [String: Any] = [:]
                for (k, v) in info.files { files[k] = ["size": v.size, "sha256": v.sha256] }
                try printJSON(["kind": "checkpoint", "step": info.step, "info": info.info, "files": files, "is_best": info.isBest])
            }
            return
        }
        let f = try SafeTensorsFile.read(URL(fileURLWithPath: path))
        var total = 0
        for name in f.tensors.keys.sorted() {
            let t = f.tensors[name]!
            total += t.elementCount
            if !json { print("\(name)  \(t.dtype.rawValue)  \(t.shape)") }
        }
        print("\(f.tensors.count) tensors, \(total) values")
        for k in f.metadata.keys.sorted() where k != "steps" || f.metadata["kind"] != ContinualAdapter.fileKind { print("metadata \(k) = \(f.metadata[k]!)") }
        let closedForm = closedFormSummary(f, source: path)
        for line in closedForm { print(line) }
        if !closedForm.isEmpty {
            if json {
                var tensors: [String: Any] = [:]
                for (k, t) in f.tensors { tensors[k] = ["dtype": t.dtype.rawValue, "shape": t.shape] }
                var o: [String: Any] = ["kind": "closed-form head", "tensors": tensors, "values": total, "summary": closedForm]
                if let a = try? ContinualAdapter(file: f, source: path) {
                    o["kind"] = "adapter"
                    o["solver"] = a.solver.rawValue
                    o["samples_seen"] = a.samplesSeen
                    o["domains"] = a.detector.domains.map { ["name": $0.name, "threshold": $0.threshold, "false_reject": $0.falseRejectRate,
                                                             "training": $0.count, "held_out": $0.heldOutCount] as [String: Any] }
                    o["steps"] = a.steps.map { ["domain": $0.domain, "lambda": $0.lambda, "held_out_accuracy": $0.heldOutAccuracy, "samples_seen": $0.samplesSeen] as [String: Any] }
                }
                try printJSON(o)
            }
            return
        }
        var architecture: [String: Any] = [:]
        do {
            let c = try ResNetConfig.infer(from: f, source: path)
            print("architecture (from the tensors): \(c.summary)")
            let norm = try? ModelPreprocessing.normalization(config: c, metadata: f.metadata, mean: nil, std: nil, source: path)
            print("preprocessing: " + (norm.map { "mean \(ModelPreprocessing.text($0.mean)), std \(ModelPreprocessing.text($0.std))\(f.metadata["mean"] == nil ? " (ImageNet default)" : "")" }
                                      ?? "no mean/std in the metadata: commands need --mean/--std"))
            architecture = ["arch": c.arch, "stem": c.stem.rawValue, "block": c.block.rawValue, "widths": c.widths, "blocks": c.blocks,
                            "in_channels": c.inChannels, "num_classes": c.numClasses]
            if let b = c.bottleneckWidths { architecture["bottleneck_widths"] = b }
            if let norm { architecture["mean"] = norm.mean; architecture["std"] = norm.std }
        } catch {
            print("architecture: not a loadable ResNet: \(error)")
        }
        if json {
            var tensors: [String: Any] = [:]
            for (k, t) in f.tensors { tensors[k] = ["dtype": t.dtype.rawValue, "shape": t.shape] }
            var o: [String: Any] = ["kind": "safetensors", "tensors": tensors, "metadata": f.metadata, "values": total]
            if !architecture.isEmpty { o["architecture"] = architecture }
            try printJSON(o)
        }
    }
}

struct BenchConv: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-conv",
        abstract: "One convolution layer's forward and backward through each kernel path, alternated in one process (which path a layer should take).")
    @Option(help: "Input channels") var cin = 128
    @Option(help: "Output channels (default: --cin)") var cout: Int?
    @Option(help: "Input height and width") var size = 28
    @Option(help: "Kernel size") var kernel = 3
    @Option(help: "Stride") var stride = 1
    @Option(help: "Padding (default: kernel/2)") var padding: Int?
    @Option(help: "Batch size") var batch = 16
    @Option(help: "Kernel paths, comma-separated, the first the reference of the ratios (sgemm, direct; direct only for 3×3 stride 1 padding 1)") var paths = "sgemm,direct"
    @Option(help: "Timed rounds (after one warm-up round)") var rounds = 7
    @Option(help: "Threads (default 1, or OPENBLAS_NUM_THREADS): the kernels split the batch over them") var threads: Int?
    @OptionGroup var logging: LoggingFlags

    func run() throws {
        let chosen = try paths.split(separator: ",").map { name -> ConvolutionBenchmark.Path in
            guard let p = ConvolutionBenchmark.Path(rawValue: String(name)) else {
                throw CLIError("--paths: unknown path '\(name)' (known: \(ConvolutionBenchmark.Path.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return p
        }
        guard !chosen.isEmpty, cin > 0, (cout ?? cin) > 0, size > 0, kernel > 0, stride > 0, batch > 0, rounds > 0, (padding ?? 0) >= 0 else {
            throw CLIError("bench-conv: channels, size, kernel, stride, batch and rounds must be positive, padding not negative, and --paths not empty")
        }
        let g = ConvGeometry(cin: cin, cout: cout ?? cin, kernel: kernel, stride: stride, padding: padding ?? kernel / 2)
        let xs = Shape4(batch, cin, size, size), ys = g.outputShape(xs)
        guard ys.h > 0 && ys.w > 0 else {
            throw CLIError("bench-conv: a \(kernel)×\(kernel) kernel with padding \(g.padH) does not fit a \(size)×\(size) input")
        }
        if chosen.contains(.direct) && !Conv2D.usesDirect3x3(g, xs, policy: .always) {
            throw CLIError("--paths: the direct kernels run 3×3 stride-1 padding-1 convolutions only, not \(kernel)×\(kernel) stride \(stride) padding \(g.padH)")
        }
        Runtime.setComputeThreads(threads)
        let r = ConvolutionBenchmark(geometry: g, input: xs, paths: chosen, rounds: rounds).run()
        print(String(format: "%d→%d channels, %d×%d kernel, stride %d, on %d×%d, batch %d, %d thread(s): sgemm %.1f GFLOP/s over the rounds; paths agree to %.1e (largest difference / largest value)",
                     g.cin, g.cout, kernel, kernel, stride, size, size, batch, ComputeThreads.count, r.sgemmGflops, r.largestRelativeDifference))
        print("| path | forward ms | GFLOP/s | % of sgemm | × first | backward ms | GFLOP/s | % of sgemm | × first |")
        print("|---|---|---|---|---|---|---|---|---|")
        for p in r.paths {
            print(String(format: "| %@ | %.2f | %.1f | %.0f%% | %.3f | %.2f | %.1f | %.0f%% | %.3f |", p.path.rawValue,
                         p.forwardMilliseconds, p.forwardGflops, 100 * p.forwardGflops / r.sgemmGflops, p.forwardRatio,
                         p.backwardMilliseconds, p.backwardGflops, 100 * p.backwardGflops / r.sgemmGflops, p.backwardRatio))
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Training-step throughput (forward, backward, SGD) for a model, input size and batch.")
    @Option(help: "Architecture") var arch = "resnet20"
    @Option(help: "Per-stage widths override") var widths: String?
    @Option(help: "Input CxHxW") var input = "1x28x28"
    @Option(help: "Batch size") var batch = 128
    @Option(help: "Threads per rank (default 1, or OPENBLAS_NUM_THREADS): kernels split the batch over them") var threads: Int?
    @Option(help: "Timed steps (after 3 warm-up steps)") var steps = 20
    @Flag(help: "Also print where the step's time goes, per layer kind (ms/step, share, GFLOP/s, % of the sgemm peak)") var profile = false
    @Option(name: .customLong("num-classes")) var numClasses = 10
    @Option(help: "Real images instead of synthetic ones, e.g. folder:DIR (decoded and augmented while the step before runs; --image-size, --workers apply)") var data: String?
    @OptionGroup var preprocessing: PreprocessingFlags
    @Flag var json = false
    @OptionGroup var logging: LoggingFlags

    func run() throws {
        let comm = Runtime.communicator(threads: threads)
        let d = input.split(separator: "x").compactMap { Int($0) }
        guard d.count == 3, d.allSatisfy({ $0 > 0 }) else { throw CLIError("--input wants CxHxW, e.g. 1x28x28, got '\(input)'") }
        let w = widths.map { $0.split(separator: ",").compactMap { Int($0) } }
        var cfg = try ResNetConfig.named(arch, inChannels: d[0], numClasses: numClasses, widths: w)
        let images = try data.map { try Runtime.dataset($0, limit: nil, for: cfg, input: preprocessing) }
        if let images { cfg.numClasses = max(cfg.numClasses, images.numClasses) }
        var bench = StepBenchmark(config: cfg, channels: d[0], height: d[1], width: d[2], batch: batch, steps: steps, data: images)
        bench.profile = profile
        let r = try bench.run(communicator: comm)
        guard comm.rank == 0 else { return }
        var line = String(format: "%@ %@ global batch %d on %d rank(s), %d thread(s) per rank: %.1f img/s, %.1f ms/step, %.1f GFLOP/s = %.0f%% of the sgemm peak %.1f GFLOP/s measured between the steps (one sample per step: %.1f–%.1f GFLOP/s per process)",
                          r.arch, r.input, r.batch, r.ranks, r.threads, r.imagesPerSecond, r.stepMilliseconds, r.gflops, r.percentOfPeak, r.sgemmPeakGflops,
                          r.sgemmSlowestSampleGflops, r.sgemmFastestSampleGflops)
        if images != nil { line += String(format: "; images from %@, %.1f ms/step waiting for data", r.source, r.dataWaitMilliseconds) }
        if let h = r.allReduceHiddenFraction, let b = r.allReduceBlockedMilliseconds {
            line += String(format: "; gradient all-reduce %.0f%% hidden behind backward, %.1f ms/step blocked", 100 * h, b)
        }
        print(line)
        if let layers = r.layers {
            print("| layer kind | ms/step | share | GFLOP/s | % of sgemm peak |")
            print("|---|---|---|---|---|")
            for l in layers {
                let g = l.gflops.map { String(format: "%.1f", $0) } ?? "", p = l.percentOfPeak.map { String(format: "%.0f%%", $0) } ?? ""
                print(String(format: "| %@ | %.1f | %.1f%% | %@ | %@ |", l.kind, l.millisecondsPerStep, 100 * l.shareOfStep, g, p))
            }
        }
        if json {
            var o: [String: Any] = ["images_per_s": r.imagesPerSecond, "gflops": r.gflops, "step_ms": r.stepMilliseconds,
                                    "sgemm_peak_gflops": r.sgemmPeakGflops, "percent_of_peak": r.percentOfPeak, "arch": r.arch,
                                    "sgemm_sample_min_gflops": r.sgemmSlowestSampleGflops, "sgemm_sample_max_gflops": r.sgemmFastestSampleGflops,
                                    "batch": r.batch, "ranks": r.ranks, "threads": r.threads, "source": r.source, "data_wait_ms": r.dataWaitMilliseconds]
            if let h = r.allReduceHiddenFraction { o["allreduce_hidden_fraction"] = h }
            if let layers = r.layers {
                o["layers"] = layers.map { l -> [String: Any] in
                    var e: [String: Any] = ["kind": l.kind, "ms_per_step": l.millisecondsPerStep, "share": l.shareOfStep]
                    if let g = l.gflops { e["gflops"] = g }
                    if let p = l.percentOfPeak { e["percent_of_peak"] = p }
                    return e
                }
            }
            try printJSON(o)
        }
    }
}

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "data", abstract: "Named domains and splits.",
                                                    subcommands: [DataList.self, DataExport.self, DataBench.self])
}

struct DataList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "The named domains and splits.")
    @OptionGroup var logging: LoggingFlags
    func run() throws { for line in DataCatalog.listing { print(line) } }
}

struct DataExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a named domain/split as x.npy (uint8 N×C×H×W) and y.npy (int64), or as a torchvision ImageFolder.",
        discussion: """
            --format folder writes OUT/CLASS/NNNNNN.png (NNNNNN = index in the split), one folder per class named \
            so that sorted order is label order (00_T-shirt-top … for Fashion-MNIST, else class_000 …); \
            --jpeg-quality Q writes JPEG files instead. The folder is built beside OUT and renamed into place, so \
            a failed export leaves nothing at OUT.
            """)
    @Option var data: String
    @Option(help: "Output directory") var out: String
    @Option var limit: Int?
    @Option(help: "npy (x.npy, y.npy) or folder (torchvision ImageFolder of PNG files)") var format: String = "npy"
    @Option(name: .customLong("jpeg-quality"), help: "With --format folder: write JPEG files of this quality (1-100) instead of PNG")
    var jpegQuality: Int?

    @OptionGroup var logging: LoggingFlags
    func run() throws {
        guard format == "npy" || format == "folder" else {
            throw CLIError("--format '\(format)': valid formats are npy, folder")
        }
        if let q = jpegQuality {
            guard format == "folder" else { throw CLIError("--jpeg-quality applies to --format folder only") }
            guard (1...100).contains(q) else { throw CLIError("--jpeg-quality \(q): must be in 1...100") }
        }
        let d = try Runtime.dataset(data, limit: limit)
        let dir = URL(fileURLWithPath: out)
        if format == "folder" {
            var names: [String]? = nil
            if case .fashionMNIST = try DataSpec.parse(data), d.numClasses == DataCatalog.fashionMNISTClassNames.count {
                names = DataCatalog.fashionMNISTClassNames
            }
            let folders = ImageFolder.classFolderNames(numClasses: d.numClasses, names: names)
            let n = try ImageFolder.write(d, to: dir, folderNames: folders, format: jpegQuality == nil ? .png : .jpeg,
                                          jpegQuality: jpegQuality ?? 90)
            print("wrote \(n) \(jpegQuality == nil ? "PNG" : "JPEG") images of \(data) in \(folders.count) class folders to \(dir.path)")
            return
        }
        try DurableFile.createDirectory(dir)
        try d.exportNPY(x: dir.appendingPathComponent("x.npy"), y: dir.appendingPathComponent("y.npy"))
        logging.logger.info("wrote \(d.count) samples of \(data) to \(dir.path)/x.npy, y.npy")
    }
}

struct DataBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench",
        abstract: "Batch production throughput of a data set: decode, channel conversion, transform, normalisation (no model).")
    @Option var data: String
    @Option(name: .customLong("channels"), help: "Model input channels the images are converted to") var channels = 3
    @Option(help: "Batch size") var batch = 64
    @Option(help: "Timed batches (after one warm-up batch)") var batches = 10
    @Flag(name: .customLong("eval"), help: "The evaluation view (Resize + CenterCrop) instead of the training augmentation") var evaluation = false
    @OptionGroup var preprocessing: PreprocessingFlags
    @Flag var json = false

    func run() throws {
        let cfg = try ResNetConfig.named("resnet18", inChannels: channels, numClasses: 1)
        let d = try Runtime.dataset(data, limit: nil, for: cfg, input: preprocessing)
        let norm = Normalization.unit(channels: channels)
        let workers = preprocessing.folderOptions(config: cfg).workers
        guard d.count >= batch else { throw CLIError("\(data): \(d.count) images do not fill one batch of \(batch)") }
        let perEpoch = d.count / batch
        var seconds = 0.0
        for b in 0...batches {
            let indices = Array((b % perEpoch) * batch ..< (b % perEpoch + 1) * batch)
            let t0 = Date()
            _ = try d.batch(indices: indices, normalization: norm, augmentation: evaluation ? nil : .standard, seed: 0, epoch: b / perEpoch)
            if b > 0 { seconds += Date().timeIntervalSince(t0) }
        }
        let ips = Double(batches * batch) / seconds
        print(String(format: "%@: %.1f img/s (%d×%d×%d, %@, %d decode thread(s): %.1f img/s per thread)", data, ips, d.channels, d.height, d.width,
                     evaluation ? "evaluation view" : "training augmentation", workers, ips / Double(workers)))
        if json { try printJSON(["images_per_s": ips, "workers": workers, "per_worker": ips / Double(workers), "height": d.height, "width": d.width]) }
    }
}
