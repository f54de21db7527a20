import XCTest
@testable import DaftKernels

/// Gradient checks for every kernel.
///
/// Each test (1) compares the float32 kernel's forward with a float64 re-implementation written here from the
/// definition, and (2) compares the kernel's backward with central differences (step 1e-5 on float64 copies)
/// of the float64 forward of the scalar loss L = Σ r·y for a fixed random r. The forward check pins the
/// float64 function to the kernel; the difference check then proves the backward is its derivative. With
/// h = 1e-5 in float64 the truncation (O(h²)) and rounding (≈1e-16/h) errors are ≈1e-10; the tolerances
/// (1e-4, 2e-4 relative) allow for the float32 kernels (≈1e-6 relative) while any indexing mistake is O(1).
/// Inputs of ReLU and max-pool are kept ≥ 0.05 from kinks and ties, far beyond the step.
final class GradientCheckTests: XCTestCase {
    // MARK: helpers

    struct RNG {
        var g: SplitMix64
        init(_ seed: UInt64) { g = SplitMix64(seed: seed) }
        mutating func normal(_ n: Int, scale: Double = 1) -> [Double] { (0..<n).map { _ in g.nextNormal() * scale } }
        mutating func uniform(_ n: Int, _ lo: Double, _ hi: Double) -> [Double] { (0..<n).map { _ in lo + (hi - lo) * g.nextUnit() } }
        mutating func index(_ n: Int) -> Int { Int(g.next() % UInt64(n)) }
    }

    /// Float64 values rounded to float32 and back, so kernel and reference see the same inputs.
    static func f32(_ a: [Double]) -> [Double] { a.map { Double(Float($0)) } }
    static func floats(_ a: [Double]) -> [Float] { a.map { Float($0) } }

    /// max |a − b| ≤ rtol·max|b| + atol.
    func assertClose(_ a: [Double], _ b: [Double], rtol: Double = 1e-4, atol: Double = 1e-7, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "\(what): count", file: file, line: line)
        guard a.count == b.count else { return }
        var worst = 0.0, wi = 0, scale = 0.0
        for i in 0..<a.count {
            let d = abs(a[i] - b[i])
            if d > worst || d.isNaN { worst = d; wi = i }
            scale = max(scale, abs(b[i]))
        }
        let tol = rtol * scale + atol
        XCTAssert(worst <= tol, "\(what): max |diff| \(worst) at \(wi) (got \(a.isEmpty ? 0 : a[wi]), want \(b.isEmpty ? 0 : b[wi])) > \(tol)",
                  file: file, line: line)
    }

    /// Central differences of `loss` with respect to `x` at up to `samples` indices (all when fewer),
    /// compared with `analytic` at those indices.
    func checkGradient(_ what: String, _ x: [Double], analytic: [Double], samples: Int = 24, h: Double = 1e-5,
                       rtol: Double = 2e-4, seed: UInt64 = 7, file: StaticString = #filePath, line: UInt = #line,
                       _ loss: ([Double]) -> Double) {
        XCTAssertEqual(x.count, analytic.count, "\(what): gradient count", file: file, line: line)
        var rng = RNG(seed)
        let idx = x.count <= samples ? Array(0..<x.count) : (0..<samples).map { _ in rng.index(x.count) }
        var numeric: [Double] = [], picked: [Double] = []
        var xp = x
        for i in idx {
            xp[i] = x[i] + h; let lp = loss(xp)
            xp[i] = x[i] - h; let lm = loss(xp)
            xp[i] = x[i]
            numeric.append((lp - lm) / (2 * h))
            picked.append(analytic[i])
        }
        let scale = analytic.map(abs).max() ?? 0
        var worst = 0.0, wi = 0
        for k in 0..<idx.count where abs(picked[k] - numeric[k]) > worst { worst = abs(picked[k] - numeric[k]); wi = k }
        XCTAssert(worst <= rtol * scale + 1e-7,
                  "\(what): analytic \(picked[wi]) vs numeric \(numeric[wi]) at \(idx[wi]) (scale \(scale))", file: file, line: line)
    }

    static func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    // MARK: convolution

    /// Direct float64 convolution from the definition.
    static func convReference(_ x: [Double], _ xs: Shape4, _ w: [Double], _ b: [Double]?, _ g: ConvGeometry) -> [Double] {
        let ys = g.outputShape(xs)
        var y = [Double](repeating: 0, count: ys.count)
        for n in 0..<xs.n { for co in 0..<g.cout { for oh in 0..<ys.h { for ow in 0..<ys.w {
            var acc = b?[co] ?? 0
            for ci in 0..<g.cin { for ki in 0..<g.kh { for kj in 0..<g.kw {
                let ih = oh * g.strideH - g.padH + ki, iw = ow * g.strideW - g.padW + kj
                if ih < 0 || ih >= xs.h || iw < 0 || iw >= xs.w { continue }
                acc += w[((co * g.cin + ci) * g.kh + ki) * g.kw + kj] * x[((n * g.cin + ci) * xs.h + ih) * xs.w + iw]
            } } }
            y[((n * g.cout + co) * ys.h + oh) * ys.w + ow] = acc
        } } } }
        return y
    }

    /// Fills every scratch buffer of `ws` with NaN, as a layer of another shape would leave them: a kernel
    /// that reads a float it did not write (a border, a separator, a tail) turns its results into NaN.
    static func poison(_ ws: ConvWorkspace, floats: Int = 1 << 16) {
        var buffers = [ws.flipped, ws.directWeights]
        for s in ws.scratch(parts: 3) {
            buffers += [s.col, s.gemmOut, s.dxOut, s.padded, s.paddedGrad, s.weightGradAcc, s.weightGradPart]
        }
        for b in buffers { b.reserve(floats).update(repeating: .nan, count: floats) }
    }

    func checkConv(_ g: ConvGeometry, _ xs: Shape4, bias: Bool, maxColumnFloats: Int? = nil, cacheColumnFloats: Int? = nil,
                   minimumColumns: Int? = nil, policy: DirectConvolutionPolicy = .automatic,
                   kernels: DirectKernelISA = .preferred, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let what = "conv k\(g.kh)x\(g.kw) s\(g.strideH)/\(g.strideW) p\(g.padH)/\(g.padW) \(xs) -> \(g.cout)\(bias ? " +bias" : "")\(maxColumnFloats.map { " chunk≤\($0)" } ?? "") \(policy) \(kernels)"
        var rng = RNG(seed)
        let ys = g.outputShape(xs)
        let x = Self.f32(rng.normal(xs.count)), w = Self.f32(rng.normal(g.weightCount, scale: 0.3))
        let b: [Double]? = bias ? Self.f32(rng.normal(g.cout)) : nil
        let r = Self.f32(rng.normal(ys.count))
        let dxInit = Self.f32(rng.normal(xs.count)), dwInit = Self.f32(rng.normal(g.weightCount)), dbInit = Self.f32(rng.normal(g.cout))
        let ws = ConvWorkspace(directPolicy: policy, directKernels: kernels)
        if let maxColumnFloats { ws.maxColumnFloats = maxColumnFloats }
        if let cacheColumnFloats { ws.cacheColumnFloats = cacheColumnFloats }
        if let minimumColumns { ws.minimumColumns = minimumColumns }
        Self.poison(ws)

        let xf = Self.floats(x), wf = Self.floats(w), bf = b.map(Self.floats), rf = Self.floats(r)
        var y = [Float](repeating: .nan, count: ys.count)
        var dx = Self.floats(dxInit), dw = Self.floats(dwInit), db = Self.floats(dbInit)
        xf.withUnsafeBufferPointer { xp in wf.withUnsafeBufferPointer { wp in rf.withUnsafeBufferPointer { rp in
            y.withUnsafeMutableBufferPointer { yp in
                if let bf {
                    bf.withUnsafeBufferPointer { bp in
                        Conv2D.forward(xp.baseAddress!, xs, weight: wp.baseAddress!, bias: bp.baseAddress!, g, yp.baseAddress!, workspace: ws)
                    }
                } else {
                    Conv2D.forward(xp.baseAddress!, xs, weight: wp.baseAddress!, bias: nil, g, yp.baseAddress!, workspace: ws)
                }
            }
            dx.withUnsafeMutableBufferPointer { dxp in dw.withUnsafeMutableBufferPointer { dwp in db.withUnsafeMutableBufferPointer { dbp in
                Conv2D.backward(xp.baseAddress!, xs, weight: wp.baseAddress!, g, dy: rp.baseAddress!, dWeight: dwp.baseAddress!,
                                dBias: bias ? dbp.baseAddress! : nil, dx: dxp.baseAddress!, workspace: ws)
            } } }
        } } }
        assertClose(y.map(Double.init), Self.convReference(x, xs, w, b, g), "\(what) forward", file: file, line: line)
        // backward adds into dx, dW, dB: compare the increments
        let gx = zip(dx, dxInit).map { Double($0) - $1 }, gw = zip(dw, dwInit).map { Double($0) - $1 }
        checkGradient("\(what) dx", x, analytic: gx, file: file, line: line) { Self.dot(r, Self.convReference($0, xs, w, b, g)) }
        // the same backward writing dx over NaNs: the increment of the adding run, and no NaN read
        var dxWritten = [Float](repeating: .nan, count: xs.count), dwAgain = Self.floats(dwInit)
        xf.withUnsafeBufferPointer { xp in wf.withUnsafeBufferPointer { wp in rf.withUnsafeBufferPointer { rp in
            dxWritten.withUnsafeMutableBufferPointer { dxp in dwAgain.withUnsafeMutableBufferPointer { dwp in
                Conv2D.backward(xp.baseAddress!, xs, weight: wp.baseAddress!, g, dy: rp.baseAddress!, dWeight: dwp.baseAddress!,
                                dBias: nil, dx: dxp.baseAddress!, overwritingDx: true, workspace: ws)
            } }
        } } }
        assertClose(dxWritten.map(Double.init), gx, rtol: 1e-5, atol: 1e-6, "\(what) dx written", file: file, line: line)
        checkGradient("\(what) dW", w, analytic: gw, file: file, line: line) { Self.dot(r, Self.convReference(x, xs, $0, b, g)) }
        if let b {
            let gb = zip(db, dbInit).map { Double($0) - $1 }
            checkGradient("\(what) dB", b, analytic: gb, file: file, line: line) { Self.dot(r, Self.convReference(x, xs, w, $0, g)) }
        } else {
            XCTAssertEqual(db, Self.floats(dbInit), "\(what): dBias untouched without bias", file: file, line: line)
        }
    }

    func testConvKernelSizesStridesPaddings() {
        var seed: UInt64 = 100
        let cases: [(Int, Int, Int)] = [(1, 1, 0), (1, 2, 0), (3, 1, 1), (3, 2, 1), (3, 1, 0), (7, 2, 3), (7, 1, 3), (3, 1, 3)]
        for (k, s, p) in cases {
            for bias in [false, true] {
                seed += 1
                checkConv(ConvGeometry(cin: 3, cout: 4, kernel: k, stride: s, padding: p), Shape4(2, 3, 9, 7), bias: bias, seed: seed)
            }
        }
    }

    func testConvNonSquareAsymmetricGeometry() {
        checkConv(ConvGeometry(cin: 2, cout: 5, kh: 3, kw: 1, strideH: 2, strideW: 1, padH: 1, padW: 0), Shape4(2, 2, 8, 5), bias: true, seed: 11)
        checkConv(ConvGeometry(cin: 4, cout: 2, kh: 1, kw: 3, strideH: 1, strideW: 1, padH: 0, padW: 1), Shape4(3, 4, 4, 6), bias: false, seed: 12)
        checkConv(ConvGeometry(cin: 5, cout: 3, kh: 5, kw: 3, strideH: 1, strideW: 1, padH: 2, padW: 1), Shape4(2, 5, 6, 11), bias: false, seed: 13)
    }

    /// Stride-2 rows wide enough for the vectorised even-lane gather of im2col (and its scalar edges).
    func testConvStride2WideRows() {
        var seed: UInt64 = 400
        for (k, p) in [(3, 1), (1, 0), (3, 0), (5, 2)] {
            for w in [37, 40] {
                seed += 1
                checkConv(ConvGeometry(cin: 2, cout: 3, kh: k, kw: k, strideH: 2, strideW: 2, padH: p, padW: p),
                          Shape4(2, 2, 5, w), bias: true, seed: seed)
            }
        }
    }

    /// Both families of direct kernels: the 8-lane one always, the AVX-512 one where the CPU has it (forcing
    /// `.avx512` elsewhere would silently run the 8-lane family again).
    static var directKernelFamilies: [DirectKernelISA] { DirectKernelISA.avx512Supported ? [.avx2, .avx512] : [.avx2] }

    /// The direct 3×3 kernels (forward, weight gradient, input gradient through the flipped kernel) of both
    /// families (`directKernelFamilies`): channel counts that are and are not multiples of the 4- and
    /// 8-channel blocks, planes whose padded rows do and do not fill whole 24- and 32-float tiles, with and
    /// without bias; and the im2col path on the same shapes.
    func testConvDirect3x3() {
        var seed: UInt64 = 300
        let cases: [(cin: Int, cout: Int, xs: Shape4)] = [
            (4, 4, Shape4(2, 4, 4, 4)), (3, 5, Shape4(2, 3, 9, 7)), (1, 16, Shape4(1, 1, 28, 28)),
            (16, 16, Shape4(1, 16, 10, 10)), (8, 12, Shape4(2, 8, 7, 14)), (12, 8, Shape4(1, 12, 5, 22)),
            (6, 3, Shape4(3, 6, 1, 5)), (5, 7, Shape4(2, 5, 13, 1)),
            // several samples side by side in one padded plane: a full group of 8 7×7 planes and a group of 3,
            // two groups of 3 14×14 planes and a last one of 1
            (2, 5, Shape4(11, 2, 7, 7)), (3, 2, Shape4(7, 3, 14, 14)),
        ]
        for c in cases {
            let g = ConvGeometry(cin: c.cin, cout: c.cout, kernel: 3, stride: 1, padding: 1)
            XCTAssertTrue(Conv2D.usesDirect3x3(g, c.xs, policy: .always))
            XCTAssertFalse(Conv2D.usesDirect3x3(g, c.xs, policy: .never))
            let runs: [(DirectConvolutionPolicy, DirectKernelISA)] = Self.directKernelFamilies.map { (.always, $0) } + [(.never, .avx2)]
            for (policy, kernels) in runs {
                for bias in [false, true] {
                    seed += 1
                    checkConv(g, c.xs, bias: bias, policy: policy, kernels: kernels, seed: seed)
                }
            }
        }
        // `.automatic` sends every 3×3 stride-1 layer of resnet20 on 28×28 (16@28×28, 32@14×14, 64@7×7) to the
        // direct kernels of either family, and the 64-channel 56×56 and 128-channel 28×28 layers of the ImageNet
        // ResNets, not their 256-channel ones nor planes below 7×7
        let automatic: [(channels: Int, xs: Shape4, direct: Bool)] = [
            (16, Shape4(128, 16, 28, 28), true), (32, Shape4(128, 32, 14, 14), true), (64, Shape4(128, 64, 7, 7), true),
            (64, Shape4(16, 64, 56, 56), true), (128, Shape4(16, 128, 28, 28), true), (256, Shape4(16, 256, 14, 14), false),
            (16, Shape4(128, 16, 6, 6), false),
        ]
        for kernels in [DirectKernelISA.avx2, .avx512] {
            for c in automatic {
                let g = ConvGeometry(cin: c.channels, cout: c.channels, kernel: 3, stride: 1, padding: 1)
                XCTAssertEqual(Conv2D.usesDirect3x3(g, c.xs, policy: .automatic, kernels: kernels), c.direct,
                               "\(kernels) \(c.channels) channels on \(c.xs)")
            }
        }
        XCTAssertFalse(Conv2D.usesDirect3x3(ConvGeometry(cin: 16, cout: 32, kernel: 3, stride: 2, padding: 1),
                                            Shape4(128, 16, 28, 28), policy: .always))
        XCTAssertFalse(Conv2D.usesDirect3x3(ConvGeometry(cin: 16, cout: 16, kernel: 3, stride: 1, padding: 0),
                                            Shape4(128, 16, 28, 28), policy: .always))
    }

    /// How many samples the direct kernels lay side by side, and what that buys in useful lanes.
    func testDirect3x3SampleGroups() {
        XCTAssertEqual(Direct3x3Layout.samplesPerGroup(h: 7, w: 7, tile: 24), 8)
        XCTAssertEqual(Direct3x3Layout.samplesPerGroup(h: 14, w: 14, tile: 24), 3)
        XCTAssertEqual(Direct3x3Layout.samplesPerGroup(h: 28, w: 28, tile: 24), 1)
        XCTAssertEqual(Direct3x3Layout.samplesPerGroup(h: 56, w: 56, tile: 32), 1)
        XCTAssertEqual(Direct3x3Layout(h: 7, w: 7, samples: 1).utilisation, 49.0 / 72, accuracy: 1e-12)
        XCTAssertEqual(Direct3x3Layout(h: 7, w: 7, samples: 8).utilisation, 392.0 / 456, accuracy: 1e-12)
        for (h, w) in [(7, 7), (14, 14), (5, 22), (1, 5), (13, 1)] {
            for tile in [24, 32] {
                let s = Direct3x3Layout.samplesPerGroup(h: h, w: w, tile: tile)
                let L = Direct3x3Layout(h: h, w: w, samples: s, tile: tile)
                XCTAssertGreaterThanOrEqual(L.utilisation, Direct3x3Layout(h: h, w: w, tile: tile).utilisation, "\(h)×\(w) tile \(tile)")
                XCTAssert(s == 1 || h * L.wp <= Direct3x3Layout.maxGroupRowFloats, "\(h)×\(w) tile \(tile): \(s) samples")
                XCTAssertEqual(L.q % tile, 0)
                XCTAssertGreaterThanOrEqual(L.stride, L.q + 2 * L.wp + 2)
            }
        }
        var groups: [Int] = []
        for g in Direct3x3Groups(3..<30, size: 11) { XCTAssertEqual(g.n0, 3 + groups.reduce(0, +)); groups.append(g.count) }
        XCTAssertEqual(groups, [11, 11, 5])
    }

    /// Backward with only some of dW, dB, dx requested, on the direct path: the others stay untouched and
    /// the requested ones match the full backward.
    func testConvDirect3x3PartialBackward() {
        var rng = RNG(41)
        let g = ConvGeometry(cin: 5, cout: 6, kernel: 3, stride: 1, padding: 1), xs = Shape4(2, 5, 6, 9)
        let ys = g.outputShape(xs)
        let x = Self.floats(rng.normal(xs.count)), w = Self.floats(rng.normal(g.weightCount)), dy = Self.floats(rng.normal(ys.count))
        func run(_ wantW: Bool, _ wantB: Bool, _ wantX: Bool, _ policy: DirectConvolutionPolicy,
                 _ kernels: DirectKernelISA = .avx2) -> ([Float], [Float], [Float]) {
            var dw = [Float](repeating: 0.5, count: g.weightCount), db = [Float](repeating: 0.5, count: g.cout)
            var dx = [Float](repeating: 0.5, count: xs.count)
            let ws = ConvWorkspace(directPolicy: policy, directKernels: kernels)
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in dy.withUnsafeBufferPointer { dp in
                dw.withUnsafeMutableBufferPointer { dwp in db.withUnsafeMutableBufferPointer { dbp in dx.withUnsafeMutableBufferPointer { dxp in
                    Conv2D.backward(xp.baseAddress!, xs, weight: wp.baseAddress!, g, dy: dp.baseAddress!,
                                    dWeight: wantW ? dwp.baseAddress! : nil, dBias: wantB ? dbp.baseAddress! : nil,
                                    dx: wantX ? dxp.baseAddress! : nil, workspace: ws)
                } } }
            } } }
            return (dw, db, dx)
        }
        let full = run(true, true, true, .never)
        for kernels in Self.directKernelFamilies {
        for (wantW, wantB, wantX) in [(true, false, false), (false, true, false), (false, false, true), (false, false, false)] {
            let r = run(wantW, wantB, wantX, .always, kernels)
            let untouchedW = [Float](repeating: 0.5, count: g.weightCount), untouchedB = [Float](repeating: 0.5, count: g.cout)
            let untouchedX = [Float](repeating: 0.5, count: xs.count)
            assertClose(r.0.map(Double.init), (wantW ? full.0 : untouchedW).map(Double.init), rtol: 1e-5, "partial dW")
            assertClose(r.1.map(Double.init), (wantB ? full.1 : untouchedB).map(Double.init), rtol: 1e-5, "partial dB")
            assertClose(r.2.map(Double.init), (wantX ? full.2 : untouchedX).map(Double.init), rtol: 1e-5, "partial dx")
        }
        }
    }

    /// The two families agree (up to float rounding) on resnet20's direct layers, whole batches of several
    /// samples included, and repeated calls on one workspace give the same result.
    func testDirect3x3FamiliesAgree() throws {
        try XCTSkipUnless(DirectKernelISA.avx512Supported, "this CPU has no AVX-512: only the 8-lane kernels can run")
        var rng = RNG(77)
        for (cin, cout, xs) in [(1, 16, Shape4(3, 1, 28, 28)), (16, 16, Shape4(2, 16, 28, 28)), (32, 32, Shape4(2, 32, 14, 14)),
                                (64, 64, Shape4(3, 64, 7, 7))] {
            let g = ConvGeometry(cin: cin, cout: cout, kernel: 3, stride: 1, padding: 1)
            let ys = g.outputShape(xs)
            let x = Self.floats(rng.normal(xs.count)), w = Self.floats(rng.normal(g.weightCount, scale: 0.2))
            let dy = Self.floats(rng.normal(ys.count))
            func run(_ kernels: DirectKernelISA, _ ws: ConvWorkspace) -> [[Float]] {
                var y = [Float](repeating: .nan, count: ys.count), dw = [Float](repeating: 0, count: g.weightCount)
                var dx = [Float](repeating: 0, count: xs.count)
                ws.directKernels = kernels
                x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in dy.withUnsafeBufferPointer { dp in
                    y.withUnsafeMutableBufferPointer { Conv2D.forward(xp.baseAddress!, xs, weight: wp.baseAddress!, bias: nil, g, $0.baseAddress!, workspace: ws) }
                    dw.withUnsafeMutableBufferPointer { dwp in dx.withUnsafeMutableBufferPointer { dxp in
                        Conv2D.backward(xp.baseAddress!, xs, weight: wp.baseAddress!, g, dy: dp.baseAddress!, dWeight: dwp.baseAddress!,
                                        dBias: nil, dx: dxp.baseAddress!, workspace: ws)
                    } }
                } } }
                return [y, dw, dx]
            }
            let ws = ConvWorkspace(directPolicy: .always)
            let narrow = run(.avx2, ws), wide = run(.avx512, ws), again = run(.avx512, ws)
            for (k, name) in ["forward", "dW", "dx"].enumerated() {
                assertClose(wide[k].map(Double.init), narrow[k].map(Double.init), rtol: 2e-5, "\(cin)->\(cout) \(xs) \(name) avx512 vs avx2")
                XCTAssertEqual(again[k], wide[k], "\(cin)->\(cout) \(xs) \(name): avx512 repeatable")
            }
        }
    }

    /// DAFT_NO_AVX512=1 forces the 8-lane kernels; otherwise the CPU decides.
    func testDirectKernelISAPreference() {
        XCTAssertEqual(DirectKernelISA.preferred(environment: [:], avx512Supported: true), .avx512)
        XCTAssertEqual(DirectKernelISA.preferred(environment: ["DAFT_NO_AVX512": "0"], avx512Supported: true), .avx512)
        XCTAssertEqual(DirectKernelISA.preferred(environment: ["DAFT_NO_AVX512": "1"], avx512Supported: true), .avx2)
        XCTAssertEqual(DirectKernelISA.preferred(environment: [:], avx512Supported: false), .avx2)
        XCTAssertEqual(ConvWorkspace().directKernels, DirectKernelISA.preferred)
    }

    /// A tiny `maxColumnFloats` forces one-sample and few-sample chunks (the paths that write NCHW directly
    /// and the channel-major ones).
    func testConvChunkingAcrossSamples() {
        let xs = Shape4(5, 3, 6, 5)
        for (k, s, p) in [(3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0), (7, 2, 3)] {
            let g = ConvGeometry(cin: 3, cout: 4, kernel: k, stride: s, padding: p)
            for limit in [1, 2 * 4 * 9 * 30, 1 << 20] {
                checkConv(g, xs, bias: true, maxColumnFloats: limit, seed: UInt64(200 + k * 10 + s + limit % 97))
            }
        }
    }

    /// A sample whose im2col matrix outgrows the cache bound runs in tiles of output rows (strided and other
    /// not-"same" geometries): forward, dW and dx (tiles sharing input rows add into them) against the
    /// reference, with 2-row tiles and a shorter last one.
    func testConvRowTilesWithinOneSample() {
        let xs = Shape4(2, 3, 13, 9)
        let geometries = [ConvGeometry(cin: 3, cout: 4, kernel: 3, stride: 2, padding: 1),
                          ConvGeometry(cin: 3, cout: 5, kernel: 7, stride: 2, padding: 3),
                          ConvGeometry(cin: 3, cout: 4, kernel: 1, stride: 2, padding: 0),
                          ConvGeometry(cin: 3, cout: 2, kernel: 3, stride: 1, padding: 0),
                          ConvGeometry(cin: 3, cout: 3, kh: 3, kw: 1, strideH: 1, strideW: 2, padH: 1, padW: 0)]
        for (i, g) in geometries.enumerated() {
            let ys = g.outputShape(xs)
            let cache = 2 * g.patchSize * ys.w     // two output rows per tile
            let ws = ConvWorkspace(cacheColumnFloats: cache, minimumColumns: 0)
            XCTAssertEqual(ws.samplesPerChunk(g, outSpatial: ys.spatial, batch: xs.n), 1)
            XCTAssertEqual(ws.outputRowsPerTile(g, patch: g.patchSize, outH: ys.h, outW: ys.w), 2, "k\(g.kh)x\(g.kw) tiles")
            XCTAssertEqual(ys.h % 2, 1, "a shorter last tile")
            checkConv(g, xs, bias: i % 2 == 0, cacheColumnFloats: cache, minimumColumns: 0, seed: UInt64(300 + i))
        }
    }

    /// ⟨col2im(a), b⟩ = ⟨a, im2col(b)⟩ for every geometry and chunk offset.
    func testIm2colCol2imAreAdjoint() {
        var rng = RNG(3)
        let geometries = [ConvGeometry(cin: 2, cout: 1, kernel: 3, stride: 1, padding: 1),
                          ConvGeometry(cin: 2, cout: 1, kernel: 3, stride: 2, padding: 1),
                          ConvGeometry(cin: 3, cout: 1, kernel: 1, stride: 2, padding: 0),
                          ConvGeometry(cin: 1, cout: 1, kernel: 7, stride: 2, padding: 3),
                          ConvGeometry(cin: 2, cout: 1, kernel: 3, stride: 1, padding: 0),
                          ConvGeometry(cin: 2, cout: 1, kh: 5, kw: 3, strideH: 1, strideW: 1, padH: 2, padW: 1)]
        for g in geometries {
            let xs = Shape4(4, g.cin, 7, 6)
            let ys = g.outputShape(xs)
            let n0 = 1, nc = 2
            let colCount = g.patchSize * nc * ys.spatial
            let a = Self.floats(rng.normal(colCount)), b = Self.floats(rng.normal(xs.count))
            var imgA = [Float](repeating: 0, count: xs.count)
            var colB = [Float](repeating: .nan, count: colCount)
            a.withUnsafeBufferPointer { ap in imgA.withUnsafeMutableBufferPointer { Conv2D.col2imAdd(ap.baseAddress!, xs, g, n0: n0, nc: nc, $0.baseAddress!) } }
            b.withUnsafeBufferPointer { bp in colB.withUnsafeMutableBufferPointer { Conv2D.im2col(bp.baseAddress!, xs, g, n0: n0, nc: nc, $0.baseAddress!) } }
            let lhs = Self.dot(imgA.map(Double.init), b.map(Double.init)), rhs = Self.dot(a.map(Double.init), colB.map(Double.init))
            XCTAssertEqual(lhs, rhs, accuracy: 1e-5 * max(1, abs(rhs)), "adjoint k\(g.kh)x\(g.kw) s\(g.strideH) p\(g.padH)")
            // samples outside the chunk are untouched
            for i in 0..<(g.cin * xs.spatial) { XCTAssertEqual(imgA[i], 0); XCTAssertEqual(imgA[3 * g.cin * xs.spatial + i], 0) }
        }
    }

    // MARK: batch norm

    /// Float64 BatchNorm2d, with the formulas of DaftModels.BatchNorm2d: training mode normalises with the
    /// batch mean and biased variance, evaluation mode with fixed statistics; optional ReLU.
    static func bnReference(_ x: [Double], _ s: Shape4, gamma: [Double], beta: [Double], relu: Bool,
                            fixed: (mean: [Double], variance: [Double])?) -> [Double] {
        var y = x
        let hw = s.spatial, count = Double(s.n * hw)
        for c in 0..<s.c {
            var mu = 0.0, v = 0.0
            if let fixed {
                mu = fixed.mean[c]; v = fixed.variance[c]
            } else {
                var a = 0.0, q = 0.0
                for n in 0..<s.n { for i in 0..<hw { let t = x[(n * s.c + c) * hw + i]; a += t; q += t * t } }
                mu = a / count; v = max(q / count - mu * mu, 0)
            }
            let istd = 1 / (v + 1e-5).squareRoot()
            for n in 0..<s.n { for i in 0..<hw {
                let k = (n * s.c + c) * hw + i
                let t = (x[k] - mu) * istd * gamma[c] + beta[c]
                y[k] = relu ? max(t, 0) : t
            } }
        }
        return y
    }

    /// Runs the kernels the way BatchNorm2d does (forward: moments → scale/shift → applyAffine; backward:
    /// reluMask → accumulateBackwardSums → dγ, dβ, dx).
    func checkBatchNorm(train: Bool, relu: Bool, seed: UInt64) {
        let what = "batchnorm \(train ? "train" : "eval")\(relu ? "+relu" : "")"
        var rng = RNG(seed)
        let s = Shape4(3, 4, 5, 3)
        let C = s.c
        let x = Self.f32(rng.normal(s.count).enumerated().map { $0.1 * 1.5 + Double($0.0 % 7) * 0.1 + 0.4 })
        let gamma = Self.f32(rng.uniform(C, 0.5, 1.5)), beta = Self.f32(rng.normal(C, scale: 0.3))
        let rMean = Self.f32(rng.normal(C, scale: 0.2)), rVar = Self.f32(rng.uniform(C, 0.5, 1.5))
        let r = Self.f32(rng.normal(s.count))
        let fixed: (mean: [Double], variance: [Double])? = train ? nil : (rMean, rVar)

        // forward with the kernels
        let xf = Self.floats(x)
        var mean = [Float](repeating: 0, count: C), invstd = mean, scale = mean, shift = mean
        if train {
            var sum = [Double](repeating: 0, count: C), sq = sum
            xf.withUnsafeBufferPointer { xp in sum.withUnsafeMutableBufferPointer { sp in sq.withUnsafeMutableBufferPointer { qp in
                BatchNormKernels.accumulateMoments(xp.baseAddress!, s, sum: sp.baseAddress!, sumSquares: qp.baseAddress!)
            } } }
            let count = Double(s.n * s.spatial)
            for c in 0..<C {
                let mu = sum[c] / count, v = max(sq[c] / count - mu * mu, 0)
                mean[c] = Float(mu); invstd[c] = Float(1 / (v + 1e-5).squareRoot())
            }
        } else {
            for c in 0..<C { mean[c] = Float(rMean[c]); invstd[c] = 1 / (Float(rVar[c]) + 1e-5).squareRoot() }
        }
        for c in 0..<C { scale[c] = Float(gamma[c]) * invstd[c]; shift[c] = Float(beta[c]) - mean[c] * scale[c] }
        var y = [Float](repeating: .nan, count: s.count)
        xf.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            BatchNormKernels.applyAffine(xp.baseAddress!, s, scale: scale, shift: shift, relu: relu, yp.baseAddress!)
        } }
        let yRef = Self.bnReference(x, s, gamma: gamma, beta: beta, relu: relu, fixed: fixed)
        assertClose(y.map(Double.init), yRef, "\(what) forward")

        // backward with the kernels
        var dy = Self.floats(r)
        if relu { dy.withUnsafeMutableBufferPointer { BatchNormKernels.reluMask($0.baseAddress!, output: y, count: s.count) } }
        var sumDy = [Double](repeating: 0, count: C), sumDyXhat = sumDy
        xf.withUnsafeBufferPointer { xp in sumDy.withUnsafeMutableBufferPointer { a in sumDyXhat.withUnsafeMutableBufferPointer { b in
            BatchNormKernels.accumulateBackwardSums(xp.baseAddress!, dy, s, mean: mean, invstd: invstd,
                                                    sumDy: a.baseAddress!, sumDyXhat: b.baseAddress!)
        } } }
        var dx = [Float](repeating: .nan, count: s.count)
        let gammaF = Self.floats(gamma)
        if train {
            let count = Double(s.n * s.spatial)
            let md = sumDy.map { Float($0 / count) }, mx = sumDyXhat.map { Float($0 / count) }
            xf.withUnsafeBufferPointer { xp in dx.withUnsafeMutableBufferPointer { dp in
                BatchNormKernels.trainBackwardInput(xp.baseAddress!, dy, s, mean: mean, invstd: invstd, gamma: gammaF,
                                                    meanDy: md, meanDyXhat: mx, dp.baseAddress!)
            } }
        } else {
            dx.withUnsafeMutableBufferPointer { BatchNormKernels.evalBackwardInput(dy, s, scale: scale, $0.baseAddress!) }
        }
        checkGradient("\(what) dx", x, analytic: dx.map(Double.init), samples: 30) {
            Self.dot(r, Self.bnReference($0, s, gamma: gamma, beta: beta, relu: relu, fixed: fixed))
        }
        checkGradient("\(what) dgamma", gamma, analytic: sumDyXhat) {
            Self.dot(r, Self.bnReference(x, s, gamma: $0, beta: beta, relu: relu, fixed: fixed))
        }
        checkGradient("\(what) dbeta", beta, analytic: sumDy) {
            Self.dot(r, Self.bnReference(x, s, gamma: gamma, beta: $0, relu: relu, fixed: fixed))
        }
    }

    func testBatchNormTrainBackward() { checkBatchNorm(train: true, relu: false, seed: 21) }
    func testBatchNormTrainReluBackward() { checkBatchNorm(train: true, relu: true, seed: 22) }
    func testBatchNormEvalBackward() { checkBatchNorm(train: false, relu: false, seed: 23) }
    func testBatchNormEvalReluBackward() { checkBatchNorm(train: false, relu: true, seed: 24) }

    /// Moments of rows long enough for the vector path (and its tails) against float64 sums.
    func testBatchNormMomentsLongRows() {
        var rng = RNG(5)
        let s = Shape4(3, 2, 7, 9)
        let x = Self.f32(rng.normal(s.count).map { $0 + 3 })
        var sum = [Double](repeating: 0, count: 2), sq = sum
        Self.floats(x).withUnsafeBufferPointer { xp in sum.withUnsafeMutableBufferPointer { a in sq.withUnsafeMutableBufferPointer { b in
            BatchNormKernels.accumulateMoments(xp.baseAddress!, s, sum: a.baseAddress!, sumSquares: b.baseAddress!)
        } } }
        for c in 0..<2 {
            var a = 0.0, q = 0.0
            for n in 0..<s.n { for i in 0..<s.spatial { let t = x[(n * 2 + c) * s.spatial + i]; a += t; q += t * t } }
            XCTAssertEqual(sum[c], a, accuracy: 1e-6 * abs(a)); XCTAssertEqual(sq[c], q, accuracy: 1e-6 * q)
        }
    }

    // MARK: activations, residual join, pooling

    /// Values at least 0.05 away from zero, so ±h never crosses a ReLU kink.
    static func awayFromZero(_ v: [Double]) -> [Double] { f32(v.map { $0 >= 0 ? $0 + 0.05 : $0 - 0.05 }) }

    func testReluAndMask() {
        var rng = RNG(31)
        let n = 37
        let x = Self.awayFromZero(rng.normal(n)), r = Self.f32(rng.normal(n))
        var y = [Float](repeating: .nan, count: n)
        Self.floats(x).withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { Elementwise.relu(xp.baseAddress!, $0.baseAddress!, count: n) } }
        assertClose(y.map(Double.init), x.map { max($0, 0) }, "relu forward")
        var dy = Self.floats(r)
        dy.withUnsafeMutableBufferPointer { BatchNormKernels.reluMask($0.baseAddress!, output: y, count: n) }
        checkGradient("relu dx", x, analytic: dy.map(Double.init), samples: n) { v in Self.dot(r, v.map { max($0, 0) }) }
        // NaN propagates like PyTorch's ReLU; a zero output masks the gradient
        var z: [Float] = [.nan, 0, -0.0, 1]
        var zy = [Float](repeating: 0, count: 4)
        z.withUnsafeBufferPointer { zp in zy.withUnsafeMutableBufferPointer { Elementwise.relu(zp.baseAddress!, $0.baseAddress!, count: 4) } }
        XCTAssert(zy[0].isNaN); XCTAssertEqual(Array(zy[1...]), [0, 0, 1])
        z = [1, 1, 1, 1]
        z.withUnsafeMutableBufferPointer { BatchNormKernels.reluMask($0.baseAddress!, output: zy, count: 4) }
        XCTAssertEqual(z, [0, 0, 0, 1])
    }

    func testAddAndAddReluBackward() {
        var rng = RNG(32)
        let n = 45
        let a = Self.f32(rng.normal(n)), b0 = rng.normal(n)
        // keep a + b away from zero
        let b = Self.f32(zip(a, b0).map { (a, b) in let s = a + b; return abs(s) < 0.05 ? b + (s >= 0 ? 0.1 : -0.1) : b })
        let r = Self.f32(rng.normal(n))
        let af = Self.floats(a), bf = Self.floats(b)
        var sum = [Float](repeating: .nan, count: n), sumRelu = sum
        af.withUnsafeBufferPointer { ap in bf.withUnsafeBufferPointer { bp in
            sum.withUnsafeMutableBufferPointer { Elementwise.add(ap.baseAddress!, bp.baseAddress!, $0.baseAddress!, count: n) }
            sumRelu.withUnsafeMutableBufferPointer { Elementwise.addRelu(ap.baseAddress!, bp.baseAddress!, $0.baseAddress!, count: n) }
        } }
        assertClose(sum.map(Double.init), zip(a, b).map { $0 + $1 }, "add forward")
        assertClose(sumRelu.map(Double.init), zip(a, b).map { max($0 + $1, 0) }, "addRelu forward")
        // add: both inputs get dy; addRelu: both get the masked dy (the model masks then accumulates)
        checkGradient("add da", a, analytic: r, samples: n) { v in Self.dot(r, zip(v, b).map { $0 + $1 }) }
        var masked = Self.floats(r)
        masked.withUnsafeMutableBufferPointer { BatchNormKernels.reluMask($0.baseAddress!, output: sumRelu, count: n) }
        var acc = [Float](repeating: 0.25, count: n)
        masked.withUnsafeBufferPointer { mp in acc.withUnsafeMutableBufferPointer { Elementwise.accumulate(mp.baseAddress!, into: $0.baseAddress!, count: n) } }
        let gm = masked.map(Double.init)
        checkGradient("addRelu da", a, analytic: gm, samples: n) { v in Self.dot(r, zip(v, b).map { max($0 + $1, 0) }) }
        checkGradient("addRelu db", b, analytic: gm, samples: n) { v in Self.dot(r, zip(a, v).map { max($0 + $1, 0) }) }
        assertClose(acc.map(Double.init), gm.map { $0 + 0.25 }, "accumulate")
    }

    static func maxPoolReference(_ x: [Double], _ s: Shape4, kernel: Int, stride: Int, padding: Int) -> [Double] {
        let o = Elementwise.maxPoolShape(s, kernel: kernel, stride: stride, padding: padding)
        var y = [Double](repeating: 0, count: o.count)
        for nc in 0..<(s.n * s.c) { for oh in 0..<o.h { for ow in 0..<o.w {
            var best = -Double.infinity
            for ki in 0..<kernel { for kj in 0..<kernel {
                let ih = oh * stride - padding + ki, iw = ow * stride - padding + kj
                if ih >= 0 && ih < s.h && iw >= 0 && iw < s.w { best = max(best, x[nc * s.spatial + ih * s.w + iw]) }
            } }
            y[nc * o.spatial + oh * o.w + ow] = best
        } } }
        return y
    }

    func testMaxPoolBackward() {
        var rng = RNG(33)
        for (s, k, st, p) in [(Shape4(2, 3, 9, 8), 3, 2, 1), (Shape4(1, 2, 6, 7), 2, 2, 0), (Shape4(1, 1, 5, 5), 3, 1, 1)] {
            // distinct values 0.01 apart (shuffled), so ±h never changes a window's winner
            var vals = (0..<s.count).map { Double($0) * 0.01 }
            for i in stride(from: vals.count - 1, to: 0, by: -1) { vals.swapAt(i, rng.index(i + 1)) }
            let x = Self.f32(vals)
            let o = Elementwise.maxPoolShape(s, kernel: k, stride: st, padding: p)
            let r = Self.f32(rng.normal(o.count))
            var y = [Float](repeating: .nan, count: o.count)
            var arg = [Int32](repeating: -1, count: o.count)
            Self.floats(x).withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in arg.withUnsafeMutableBufferPointer { ap in
                Elementwise.maxPool(xp.baseAddress!, s, kernel: k, stride: st, padding: p, yp.baseAddress!, argmax: ap.baseAddress!)
            } } }
            assertClose(y.map(Double.init), Self.maxPoolReference(x, s, kernel: k, stride: st, padding: p), "maxpool k\(k) forward")
            var dx = [Float](repeating: 0, count: s.count)
            Self.floats(r).withUnsafeBufferPointer { rp in arg.withUnsafeBufferPointer { ap in dx.withUnsafeMutableBufferPointer {
                Elementwise.maxPoolBackwardAdd(rp.baseAddress!, o, argmax: ap.baseAddress!, $0.baseAddress!)
            } } }
            checkGradient("maxpool k\(k) s\(st) dx", x, analytic: dx.map(Double.init), samples: 40, h: 1e-5) {
                Self.dot(r, Self.maxPoolReference($0, s, kernel: k, stride: st, padding: p))
            }
        }
    }

    func testGlobalAvgPoolBackward() {
        var rng = RNG(34)
        let s = Shape4(2, 3, 5, 7)
        let x = Self.f32(rng.normal(s.count)), r = Self.f32(rng.normal(s.n * s.c))
        func ref(_ v: [Double]) -> [Double] {
            (0..<(s.n * s.c)).map { nc in v[(nc * s.spatial)..<((nc + 1) * s.spatial)].reduce(0, +) / Double(s.spatial) }
        }
        var y = [Float](repeating: .nan, count: s.n * s.c)
        Self.floats(x).withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { Elementwise.globalAvgPool(xp.baseAddress!, s, $0.baseAddress!) } }
        assertClose(y.map(Double.init), ref(x), "global avg pool forward")
        var dx = [Float](repeating: .nan, count: s.count)
        Self.floats(r).withUnsafeBufferPointer { rp in dx.withUnsafeMutableBufferPointer { Elementwise.globalAvgPoolBackward(rp.baseAddress!, s, $0.baseAddress!) } }
        checkGradient("global avg pool dx", x, analytic: dx.map(Double.init)) { Self.dot(r, ref($0)) }
    }

    // MARK: linear and cross-entropy

    func testLinearBackward() {
        var rng = RNG(35)
        let B = 3, I = 11, O = 5
        let x = Self.f32(rng.normal(B * I)), w = Self.f32(rng.normal(O * I, scale: 0.3)), b = Self.f32(rng.normal(O))
        let r = Self.f32(rng.normal(B * O))
        func ref(_ x: [Double], _ w: [Double], _ b: [Double]) -> [Double] {
            var y = [Double](repeating: 0, count: B * O)
            for n in 0..<B { for o in 0..<O { y[n * O + o] = b[o] + (0..<I).reduce(0) { $0 + x[n * I + $1] * w[o * I + $1] } } }
            return y
        }
        let xf = Self.floats(x), wf = Self.floats(w), bf = Self.floats(b)
        var y = [Float](repeating: .nan, count: B * O)
        LinearKernels.forward(xf, batch: B, inFeatures: I, weight: wf, bias: bf, outFeatures: O, &y)
        assertClose(y.map(Double.init), ref(x, w, b), "linear forward")
        var yNoBias = [Float](repeating: .nan, count: B * O)
        LinearKernels.forward(xf, batch: B, inFeatures: I, weight: wf, bias: nil, outFeatures: O, &yNoBias)
        assertClose(yNoBias.map(Double.init), ref(x, w, [Double](repeating: 0, count: O)), "linear forward without bias")
        var dw = [Float](repeating: 0.5, count: O * I), db = [Float](repeating: -0.5, count: O), dx = [Float](repeating: .nan, count: B * I)
        LinearKernels.backward(xf, batch: B, inFeatures: I, weight: wf, outFeatures: O, dy: Self.floats(r), dWeight: &dw, dBias: &db, dx: &dx)
        checkGradient("linear dx", x, analytic: dx.map(Double.init)) { Self.dot(r, ref($0, w, b)) }
        checkGradient("linear dW", w, analytic: dw.map { Double($0) - 0.5 }) { Self.dot(r, ref(x, $0, b)) }
        checkGradient("linear db", b, analytic: db.map { Double($0) + 0.5 }) { Self.dot(r, ref(x, w, $0)) }
    }

    func testCrossEntropyBackward() {
        var rng = RNG(36)
        let B = 4, K = 6
        let logits = Self.f32(rng.normal(B * K, scale: 2))
        let labels: [Int32] = [0, 5, 2, 2]
        func ref(_ z: [Double]) -> Double {
            var total = 0.0
            for n in 0..<B {
                let row = z[(n * K)..<((n + 1) * K)]
                let m = row.max()!
                total += log(row.reduce(0) { $0 + exp($1 - m) }) + m - z[n * K + Int(labels[n])]
            }
            return total / Double(B)
        }
        var d = [Float](repeating: .nan, count: B * K)
        let res = CrossEntropy.forwardBackward(logits: Self.floats(logits), labels: labels, batch: B, classes: K, gradScale: 1 / Float(B), dLogits: &d)
        XCTAssertEqual(res.lossSum / Double(B), ref(logits), accuracy: 1e-6)
        var correct = 0
        for n in 0..<B { let row = Array(logits[(n * K)..<((n + 1) * K)]); if row.firstIndex(of: row.max()!)! == Int(labels[n]) { correct += 1 } }
        XCTAssertEqual(res.correct, correct)
        checkGradient("cross-entropy dlogits", logits, analytic: d.map(Double.init), samples: B * K) { ref($0) }
    }
}
