import DaftKernels
import DaftDistributed

/// Shared per-step context of a model: BN mode, the communicator for synchronized BN, scratch memory,
/// and the hook told when a parameter's gradient is final (gradient buckets start their all-reduce there).
public final class StepContext {
    public var sync: Communicator?
    public let workspace = ConvWorkspace()
    public var gradientReady: ((Int) -> Void)?
    public init(sync: Communicator? = nil) { self.sync = sync }
    @inline(__always) func ready(_ index: Int) { gradientReady?(index) }
}

/// Conv (no bias) → BatchNorm → optional ReLU: the unit every ResNet is made of.
///
/// Keeps its conv output (the BN input) and its output for the backward; `dOut` receives the gradient
/// of its output from whoever consumed it (zeroed by the model before they add into it).
public final class ConvBN {
    public let convName: String
    public let geometry: ConvGeometry
    public let bn: BatchNorm2d
    public let relu: Bool
    let store: ParameterStore
    let weightOffset: Int
    public let weightIndex: Int
    public private(set) var inShape = Shape4(0, 0, 0, 0)
    public private(set) var outShape = Shape4(0, 0, 0, 0)
    let convOut = FloatBuffer(), dConvOut = FloatBuffer()
    public let out = FloatBuffer(), dOut = FloatBuffer()

    public init(conv convName: String, bn bnName: String, geometry: ConvGeometry, relu: Bool, store: ParameterStore) {
        self.convName = convName
        self.geometry = geometry
        self.relu = relu
        self.store = store
        weightOffset = store.addParameter("\(convName).weight", shape: [geometry.cout, geometry.cin, geometry.kh, geometry.kw])
        weightIndex = store.parameterEntries.count - 1
        bn = BatchNorm2d(name: bnName, channels: geometry.cout, store: store)
    }

    public var weight: UnsafeMutablePointer<Float> { store.parameterPointer + weightOffset }

    /// Kaiming-normal (fan_out, ReLU gain) like torchvision, and default BN.
    public func resetParameters(rng: inout SplitMix64) {
        let std = (2.0 / Double(geometry.cout * geometry.kh * geometry.kw)).squareRoot()
        let w = weight
        for i in 0..<geometry.weightCount { w[i] = Float(rng.nextNormal() * std) }
        bn.resetParameters()
    }

    public func forward(_ x: UnsafePointer<Float>, _ xs: Shape4, mode: BatchNormMode, context: StepContext) throws {
        inShape = xs
        outShape = geometry.outputShape(xs)
        let n = outShape.count
        convOut.reserve(n); out.reserve(n); dOut.reserve(n); dConvOut.reserve(n)
        Conv2D.forward(x, xs, weight: weight, bias: nil, geometry, convOut.pointer, workspace: context.workspace)
        try bn.forward(convOut.pointer, outShape, out.pointer, mode: mode, relu: relu, sync: context.sync)
    }

    /// Backward from `dy` (defaults to this unit's `dOut`); adds dx into `dx` when given.
    public func backward(_ x: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>? = nil, dx: UnsafeMutablePointer<Float>?,
                         context: StepContext) {
        let g = dy ?? dOut.pointer
        bn.backward(convOut.pointer, outShape, output: out.pointer, dy: g, relu: relu, dx: dConvOut.pointer,
                    parameterGradients: true, sync: context.sync)
        context.ready(bn.weightIndex); context.ready(bn.biasIndex)
        Conv2D.backward(x, inShape, weight: weight, geometry, dy: dConvOut.pointer,
                        dWeight: store.gradientPointer + weightOffset, dBias: nil, dx: dx, workspace: context.workspace)
        context.ready(weightIndex)
    }
}

/// A torchvision residual block: BasicBlock (two 3×3 units) or Bottleneck (1×1, 3×3, 1×1 ×4), with an
/// optional 1×1-conv + BN `downsample` shortcut; output = ReLU(main + shortcut).
public final class ResidualBlock {
    public let name: String
    public let units: [ConvBN]
    public let downsample: ConvBN?
    public private(set) var inShape = Shape4(0, 0, 0, 0)
    public private(set) var outShape = Shape4(0, 0, 0, 0)
    public let out = FloatBuffer(), dOut = FloatBuffer()

    init(name: String, units: [ConvBN], downsample: ConvBN?) {
        self.name = name; self.units = units; self.downsample = downsample
    }

    public func forward(_ x: UnsafePointer<Float>, _ xs: Shape4, mode: BatchNormMode, context: StepContext) throws {
        inShape = xs
        var cur = x, cs = xs
        for u in units {
            try u.forward(cur, cs, mode: mode, context: context)
            cur = UnsafePointer(u.out.pointer); cs = u.outShape
        }
        outShape = cs
        out.reserve(cs.count); dOut.reserve(cs.count)
        if let ds = downsample {
            try ds.forward(x, xs, mode: mode, context: context)
            Elementwise.addRelu(cur, ds.out.pointer, out.pointer, count: cs.count)
        } else {
            precondition(xs == cs, "\(name): identity shortcut needs matching shapes")
            Elementwise.addRelu(cur, x, out.pointer, count: cs.count)
        }
    }

    /// Backward from `dOut`; adds the input gradient into `dx` when given (it must be zeroed by the caller).
    public func backward(_ x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, context: StepContext) {
        let n = outShape.count
        BatchNormKernels.reluMask(dOut.pointer, output: out.pointer, count: n)
        // main path, last unit first; the last unit has no ReLU so dOut stays intact for the shortcut
        for k in stride(from: units.count - 1, through: 0, by: -1) {
            let u = units[k]
            let input: UnsafePointer<Float> = k == 0 ? x : UnsafePointer(units[k - 1].out.pointer)
            let target: UnsafeMutablePointer<Float>?
            if k == 0 { target = dx } else { units[k - 1].dOut.zero(units[k - 1].outShape.count); target = units[k - 1].dOut.pointer }
            u.backward(input, dy: k == units.count - 1 ? dOut.pointer : nil, dx: target, context: context)
        }
        if let ds = downsample {
            ds.backward(x, dy: dOut.pointer, dx: dx, context: context)
        } else if let dx {
            Elementwise.accumulate(dOut.pointer, into: dx, count: n)
        }
    }
}
