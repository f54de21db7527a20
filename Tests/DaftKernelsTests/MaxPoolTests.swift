import XCTest
@testable import DaftKernels

/// The stem's 3×3, stride-2, padding-1 max-pool (vectorised inside the plane) gives what the per-window
/// scalar loop gives: the same values bit for bit and the same argmax, ties and NaNs included.
final class MaxPoolTests: XCTestCase {
    /// Every output through `Elementwise.maxPoolWindow`, the border-checking loop.
    static func scalarPool(_ x: [Float], _ s: Shape4) -> (y: [Float], argmax: [Int32]) {
        let o = Elementwise.maxPoolShape(s, kernel: 3, stride: 2, padding: 1)
        var y = [Float](repeating: 0, count: o.count), a = [Int32](repeating: -1, count: o.count)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in a.withUnsafeMutableBufferPointer { ap in
            for nc in 0..<(s.n * s.c) { for oh in 0..<o.h { for ow in 0..<o.w {
                let i = nc * o.spatial + oh * o.w + ow
                Elementwise.maxPoolWindow(xp.baseAddress! + nc * s.spatial, h: s.h, w: s.w, oh: oh, ow: ow, kernel: 3, stride: 2,
                                          padding: 1, yp.baseAddress! + i, argmax: ap.baseAddress! + i, base: Int32(nc * s.spatial))
            } } }
        } } }
        return (y, a)
    }

    func testStemPoolMatchesScalarWindowsWithTiesAndNaNs() {
        var rng = SplitMix64(seed: 7)
        // widths below, at and above the first vector block (it needs 18 columns), odd and even, with and without
        // a last block computed again over the one before it; 112 is ResNet's
        for (h, w) in [(5, 7), (4, 17), (9, 18), (9, 19), (8, 20), (7, 33), (11, 35), (6, 40), (5, 49), (7, 112), (3, 113)] {
            let s = Shape4(2, 3, h, w)
            // few distinct levels, so most windows hold ties; some NaNs and infinities
            var x = (0..<s.count).map { _ in Float(Int(rng.next() % 5)) - 2 }
            for _ in 0..<(s.count / 40 + 1) { x[Int(rng.next() % UInt64(s.count))] = .nan }
            for _ in 0..<(s.count / 60 + 1) { x[Int(rng.next() % UInt64(s.count))] = -.infinity }
            let o = Elementwise.maxPoolShape(s, kernel: 3, stride: 2, padding: 1)
            var y = [Float](repeating: 0, count: o.count), a = [Int32](repeating: -1, count: o.count)
            Elementwise.maxPool(x, s, kernel: 3, stride: 2, padding: 1, &y, argmax: &a)
            let reference = Self.scalarPool(x, s)
            XCTAssert(y.map(\.bitPattern) == reference.y.map(\.bitPattern), "\(h)×\(w): values")
            XCTAssert(a == reference.argmax, "\(h)×\(w): argmax")
            XCTAssert(y.contains { $0.isNaN }, "\(h)×\(w): the test holds NaN windows")
            // every argmax points at its window's maximum
            for i in 0..<o.count where !y[i].isNaN {
                XCTAssertEqual(x[Int(a[i])], y[i])
            }
        }
    }
}
