import Foundation

/// Per-channel batch-norm arithmetic on NCHW float32 data.
///
/// Split into reductions and applications so a synchronized batch norm can all-reduce the
/// per-channel sums between the two (the layer in DaftModels does that). Reductions split the channels,
/// applications the (sample, channel) planes over `ComputeThreads` parts, so results do not depend on the
/// thread count. Each (sample, channel) row is reduced in float with 16 vector partial sums; rows are
/// combined in float64 so sums over a large batch, and from several ranks, combine without cancellation trouble.
public enum BatchNormKernels {
    /// The fewest channels per `ComputeThreads` part: at least `Elementwise.floatsPerPart` values of work.
    static func channelsPerPart(_ s: Shape4) -> Int { max(1, Elementwise.floatsPerPart / max(1, s.n * s.spatial)) }
    /// The fewest (sample, channel) planes per part.
    static func planesPerPart(_ s: Shape4) -> Int { max(1, Elementwise.floatsPerPart / max(1, s.spatial)) }

    /// Adds Σx and Σx² per channel of `x` into `sum` and `sumSquares` (length C).
    public static func accumulateMoments(_ x: UnsafePointer<Float>, _ s: Shape4,
                                         sum: UnsafeMutablePointer<Double>, sumSquares: UnsafeMutablePointer<Double>) {
        let hw = s.spatial
        ComputeThreads.forEachRange(s.c, minimumPerPart: BatchNormKernels.channelsPerPart(s)) { channels in
        for c in channels {
            var a: Double = 0, q: Double = 0
            for n in 0..<s.n {
                let p = x + (n * s.c + c) * hw
                var s0 = F8(), s1 = F8(), q0 = F8(), q1 = F8()
                var i = 0
                while i &+ 16 <= hw {
                    let u = load8(p + i), v = load8(p + i + 8)
                    s0 += u; q0 += u * u; s1 += v; q1 += v * v
                    i &+= 16
                }
                if i &+ 8 <= hw { let u = load8(p + i); s0 += u; q0 += u * u; i &+= 8 }
                var fs = (s0 + s1).sum(), fq = (q0 + q1).sum()
                while i < hw { let v = p[i]; fs += v; fq += v * v; i &+= 1 }
                a += Double(fs); q += Double(fq)
            }
            sum[c] += a
            sumSquares[c] += q
        }
        }
    }

    /// y = x·scale[c] + shift[c], then ReLU when `relu` (scale = γ·invstd, shift = β − mean·scale).
    public static func applyAffine(_ x: UnsafePointer<Float>, _ s: Shape4, scale: UnsafePointer<Float>,
                                   shift: UnsafePointer<Float>, relu: Bool, _ y: UnsafeMutablePointer<Float>) {
        let hw = s.spatial
        ComputeThreads.forEachRange(s.n * s.c, minimumPerPart: BatchNormKernels.planesPerPart(s)) { planes in
            for plane in planes {
                let c = plane % s.c
                let a = scale[c], b = shift[c]
                let av = F8(repeating: a), bv = F8(repeating: b)
                let p = x + plane * hw, q = y + plane * hw
                var i = 0
                if relu {
                    while i &+ 8 <= hw { store8(relu8(load8(p + i) * av + bv), q + i); i &+= 8 }
                    while i < hw { let v = p[i] * a + b; q[i] = v < 0 ? 0 : v; i &+= 1 }
                } else {
                    while i &+ 8 <= hw { store8(load8(p + i) * av + bv, q + i); i &+= 8 }
                    while i < hw { q[i] = p[i] * a + b; i &+= 1 }
                }
            }
        }
    }

    /// Zeroes dy where the (post-ReLU) output y is not positive: the ReLU backward, in place.
    public static func reluMask(_ dy: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>, count: Int) {
        ComputeThreads.forEachRange(count, minimumPerPart: Elementwise.floatsPerPart) { r in
            reluMask(dy + r.lowerBound, output: y + r.lowerBound, serialCount: r.count)
        }
    }

    static func reluMask(_ dy: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>, serialCount count: Int) {
        var i = 0
        while i &+ 8 <= count {
            let yv = load8(y + i)
            store8(load8(dy + i).replacing(with: 0, where: .!(yv .> 0)), dy + i)
            i &+= 8
        }
        while i < count { if !(y[i] > 0) { dy[i] = 0 }; i &+= 1 }
    }

    /// Adds Σdy and Σdy·x̂ per channel, with x̂ = (x − mean)·invstd.
    public static func accumulateBackwardSums(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ s: Shape4,
                                              mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>,
                                              sumDy: UnsafeMutablePointer<Double>, sumDyXhat: UnsafeMutablePointer<Double>) {
        backwardSums(x, dy, s, mean: mean, invstd: invstd, sumDy: sumDy, sumDyXhat: sumDyXhat, maskingReluOf: nil, into: nil)
    }

    /// `reluMask` and `accumulateBackwardSums` in one pass when the post-ReLU output `y` is given: zeroes dy in
    /// place where y is not positive and adds the sums of the masked dy (the same values and sums as the two
    /// passes); without `y`, `accumulateBackwardSums` alone.
    public static func accumulateBackwardSums(_ x: UnsafePointer<Float>, maskingRelu dy: UnsafeMutablePointer<Float>,
                                              output y: UnsafePointer<Float>?, _ s: Shape4,
                                              mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>,
                                              sumDy: UnsafeMutablePointer<Double>, sumDyXhat: UnsafeMutablePointer<Double>) {
        backwardSums(x, UnsafePointer(dy), s, mean: mean, invstd: invstd, sumDy: sumDy, sumDyXhat: sumDyXhat,
                     maskingReluOf: y, into: y == nil ? nil : dy)
    }

    /// The channel loop of both: rows reduced in float (`backwardRowSums`), combined in float64.
    @inline(__always)
    static func backwardSums(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ s: Shape4,
                             mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>,
                             sumDy: UnsafeMutablePointer<Double>, sumDyXhat: UnsafeMutablePointer<Double>,
                             maskingReluOf y: UnsafePointer<Float>?, into masked: UnsafeMutablePointer<Float>?) {
        let hw = s.spatial
        ComputeThreads.forEachRange(s.c, minimumPerPart: BatchNormKernels.channelsPerPart(s)) { channels in
            for c in channels {
                var a: Double = 0, b: Double = 0
                for n in 0..<s.n {
                    let o = (n * s.c + c) * hw
                    let row = backwardRowSums(x + o, dy + o, mean: mean[c], hw, maskingReluOf: y.map { $0 + o },
                                              into: masked.map { $0 + o })
                    a += Double(row.dy); b += Double(row.dyXc)
                }
                sumDy[c] += a
                sumDyXhat[c] += b * Double(invstd[c])
            }
        }
    }

    /// Σdy and Σdy·(x − m) over one (sample, channel) row of `hw` floats with 16 vector partial sums; with
    /// `maskingReluOf` y, dy is first zeroed where y is not positive and the masked values stored to `into`.
    @inline(__always)
    static func backwardRowSums(_ px: UnsafePointer<Float>, _ pd: UnsafePointer<Float>, mean m: Float, _ hw: Int,
                                maskingReluOf py: UnsafePointer<Float>?, into masked: UnsafeMutablePointer<Float>?)
        -> (dy: Float, dyXc: Float) {
        let mv = F8(repeating: m)
        @inline(__always) func load(_ i: Int) -> F8 {
            guard let py, let masked else { return load8(pd + i) }
            let d = load8(pd + i).replacing(with: 0, where: .!(load8(py + i) .> 0))
            store8(d, masked + i)
            return d
        }
        var a0 = F8(), a1 = F8(), b0 = F8(), b1 = F8()
        var i = 0
        while i &+ 16 <= hw {
            let d0 = load(i), d1 = load(i &+ 8)
            a0 += d0; a1 += d1
            b0 += d0 * (load8(px + i) - mv); b1 += d1 * (load8(px + i + 8) - mv)
            i &+= 16
        }
        if i &+ 8 <= hw { let d0 = load(i); a0 += d0; b0 += d0 * (load8(px + i) - mv); i &+= 8 }
        var fa = (a0 + a1).sum(), fb = (b0 + b1).sum()
        while i < hw {
            var d = pd[i]
            if let py, let masked, !(py[i] > 0) { d = 0; masked[i] = 0 }
            fa += d; fb += d * (px[i] - m); i &+= 1
        }
        return (fa, fb)
    }

    /// Training-mode input gradient: dx = γ·invstd·(dy − meanDy − x̂·meanDyXhat), written (not added) to dx.
    /// `meanDy` and `meanDyXhat` are Σdy/N and Σdy·x̂/N over the (global) batch.
    public static func trainBackwardInput(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ s: Shape4,
                                          mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
                                          meanDy: UnsafePointer<Float>, meanDyXhat: UnsafePointer<Float>,
                                          _ dx: UnsafeMutablePointer<Float>) {
        let hw = s.spatial
        ComputeThreads.forEachRange(s.n * s.c, minimumPerPart: BatchNormKernels.planesPerPart(s)) { planes in
            for plane in planes {
                let c = plane % s.c
                let r = invstd[c], k = gamma[c] * r, m = mean[c], md = meanDy[c], mx = meanDyXhat[c] * r
                let kv = F8(repeating: k), mv = F8(repeating: m), mdv = F8(repeating: md), mxv = F8(repeating: mx)
                let px = x + plane * hw, pd = dy + plane * hw, q = dx + plane * hw
                var i = 0
                while i &+ 8 <= hw {
                    store8(kv * (load8(pd + i) - mdv - (load8(px + i) - mv) * mxv), q + i)
                    i &+= 8
                }
                while i < hw { q[i] = k * (pd[i] - md - (px[i] - m) * mx); i &+= 1 }
            }
        }
    }

    /// Evaluation-mode input gradient (fixed statistics): dx = dy·γ·invstd, written to dx.
    public static func evalBackwardInput(_ dy: UnsafePointer<Float>, _ s: Shape4, scale: UnsafePointer<Float>,
                                         _ dx: UnsafeMutablePointer<Float>) {
        let hw = s.spatial
        ComputeThreads.forEachRange(s.n * s.c, minimumPerPart: BatchNormKernels.planesPerPart(s)) { planes in
            for plane in planes {
                let k = scale[plane % s.c]
                let kv = F8(repeating: k)
                let pd = dy + plane * hw, q = dx + plane * hw
                var i = 0
                while i &+ 8 <= hw { store8(load8(pd + i) * kv, q + i); i &+= 8 }
                while i < hw { q[i] = pd[i] * k; i &+= 1 }
            }
        }
    }
}
