import Foundation

/// Per-step accounting of a `GradientBucketer` (what was reduced and how much of it hid behind backward).
public struct BucketerStats: Sendable, Equatable, CustomStringConvertible {
    /// Buckets reduced this step.
    public var buckets: Int = 0
    /// Buckets whose all-reduce started before `finish()` (i.e. during backward).
    public var bucketsStartedEarly: Int = 0
    /// Bytes all-reduced this step (per rank).
    public var bytesReduced: Int = 0
    /// Seconds from the first bucket's start to the last observed completion.
    public var communicationSeconds: Double = 0
    /// Seconds spent blocked inside `finish()` (starting late buckets, waiting, scaling).
    public var blockedSeconds: Double = 0

    /// Creates empty statistics.
    public init() {}

    /// Communication time that overlapped other work: `max(0, communication − blocked)`.
    public var hiddenSeconds: Double { max(0, communicationSeconds - blockedSeconds) }
    /// `hiddenSeconds / communicationSeconds` (0 when nothing was reduced).
    public var hiddenFraction: Double { communicationSeconds > 0 ? hiddenSeconds / communicationSeconds : 0 }

    public var description: String {
        String(format: "%d buckets (%d early), %.2f MB, comm %.3f ms, blocked %.3f ms, hidden %.0f%%",
               buckets, bucketsStartedEarly, Double(bytesReduced) / 1e6, communicationSeconds * 1e3,
               blockedSeconds * 1e3, hiddenFraction * 100)
    }
}

/// DDP-style overlap of the gradient all-reduce with backward.
///
/// All gradients live in one flat `Float` arena; `parameterRanges[i]` is where parameter `i`'s gradient
/// lives (forward order, increasing, non-overlapping). Buckets are formed walking the parameters in
/// *reverse* order (backward produces the last layers first), closing a bucket once it holds at least
/// `bucketBytes` bytes, or when the next parameter is not adjacent in the arena; each bucket is therefore a
/// contiguous arena range and is reduced in place with one non-blocking all-reduce.
///
/// Per step: call `gradientReady(i)` as backward finishes parameter `i`'s gradient, `poll()` now and then
/// (between layers) so OpenMPI progresses the in-flight reductions, and `finish()` once backward is done:
/// it starts anything not yet started, waits for everything, and divides by `size` (gradient average).
/// Buckets always start in bucket order (bucket k only after buckets 0..<k) so every rank issues the
/// same collectives in the same order even if readiness differs. With one rank nothing is communicated.
public final class GradientBucketer {
    /// The communicator the buckets are reduced over.
    public let communicator: Communicator
    /// Arena element ranges of the buckets, in the order they are reduced (last parameters first).
    public let bucketRanges: [Range<Int>]
    /// Parameter indices of each bucket.
    public let bucketParameters: [[Int]]

    private let arena: UnsafeMutablePointer<Float>
    private let bucketOfParameter: [Int]
    private let parameterCount: Int
    private var ready: [Bool]
    private var remaining: [Int]
    private let initialRemaining: [Int]
    private var nextToStart = 0
    private var pending: [PendingCollective?]
    private var completed: [Bool]
    private var firstStart = 0.0
    private var lastCompletion = 0.0
    private var startedEarly = 0
    private var current = BucketerStats()
    /// Statistics of the last finished step.
    public private(set) var stats = BucketerStats()
    /// Sums over all finished steps (`buckets` etc. accumulate).
    public private(set) var totalStats = BucketerStats()
    /// Number of finished steps.
    public private(set) var steps = 0

    /// - Parameters:
    ///   - communicator: ranks to average over.
    ///   - arena: base of the flat gradient arena (must stay valid while the bucketer is used).
    ///   - parameterRanges: arena range of each parameter's gradient, in forward order.
    ///   - bucketBytes: target bucket size in bytes (buckets hold whole parameters; a parameter larger
    ///     than this is a bucket of its own).
    public init(communicator: Communicator, arena: UnsafeMutablePointer<Float>, parameterRanges: [Range<Int>],
                bucketBytes: Int = 25 << 20) {
        precondition(bucketBytes > 0, "bucketBytes must be positive")
        for i in parameterRanges.indices.dropFirst() {
            precondition(parameterRanges[i].lowerBound >= parameterRanges[i - 1].upperBound,
                         "parameter ranges must be increasing and non-overlapping (parameter \(i))")
        }
        self.communicator = communicator
        self.arena = arena
        self.parameterCount = parameterRanges.count
        var buckets: [[Int]] = []
        var ranges: [Range<Int>] = []
        var currentParams: [Int] = []
        var lower = 0, upper = 0
        func close() {
            if !currentParams.isEmpty { buckets.append(currentParams); ranges.append(lower..<upper) }
            currentParams = []
        }
        for p in parameterRanges.indices.reversed() {
            let r = parameterRanges[p]
            if !currentParams.isEmpty && r.upperBound != lower && !r.isEmpty { close() }
            if currentParams.isEmpty { lower = r.lowerBound; upper = r.upperBound }
            if !r.isEmpty { lower = r.lowerBound }
            currentParams.append(p)
            if (upper - lower) * MemoryLayout<Float>.size >= bucketBytes { close() }
        }
        close()
        bucketParameters = buckets
        bucketRanges = ranges
        var owner = [Int](repeating: 0, count: parameterRanges.count)
        for (b, params) in buckets.enumerated() { for p in params { owner[p] = b } }
        bucketOfParameter = owner
        initialRemaining = buckets.map(\.count)
        remaining = initialRemaining
        ready = [Bool](repeating: false, count: parameterRanges.count)
        pending = [PendingCollective?](repeating: nil, count: buckets.count)
        completed = [Bool](repeating: false, count: buckets.count)
    }

    /// Marks parameter `parameterIndex`'s gradient final for this step; starts every bucket that is
    /// complete and whose predecessors have started. Repeated calls in one step are ignored.
    public func gradientReady(_ parameterIndex: Int) {
        precondition(parameterIndex >= 0 && parameterIndex < parameterCount, "parameter \(parameterIndex) out of range")
        if ready[parameterIndex] { return }
        ready[parameterIndex] = true
        remaining[bucketOfParameter[parameterIndex]] -= 1
        startReadyBuckets(early: true)
    }

    /// Tests the in-flight reductions (`MPI_Test`) so OpenMPI progresses them while backward computes.
    public func poll() {
        guard communicator.size > 1 else { return }
        for b in 0..<nextToStart where !completed[b] {
            if let p = pending[b], p.test() {
                completed[b] = true
                lastCompletion = monotonicSeconds()
            }
        }
    }

    /// Starts the buckets not yet started, waits for all, scales the arena's buckets by `1/size`, records
    /// `stats` and resets for the next step.
    public func finish() {
        let t0 = monotonicSeconds()
        if communicator.size > 1 {
            while nextToStart < bucketRanges.count { start(nextToStart, early: false) }
            let scale = 1 / Float(communicator.size)
            for b in bucketRanges.indices {
                if !completed[b] {
                    pending[b]?.wait()
                    completed[b] = true
                    lastCompletion = monotonicSeconds()
                }
                let r = bucketRanges[b]
                let base = arena + r.lowerBound
                for i in 0..<r.count { base[i] *= scale }
            }
            current.communicationSeconds = bucketRanges.isEmpty ? 0 : lastCompletion - firstStart
            current.blockedSeconds = monotonicSeconds() - t0
            current.buckets = bucketRanges.count
            current.bucketsStartedEarly = startedEarly
        }
        stats = current
        totalStats.buckets += current.buckets
        totalStats.bucketsStartedEarly += current.bucketsStartedEarly
        totalStats.bytesReduced += current.bytesReduced
        totalStats.communicationSeconds += current.communicationSeconds
        totalStats.blockedSeconds += current.blockedSeconds
        steps += 1
        reset()
    }

    private func reset() {
        for i in ready.indices { ready[i] = false }
        remaining = initialRemaining
        for b in pending.indices { pending[b] = nil; completed[b] = false }
        nextToStart = 0
        startedEarly = 0
        current = BucketerStats()
    }

    private func startReadyBuckets(early: Bool) {
        guard communicator.size > 1 else { return }
        while nextToStart < bucketRanges.count && remaining[nextToStart] == 0 { start(nextToStart, early: early) }
    }

    private func start(_ b: Int, early: Bool) {
        let r = bucketRanges[b]
        if b == 0 { firstStart = monotonicSeconds() }
        pending[b] = communicator.startAllReduceSum(UnsafeMutableBufferPointer(start: arena + r.lowerBound, count: r.count))
        current.bytesReduced += r.count * MemoryLayout<Float>.size
        if early { startedEarly += 1 }
        nextToStart = b + 1
    }
}
