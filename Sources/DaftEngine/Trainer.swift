import Foundation
import DaftKernels
import DaftModels
import DaftData
import DaftDistributed

/// Everything that decides what a fine-tuning run computes (saved in every checkpoint; its hash guards resume).
public struct TrainingOptions: Codable, Equatable {
    public var method: Method = .daft
    public var epochs = 5
    /// Stop after this many optimizer steps in total (CI-sized runs); nil = all epochs.
    public var maxSteps: Int? = nil
    /// The global batch, split over ranks.
    public var batchSize = 128
    public var lrHead = Method.daft.defaultLearningRates.head
    public var lrBackbone = Method.daft.defaultLearningRates.backbone
    public var momentum = 0.9
    public var weightDecay = 0.0
    public var seed: UInt64 = 0
    public var tail: GlobalBatchPlan.TailPolicy = .drop
    public var augment = true
    /// The training augmentation's recipe (`--augment`: nil or "standard" = translation and flip, "robust" = the broad
    /// corruption mix of `Augmentation.robust`); ignored when `augment` is false.
    public var augmentation: String? = nil
    public var evalBatchSize = 256
    /// Gradient bucket size for the overlapped all-reduce.
    public var bucketMegabytes = 25.0
    /// Parameter checksum comparison across ranks every this many steps (0 = off).
    public var consistencyEvery = 50
    public var probeSolver: ProbeSolver = .logistic
    /// Logistic probe: inverse strengths C tried on ID validation (λ = 1/(C·N)), in increasing order (warm starts).
    public var probeInverseStrengths: [Double] = LogisticProbe.referenceInverseStrengths
    /// Logistic probe: stop when max|∇| of the mean-loss objective is at most this (scikit-learn's default tol)...
    public var probeTolerance = 1e-4
    /// ...or after this many iterations per C.
    public var probeMaxIterations = 1000
    public var unfreezeFrom = "layer3"
    /// Global batches used to measure the target BN statistics (nil = one pass over the training set).
    public var conversionBatches: Int? = nil
    /// BN conversion measures shuffled training batches (epoch 0's permutation, the training augmentation), so a
    /// class-sorted file does not bias the statistics (method.md §2); false: batches in file order.
    public var conversionShuffled = true
    /// Stop when ID validation accuracy has not improved for this many epochs (0 = never).
    public var earlyStopPatience = 0
    public var l2spAlpha = 0.0
    public var l2spBeta = 0.0
    public var featurePriorLambda = 0.0
    /// Layers of the feature-space prior: "layer1"…"layerN" and/or "penultimate".
    public var featurePriorLayers: [String] = ["penultimate"]
    /// Ridge-probe regularisers tried on ID validation (λ of (G + λI)⁻¹C).
    public var ridgeLambdaGrid: [Double] = [1e-3, 1e-2, 1e-1, 1, 10]
    public init() {}

    /// The augmentation training batches get (nil: none). BN conversion measures with it too (method.md §2).
    public var trainingAugmentation: Augmentation? {
        augment ? (Augmentation.named(augmentation ?? "standard") ?? .standard) : nil
    }
}

/// The phases of a run, in order. The current phase and the progress inside it are part of every checkpoint.
public enum Phase: String, Codable, CaseIterable {
    case convertBN = "convert-bn", probe, train, evaluate, done
}

/// Where a run is (what a checkpoint's trainer.json holds besides the options).
public struct TrainerState: Codable, Equatable {
    public var phase: Phase = .convertBN
    public var epoch = 0
    public var stepInEpoch = 0
    public var globalStep = 0
    public var bestValAccuracy = -1.0
    public var bestEpoch = -1
    public var epochsWithoutImprovement = 0
    public var history: [EpochRecord] = []
    /// Sums over the current epoch's finished steps (so a resumed epoch reports the same numbers).
    public var epochLossSum = 0.0
    public var epochCorrect = 0.0
    public var epochCount = 0.0
    /// Lines of OUT/metrics.jsonl when this state was checkpointed (a resume cuts the file back to them).
    public var metricsLines: Int?
    public init() {}
}

/// One epoch's summary (loss and accuracy are over the epoch's training samples, all ranks).
public struct EpochRecord: Codable, Equatable {
    public var epoch: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var valAccuracy: Double?
    public var lrHead: Double
    public var lrBackbone: Double
    public var seconds: Double
    public init(epoch: Int, trainLoss: Double, trainAccuracy: Double, valAccuracy: Double?, lrHead: Double, lrBackbone: Double, seconds: Double) {
        self.epoch = epoch; self.trainLoss = trainLoss; self.trainAccuracy = trainAccuracy; self.valAccuracy = valAccuracy
        self.lrHead = lrHead; self.lrBackbone = lrBackbone; self.seconds = seconds
    }
}

/// What one training step measured (global values, identical on every rank).
public struct StepResult {
    public var lossSum: Double
    public var correct: Double
    public var count: Double
    /// This rank's time waiting for its batch (the prefetcher had not finished it) and waiting in the step's
    /// collectives (gradient buckets not yet hidden behind backward, the loss all-reduce), in seconds.
    public var dataWaitSeconds = 0.0
    public var collectiveSeconds = 0.0
}

/// The DAFT engine one rank runs on its shard: BN conversion, linear probing, and the data-parallel
/// fine-tuning step, all in global-batch semantics so N ranks compute what 1 rank computes.
public final class Trainer {
    public let model: ResNet
    /// The initial (post-conversion, post-probe) weights: the L2-SP centre and the distortion reference.
    public let reference: ResNet
    public let comm: Communicator
    public let options: TrainingOptions
    public let train: any LabelledImages
    public let normalization: Normalization
    public let plan: GlobalBatchPlan
    public private(set) var sgd: SGD?
    var bucketer: GradientBucketer?
    var l2sp: L2SPPrior?
    public private(set) var featurePrior: FeaturePrior?
    /// Makes this rank's training batches ahead of the step that uses them (`prefetchDepth` of them).
    var prefetcher: BatchPrefetcher<(x: [Float], y: [Int32], count: Int, global: Int)>!
    /// Ridge statistics from an earlier run (earlier domains) that the ridge probe adds its own to (method.md §6).
    public var ridgeBase: RidgeHead?
    /// The ridge statistics after the probe (earlier domains + this one), for the checkpoint and OUT/ridge.safetensors (restored on resume).
    public var ridgeStatistics: RidgeHead?
    /// Kernel-ridge samples of an earlier run (earlier domains) that the kernel-ridge probe appends its own to.
    public var kernelRidgeBase: KernelRidgeHead?
    /// The kernel-ridge samples after the probe, for the checkpoint and OUT/kernel-ridge.safetensors (restored on resume).
    public var kernelRidgeStatistics: KernelRidgeHead?
    let log: (String) -> Void
    /// Called as the conversion pass and the probe's feature extraction advance: (phase, done, total).
    public var progress: ((String, Int, Int) -> Void)?

    public init(model: ResNet, communicator: Communicator, options: TrainingOptions, train: any LabelledImages,
                normalization: Normalization, prefetchDepth: Int = 2, log: @escaping (String) -> Void) {
        self.model = model
        self.reference = ResNet(model.config)
        self.comm = communicator
        self.options = options
        self.train = train
        self.normalization = normalization
        self.log = log
        plan = GlobalBatchPlan(count: train.count, globalBatch: options.batchSize, worldSize: communicator.size,
                               seed: options.seed, shuffle: true, tail: options.tail)
        model.context.sync = communicator
        let epochs = EpochBatches(plan: plan)
        prefetcher = BatchPrefetcher(depth: prefetchDepth, stepsPerEpoch: plan.batchesPerEpoch) { [plan, train, normalization, options, rank = communicator.rank] epoch, step in
            let global = epochs.batches(epoch: epoch)[step]
            let local = plan.localIndices(globalBatch: global, rank: rank)
            let b = try train.batch(indices: local, normalization: normalization, augmentation: options.trainingAugmentation,
                                    seed: options.seed, epoch: epoch)
            return (b.x, b.y, local.count, global.count)
        }
    }

    /// Number of optimizer steps the fine-tuning phase will take.
    public var totalSteps: Int {
        let all = plan.batchesPerEpoch * options.epochs
        return min(all, options.maxSteps ?? all)
    }

    // MARK: phase convert-bn

    /// BN conversion on the ID training data with the training augmentation (method.md §2).
    public func convertBatchNorm() throws -> BNConversion.Statistics {
        let convPlan = GlobalBatchPlan(count: train.count, globalBatch: options.batchSize, worldSize: comm.size,
                                       seed: options.seed, shuffle: options.conversionShuffled, tail: .drop)
        let stats = try BNConversion.measure(model: model, dataset: train, plan: convPlan, normalization: normalization,
                                             augmentation: options.trainingAugmentation, seed: options.seed,
                                             communicator: comm, maxBatches: options.conversionBatches,
                                             progress: progress.map { p in { p("convert-bn", $0, $1) } })
        BNConversion.apply(stats, to: model)
        return stats
    }

    // MARK: phase probe

    /// The primal ridge probe: G, C summed over every rank's shard in float64 (one all-reduce), plus `ridgeBase`'s.
    func ridgeProbe(_ ft: FeatureSet, _ fv: FeatureSet, classes K: Int) throws -> (w: [Double], featureScale: Double, lambda: Double, accuracy: Double, samples: Int) {
        let ridge = try RidgeHead(inputDimension: ft.dimension, classes: K)
        try ft.features.withUnsafeBufferPointer { try ridge.accumulate(features: $0.baseAddress!, labels: ft.labels, count: ft.count) }
        ridge.allReduce(comm)
        if let base = ridgeBase { try ridge.merge(base) }
        ridgeStatistics = ridge
        let chosen = try fv.features.withUnsafeBufferPointer {
            try ridge.selectLambda(candidates: options.ridgeLambdaGrid, validationFeatures: $0.baseAddress!, labels: fv.labels, communicator: comm)
        }
        return (try ridge.solve(lambda: chosen.lambda), ridge.meanFeatureNorm, chosen.lambda, chosen.accuracy, Int(ridge.sampleCount))
    }

    /// The dual probe with the linear kernel (the kernel an fc layer can hold): every rank's shard all-gathered in rank
    /// order after `kernelRidgeBase`'s samples; W = Xᵀα gives exactly the kernel head's predictions.
    func kernelRidgeProbe(_ ft: FeatureSet, _ fv: FeatureSet, classes K: Int) throws -> (w: [Double], featureScale: Double, lambda: Double, accuracy: Double, samples: Int) {
        let head = try KernelRidgeHead(inputDimension: ft.dimension, classes: K, kernel: .linear)
        if let base = kernelRidgeBase { try head.merge(base) }
        try ft.features.withUnsafeBufferPointer {
            try head.append(features: $0.baseAddress ?? UnsafePointer(bitPattern: 8)!, labels: ft.labels, count: ft.count, communicator: comm)
        }
        kernelRidgeStatistics = head
        let chosen = try fv.features.withUnsafeBufferPointer {
            try head.selectLambda(candidates: options.ridgeLambdaGrid, validationFeatures: $0.baseAddress ?? UnsafePointer(bitPattern: 8)!,
                                  labels: fv.labels, communicator: comm)
        }
        return (try head.primalWeights(alpha: chosen.alpha), head.meanFeatureNorm, chosen.lambda, chosen.accuracy, head.count)
    }

    /// Trains the head on frozen features (BN in evaluation behaviour); the regularisation is chosen on `validation`
    /// (ridge: λ; logistic: the inverse strength C). Returns that choice and its ID validation accuracy.
    public func probe(validation: any LabelledImages) throws -> (regularisation: Double, valAccuracy: Double) {
        let trainShard = EvaluationShard(count: train.count, rank: comm.rank, worldSize: comm.size)
        let valShard = EvaluationShard(count: validation.count, rank: comm.rank, worldSize: comm.size)
        let ft = try FeatureExtractor.extract(model: model, dataset: train, indices: Array(trainShard.range),
                                              normalization: normalization, batchSize: options.evalBatchSize,
                                              progress: progress.map { p in { p("probe features", $0, $1) } })
        let fv = try FeatureExtractor.extract(model: model, dataset: validation, indices: Array(valShard.range),
                                              normalization: normalization, batchSize: options.evalBatchSize)
        let K = model.config.numClasses
        if options.probeSolver != .logistic {
            // closed form (method.md §6), the same solve on every rank; earlier domains' state (--ridge-base) extends this
            // one's, new classes as zero columns. fc holds the linear head W (d×K on normalised features), fc.bias 0.
            if let earlier = ridgeBase?.classCount ?? kernelRidgeBase?.classCount, earlier > K {
                throw ModelError("--ridge-base has \(earlier) classes, the head only \(K); pass --num-classes \(earlier)")
            }
            let fit = try options.probeSolver == .ridge ? ridgeProbe(ft, fv, classes: K) : kernelRidgeProbe(ft, fv, classes: K)
            let fc = try RidgeHead.fcTensors(fit.w, inputDimension: ft.dimension, featureScale: fit.featureScale)
            fc.fcWeight.withUnsafeBufferPointer { model.fcWeight.update(from: $0.baseAddress!, count: $0.count) }
            fc.fcBias.withUnsafeBufferPointer { model.fcBias.update(from: $0.baseAddress!, count: $0.count) }
            log(String(format: "probe (%@, %d samples): λ %.0e, ID val acc %.4f", options.probeSolver.rawValue, fit.samples, fit.lambda, fit.accuracy))
            return (fit.lambda, fit.accuracy)
        }
        // the reference's sweep (lp_log_reg.py): C increasing, each fit warm-started from the previous one,
        // the best ID val accuracy wins and a tie keeps the smaller C (the stronger regularisation)
        let standard = LogisticProbe.standardisation(ft, communicator: comm)
        var best: (c: Double, acc: Double, fit: LogisticProbe.Result)? = nil
        var warm: [Double]? = nil
        var unconverged = 0
        for c in options.probeInverseStrengths.sorted() {
            let fit = LogisticProbe.fit(ft, classes: K, inverseStrength: c, standard: standard, warmStart: warm,
                                        tolerance: options.probeTolerance, maxIterations: options.probeMaxIterations, communicator: comm)
            warm = fit.standardisedSolution
            if !fit.converged { unconverged += 1 }
            let acc = LogisticProbe.accuracy(fv, weight: fit.weight, bias: fit.bias, classes: K, communicator: comm)
            if best == nil || acc > best!.acc { best = (c, acc, fit) }
        }
        guard let best else { throw ModelError("probe: the inverse-strength grid is empty") }
        log(String(format: "probe (logistic): %d values of C, best C %.3g (train loss %.4f, %d iterations%@), ID val acc %.4f%@",
                   options.probeInverseStrengths.count, best.c, best.fit.trainLoss, best.fit.iterations,
                   best.fit.converged ? "" : String(format: ", not converged: max|∇| %.2g", best.fit.gradientNorm), best.acc,
                   unconverged > 0 ? " (\(unconverged) fits stopped at \(options.probeMaxIterations) iterations)" : ""))
        best.fit.weight.withUnsafeBufferPointer { model.fcWeight.update(from: $0.baseAddress!, count: $0.count) }
        best.fit.bias.withUnsafeBufferPointer { model.fcBias.update(from: $0.baseAddress!, count: $0.count) }
        return (best.c, best.acc)
    }

    // MARK: phase train

    /// Sets up the fine-tuning phase: frozen stages, BN behaviour, parameter groups, gradient buckets, priors.
    /// Call once the weights are final for the start of the phase (after conversion/probe, or after resume).
    public func prepareFineTune(referenceWeights: ParameterStore? = nil) throws {
        let m = options.method
        model.trainBatchNormMode = m.fineTuneBatchNorm
        model.trainableFromStage = m == .freeze ? try stageIndex(options.unfreezeFrom) : 0
        reference.store.copyValues(from: referenceWeights ?? model.store)
        let trainable: (ParameterStore.Entry) -> Bool = { [model] in model.stage(of: $0.name) >= model.trainableFromStage }
        let groups = SGD.backboneAndHead(store: model.store, lrBackbone: options.lrBackbone, lrHead: options.lrHead,
                                         momentum: options.momentum, weightDecay: options.weightDecay, trainable: trainable)
        sgd = SGD(store: model.store, groups: groups)
        // trainable parameters are a suffix of the forward order, so their gradients are one contiguous slice
        let entries = model.store.parameterEntries
        let first = entries.firstIndex(where: trainable) ?? entries.count
        let ranges = entries[first...].map { $0.offset..<($0.offset + $0.count) }
        let bucketer = GradientBucketer(communicator: comm, arena: model.store.gradientPointer, parameterRanges: ranges,
                                        bucketBytes: Int(options.bucketMegabytes * 1_048_576))
        self.bucketer = bucketer
        model.context.gradientReady = { index in
            if index >= first { bucketer.gradientReady(index - first); bucketer.poll() }
        }
        l2sp = (options.l2spAlpha > 0 || options.l2spBeta > 0)
            ? L2SPPrior(reference: reference.store, alpha: options.l2spAlpha, beta: options.l2spBeta, trainable: trainable) : nil
        featurePrior = nil
        if options.featurePriorLambda > 0 {
            let stages = try options.featurePriorLayers.map { try FeaturePrior.stage(named: $0, config: model.config) }
            featurePrior = try FeaturePrior(reference: reference.store, config: model.config, stages: stages,
                                            lambda: options.featurePriorLambda, momentum: options.momentum)
        }
    }

    /// The stage number of a `--unfreeze-from` name: "layer1"…"layerS" (1…S) or "fc" (S+1, the head alone).
    /// Any other name is a one-line error listing the valid ones (it used to mean "train everything").
    public func stageIndex(_ name: String) throws -> Int {
        if name == "fc" { return model.headStage }
        if name.hasPrefix("layer"), let k = Int(name.dropFirst(5)), k >= 1, k <= model.stageCount { return k }
        throw ModelError("--unfreeze-from '\(name)' is not a stage of \(model.config.arch): use one of layer1…layer\(model.stageCount), fc")
    }

    /// Checks the options that name parts of the model (`--unfreeze-from` for `freeze`, the feature-prior layers),
    /// so a bad name stops the run before BN conversion or the probe instead of at the start of fine-tuning.
    public func checkModelNames() throws {
        if options.method == .freeze { _ = try stageIndex(options.unfreezeFrom) }
        if options.featurePriorLambda > 0 {
            for name in options.featurePriorLayers { _ = try FeaturePrior.stage(named: name, config: model.config) }
        }
    }

    /// Learning rates of the head and backbone groups during `epoch` (cosine annealing over epochs).
    public func learningRates(epoch: Int) -> (head: Double, backbone: Double) {
        let s = CosineSchedule(totalSteps: options.epochs)
        return (s.lr(base: options.lrHead, at: epoch), s.lr(base: options.lrBackbone, at: epoch))
    }

    /// One data-parallel optimizer step on global batch `step` of `epoch`. Reads top to bottom:
    public func trainStep(epoch: Int, step: Int) throws -> StepResult {
        guard let sgd, let bucketer else { preconditionFailure("prepareFineTune() first") }
        // 1. learning rates of this epoch, same cosine for both groups
        let lr = learningRates(epoch: epoch)
        for g in sgd.groups.indices { sgd.groups[g].lr = sgd.groups[g].name == "head" ? lr.head : lr.backbone }
        // 2. this rank's share of the global batch, augmented from (seed, epoch, sample index) only; made ahead
        //    of time by the prefetcher while the previous step ran
        let waitStart = Date()
        let batch = try prefetcher.batch(epoch: epoch, step: step)
        let dataWait = Date().timeIntervalSince(waitStart)
        let localCount = batch.count, globalCount = batch.global
        let xs = Shape4(localCount, train.channels, train.height, train.width)
        // 3. forward; batch norms all-reduce their statistics over the global batch
        model.store.zeroGradients()
        try batch.x.withUnsafeBufferPointer { try model.forward($0.baseAddress!, xs, training: true) }
        // 4. loss: mean over the GLOBAL batch; scaled by W because the bucketer averages over W ranks
        let K = model.config.numClasses
        let scale = Float(comm.size) / Float(globalCount)
        let ce = batch.y.withUnsafeBufferPointer {
            CrossEntropy.forwardBackward(logits: model.logits.pointer, labels: $0.baseAddress!, batch: localCount, classes: K,
                                         gradScale: scale, dLogits: model.dLogits.pointer)
        }
        // 5. feature-space prior: frozen reference forward, one float64 all-reduce, gradients into stage outputs
        var priorLoss = 0.0
        if let featurePrior {
            priorLoss = try batch.x.withUnsafeBufferPointer {
                try featurePrior.forwardBackward(model: model, input: $0.baseAddress!, shape: xs, training: true, communicator: comm)
            }
        }
        // 6. backward; each bucket's all-reduce starts as soon as its gradients are final
        model.backward()
        featurePrior?.uninstall(from: model)
        // 7. wait for the buckets: gradients are now averaged over ranks
        let collectiveStart = Date()
        bucketer.finish()
        var collective = Date().timeIntervalSince(collectiveStart)
        // 8. weight-space prior (identical on every rank, so added after averaging)
        if let l2sp { l2sp.addGradient(to: model.store); priorLoss += l2sp.penalty(model.store) }
        // 9. optimizer step (the prior's learned variances follow the head's learning rate)
        model.context.timed(.optimizer) { sgd.step() }
        featurePrior?.step(lr: lr.head)
        // 10. global loss / accuracy for the log (24 bytes)
        var totals = [ce.lossSum, Double(ce.correct), Double(localCount)]
        let totalsStart = Date()
        comm.allReduceSum(&totals)
        collective += Date().timeIntervalSince(totalsStart)
        // the priors are global quantities already: add them once, per sample of the global batch
        return StepResult(lossSum: totals[0] + priorLoss * totals[2], correct: totals[1], count: totals[2],
                          dataWaitSeconds: dataWait, collectiveSeconds: collective)
    }

    /// Compares a parameter checksum across ranks; throws naming diverged ranks.
    public func checkConsistency(step: Int) throws {
        let s = model.store
        try ConsistencyCheck.verify(comm, parameters: UnsafeBufferPointer(start: s.parameterPointer, count: s.parameterCount), step: step)
    }

    /// Gradient all-reduce statistics of the last step (bytes, hidden vs blocked time).
    public var bucketStats: BucketerStats? { bucketer?.stats }
}

extension GlobalBatchPlan.TailPolicy: Codable {}

/// The global batches of one epoch at a time (the permutation is computed once per epoch, not per step),
/// shared by the step and the prefetch thread.
final class EpochBatches: @unchecked Sendable {
    let plan: GlobalBatchPlan
    private var current: (epoch: Int, batches: [[Int]])?
    private let lock = NSLock()

    init(plan: GlobalBatchPlan) { self.plan = plan }

    func batches(epoch: Int) -> [[Int]] {
        lock.lock(); defer { lock.unlock() }
        if current?.epoch != epoch { current = (epoch, plan.globalBatches(epoch: epoch)) }
        return current!.batches
    }
}
