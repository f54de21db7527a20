import DaftKernels
import DaftDistributed

/// Shared per-step context of a model: BN mode, the communicator for synchronized BN, scratch memory,
/// and the hook told when a parameter's gradient is final (gradient buckets start their all-reduce there).
public final class StepContext {
    public var sync: Communicator?
    public let workspace = ConvWorkspace()
    public var gradientReady: ((Int) -> Void)?
    /// Set to measure time per layer kind (`daft bench --profile`); nil otherwise.
    public var profile: LayerProfile?
    public init(sync: Communicator? = nil) { self.sync = sync }
    @inline(__always) func ready(_ index: Int) { gradientReady?(index) }
}

/// The buffers a model's layers share because what they hold is dead outside a short window, so a model
/// keeps a handful of gradient buffers instead of two per layer (what PyTorch's autograd frees as it goes):
///
/// - gradients of block outputs alternate between two buffers by block (block j writes its input gradient
///   into block j − 1's, which is the other one);
/// - gradients of a block's inner unit outputs alternate between two more by unit;
/// - the gradient of a unit's BN input lives only between its BN backward and its convolution backward;
/// - the output of a downsample shortcut lives only until the residual join adds it, and its backward
///   never reads it (a block's last unit writes straight into the block's output, which the join then
///   updates in place): it borrows the conv-gradient buffer, which holds nothing during the forward and
///   whose first write in the backward (the shortcut's own BN backward at the earliest) comes after the join.
///
/// Each buffer grows in the forward pass (before its contents matter) to the largest layer using it.
final class SharedActivations {
    let blockGradients = [FloatBuffer(), FloatBuffer()]
    let unitGradients = [FloatBuffer(), FloatBuffer()]
    let convGradient = FloatBuffer()
    /// The conv-gradient buffer, lent to the forward (see above).
    var shortcutOutput: FloatBuffer { convGradient }
}

/// Conv (no bias) → BatchNorm → optional ReLU: the unit every ResNet is made of.
///
/// Keeps its conv output (the BN input) and, with ReLU, its output for the backward; `dOut` (nil when the
/// caller always hands its gradient in) receives the gradient of its output from whoever consumed it
/// (zeroed by the model before they add into it). `out` and `dOut` may be `SharedActivations` buffers.
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
    let convOut = FloatBuffer()
    let dConvOut: FloatBuffer
    public let out: FloatBuffer
    public let dOut: FloatBuffer?

    public init(conv convName: String, bn bnName: String, geometry: ConvGeometry, relu: Bool, store: ParameterStore,
                out: FloatBuffer = FloatBuffer(), dOut: FloatBuffer?, dConvOut: FloatBuffer) {
        self.out = out; self.dOut = dOut; self.dConvOut = dConvOut
        kind = LayerProfile.Kind.of(convName, geometry)
        self.convName = convName
        self.geometry = geometry
        self.relu = relu
        self.store = store
        weightOffset = store.addParameter("\(convName).weight", shape: [geometry.cout, geometry.cin, geometry.kh, geometry.kw])
        weightIndex = store.parameterEntries.count - 1
        bn = BatchNorm2d(name: bnName, channels: geometry.cout, store: store)
    }

    public var weight: UnsafeMutablePointer<Float> { store.parameterPointer + weightOffset }
    /// This convolution's line in a `LayerProfile`.
    let kind: LayerProfile.Kind

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
        convOut.reserve(n); out.reserve(n); dOut?.reserve(n); dConvOut.reserve(n)
        context.timed(kind, flops: 2 * Double(geometry.forwardMACs(xs))) {
            Conv2D.forward(x, xs, weight: weight, bias: nil, geometry, convOut.pointer, workspace: context.workspace)
        }
        try context.timed(.batchNorm) {
            try bn.forward(convOut.pointer, outShape, out.pointer, mode: mode, relu: relu, context: context)
        }
    }

    /// Backward from `dy` (defaults to this unit's `dOut`); adds dx into `dx` when given, or writes it there with
    /// `overwritingDx` (`Conv2D.backward`). With `maskingOutputRelu` dy is first zeroed in place where `out` is
    /// not positive, in the batch norm's first pass: the ReLU of the residual join, whose output the last unit's
    /// `out` holds (a unit with its own ReLU masks anyway).
    public func backward(_ x: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>? = nil, dx: UnsafeMutablePointer<Float>?,
                         overwritingDx: Bool = false, maskingOutputRelu: Bool = false, context: StepContext) {
        guard let g = dy ?? dOut?.pointer else { preconditionFailure("\(convName): backward without a gradient") }
        context.timed(.batchNorm) {
            bn.backward(convOut.pointer, outShape, output: out.pointer, dy: g, relu: relu || maskingOutputRelu, dx: dConvOut.pointer,
                        parameterGradients: true, context: context)
        }
        context.ready(bn.weightIndex); context.ready(bn.biasIndex)
        context.timed(kind, flops: 2 * Double(geometry.forwardMACs(inShape)) * (dx == nil ? 1 : 2)) {
            Conv2D.backward(x, inShape, weight: weight, geometry, dy: dConvOut.pointer,
                            dWeight: store.gradientPointer + weightOffset, dBias: nil, dx: dx, overwritingDx: overwritingDx,
                            workspace: context.workspace)
        }
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
    /// The block's output: the last unit's BN output, then ReLU(it + shortcut) in place.
    public let out: FloatBuffer
    /// The gradient of `out` (one of `SharedActivations.blockGradients`).
    public let dOut: FloatBuffer

    init(name: String, units: [ConvBN], downsample: ConvBN?, dOut: FloatBuffer) {
        precondition(units.last.map { !$0.relu } ?? false, "\(name): the last unit has no ReLU (the join applies it)")
        self.name = name; self.units = units; self.downsample = downsample; self.dOut = dOut
        out = units.last!.out
    }

    public func forward(_ x: UnsafePointer<Float>, _ xs: Shape4, mode: BatchNormMode, context: StepContext) throws {
        inShape = xs
        var cur = x, cs = xs
        for u in units {
            try u.forward(cur, cs, mode: mode, context: context)
            cur = UnsafePointer(u.out.pointer); cs = u.outShape
        }
        outShape = cs
        dOut.reserve(cs.count)          // `out` is the last unit's output buffer: already this size
        if let ds = downsample {
            try ds.forward(x, xs, mode: mode, context: context)
            context.timed(.residual) { Elementwise.addRelu(cur, ds.out.pointer, out.pointer, count: cs.count) }
        } else {
            precondition(xs == cs, "\(name): identity shortcut needs matching shapes")
            context.timed(.residual) { Elementwise.addRelu(cur, x, out.pointer, count: cs.count) }
        }
    }

    /// Backward from `dOut`; writes the input gradient into `dx` when given (the first unit's convolution writes
    /// it, the shortcut adds to it: nothing needs zeroing first).
    public func backward(_ x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, context: StepContext) {
        let n = outShape.count
        // main path, last unit first: its batch norm applies the join's ReLU mask to dOut in place (the last
        // unit's `out` is the block's output), so the shortcut below reads the masked dOut
        for k in stride(from: units.count - 1, through: 0, by: -1) {
            let u = units[k]
            let input: UnsafePointer<Float> = k == 0 ? x : UnsafePointer(units[k - 1].out.pointer)
            let target = k == 0 ? dx : units[k - 1].dOut!.pointer      // written by this unit's convolution
            let last = k == units.count - 1
            u.backward(input, dy: last ? dOut.pointer : nil, dx: target, overwritingDx: true, maskingOutputRelu: last,
                       context: context)
        }
        if let ds = downsample {
            ds.backward(x, dy: dOut.pointer, dx: dx, context: context)
        } else if let dx {
            context.timed(.residual) { Elementwise.accumulate(dOut.pointer, into: dx, count: n) }
        }
    }
}
