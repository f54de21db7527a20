import Foundation
import DaftDistributed
import DaftInterop

/// The continual-adaptation mode of method.md §6 (RAIL with fusion) on a frozen pretrained backbone: a
/// closed-form head — primal ridge (`RidgeHead`, statistics G/C) or kernel ridge (`KernelRidgeHead`, stored
/// samples) — refitted exactly as labelled domains arrive, and a `SeenDomainDetector` that routes each test
/// sample to the adapter when it looks like a domain the adapter was fitted on and to the pretrained model's own
/// head otherwise (the zero-shot fallback). The adapter's classes are the pretrained head's classes, index for
/// index (the fashion-shift domains share the 10 Fashion-MNIST classes); other class sets are refused.
public final class ContinualAdapter {
    /// Which closed-form head the adapter uses.
    public enum Solver: String, CaseIterable, Codable {
        /// Primal ridge W = (G + λI)⁻¹C on the normalised features (memory d², any number of samples).
        case ridge
        /// Kernel ridge α = (K + λI)⁻¹Y over every sample seen (memory n², `KernelRidgeHead.maxSamples`).
        case kernelRidge = "kernel-ridge"
    }

    /// What one domain step did.
    public struct StepResult: Codable, Equatable {
        public var domain: String
        public var lambda: Double
        /// Accuracy of the re-solved adapter on the step's held-out set (the λ choice).
        public var heldOutAccuracy: Double
        /// Samples the adapter has seen over all steps.
        public var samplesSeen: Int
        /// The detector's threshold for the new domain.
        public var threshold: Double
    }

    /// Correct counts of the three predictors on one evaluation set, and how the detector routed it.
    public struct Counts: Codable, Equatable {
        /// Samples evaluated.
        public var total: Int
        /// The adapter alone (every sample through the closed-form head).
        public var adapterCorrect: Int
        /// The pretrained model's own head alone.
        public var pretrainedCorrect: Int
        /// Fusion: the adapter on samples the detector accepts, the pretrained head on the rest.
        public var fusedCorrect: Int
        /// Samples the detector sent to the adapter.
        public var routedToAdapter: Int
        public var adapterAccuracy: Double { Double(adapterCorrect) / Double(max(total, 1)) }
        public var pretrainedAccuracy: Double { Double(pretrainedCorrect) / Double(max(total, 1)) }
        public var fusedAccuracy: Double { Double(fusedCorrect) / Double(max(total, 1)) }
        /// Fraction of samples the detector sent to the adapter.
        public var adapterFraction: Double { Double(routedToAdapter) / Double(max(total, 1)) }
    }

    /// The head family.
    public let solver: Solver
    /// d: backbone feature dimension.
    public let inputDimension: Int
    /// K: the pretrained head's classes.
    public let classCount: Int
    /// The primal head (solver `.ridge`).
    public private(set) var ridge: RidgeHead?
    /// The kernel head (solver `.kernelRidge`).
    public private(set) var kernelHead: KernelRidgeHead?
    /// The seen-domain detector (one entry per domain step).
    public private(set) var detector: SeenDomainDetector
    /// The current solution: W (d×K) for ridge, α (n×K) for kernel ridge; empty before the first step.
    public private(set) var solution: [Double] = []
    /// The domain steps so far.
    public private(set) var steps: [StepResult] = []

    /// An adapter that has seen nothing.
    public init(solver: Solver, inputDimension: Int, classes: Int, kernel: KernelRidgeHead.Kernel = .rbf(gamma: KernelRidgeHead.defaultGamma),
                maxSamples: Int = KernelRidgeHead.defaultMaxSamples) throws {
        self.solver = solver
        self.inputDimension = inputDimension
        self.classCount = classes
        detector = SeenDomainDetector(inputDimension: inputDimension)
        switch solver {
        case .ridge: ridge = try RidgeHead(inputDimension: inputDimension, classes: classes)
        case .kernelRidge: kernelHead = try KernelRidgeHead(inputDimension: inputDimension, classes: classes, kernel: kernel, maxSamples: maxSamples)
        }
    }

    /// Samples the adapter has been fitted on.
    public var samplesSeen: Int { ridge.map { Int($0.sampleCount) } ?? kernelHead!.count }

    /// Adds one domain: this rank's shard of its labelled training features extends G/C (one all-reduce) or the
    /// stored samples (one all-gather), the head is re-solved over everything seen with λ chosen on this rank's
    /// shard of the domain's held-out features, and the detector learns the domain (threshold at
    /// `falseRejectRate` on the same held-out features). Every rank calls it with the same arguments but its shard.
    @discardableResult
    public func addDomain(name: String, training: FeatureSet, heldOut: FeatureSet, lambdaGrid: [Double],
                          falseRejectRate: Double = SeenDomainDetector.defaultFalseRejectRate, communicator: Communicator) throws -> StepResult {
        guard training.dimension == inputDimension, heldOut.dimension == inputDimension else {
            throw RidgeError("adapter: features have dimension \(training.dimension), the adapter \(inputDimension)")
        }
        guard !detector.domains.contains(where: { $0.name == name }) else {
            throw RidgeError("adapter: domain '\(name)' was already added (steps: \(steps.map(\.domain).joined(separator: ", "))); name a new domain with --domain")
        }
        for l in training.labels + heldOut.labels where l < 0 || Int(l) >= classCount {
            throw RidgeError("adapter: label \(l) is outside the pretrained head's \(classCount) classes")
        }
        var lambda = 0.0, accuracy = 0.0
        try training.features.withUnsafeBufferPointer { tp in try heldOut.features.withUnsafeBufferPointer { vp in
            let t = tp.baseAddress ?? UnsafePointer(bitPattern: 8)!, v = vp.baseAddress ?? UnsafePointer(bitPattern: 8)!
            if let ridge {
                let step = try RidgeHead(inputDimension: inputDimension, classes: classCount)
                try step.accumulate(features: t, labels: training.labels, count: training.count)
                step.allReduce(communicator)
                try ridge.merge(step)
                let chosen = try ridge.selectLambda(candidates: lambdaGrid, validationFeatures: v, labels: heldOut.labels, communicator: communicator)
                solution = try ridge.solve(lambda: chosen.lambda)
                (lambda, accuracy) = (chosen.lambda, chosen.accuracy)
            } else if let kernelHead {
                try kernelHead.append(features: t, labels: training.labels, count: training.count, communicator: communicator)
                let chosen = try kernelHead.selectLambda(candidates: lambdaGrid, validationFeatures: v, labels: heldOut.labels, communicator: communicator)
                solution = chosen.alpha
                (lambda, accuracy) = (chosen.lambda, chosen.accuracy)
            }
            try detector.addDomain(name: name, training: t, labels: training.labels, classes: classCount, heldOut: v, heldOutCount: heldOut.count,
                                   falseRejectRate: falseRejectRate, communicator: communicator)
        } }
        let result = StepResult(domain: name, lambda: lambda, heldOutAccuracy: accuracy, samplesSeen: samplesSeen,
                                threshold: detector.domains.last!.threshold)
        steps.append(result)
        return result
    }

    /// The adapter's predictions for raw float32 features (count×d).
    public func predict(features: UnsafePointer<Float>, count: Int) -> [Int32] {
        guard !solution.isEmpty else { return [Int32](repeating: 0, count: count) }
        if let ridge { return ridge.predict(features: features, count: count, weights: solution) }
        return kernelHead!.predict(features: features, count: count, alpha: solution)
    }

    /// Counts of the adapter, the pretrained head (`features.headPredictions`) and fusion on this rank's shard,
    /// summed over ranks in one collective.
    public func evaluate(_ features: FeatureSet, communicator: Communicator) -> Counts {
        precondition(features.headPredictions.count == features.count, "adapter: evaluation features need the pretrained head's predictions")
        var adapter: [Int32] = [], routes: [Int?] = []
        features.features.withUnsafeBufferPointer { p in
            if let base = p.baseAddress {
                adapter = predict(features: base, count: features.count)
                routes = detector.route(features: base, count: features.count)
            }
        }
        var c = [Double](repeating: 0, count: 5)
        for i in 0..<features.count {
            let y = features.labels[i], pre = features.headPredictions[i]
            let seen = routes[i] != nil
            c[0] += 1
            if adapter[i] == y { c[1] += 1 }
            if pre == y { c[2] += 1 }
            if (seen ? adapter[i] : pre) == y { c[3] += 1 }
            if seen { c[4] += 1 }
        }
        if communicator.size > 1 { communicator.allReduceSum(&c) }
        return Counts(total: Int(c[0]), adapterCorrect: Int(c[1]), pretrainedCorrect: Int(c[2]), fusedCorrect: Int(c[3]), routedToAdapter: Int(c[4]))
    }

    // MARK: file

    /// The metadata `kind` of an adapter file.
    public static let fileKind = "daft continual adapter"

    /// The whole state as a safetensors file: the head's tensors (`ridge.*` or `kernel.*`), the detector
    /// (`detector.*`), the solution (`solution`, F64) and the steps (metadata `steps`, JSON), so a resumed or
    /// extended adapter continues exactly.
    public func file(extraMetadata: [String: String] = [:]) throws -> SafeTensorsFile {
        var tensors = ridge?.tensors() ?? kernelHead!.tensors()
        let det = detector.tensors()
        tensors.merge(det.tensors) { $1 }
        let rows = solution.count / classCount
        tensors["solution"] = SafeTensor(doubles: solution, shape: [rows, classCount])
        let encoder = JSONEncoder(); encoder.outputFormatting = [.sortedKeys]
        let stepsJSON = String(decoding: try encoder.encode(steps), as: UTF8.self)
        var metadata = extraMetadata
        metadata["kind"] = ContinualAdapter.fileKind
        metadata["solver"] = solver.rawValue
        metadata["classes"] = String(classCount)
        metadata["detector.names"] = det.names
        metadata["steps"] = stepsJSON
        return SafeTensorsFile(tensors: tensors, metadata: metadata)
    }

    /// Rebuilds an adapter from `file()`'s output; `source` names the file in errors.
    public init(file: SafeTensorsFile, source: String) throws {
        guard file.metadata["kind"] == ContinualAdapter.fileKind else {
            throw RidgeError("\(source): not a daft adapter (metadata kind is '\(file.metadata["kind"] ?? "missing")', expected '\(ContinualAdapter.fileKind)')")
        }
        guard let s = file.metadata["solver"], let solver = Solver(rawValue: s) else {
            throw RidgeError("\(source): metadata solver '\(file.metadata["solver"] ?? "missing")' is not ridge or kernel-ridge")
        }
        self.solver = solver
        switch solver {
        case .ridge:
            let r = try RidgeHead(file: file, source: source)
            ridge = r; inputDimension = r.inputDimension; classCount = r.classCount
        case .kernelRidge:
            let k = try KernelRidgeHead(file: file, source: source)
            kernelHead = k; inputDimension = k.inputDimension; classCount = k.classCount
        }
        detector = try SeenDomainDetector(file: file, names: file.metadata["detector.names"] ?? "", source: source)
        guard detector.inputDimension == inputDimension else { throw RidgeError("\(source): detector dimension \(detector.inputDimension) ≠ head dimension \(inputDimension)") }
        solution = try file.tensor("solution", source: source).doubles()
        let rows = ridge?.dimension ?? kernelHead!.count
        guard solution.count == rows * classCount || solution.isEmpty else {
            throw RidgeError("\(source): solution has \(solution.count) values, expected \(rows)×\(classCount)")
        }
        do {
            steps = try JSONDecoder().decode([StepResult].self, from: Data((file.metadata["steps"] ?? "[]").utf8))
        } catch {
            throw RidgeError("\(source): metadata steps is not valid JSON: \(error)")
        }
        guard steps.count == detector.domains.count else {
            throw RidgeError("\(source): \(steps.count) steps but \(detector.domains.count) detector domains")
        }
    }

    /// Human-readable lines saying what the adapter holds (`daft inspect`).
    public var summaryLines: [String] {
        var lines: [String] = []
        if let ridge {
            lines.append("adapter: primal ridge, d \(inputDimension), \(classCount) classes, G \(ridge.dimension)×\(ridge.dimension) + C \(ridge.dimension)×\(classCount) (float64), \(samplesSeen) samples")
        } else if let k = kernelHead {
            lines.append(String(format: "adapter: kernel ridge, %@ kernel, d %d, %d classes, %d stored samples (cap %d; K and its factor %@)",
                                k.kernel.description, inputDimension, classCount, k.count, k.maxSamples, humanSize(KernelRidgeHead.systemBytes(samples: k.count))))
        }
        if steps.isEmpty { lines.append("  no domain steps yet") }
        for (i, (s, d)) in zip(steps, detector.domains).enumerated() {
            lines.append(String(format: "  step %d: domain %@: %d training + %d held-out samples, λ %.0e, held-out acc %.4f, detector τ %.4g (false-reject target %.3g)",
                                i + 1, s.domain, d.count, d.heldOutCount, s.lambda, s.heldOutAccuracy, d.threshold, d.falseRejectRate))
        }
        return lines
    }
}
