import DaftModels

/// The fine-tuning methods of method.md §3–§4 behind one `--method` switch, as the switches they are made of.
public enum Method: String, CaseIterable, Codable {
    case ft, lp, lpFT = "lp-ft", daft
    case lpFTConversion = "lp-ft+conversion", conversionOnly = "conversion-only", fastHeadOnly = "fast-head-only"
    case freeze

    /// BN conversion before training (§2).
    public var convertsBN: Bool { [.daft, .lpFTConversion, .conversionOnly].contains(self) }
    /// The new head starts at zero (DAFT and its head ablations); otherwise PyTorch's nn.Linear init.
    public var zeroHead: Bool { [.daft, .conversionOnly, .fastHeadOnly].contains(self) }
    /// A linear-probing phase trains the head on frozen features first.
    public var probes: Bool { [.lp, .lpFT, .lpFTConversion, .freeze].contains(self) }
    /// A fine-tuning phase follows.
    public var fineTunes: Bool { self != .lp }
    /// BN behaviour while fine-tuning: LP-FT keeps the source statistics frozen; LP-FT + conversion trains in BN
    /// training mode after the conversion, as the reference's `--use_bn_conversion` does (method.md §4).
    public var fineTuneBatchNorm: BatchNormMode { self == .lpFT ? .eval : .train }
    /// Separate head / backbone learning rates (η_h ≫ η_b); otherwise one rate for everything.
    public var twoLearningRates: Bool { [.daft, .fastHeadOnly].contains(self) }

    /// The learning rates `daft finetune` uses when no `--lr*` flag is given — the one place they are set. Each is
    /// the setting the fashion-shift benchmark chose on ID validation for the method in the robust pretraining
    /// regime, the default `--weights` (docs/results.md, 2026-12-06; the clean regime chose FT 0.1, LP-FT 1e-4,
    /// DAFT 0.3 / 0.1). Methods with one rate use `backbone` for every parameter. LP trains no backbone (its probe
    /// has no learning rate); LP-FT's 1e-6 is what ID validation chose — practically LP, nothing else beat it there;
    /// fast-head-only is run at DAFT's rates; freeze was not tuned.
    public var defaultLearningRates: (head: Double, backbone: Double) {
        switch self {
        case .ft: return (0.1, 0.1)
        case .lp: return (0.01, 0.01)
        case .lpFT: return (1e-6, 1e-6)
        case .daft: return (0.3, 0.01)
        case .lpFTConversion: return (0.1, 0.1)
        case .conversionOnly: return (0.1, 0.1)
        case .fastHeadOnly: return (0.3, 0.01)
        case .freeze: return (0.01, 0.01)
        }
    }

    /// `daft pretrain`'s learning rate when none is given (from scratch, cosine-annealed; docs/fashion-shift.md).
    public static let pretrainingLearningRate = 0.1

    public var summary: String {
        switch self {
        case .ft: return "fine-tune everything at one lr, BN in training mode, new head with nn.Linear's random init"
        case .lp: return "linear probe: frozen backbone (BN eval), head only (logistic regression, ridge or kernel ridge)"
        case .lpFT: return "LP head first, then fine-tune everything at one small lr with BN in evaluation behaviour"
        case .daft: return "BN conversion + zero head trained at lr-head >> lr-backbone, one stage, BN in training mode"
        case .lpFTConversion: return "BN conversion, then LP-FT with BN in training mode (the reference's --use_bn_conversion)"
        case .conversionOnly: return "BN conversion + zero head, one lr for head and backbone"
        case .fastHeadOnly: return "zero head at lr-head >> lr-backbone, no BN conversion"
        case .freeze: return "train the head, then unfreeze from --unfreeze-from (e.g. layer3) upward at one low lr"
        }
    }
}

/// Linear-probe solvers (method.md §4 LP (a) and (b), §6): logistic regression, the primal ridge head, and the
/// dual (kernel) ridge head with the linear kernel — the only kernel a model's fc layer can hold (W = Xᵀα).
public enum ProbeSolver: String, CaseIterable, Codable {
    case logistic, ridge
    case kernelRidge = "kernel-ridge"
}
