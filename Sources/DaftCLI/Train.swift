import ArgumentParser
import Foundation
import DaftModels
import DaftData
import DaftEngine
import DaftCoordinator
import DaftCommandLine

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune pretrained weights on a target domain (DAFT, FT, LP, LP-FT and ablations).",
        discussion: "Methods: " + Method.allCases.map { "\($0.rawValue): \($0.summary)" }.joined(separator: "; ")
            + ". Default learning rates (tuned on fashion-shift ID validation): " + Method.allCases.filter { $0 != .lp }.map {
                $0.twoLearningRates ? "\($0.rawValue) --lr-head \($0.defaultLearningRates.head) --lr-backbone \($0.defaultLearningRates.backbone)"
                                    : "\($0.rawValue) --lr \($0.defaultLearningRates.backbone)" }.joined(separator: ", "))
    @Option(help: "Method: \(Method.allCases.map(\.rawValue).joined(separator: ", "))") var method: String = "daft"
    @Option(name: [.customLong("weights"), .customLong("init")], help: "Pretrained weights: any torchvision ResNet state_dict as safetensors (architecture read from the tensors); default: the robust fashion-shift checkpoint the default learning rates were tuned on") var weights: String = "pretrained/resnet20-fashion-robust.safetensors"
    @Option(name: .customLong("num-classes"), help: "Classes of the new head (default: from the data)") var numClasses: Int?
    @Option(name: .customLong("lp-solver"), help: "logistic, ridge (primal closed form) or kernel-ridge (dual form, linear kernel: the kernel an fc layer can hold; the RBF kernel is `daft adapt`'s)") var lpSolver: String = "logistic"
    @Option(name: .customLong("unfreeze-from"), help: "freeze method: first trained stage (layer1…layerN)") var unfreezeFrom: String = "layer3"
    @Option(name: .customLong("convert-batches"), help: "Global batches measured for BN conversion (default: one pass)") var convertBatches: Int?
    @Flag(name: .customLong("convert-sequential"), help: "BN conversion measures batches in file order (default: shuffled training batches)") var convertSequential = false
    @Option(help: "Pretrained prior during fine-tuning: none, l2sp, feature, l2sp+feature") var prior: String = "none"
    @Option(name: .customLong("prior-alpha"), help: "L2-SP: weight of ‖θ_backbone − θ0‖²/2") var priorAlpha: Double = 0.01
    @Option(name: .customLong("prior-beta"), help: "L2-SP: weight of ‖θ_head‖²/2") var priorBeta: Double = 0.01
    @Option(name: .customLong("prior-lambda"), help: "Feature prior: λ") var priorLambda: Double = 0.1
    @Option(name: .customLong("prior-layers"), help: "Feature prior layers, comma-separated (layer1…layerN, penultimate)") var priorLayers: String = "penultimate"
    @Option(name: .customLong("ridge-base"), help: "Closed-form head state of earlier domains to add this domain's to: a run's ridge.safetensors (--lp-solver ridge) or kernel-ridge.safetensors (kernel-ridge)") var ridgeBase: String?
    @OptionGroup var preprocessing: PreprocessingFlags
    @OptionGroup var flags: TrainingFlags
    @OptionGroup var logging: LoggingFlags

    func run() throws {
        PreemptionSignal.install()
        let priors = Set(prior.split(separator: "+").map(String.init))
        guard priors.isSubset(of: ["none", "l2sp", "feature"]) else { throw CLIError("--prior must be none, l2sp, feature or l2sp+feature, got '\(prior)'") }
        guard let m = Method(rawValue: method) else {
            throw CLIError("unknown --method '\(method)'; choose one of \(Method.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let solver = ProbeSolver(rawValue: lpSolver) else { throw CLIError("--lp-solver must be logistic, ridge or kernel-ridge, got '\(lpSolver)'") }
        let comm = Runtime.communicator(threads: flags.threads)
        var o = try flags.options(method: m)
        o.probeSolver = solver
        o.unfreezeFrom = unfreezeFrom
        o.conversionBatches = convertBatches
        o.conversionShuffled = !convertSequential
        if priors.contains("l2sp") { o.l2spAlpha = priorAlpha; o.l2spBeta = priorBeta }
        if priors.contains("feature") {
            o.featurePriorLambda = priorLambda
            o.featurePriorLayers = priorLayers.split(separator: ",").map(String.init)
        }
        let pretrained = try Runtime.broadcastWeights(weights, communicator: comm)
        let config = try ResNetConfig.infer(from: pretrained, source: weights)
        let normalization = try preprocessing.normalization(config: config, metadata: pretrained.metadata, source: weights)
        let train = try Runtime.dataset(flags.data, limit: flags.limit, for: config, input: preprocessing)
        let sets = try flags.evalSets(for: config, input: preprocessing)
        var inputs = RunInputs(initWeights: pretrained, train: train, validation: sets.val, test: sets.test,
                               ood: sets.ood, normalization: normalization, outDirectory: URL(fileURLWithPath: flags.out),
                               checkpointEvery: flags.checkpointEvery, keep: flags.keep, resume: flags.resume, numClasses: numClasses)
        inputs.initSource = weights
        inputs.ridgeBase = ridgeBase.map { URL(fileURLWithPath: $0) }
        try flags.apply(to: &inputs)
        if ridgeBase != nil && (m != .lp && m != .lpFT && m != .lpFTConversion || solver == .logistic) {
            throw CLIError("--ridge-base needs --lp-solver ridge or kernel-ridge and a method with a probe (lp, lp-ft, lp-ft+conversion)")
        }
        _ = try Coordinator(communicator: comm, options: o, inputs: inputs, log: logging.logger).run()
    }
}

struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a model from scratch on a source domain; writes DIR/final.safetensors.")
    @Option(help: "Architecture: \(ResNetConfig.knownArchitectures.joined(separator: ", "))") var arch: String = "resnet20"
    @Option(help: "Per-stage widths, comma-separated (overrides the architecture's)") var widths: String?
    @Option(name: .customLong("in-channels")) var inChannels: Int?
    @Option(name: .customLong("num-classes")) var numClasses: Int?
    @OptionGroup var preprocessing: PreprocessingFlags
    @OptionGroup var flags: TrainingFlags
    @OptionGroup var logging: LoggingFlags

    func run() throws {
        PreemptionSignal.install()
        let comm = Runtime.communicator(threads: flags.threads)
        var o = try flags.options(method: .ft)
        if flags.lr == nil && flags.lrHead == nil && flags.lrBackbone == nil { o.lrHead = Method.pretrainingLearningRate; o.lrBackbone = Method.pretrainingLearningRate }
        let spec = try DataSpec.parse(flags.data)
        let w = try widths.map { s -> [Int] in
            let v = s.split(separator: ",").compactMap { Int($0) }
            guard !v.isEmpty else { throw CLIError("--widths wants comma-separated integers, got '\(s)'") }
            return v
        }
        // the data's channels and classes size the model unless given; a folder is listed to count its classes
        var channels = inChannels, classes = numClasses
        if case .folder = spec {
            channels = channels ?? 3
        } else if channels == nil || classes == nil {
            let d = try Runtime.dataset(flags.data, limit: flags.limit)
            channels = channels ?? d.channels; classes = classes ?? d.numClasses
        }
        let shape = try ResNetConfig.named(arch, inChannels: channels!, numClasses: 1, widths: w)
        let train = try Runtime.dataset(flags.data, limit: flags.limit, for: shape, input: preprocessing)
        let cfg = try ResNetConfig.named(arch, inChannels: channels!, numClasses: classes ?? train.numClasses, widths: w)
        let normalization = try preprocessing.normalization(config: cfg, metadata: [:], source: "pretrain --arch \(arch)")
        let sets = try flags.evalSets(for: cfg, input: preprocessing)
        var inputs = RunInputs(initWeights: nil, initConfig: cfg, train: train, validation: sets.val, test: sets.test, ood: sets.ood,
                               normalization: normalization, outDirectory: URL(fileURLWithPath: flags.out),
                               checkpointEvery: flags.checkpointEvery, keep: flags.keep, resume: flags.resume, numClasses: cfg.numClasses)
        try flags.apply(to: &inputs)
        _ = try Coordinator(communicator: comm, options: o, inputs: inputs, log: logging.logger).run()
    }
}
