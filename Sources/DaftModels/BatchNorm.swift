import DaftKernels
import DaftDistributed

/// How batch norm normalises: with the batch's statistics (training) or with the running ones (evaluation).
public enum BatchNormMode { case train, eval }

/// Errors a layer can raise during a step.
public struct ModelError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A 2-D batch-norm layer (PyTorch `BatchNorm2d`: eps 1e-5, momentum 0.1), optionally synchronized.
///
/// In training mode with a communicator of size > 1 it is a synchronized BN: per-channel Σx, Σx² and the
/// element count are all-reduced in float64 (one collective of 2C+1 values) so the global batch's mean
/// and biased variance normalise; the running variance takes the unbiased global variance; the backward
/// all-reduces Σdy and Σdy·x̂ (one collective of 2C values). Ranks with no samples still join both.
/// γ/β gradients use the local sums (the gradient all-reduce averages them like any other parameter).
public final class BatchNorm2d {
    public let name: String
    public let channels: Int
    public let eps: Float = 1e-5
    public let momentum: Float = 0.1
    let store: ParameterStore
    let weightOffset: Int, biasOffset: Int, meanOffset: Int, varOffset: Int, counterIndex: Int
    public let weightIndex: Int, biasIndex: Int

    // per-step state
    var mean: [Float], invstd: [Float], scale: [Float], shift: [Float]
    var moments: [Double]
    var backSums: [Double]
    var meanDy: [Float], meanDyXhat: [Float]
    var globalCount: Double = 0
    var lastMode: BatchNormMode = .eval
    /// When set, every forward adds this rank's per-channel Σx, Σx² and count of the layer's input into
    /// `recordedMoments` (2C+1 values), without changing what the layer computes (used by BN conversion).
    public var recordInputMoments = false
    public var recordedMoments: [Double]

    public init(name: String, channels: Int, store: ParameterStore) {
        self.name = name
        self.channels = channels
        self.store = store
        weightOffset = store.addParameter("\(name).weight", shape: [channels])
        weightIndex = store.parameterEntries.count - 1
        biasOffset = store.addParameter("\(name).bias", shape: [channels])
        biasIndex = store.parameterEntries.count - 1
        meanOffset = store.addRunningStat("\(name).running_mean", shape: [channels])
        varOffset = store.addRunningStat("\(name).running_var", shape: [channels])
        counterIndex = store.addCounter("\(name).num_batches_tracked")
        mean = Array(repeating: 0, count: channels); invstd = mean; scale = mean; shift = mean
        meanDy = mean; meanDyXhat = mean
        moments = Array(repeating: 0, count: 2 * channels + 1)
        backSums = Array(repeating: 0, count: 2 * channels)
        recordedMoments = Array(repeating: 0, count: 2 * channels + 1)
    }

    /// Default initialisation: γ = 1, β = 0, running mean 0, running var 1, counter 0.
    public func resetParameters() {
        let p = store.parameterPointer, b = store.bufferPointer
        for c in 0..<channels { p[weightOffset + c] = 1; p[biasOffset + c] = 0; b[meanOffset + c] = 0; b[varOffset + c] = 1 }
        store.counters[counterIndex] = 0
    }

    public var gamma: UnsafeMutablePointer<Float> { store.parameterPointer + weightOffset }
    public var beta: UnsafeMutablePointer<Float> { store.parameterPointer + biasOffset }
    public var runningMean: UnsafeMutablePointer<Float> { store.bufferPointer + meanOffset }
    public var runningVar: UnsafeMutablePointer<Float> { store.bufferPointer + varOffset }

    /// Forward. `context.sync` all-reduces the statistics in training mode (nil or size 1: local batch only),
    /// timed as `LayerProfile.Kind.syncBatchNorm` when `context` profiles.
    public func forward(_ x: UnsafePointer<Float>, _ s: Shape4, _ y: UnsafeMutablePointer<Float>, mode: BatchNormMode,
                        relu: Bool, context: StepContext) throws {
        lastMode = mode
        let C = channels
        if recordInputMoments {
            recordedMoments.withUnsafeMutableBufferPointer { m in
                BatchNormKernels.accumulateMoments(x, s, sum: m.baseAddress!, sumSquares: m.baseAddress! + C)
                m[2 * C] += Double(s.n * s.spatial)
            }
        }
        switch mode {
        case .train:
            for i in 0..<moments.count { moments[i] = 0 }
            moments.withUnsafeMutableBufferPointer { m in
                BatchNormKernels.accumulateMoments(x, s, sum: m.baseAddress!, sumSquares: m.baseAddress! + C)
                m[2 * C] = Double(s.n * s.spatial)
                if let sync = context.sync, sync.size > 1 { context.timed(.syncBatchNorm) { sync.allReduceSum(m) } }
            }
            let count = moments[2 * C]
            globalCount = count
            if count <= 1 {
                throw ModelError("\(name): expected more than 1 value per channel when training, got \(Int(count))")
            }
            let g = gamma, b = beta, rm = runningMean, rv = runningVar
            let unbias = count / (count - 1)
            for c in 0..<C {
                let mu = moments[c] / count
                let varB = max(moments[C + c] / count - mu * mu, 0)
                let istd = Float(1 / (varB + Double(eps)).squareRoot())
                mean[c] = Float(mu); invstd[c] = istd
                scale[c] = g[c] * istd
                shift[c] = b[c] - Float(mu) * scale[c]
                rm[c] = (1 - momentum) * rm[c] + momentum * Float(mu)
                rv[c] = (1 - momentum) * rv[c] + momentum * Float(varB * unbias)
            }
            store.counters[counterIndex] += 1
        case .eval:
            prepareEval()
        }
        scale.withUnsafeBufferPointer { sc in shift.withUnsafeBufferPointer { sh in
            BatchNormKernels.applyAffine(x, s, scale: sc.baseAddress!, shift: sh.baseAddress!, relu: relu, y)
        } }
    }

    func prepareEval() {
        let g = gamma, b = beta, rm = runningMean, rv = runningVar
        for c in 0..<channels {
            let istd = 1 / (rv[c] + eps).squareRoot()
            mean[c] = rm[c]; invstd[c] = istd
            scale[c] = g[c] * istd
            shift[c] = b[c] - rm[c] * scale[c]
        }
    }

    /// Backward of the last forward. `dy` is the gradient w.r.t. the output (ReLU mask applied here, in place,
    /// when `relu`); accumulates dγ, dβ when `parameterGradients`; writes dx when given.
    public func backward(_ x: UnsafePointer<Float>, _ s: Shape4, output y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
                         relu: Bool, dx: UnsafeMutablePointer<Float>?, parameterGradients: Bool, context: StepContext) {
        let C = channels
        for i in 0..<backSums.count { backSums[i] = 0 }
        mean.withUnsafeBufferPointer { m in invstd.withUnsafeBufferPointer { r in backSums.withUnsafeMutableBufferPointer { bs in
            BatchNormKernels.accumulateBackwardSums(x, maskingRelu: dy, output: relu ? y : nil, s, mean: m.baseAddress!,
                                                    invstd: r.baseAddress!, sumDy: bs.baseAddress!, sumDyXhat: bs.baseAddress! + C)
        } } }
        if parameterGradients {
            let grads = store.gradientPointer
            for c in 0..<C {
                grads[weightOffset + c] += Float(backSums[C + c])
                grads[biasOffset + c] += Float(backSums[c])
            }
        }
        guard let dx else { return }
        switch lastMode {
        case .train:
            if let sync = context.sync, sync.size > 1 {
                context.timed(.syncBatchNorm) { backSums.withUnsafeMutableBufferPointer { sync.allReduceSum($0) } }
            }
            for c in 0..<C {
                meanDy[c] = Float(backSums[c] / globalCount)
                meanDyXhat[c] = Float(backSums[C + c] / globalCount)
            }
            mean.withUnsafeBufferPointer { m in invstd.withUnsafeBufferPointer { r in
                meanDy.withUnsafeBufferPointer { md in meanDyXhat.withUnsafeBufferPointer { mx in
                    BatchNormKernels.trainBackwardInput(x, dy, s, mean: m.baseAddress!, invstd: r.baseAddress!, gamma: gamma,
                                                        meanDy: md.baseAddress!, meanDyXhat: mx.baseAddress!, dx)
                } }
            } }
        case .eval:
            scale.withUnsafeBufferPointer { BatchNormKernels.evalBackwardInput(dy, s, scale: $0.baseAddress!, dx) }
        }
    }
}
