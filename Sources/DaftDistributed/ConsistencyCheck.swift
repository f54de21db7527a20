import Foundation

/// Ranks whose parameters disagree with the majority at a step.
public struct ConsistencyError: Error, CustomStringConvertible, Equatable {
    /// Training step the check ran at.
    public let step: Int
    /// Ranks whose checksum differs from the majority's (ties broken toward rank 0's value).
    public let divergedRanks: [Int]
    /// Checksum per rank (hex), indexed by rank.
    public let checksums: [String]

    public var description: String {
        "parameters diverged at step \(step): rank(s) \(divergedRanks.map(String.init).joined(separator: ",")) "
            + "differ from the majority (checksums by rank: \(checksums.joined(separator: " ")))"
    }
}

/// Cross-rank check that every rank holds bit-identical parameters.
public enum ConsistencyCheck {
    /// 64-bit checksum of the parameters' bit patterns (order sensitive; the element count is mixed in).
    public static func checksum(_ parameters: UnsafeBufferPointer<Float>) -> UInt64 {
        var lanes: (UInt64, UInt64, UInt64, UInt64) = (0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F,
                                                       0x1656_67B1_9E37_79F9, 0x85EB_CA77_C2B2_AE63)
        let m: UInt64 = 0xff51_afd7_ed55_8ccd
        let n = parameters.count
        var i = 0
        if let base = parameters.baseAddress {
            let words = UnsafeRawPointer(base).assumingMemoryBound(to: UInt32.self)
            while i + 4 <= n {
                lanes.0 = (lanes.0 ^ UInt64(words[i])) &* m
                lanes.1 = (lanes.1 ^ UInt64(words[i + 1])) &* m
                lanes.2 = (lanes.2 ^ UInt64(words[i + 2])) &* m
                lanes.3 = (lanes.3 ^ UInt64(words[i + 3])) &* m
                i += 4
            }
            while i < n { lanes.0 = (lanes.0 ^ UInt64(words[i])) &* m; lanes.0 ^= lanes.0 >> 29; i += 1 }
        }
        var h = UInt64(n) &* 0x9E37_79B9_7F4A_7C15
        for lane in [lanes.0, lanes.1, lanes.2, lanes.3] {
            h = (h ^ lane ^ (lane >> 33)) &* m
            h ^= h >> 31
        }
        return h
    }

    /// All-gathers each rank's checksum of `parameters` and throws `ConsistencyError` naming the ranks that
    /// differ from the majority. Collective: every rank must call it at the same step.
    public static func verify(_ comm: Communicator, parameters: UnsafeBufferPointer<Float>, step: Int) throws {
        let sum = checksum(parameters)
        let gathered = comm.allGather([Double(sum >> 32), Double(sum & 0xFFFF_FFFF)])
        let sums = gathered.map { (UInt64($0[0]) << 32) | UInt64($0[1]) }
        var votes: [UInt64: Int] = [:]
        for s in sums { votes[s, default: 0] += 1 }
        let best = votes.values.max() ?? 0
        let majority = votes[sums[0]] == best ? sums[0] : sums.first { votes[$0] == best }!
        let diverged = sums.indices.filter { sums[$0] != majority }
        if !diverged.isEmpty {
            throw ConsistencyError(step: step, divergedRanks: diverged,
                                   checksums: sums.map { String($0, radix: 16) })
        }
    }
}
