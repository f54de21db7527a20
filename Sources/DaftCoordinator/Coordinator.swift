import Foundation
import DaftKernels
import DaftModels
import DaftData
import DaftDistributed
import DaftInterop
import DaftEngine
import Logging

/// What a fine-tuning run reads and writes besides the training options.
public struct RunInputs {
    /// Pretrained weights (`--weights`/`--init`, read by rank 0 and broadcast by the CLI); nil for `pretrain`,
    /// which builds `initConfig` from scratch.
    public var initWeights: SafeTensorsFile?
    /// The path the pretrained weights came from (for messages).
    public var initSource: String = ""
    public var initConfig: ResNetConfig?
    public var train: any LabelledImages
    public var validation: (any LabelledImages)?
    public var test: (any LabelledImages)?
    public var ood: [(name: String, data: any LabelledImages)]
    /// The model's input normalisation (`ModelPreprocessing`), written into every weights file.
    public var normalization: Normalization
    public var outDirectory: URL
    public var checkpointEvery: Int
    public var keep: Int
    /// `nil`: start fresh; `"auto"`: newest valid checkpoint under out/checkpoints if any; else a checkpoint directory.
    public var resume: String?
    public var numClasses: Int?
    /// Ridge statistics of earlier domains (`--ridge-base`), added to by a ridge probe.
    public var ridgeBase: URL?
    /// A step line and a metrics.jsonl step record every this many steps (`--log-every`).
    public var logEvery = 10
    /// No step lines or bars, only phase and epoch summaries (`--quiet`).
    public var quiet = false
    /// Progress bars instead of step lines (rank 0's stdout is a terminal).
    public var progressBars = false
    /// Evaluate every OOD set and the feature distortion at each epoch end, for the records (`--no-epoch-ood` turns it off).
    public var epochEvaluation = true
    public init(initWeights: SafeTensorsFile?, initConfig: ResNetConfig? = nil, train: any LabelledImages, validation: (any LabelledImages)?, test: (any LabelledImages)?,
                ood: [(name: String, data: any LabelledImages)], normalization: Normalization, outDirectory: URL,
                checkpointEvery: Int, keep: Int, resume: String?, numClasses: Int?) {
        self.initWeights = initWeights; self.initConfig = initConfig; self.train = train; self.validation = validation; self.test = test; self.ood = ood
        self.normalization = normalization; self.outDirectory = outDirectory; self.checkpointEvery = checkpointEvery
        self.keep = keep; self.resume = resume; self.numClasses = numClasses
    }
}

/// Final numbers of a run (rank 0 writes them to OUT/results.json).
public struct RunReport: Codable {
    public var method: String
    public var worldSize: Int
    public var steps: Int
    public var bestEpoch: Int
    public var valAccuracy: Double?
    public var test: Evaluation.Result?
    public var ood: [String: Evaluation.Result]
    public var meanOOD: Double?
    public var distortion: Evaluation.Distortion?
    public var parameterDistance: [String: Double]
    public var history: [EpochRecord]
    public var seconds: Double
}

/// The coordinator: rank 0 owns every decision that must be taken once (phase changes, best checkpoint,
/// early stop) and every file written; the phase machine `convert-bn → probe → train → evaluate → done`
/// runs on every rank in lockstep, and its position is saved in every checkpoint so a run resumes exactly.
public final class Coordinator {
    public let comm: Communicator
    public let options: TrainingOptions
    public let inputs: RunInputs
    public private(set) var state = TrainerState()
    public private(set) var trainer: Trainer!
    let store: CheckpointStore
    let out: (String) -> Void
    var bestWeights: ParameterStore?
    var referenceFromCheckpoint: SafeTensorsFile?
    var optimizerFromCheckpoint: SafeTensorsFile?
    /// A checkpoint's ridge.safetensors / kernel-ridge.safetensors, restored into the trainer on resume.
    var closedFormFromCheckpoint: [String: SafeTensorsFile] = [:]
    /// metrics.jsonl and the TensorBoard events (rank 0 only).
    let records: RunRecords?
    let bar: ProgressBar
    var resumed = false
    /// The global step of the last checkpoint this run wrote (a preemption right after one needs no other).
    var lastCheckpointStep = -1

    /// `log` gets the run's progress lines at `info` on every rank (a rank-aware handler shows rank 0's).
    public init(communicator: Communicator, options: TrainingOptions, inputs: RunInputs, log: Logger) {
        self.comm = communicator
        self.options = options
        self.inputs = inputs
        self.store = CheckpointStore(root: inputs.outDirectory.appendingPathComponent("checkpoints"), keep: inputs.keep)
        let rank = communicator.rank
        self.out = { log.info("\($0)") }
        self.records = rank == 0 ? RunRecords(directory: inputs.outDirectory) : nil
        self.bar = ProgressBar(enabled: rank == 0 && inputs.progressBars && !inputs.quiet)
    }

    /// A hash of the options that change what is computed (resume refuses a checkpoint made with others).
    public static func optionsHash(_ o: TrainingOptions) -> String {
        var o = o
        o.epochs = 0; o.maxSteps = nil; o.consistencyEvery = 0; o.evalBatchSize = 0; o.bucketMegabytes = 0
        let data = (try? sortedEncoder().encode(o)) ?? Data()
        return Checksum.sha256Hex(of: [UInt8](data))
    }

    static func sortedEncoder() -> JSONEncoder {
        let e = JSONEncoder(); e.outputFormatting = [.sortedKeys, .prettyPrinted]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }

    // MARK: start / resume

    /// Builds the model on every rank: from the coordinator's checkpoint when resuming, else from `--init`
    /// (read by rank 0 and broadcast so every rank starts identical).
    func start() throws -> ResNet {
        var checkpoint: CheckpointInfo? = nil
        if comm.rank == 0, let resume = inputs.resume {
            if resume == "auto" {
                checkpoint = store.latestValid { out("resume: skipping \($0)") }
                if checkpoint == nil { out("resume: no valid checkpoint under \(store.root.path); starting fresh") }
            } else {
                let dir = URL(fileURLWithPath: resume)
                checkpoint = try store.validate(dir)
            }
        }
        let resuming = comm.broadcast(checkpoint == nil ? 0 : 1, root: 0) == 1
        resumed = resuming
        if resuming {
            let files = ["weights.safetensors", "optimizer.safetensors", "reference.safetensors", "trainer.json"]
            var blobs: [String: [UInt8]] = [:]
            for f in files {
                let bytes = comm.rank == 0 ? try checkpoint!.read(f) : []
                blobs[f] = comm.broadcast(bytes, root: 0)
            }
            let weights = try SafeTensorsFile.decode(blobs["weights.safetensors"]!, source: "checkpoint weights.safetensors")
            let model = ResNet(try ResNetConfig.infer(from: weights, source: "checkpoint weights.safetensors"))
            try StateDict.load(weights, into: model, source: "checkpoint weights.safetensors")
            let saved = try Coordinator.decodeSavedTrainer(blobs["trainer.json"]!, source: "checkpoint trainer.json")
            guard saved.optionsHash == Coordinator.optionsHash(options) else {
                throw ModelError("resume: checkpoint was made with different options (method, lr, batch, seed, data ...); use the same flags or a new --out")
            }
            state = saved.state
            referenceFromCheckpoint = try SafeTensorsFile.decode(blobs["reference.safetensors"]!, source: "checkpoint reference.safetensors")
            optimizerFromCheckpoint = try SafeTensorsFile.decode(blobs["optimizer.safetensors"]!, source: "checkpoint optimizer.safetensors")
            // the closed-form probe's state (ridge statistics or kernel-ridge samples), when the probe has run
            for name in ["ridge.safetensors", "kernel-ridge.safetensors"] {
                let bytes = comm.broadcast(comm.rank == 0 && checkpoint!.files[name] != nil ? try checkpoint!.read(name) : [], root: 0)
                if !bytes.isEmpty { closedFormFromCheckpoint[name] = try SafeTensorsFile.decode(bytes, source: "checkpoint \(name)") }
            }
            if saved.worldSize != comm.size {
                out("resume: checkpoint written by \(saved.worldSize) rank(s), continuing on \(comm.size): same global batches, float sums in a different order")
            }
            out("resume: \(checkpoint?.url.path ?? "") phase \(state.phase.rawValue) epoch \(state.epoch) step \(state.stepInEpoch)")
            // the best weights so far (for final evaluation) come from the best checkpoint
            var bestBytes: [UInt8] = []
            if comm.rank == 0, let best = store.best(), best.step <= (checkpoint?.step ?? 0) { bestBytes = try best.read("weights.safetensors") }
            bestBytes = comm.broadcast(bestBytes, root: 0)
            if !bestBytes.isEmpty {
                let bm = ResNet(model.config)
                try StateDict.load(try SafeTensorsFile.decode(bestBytes, source: "best weights.safetensors"), into: bm, source: "best weights")
                bestWeights = bm.store
            }
            return model
        }
        state = TrainerState()
        guard let initWeights = inputs.initWeights else {
            // from scratch (pretrain): torchvision init from the seed, identical on every rank
            guard let config = inputs.initConfig else { throw ModelError("no --init weights and no architecture given") }
            let model = ResNet(config)
            var rng = DaftKernels.SplitMix64(seed: DaftKernels.SplitMix64.mix(options.seed, 0x1D))
            model.resetParameters(rng: &rng)
            return model
        }
        // fresh start from the pretrained weights (identical on every rank: the CLI broadcast rank 0's bytes)
        let file = initWeights, source = inputs.initSource
        var config = try ResNetConfig.infer(from: file, source: source)
        config.numClasses = inputs.numClasses ?? inputs.train.numClasses
        guard config.inChannels == inputs.train.channels else {
            throw ModelError("\(source): model takes \(config.inChannels) input channels, \(inputs.train.name) has \(inputs.train.channels)")
        }
        let model = ResNet(config)
        // new head (method.md §1): fc.* of the pretrained file is not used
        try StateDict.load(file, into: model, source: source, skip: ["fc.weight", "fc.bias"])
        var rng = DaftKernels.SplitMix64(seed: DaftKernels.SplitMix64.mix(options.seed, 0xFC))
        let bound = 1 / Double(config.featureDimension).squareRoot()
        for i in 0..<(config.numClasses * config.featureDimension) { model.fcWeight[i] = Float((rng.nextUnit() * 2 - 1) * bound) }
        for i in 0..<config.numClasses { model.fcBias[i] = Float((rng.nextUnit() * 2 - 1) * bound) }
        if options.method.zeroHead { model.zeroHead() }
        return model
    }

    func readFile(_ url: URL) throws -> [UInt8] {
        guard let d = FileManager.default.contents(atPath: url.path) else {
            throw ModelError("\(url.path): cannot read file (missing or unreadable)")
        }
        return [UInt8](d)
    }

    // MARK: checkpoints

    struct SavedTrainer: Codable {
        var state: TrainerState
        var options: TrainingOptions
        var optionsHash: String
        var worldSize: Int
        var arch: String
    }

    /// Decodes a checkpoint's `trainer.json` (what `checkpoint` writes) and checks what resuming relies on: the
    /// counters are not negative (`best_epoch` may be -1, "none yet"), `metrics_lines` (the metrics.jsonl lines
    /// to keep) is absent or not negative, and the world size is positive. Errors are one-line `ModelError`s
    /// "`source`: problem".
    static func decodeSavedTrainer(_ bytes: [UInt8], source: String) throws -> SavedTrainer {
        func fail(_ problem: String) -> ModelError {
            ModelError("\(source): \(problem)".split(whereSeparator: \.isNewline).joined(separator: " "))
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let saved: SavedTrainer
        do {
            saved = try decoder.decode(SavedTrainer.self, from: Data(bytes))
        } catch let DecodingError.keyNotFound(key, context) {
            throw fail("missing field '\((context.codingPath + [key]).map(\.stringValue).joined(separator: "."))'")
        } catch let DecodingError.typeMismatch(_, context) {
            throw fail("field '\(context.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch let DecodingError.valueNotFound(_, context) {
            throw fail("field '\(context.codingPath.map(\.stringValue).joined(separator: "."))' is null")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            throw fail("field '\(context.codingPath.map(\.stringValue).joined(separator: "."))' has an invalid value")
        } catch {
            throw fail("not valid JSON")
        }
        let s = saved.state
        let counters = [("state.epoch", s.epoch), ("state.stepInEpoch", s.stepInEpoch), ("state.globalStep", s.globalStep),
                        ("state.epochsWithoutImprovement", s.epochsWithoutImprovement), ("state.metricsLines", s.metricsLines ?? 0)]
        if let (name, value) = counters.first(where: { $0.1 < 0 }) {
            throw fail("field '\(name)' is \(value), must not be negative")
        }
        if s.bestEpoch < -1 { throw fail("field 'state.bestEpoch' is \(s.bestEpoch), must be -1 (none) or an epoch") }
        if saved.worldSize < 1 { throw fail("field 'worldSize' is \(saved.worldSize), must be at least 1") }
        return saved
    }

    /// Rank 0 writes a checkpoint directory (weights, optimizer, reference weights, trainer state; manifest last).
    @discardableResult
    func checkpoint(isBest: Bool = false, metric: Double? = nil, reason: String) throws -> String {
        lastCheckpointStep = state.globalStep
        guard comm.rank == 0 else { return CheckpointStore.directoryName(step: state.globalStep) }
        let model = trainer.model
        var files: [String: [UInt8]] = [:]
        files["weights.safetensors"] = try StateDict.file(model, extraMetadata: metadataExtras).encode()
        files["reference.safetensors"] = try StateDict.file(trainer.reference, extraMetadata: startMetadata).encode()
        var opt = SafeTensorsFile()
        if let sgd = trainer.sgd {
            opt.tensors["momentum"] = SafeTensor(floats: sgd.momentumBuffers.array(model.store.parameterCount), shape: [model.store.parameterCount])
            opt.tensors["has_momentum"] = SafeTensor(int64s: sgd.hasMomentum.map { $0 ? 1 : 0 }, shape: [sgd.hasMomentum.count])
        }
        if let prior = trainer.featurePrior { opt.tensors.merge(prior.stateTensors()) { $1 } }
        if let ridge = trainer.ridgeStatistics { files["ridge.safetensors"] = try SafeTensorsFile(tensors: ridge.tensors()).encode() }
        if let kernel = trainer.kernelRidgeStatistics { files["kernel-ridge.safetensors"] = try SafeTensorsFile(tensors: kernel.tensors()).encode() }
        files["optimizer.safetensors"] = try opt.encode()
        state.metricsLines = records?.lineCount
        let saved = SavedTrainer(state: state, options: options, optionsHash: Coordinator.optionsHash(options), worldSize: comm.size, arch: model.config.arch)
        files["trainer.json"] = [UInt8](try Coordinator.sortedEncoder().encode(saved))
        let dir = try store.write(step: state.globalStep, files: files,
                                  info: ["phase": state.phase.rawValue, "epoch": String(state.epoch), "step_in_epoch": String(state.stepInEpoch),
                                         "reason": reason, "method": options.method.rawValue, "world_size": String(comm.size)],
                                  isBest: isBest, metric: metric)
        out("checkpoint: \(dir.lastPathComponent) (\(reason))")
        return dir.lastPathComponent
    }

    /// The preemption signal any rank received, and on how many ranks (nil: none): one 16-byte all-reduce of
    /// per-signal counts, so every rank takes the same decision at the same boundary and rank 0 can name it.
    /// At a step or phase boundary: when a preemption signal arrived on any rank, every rank joins a checkpoint of
    /// this exact state (unless one was just written), waits until rank 0 has it on disk, and throws `Preempted`.
    func stopIfPreempted() throws {
        guard let request = PreemptionSignal.agreedRequest(comm) else { return }
        let name = lastCheckpointStep == state.globalStep ? CheckpointStore.directoryName(step: state.globalStep)
                                                          : try checkpoint(reason: "preempted")
        comm.barrier()
        throw Preempted(step: state.globalStep, checkpoint: name, signal: request.description)
    }

    var metadataExtras: [String: String] { ModelPreprocessing.metadata(inputs.normalization) }
    /// The start model's metadata (start.safetensors, a checkpoint's reference.safetensors): also names the
    /// pretrained file, which `daft evaluate --bn-stats source` restores the statistics of.
    var startMetadata: [String: String] { metadataExtras.merging(["daft_init": inputs.initSource]) { _, new in new } }

    func restoreOptimizer() throws {
        guard let f = optimizerFromCheckpoint, let sgd = trainer.sgd, let m = f.tensors["momentum"], let h = f.tensors["has_momentum"] else { return }
        let mom = try m.floats(), has = try h.int64s()
        guard mom.count == trainer.model.store.parameterCount, has.count == sgd.hasMomentum.count else {
            throw ModelError("checkpoint optimizer.safetensors: momentum has \(mom.count) values, model has \(trainer.model.store.parameterCount)")
        }
        mom.withUnsafeBufferPointer { sgd.momentumBuffers.pointer.update(from: $0.baseAddress!, count: mom.count) }
        sgd.hasMomentum = has.map { $0 != 0 }
        if let prior = trainer.featurePrior { try prior.loadState(f, source: "checkpoint optimizer.safetensors") }
        optimizerFromCheckpoint = nil
    }

    // MARK: the phase machine

    /// Runs (or resumes) the whole fine-tuning job; returns the report (identical on every rank).
    public func run() throws -> RunReport {
        let t0 = Date()
        let model = try start()
        trainer = Trainer(model: model, communicator: comm, options: options, train: inputs.train,
                          normalization: inputs.normalization, log: out)
        try trainer.checkModelNames()
        try checkLabelsFitTheHead(model)
        if let base = inputs.ridgeBase {
            let bytes = comm.broadcast(comm.rank == 0 ? try readFile(base) : [], root: 0)
            let file = try SafeTensorsFile.decode(bytes, source: base.path)
            if options.probeSolver == .kernelRidge {
                guard file.tensors["kernel.config"] != nil else {
                    throw ModelError("\(base.path): not kernel-ridge samples (no kernel.config); --lp-solver kernel-ridge extends a run's kernel-ridge.safetensors")
                }
                trainer.kernelRidgeBase = try KernelRidgeHead(file: file, source: base.path)
            } else {
                guard file.tensors["ridge.config"] != nil else {
                    throw ModelError("\(base.path): not ridge statistics (no ridge.config); --lp-solver ridge extends a run's ridge.safetensors")
                }
                trainer.ridgeBase = try RidgeHead(file: file, source: base.path)
            }
        }
        if let f = closedFormFromCheckpoint["ridge.safetensors"] {
            trainer.ridgeStatistics = try RidgeHead(file: f, source: "checkpoint ridge.safetensors")
        }
        if let f = closedFormFromCheckpoint["kernel-ridge.safetensors"] {
            trainer.kernelRidgeStatistics = try KernelRidgeHead(file: f, source: "checkpoint kernel-ridge.safetensors")
        }
        if let ref = referenceFromCheckpoint {
            try StateDict.load(ref, into: trainer.reference, source: "checkpoint reference.safetensors")
        }
        try records?.open(resuming: resumed, keepLines: state.metricsLines, step: state.globalStep)
        trainer.progress = { [bar, options] phase, done, total in
            bar.update(phase, done: done, total: total, images: done * (phase == "convert-bn" ? options.batchSize : 1))
        }
        out("run: \(options.method.rawValue) (\(options.method.summary)) on \(comm.size) rank(s), global batch \(options.batchSize), \(trainer.plan.batchesPerEpoch) steps/epoch")
        while state.phase != .done {
            switch state.phase {
            case .convertBN:
                if options.method.convertsBN {
                    let s = try trainer.convertBatchNorm()
                    bar.end()
                    out("convert-bn: target statistics from \(s.batches) global batches of \(options.batchSize); BN layers rewritten")
                    try records?.append(["kind": "phase", "phase": "convert-bn", "step": state.globalStep, "batches": s.batches])
                }
                // the distortion reference (method.md §8) is the initial, post-conversion model for every method;
                // prepareFineTune refreshes it after a probe (the same backbone, the probed head)
                trainer.reference.store.copyValues(from: model.store)
                state.phase = options.method.probes ? .probe : (options.method.fineTunes ? .train : .evaluate)
                try checkpoint(reason: "phase convert-bn done")
            case .probe:
                // the probe's regularisation is chosen on ID validation, never on the training set (method.md §4)
                guard let val = inputs.validation else {
                    throw ModelError("--method \(options.method.rawValue) probes the head and chooses its regularisation on ID validation: pass --val-data")
                }
                let r = try trainer.probe(validation: val)
                bar.end()
                try records?.append(["kind": "probe", "step": state.globalStep, "val_accuracy": r.valAccuracy, "regularisation": r.regularisation,
                                     "solver": options.probeSolver.rawValue])
                out(String(format: "probe: chose %@ %.3g, ID val accuracy %.4f", options.probeSolver == .logistic ? "C" : "λ", r.regularisation, r.valAccuracy))
                state.phase = options.method.fineTunes ? .train : .evaluate
                if !options.method.fineTunes { bestWeights = snapshot(model) ; state.bestValAccuracy = r.valAccuracy }
                try checkpoint(isBest: !options.method.fineTunes, metric: r.valAccuracy, reason: "phase probe done")
            case .train:
                try trainPhase()
            case .evaluate:
                state.phase = .done
                try checkpoint(reason: "phase evaluate reached")
            case .done:
                break
            }
            if state.phase != .done { try stopIfPreempted() }
        }
        return try finalReport(seconds: Date().timeIntervalSince(t0))
    }

    /// Every data set's labels must be classes of the head (`--num-classes`, the training labels or the checkpoint
    /// sized it): checked before BN conversion, the probe or any step reads a label.
    func checkLabelsFitTheHead(_ model: ResNet) throws {
        let sets = [inputs.train] + [inputs.validation, inputs.test].compactMap { $0 } + inputs.ood.map(\.data)
        for d in sets { try d.checkLabels(fitHeadOf: model.config.numClasses, head: "the head of the model") }
    }

    func snapshot(_ model: ResNet) -> ParameterStore {
        let copy = ResNet(model.config)
        copy.store.copyValues(from: model.store)
        return copy.store
    }

    func trainPhase() throws {
        let model = trainer.model
        try trainer.prepareFineTune(referenceWeights: referenceFromCheckpoint == nil ? nil : trainer.reference.store)
        try restoreOptimizer()
        let perEpoch = trainer.plan.batchesPerEpoch
        guard perEpoch > 0 else { throw ModelError("train: \(inputs.train.count) samples give no global batch of \(options.batchSize)") }
        var epochStart = Date()
        while state.epoch < options.epochs {
            if state.stepInEpoch == 0 { epochStart = Date() }
            let lr = trainer.learningRates(epoch: state.epoch)
            // what the step records average over: the steps since the last record
            var window = (start: Date(), steps: 0, images: 0.0, dataWait: 0.0, collective: 0.0)
            let stepsAtStart = state.stepInEpoch
            while state.stepInEpoch < perEpoch {
                if let max = options.maxSteps, state.globalStep >= max { break }
                let r = try trainer.trainStep(epoch: state.epoch, step: state.stepInEpoch)
                guard r.lossSum.isFinite else {
                    // the loss is a global value, so every rank stops here together
                    throw ModelError("training diverged at step \(state.globalStep + 1) (loss is \(r.lossSum)); lower the learning rate")
                }
                state.stepInEpoch += 1; state.globalStep += 1
                state.epochLossSum += r.lossSum; state.epochCorrect += r.correct; state.epochCount += r.count
                window.steps += 1; window.images += r.count; window.dataWait += r.dataWaitSeconds; window.collective += r.collectiveSeconds
                bar.update("epoch \(state.epoch)", done: state.stepInEpoch, total: perEpoch,
                           images: (state.stepInEpoch - stepsAtStart) * options.batchSize, loss: r.lossSum / max(r.count, 1))
                if options.consistencyEvery > 0 && state.globalStep % options.consistencyEvery == 0 {
                    try trainer.checkConsistency(step: state.globalStep)
                }
                if state.globalStep % max(inputs.logEvery, 1) == 0 || state.stepInEpoch == perEpoch {
                    let seconds = max(Date().timeIntervalSince(window.start), 1e-9)
                    if !bar.enabled && !inputs.quiet {
                        out(String(format: "epoch %d step %d/%d  loss %.4f  acc %.4f  lr head %.3g backbone %.3g  %.0f img/s",
                                   state.epoch, state.stepInEpoch, perEpoch, r.lossSum / max(r.count, 1), r.correct / max(r.count, 1),
                                   lr.head, lr.backbone, window.images / seconds))
                    }
                    try records?.append(["kind": "step", "step": state.globalStep, "epoch": state.epoch, "step_in_epoch": state.stepInEpoch,
                                         "loss": r.lossSum / max(r.count, 1), "accuracy": r.correct / max(r.count, 1),
                                         "lr": ["head": lr.head, "backbone": lr.backbone], "images_per_s": window.images / seconds,
                                         "data_wait_ms": 1000 * window.dataWait / Double(window.steps),
                                         "collective_ms": 1000 * window.collective / Double(window.steps)])
                    window = (Date(), 0, 0, 0, 0)
                }
                if inputs.checkpointEvery > 0 && state.globalStep % inputs.checkpointEvery == 0 && state.stepInEpoch < perEpoch {
                    try checkpoint(reason: "every \(inputs.checkpointEvery) steps")
                }
                // the epoch's last step is followed by its end-of-epoch checkpoint, where run() looks again
                if state.stepInEpoch < perEpoch { try stopIfPreempted() }
            }
            let stoppedEarly = options.maxSteps.map { state.globalStep >= $0 } ?? false
            if state.stepInEpoch < perEpoch && !stoppedEarly { continue }
            // end of epoch (or of the step budget): validate, decide best on rank 0, checkpoint
            var valAcc: Double? = nil
            if let val = inputs.validation {
                valAcc = try evaluate(model, on: val, title: "ID val").accuracy
            }
            let improved = comm.broadcast((comm.rank == 0 && (valAcc ?? 0) > state.bestValAccuracy) ? 1 : 0, root: 0) == 1
            if improved || inputs.validation == nil {
                state.bestValAccuracy = valAcc ?? state.bestValAccuracy
                state.bestEpoch = state.epoch
                state.epochsWithoutImprovement = 0
                bestWeights = snapshot(model)
            } else {
                state.epochsWithoutImprovement += 1
            }
            bar.end()
            let n = max(state.epochCount, 1)
            var epochRecord: [String: Any] = ["kind": "epoch", "step": state.globalStep, "epoch": state.epoch,
                                              "train_loss": state.epochLossSum / n, "train_accuracy": state.epochCorrect / n,
                                              "lr": ["head": lr.head, "backbone": lr.backbone], "seconds": Date().timeIntervalSince(epochStart)]
            if let valAcc { epochRecord["val_accuracy"] = valAcc }
            if inputs.epochEvaluation {
                let e = try evaluateShifts(model: model)
                if !e.ood.isEmpty { epochRecord["ood"] = e.ood.mapValues { $0.accuracy }; epochRecord["mean_ood"] = e.meanOOD! }
                if let d = e.distortion { epochRecord["distortion"] = ["l2": d.l2Mean, "cosine": d.cosineMean] }
                if !e.ood.isEmpty {
                    out(String(format: "epoch %d: OOD mean %.4f (%@)", state.epoch, e.meanOOD!,
                               e.ood.keys.sorted().map { String(format: "%@ %.4f", $0, e.ood[$0]!.accuracy) }.joined(separator: ", ")))
                }
            }
            try records?.append(epochRecord, sync: true)
            state.history.append(EpochRecord(epoch: state.epoch, trainLoss: state.epochLossSum / n, trainAccuracy: state.epochCorrect / n,
                                             valAccuracy: valAcc, lrHead: lr.head, lrBackbone: lr.backbone,
                                             seconds: Date().timeIntervalSince(epochStart)))
            out(String(format: "epoch %d done: train loss %.4f acc %.4f%@", state.epoch, state.epochLossSum / n, state.epochCorrect / n,
                       valAcc.map { String(format: "  ID val acc %.4f%@", $0, improved ? " (best)" : "") } ?? ""))
            state.epoch += 1; state.stepInEpoch = 0
            state.epochLossSum = 0; state.epochCorrect = 0; state.epochCount = 0
            let patienceOut = options.earlyStopPatience > 0 && state.epochsWithoutImprovement >= options.earlyStopPatience
            let stop = comm.broadcast((comm.rank == 0 && (stoppedEarly || patienceOut)) ? 1 : 0, root: 0) == 1
            if stop || state.epoch >= options.epochs {
                if patienceOut { out("early stop: no ID val improvement for \(options.earlyStopPatience) epoch(s)") }
                state.phase = .evaluate
            }
            try checkpoint(isBest: improved, metric: valAcc, reason: state.phase == .evaluate ? "phase train done" : "end of epoch")
            if state.phase == .evaluate { return }
            try stopIfPreempted()
        }
        state.phase = .evaluate
    }

    /// Evaluation-mode accuracy of `model` on one set (a progress bar on a terminal).
    func evaluate(_ model: ResNet, on data: any LabelledImages, title: String) throws -> Evaluation.Result {
        let r = try Evaluation.evaluate(model: model, dataset: data, normalization: inputs.normalization, batchSize: options.evalBatchSize,
                                        communicator: comm) { [bar, bs = options.evalBatchSize, n = data.count] done, total in
            bar.update("eval \(title)", done: done, total: total, images: min(done * bs, n))
        }
        bar.end()
        return r
    }

    /// Every OOD set's accuracy, their mean, and the feature distortion against the reference (method.md §8) on
    /// at most 2,000 ID test (else validation) samples.
    func evaluateShifts(model: ResNet) throws -> (ood: [String: Evaluation.Result], meanOOD: Double?, distortion: Evaluation.Distortion?) {
        var ood: [String: Evaluation.Result] = [:]
        for (name, data) in inputs.ood { ood[name] = try evaluate(model, on: data, title: name) }
        let meanOOD = ood.isEmpty ? nil : ood.values.map(\.accuracy).reduce(0, +) / Double(ood.count)
        let distortion = try (inputs.test ?? inputs.validation).map {
            try Evaluation.distortion(model: model, reference: trainer.reference, dataset: $0.prefix(2000),
                                      normalization: inputs.normalization, batchSize: options.evalBatchSize, communicator: comm)
        }
        return (ood, meanOOD, distortion)
    }

    func finalReport(seconds: Double) throws -> RunReport {
        let model = trainer.model
        // final.safetensors: the weights at the end of training
        if comm.rank == 0 {
            try DurableFile.createDirectory(inputs.outDirectory)
            if let ridge = trainer.ridgeStatistics {
                try SafeTensorsFile(tensors: ridge.tensors(), metadata: ["kind": "daft ridge statistics (G = Σφφᵀ, C = Σφyᵀ)"])
                    .write(to: inputs.outDirectory.appendingPathComponent("ridge.safetensors"))
            }
            if let kernel = trainer.kernelRidgeStatistics {
                try SafeTensorsFile(tensors: kernel.tensors(), metadata: ["kind": "daft kernel-ridge samples (X normalised, y; linear kernel)"])
                    .write(to: inputs.outDirectory.appendingPathComponent("kernel-ridge.safetensors"))
            }
            try StateDict.file(model, extraMetadata: metadataExtras).write(to: inputs.outDirectory.appendingPathComponent("final.safetensors"))
            // start.safetensors: the model fine-tuning started from (after conversion / probe), what
            // `daft evaluate --bn-stats source|mix:α` takes the start statistics from; names the pretrained file
            if inputs.initWeights != nil {
                try StateDict.file(trainer.reference, extraMetadata: startMetadata).write(to: inputs.outDirectory.appendingPathComponent("start.safetensors"))
            }
        }
        // evaluate the model selected on ID validation
        let selected = ResNet(model.config)
        selected.store.copyValues(from: bestWeights ?? model.store)
        if comm.rank == 0, bestWeights != nil {
            try StateDict.file(selected, extraMetadata: metadataExtras).write(to: inputs.outDirectory.appendingPathComponent("best.safetensors"))
        }
        let test = try inputs.test.map { try evaluate(selected, on: $0, title: "test") }
        let shifts = try evaluateShifts(model: selected)
        let ood = shifts.ood, meanOOD = shifts.meanOOD, distortion = shifts.distortion
        var dist: [String: Double] = [:]
        for (n, d) in Evaluation.parameterDistances(model: selected, reference: trainer.reference) { dist[n] = d }
        let report = RunReport(method: options.method.rawValue, worldSize: comm.size, steps: state.globalStep, bestEpoch: state.bestEpoch,
                               valAccuracy: state.bestValAccuracy >= 0 ? state.bestValAccuracy : nil, test: test, ood: ood,
                               meanOOD: meanOOD, distortion: distortion, parameterDistance: dist, history: state.history, seconds: seconds)
        var final: [String: Any] = ["kind": "final", "step": state.globalStep, "seconds": seconds]
        if let v = report.valAccuracy { final["val_accuracy"] = v }
        if let t = test { final["test_accuracy"] = t.accuracy }
        if !ood.isEmpty { final["ood"] = ood.mapValues { $0.accuracy }; final["mean_ood"] = meanOOD! }
        if let d = distortion { final["distortion"] = ["l2": d.l2Mean, "cosine": d.cosineMean] }
        try records?.append(final, sync: true)
        if comm.rank == 0 {
            let data = try Coordinator.sortedEncoder().encode(report)
            try DurableFile.write([UInt8](data), to: inputs.outDirectory.appendingPathComponent("results.json"))
            out("summary: method \(report.method), \(report.steps) steps, \(String(format: "%.1f", seconds)) s")
            if let v = report.valAccuracy {
                out(String(format: "  ID val  %.4f (%@)", v, report.bestEpoch >= 0 ? "epoch \(report.bestEpoch)" : "probe"))
            }
            if let t = test { out(String(format: "  ID test %.4f  (%d images)", t.accuracy, t.count)) }
            for k in ood.keys.sorted() { out(String(format: "  OOD %-10@ %.4f", k as NSString, ood[k]!.accuracy)) }
            if let m = meanOOD { out(String(format: "  OOD mean   %.4f", m)) }
            if let d = distortion { out(String(format: "  feature distortion: L2 %.3f ± %.3f, cosine %.4f ± %.4f", d.l2Mean, d.l2Std, d.cosineMean, d.cosineStd)) }
        }
        return report
    }
}
