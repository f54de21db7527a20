import DaftDistributed
import Foundation

/// The MPI test scenarios (`daft-transport scenario NAME`); each exits 0 on success and prints what failed
/// otherwise (then the job is aborted, so mpirun exits non-zero).
enum Scenarios {
    static let table: [(String, (Communicator) -> Void)] = [
        ("allreduce", allReduce),
        ("nonblocking", nonBlocking),
        ("broadcast", broadcast),
        ("allgather", allGather),
        ("barrier", barrier),
        ("bucketer", bucketer),
        ("consistency", consistency),
        ("compute", compute),
        ("stall", stall),
        ("stall-bucketer", stallBucketer),
        ("stall-after-gate", stallAfterGate),
    ]
    /// Scenarios included in `all` (the stall scenarios abort by design).
    static let names = table.map(\.0)

    static func run(_ name: String) {
        let comm = Communicators.fromEnvironment()
        if name == "all" {
            for (n, body) in table where !n.hasPrefix("stall") && n != "compute" {
                body(comm)
                if comm.rank == 0 { print("ok \(n) (\(comm.size) ranks)") }
            }
            return
        }
        guard let body = table.first(where: { $0.0 == name })?.1 else {
            fputs("unknown scenario \(name); known: \(names.joined(separator: ", ")), all\n", stderr)
            exit(2)
        }
        body(comm)
        comm.barrier()
        if comm.rank == 0 { print("ok \(name) (\(comm.size) ranks)") }
    }

    static func fail(_ comm: Communicator, _ message: String) -> Never {
        let line = "FAIL rank \(comm.rank): \(message)"
        if let mpi = comm as? MPICommunicator { mpi.abort(line, code: 1) }
        fputs(line + "\n", stderr)
        exit(1)
    }

    static func expect(_ comm: Communicator, _ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fail(comm, message()) }
    }

    /// Integer-valued test data, so sums are exact in any reduction order.
    static func value(rank: Int, index: Int) -> Double { Double((rank + 1) * 3 + (index % 97) - 40) }
    static func sumOver(size: Int, index: Int) -> Double { (0..<size).reduce(0) { $0 + value(rank: $1, index: index) } }

    // MARK: scenarios

    static func allReduce(_ comm: Communicator) {
        for count in [0, 1, 7, 1000, 70_000, 1 << 20] {
            var f = (0..<count).map { Float(value(rank: comm.rank, index: $0)) }
            var d = (0..<count).map { value(rank: comm.rank, index: $0) + 0.5 }
            var l = (0..<count).map { Int64(value(rank: comm.rank, index: $0)) * (1 << 40) }
            comm.allReduceSum(&f)
            comm.allReduceSum(&d)
            comm.allReduceSum(&l)
            for i in 0..<count {
                let s = sumOver(size: comm.size, index: i)
                expect(comm, f[i] == Float(s), "Float all-reduce count \(count) [\(i)] = \(f[i]), expected \(s)")
                expect(comm, d[i] == s + 0.5 * Double(comm.size), "Double all-reduce count \(count) [\(i)] = \(d[i])")
                expect(comm, l[i] == Int64(s) * (1 << 40), "Int64 all-reduce count \(count) [\(i)] = \(l[i])")
            }
        }
        expect(comm, comm.allReduceSum(Double(comm.rank)) == Double(comm.size * (comm.size - 1) / 2), "scalar sum")
    }

    static func nonBlocking(_ comm: Communicator) {
        let counts = [5, 4096, 300_000]
        var buffers = counts.map { n in (0..<n).map { Float(value(rank: comm.rank, index: $0)) } }
        var pointers: [UnsafeMutableBufferPointer<Float>] = []
        for b in buffers.indices {
            let p = UnsafeMutableBufferPointer<Float>.allocate(capacity: buffers[b].count)
            _ = p.initialize(from: buffers[b])
            pointers.append(p)
        }
        let pending = pointers.map { comm.startAllReduceSum($0) }
        var polls = 0
        while !pending.allSatisfy({ $0.test() }) { polls += 1; if polls > 50_000_000 { fail(comm, "Iallreduce never completed") } }
        pending.forEach { $0.wait() }  // wait after completion is a no-op
        for (b, p) in pointers.enumerated() {
            for i in 0..<p.count {
                expect(comm, p[i] == Float(sumOver(size: comm.size, index: i)), "non-blocking buffer \(b) [\(i)] = \(p[i])")
            }
        }
        // wait() without test(), several in flight.
        let more = pointers.map { comm.startAllReduceSum($0) }
        more.reversed().forEach { $0.wait() }
        for (b, p) in pointers.enumerated() {
            for i in 0..<p.count {
                expect(comm, p[i] == Float(sumOver(size: comm.size, index: i) * Double(comm.size)), "second round \(b) [\(i)]")
            }
            p.deallocate()
        }
        buffers.removeAll()
    }

    static func broadcast(_ comm: Communicator) {
        for root in 0..<comm.size {
            var raw = [UInt8](repeating: UInt8(comm.rank), count: 100_003)
            if comm.rank == root { for i in raw.indices { raw[i] = UInt8((i * 7 + root) & 0xFF) } }
            raw.withUnsafeMutableBytes { comm.broadcast($0, root: root) }
            for i in raw.indices { expect(comm, raw[i] == UInt8((i * 7 + root) & 0xFF), "raw broadcast from \(root) [\(i)]") }

            var floats: [Float] = comm.rank == root ? (0..<1234).map { Float($0) * 0.25 + Float(root) } : []
            comm.broadcast(&floats, root: root)
            expect(comm, floats.count == 1234, "array broadcast count \(floats.count)")
            for i in floats.indices { expect(comm, floats[i] == Float(i) * 0.25 + Float(root), "array broadcast [\(i)]") }

            let text = comm.broadcast(comm.rank == root ? "root is \(root): żółw ✓" : "", root: root)
            expect(comm, text == "root is \(root): żółw ✓", "string broadcast got \(text)")
            let bytes = comm.broadcast(comm.rank == root ? [1, 2, 3, UInt8(root)] : [], root: root)
            expect(comm, bytes == [1, 2, 3, UInt8(root)], "byte broadcast got \(bytes)")
            let empty = comm.broadcast([UInt8](), root: root)
            expect(comm, empty.isEmpty, "empty broadcast")
        }
    }

    static func allGather(_ comm: Communicator) {
        let mine = [Double(comm.rank), Double(comm.rank) * 1.5, -1]
        let all = comm.allGather(mine)
        expect(comm, all.count == comm.size, "allGather rows \(all.count)")
        for r in 0..<comm.size { expect(comm, all[r] == [Double(r), Double(r) * 1.5, -1], "allGather row \(r) = \(all[r])") }
        let none = comm.allGather([])
        expect(comm, none.count == comm.size && none.allSatisfy(\.isEmpty), "empty allGather")
    }

    static func barrier(_ comm: Communicator) {
        for round in 0..<3 {
            let delay = 0.05 * Double((comm.rank + round) % comm.size)
            usleep(UInt32(delay * 1e6))
            let entered = Date().timeIntervalSince1970
            comm.barrier()
            let left = Date().timeIntervalSince1970
            let times = comm.allGather([entered, left])
            let lastEntry = times.map { $0[0] }.max()!
            // Every rank leaves after the last one entered (same host clock; 1 ms slack for clock reads).
            for r in 0..<comm.size {
                expect(comm, times[r][1] + 0.001 >= lastEntry, "rank \(r) left barrier round \(round) before rank entered")
            }
        }
    }

    /// GradientBucketer result == plain all-reduce averaged, for several bucket sizes and readiness orders.
    static func bucketer(_ comm: Communicator) {
        // Parameter sizes like a small network: conv weights, BN vectors, an empty parameter, a big fc.
        let sizes = [864, 32, 32, 0, 9216, 64, 64, 36_864, 128, 128, 5, 262_144, 10, 1]
        var ranges: [Range<Int>] = []
        var offset = 0
        for s in sizes { ranges.append(offset..<(offset + s)); offset += s }
        let total = offset
        let arena = UnsafeMutablePointer<Float>.allocate(capacity: total)
        defer { arena.deallocate() }
        for bucketBytes in [4, 100, 4096, 40_000, 1 << 20, 25 << 20, Int.max / 2] {
            let bucketer = GradientBucketer(communicator: comm, arena: arena, parameterRanges: ranges, bucketBytes: bucketBytes)
            // Buckets must tile the arena exactly, in reverse parameter order.
            let covered = bucketer.bucketRanges.reduce(0) { $0 + $1.count }
            expect(comm, covered == total, "buckets cover \(covered) of \(total) elements")
            expect(comm, bucketer.bucketRanges.first?.upperBound == total, "first bucket ends at the arena end")
            for b in bucketer.bucketRanges.indices.dropFirst() {
                expect(comm, bucketer.bucketRanges[b].upperBound == bucketer.bucketRanges[b - 1].lowerBound, "buckets contiguous")
            }
            if bucketBytes == 4 { expect(comm, bucketer.bucketRanges.count >= sizes.filter { $0 > 0 }.count, "tiny buckets: one per parameter") }
            if bucketBytes >= 25 << 20 { expect(comm, bucketer.bucketRanges.count == 1, "huge bucket: one bucket") }
            for step in 0..<3 {
                for i in 0..<total { arena[i] = Float(value(rank: comm.rank, index: i + step)) }
                var reference = (0..<total).map { Float(value(rank: comm.rank, index: $0 + step)) }
                comm.allReduceSum(&reference)
                for i in reference.indices { reference[i] *= 1 / Float(comm.size) }
                switch step {
                case 0:  // backward order, poll between layers
                    for p in ranges.indices.reversed() { bucketer.gradientReady(p); bucketer.poll() }
                case 1:  // forward order (buckets can only start at the end), one parameter never marked
                    for p in ranges.indices.dropLast() { bucketer.gradientReady(p); bucketer.gradientReady(p) }
                default: // nothing marked: finish starts everything
                    break
                }
                bucketer.finish()
                for i in 0..<total where arena[i] != reference[i] {
                    fail(comm, "bucketBytes \(bucketBytes) step \(step): arena[\(i)] = \(arena[i]), plain average \(reference[i])")
                }
                let st = bucketer.stats
                if comm.size > 1 {
                    expect(comm, st.bytesReduced == total * 4, "stats bytes \(st.bytesReduced)")
                    expect(comm, st.buckets == bucketer.bucketRanges.count, "stats buckets")
                    if step == 0 { expect(comm, st.bucketsStartedEarly == st.buckets, "all buckets start early in backward order") }
                    if step == 2 { expect(comm, st.bucketsStartedEarly == 0, "nothing starts early when nothing is marked") }
                } else {
                    expect(comm, st.bytesReduced == 0, "single rank reduces nothing")
                }
            }
        }
    }

    static func consistency(_ comm: Communicator) {
        var params = (0..<10_001).map { Float($0) * 0.001 - 3 }
        do {
            try params.withUnsafeBufferPointer { try ConsistencyCheck.verify(comm, parameters: $0, step: 1) }
        } catch {
            fail(comm, "identical parameters reported as diverged: \(error)")
        }
        guard comm.size > 1 else { return }
        let bad = comm.size - 1
        if comm.rank == bad { params[4321] = params[4321].nextUp }  // one ulp on one rank
        do {
            try params.withUnsafeBufferPointer { try ConsistencyCheck.verify(comm, parameters: $0, step: 7) }
            fail(comm, "divergence of rank \(bad) not detected")
        } catch let error as ConsistencyError {
            expect(comm, error.divergedRanks == [bad] && error.step == 7, "wrong report: \(error)")
            if comm.rank == 0 { print("detected: \(error)") }
        } catch {
            fail(comm, "unexpected error \(error)")
        }
    }

    /// A deterministic mini training-like computation; prints a digest (compared between a plain process
    /// with SingleProcessCommunicator and `mpirun -np 1`).
    static func compute(_ comm: Communicator) {
        let sizes = [300, 20, 4000, 7]
        var ranges: [Range<Int>] = []
        var offset = 0
        for s in sizes { ranges.append(offset..<(offset + s)); offset += s }
        var params = (0..<offset).map { sin(Float($0) * 0.37) }
        comm.broadcast(&params, root: 0)
        let grads = UnsafeMutablePointer<Float>.allocate(capacity: offset)
        defer { grads.deallocate() }
        let bucketer = GradientBucketer(communicator: comm, arena: grads, parameterRanges: ranges, bucketBytes: 2048)
        for step in 0..<5 {
            for i in 0..<offset { grads[i] = cos(params[i] * Float(step + 1) + Float(comm.rank)) }
            for p in ranges.indices.reversed() { bucketer.gradientReady(p); bucketer.poll() }
            bucketer.finish()
            for i in 0..<offset { params[i] -= 0.1 * grads[i] }
            var loss = [Double(params.reduce(0) { $0 + $1 * $1 })]
            comm.allReduceSum(&loss)
            var counts: [Int64] = [Int64(offset), 1]
            comm.allReduceSum(&counts)
            let gathered = comm.allGather([loss[0]])
            if comm.rank == 0 {
                print(String(format: "step %d loss %.9f counts %lld %lld gathered %.9f", step, loss[0], counts[0], counts[1], gathered[0][0]))
            }
        }
        let digest = params.withUnsafeBufferPointer { ConsistencyCheck.checksum($0) }
        if comm.rank == 0 { print("digest \(String(digest, radix: 16)) size \(comm.size)") }
    }

    /// The rank that sleeps in the stall scenarios (`DAFT_TEST_STALL_RANK`, default 1).
    static var stallRank: Int { Int(ProcessInfo.processInfo.environment["DAFT_TEST_STALL_RANK"] ?? "") ?? 1 }

    /// One rank sleeps far past the stall timeout before an all-reduce: the watchdog must abort the job.
    static func stall(_ comm: Communicator) {
        var x = [Float](repeating: 1, count: 16)
        comm.allReduceSum(&x)
        if comm.rank == stallRank { sleep(120) }
        comm.allReduceSum(&x)
        fail(comm, "the stalled all-reduce completed; the watchdog did not fire")
    }

    /// The stalled rank passes the gate of the others' gated all-reduce (its barrier matches their `MPI_Ibarrier`)
    /// and then stops: they are blocked inside `MPI_Allreduce`, where only the gate watchdog thread can end them.
    static func stallAfterGate(_ comm: Communicator) {
        var x = [Float](repeating: 1, count: 16)
        comm.allReduceSum(&x)
        if comm.rank == stallRank {
            comm.barrier()
            sleep(120)
        }
        comm.allReduceSum(&x)
        fail(comm, "the all-reduce after the gate completed; the gate watchdog did not fire")
    }

    /// Rank 1 never finishes backward: GradientBucketer.finish() on the other ranks must be stopped.
    static func stallBucketer(_ comm: Communicator) {
        let arena = UnsafeMutablePointer<Float>.allocate(capacity: 4096)
        arena.initialize(repeating: 1, count: 4096)
        let bucketer = GradientBucketer(communicator: comm, arena: arena, parameterRanges: [0..<2048, 2048..<4096], bucketBytes: 4096)
        bucketer.gradientReady(1)
        bucketer.finish()
        if comm.rank == stallRank { sleep(120) }
        bucketer.gradientReady(1)
        bucketer.finish()
        fail(comm, "the stalled bucketer finished; the watchdog did not fire")
    }
}
