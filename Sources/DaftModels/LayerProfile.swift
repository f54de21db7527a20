import Foundation
import DaftKernels

/// Wall time and floating-point work of a model's training steps per layer kind (`daft bench --profile`):
/// where the step's time goes, and how many GFLOP/s each kind of layer reaches. A model measures only while
/// its `StepContext.profile` is set; each kind's time is the wall time of its calls on the calling thread
/// (with `ComputeThreads` > 1 that includes waiting for the other parts). A timed block inside another
/// one counts only under its own kind (the synchronized-BN all-reduces inside a batch norm count as
/// `syncBatchNorm`, not as `batchNorm`).
public final class LayerProfile {
    /// What a layer is, for the breakdown.
    public enum Kind: String, CaseIterable, Codable, Sendable {
        case stem = "stem convolution"
        case conv3x3 = "3×3 convolution, stride 1"
        case conv3x3Stride2 = "3×3 convolution, stride 2"
        case conv1x1 = "1×1 convolution"
        case batchNorm = "batch norm (+ReLU)"
        /// The statistics all-reduces of synchronized BN (one in the forward, one in the backward of each
        /// BN layer), including the time waiting for the slowest rank to reach them.
        case syncBatchNorm = "SyncBN all-reduces (incl. waiting for the other ranks)"
        case residual = "residual join, ReLU masks, gradient zeroing"
        case pooling = "pooling (max, global average)"
        case head = "linear head"
        case optimizer = "optimizer (SGD step)"

        /// The kind of a convolution: the stem (`conv1`), else by kernel size and stride.
        static func of(_ name: String, _ g: ConvGeometry) -> Kind {
            if name == "conv1" { return .stem }
            if g.kh == 1 && g.kw == 1 { return .conv1x1 }
            if g.kh == 3 && g.kw == 3 { return g.strideH == 1 && g.strideW == 1 ? .conv3x3 : .conv3x3Stride2 }
            return .stem
        }
    }

    public private(set) var seconds: [Kind: Double] = [:]
    public private(set) var flops: [Kind: Double] = [:]
    /// Seconds of the timed blocks nested in the one running now (taken off its own kind).
    private var nestedSeconds = 0.0

    public init() {}

    /// Forgets what was measured (after warm-up steps).
    public func reset() { seconds = [:]; flops = [:]; nestedSeconds = 0 }

    /// Runs `body`, adding its wall time, less that of the timed blocks nested in it, (and `flops`
    /// floating-point operations) to `kind`.
    @inline(__always)
    public func time<T>(_ kind: Kind, flops work: Double = 0, _ body: () throws -> T) rethrows -> T {
        let outerNested = nestedSeconds
        nestedSeconds = 0
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer {
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            seconds[kind, default: 0] += elapsed - nestedSeconds
            nestedSeconds = outerNested + elapsed
            if work > 0 { flops[kind, default: 0] += work }
        }
        return try body()
    }
}

extension StepContext {
    /// `body` timed under `kind` when profiling, else just run.
    @inline(__always)
    public func timed<T>(_ kind: LayerProfile.Kind, flops: @autoclosure () -> Double = 0, _ body: () throws -> T) rethrows -> T {
        guard let profile else { return try body() }
        return try profile.time(kind, flops: flops(), body)
    }
}
