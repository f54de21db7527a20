import Foundation
import DaftKernels
import DaftModels
import DaftData
import DaftDistributed
import DaftInterop
import DaftEngine
import Logging

/// What one continual-adaptation step (`daft adapt`) reads and writes.
public struct AdaptationInputs {
    /// The pretrained model (frozen backbone, and its head as the fusion fallback); identical bytes on every rank.
    public var pretrained: SafeTensorsFile
    /// Where the pretrained weights came from (messages, metadata).
    public var pretrainedSource: String
    /// The name of the domain this step adds.
    public var domain: String
    /// The domain's labelled training samples.
    public var train: any LabelledImages
    /// The domain's held-out samples (λ and the detector's threshold are chosen on them).
    public var heldOut: any LabelledImages
    /// Sets evaluated after the step (name, data), in order.
    public var evaluation: [(name: String, data: any LabelledImages)]
    public var normalization: Normalization
    /// The adapter of the earlier steps (`--adapter-base`, an `adapter.safetensors`), or nil for the first step.
    public var base: URL?
    public var solver: ContinualAdapter.Solver
    public var kernel: KernelRidgeHead.Kernel
    public var maxSamples: Int
    public var lambdaGrid: [Double]
    public var falseRejectRate: Double
    public var evalBatchSize: Int
    public var outDirectory: URL
    /// nil: fresh; "auto": the newest valid checkpoint under OUT/checkpoints if any; else a checkpoint directory.
    public var resume: String?
    public var keep: Int

    public init(pretrained: SafeTensorsFile, pretrainedSource: String, domain: String, train: any LabelledImages, heldOut: any LabelledImages,
                evaluation: [(name: String, data: any LabelledImages)], normalization: Normalization, base: URL?, solver: ContinualAdapter.Solver,
                kernel: KernelRidgeHead.Kernel, maxSamples: Int, lambdaGrid: [Double], falseRejectRate: Double, evalBatchSize: Int,
                outDirectory: URL, resume: String?, keep: Int) {
        self.pretrained = pretrained; self.pretrainedSource = pretrainedSource; self.domain = domain; self.train = train; self.heldOut = heldOut
        self.evaluation = evaluation; self.normalization = normalization; self.base = base; self.solver = solver; self.kernel = kernel
        self.maxSamples = maxSamples; self.lambdaGrid = lambdaGrid; self.falseRejectRate = falseRejectRate; self.evalBatchSize = evalBatchSize
        self.outDirectory = outDirectory; self.resume = resume; self.keep = keep
    }
}

/// The numbers of one adaptation step (rank 0 writes them to OUT/results.json).
public struct AdaptationReport: Codable {
    public var domain: String
    public var solver: String
    public var worldSize: Int
    /// Every step the adapter has taken, this one last.
    public var steps: [ContinualAdapter.StepResult]
    /// Per evaluation set: the adapter alone, the pretrained head alone, fusion, and the detector's routing.
    public var evaluation: [String: ContinualAdapter.Counts]
    public var resumed: Bool
    public var seconds: Double
}

/// One step of the continual-adaptation mode (method.md §6): the pretrained backbone stays frozen; the new domain's
/// features (each rank its shard) extend the adapter of the earlier steps, which is re-solved; the coordinator
/// (rank 0) checkpoints the fitted adapter before evaluating, so a preempted or killed step resumes from it
/// exactly; then every evaluation set is scored by the adapter, the pretrained head and their fusion.
public final class AdaptationRun {
    public let comm: Communicator
    public let inputs: AdaptationInputs
    let store: CheckpointStore
    let out: (String) -> Void

    public init(communicator: Communicator, inputs: AdaptationInputs, log: Logger) {
        comm = communicator
        self.inputs = inputs
        store = CheckpointStore(root: inputs.outDirectory.appendingPathComponent("checkpoints"), keep: inputs.keep)
        out = { log.info("\($0)") }
    }

    /// The checkpoint's name for an adapter file.
    public static let checkpointFile = "adapter.safetensors"

    public func run() throws -> AdaptationReport {
        let t0 = Date()
        let config = try ResNetConfig.infer(from: inputs.pretrained, source: inputs.pretrainedSource)
        let model = ResNet(config)
        try StateDict.load(inputs.pretrained, into: model, source: inputs.pretrainedSource)
        for d in [inputs.train, inputs.heldOut] + inputs.evaluation.map(\.data) {
            guard d.channels == config.inChannels else {
                throw ModelError("\(d.name): images have \(d.channels) channels, the model \(inputs.pretrainedSource) expects \(config.inChannels)")
            }
            try d.checkLabels(fitHeadOf: config.numClasses, head: "the pretrained head (the adapter uses its classes)")
        }
        var adapter: ContinualAdapter
        var resumed = false
        if let fitted = try resumeCheckpoint() {
            adapter = fitted
            resumed = true
        } else {
            adapter = try startingAdapter(featureDimension: config.featureDimension, classes: config.numClasses)
            let ft = try features(model, inputs.train)
            let fh = try features(model, inputs.heldOut)
            let step = try adapter.addDomain(name: inputs.domain, training: ft, heldOut: fh, lambdaGrid: inputs.lambdaGrid,
                                             falseRejectRate: inputs.falseRejectRate, communicator: comm)
            out(String(format: "adapt: step %d, domain %@: %@ over %d samples seen, λ %.0e (held-out acc %.4f), detector τ %.4g",
                       adapter.steps.count, inputs.domain, adapter.solver.rawValue, step.samplesSeen, step.lambda, step.heldOutAccuracy, step.threshold))
            try checkpoint(adapter)
            try stopIfPreempted(adapter)
        }
        var evaluation: [String: ContinualAdapter.Counts] = [:]
        for (name, data) in inputs.evaluation {
            evaluation[name] = adapter.evaluate(try features(model, data), communicator: comm)
            try stopIfPreempted(adapter)
        }
        let seconds = Date().timeIntervalSince(t0)
        let report = AdaptationReport(domain: inputs.domain, solver: adapter.solver.rawValue, worldSize: comm.size, steps: adapter.steps,
                                      evaluation: evaluation, resumed: resumed, seconds: seconds)
        if comm.rank == 0 { try writeOutputs(adapter, report) }
        return report
    }

    /// This rank's shard of `data` through the frozen backbone, in whole evaluation batches (the same features on any
    /// number of ranks).
    func features(_ model: ResNet, _ data: any LabelledImages) throws -> FeatureSet {
        let shard = EvaluationShard(count: data.count, rank: comm.rank, worldSize: comm.size).wholeBatchRange(batchSize: inputs.evalBatchSize)
        return try FeatureExtractor.extract(model: model, dataset: data, indices: Array(shard), normalization: inputs.normalization,
                                            batchSize: inputs.evalBatchSize)
    }

    /// The adapter of the earlier steps (rank 0 reads `--adapter-base`, every rank decodes the same bytes), or a new one.
    func startingAdapter(featureDimension d: Int, classes: Int) throws -> ContinualAdapter {
        guard let base = inputs.base else {
            return try ContinualAdapter(solver: inputs.solver, inputDimension: d, classes: classes, kernel: inputs.kernel, maxSamples: inputs.maxSamples)
        }
        var bytes: [UInt8] = []
        var failure = ""
        if comm.rank == 0 {
            if let data = FileManager.default.contents(atPath: base.path) { bytes = [UInt8](data) } else { failure = "\(base.path): cannot read the adapter (missing or unreadable)" }
        }
        failure = comm.broadcast(failure, root: 0)
        if !failure.isEmpty { throw ModelError(failure) }
        let adapter = try ContinualAdapter(file: try SafeTensorsFile.decode(comm.broadcast(bytes, root: 0), source: base.path), source: base.path)
        guard adapter.solver == inputs.solver else {
            throw ModelError("\(base.path): the adapter uses --lp-solver \(adapter.solver.rawValue), this step asks for \(inputs.solver.rawValue)")
        }
        guard adapter.inputDimension == d, adapter.classCount == classes else {
            throw ModelError("\(base.path): the adapter is for \(adapter.inputDimension)-dimensional features and \(adapter.classCount) classes, \(inputs.pretrainedSource) has \(d) and \(classes)")
        }
        if let k = adapter.kernelHead, k.kernel != inputs.kernel {
            out("adapt: keeping the base adapter's \(k.kernel) kernel (--kernel/--kernel-gamma are ignored when extending an adapter)")
        }
        return adapter
    }

    /// The fitted adapter of this step from the coordinator's checkpoint, when resuming and there is one.
    func resumeCheckpoint() throws -> ContinualAdapter? {
        guard let resume = inputs.resume else { return nil }
        var info: CheckpointInfo? = nil
        if comm.rank == 0 {
            if resume == "auto" {
                info = store.latestValid { out("resume: skipping \($0)") }
                if info == nil { out("resume: no valid checkpoint under \(store.root.path); starting fresh") }
            } else {
                info = try store.validate(URL(fileURLWithPath: resume))
            }
        }
        guard comm.broadcast(info == nil ? 0 : 1, root: 0) == 1 else { return nil }
        let bytes = comm.broadcast(comm.rank == 0 ? try info!.read(AdaptationRun.checkpointFile) : [], root: 0)
        let domain = comm.broadcast(info?.info["domain"] ?? "", root: 0)
        let path = comm.broadcast(info?.url.path ?? "", root: 0)
        let adapter = try ContinualAdapter(file: try SafeTensorsFile.decode(bytes, source: path + "/" + AdaptationRun.checkpointFile),
                                           source: path + "/" + AdaptationRun.checkpointFile)
        guard domain == inputs.domain, adapter.steps.last?.domain == inputs.domain else {
            throw ModelError("resume: \(path) holds the adapter after domain '\(domain)', this step adds '\(inputs.domain)'; use the same flags or a new --out")
        }
        guard adapter.solver == inputs.solver else {
            throw ModelError("resume: \(path) holds a \(adapter.solver.rawValue) adapter, this step asks for \(inputs.solver.rawValue)")
        }
        out("resume: \(path): the adapter fitted on '\(domain)' (step \(adapter.steps.count)); evaluating")
        return adapter
    }

    /// Rank 0 writes the fitted adapter as a checkpoint (manifest last); the step number is the domain count.
    func checkpoint(_ adapter: ContinualAdapter) throws {
        if comm.rank == 0 {
            let bytes = try adapter.file(extraMetadata: ["daft_init": inputs.pretrainedSource]).encode()
            let dir = try store.write(step: adapter.steps.count, files: [AdaptationRun.checkpointFile: bytes],
                                      info: ["phase": "fitted", "domain": inputs.domain, "solver": adapter.solver.rawValue,
                                             "world_size": String(comm.size), "samples": String(adapter.samplesSeen)],
                                      isBest: false, metric: adapter.steps.last?.heldOutAccuracy)
            out("checkpoint: \(dir.lastPathComponent) (adapter fitted on \(inputs.domain))")
        }
        comm.barrier()
    }

    /// When any rank got a preemption signal: the fitted adapter is already in a checkpoint; every rank exits alike.
    func stopIfPreempted(_ adapter: ContinualAdapter) throws {
        guard let request = PreemptionSignal.agreedRequest(comm) else { return }
        throw Preempted(step: adapter.steps.count, checkpoint: CheckpointStore.directoryName(step: adapter.steps.count), signal: request.description)
    }

    func writeOutputs(_ adapter: ContinualAdapter, _ report: AdaptationReport) throws {
        let dir = inputs.outDirectory
        try DurableFile.createDirectory(dir)
        try adapter.file(extraMetadata: ["daft_init": inputs.pretrainedSource]).write(to: dir.appendingPathComponent("adapter.safetensors"))
        try DurableFile.write([UInt8](try Coordinator.sortedEncoder().encode(report)), to: dir.appendingPathComponent("results.json"))
        let records = RunRecords(directory: dir)
        try records.open(resuming: false, keepLines: nil, step: 0)
        let step = adapter.steps.count
        // one record for the step: every measure keyed by set (TensorBoard tags adapt/fused_accuracy/SET, …)
        var record: [String: Any] = ["kind": "adapt", "step": step, "domain": inputs.domain, "samples_seen": adapter.samplesSeen]
        let sets = report.evaluation
        record["adapter_accuracy"] = sets.mapValues { $0.adapterAccuracy }
        record["pretrained_accuracy"] = sets.mapValues { $0.pretrainedAccuracy }
        record["fused_accuracy"] = sets.mapValues { $0.fusedAccuracy }
        record["routed_to_adapter"] = sets.mapValues { $0.routedToAdapter }
        record["adapter_fraction"] = sets.mapValues { $0.adapterFraction }
        record["count"] = sets.mapValues { $0.total }
        if let last = adapter.steps.last { record["lambda"] = last.lambda; record["held_out_accuracy"] = last.heldOutAccuracy }
        try records.append(record)
        try records.append(["kind": "final", "step": step, "seconds": report.seconds], sync: true)
        out("summary: \(adapter.solver.rawValue) adapter after \(step) domain(s) (\(adapter.steps.map(\.domain).joined(separator: ", "))), \(adapter.samplesSeen) samples, \(String(format: "%.1f", report.seconds)) s")
        let width = max(12, inputs.evaluation.map(\.name.count).max() ?? 0)
        out("  " + "set".padding(toLength: width, withPad: " ", startingAt: 0) + "  adapter  pretrained  fused   to adapter")
        for name in inputs.evaluation.map(\.name) {
            let c = report.evaluation[name]!
            out("  " + name.padding(toLength: width, withPad: " ", startingAt: 0)
                + String(format: "  %.4f   %.4f      %.4f  %d of %d (%.1f%%)", c.adapterAccuracy, c.pretrainedAccuracy,
                         c.fusedAccuracy, c.routedToAdapter, c.total, 100 * c.adapterFraction))
        }
    }
}
