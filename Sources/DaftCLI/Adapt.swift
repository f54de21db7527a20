import ArgumentParser
import Foundation
import DaftModels
import DaftData
import DaftEngine
import DaftCoordinator
import DaftCommandLine

/// `daft adapt`: one step of the continual-adaptation mode (method.md §6, RAIL with fusion).
struct Adapt: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continual adaptation: add a labelled domain to a closed-form adapter on the frozen pretrained backbone; evaluate adapter, pretrained head and their fusion.",
        discussion: """
            Each call adds one domain (--data, held-out --val-data) to the adapter of the earlier steps (--adapter-base, a previous \
            step's OUT/adapter.safetensors), re-solves it exactly over every sample seen, and learns the domain for the seen-domain \
            detector. Every evaluation set (--test-data, --ood) is then scored three ways: the adapter alone, the pretrained model's \
            own head alone, and fusion (the adapter on samples the detector accepts, the pretrained head on the rest). Writes \
            OUT/adapter.safetensors, OUT/results.json, OUT/metrics.jsonl, TensorBoard events under OUT/tb and a checkpoint of the \
            fitted adapter under OUT/checkpoints (--resume auto continues from it).
            """)
    @Option(name: [.customLong("weights"), .customLong("init")], help: "Pretrained weights (frozen backbone; their head is the fusion fallback)") var weights: String = "pretrained/resnet20-fashion-robust.safetensors"
    @Option(help: "This domain's labelled training set") var data: String = "fashion-mnist:target-train@id"
    @Option(name: .customLong("val-data"), help: "This domain's held-out labelled set (chooses λ and the detector's threshold)") var valData: String?
    @Option(help: "Name of the domain this step adds (default: the --data domain, e.g. rotate)") var domain: String?
    @Option(name: .customLong("test-data"), help: "ID test set, evaluated as 'test'") var testData: String?
    @Option(help: "Evaluation set NAME=DATA (repeatable): seen, unseen and source domains alike") var ood: [String] = []
    @Option(help: "Use only the first N training samples") var limit: Int?
    @Option(name: .customLong("val-limit"), help: "Use only the first N held-out samples") var valLimit: Int?
    @Option(name: .customLong("eval-limit"), help: "Use only the first N samples of each evaluation set") var evalLimit: Int?
    @Option(name: .customLong("lp-solver"), help: "ridge (primal: G, C; memory d²) or kernel-ridge (dual: every sample stored; memory n²)") var lpSolver: String = "ridge"
    @Option(help: "kernel-ridge: rbf or linear") var kernel: String = "rbf"
    @Option(name: .customLong("kernel-gamma"), help: "kernel-ridge: RBF γ in exp(−γ‖x̂ − x̂'‖²) on unit-norm features") var kernelGamma: Double = KernelRidgeHead.defaultGamma
    @Option(name: .customLong("kernel-max-samples"), help: "kernel-ridge: refuse past this many stored samples (K and its factor take 16·n² bytes)") var kernelMaxSamples: Int = KernelRidgeHead.defaultMaxSamples
    @Option(name: .customLong("adapter-base"), help: "The adapter of the earlier steps (a previous step's OUT/adapter.safetensors)") var adapterBase: String?
    @Option(name: .customLong("false-reject"), help: "Target false-reject rate of the seen-domain detector on held-out data of a seen domain") var falseReject: Double = SeenDomainDetector.defaultFalseRejectRate
    @Option(name: .customLong("lambda-grid"), help: "λ candidates, comma-separated (default: the ridge probe's grid)") var lambdaGrid: String?
    @Option(name: .customLong("eval-batch-size"), help: "Images per forward pass") var evalBatchSize: Int = TrainingOptions().evalBatchSize
    @Option(help: "Output directory") var out: String = "runs/adapt"
    @Option(help: "auto (newest valid checkpoint under --out) or a checkpoint directory") var resume: String?
    @Option(help: "Keep the last K checkpoints") var keep: Int = 3
    @Option(help: "Threads per rank (default 1, or OPENBLAS_NUM_THREADS): kernels split the batch over them") var threads: Int?
    @Flag(help: "Print the results as one JSON object on the last line of stdout") var json = false
    @Option(help: "Config file (TOML or YAML) setting any flag; command-line flags win") var config: String?
    @OptionGroup var preprocessing: PreprocessingFlags
    @OptionGroup var logging: LoggingFlags

    func run() throws {
        PreemptionSignal.install()
        guard let solver = ContinualAdapter.Solver(rawValue: lpSolver) else { throw CLIError("--lp-solver must be ridge or kernel-ridge, got '\(lpSolver)'") }
        let kernelChoice: KernelRidgeHead.Kernel
        switch kernel {
        case "rbf":
            guard kernelGamma > 0, kernelGamma.isFinite else { throw CLIError("--kernel-gamma must be positive, got \(kernelGamma)") }
            kernelChoice = .rbf(gamma: kernelGamma)
        case "linear": kernelChoice = .linear
        default: throw CLIError("--kernel must be rbf or linear, got '\(kernel)'")
        }
        guard kernelMaxSamples > 0 else { throw CLIError("--kernel-max-samples must be positive") }
        guard falseReject >= 0, falseReject < 1 else { throw CLIError("--false-reject must be in [0, 1), got \(falseReject)") }
        guard evalBatchSize > 0 else { throw CLIError("--eval-batch-size must be positive") }
        guard let valData else {
            throw CLIError("adapt needs --val-data: held-out labelled samples of the same domain (λ and the detector's threshold are chosen on them)")
        }
        let grid = try lambdaGrid.map { text -> [Double] in
            let v = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !v.isEmpty, v.allSatisfy({ $0 != nil && $0! > 0 }) else { throw CLIError("--lambda-grid wants comma-separated positive numbers, got '\(text)'") }
            return v.map { $0! }
        } ?? TrainingOptions().ridgeLambdaGrid
        let comm = Runtime.communicator(threads: threads)
        let pretrained = try Runtime.broadcastWeights(weights, communicator: comm)
        let config = try ResNetConfig.infer(from: pretrained, source: weights)
        let normalization = try preprocessing.normalization(config: config, metadata: pretrained.metadata, source: weights)
        let train = try Runtime.dataset(data, limit: limit, for: config, input: preprocessing)
        let heldOut = try Runtime.dataset(valData, limit: valLimit, for: config, input: preprocessing)
        var evaluation: [(name: String, data: any LabelledImages)] = []
        if let testData { evaluation.append(("test", try Runtime.dataset(testData, limit: evalLimit, for: config, input: preprocessing))) }
        for o in ood {
            guard let eq = o.firstIndex(of: "="), eq != o.startIndex else { throw CLIError("--ood wants NAME=DATA, got '\(o)'") }
            let name = String(o[..<eq])
            guard !evaluation.contains(where: { $0.name == name }) else { throw CLIError("--ood: the set name '\(name)' is given twice") }
            evaluation.append((name, try Runtime.dataset(String(o[o.index(after: eq)...]), limit: evalLimit, for: config, input: preprocessing)))
        }
        let parsed = try DataSpec.parse(data)
        let domainName = domain ?? (parsed.domain == "clean" && !data.hasPrefix("fashion-mnist") ? parsed.description : parsed.domain)
        let inputs = AdaptationInputs(pretrained: pretrained, pretrainedSource: weights, domain: domainName, train: train, heldOut: heldOut,
                                      evaluation: evaluation, normalization: normalization, base: adapterBase.map { URL(fileURLWithPath: $0) },
                                      solver: solver, kernel: kernelChoice, maxSamples: kernelMaxSamples, lambdaGrid: grid,
                                      falseRejectRate: falseReject, evalBatchSize: evalBatchSize, outDirectory: URL(fileURLWithPath: out),
                                      resume: resume, keep: keep)
        let report = try AdaptationRun(communicator: comm, inputs: inputs, log: logging.logger).run()
        if json && comm.rank == 0 {
            var sets: [String: Any] = [:]
            for (name, c) in report.evaluation {
                sets[name] = ["count": c.total, "adapter_accuracy": c.adapterAccuracy, "pretrained_accuracy": c.pretrainedAccuracy,
                              "fused_accuracy": c.fusedAccuracy, "routed_to_adapter": c.routedToAdapter]
            }
            let last = report.steps.last!
            try printJSON(["domain": report.domain, "solver": report.solver, "step": report.steps.count, "samples_seen": last.samplesSeen,
                           "lambda": last.lambda, "held_out_accuracy": last.heldOutAccuracy, "evaluation": sets, "resumed": report.resumed])
        }
    }
}
