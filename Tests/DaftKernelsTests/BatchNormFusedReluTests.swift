import XCTest
@testable import DaftKernels

/// The one-pass ReLU mask + batch-norm backward sums (`accumulateBackwardSums(_:maskingRelu:output:…)`) against
/// the two passes it replaces (`reluMask`, then `accumulateBackwardSums`): the same masked dy and the same sums,
/// bit for bit, on planes with every vector tail (16-, 8- and scalar parts), outputs at zero, below zero and NaN,
/// on one thread and on several; without an output, the plain sums and dy untouched.
final class BatchNormFusedReluTests: XCTestCase {
    func testFusedMaskAndSumsEqualTheTwoPasses() {
        for (threads, s) in [(1, Shape4(3, 4, 5, 7)), (1, Shape4(2, 3, 5, 5)), (2, Shape4(4, 6, 9, 9)), (3, Shape4(2, 5, 4, 6))] {
            ComputeThreads.set(threads)
            defer { ComputeThreads.set(1) }
            var rng = GradientCheckTests.RNG(UInt64(40 + s.count))
            let x = GradientCheckTests.floats(rng.normal(s.count)), dyIn = GradientCheckTests.floats(rng.normal(s.count))
            var y = GradientCheckTests.floats(rng.normal(s.count))
            for i in stride(from: 0, to: s.count, by: 11) { y[i] = 0 }
            for i in stride(from: 5, to: s.count, by: 13) { y[i] = .nan }
            let mean = GradientCheckTests.floats(rng.normal(s.c, scale: 0.1)), invstd = GradientCheckTests.floats(rng.uniform(s.c, 0.5, 2))

            var twoPassDy = dyIn, twoPassSums = [Double](repeating: 0.25, count: 2 * s.c)
            BatchNormKernels.reluMask(&twoPassDy, output: y, count: s.count)
            twoPassSums.withUnsafeMutableBufferPointer {
                BatchNormKernels.accumulateBackwardSums(x, twoPassDy, s, mean: mean, invstd: invstd,
                                                        sumDy: $0.baseAddress!, sumDyXhat: $0.baseAddress! + s.c)
            }
            var fusedDy = dyIn, fusedSums = [Double](repeating: 0.25, count: 2 * s.c)
            fusedSums.withUnsafeMutableBufferPointer {
                BatchNormKernels.accumulateBackwardSums(x, maskingRelu: &fusedDy, output: y, s, mean: mean, invstd: invstd,
                                                        sumDy: $0.baseAddress!, sumDyXhat: $0.baseAddress! + s.c)
            }
            let what = "\(s), \(threads) thread(s)"
            XCTAssertEqual(fusedDy.map(\.bitPattern), twoPassDy.map(\.bitPattern), "masked dy, \(what)")
            XCTAssertEqual(fusedSums.map(\.bitPattern), twoPassSums.map(\.bitPattern), "sums (added to 0.25), \(what)")
            XCTAssertTrue(zip(fusedDy, y).allSatisfy { $1 > 0 || $0 == 0 }, "zero wherever y ≤ 0 or NaN, \(what)")
            XCTAssertTrue(zip(zip(fusedDy, dyIn), y).allSatisfy { !($1 > 0) || $0.0 == $0.1 }, "unchanged where y > 0, \(what)")

            // without an output: the plain sums, dy left as it was
            var plainSums = [Double](repeating: 0.25, count: 2 * s.c), unmaskedSums = plainSums, untouched = dyIn
            plainSums.withUnsafeMutableBufferPointer {
                BatchNormKernels.accumulateBackwardSums(x, dyIn, s, mean: mean, invstd: invstd,
                                                        sumDy: $0.baseAddress!, sumDyXhat: $0.baseAddress! + s.c)
            }
            unmaskedSums.withUnsafeMutableBufferPointer {
                BatchNormKernels.accumulateBackwardSums(x, maskingRelu: &untouched, output: nil, s, mean: mean, invstd: invstd,
                                                        sumDy: $0.baseAddress!, sumDyXhat: $0.baseAddress! + s.c)
            }
            XCTAssertEqual(untouched.map(\.bitPattern), dyIn.map(\.bitPattern), "no output: dy untouched, \(what)")
            XCTAssertEqual(unmaskedSums.map(\.bitPattern), plainSums.map(\.bitPattern), "no output: the plain sums, \(what)")
            XCTAssertNotEqual(unmaskedSums, fusedSums, "the mask changes the sums, \(what)")
        }
    }
}
