import XCTest
import DaftKernels
@testable import DaftEngine

/// `daft bench-conv`'s measurement: every path runs the same layer, and the figures are the medians of the timed
/// rounds, the ratios the medians of the per-round ratios to the first path.
final class ConvolutionBenchmarkTests: XCTestCase {
    func testPathsComputeTheSameLayerAndRatiosAreToTheFirst() {
        let g = ConvGeometry(cin: 8, cout: 12, kernel: 3, stride: 1, padding: 1)
        let r = ConvolutionBenchmark(geometry: g, input: Shape4(3, 8, 9, 9), paths: [.sgemm, .direct], rounds: 5).run()
        XCTAssertEqual(r.paths.map(\.path), [.sgemm, .direct])
        // forward output, weight and input gradients of the direct kernels match im2col + sgemm to float rounding
        XCTAssertGreaterThan(r.largestRelativeDifference, 0, "different kernels add in different orders")
        XCTAssertLessThan(r.largestRelativeDifference, 1e-5)
        let first = r.paths[0], median = ConvolutionBenchmark.median
        for p in r.paths {
            XCTAssertEqual(p.forwardRounds.count, 5); XCTAssertEqual(p.backwardRounds.count, 5)
            XCTAssertEqual(p.forwardMilliseconds, 1000 * median(p.forwardRounds))
            XCTAssertEqual(p.backwardMilliseconds, 1000 * median(p.backwardRounds))
            XCTAssertEqual(p.forwardRatio, median(zip(p.forwardRounds, first.forwardRounds).map { $0 / $1 }))
            XCTAssertEqual(p.backwardRatio, median(zip(p.backwardRounds, first.backwardRounds).map { $0 / $1 }))
            XCTAssertEqual(p.forwardGflops, 2 * Double(g.forwardMACs(Shape4(3, 8, 9, 9))) / median(p.forwardRounds) / 1e9,
                           accuracy: 1e-9 * p.forwardGflops)
            XCTAssertEqual(p.backwardGflops * p.backwardMilliseconds, 2 * p.forwardGflops * p.forwardMilliseconds,
                           accuracy: 1e-9 * p.forwardGflops * p.forwardMilliseconds, "backward counts twice the forward's FLOPs")
        }
        XCTAssertGreaterThan(r.sgemmGflops, 0)
    }

    /// The same path twice computes bit-identical outputs and gradients (the comparison pairs the right tensors).
    func testOnePathTwiceAgreesExactly() {
        let g = ConvGeometry(cin: 4, cout: 6, kernel: 3, stride: 2, padding: 1)
        let r = ConvolutionBenchmark(geometry: g, input: Shape4(2, 4, 8, 8), paths: [.sgemm, .sgemm], rounds: 1).run()
        XCTAssertEqual(r.paths.count, 2)
        XCTAssertEqual(r.largestRelativeDifference, 0)
    }
}
