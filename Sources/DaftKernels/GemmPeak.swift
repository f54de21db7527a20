import Foundation

/// Measures this machine's single-call `sgemm` throughput (the yardstick for "percent of peak").
public enum GemmPeak {
    /// GFLOP/s of a square n×n×n sgemm, best of `repeats` timed calls after one warm-up.
    public static func measure(n: Int = 1024, repeats: Int = 5) -> Double {
        let a = FloatBuffer(capacity: n * n), b = FloatBuffer(capacity: n * n), c = FloatBuffer(capacity: n * n)
        var rng = SplitMix64(seed: 1)
        for i in 0..<(n * n) { a.pointer[i] = Float(rng.nextUnit()); b.pointer[i] = Float(rng.nextUnit()) }
        var best = Double.infinity
        for r in 0...repeats {
            let t0 = DispatchTime.now().uptimeNanoseconds
            sgemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a.pointer, lda: n, b: b.pointer, ldb: n,
                  beta: 0, c: c.pointer, ldc: n)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if r > 0 { best = min(best, dt) }
        }
        return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
    }
}
