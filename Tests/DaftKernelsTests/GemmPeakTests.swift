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
        for part in 0..<2 { peak.c[part].pointer.update(repeating: .nan, count: 64 * 64) }
        peak.sample()
        XCTAssertEqual(peak.gflops, peak.flopsPerSample / peak.seconds / 1e9, accuracy: 1e-9 * peak.gflops)
        // both parts computed the product in this sample (the matrices are SplitMix64(seed: 1) units, A then B)
        var rng = SplitMix64(seed: 1)
        var a = [Float](repeating: 0, count: 64 * 64), b = a
        for i in 0..<(64 * 64) { a[i] = Float(rng.nextUnit()); b[i] = Float(rng.nextUnit()) }
        for part in 0..<2 {
            for (i, j) in [(0, 0), (5, 17), (63, 63)] {
                var want: Float = 0
                for k in 0..<64 { want += a[i * 64 + k] * b[k * 64 + j] }
                XCTAssertEqual(peak.c[part].pointer[i * 64 + j], want, accuracy: 1e-3, "part \(part) C[\(i), \(j)]")
            }
        }
    }
}
