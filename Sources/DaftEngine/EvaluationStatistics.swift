import DaftModels

/// Which batch-norm running statistics a fine-tuned model is evaluated with (`daft evaluate --bn-stats`).
///
/// A run starts fine-tuning from a model whose BN layers normalise with the *start* statistics: the pretrained
/// source's for FT, LP and LP-FT, the target's measured by the conversion for DAFT and LP-FT + conversion (whose
/// γ, β the conversion re-expressed so the function is the pretrained one). Fine-tuning in BN training mode then
/// moves the running statistics to the target's:
/// - `own`: the model's running statistics as it was saved.
/// - `source`: the pretrained source statistics restored, with γ, β re-folded from the start frame into the source
///   frame: γ ← γ·σ_s/σ_0, β ← β − γ·(μ_0 − μ_s)/σ_0, (μ, σ²) ← (μ_s, σ²_s), where (μ_0, σ²_0) are the start
///   statistics and σ = √(σ² + ε). In evaluation mode the layer computes γ(x − μ_0)/σ_0 + β: the fine-tuned affine
///   with the statistics the run started from. For FT it is the plain restoration of the source statistics; for a
///   run that never changed its statistics (LP, LP-FT) it is `own`.
/// - `mix(α)`: running statistics (1 − α)·own + α·start (mean and variance), affine unchanged; α = 0 is `own` bit
///   for bit, α = 1 computes what `source` computes.
public enum EvaluationStatistics: Equatable, CustomStringConvertible {
    case own
    case source
    case mix(Double)

    /// Parses `own`, `source` or `mix:α` with α in [0, 1].
    public init(parsing text: String) throws {
        switch text {
        case "own": self = .own
        case "source": self = .source
        default:
            guard text.hasPrefix("mix:"), let a = Double(text.dropFirst(4)), a.isFinite, a >= 0, a <= 1 else {
                throw ModelError("--bn-stats must be own, source or mix:α with α in [0, 1], got '\(text)'")
            }
            self = .mix(a)
        }
    }

    public var description: String {
        switch self {
        case .own: return "own"
        case .source: return "source"
        case let .mix(a): return "mix:\(a)"
        }
    }

    /// Whether the policy needs the start model (and, for `source`, the pretrained source).
    public var needsStart: Bool { self != .own }

    /// Rewrites `model`'s BN layers for the policy. `start` is the model the run started fine-tuning from (its
    /// running statistics are the start statistics); `source` the pretrained weights (only `.source` reads them).
    /// The three must have the same BN layers (names and channels; heads may differ).
    public func apply(to model: ResNet, start: ResNet?, source: ResNet?, startName: String = "start", sourceName: String = "source") throws {
        guard self != .own else { return }
        guard let start else { throw ModelError("--bn-stats \(self): needs the run's start model") }
        try Self.checkSameBatchNorms(model, start, name: startName)
        switch self {
        case .own: break
        case let .mix(alpha):
            for (bn, b0) in zip(model.batchNorms, start.batchNorms) {
                let rm = bn.runningMean, rv = bn.runningVar
                for c in 0..<bn.channels {
                    rm[c] = Float((1 - alpha) * Double(rm[c]) + alpha * Double(b0.runningMean[c]))
                    rv[c] = Float((1 - alpha) * Double(rv[c]) + alpha * Double(b0.runningVar[c]))
                }
            }
        case .source:
            guard let source else { throw ModelError("--bn-stats source: needs the pretrained source weights") }
            try Self.checkSameBatchNorms(model, source, name: sourceName)
            for ((bn, b0), bs) in zip(zip(model.batchNorms, start.batchNorms), source.batchNorms) {
                let g = bn.gamma, b = bn.beta, rm = bn.runningMean, rv = bn.runningVar
                let eps = Double(bn.eps)
                for c in 0..<bn.channels {
                    let gamma = Double(g[c]), beta = Double(b[c])
                    let mu0 = Double(b0.runningMean[c]), sd0 = (Double(b0.runningVar[c]) + eps).squareRoot()
                    let muS = Double(bs.runningMean[c]), varS = Double(bs.runningVar[c])
                    g[c] = Float(gamma * (varS + eps).squareRoot() / sd0)
                    b[c] = Float(beta - gamma * (mu0 - muS) / sd0)
                    rm[c] = bs.runningMean[c]
                    rv[c] = Float(varS)
                }
            }
        }
    }

    static func checkSameBatchNorms(_ a: ResNet, _ b: ResNet, name: String) throws {
        guard a.batchNorms.count == b.batchNorms.count else {
            throw ModelError("\(name): has \(b.batchNorms.count) BN layers, the evaluated model \(a.batchNorms.count) (not the same backbone)")
        }
        for (x, y) in zip(a.batchNorms, b.batchNorms) where x.name != y.name || x.channels != y.channels {
            throw ModelError("\(name): BN layer \(y.name) (\(y.channels) channels) where the evaluated model has \(x.name) (\(x.channels))")
        }
    }
}
