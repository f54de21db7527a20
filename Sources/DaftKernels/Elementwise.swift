import Foundation

/// Pooling, residual and activation kernels (NCHW float32), each with its backward. The long ones split
/// their index range (pooling: the (sample, channel) planes) over `ComputeThreads` parts; every element is
/// computed as by one thread.
public enum Elementwise {
    /// The fewest floats per `ComputeThreads` part of an elementwise kernel (smaller ranges stay on one thread;
    /// tests lower it to split small tensors).
    nonisolated(unsafe) public internal(set) static var floatsPerPart = 1 << 15

    /// y = max(x, 0).
    public static func relu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        ComputeThreads.forEachRange(count, minimumPerPart: floatsPerPart) { r in
            let x = x + r.lowerBound, y = y + r.lowerBound, count = r.count
            var i = 0
            while i &+ 8 <= count { store8(relu8(load8(x + i)), y + i); i &+= 8 }
            while i < count { let v = x[i]; y[i] = v < 0 ? 0 : v; i &+= 1 }
        }
    }

    /// y = max(a + b, 0): the residual join of a ResNet block.
    public static func addRelu(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        ComputeThreads.forEachRange(count, minimumPerPart: floatsPerPart) { r in
            let a = a + r.lowerBound, b = b + r.lowerBound, y = y + r.lowerBound, count = r.count
            var i = 0
            while i &+ 8 <= count { store8(relu8(load8(a + i) + load8(b + i)), y + i); i &+= 8 }
            while i < count { let v = a[i] + b[i]; y[i] = v < 0 ? 0 : v; i &+= 1 }
        }
    }

    /// y = a + b.
    public static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        ComputeThreads.forEachRange(count, minimumPerPart: floatsPerPart) { r in
            let a = a + r.lowerBound, b = b + r.lowerBound, y = y + r.lowerBound, count = r.count
            var i = 0
            while i &+ 8 <= count { store8(load8(a + i) + load8(b + i), y + i); i &+= 8 }
            while i < count { y[i] = a[i] + b[i]; i &+= 1 }
        }
    }

    /// y += x.
    public static func accumulate(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        ComputeThreads.forEachRange(count, minimumPerPart: floatsPerPart) { r in
            Vec.addInPlace(x + r.lowerBound, y + r.lowerBound, r.count)
        }
    }

    /// y = 0 over `count` floats.
    public static func zero(_ y: UnsafeMutablePointer<Float>, count: Int) {
        ComputeThreads.forEachRange(count, minimumPerPart: floatsPerPart) { r in Vec.zero(y + r.lowerBound, r.count) }
    }

    /// Global average pool: [N,C,H,W] -> [N,C].
    public static func globalAvgPool(_ x: UnsafePointer<Float>, _ s: Shape4, _ y: UnsafeMutablePointer<Float>) {
        let hw = s.spatial
        let inv = 1 / Float(hw)
        for nc in 0..<(s.n * s.c) { y[nc] = Vec.sum(x + nc * hw, hw) * inv }
    }

    /// Backward of the global average pool: dx = dy / (H·W), broadcast (written, not added).
    public static func globalAvgPoolBackward(_ dy: UnsafePointer<Float>, _ s: Shape4, _ dx: UnsafeMutablePointer<Float>) {
        let hw = s.spatial
        let inv = 1 / Float(hw)
        for nc in 0..<(s.n * s.c) {
            let v = dy[nc] * inv
            (dx + nc * hw).update(repeating: v, count: hw)
        }
    }

    /// One `torch.optim.SGD` step of `count` parameters p with gradient g and momentum buffer b (`SGD.step`):
    /// d = g (+ wd·p); b ← d on the first step, else μ·b + damp·d; d ← d + μ·b (Nesterov) or b; p ← p − lr·d.
    /// Eight elements at a time (the settings tested once per eight, so the loop is vector code), then one at
    /// a time; the same float arithmetic per element either way.
    public static func sgdUpdate(_ p: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
                                 momentum b: UnsafeMutablePointer<Float>, count: Int, lr: Float, mu: Float, damp: Float,
                                 wd: Float, first: Bool, nesterov: Bool) {
        let lrv = F8(repeating: lr), muv = F8(repeating: mu), dampv = F8(repeating: damp), wdv = F8(repeating: wd)
        var i = 0
        while i &+ 8 <= count {
            var d = load8(g + i)
            if wd != 0 { d += wdv * load8(p + i) }
            if mu != 0 {
                let buf = first ? d : muv * load8(b + i) + dampv * d
                store8(buf, b + i)
                d = nesterov ? d + muv * buf : buf
            }
            store8(load8(p + i) - lrv * d, p + i)
            i &+= 8
        }
        while i < count {
            var d = g[i]
            if wd != 0 { d += wd * p[i] }
            if mu != 0 {
                let buf = first ? d : mu * b[i] + damp * d
                b[i] = buf
                d = nesterov ? d + mu * buf : buf
            }
            p[i] -= lr * d
            i &+= 1
        }
    }

    /// Output shape of a max-pool with square kernel, stride and padding.
    public static func maxPoolShape(_ s: Shape4, kernel: Int, stride: Int, padding: Int) -> Shape4 {
        Shape4(s.n, s.c, (s.h + 2 * padding - kernel) / stride + 1, (s.w + 2 * padding - kernel) / stride + 1)
    }

    /// Max-pool forward; records the flat input index of each maximum in `argmax` for the backward.
    /// Within a window the first maximum in row-major order wins, and a NaN wins over numbers (the last NaN),
    /// as in PyTorch. The 3×3, stride-2, padding-1 pool of the ImageNet stem takes a vectorised path
    /// (`maxPool3x3Stride2Plane`, the same result) for the windows inside the plane.
    public static func maxPool(_ x: UnsafePointer<Float>, _ s: Shape4, kernel: Int, stride: Int, padding: Int,
                               _ y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>) {
        let o = maxPoolShape(s, kernel: kernel, stride: stride, padding: padding)
        let stemPool = kernel == 3 && stride == 2 && padding == 1
        ComputeThreads.forEachRange(s.n * s.c, minimumPerPart: max(1, floatsPerPart / max(1, s.spatial))) { planes in
            for nc in planes {
                let p = x + nc * s.spatial, q = y + nc * o.spatial, a = argmax + nc * o.spatial
                let base = Int32(nc * s.spatial)
                if stemPool {
                    maxPool3x3Stride2Plane(p, h: s.h, w: s.w, o, q, argmax: a, base: base)
                } else {
                    for oh in 0..<o.h {
                        for ow in 0..<o.w {
                            maxPoolWindow(p, h: s.h, w: s.w, oh: oh, ow: ow, kernel: kernel, stride: stride, padding: padding,
                                          q + oh * o.w + ow, argmax: a + oh * o.w + ow, base: base)
                        }
                    }
                }
            }
        }
    }

    /// One output of the max-pool of the plane `p` (h × w), checking every tap against the plane's border.
    @inline(__always)
    static func maxPoolWindow(_ p: UnsafePointer<Float>, h: Int, w: Int, oh: Int, ow: Int, kernel: Int, stride: Int,
                              padding: Int, _ y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>, base: Int32) {
        var best = -Float.infinity, bi = -1
        for ki in 0..<kernel {
            let ih = oh * stride - padding + ki
            if ih < 0 || ih >= h { continue }
            for kj in 0..<kernel {
                let iw = ow * stride - padding + kj
                if iw < 0 || iw >= w { continue }
                let v = p[ih * w + iw]
                if v > best || bi < 0 || v.isNaN { best = v; bi = ih * w + iw }
            }
        }
        y.pointee = best
        argmax.pointee = base + Int32(bi)
    }

    /// The 3×3, stride-2, padding-1 max-pool of one plane: eight outputs of a row at a time where their
    /// windows' columns lie inside the plane (the 16 input columns of a row from the block's first window
    /// split into even and odd lanes give taps 0 and 1, the odd lanes of the 16 from one column on give tap 2),
    /// taps taken in the scalar order so ties and NaNs resolve the same way. A row's last outputs, fewer than
    /// eight, are the last eight computed again (the same values); output 0 (its window starts in the padding)
    /// and rows too narrow for a block go through `maxPoolWindow`.
    static func maxPool3x3Stride2Plane(_ p: UnsafePointer<Float>, h: Int, w: Int, _ o: Shape4,
                                       _ y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>, base: Int32) {
        let lanes = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
        // a block of 8 from output ow reads columns 2·ow − 1 ..< 2·ow + 16 of the rows
        @inline(__always) func blockFits(_ ow: Int) -> Bool { ow >= 1 && ow + 8 <= o.w && 2 * ow + 16 <= w }
        for oh in 0..<o.h {
            let rows = max(0, 2 * oh - 1) ..< min(h, 2 * oh + 2)
            let yr = y + oh * o.w, ar = argmax + oh * o.w
            @inline(__always) func block(_ ow: Int) {
                let c0 = 2 * ow - 1
                var best = F8(), index = SIMD8<Int32>()
                @inline(__always) func consider(_ v: F8, _ candidate: SIMD8<Int32>) {
                    let take = (v .> best) .| (v .!= v)
                    best.replace(with: v, where: take)
                    index.replace(with: candidate, where: take)
                }
                for ih in rows {
                    let row = p + ih * w + c0
                    let a = UnsafeRawPointer(row).loadUnaligned(as: SIMD16<Float>.self)
                    let b = UnsafeRawPointer(row + 1).loadUnaligned(as: SIMD16<Float>.self)
                    let rowIndex = SIMD8<Int32>(repeating: base + Int32(ih * w + c0)) &+ lanes
                    if ih == rows.lowerBound {
                        best = a.evenHalf; index = rowIndex       // the first tap is taken whatever it holds
                    } else {
                        consider(a.evenHalf, rowIndex)
                    }
                    consider(a.oddHalf, rowIndex &+ 1)
                    consider(b.oddHalf, rowIndex &+ 2)
                }
                store8(best, yr + ow)
                UnsafeMutableRawPointer(ar + ow).storeBytes(of: index, as: SIMD8<Int32>.self)
            }
            var ow = 0
            while ow < o.w {
                if blockFits(ow) {
                    block(ow)
                    ow += 8
                } else if ow >= 1 && blockFits(o.w - 8) {
                    block(o.w - 8)
                    ow = o.w
                } else {
                    maxPoolWindow(p, h: h, w: w, oh: oh, ow: ow, kernel: 3, stride: 2, padding: 1, yr + ow, argmax: ar + ow, base: base)
                    ow += 1
                }
            }
        }
    }

    /// Max-pool backward: adds each dy (output shape `os`) to the input position that won the forward max.
    /// Parts take whole planes: every maximum lies in its own (sample, channel) plane.
    public static func maxPoolBackwardAdd(_ dy: UnsafePointer<Float>, _ os: Shape4, argmax: UnsafePointer<Int32>,
                                          _ dx: UnsafeMutablePointer<Float>) {
        let plane = os.spatial
        ComputeThreads.forEachRange(os.n * os.c, minimumPerPart: max(1, floatsPerPart / max(1, plane))) { planes in
            for i in (planes.lowerBound * plane) ..< (planes.upperBound * plane) { dx[Int(argmax[i])] += dy[i] }
        }
    }
}

/// Fully connected layer y = x·Wᵀ + b with W stored `out×in` (PyTorch's nn.Linear layout).
public enum LinearKernels {
    public static func forward(_ x: UnsafePointer<Float>, batch: Int, inFeatures: Int, weight: UnsafePointer<Float>,
                               bias: UnsafePointer<Float>?, outFeatures: Int, _ y: UnsafeMutablePointer<Float>) {
        if let bias { for n in 0..<batch { (y + n * outFeatures).update(from: bias, count: outFeatures) } }
        sgemm(transA: false, transB: true, m: batch, n: outFeatures, k: inFeatures, alpha: 1, a: x, lda: inFeatures,
              b: weight, ldb: inFeatures, beta: bias == nil ? 0 : 1, c: y, ldc: outFeatures)
    }

    /// Accumulates dW, db; writes dx (when given).
    public static func backward(_ x: UnsafePointer<Float>, batch: Int, inFeatures: Int, weight: UnsafePointer<Float>,
                                outFeatures: Int, dy: UnsafePointer<Float>, dWeight: UnsafeMutablePointer<Float>?,
                                dBias: UnsafeMutablePointer<Float>?, dx: UnsafeMutablePointer<Float>?) {
        if let dWeight {
            sgemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: batch, alpha: 1, a: dy, lda: outFeatures,
                  b: x, ldb: inFeatures, beta: 1, c: dWeight, ldc: inFeatures)
        }
        if let dBias {
            for n in 0..<batch { for o in 0..<outFeatures { dBias[o] += dy[n * outFeatures + o] } }
        }
        if let dx {
            sgemm(transA: false, transB: false, m: batch, n: inFeatures, k: outFeatures, alpha: 1, a: dy, lda: outFeatures,
                  b: weight, ldb: inFeatures, beta: 0, c: dx, ldc: inFeatures)
        }
    }
}

/// Softmax cross-entropy over logits `N×K` with integer labels.
public enum CrossEntropy {
    /// Result of one evaluation: Σ per-sample losses (float64), number of correct argmax predictions.
    public struct Result { public var lossSum: Double; public var correct: Int }

    /// Computes per-sample losses; writes dlogits = (softmax − onehot)·gradScale when `dLogits` is given.
    /// For the mean over a batch of B, gradScale = 1/B. Labels must be in 0..<K (checked).
    public static func forwardBackward(logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, classes: Int,
                                       gradScale: Float, dLogits: UnsafeMutablePointer<Float>?) -> Result {
        var lossSum: Double = 0
        var correct = 0
        for n in 0..<batch {
            let row = logits + n * classes
            let label = Int(labels[n])
            precondition(label >= 0 && label < classes, "label \(label) out of range 0..<\(classes)")
            var mx = row[0], arg = 0
            for k in 1..<classes where row[k] > mx { mx = row[k]; arg = k }
            if arg == label { correct += 1 }
            var z: Double = 0
            for k in 0..<classes { z += Foundation.exp(Double(row[k] - mx)) }
            let logZ = Foundation.log(z) + Double(mx)
            lossSum += logZ - Double(row[label])
            if let dLogits {
                let d = dLogits + n * classes
                for k in 0..<classes {
                    let p = Float(Foundation.exp(Double(row[k]) - logZ))
                    d[k] = (p - (k == label ? 1 : 0)) * gradScale
                }
            }
        }
        return Result(lossSum: lossSum, correct: correct)
    }
}
