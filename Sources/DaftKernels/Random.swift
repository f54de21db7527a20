import Foundation

/// SplitMix64: a small, fast, seedable generator. Used wherever daft needs reproducible randomness
/// (weight init, random features); derived streams come from hashing (seed, purpose, index).
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 53 bits.
    public mutating func nextUnit() -> Double { Double(next() >> 11) * (1.0 / 9007199254740992.0) }
    /// Standard normal (Box–Muller).
    public mutating func nextNormal() -> Double {
        var u = nextUnit()
        while u <= 0 { u = nextUnit() }
        let v = nextUnit()
        return (-2 * Foundation.log(u)).squareRoot() * Foundation.cos(2 * Double.pi * v)
    }
    /// Mixes several values into one seed (for per-purpose streams).
    public static func mix(_ values: UInt64...) -> UInt64 {
        var g = SplitMix64(seed: 0x1234_5678_9ABC_DEF0)
        var h: UInt64 = 0
        for v in values { g.state ^= v &+ h; h = g.next() }
        return h
    }
}
