import XCTest
@testable import DaftDistributed

/// In-process tests of the single-process communicator, bucket layout and checksum.
final class SingleProcessTests: XCTestCase {
    func testSingleProcessCollectivesAreIdentities() {
        let comm = SingleProcessCommunicator()
        XCTAssertEqual(comm.rank, 0)
        XCTAssertEqual(comm.size, 1)
        var f: [Float] = [1, 2, 3]
        comm.allReduceSum(&f)
        XCTAssertEqual(f, [1, 2, 3])
        var l: [Int64] = [5]
        comm.allReduceSum(&l)
        XCTAssertEqual(l, [5])
        XCTAssertEqual(comm.allGather([1, 2]), [[1, 2]])
        XCTAssertEqual(comm.broadcast("hello", root: 0), "hello")
        XCTAssertEqual(comm.broadcast([9, 8], root: 0), [9, 8])
        var floats: [Float] = [4, 5]
        comm.broadcast(&floats, root: 0)
        XCTAssertEqual(floats, [4, 5])
        f.withUnsafeMutableBufferPointer { p in
            let pending = comm.startAllReduceSum(p)
            XCTAssertTrue(pending.test())
            pending.wait()
        }
        comm.barrier()
    }

    func testFromEnvironmentWithoutMPIIsSingleProcess() throws {
        try XCTSkipIf(Communicators.launchedByMPI, "running under mpirun")
        XCTAssertTrue(Communicators.fromEnvironment() is SingleProcessCommunicator)
    }

    func testBucketLayoutIsReverseAndContiguous() {
        let arena = UnsafeMutablePointer<Float>.allocate(capacity: 100)
        defer { arena.deallocate() }
        let ranges = [0..<10, 10..<30, 30..<30, 30..<90, 90..<100]
        let comm = SingleProcessCommunicator()
        let one = GradientBucketer(communicator: comm, arena: arena, parameterRanges: ranges, bucketBytes: 1 << 30)
        XCTAssertEqual(one.bucketRanges, [0..<100])
        XCTAssertEqual(one.bucketParameters, [[4, 3, 2, 1, 0]])
        let each = GradientBucketer(communicator: comm, arena: arena, parameterRanges: ranges, bucketBytes: 4)
        XCTAssertEqual(each.bucketRanges.first, 90..<100)
        XCTAssertEqual(each.bucketRanges.reduce(0) { $0 + $1.count }, 100)
        let mid = GradientBucketer(communicator: comm, arena: arena, parameterRanges: ranges, bucketBytes: 200)
        XCTAssertEqual(mid.bucketRanges, [30..<100, 0..<30])
        // A gap between parameters splits buckets (gap memory is never touched).
        let gapped = GradientBucketer(communicator: comm, arena: arena, parameterRanges: [0..<10, 20..<30], bucketBytes: 1 << 30)
        XCTAssertEqual(gapped.bucketRanges, [20..<30, 0..<10])
    }

    func testSingleRankBucketerLeavesGradientsAlone() {
        let arena = UnsafeMutablePointer<Float>.allocate(capacity: 8)
        defer { arena.deallocate() }
        for i in 0..<8 { arena[i] = Float(i) }
        let b = GradientBucketer(communicator: SingleProcessCommunicator(), arena: arena, parameterRanges: [0..<3, 3..<8], bucketBytes: 8)
        b.gradientReady(1); b.poll(); b.gradientReady(0); b.finish()
        XCTAssertEqual((0..<8).map { arena[$0] }, (0..<8).map(Float.init))
        XCTAssertEqual(b.stats.bytesReduced, 0)
        XCTAssertEqual(b.steps, 1)
    }

    func testChecksumSeesOneULP() throws {
        var a = (0..<1001).map { Float($0) * 0.5 }
        let h1 = a.withUnsafeBufferPointer { ConsistencyCheck.checksum($0) }
        a[500] = a[500].nextUp
        let h2 = a.withUnsafeBufferPointer { ConsistencyCheck.checksum($0) }
        XCTAssertNotEqual(h1, h2)
        try a.withUnsafeBufferPointer { try ConsistencyCheck.verify(SingleProcessCommunicator(), parameters: $0, step: 3) }
    }

    /// Every form `DAFT_STALL_TIMEOUT` takes, independent of the environment the test runs in.
    func testStallTimeoutParsing() {
        XCTAssertEqual(MPICommunicator.stallTimeout(parsing: nil), 600)        // unset: the default
        XCTAssertEqual(MPICommunicator.stallTimeout(parsing: "2"), 2)
        XCTAssertEqual(MPICommunicator.stallTimeout(parsing: " 2.5 "), 2.5)
        XCTAssertEqual(MPICommunicator.stallTimeout(parsing: "300"), 300)
        for off in ["0", "-3", "off", "OFF", "none", " None "] {
            XCTAssertNil(MPICommunicator.stallTimeout(parsing: off), "'\(off)' must disable the watchdog")
        }
        XCTAssertEqual(MPICommunicator.stallTimeout(parsing: "soon"), 600)     // not a number: warned, default
        XCTAssertEqual(MPICommunicator.stallTimeout(parsing: ""), 600)
        XCTAssertEqual(MPICommunicator.stallTimeout(parsing: "nan"), 600)     // Double("nan") parses, but is no timeout
    }
}
