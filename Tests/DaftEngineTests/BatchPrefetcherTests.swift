import XCTest
import Foundation
@testable import DaftEngine

/// The training step's prefetcher: what it returns never depends on timing or on what was prefetched.
final class BatchPrefetcherTests: XCTestCase {
    /// A batch that records who made it (the made-ahead ones come from the background queue).
    func makeBatch(_ epoch: Int, _ step: Int) -> [Int] { [epoch, step, epoch * 1000 + step] }

    func testReturnsExactlyTheAskedBatchesThroughEpochChangesAndJumps() throws {
        let made = ManagedCounter()
        let p = BatchPrefetcher<[Int]>(depth: 2, stepsPerEpoch: 5) { e, s in
            made.increment()
            usleep(UInt32.random(in: 0...2000))   // random timing: results must not care
            return self.makeBatch(e, s)
        }
        // an epoch, a resume into the middle of the next, a jump back (a restarted run), the last step
        let asks = [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (0, 0), (1, 4)]
        for (e, s) in asks { XCTAssertEqual(try p.batch(epoch: e, step: s), makeBatch(e, s), "epoch \(e) step \(s)") }
        // it never makes more than the asked batches plus `depth` ahead of each ask
        XCTAssertLessThanOrEqual(made.value, asks.count * 3)
    }

    func testAnErrorIsRethrownByTheStepThatNeedsTheBatch() throws {
        struct Bad: Error {}
        let p = BatchPrefetcher<[Int]>(depth: 3, stepsPerEpoch: 10) { e, s in
            if s == 2 { throw Bad() }
            return [e, s]
        }
        XCTAssertEqual(try p.batch(epoch: 0, step: 0), [0, 0])
        XCTAssertEqual(try p.batch(epoch: 0, step: 1), [0, 1], "the prefetched failure of step 2 does not leak into step 1")
        XCTAssertThrowsError(try p.batch(epoch: 0, step: 2)) { XCTAssertTrue($0 is Bad) }
        XCTAssertEqual(try p.batch(epoch: 0, step: 3), [0, 3])
    }

    func testDepthZeroMakesEveryBatchOnTheCallingThread() throws {
        let p = BatchPrefetcher<Bool>(depth: 0, stepsPerEpoch: 4) { _, _ in Thread.isMainThread }
        for s in 0..<4 { XCTAssertTrue(try p.batch(epoch: 0, step: s)) }
    }
}

final class ManagedCounter: @unchecked Sendable {
    private var count = 0
    private let lock = NSLock()
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
