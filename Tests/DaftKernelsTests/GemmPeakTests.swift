import XCTest
@testable import DaftKernels

/// `GemmPeak`, the yardstick `daft bench` samples between its steps: what a sample counts and how samples combine.
final class GemmPeakTests: XCTestCase {
    override func tearDown() { ComputeThreads.set(1) }

    func testRateIsAllSamplesFlopsOverTheirTime() {
        let peak = GemmPeak(n: 96)
        XCTAssertEqual(peak.gflops, 0, "no rate before the first sample (the warm-up is not one)")
        XCTAssertTrue(peak.samples.isEmpty)
        for _ in 0..<4 { peak.sample() }
        XCTAssertEqual(peak.samples.count, 4)
        XCTAssertGreaterThan(peak.seconds, 0)
        XCTAssertEqual(peak.flopsPerSample, 2 * 96 * 96 * 96)
        // total work over total time (a step-time-weighted mean like the steps' own rate), not the mean of the rates
        XCTAssertEqual(peak.gflops, peak.flopsPerSample * 4 / peak.seconds / 1e9, accuracy: 1e-9 * peak.gflops)
        XCTAssertGreaterThanOrEqual(peak.gflops, peak.samples.min()! * (1 - 1e-12))
        XCTAssertLessThanOrEqual(peak.gflops, peak.samples.max()! * (1 + 1e-12))
        for (i, rate) in peak.samples.enumerated() { XCTAssertGreaterThan(rate, 0, "sample \(i)") }
    }

    func testEveryComputeThreadMultipliesItsOwnMatrices() {
        ComputeThreads.set(2)
        let peak = GemmPeak(n: 64)
        XCTAssertEqual(peak.flopsPerSample, 2 * 2 * 64 * 64 * 64, "one n³ product per thread, at once")
        peak.sample()
        XCTAssertEqual(peak.gflops, peak.flopsPerSample / peak.seconds / 1e9, accuracy: 1e-9 * peak.gflops)
    }
}
