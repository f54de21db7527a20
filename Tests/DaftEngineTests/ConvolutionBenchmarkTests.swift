import XCTest
import DaftKernels
@testable import DaftEngine

/// `daft bench-conv`'s measurement: every path runs the same layer, and the ratios are relative to the first path.
final class ConvolutionBenchmarkTests: XCTestCase {
    func testPathsComputeTheSameLayerAndRatiosAreToTheFirst() {
        let g = ConvGeometry(cin: 8, cout: 12, kernel: 3, stride: 1, padding: 1)
        let r = ConvolutionBenchmark(geometry: g, input: Shape4(3, 8, 9, 9), paths: [.sgemm, .direct], rounds: 3).run()
        XCTAssertEqual(r.paths.map(\.path), [.sgemm, .direct])
        XCTAssertEqual(r.paths[0].forwardRatio, 1)
        XCTAssertEqual(r.paths[0].backwardRatio, 1)
        // forward output, weight and input gradients of the direct kernels match im2col + sgemm to float rounding
        XCTAssertGreaterThan(r.largestRelativeDifference, 0, "different kernels add in different orders")
        XCTAssertLessThan(r.largestRelativeDifference, 1e-5)
        for p in r.paths {
            XCTAssertGreaterThan(p.forwardMilliseconds, 0); XCTAssertGreaterThan(p.backwardMilliseconds, 0)
            XCTAssertEqual(p.backwardGflops * p.backwardMilliseconds, 2 * p.forwardGflops * p.forwardMilliseconds,
                           accuracy: 1e-9 * p.forwardGflops * p.forwardMilliseconds, "backward counts twice the forward's FLOPs")
        }
        XCTAssertGreaterThan(r.sgemmGflops, 0)
    }

    func testOnePathAgreesWithItself() {
        let g = ConvGeometry(cin: 4, cout: 4, kernel: 3, stride: 2, padding: 1)
        let r = ConvolutionBenchmark(geometry: g, input: Shape4(2, 4, 8, 8), paths: [.sgemm], rounds: 1).run()
        XCTAssertEqual(r.paths.count, 1)
        XCTAssertEqual(r.largestRelativeDifference, 0)
    }
}
