import Foundation
import XCTest
import DaftTestSupport
import DaftInterop
import DaftKernels
import DaftModels
import DaftDistributed

/// max|a−b| ≤ rtol·max|b| + atol (see `closenessFailure`).
func engineAssertClose<T: BinaryFloatingPoint>(_ a: [T], _ b: [T], rtol: T, atol: T = 0, _ what: String,
                                                 file: StaticString = #filePath, line: UInt = #line) {
    if let m = closenessFailure(a, b, rtol: rtol, atol: atol, what) { XCTFail(m, file: file, line: line) }
}

final class ThreadGroup {
    let size: Int
    private let condition = NSCondition()
    private var arrived = 0, generation = 0
    private var accumulator: [Double] = [], result: [Double] = []

    init(size: Int) { self.size = size }

    func allReduce(_ values: [Double]) -> [Double] {
        condition.lock(); defer { condition.unlock() }
        let myGeneration = generation
        if arrived == 0 { accumulator = values } else {
            precondition(accumulator.count == values.count, "ranks disagree on the collective's size")
            for i in values.indices { accumulator[i] += values[i] }
        }
        arrived += 1
        if arrived == size {
            result = accumulator; arrived = 0; generation += 1
            condition.broadcast()
        } else {
            while generation == myGeneration { condition.wait() }
        }
        return result
    }

    /// Runs `body(rank, communicator)` on `size` threads and waits for all of them.
    func run<R>(_ body: @escaping (Int, Communicator) throws -> R) throws -> [R] {
        let slots = ThreadResults<R>(size), done = DispatchGroup()
        for r in 0..<size {
            done.enter()
            let t = Thread {
                let value = Result { try body(r, ThreadCommunicator(group: self, rank: r)) }
                slots.lock.lock(); slots.results[r] = value; slots.lock.unlock()
                done.leave()
            }
            t.stackSize = 8 << 20
            t.start()
        }
        done.wait()
        return try slots.results.map { try $0!.get() }
    }
}

/// Per-thread results of `ThreadGroup.run`, written under a lock.
final class ThreadResults<R>: @unchecked Sendable {
    let lock = NSLock()
    var results: [Result<R, Error>?]
    init(_ n: Int) { results = Array(repeating: nil, count: n) }
}

/// One rank of a `ThreadGroup`.
final class ThreadCommunicator: Communicator {
    let group: ThreadGroup
    let rank: Int
    var size: Int { group.size }
    init(group: ThreadGroup, rank: Int) { self.group = group; self.rank = rank }

    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) {
        let r = group.allReduce(Array(buffer))
        for i in 0..<buffer.count { buffer[i] = r[i] }
    }
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {
        let r = group.allReduce(buffer.map(Double.init))
        for i in 0..<buffer.count { buffer[i] = Float(r[i]) }
    }
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) {
        let r = group.allReduce(buffer.map(Double.init))
        for i in 0..<buffer.count { buffer[i] = Int64(r[i]) }
    }
    func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) -> PendingCollective {
        allReduceSum(buffer); return CompletedCollective()
    }
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) {
        let mine = rank == root ? buffer.map(Double.init) : [Double](repeating: 0, count: buffer.count)
        let r = group.allReduce(mine)
        for i in 0..<buffer.count { buffer[i] = UInt8(r[i]) }
    }
    func barrier() { _ = group.allReduce([]) }
    func allGather(_ values: [Double]) -> [[Double]] {
        var mine = [Double](repeating: 0, count: values.count * size)
        for (i, v) in values.enumerated() { mine[rank * values.count + i] = v }
        let r = group.allReduce(mine)
        return (0..<size).map { Array(r[($0 * values.count)..<(($0 + 1) * values.count)]) }
    }
}
