import Foundation

/// Measures this machine's `sgemm` throughput, the yardstick for "percent of peak", in the same time window as the
/// work compared with it: `sample()` runs one square n×n×n single-thread OpenBLAS sgemm per `ComputeThreads` part,
/// all parts at once (each on its own matrices, like the kernels' parts), and `gflops` is the rate over every sample
/// so far. Interleaved with training steps, a host whose speed drifts during a run (this project's 2-core VM moved
/// 63–84 GFLOP/s within one 10-second run) is compared with itself rather than with one instant of it.
public final class GemmPeak {
    /// The matrix order of a sample.
    public let n: Int
    private let parts: Int
    private let a: FloatBuffer, b: FloatBuffer
    /// Each part's product A·B (written by every sample).
    let c: [FloatBuffer]
    /// Total seconds of the samples (warm-up excluded).
    public private(set) var seconds = 0.0
    /// Each sample's GFLOP/s, in order.
    public private(set) var samples: [Double] = []

    /// Allocates the matrices (one result per part) and runs one untimed warm-up sample.
    public init(n: Int = 1024) {
        self.n = n
        parts = ComputeThreads.count
        a = FloatBuffer(capacity: n * n); b = FloatBuffer(capacity: n * n)
        c = (0..<parts).map { _ in FloatBuffer(capacity: n * n) }
        var rng = SplitMix64(seed: 1)
        for i in 0..<(n * n) { a.pointer[i] = Float(rng.nextUnit()); b.pointer[i] = Float(rng.nextUnit()) }
        runOnce()
    }

    /// Floating-point operations of one sample (every part).
    public var flopsPerSample: Double { 2 * Double(n) * Double(n) * Double(n) * Double(parts) }

    /// Times one sample.
    public func sample() {
        let t0 = DispatchTime.now().uptimeNanoseconds
        runOnce()
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        seconds += dt
        samples.append(flopsPerSample / dt / 1e9)
    }

    /// GFLOP/s over all samples (total FLOPs / total time); 0 before the first.
    public var gflops: Double { seconds > 0 ? flopsPerSample * Double(samples.count) / seconds / 1e9 : 0 }

    private func runOnce() {
        ComputeThreads.run(parts) { part in
            sgemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a.pointer, lda: n, b: b.pointer, ldb: n,
                  beta: 0, c: c[part].pointer, ldc: n)
        }
    }
}
