import Foundation

// Counter-based randomness for data: every random decision is a pure function of a few integers
// (a seed, an epoch, a sample index, a stream), never of a global RNG or of the order of calls
// across samples, so results do not depend on the number of ranks, threads or load order.

/// A SplitMix64 pseudo-random generator (Steele, Lea & Flood 2014): 64 bits of state, one
/// multiply-xorshift finaliser per draw. Small, fast and fully deterministic on every platform.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The current state; the next output is `finalize(state &+ golden)`.
    public private(set) var state: UInt64

    /// A generator starting from `seed`.
    public init(seed: UInt64) { state = seed }

    /// A generator whose seed is the hash of `keys` (see `DataHash.combine`).
    public init(keys: UInt64...) { state = DataHash.combine(keys) }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return DataHash.finalize(state)
    }

    /// A uniform `Float` in [0, 1) with 24 random bits.
    public mutating func nextUnit() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// A uniform `Float` in `range` (inclusive of the lower bound).
    public mutating func nextFloat(in range: ClosedRange<Float>) -> Float {
        range.lowerBound + (range.upperBound - range.lowerBound) * nextUnit()
    }

    /// A uniform integer in `range` (Lemire's multiply-shift with rejection, so unbiased).
    public mutating func nextInt(in range: ClosedRange<Int>) -> Int {
        let span = UInt64(range.upperBound - range.lowerBound) &+ 1
        if span == 0 { return Int(bitPattern: UInt(next())) }
        return range.lowerBound + Int(next(upperBound: span))
    }

    /// An unbiased integer in `0 ..< bound`.
    public mutating func next(upperBound bound: UInt64) -> UInt64 {
        precondition(bound > 0)
        var m = next().multipliedFullWidth(by: bound)
        if m.low < bound {
            let threshold = (0 &- bound) % bound
            while m.low < threshold { m = next().multipliedFullWidth(by: bound) }
        }
        return m.high
    }

    /// A standard normal draw (Box–Muller, one value per call).
    public mutating func nextGaussian() -> Float {
        let u1 = max(Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0), 1e-300)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    /// `true` with probability `p`.
    public mutating func nextBool(probability p: Float) -> Bool { nextUnit() < p }
}

/// Stable hashing helpers used to derive independent random streams from integers and names.
public enum DataHash {
    /// The SplitMix64 / Murmur3-style 64-bit finaliser (a bijection with good avalanche).
    @inlinable
    public static func finalize(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Hashes an ordered list of keys into one 64-bit seed; different orders give different seeds.
    public static func combine(_ keys: [UInt64]) -> UInt64 {
        var h: UInt64 = 0x6A09_E667_F3BC_C908
        for k in keys { h = finalize(h ^ finalize(k &+ 0x9E37_79B9_7F4A_7C15)) }
        return h
    }

    /// Hashes keys given as variadic arguments.
    public static func combine(_ keys: UInt64...) -> UInt64 { combine(keys) }

    /// FNV-1a 64-bit hash of a string's UTF-8 bytes (stable across runs and platforms, unlike `Hasher`).
    public static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }
}

