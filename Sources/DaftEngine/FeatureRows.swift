/// Row operations the closed-form heads and the seen-domain detector share, so they normalise and classify
/// features the same way.

/// Normalises each of `count` rows of `x` (row-major count×d) in place, x ← x / max(‖x‖₂, 1e-12) (torch's
/// `F.normalize`, so an all-zero row stays zero); returns Σ‖x‖₂ of the rows as they were.
@discardableResult
func normaliseRows(_ x: inout [Double], count: Int, dimension d: Int) -> Double {
    var norms = 0.0
    for r in 0..<count {
        var s = 0.0
        for j in 0..<d { let v = x[r * d + j]; s += v * v }
        let n = s.squareRoot()
        norms += n
        let inv = 1 / max(n, 1e-12)
        for j in 0..<d { x[r * d + j] *= inv }
    }
    return norms
}

/// `count` rows of raw float32 features (count×d) as float64, normalised as `normaliseRows` does; also Σ‖x‖₂ of
/// the raw rows.
func normalisedRows(_ features: UnsafePointer<Float>, count: Int, dimension d: Int) -> (rows: [Double], normSum: Double) {
    var x = (0..<(count * d)).map { Double(features[$0]) }
    let norms = normaliseRows(&x, count: count, dimension: d)
    return (x, norms)
}

/// The column of the largest value in each of `count` rows of `scores` (row-major count×classes), the first on ties.
func argmaxRows<T: Comparable>(_ scores: UnsafePointer<T>, count: Int, classes: Int) -> [Int32] {
    (0..<count).map { r in
        var best = 0
        for k in 1..<max(classes, 1) where scores[r * classes + k] > scores[r * classes + best] { best = k }
        return Int32(best)
    }
}
