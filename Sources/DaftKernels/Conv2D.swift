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

/// One thread's scratch memory for the convolution kernels (im2col columns, GEMM outputs, padded planes,
/// weight-gradient partial sums). `ConvWorkspace` keeps one per `ComputeThreads` part.
final class ConvScratch {
    let col = FloatBuffer()
    let gemmOut = FloatBuffer()
    let dxOut = FloatBuffer()
    let padded = FloatBuffer()
    let paddedGrad = FloatBuffer()
    let weightGradAcc = FloatBuffer()
    /// A part's own weight gradient (parts after the first), added into the layer's in part order.
    let weightGradPart = FloatBuffer()
}

/// Scratch memory shared by every convolution of a model (one training step runs one layer at a time).
public final class ConvWorkspace {
    /// Upper bound on the im2col matrix, in floats; the batch is processed in sample chunks below it.
    public var maxColumnFloats: Int
    /// Preferred size of the im2col matrix of one chunk, in floats: small enough that the matrix stays in
    /// the core's L2 cache between im2col, OpenBLAS's packing and the kernel (the chunk is at least one sample).
    public var cacheColumnFloats: Int
    /// Fewest GEMM columns (output pixels of the chunk's samples) a chunk is given even when its im2col matrix
    /// outgrows `cacheColumnFloats` (never beyond `maxColumnFloats`): one sample of a 7×7 plane is a 49-column
    /// product, which OpenBLAS ran at about 70% of its square-matrix rate here, four samples (196 columns) at
    /// 85–90% (ResNet-18 layer4, docs/benchmarks.md).
    public var minimumColumns: Int
    /// Weights rearranged once per call and read by every part: flipped-transposed, or packed for the direct kernels.
    let flipped = FloatBuffer()
    let directWeights = FloatBuffer()
    /// Per-part scratch, grown to the largest number of parts asked for.
    private var scratches: [ConvScratch] = [ConvScratch()]
    /// Which 3×3, stride-1, padding-1 convolutions use the direct kernels instead of im2col + `sgemm`.
    public var directPolicy: DirectConvolutionPolicy
    /// Which family of direct kernels runs those convolutions: `DirectKernelISA.preferred` (AVX-512 when the
    /// CPU has it and DAFT_NO_AVX512=1 is not set) unless set otherwise; `.avx512` falls back to `.avx2` on
    /// CPUs without AVX-512.
    public var directKernels: DirectKernelISA

    public init(maxColumnFloats: Int = 8 << 20, cacheColumnFloats: Int = 192 << 10, minimumColumns: Int = 196,
                directPolicy: DirectConvolutionPolicy = .automatic, directKernels: DirectKernelISA = .preferred) {
        self.maxColumnFloats = maxColumnFloats
        self.cacheColumnFloats = cacheColumnFloats
        self.minimumColumns = minimumColumns
        self.directPolicy = directPolicy
        self.directKernels = directKernels
    }

    /// The scratch of parts 0 ..< parts (created on first use, before the parts run concurrently).
    func scratch(parts: Int) -> [ConvScratch] {
        while scratches.count < parts { scratches.append(ConvScratch()) }
        return scratches
    }

    /// Samples per im2col chunk: as many as keep the matrix within `cacheColumnFloats`, or enough for
    /// `minimumColumns` when that is more; never over `maxColumnFloats` or the batch, and at least one.
    func samplesPerChunk(patch: Int, outSpatial: Int, batch: Int) -> Int {
        let perSample = max(1, patch * outSpatial)
        let inCache = min(maxColumnFloats, cacheColumnFloats) / perSample
        let wideEnough = (minimumColumns + outSpatial - 1) / max(1, outSpatial)
        return max(1, min(batch, maxColumnFloats / perSample, max(inCache, wideEnough)))
    }

    func samplesPerChunk(_ g: ConvGeometry, outSpatial: Int, batch: Int) -> Int {
        samplesPerChunk(patch: g.patchSize, outSpatial: outSpatial, batch: batch)
    }

    /// Output rows per im2col tile of one sample of a convolution that is not stride-1 "same" (the 224-px
    /// stem, the stride-2 layers) when that sample's matrix outgrows `cacheColumnFloats`: the bounds of
    /// `samplesPerChunk` with rows of `outW` pixels in place of samples; `outH` (one tile) when the sample
    /// fits. Stride-1 "same" convolutions keep whole samples: their im2col is one long copy per row of the
    /// matrix, and tiles of them measured slower (ResNet-18's 3×3 stride-1 layers 89–92% → 83–88% of the
    /// sgemm rate; the stem 59–66% → 66–72%; docs/benchmarks.md).
    func outputRowsPerTile(_ g: ConvGeometry, patch: Int, outH: Int, outW: Int) -> Int {
        if g.isSameStride1 || g.isPointwise { return outH }
        return samplesPerChunk(patch: patch, outSpatial: outW, batch: outH)
    }
}

extension ConvGeometry {
    /// A 1×1, stride-1, unpadded convolution: its im2col matrix of one sample is the sample itself.
    var isPointwise: Bool { kh == 1 && kw == 1 && strideH == 1 && strideW == 1 && padH == 0 && padW == 0 }

    /// Stride 1, odd kernel, padding (k−1)/2: the output has the input's size and the input gradient is the
    /// same kind of convolution of dy with the spatially flipped, transposed kernel.
    var isSameStride1: Bool {
        strideH == 1 && strideW == 1 && kh % 2 == 1 && kw % 2 == 1 && padH == kh / 2 && padW == kw / 2
    }

    /// The geometry of that input-gradient convolution (cout input channels, cin output channels).
    var transposedSame: ConvGeometry {
        ConvGeometry(cin: cout, cout: cin, kh: kh, kw: kw, strideH: 1, strideW: 1, padH: padH, padW: padW)
    }
}

/// Convolution kernels: im2col over a chunk of samples, one OpenBLAS `sgemm` per chunk.
///
/// The im2col matrix has one row per (ci, ki, kj) and one column per output pixel of every sample in the
/// chunk, so a whole chunk is one GEMM `W[cout×K] · col[K×(n·Ho·Wo)]`. Chunks are sized to stay in L2
/// (`ConvWorkspace.cacheColumnFloats`); a one-sample chunk writes and reads NCHW directly, larger chunks go
/// through a channel-major buffer. For stride-1 "same" convolutions the input gradient is computed as the
/// convolution of dy with the flipped, transposed kernel (im2col of dy + GEMM) instead of GEMM + col2im.
/// 3×3, stride-1, padding-1 convolutions selected by `ConvWorkspace.directPolicy` skip im2col and OpenBLAS
/// altogether and run the direct register-tiled kernels of `Direct3x3.swift` (forward, dW, dx).
public enum Conv2D {
    /// Lays the patches of samples `n0 ..< n0+nc` of `x` out as columns of `col` (row stride `nc·Ho·Wo`).
    public static func im2col(_ x: UnsafePointer<Float>, _ xs: Shape4, _ g: ConvGeometry, n0: Int, nc: Int,
                              _ col: UnsafeMutablePointer<Float>) {
        let ys = g.outputShape(xs)
        if g.strideH == 1 && g.strideW == 1 && ys.h == xs.h && ys.w == xs.w {
            im2colSame(x, xs, g, n0: n0, nc: nc, col)
        } else {
            im2colRows(x, xs, g, n0: n0, nc: nc, rows: 0..<ys.h, col)
        }
    }

    /// im2col of the output rows `rows` only: the patches of those rows of samples `n0 ..< n0+nc`, one column
    /// per output pixel (row stride `nc·rows.count·Wo`). Any geometry.
    public static func im2colRows(_ x: UnsafePointer<Float>, _ xs: Shape4, _ g: ConvGeometry, n0: Int, nc: Int,
                                  rows: Range<Int>, _ col: UnsafeMutablePointer<Float>) {
        let wo = g.outputShape(xs).w, hw = xs.h * xs.w, th = rows.count
        let ld = nc * th * wo
        for ci in 0..<g.cin {
            for ki in 0..<g.kh {
                for kj in 0..<g.kw {
                    let row = col + ((ci * g.kh + ki) * g.kw + kj) * ld
                    let inside = rowBounds(width: xs.w, offset: kj - g.padW, stride: g.strideW, count: wo)
                    for s in 0..<nc {
                        let src = x + ((n0 + s) * g.cin + ci) * hw
                        for t in 0..<th {
                            let dst = row + (s * th + t) * wo
                            let ih = (rows.lowerBound + t) * g.strideH - g.padH + ki
                            if ih < 0 || ih >= xs.h {
                                Vec.zero(dst, wo)
                                continue
                            }
                            let srow = src + ih * xs.w
                            if g.strideW == 1 {
                                for i in 0..<inside.lowerBound { dst[i] = 0 }
                                Vec.copy(srow + (inside.lowerBound - g.padW + kj), dst + inside.lowerBound, inside.count)
                                for i in inside.upperBound..<wo { dst[i] = 0 }
                            } else {
                                gatherStrided(srow, width: xs.w, offset: kj - g.padW, stride: g.strideW, dst, wo, inside: inside)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The outputs `ow` of a row of `count` whose input `ow·stride + offset` lies inside `0 ..< width`.
    @inline(__always)
    static func rowBounds(width: Int, offset: Int, stride: Int, count: Int) -> Range<Int> {
        let lo = offset >= 0 ? 0 : min(count, (stride - 1 - offset) / stride)
        let hi = width - 1 - offset < 0 ? lo : max(lo, min(count, (width - 1 - offset) / stride + 1))
        return lo..<hi
    }

    /// dst[ow] = row[ow·stride + offset] where that is inside 0 ..< width, else 0; the in-row outputs `inside`
    /// (`rowBounds`) are computed once per (ci, ki, kj) row of the im2col matrix, not per image row. Stride 2
    /// takes the even lanes of 16-float loads that stay inside the row.
    @inline(__always)
    static func gatherStrided(_ row: UnsafePointer<Float>, width: Int, offset: Int, stride: Int,
                              _ dst: UnsafeMutablePointer<Float>, _ count: Int, inside: Range<Int>) {
        let lo = inside.lowerBound, hi = inside.upperBound
        for i in 0..<lo { dst[i] = 0 }
        var ow = lo
        if stride == 2 {
            while ow &+ 8 <= hi && 2 &* ow &+ offset &+ 16 <= width {
                let v = UnsafeRawPointer(row + (2 &* ow &+ offset)).loadUnaligned(as: SIMD16<Float>.self)
                store8(v.evenHalf, dst + ow)
                ow &+= 8
            }
        }
        while ow < hi { dst[ow] = row[ow &* stride &+ offset]; ow &+= 1 }
        for i in hi..<count { dst[i] = 0 }
    }

    /// im2col of a stride-1 convolution whose output has the input's size: every (ci, ki, kj) row of a
    /// sample is the input plane shifted by a constant offset, so it is one long copy plus zeroed borders.
    static func im2colSame(_ x: UnsafePointer<Float>, _ xs: Shape4, _ g: ConvGeometry, n0: Int, nc: Int,
                           _ col: UnsafeMutablePointer<Float>) {
        let H = xs.h, W = xs.w, hw = H * W
        let ld = nc * hw
        for ci in 0..<g.cin {
            for ki in 0..<g.kh {
                let dh = ki - g.padH
                let ohLo = max(0, min(H, -dh)), ohHi = max(ohLo, min(H, H - dh))
                for kj in 0..<g.kw {
                    let dw = kj - g.padW
                    let left = min(W, max(0, -dw)), right = min(W, max(0, dw))
                    let row = col + ((ci * g.kh + ki) * g.kw + kj) * ld
                    for s in 0..<nc {
                        let src = x + ((n0 + s) * g.cin + ci) * hw
                        let dst = row + s * hw
                        Vec.zero(dst, ohLo * W)
                        Vec.zero(dst + ohHi * W, (H - ohHi) * W)
                        if ohHi > ohLo {
                            let q0 = ohLo * W + left, q1 = ohHi * W - right
                            if q1 > q0 { Vec.copy(src + (q0 + dh * W + dw), dst + q0, q1 - q0) }
                            if left > 0 || right > 0 {
                                for oh in ohLo..<ohHi {
                                    let r = dst + oh * W
                                    for i in 0..<left { r[i] = 0 }
                                    for i in (W - right)..<W { r[i] = 0 }
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
        col2imAddRows(col, xs, g, n0: n0, nc: nc, rows: 0..<g.outputShape(xs).h, dx)
    }

    /// The adjoint of `im2colRows`: adds the columns of output rows `rows` back into `dx`.
    public static func col2imAddRows(_ col: UnsafePointer<Float>, _ xs: Shape4, _ g: ConvGeometry, n0: Int, nc: Int,
                                     rows: Range<Int>, _ dx: UnsafeMutablePointer<Float>) {
        let wo = g.outputShape(xs).w, hw = xs.h * xs.w, th = rows.count
        let ld = nc * th * wo
        for ci in 0..<g.cin {
            for ki in 0..<g.kh {
                for kj in 0..<g.kw {
                    let row = col + ((ci * g.kh + ki) * g.kw + kj) * ld
                    let offset = kj - g.padW
                    let inside = rowBounds(width: xs.w, offset: offset, stride: g.strideW, count: wo)
                    for s in 0..<nc {
                        let dst = dx + ((n0 + s) * g.cin + ci) * hw
                        for t in 0..<th {
                            let ih = (rows.lowerBound + t) * g.strideH - g.padH + ki
                            if ih < 0 || ih >= xs.h { continue }
                            let src = row + (s * th + t) * wo
                            let drow = dst + ih * xs.w
                            if g.strideW == 1 {
                                Vec.addInPlace(src + inside.lowerBound, drow + (inside.lowerBound + offset), inside.count)
                            } else {
                                for ow in inside { drow[ow &* g.strideW &+ offset] += src[ow] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The weight of the input-gradient convolution of a stride-1 "same" convolution:
    /// `wt[ci, co, ki, kj] = w[co, ci, kh−1−ki, kw−1−kj]` (a `cin × cout·kh·kw` matrix).
    public static func flipTransposed(_ w: UnsafePointer<Float>, _ g: ConvGeometry, _ wt: UnsafeMutablePointer<Float>) {
        let taps = g.kh * g.kw
        for co in 0..<g.cout {
            for ci in 0..<g.cin {
                let src = w + (co * g.cin + ci) * taps, dst = wt + (ci * g.cout + co) * taps
                if taps == 9 {      // 3×3: taps 8…1 are one reversed 8-float load, tap 0 goes last
                    let v = load8(src + 1)
                    store8(F8(v[7], v[6], v[5], v[4], v[3], v[2], v[1], v[0]), dst)
                    dst[8] = src[0]
                } else {
                    for t in 0..<taps { dst[t] = src[taps - 1 - t] }
                }
            }
        }
    }

    /// The im2col matrix of samples `n0 ..< n0+nc` in `scratch` — or, for a one-sample chunk of a 1×1 stride-1
    /// convolution, the sample itself.
    static func columns(_ x: UnsafePointer<Float>, _ xs: Shape4, _ g: ConvGeometry, n0: Int, nc: Int,
                        _ scratch: ConvScratch) -> UnsafePointer<Float> {
        if nc == 1 && g.isPointwise { return x + n0 * g.cin * xs.spatial }
        let col = scratch.col.reserve(g.patchSize * nc * g.outputShape(xs).spatial)
        im2col(x, xs, g, n0: n0, nc: nc, col)
        return UnsafePointer(col)
    }

    /// w (m × k) · col (k × nc·spatial) for the chunk of samples n0 ..< n0+nc, stored into the NCHW tensor `nchw`
    /// (m channels of `spatial` pixels per sample): written, or added when `add`. A one-sample chunk is one GEMM
    /// straight into place; a larger chunk's channel-major result goes through `scratch`.
    static func gemmIntoNCHW(_ w: UnsafePointer<Float>, m: Int, k: Int, _ col: UnsafePointer<Float>, n0: Int, nc: Int,
                             spatial: Int, add: Bool, scratch: FloatBuffer, _ nchw: UnsafeMutablePointer<Float>) {
        if nc == 1 {
            sgemm(transA: false, transB: false, m: m, n: spatial, k: k, alpha: 1, a: w, lda: k,
                  b: col, ldb: spatial, beta: add ? 1 : 0, c: nchw + n0 * m * spatial, ldc: spatial)
            return
        }
        let ld = nc * spatial
        let out = scratch.reserve(m * ld)
        sgemm(transA: false, transB: false, m: m, n: ld, k: k, alpha: 1, a: w, lda: k, b: col, ldb: ld, beta: 0, c: out, ldc: ld)
        for j in 0..<nc {
            for c in 0..<m {
                let src = out + c * ld + j * spatial, dst = nchw + ((n0 + j) * m + c) * spatial
                if add { Vec.addInPlace(src, dst, spatial) } else { Vec.copy(src, dst, spatial) }
            }
        }
    }

    /// dBias[c] += Σ over samples and pixels of dy (shape `ys`) in channel c.
    static func accumulateBiasGradient(_ dy: UnsafePointer<Float>, _ ys: Shape4, _ dBias: UnsafeMutablePointer<Float>) {
        for co in 0..<ys.c {
            var sum: Float = 0
            for n in 0..<ys.n { sum += Vec.sum(dy + (n * ys.c + co) * ys.spatial, ys.spatial) }
            dBias[co] += sum
        }
    }

    /// The number of chunks of `chunk` samples a batch of `n` is cut into.
    static func chunkCount(_ n: Int, _ chunk: Int) -> Int { (n + chunk - 1) / chunk }

    /// The samples of `ComputeThreads` part `part`: whole chunks of the one-thread chunking (chunk k is samples
    /// k·chunk ..< (k+1)·chunk), so every GEMM sees the same columns whatever the thread count.
    static func chunkedSamples(_ part: Int, of parts: Int, batch n: Int, chunk: Int) -> Range<Int> {
        let chunks = ComputeThreads.range(part, of: parts, total: chunkCount(n, chunk))
        return min(n, chunks.lowerBound * chunk) ..< min(n, chunks.upperBound * chunk)
    }

    /// y = conv(x, weight) (+ bias). `y` is NCHW of `g.outputShape(xs)`.
    public static func forward(_ x: UnsafePointer<Float>, _ xs: Shape4, weight: UnsafePointer<Float>,
                               bias: UnsafePointer<Float>?, _ g: ConvGeometry, _ y: UnsafeMutablePointer<Float>,
                               workspace ws: ConvWorkspace) {
        precondition(xs.c == g.cin, "conv: input has \(xs.c) channels, weight expects \(g.cin)")
        if usesDirect3x3(g, xs, policy: ws.directPolicy, kernels: ws.directKernels) {
            direct3x3Forward(x, xs, weight: weight, bias: bias, g, y, workspace: ws)
            return
        }
        let ys = g.outputShape(xs)
        let osp = ys.spatial, K = g.patchSize
        let chunk = ws.samplesPerChunk(g, outSpatial: osp, batch: xs.n)
        let rows = chunk == 1 ? ws.outputRowsPerTile(g, patch: K, outH: ys.h, outW: ys.w) : ys.h
        let parts = ComputeThreads.parts(chunkCount(xs.n, chunk))
        let scratch = ws.scratch(parts: parts)
        ComputeThreads.run(parts) { part in
            let s = scratch[part], samples = chunkedSamples(part, of: parts, batch: xs.n, chunk: chunk)
            var n0 = samples.lowerBound
            while n0 < samples.upperBound {
                let nc = min(chunk, samples.upperBound - n0)
                if rows < ys.h {
                    // one sample in tiles of output rows: each tile's im2col matrix stays in L2, and its GEMM
                    // writes those rows of every output plane in place (ldc = the plane)
                    for tile in stride(from: 0, to: ys.h, by: rows) {
                        let tileRows = tile ..< min(ys.h, tile + rows), cols = tileRows.count * ys.w
                        let col = s.col.reserve(K * cols)
                        im2colRows(x, xs, g, n0: n0, nc: 1, rows: tileRows, col)
                        sgemm(transA: false, transB: false, m: g.cout, n: cols, k: K, alpha: 1, a: weight, lda: K,
                              b: col, ldb: cols, beta: 0, c: y + n0 * g.cout * osp + tile * ys.w, ldc: osp)
                    }
                } else {
                    let b = columns(x, xs, g, n0: n0, nc: nc, s)
                    gemmIntoNCHW(weight, m: g.cout, k: K, b, n0: n0, nc: nc, spatial: osp, add: false, scratch: s.gemmOut, y)
                }
                if let bias {
                    for j in n0..<(n0 + nc) {
                        for co in 0..<g.cout { let p = y + (j * g.cout + co) * osp; Vec.copyAddingScalar(p, bias[co], p, osp) }
                    }
                }
                n0 += nc
            }
        }
    }

    /// The backward of one sample in tiles of `rows` output rows (`outputRowsPerTile`, never a stride-1 "same"
    /// convolution): per tile, dW += dy rows · im2col(x rows)ᵀ and dx += col2im(Wᵀ · dy rows), dy's rows read in
    /// place (lda = the plane). Tiles next to each other add into the input rows they share.
    static func backwardRowTiles(_ x: UnsafePointer<Float>, _ xs: Shape4, weight: UnsafePointer<Float>, _ g: ConvGeometry,
                                 rows: Int, sample n: Int, dy: UnsafePointer<Float>, dW: UnsafeMutablePointer<Float>?,
                                 dx: UnsafeMutablePointer<Float>?, _ s: ConvScratch) {
        let ys = g.outputShape(xs), osp = ys.spatial, K = g.patchSize
        for tile in stride(from: 0, to: ys.h, by: rows) {
            let tileRows = tile ..< min(ys.h, tile + rows), cols = tileRows.count * ys.w
            let dyTile = dy + n * g.cout * osp + tile * ys.w
            let col = s.col.reserve(K * cols)
            if let dW {
                im2colRows(x, xs, g, n0: n, nc: 1, rows: tileRows, col)
                sgemm(transA: false, transB: true, m: g.cout, n: K, k: cols, alpha: 1, a: dyTile, lda: osp,
                      b: col, ldb: cols, beta: 1, c: dW, ldc: K)
            }
            if let dx {
                sgemm(transA: true, transB: false, m: K, n: cols, k: g.cout, alpha: 1, a: weight, lda: K,
                      b: dyTile, ldb: osp, beta: 0, c: col, ldc: cols)
                col2imAddRows(col, xs, g, n0: n, nc: 1, rows: tileRows, dx)
            }
        }
    }

    /// Backward: accumulates dWeight (and dBias) from `dy`, and adds dx into `dx` when it is given — or, with
    /// `overwritingDx`, writes it there (what `dx` held before is never read: no zeroing pass before, no read of
    /// it in the GEMM; the col2im paths zero each chunk's samples just before adding into them).
    public static func backward(_ x: UnsafePointer<Float>, _ xs: Shape4, weight: UnsafePointer<Float>, _ g: ConvGeometry,
                                dy: UnsafePointer<Float>, dWeight: UnsafeMutablePointer<Float>?,
                                dBias: UnsafeMutablePointer<Float>?, dx: UnsafeMutablePointer<Float>?,
                                overwritingDx: Bool = false, workspace ws: ConvWorkspace) {
        if usesDirect3x3(g, xs, policy: ws.directPolicy, kernels: ws.directKernels) {
            direct3x3Backward(x, xs, weight: weight, g, dy: dy, dWeight: dWeight, dBias: dBias, dx: dx,
                              overwritingDx: overwritingDx, workspace: ws)
            return
        }
        let ys = g.outputShape(xs)
        let osp = ys.spatial, K = g.patchSize, hw = xs.spatial
        if let dBias { accumulateBiasGradient(dy, ys, dBias) }
        if dWeight == nil && dx == nil { return }
        let viaTransposed = dx != nil && g.isSameStride1
        let tg = g.transposedSame
        let Kt = viaTransposed ? tg.patchSize : 0
        if viaTransposed { flipTransposed(weight, g, ws.flipped.reserve(g.weightCount)) }
        let wt = UnsafePointer(ws.flipped.pointer)
        let chunk = ws.samplesPerChunk(patch: max(K, Kt), outSpatial: osp, batch: xs.n)
        let rows = chunk == 1 ? ws.outputRowsPerTile(g, patch: K, outH: ys.h, outW: ys.w) : ys.h
        let parts = ComputeThreads.parts(chunkCount(xs.n, chunk))
        let scratch = ws.scratch(parts: parts)
        ComputeThreads.run(parts) { part in
            let s = scratch[part], samples = chunkedSamples(part, of: parts, batch: xs.n, chunk: chunk)
            // the first part adds into the layer's gradient, the others into their own (added below)
            let dW: UnsafeMutablePointer<Float>?
            if let dWeight, part > 0 {
                dW = s.weightGradPart.reserve(g.weightCount)
                Vec.zero(dW!, g.weightCount)
            } else {
                dW = dWeight
            }
            var n0 = samples.lowerBound
            while n0 < samples.upperBound {
                let nc = min(chunk, samples.upperBound - n0)
                if rows < ys.h {
                    if let dx, overwritingDx { Vec.zero(dx + n0 * g.cin * hw, g.cin * hw) }
                    backwardRowTiles(x, xs, weight: weight, g, rows: rows, sample: n0, dy: dy, dW: dW, dx: dx, s)
                    n0 += nc
                    continue
                }
                let ld = nc * osp
                // dy of the chunk as a channel-major cout × ld matrix
                let dyc: UnsafePointer<Float>
                if nc == 1 {
                    dyc = dy + n0 * g.cout * osp
                } else {
                    let buf = s.gemmOut.reserve(g.cout * ld)
                    for j in 0..<nc {
                        for co in 0..<g.cout {
                            Vec.copy(dy + ((n0 + j) * g.cout + co) * osp, buf + co * ld + j * osp, osp)
                        }
                    }
                    dyc = UnsafePointer(buf)
                }
                if let dW {
                    let b = columns(x, xs, g, n0: n0, nc: nc, s)
                    sgemm(transA: false, transB: true, m: g.cout, n: K, k: ld, alpha: 1, a: dyc, lda: ld,
                          b: b, ldb: ld, beta: 1, c: dW, ldc: K)
                }
                if let dx {
                    if viaTransposed {
                        // dx = conv(dy, flipped Wᵀ): im2col of dy (shape ys) with the transposed geometry
                        let col = s.col.reserve(Kt * ld)
                        im2col(dy, ys, tg, n0: n0, nc: nc, col)
                        gemmIntoNCHW(wt, m: g.cin, k: Kt, col, n0: n0, nc: nc, spatial: hw, add: !overwritingDx,
                                     scratch: s.dxOut, dx)
                    } else if nc == 1 && g.isPointwise {
                        sgemm(transA: true, transB: false, m: g.cin, n: hw, k: g.cout, alpha: 1, a: weight, lda: K,
                              b: dyc, ldb: ld, beta: overwritingDx ? 0 : 1, c: dx + n0 * g.cin * hw, ldc: hw)
                    } else {
                        let col = s.col.reserve(K * ld)
                        sgemm(transA: true, transB: false, m: K, n: ld, k: g.cout, alpha: 1, a: weight, lda: K,
                              b: dyc, ldb: ld, beta: 0, c: col, ldc: ld)
                        if overwritingDx { Vec.zero(dx + n0 * g.cin * hw, nc * g.cin * hw) }
                        col2imAdd(col, xs, g, n0: n0, nc: nc, dx)
                    }
                }
                n0 += nc
            }
        }
        if let dWeight {      // the parts' partial sums in part order, each addition split over the threads
            for part in 1..<parts { Elementwise.accumulate(scratch[part].weightGradPart.pointer, into: dWeight, count: g.weightCount) }
        }
    }
}
