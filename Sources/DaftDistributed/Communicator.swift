import Foundation

/// A group of ranks that run the same program and combine data with collectives.
///
/// Every rank must call the same collectives in the same order with the same element counts
/// (MPI semantics). Implementations are not thread safe: call them from the thread that created
/// the communicator (MPI is initialised with `MPI_THREAD_FUNNELED`).
public protocol Communicator: AnyObject {
    /// This process's index in `0..<size`.
    var rank: Int { get }
    /// Number of ranks.
    var size: Int { get }
    /// In-place element-wise sum over all ranks.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>)
    /// In-place element-wise sum over all ranks.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>)
    /// In-place element-wise sum over all ranks.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>)
    /// Starts an in-place sum (`MPI_Iallreduce`); the buffer must stay alive and untouched until the
    /// returned collective completes.
    func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) -> PendingCollective
    /// Copies `root`'s bytes into `buffer` on every rank (all ranks pass the same byte count).
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int)
    /// Returns once every rank has entered the barrier.
    func barrier()
    /// Gathers `values` from every rank (each rank contributes the same count); result indexed by rank.
    func allGather(_ values: [Double]) -> [[Double]]
}

/// A collective that was started and may still be in flight.
public protocol PendingCollective: AnyObject {
    /// Drives progress and reports whether the collective has completed (cheap; never blocks).
    func test() -> Bool
    /// Blocks until the collective has completed (watched by the stall watchdog for MPI).
    func wait()
}

/// A collective that is already complete (single-process identities, empty buffers).
public final class CompletedCollective: PendingCollective {
    /// Creates a completed collective.
    public init() {}
    /// Always `true`.
    public func test() -> Bool { true }
    /// Returns immediately.
    public func wait() {}
}

/// Rank 0 of a group of one: every collective is the identity.
public final class SingleProcessCommunicator: Communicator {
    /// Always 0.
    public let rank = 0
    /// Always 1.
    public let size = 1
    /// Creates the single-process communicator.
    public init() {}
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {}
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) {}
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) {}
    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) -> PendingCollective { CompletedCollective() }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) {
        precondition(root == 0, "broadcast root \(root) out of range for a single process")
    }
    public func barrier() {}
    public func allGather(_ values: [Double]) -> [[Double]] { [values] }
}

/// Chooses the communicator for this process.
public enum Communicators {
    /// `MPICommunicator.world` when the process was launched by OpenMPI's `mpirun`
    /// (`OMPI_COMM_WORLD_SIZE` is set, even for `-np 1`), otherwise a `SingleProcessCommunicator`.
    public static func fromEnvironment() -> Communicator {
        if launchedByMPI { return MPICommunicator.world }
        return SingleProcessCommunicator()
    }

    /// Whether the environment says this process is an OpenMPI rank.
    public static var launchedByMPI: Bool {
        ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil
    }
}

/// Array conveniences over the buffer collectives.
extension Communicator {
    /// In-place sum of `array` over ranks (same count on every rank).
    public func allReduceSum(_ array: inout [Float]) {
        array.withUnsafeMutableBufferPointer { allReduceSum($0) }
    }
    /// In-place sum of `array` over ranks (same count on every rank).
    public func allReduceSum(_ array: inout [Double]) {
        array.withUnsafeMutableBufferPointer { allReduceSum($0) }
    }
    /// In-place sum of `array` over ranks (same count on every rank).
    public func allReduceSum(_ array: inout [Int64]) {
        array.withUnsafeMutableBufferPointer { allReduceSum($0) }
    }
    /// Sum of one value over ranks.
    public func allReduceSum(_ value: Double) -> Double {
        var a = [value]; allReduceSum(&a); return a[0]
    }
    /// Sum of one value over ranks.
    public func allReduceSum(_ value: Int64) -> Int64 {
        var a = [value]; allReduceSum(&a); return a[0]
    }

    /// Every rank's `values` concatenated in rank order, on every rank; ranks may contribute different counts
    /// (one all-gather of the counts, then one of the values padded to the largest count).
    public func allGatherConcatenated(_ values: [Double]) -> [Double] {
        guard size > 1 else { return values }
        let counts = allGather([Double(values.count)]).map { Int($0[0]) }
        let widest = counts.max() ?? 0
        let parts = allGather(values + [Double](repeating: 0, count: widest - values.count))
        var out = [Double](); out.reserveCapacity(counts.reduce(0, +))
        for (r, part) in parts.enumerated() { out.append(contentsOf: part[0..<counts[r]]) }
        return out
    }

    /// Replaces `array` on every rank with `root`'s array (non-root arrays are resized to root's count).
    public func broadcast(_ array: inout [Float], root: Int) {
        let count = broadcastCount(array.count, root: root)
        if array.count != count { array = [Float](repeating: 0, count: count) }
        array.withUnsafeMutableBytes { broadcast($0, root: root) }
    }
    /// Replaces `array` on every rank with `root`'s array (non-root arrays are resized to root's count).
    public func broadcast(_ array: inout [Double], root: Int) {
        let count = broadcastCount(array.count, root: root)
        if array.count != count { array = [Double](repeating: 0, count: count) }
        array.withUnsafeMutableBytes { broadcast($0, root: root) }
    }
    /// Replaces `array` on every rank with `root`'s array (non-root arrays are resized to root's count).
    public func broadcast(_ array: inout [Int64], root: Int) {
        let count = broadcastCount(array.count, root: root)
        if array.count != count { array = [Int64](repeating: 0, count: count) }
        array.withUnsafeMutableBytes { broadcast($0, root: root) }
    }
    /// Returns `root`'s bytes on every rank; other ranks' arguments are ignored (pass `[]`).
    public func broadcast(_ bytes: [UInt8], root: Int) -> [UInt8] {
        let count = broadcastCount(bytes.count, root: root)
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { broadcast($0, root: root) }
        return out
    }
    /// Returns `root`'s string on every rank; other ranks' arguments are ignored (pass `""`).
    public func broadcast(_ string: String, root: Int) -> String {
        let bytes = broadcast(Array(string.utf8), root: root)
        return String(decoding: bytes, as: UTF8.self)
    }
    /// Returns `root`'s value on every rank.
    public func broadcast(_ value: Int, root: Int) -> Int { broadcastCount(value, root: root) }

    private func broadcastCount(_ count: Int, root: Int) -> Int {
        precondition(root >= 0 && root < size, "broadcast root \(root) out of range 0..<\(size)")
        var n = Int64(count)
        withUnsafeMutableBytes(of: &n) { broadcast($0, root: root) }
        return Int(n)
    }
}
