import Foundation

/// Per-channel batch-norm arithmetic on NCHW float32 data.
///
/// Split into reductions and applications so a synchronized batch norm can all-reduce the
/// per-channel sums between the two (the layer in DaftModels does that). Reductions accumulate
/// in float64 so sums from several ranks combine without cancellation trouble.
public enum BatchNormKernels {
    /// Adds Σx and Σx² per channel of `x` into `sum` and `sumSquares` (length C).
    public static func accumulateMoments(_ x: UnsafePointer<Float>, _ s: Shape4,
                                         sum: UnsafeMutablePointer<Double>, sumSquares: UnsafeMutablePointer<Double>) {
        let hw = s.spatial
        for c in 0..<s.c {
            var a: Double = 0, q: Double = 0
            for n in 0..<s.n {
                let p = x + (n * s.c + c) * hw
                for i in 0..<hw { let v = Double(p[i]); a += v; q += v * v }
            }
            sum[c] += a
            sumSquares[c] += q
        }
    }

    /// y = x·scale[c] + shift[c], then ReLU when `relu` (scale = γ·invstd, shift = β − mean·scale).
    public static func applyAffine(_ x: UnsafePointer<Float>, _ s: Shape4, scale: UnsafePointer<Float>,
                                   shift: UnsafePointer<Float>, relu: Bool, _ y: UnsafeMutablePointer<Float>) {
        let hw = s.spatial
        for n in 0..<s.n {
            for c in 0..<s.c {
                let a = scale[c], b = shift[c]
                let p = x + (n * s.c + c) * hw, q = y + (n * s.c + c) * hw
                if relu { for i in 0..<hw { q[i] = max(p[i] * a + b, 0) } } else { for i in 0..<hw { q[i] = p[i] * a + b } }
            }
        }
    }

    /// Zeroes dy where the (post-ReLU) output y is not positive: the ReLU backward, in place.
    public static func reluMask(_ dy: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { dy[i] = y[i] > 0 ? dy[i] : 0 }
    }

    /// Adds Σdy and Σdy·x̂ per channel, with x̂ = (x − mean)·invstd.
    public static func accumulateBackwardSums(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ s: Shape4,
                                              mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>,
                                              sumDy: UnsafeMutablePointer<Double>, sumDyXhat: UnsafeMutablePointer<Double>) {
        let hw = s.spatial
        for c in 0..<s.c {
            let m = mean[c], r = invstd[c]
            var a: Double = 0, b: Double = 0
            for n in 0..<s.n {
                let px = x + (n * s.c + c) * hw, pd = dy + (n * s.c + c) * hw
                var fa: Float = 0, fb: Float = 0
                for i in 0..<hw { let d = pd[i]; fa += d; fb += d * (px[i] - m) }
                a += Double(fa); b += Double(fb) * Double(r)
            }
            sumDy[c] += a
            sumDyXhat[c] += b
        }
    }

    /// Training-mode input gradient: dx = γ·invstd·(dy − meanDy − x̂·meanDyXhat), written (not added) to dx.
    /// `meanDy` and `meanDyXhat` are Σdy/N and Σdy·x̂/N over the (global) batch.
    public static func trainBackwardInput(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ s: Shape4,
                                          mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
                                          meanDy: UnsafePointer<Float>, meanDyXhat: UnsafePointer<Float>,
                                          _ dx: UnsafeMutablePointer<Float>) {
        let hw = s.spatial
        for n in 0..<s.n {
            for c in 0..<s.c {
                let r = invstd[c], k = gamma[c] * r, m = mean[c], md = meanDy[c], mx = meanDyXhat[c] * r
                let px = x + (n * s.c + c) * hw, pd = dy + (n * s.c + c) * hw, q = dx + (n * s.c + c) * hw
                for i in 0..<hw { q[i] = k * (pd[i] - md - (px[i] - m) * mx) }
            }
        }
    }

    /// Evaluation-mode input gradient (fixed statistics): dx = dy·γ·invstd, written to dx.
    public static func evalBackwardInput(_ dy: UnsafePointer<Float>, _ s: Shape4, scale: UnsafePointer<Float>,
                                         _ dx: UnsafeMutablePointer<Float>) {
        let hw = s.spatial
        for n in 0..<s.n {
            for c in 0..<s.c {
                let k = scale[c]
                let pd = dy + (n * s.c + c) * hw, q = dx + (n * s.c + c) * hw
                for i in 0..<hw { q[i] = pd[i] * k }
            }
        }
    }
}
