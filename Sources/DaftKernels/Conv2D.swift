import Foundation

/// Geometry of a 2-D convolution (any kernel size, stride and zero padding), weights `cout×cin×kh×kw`.
public struct ConvGeometry: Equatable {
    public var cin: Int, cout: Int, kh: Int, kw: Int
    public var strideH: Int, strideW: Int, padH: Int, padW: Int

    public init(cin: Int, cout: Int, kernel: Int, stride: Int = 1, padding: Int = 0) {
        self.init(cin: cin, cout: cout, kh: kernel, kw: kernel, strideH: stride, strideW: stride, padH: padding, padW: padding)
    }

    public init(cin: Int, cout: Int, kh: Int, kw: Int, strideH: Int, strideW: Int, padH: Int, padW: Int) {
        precondition(kh > 0 && kw > 0 && strideH > 0 && strideW > 0 && padH >= 0 && padW >= 0)
        self.cin = cin; self.cout = cout; self.kh = kh; self.kw = kw
        self.strideH = strideH; self.strideW = strideW; self.padH = padH; self.padW = padW
    }

    public var weightCount: Int { cout * cin * kh * kw }
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    public var patchSize: Int { cin * kh * kw }

    public func outputShape(_ x: Shape4) -> Shape4 {
        Shape4(x.n, cout, (x.h + 2 * padH - kh) / strideH + 1, (x.w + 2 * padW - kw) / strideW + 1)
    }

    /// Multiply-accumulates of one forward pass over `x`.
    public func forwardMACs(_ x: Shape4) -> Int { outputShape(x).count * patchSize }
}

/// Scratch memory shared by every convolution of a model (one training step runs one layer at a time).
public final class ConvWorkspace {
    /// Upper bound on the im2col matrix, in floats; the batch is processed in sample chunks below it.
    public var maxColumnFloats: Int
    let col = FloatBuffer()
    let gemmOut = FloatBuffer()

    public init(maxColumnFloats: Int = 8 << 20) { self.maxColumnFloats = maxColumnFloats }

    func samplesPerChunk(_ g: ConvGeometry, outSpatial: Int, batch: Int) -> Int {
        let perSample = max(1, g.patchSize * outSpatial)
        return max(1, min(batch, maxColumnFloats / perSample))
    }
}

/// Convolution kernels: im2col over a chunk of samples, one OpenBLAS `sgemm` per chunk.
///
/// The im2col matrix has one row per (ci, ki, kj) and one column per output pixel of every sample in the
/// chunk, so a whole chunk is one large GEMM `W[cout×K] · col[K×(n·Ho·Wo)]`.
public enum Conv2D {
    /// Lays the patches of samples `n0 ..< n0+nc` of `x` out as columns of `col` (row stride `nc·Ho·Wo`).
    public static func im2col(_ x: UnsafePointer<Float>, _ xs: Shape4, _ g: ConvGeometry, n0: Int, nc: Int,
                              _ col: UnsafeMutablePointer<Float>) {
        let ys = g.outputShape(xs)
        let ho = ys.h, wo = ys.w, hw = xs.h * xs.w
        let ld = nc * ho * wo
        for ci in 0..<g.cin {
            for ki in 0..<g.kh {
                for kj in 0..<g.kw {
                    let row = col + ((ci * g.kh + ki) * g.kw + kj) * ld
                    let lo = g.strideW == 1 ? max(0, min(wo, g.padW - kj)) : 0
                    let hi = g.strideW == 1 ? max(lo, min(wo, xs.w + g.padW - kj)) : 0
                    for s in 0..<nc {
                        let src = x + ((n0 + s) * g.cin + ci) * hw
                        for oh in 0..<ho {
                            let dst = row + (s * ho + oh) * wo
                            let ih = oh * g.strideH - g.padH + ki
                            if ih < 0 || ih >= xs.h {
                                dst.update(repeating: 0, count: wo)
                                continue
                            }
                            let srow = src + ih * xs.w
                            if g.strideW == 1 {
                                if lo > 0 { dst.update(repeating: 0, count: lo) }
                                if hi > lo { dst.advanced(by: lo).update(from: srow + (lo - g.padW + kj), count: hi - lo) }
                                if hi < wo { dst.advanced(by: hi).update(repeating: 0, count: wo - hi) }
                            } else {
                                var iw = -g.padW + kj
                                for ow in 0..<wo {
                                    dst[ow] = (iw >= 0 && iw < xs.w) ? srow[iw] : 0
                                    iw += g.strideW
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds the columns of `col` back into the image gradient `dx` (the adjoint of `im2col`).
    public static func col2imAdd(_ col: UnsafePointer<Float>, _ xs: Shape4, _ g: ConvGeometry, n0: Int, nc: Int,
                                 _ dx: UnsafeMutablePointer<Float>) {
        let ys = g.outputShape(xs)
        let ho = ys.h, wo = ys.w, hw = xs.h * xs.w
        let ld = nc * ho * wo
        for ci in 0..<g.cin {
            for ki in 0..<g.kh {
                for kj in 0..<g.kw {
                    let row = col + ((ci * g.kh + ki) * g.kw + kj) * ld
                    let lo = g.strideW == 1 ? max(0, min(wo, g.padW - kj)) : 0
                    let hi = g.strideW == 1 ? max(lo, min(wo, xs.w + g.padW - kj)) : 0
                    for s in 0..<nc {
                        let dst = dx + ((n0 + s) * g.cin + ci) * hw
                        for oh in 0..<ho {
                            let ih = oh * g.strideH - g.padH + ki
                            if ih < 0 || ih >= xs.h { continue }
                            let src = row + (s * ho + oh) * wo
                            let drow = dst + ih * xs.w
                            if g.strideW == 1 {
                                let off = -g.padW + kj
                                for ow in lo..<hi { drow[ow + off] += src[ow] }
                            } else {
                                var iw = -g.padW + kj
                                for ow in 0..<wo {
                                    if iw >= 0 && iw < xs.w { drow[iw] += src[ow] }
                                    iw += g.strideW
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// y = conv(x, weight) (+ bias). `y` is NCHW of `g.outputShape(xs)`.
    public static func forward(_ x: UnsafePointer<Float>, _ xs: Shape4, weight: UnsafePointer<Float>,
                               bias: UnsafePointer<Float>?, _ g: ConvGeometry, _ y: UnsafeMutablePointer<Float>,
                               workspace ws: ConvWorkspace) {
        precondition(xs.c == g.cin, "conv: input has \(xs.c) channels, weight expects \(g.cin)")
        let ys = g.outputShape(xs)
        let osp = ys.spatial, K = g.patchSize
        let chunk = ws.samplesPerChunk(g, outSpatial: osp, batch: xs.n)
        var n0 = 0
        while n0 < xs.n {
            let nc = min(chunk, xs.n - n0)
            let ld = nc * osp
            let col = ws.col.reserve(K * ld)
            let out = ws.gemmOut.reserve(g.cout * ld)
            im2col(x, xs, g, n0: n0, nc: nc, col)
            sgemm(transA: false, transB: false, m: g.cout, n: ld, k: K, alpha: 1, a: weight, lda: K,
                  b: col, ldb: ld, beta: 0, c: out, ldc: ld)
            // channel-major GEMM output -> NCHW
            for co in 0..<g.cout {
                let b = bias?[co] ?? 0
                for s in 0..<nc {
                    let src = out + co * ld + s * osp
                    let dst = y + ((n0 + s) * g.cout + co) * osp
                    if b == 0 { dst.update(from: src, count: osp) } else { for i in 0..<osp { dst[i] = src[i] + b } }
                }
            }
            n0 += nc
        }
    }

    /// Backward: accumulates dWeight (and dBias) from `dy`, and adds dx into `dx` when it is given.
    public static func backward(_ x: UnsafePointer<Float>, _ xs: Shape4, weight: UnsafePointer<Float>, _ g: ConvGeometry,
                                dy: UnsafePointer<Float>, dWeight: UnsafeMutablePointer<Float>?,
                                dBias: UnsafeMutablePointer<Float>?, dx: UnsafeMutablePointer<Float>?,
                                workspace ws: ConvWorkspace) {
        let ys = g.outputShape(xs)
        let osp = ys.spatial, K = g.patchSize
        let chunk = ws.samplesPerChunk(g, outSpatial: osp, batch: xs.n)
        var n0 = 0
        while n0 < xs.n {
            let nc = min(chunk, xs.n - n0)
            let ld = nc * osp
            let col = ws.col.reserve(K * ld)
            let dyc = ws.gemmOut.reserve(g.cout * ld)
            for co in 0..<g.cout {
                for s in 0..<nc {
                    (dyc + co * ld + s * osp).update(from: dy + ((n0 + s) * g.cout + co) * osp, count: osp)
                }
            }
            if let dBias {
                for co in 0..<g.cout {
                    var acc: Float = 0
                    let r = dyc + co * ld
                    for i in 0..<ld { acc += r[i] }
                    dBias[co] += acc
                }
            }
            if let dWeight {
                im2col(x, xs, g, n0: n0, nc: nc, col)
                sgemm(transA: false, transB: true, m: g.cout, n: K, k: ld, alpha: 1, a: dyc, lda: ld,
                      b: col, ldb: ld, beta: 1, c: dWeight, ldc: K)
            }
            if let dx {
                sgemm(transA: true, transB: false, m: K, n: ld, k: g.cout, alpha: 1, a: weight, lda: K,
                      b: dyc, ldb: ld, beta: 0, c: col, ldc: ld)
                col2imAdd(col, xs, g, n0: n0, nc: nc, dx)
            }
            n0 += nc
        }
    }
}
