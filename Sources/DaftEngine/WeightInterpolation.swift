import DaftInterop
import DaftModels

/// WiSE-FT weight-space ensembling (method.md §10): θ_α = (1 − α)·θ_0 + α·θ_1 for every float tensor of two
/// state_dicts of the same architecture. BN running statistics are interpolated like the parameters (no
/// re-estimation); integer tensors (`num_batches_tracked`) and the metadata come from θ_1 for α > 0, from θ_0
/// at α = 0. For finite weights α = 0 gives θ_0 and α = 1 gives θ_1 bit for bit (F32 tensors stay F32).
public enum WeightInterpolation {
    /// Interpolates `start` (θ_0) and `end` (θ_1); names and shapes must match exactly. Errors are one line
    /// naming the tensor and the two sources.
    public static func interpolate(start: SafeTensorsFile, end: SafeTensorsFile, alpha: Double,
                                   startSource: String, endSource: String) throws -> SafeTensorsFile {
        guard alpha.isFinite, alpha >= 0, alpha <= 1 else { throw ModelError("--alpha must be in [0, 1], got \(alpha)") }
        for name in end.tensors.keys.sorted() where start.tensors[name] == nil {
            throw ModelError("\(startSource): has no tensor '\(name)' that \(endSource) has (not the same architecture)")
        }
        var out = SafeTensorsFile()
        for name in start.tensors.keys.sorted() {
            let a = start.tensors[name]!
            guard let b = end.tensors[name] else {
                throw ModelError("\(endSource): has no tensor '\(name)' that \(startSource) has (not the same architecture)")
            }
            guard a.shape == b.shape else {
                throw ModelError("\(endSource): tensor '\(name)' has shape \(b.shape), \(startSource) has \(a.shape)")
            }
            let floatTypes: [SafeTensorsDType] = [.F64, .F32, .F16, .BF16]
            switch (floatTypes.contains(a.dtype), floatTypes.contains(b.dtype)) {
            case (true, true):
                let x = try a.doubles(), y = try b.doubles()
                var v = [Double](repeating: 0, count: x.count)
                for i in 0..<x.count { v[i] = (1 - alpha) * x[i] + alpha * y[i] }
                out.tensors[name] = (a.dtype == .F64 && b.dtype == .F64)
                    ? SafeTensor(doubles: v, shape: a.shape) : SafeTensor(floats: v.map { Float($0) }, shape: a.shape)
            case (false, false):
                out.tensors[name] = alpha > 0 ? b : a
            default:
                throw ModelError("\(endSource): tensor '\(name)' is \(b.dtype.rawValue), \(startSource) has \(a.dtype.rawValue)")
            }
        }
        out.metadata = alpha > 0 ? end.metadata : start.metadata
        out.metadata["wise_alpha"] = String(alpha)
        return out
    }
}
