import XCTest
import Foundation
@testable import DaftKernels

/// `ComputeThreads`: the pool runs every part exactly once, and the kernels compute with several threads
/// what they compute with one — bit for bit for forward passes, input gradients, batch norm and elementwise
/// kernels; weight gradients (one partial sum per part) to float rounding, and reproducibly.
final class ComputeThreadsTests: XCTestCase {
    override func tearDown() { ComputeThreads.set(1) }

    func testPoolRunsEveryPartOnceAndNestedCallsRunInline() {
        ComputeThreads.set(3)
        for parts in [2, 3] {
            var hits = [Int](repeating: 0, count: parts * 4)
            hits.withUnsafeMutableBufferPointer { h in
                let base = h.baseAddress!
                for round in 0..<200 {
                    ComputeThreads.run(parts) { part in
                        // a call from inside a part (while the pool is busy) runs on that part's thread, one sub-part
                        // after another: its sub-part 1 counts only when it ran on the outer part's own thread
                        let outer = pthread_self()
                        ComputeThreads.run(2) { sub in
                            if sub == 1 && round == 0 && pthread_equal(pthread_self(), outer) != 0 { base[parts * 2 + part] += 1 }
                        }
                        base[part] += 1
                    }
                }
            }
            XCTAssertEqual(Array(hits[0..<parts]), Array(repeating: 200, count: parts), "\(parts) parts: each ran once per call")
            XCTAssertEqual(Array(hits[(parts * 2)..<(parts * 3)]), Array(repeating: 1, count: parts), "nested call ran inline")
        }
        XCTAssertEqual(ComputeThreads.parts(10, minimumPerPart: 4), 2, "no part smaller than the minimum")
        XCTAssertEqual(ComputeThreads.parts(100), 3, "at most `count` parts")
        XCTAssertEqual((0..<3).map { ComputeThreads.range($0, of: 3, total: 10) }, [0..<3, 3..<6, 6..<10])
    }

    typealias RNG = GradientCheckTests.RNG

    /// Forward, dW and dx of one convolution with `threads` threads.
    func conv(_ g: ConvGeometry, _ xs: Shape4, threads: Int, kernels: DirectKernelISA, seed: UInt64) -> (y: [Float], dw: [Float], dx: [Float]) {
        ComputeThreads.set(threads)
        defer { ComputeThreads.set(1) }
        var rng = RNG(seed)
        let ys = g.outputShape(xs)
        let x = GradientCheckTests.floats(rng.normal(xs.count)), w = GradientCheckTests.floats(rng.normal(g.weightCount, scale: 0.2))
        let dy = GradientCheckTests.floats(rng.normal(ys.count))
        var y = [Float](repeating: .nan, count: ys.count), dw = [Float](repeating: 0.5, count: g.weightCount)
        var dx = [Float](repeating: 0.25, count: xs.count)
        let ws = ConvWorkspace(directKernels: kernels)
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in dy.withUnsafeBufferPointer { dp in
            y.withUnsafeMutableBufferPointer { Conv2D.forward(xp.baseAddress!, xs, weight: wp.baseAddress!, bias: nil, g, $0.baseAddress!, workspace: ws) }
            dw.withUnsafeMutableBufferPointer { dwp in dx.withUnsafeMutableBufferPointer { dxp in
                Conv2D.backward(xp.baseAddress!, xs, weight: wp.baseAddress!, g, dy: dp.baseAddress!, dWeight: dwp.baseAddress!,
                                dBias: nil, dx: dxp.baseAddress!, workspace: ws)
            } }
        } } }
        return (y, dw, dx)
    }

    /// Every convolution path (direct 3×3 of both kernel families, im2col chunks, stride 2, 1×1, the 7×7 stem)
    /// with 2 and 3 threads over an uneven batch of 5.
    func testConvolutionsWithThreadsMatchOneThread() {
        let cases: [(ConvGeometry, Shape4)] = [
            (ConvGeometry(cin: 16, cout: 16, kernel: 3, stride: 1, padding: 1), Shape4(5, 16, 14, 14)),   // direct, groups 3+2 / 2|3 / 1|2|2
            (ConvGeometry(cin: 64, cout: 64, kernel: 3, stride: 1, padding: 1), Shape4(5, 64, 7, 7)),     // direct, groups 5 / 2|3 / 1|2|2
            (ConvGeometry(cin: 8, cout: 16, kernel: 3, stride: 2, padding: 1), Shape4(5, 8, 15, 15)),     // im2col, stride 2
            (ConvGeometry(cin: 32, cout: 24, kernel: 1), Shape4(5, 32, 9, 9)),                             // pointwise
            (ConvGeometry(cin: 128, cout: 128, kernel: 3, stride: 1, padding: 1), Shape4(5, 128, 6, 6)),  // im2col, same-stride-1 dx
            (ConvGeometry(cin: 3, cout: 8, kernel: 7, stride: 2, padding: 3), Shape4(5, 3, 32, 32)),      // stem
        ]
        let families: [DirectKernelISA] = DirectKernelISA.avx512Supported ? [.avx2, .avx512] : [.avx2]
        for kernels in families {
            for (i, (g, xs)) in cases.enumerated() {
                let what = "\(g.kh)x\(g.kw) s\(g.strideH) \(g.cin)->\(g.cout) \(xs) \(kernels)"
                let one = conv(g, xs, threads: 1, kernels: kernels, seed: UInt64(40 + i))
                for threads in [2, 3] {
                    let many = conv(g, xs, threads: threads, kernels: kernels, seed: UInt64(40 + i))
                    XCTAssert(many.y == one.y, "\(what): forward with \(threads) threads is bit-identical")
                    XCTAssert(many.dx == one.dx, "\(what): dx with \(threads) threads is bit-identical")
                    let scale = one.dw.map { abs($0 - 0.5) }.max()!
                    let worst = zip(many.dw, one.dw).map { abs($0 - $1) }.max()!
                    XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "\(what): dW with \(threads) threads differs only by rounding")
                    XCTAssertGreaterThan(scale, 0.1, "\(what): the gradient is not trivially zero")
                    let again = conv(g, xs, threads: threads, kernels: kernels, seed: UInt64(40 + i))
                    XCTAssert(again.dw == many.dw, "\(what): dW with \(threads) threads is reproducible")
                }
            }
        }
    }

    /// Batch norm and the elementwise kernels split channels, planes or ranges, never a sum: bit-identical.
    func testBatchNormAndElementwiseWithThreadsAreBitIdentical() {
        let s = Shape4(6, 12, 40, 40)      // 115,200 floats: several parts of ≥ Elementwise.floatsPerPart
        var rng = RNG(9)
        let x = GradientCheckTests.floats(rng.normal(s.count)), dyIn = GradientCheckTests.floats(rng.normal(s.count))
        let b = GradientCheckTests.floats(rng.normal(s.count))
        let scale = GradientCheckTests.floats(rng.normal(s.c)), shift = GradientCheckTests.floats(rng.normal(s.c))
        let mean = GradientCheckTests.floats(rng.normal(s.c, scale: 0.1)), invstd = GradientCheckTests.floats(rng.uniform(s.c, 0.5, 2))
        let md = GradientCheckTests.floats(rng.normal(s.c)), mx = GradientCheckTests.floats(rng.normal(s.c))
        let ps = Elementwise.maxPoolShape(s, kernel: 3, stride: 2, padding: 1)

        func everything(threads: Int) -> [[Double]] {
            ComputeThreads.set(threads)
            defer { ComputeThreads.set(1) }
            var sums = [Double](repeating: 0, count: 4 * s.c)
            var y = [Float](repeating: 0, count: s.count), dy = dyIn, dx = [Float](repeating: 0, count: s.count)
            var dxEval = dx, joined = dx, pooled = [Float](repeating: 0, count: ps.count)
            var arg = [Int32](repeating: 0, count: ps.count), dPool = [Float](repeating: 0, count: s.count)
            x.withUnsafeBufferPointer { xp in
                let x = xp.baseAddress!
                sums.withUnsafeMutableBufferPointer { sp in
                    let sp = sp.baseAddress!
                    BatchNormKernels.accumulateMoments(x, s, sum: sp, sumSquares: sp + s.c)
                    BatchNormKernels.accumulateBackwardSums(x, dyIn, s, mean: mean, invstd: invstd, sumDy: sp + 2 * s.c, sumDyXhat: sp + 3 * s.c)
                }
                BatchNormKernels.applyAffine(x, s, scale: scale, shift: shift, relu: true, &y)
                BatchNormKernels.reluMask(&dy, output: y, count: s.count)
                BatchNormKernels.trainBackwardInput(x, dy, s, mean: mean, invstd: invstd, gamma: scale, meanDy: md, meanDyXhat: mx, &dx)
                BatchNormKernels.evalBackwardInput(dy, s, scale: scale, &dxEval)
                Elementwise.addRelu(x, b, &joined, count: s.count)
                Elementwise.accumulate(b, into: &joined, count: s.count)
                Elementwise.maxPool(x, s, kernel: 3, stride: 2, padding: 1, &pooled, argmax: &arg)
                Elementwise.maxPoolBackwardAdd(pooled, ps, argmax: arg, &dPool)
            }
            return [sums] + [y, dy, dx, dxEval, joined, pooled, dPool].map { $0.map { Double($0) } }
        }
        let one = everything(threads: 1)
        for threads in [2, 3] {
            let many = everything(threads: threads)
            for (k, name) in ["BN sums", "affine+ReLU", "ReLU mask", "train dx", "eval dx", "addRelu+accumulate", "max-pool", "max-pool dx"].enumerated() {
                XCTAssert(many[k] == one[k], "\(name) with \(threads) threads is bit-identical")
            }
        }
        ComputeThreads.set(3)
        XCTAssertEqual(ComputeThreads.parts(s.count, minimumPerPart: Elementwise.floatsPerPart), 3, "the test tensor is split")
    }
}
