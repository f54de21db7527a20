import CMPIShim
import Foundation
import Synchronization

/// Monotonic wall clock in seconds.
@inline(__always) func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Process-wide MPI lifecycle: `MPI_Init_thread(FUNNELED)` once, `MPI_Finalize` at exit.
enum MPIRuntime {
    private static let initialized: Bool = {
        let rc = daft_mpi_init()
        guard rc == 0 else {
            fputs("daft: MPI_Init_thread failed (error \(rc))\n", stderr)
            exit(70)
        }
        atexit {
            if daft_mpi_initialized() != 0 && daft_mpi_finalized() == 0 { _ = daft_mpi_finalize() }
        }
        return true
    }()

    static func ensureInitialized() { _ = initialized }
}

/// Element type tags understood by the C shim.
enum MPIElement {
    static let float = Int32(DAFT_FLOAT)
    static let double = Int32(DAFT_DOUBLE)
    static let int64 = Int32(DAFT_INT64)
    static let byte = Int32(DAFT_BYTE)
}

/// Ranks of `MPI_COMM_WORLD` talking over OpenMPI, with a stall watchdog on every wait.
///
/// MPI is initialised once per process (`MPI_Init_thread` with `MPI_THREAD_FUNNELED`) and finalised at
/// exit. Each instance duplicates `MPI_COMM_WORLD` twice: one communicator carries the collectives, the
/// other is the watchdog's side channel (only used after a timeout). Creating an instance is itself a
/// collective: every rank must create its communicators in the same order. Use `MPICommunicator.world`
/// for the process-wide instance.
///
/// Blocking collectives are issued as non-blocking MPI operations (or gated by a non-blocking barrier for
/// large all-reduces, see `gateThresholdBytes`) and waited on by polling `MPI_Test`; when one wait exceeds
/// `stallTimeout`, the waiting ranks exchange notices on the side channel, the lowest waiting rank prints
/// one line naming the ranks that never arrived, and the job is stopped with `MPI_Abort`.
public final class MPICommunicator: Communicator {
    /// The process-wide communicator over `MPI_COMM_WORLD` (created on first use).
    public static let world = MPICommunicator()

    public let rank: Int
    public let size: Int

    /// Seconds a single wait may block before the run is declared stalled and aborted; `nil` disables
    /// the watchdog. Defaults to `DAFT_STALL_TIMEOUT` (seconds; `0` or `off` disables) or 600 s.
    public var stallTimeout: Double?

    /// Blocking all-reduces of at least this many bytes are gated: a watched `MPI_Ibarrier` proves every
    /// rank has arrived, then the tuned blocking `MPI_Allreduce` runs. Smaller ones use `MPI_Iallreduce`
    /// plus a watched `MPI_Test` loop (which yields the CPU while waiting). With the watchdog disabled,
    /// blocking collectives call the blocking MPI functions.
    ///
    /// Default: `DAFT_GATE_BYTES` when set; else 0 (always gate) when every rank is on one node
    /// (shared memory: the blocking algorithm is ~2x faster than libnbc's `MPI_Iallreduce`), and
    /// `Int.max` (never gate) across nodes, where a spinning blocking `MPI_Allreduce` over TCP was measured
    /// 5–10x slower than the polled non-blocking one (docs/transport.md).
    public var gateThresholdBytes: Int

    /// Bounds the blocking `MPI_Allreduce` after a gate (started on first use).
    private lazy var gateWatchdog = GateWatchdog(timeout: stallTimeout ?? 600, rank: rank, size: size)

    /// Exit code passed to `MPI_Abort` when the watchdog fires.
    public static let stallExitCode: Int32 = 75

    /// Number of collectives this rank has started on this communicator (the watchdog's sequence number).
    public private(set) var collectiveCount = 0

    let comm: daft_comm_t
    private let side: daft_comm_t
    /// Sequence number and name of the collective this rank is currently waiting in.
    private var waitingSeq = -1
    private var waitingWhat = ""
    /// Buffers of fire-and-forget side-channel sends (must outlive the sends; tiny).
    private var sideSendBuffers: [UnsafeMutablePointer<Int64>] = []

    private static let maxChunk = 1 << 30
    private static let sideTag: Int32 = 7301

    /// Duplicates `MPI_COMM_WORLD` (initialising MPI if needed). Collective over all ranks.
    public init() {
        MPIRuntime.ensureInitialized()
        guard let c = daft_comm_dup(daft_comm_world()), let s = daft_comm_dup(daft_comm_world()) else {
            fputs("daft: MPI_Comm_dup failed\n", stderr)
            exit(70)
        }
        comm = c
        side = s
        rank = Int(daft_comm_rank(c))
        size = Int(daft_comm_size(c))
        stallTimeout = MPICommunicator.timeoutFromEnvironment()
        let env = ProcessInfo.processInfo.environment
        if let raw = env["DAFT_GATE_BYTES"], let bytes = Int(raw) {
            gateThresholdBytes = bytes
        } else if let local = env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap({ Int($0) }), local < size {
            gateThresholdBytes = Int.max
        } else {
            gateThresholdBytes = 0
        }
    }

    /// Parses `DAFT_STALL_TIMEOUT` (seconds; `0`, `off` or `none` disable). Default 600 s.
    public static func timeoutFromEnvironment() -> Double? {
        stallTimeout(parsing: ProcessInfo.processInfo.environment["DAFT_STALL_TIMEOUT"])
    }

    /// The stall timeout a `DAFT_STALL_TIMEOUT` value means: nil (unset) → 600 s; seconds > 0 → that many;
    /// `0`, a negative number, `off` or `none` (any case, surrounding spaces ignored) → nil, the watchdog off;
    /// anything else → 600 s with a warning on stderr.
    public static func stallTimeout(parsing raw: String?) -> Double? {
        guard let raw else { return 600 }
        let value = raw.trimmingCharacters(in: .whitespaces).lowercased()
        if value == "off" || value == "none" { return nil }
        guard let seconds = Double(value), !seconds.isNaN else {
            fputs("daft: ignoring DAFT_STALL_TIMEOUT=\(raw) (not a number); using 600 s\n", stderr)
            return 600
        }
        return seconds > 0 ? seconds : nil
    }

    // MARK: collectives

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {
        blockingAllReduce(UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, type: MPIElement.float,
                          elementSize: 4, what: "allReduceSum Float")
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) {
        blockingAllReduce(UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, type: MPIElement.double,
                          elementSize: 8, what: "allReduceSum Double")
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) {
        blockingAllReduce(UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, type: MPIElement.int64,
                          elementSize: 8, what: "allReduceSum Int64")
    }

    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) -> PendingCollective {
        let seq = nextSeq()
        let pending = MPIPendingCollective(communicator: self, seq: seq, what: "startAllReduceSum Float x\(buffer.count)")
        guard let base = buffer.baseAddress, buffer.count > 0 else {
            // Keep the sequence aligned across ranks even for empty buffers; nothing to move.
            return pending
        }
        forEachChunk(count: buffer.count) { offset, n in
            var request = daft_request_null()
            check(daft_iallreduce_sum(base + offset, Int32(n), MPIElement.float, comm, &request), "MPI_Iallreduce")
            pending.requests.append(request)
        }
        return pending
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) {
        precondition(root >= 0 && root < size, "broadcast root \(root) out of range 0..<\(size)")
        let seq = nextSeq()
        let what = "broadcast \(buffer.count) bytes from rank \(root)"
        guard let base = buffer.baseAddress, buffer.count > 0 else { return gateOnly(seq: seq, what: what) }
        if stallTimeout == nil {
            forEachChunk(count: buffer.count) { offset, n in
                check(daft_bcast(base + offset, Int32(n), MPIElement.byte, Int32(root), comm), "MPI_Bcast")
            }
            return
        }
        var requests: [daft_request_t?] = []
        forEachChunk(count: buffer.count) { offset, n in
            var request = daft_request_null()
            check(daft_ibcast(base + offset, Int32(n), MPIElement.byte, Int32(root), comm, &request), "MPI_Ibcast")
            requests.append(request)
        }
        for i in requests.indices { watchedWait(&requests[i], seq: seq, what: what) }
    }

    public func barrier() {
        let seq = nextSeq()
        if stallTimeout == nil { check(daft_barrier(comm), "MPI_Barrier"); return }
        var request = daft_request_null()
        check(daft_ibarrier(comm, &request), "MPI_Ibarrier")
        watchedWait(&request, seq: seq, what: "barrier")
    }

    public func allGather(_ values: [Double]) -> [[Double]] {
        let seq = nextSeq()
        let n = values.count
        precondition(n * size <= Int(Int32.max), "allGather of \(n) values per rank is too large")
        var out = [Double](repeating: 0, count: n * size)
        if n == 0 {
            gateOnly(seq: seq, what: "allGather 0 values")
            return Array(repeating: [], count: size)
        }
        values.withUnsafeBufferPointer { send in
            out.withUnsafeMutableBufferPointer { recv in
                if stallTimeout == nil {
                    check(daft_allgather(send.baseAddress, recv.baseAddress, Int32(n), MPIElement.double, comm), "MPI_Allgather")
                } else {
                    var request = daft_request_null()
                    check(daft_iallgather(send.baseAddress, recv.baseAddress, Int32(n), MPIElement.double, comm, &request),
                          "MPI_Iallgather")
                    watchedWait(&request, seq: seq, what: "allGather \(n) values")
                }
            }
        }
        return (0..<size).map { Array(out[($0 * n)..<(($0 + 1) * n)]) }
    }

    /// Plain blocking `MPI_Allreduce` (in place, no watchdog, no sequence number): the baseline the
    /// benchmark compares against. Not for training code.
    public func rawAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {
        guard let base = buffer.baseAddress else { return }
        forEachChunk(count: buffer.count) { offset, n in
            check(daft_allreduce_sum(base + offset, Int32(n), MPIElement.float, comm), "MPI_Allreduce")
        }
    }

    /// Stops every rank of the job with `MPI_Abort` after printing `message` to stderr.
    public func abort(_ message: String, code: Int32 = 70) -> Never {
        fputs(message.hasSuffix("\n") ? message : message + "\n", stderr)
        fflush(stderr)
        daft_mpi_abort(daft_comm_world(), code)
        exit(code)
    }

    // MARK: internals

    private func nextSeq() -> Int {
        collectiveCount += 1
        return collectiveCount
    }

    private func forEachChunk(count: Int, _ body: (Int, Int) -> Void) {
        var offset = 0
        while offset < count {
            let n = min(MPICommunicator.maxChunk, count - offset)
            body(offset, n)
            offset += n
        }
    }

    func check(_ rc: Int32, _ call: String) {
        if rc != 0 { abort("daft: \(call) failed on rank \(rank) (MPI error \(rc))") }
    }

    /// A watched barrier standing in for a zero-size collective (keeps arrival checking uniform).
    private func gateOnly(seq: Int, what: String) {
        if stallTimeout == nil { return }
        var request = daft_request_null()
        check(daft_ibarrier(comm, &request), "MPI_Ibarrier")
        watchedWait(&request, seq: seq, what: what)
    }

    private func blockingAllReduce(_ base: UnsafeMutableRawPointer?, count: Int, type: Int32, elementSize: Int, what: String) {
        let seq = nextSeq()
        guard let base, count > 0 else { return gateOnly(seq: seq, what: what + " x0") }
        if stallTimeout == nil {
            forEachChunk(count: count) { offset, n in
                check(daft_allreduce_sum(base + offset * elementSize, Int32(n), type, comm), "MPI_Allreduce")
            }
            return
        }
        if count * elementSize >= gateThresholdBytes {
            // Gate: prove every rank arrived (watched), then run the tuned blocking algorithm.
            var request = daft_request_null()
            check(daft_ibarrier(comm, &request), "MPI_Ibarrier")
            watchedWait(&request, seq: seq, what: what + " x\(count)")
            // every rank has arrived; one that stops now (SIGSTOP, a dead node) would leave the others blocked
            // inside MPI, where no loop can poll: the gate watchdog thread bounds this call instead
            gateWatchdog.enter(seq: seq, what: what + " x\(count)")
            forEachChunk(count: count) { offset, n in
                check(daft_allreduce_sum(base + offset * elementSize, Int32(n), type, comm), "MPI_Allreduce")
            }
            gateWatchdog.leave()
            return
        }
        var requests: [daft_request_t?] = []
        forEachChunk(count: count) { offset, n in
            var request = daft_request_null()
            check(daft_iallreduce_sum(base + offset * elementSize, Int32(n), type, comm, &request), "MPI_Iallreduce")
            requests.append(request)
        }
        for i in requests.indices { watchedWait(&requests[i], seq: seq, what: what + " x\(count)") }
    }

    /// Polls `request` until it completes; on timeout runs the stall protocol (never returns then).
    func watchedWait(_ request: inout daft_request_t?, seq: Int, what: String) {
        var spins = 0
        var start = 0.0
        while true {
            let rc = daft_test(&request)
            if rc == 1 { break }
            if rc < 0 { abort("daft: MPI_Test failed on rank \(rank) in collective #\(seq) (\(what))") }
            spins += 1
            if spins == 1 {
                start = monotonicSeconds()
                waitingSeq = seq
                waitingWhat = what
            }
            if spins > 1024 { sched_yield() }
            if spins & 127 == 0 {
                answerStallNotices()
                if let timeout = stallTimeout, monotonicSeconds() - start > timeout {
                    stalled(seq: seq, what: what, waited: monotonicSeconds() - start)
                }
            }
        }
        waitingSeq = -1
    }

    /// Side-channel message: [sender rank, sequence number, kind] (kind 0 = "I timed out", 1 = "I am waiting").
    private func sendNotice(to dest: Int, seq: Int, kind: Int64) {
        let buffer = UnsafeMutablePointer<Int64>.allocate(capacity: 3)
        buffer[0] = Int64(rank); buffer[1] = Int64(seq); buffer[2] = kind
        sideSendBuffers.append(buffer)
        var request = daft_request_null()
        if daft_isend(buffer, 3, MPIElement.int64, Int32(dest), MPICommunicator.sideTag, side, &request) == 0 {
            _ = daft_request_free(&request)
        }
    }

    private func receiveNotice() -> (rank: Int, seq: Int, kind: Int64)? {
        var source: Int32 = -1
        var count: Int32 = 0
        guard daft_iprobe(-1, MPICommunicator.sideTag, side, &source, &count, MPIElement.int64) == 1 else { return nil }
        var message = [Int64](repeating: -1, count: 3)
        _ = daft_recv(&message, 3, MPIElement.int64, source, MPICommunicator.sideTag, side)
        return (Int(message[0]), Int(message[1]), message[2])
    }

    /// While waiting (not yet timed out): tell ranks that timed out that this rank is waiting too.
    private func answerStallNotices() {
        while let notice = receiveNotice() {
            if notice.kind == 0 { sendNotice(to: notice.rank, seq: waitingSeq, kind: 1) }
        }
    }

    /// The stall protocol: announce, collect who else is waiting during a grace period, report, abort.
    private func stalled(seq: Int, what: String, waited: Double) -> Never {
        for r in 0..<size where r != rank { sendNotice(to: r, seq: seq, kind: 0) }
        var waitingAt: [Int: Int] = [rank: seq]
        var timedOut: Set<Int> = [rank]
        let grace = min(max(0.5, (stallTimeout ?? 1) * 0.25), 5)
        let deadline = monotonicSeconds() + grace
        while monotonicSeconds() < deadline {
            while let notice = receiveNotice() {
                waitingAt[notice.rank] = notice.seq
                if notice.kind == 0 {
                    timedOut.insert(notice.rank)
                    sendNotice(to: notice.rank, seq: seq, kind: 1)
                }
            }
            usleep(1000)
        }
        let missing = (0..<size).filter { waitingAt[$0] == nil }
        let elsewhere = waitingAt.filter { $0.value != seq }.sorted { $0.key < $1.key }
        let here = waitingAt.filter { $0.value == seq }.keys.sorted()
        var line = "daft watchdog: collective #\(seq) (\(what)) stalled for \(String(format: "%.1f", waited)) s; "
        line += "did not arrive: " + (missing.isEmpty ? "none" : (missing.count == 1 ? "rank " : "ranks ")
            + missing.map(String.init).joined(separator: ","))
        if !elsewhere.isEmpty {
            line += "; waiting in other collectives: " + elsewhere.map { "rank \($0.key) at #\($0.value)" }.joined(separator: ", ")
        }
        line += "; waiting here: \(here.map(String.init).joined(separator: ",")) — aborting"
        // The lowest rank that itself timed out reports; the others stay quiet unless it fails to abort.
        if timedOut.min() == rank { abort(line, code: MPICommunicator.stallExitCode) }
        let backup = monotonicSeconds() + grace * 2
        while monotonicSeconds() < backup { usleep(10_000) }
        abort(line, code: MPICommunicator.stallExitCode)
    }
}

/// An in-flight `MPI_Iallreduce` (possibly several chunks) whose `wait()` is watched for stalls.
final class MPIPendingCollective: PendingCollective {
    unowned let communicator: MPICommunicator
    let seq: Int
    let what: String
    var requests: [daft_request_t?] = []
    private var done = false

    init(communicator: MPICommunicator, seq: Int, what: String) {
        self.communicator = communicator
        self.seq = seq
        self.what = what
    }

    func test() -> Bool {
        if done { return true }
        for i in requests.indices {
            let rc = daft_test(&requests[i])
            if rc < 0 { communicator.check(-rc, "MPI_Test") }
            if rc != 1 { return false }
        }
        done = true
        return true
    }

    func wait() {
        if done { return }
        for i in requests.indices { communicator.watchedWait(&requests[i], seq: seq, what: what) }
        done = true
    }
}

/// The stall watchdog of the one call that cannot poll: the tuned blocking `MPI_Allreduce` that runs once a gate
/// (a watched `MPI_Ibarrier`) has shown every rank arrived. A rank stopped between its gate and the all-reduce
/// (SIGSTOP, a frozen node) leaves the others blocked inside MPI for ever; this thread notices a call older than
/// the stall timeout, prints one line naming the collective (and, with 2 ranks, the other rank) and ends the
/// process with `_exit(75)` — no MPI call from this thread (MPI is `FUNNELED`); `mpirun` then ends the job.
final class GateWatchdog: @unchecked Sendable {
    private struct Current { var seq = -1; var what = ""; var since = 0.0 }
    private let current = Mutex(Current())
    private let timeout: Double, rank: Int, size: Int
    private var started = false

    init(timeout: Double, rank: Int, size: Int) {
        self.timeout = timeout; self.rank = rank; self.size = size
    }

    /// The calling (MPI) thread enters the blocking call `seq`.
    func enter(seq: Int, what: String) {
        if !started { started = true; start() }
        let now = monotonicSeconds()
        current.withLock { $0 = Current(seq: seq, what: what, since: now) }
    }

    /// The blocking call returned.
    func leave() { current.withLock { $0.seq = -1 } }

    private func start() {
        let interval = min(1.0, max(0.05, timeout / 4))
        let thread = Thread { [self] in
            var last = monotonicSeconds()
            while true {
                usleep(UInt32(interval * 1e6))
                let woke = monotonicSeconds()
                defer { last = woke }
                if woke - last > max(2 * interval, timeout / 2) {
                    // this process itself was stopped (SIGSTOP, then SIGCONT from mpirun ending the job): the
                    // stalled rank is this one, not a peer; restart the clock rather than blame another rank
                    current.withLock { $0.since = woke }
                    continue
                }
                let c = current.withLock { $0 }
                let waited = monotonicSeconds() - c.since
                guard c.seq >= 0, waited > timeout else { continue }
                let peer = size == 2 ? "rank \(1 - rank)" : "unknown (each rank still inside it reports this line; the silent one stopped)"
                let line = "daft watchdog: collective #\(c.seq) (\(c.what)) stalled for \(String(format: "%.1f", waited)) s inside MPI_Allreduce "
                    + "after every rank passed its gate; did not finish: \(peer); waiting here: \(rank) — aborting\n"
                fputs(line, stderr)
                fflush(stderr)
                _exit(MPICommunicator.stallExitCode)
            }
        }
        thread.name = "daft gate watchdog"
        thread.start()
    }
}
