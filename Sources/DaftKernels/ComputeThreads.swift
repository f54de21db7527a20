import Foundation
import CBLAS
import Synchronization

/// The threads one process splits its kernels over (`--threads`, default 1).
///
/// Convolutions split the batch's samples into `count` contiguous parts (each part with its own scratch from
/// `ConvWorkspace`), batch norm splits its channels, elementwise kernels their index ranges. Every part
/// computes exactly what the single-threaded loop computes for it, so forward passes and input gradients are
/// bit-identical for any thread count; reductions over samples (weight gradients) add one partial sum per
/// part in part order, so they are reproducible for a given count and differ from one thread only by
/// float rounding.
///
/// OpenBLAS runs single-threaded inside those parts (each part calls `sgemm` on its own chunk); between
/// them it stays at one thread too, so no OpenBLAS worker spins on a core a kernel part needs. Large dense
/// solves that are not split by samples (ridge heads, their Cholesky factorisations) ask for `count`
/// OpenBLAS threads explicitly with `withBLASThreads`.
public enum ComputeThreads {
    nonisolated(unsafe) private static var current = 1
    nonisolated(unsafe) private static var pool = WorkerPool()

    /// The number of parts kernels split into.
    public static var count: Int { current }

    /// Sets the thread count for subsequent kernels (at least 1); OpenBLAS is set to one thread.
    public static func set(_ threads: Int) {
        current = max(1, threads)
        openblas_set_num_threads(1)
        pool.ensureWorkers(current - 1)
    }

    /// Runs `body` with `count` OpenBLAS threads (for BLAS/LAPACK work that is not split into parts).
    public static func withBLASThreads<T>(_ body: () throws -> T) rethrows -> T {
        if current == 1 { return try body() }
        openblas_set_num_threads(Int32(current))
        defer { openblas_set_num_threads(1) }
        return try body()
    }

    /// The number of parts to split `work` items into: at most `count`, and no part smaller than
    /// `minimumPerPart` items (below that, a thread costs more than it saves).
    @inline(__always)
    public static func parts(_ work: Int, minimumPerPart: Int = 1) -> Int {
        if current == 1 { return 1 }
        return max(1, min(current, work / max(1, minimumPerPart)))
    }

    /// Items `lo ..< hi` of part `part` when `total` items are split into `parts` contiguous parts.
    @inline(__always)
    public static func range(_ part: Int, of parts: Int, total: Int) -> Range<Int> {
        (total * part / parts) ..< (total * (part + 1) / parts)
    }

    /// Runs `body(part)` for part in 0 ..< parts, concurrently when parts > 1; returns when all are done.
    @inline(__always)
    public static func run(_ parts: Int, _ body: (Int) -> Void) {
        if parts <= 1 { body(0); return }
        pool.run(parts, body)
    }

    /// Runs `body(range)` over `total` items split into contiguous ranges of at least `minimumPerPart` items.
    @inline(__always)
    public static func forEachRange(_ total: Int, minimumPerPart: Int, _ body: (Range<Int>) -> Void) {
        let p = parts(total, minimumPerPart: minimumPerPart)
        if p == 1 { body(0 ..< total); return }
        pool.run(p) { body(range($0, of: p, total: total)) }
    }
}

/// The persistent threads behind `ComputeThreads.run`: part 0 runs on the calling thread, part i on worker
/// i − 1. Every worker answers every job (the ones without a part just count down), so the caller's wait for
/// the count to reach zero means no worker is still looking at the job when the next one is published. A
/// worker spins for a moment after a job (the next layer's parts usually follow within microseconds), then
/// sleeps on a semaphore. A call made while another is running (from another thread, or from inside a part)
/// runs its parts one after another on the calling thread.
final class WorkerPool: @unchecked Sendable {
    private let busy = Mutex(false)
    private let generation = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)
    private var workers: [Worker] = []
    private var parts = 0
    private var body: ((Int) -> Void)?

    /// One worker's wake-up: `asleep` is 1 while it waits (or is about to wait) on `wake`.
    final class Worker: @unchecked Sendable {
        let asleep = Atomic<Int>(0)
        let wake = DispatchSemaphore(value: 0)
    }

    /// How long a worker spins for the next job before it sleeps.
    static let spinNanoseconds: UInt64 = 200_000

    func ensureWorkers(_ count: Int) {
        while workers.count < count {
            let w = Worker(), index = workers.count
            workers.append(w)
            let seen = generation.load(ordering: .acquiring)    // read here: a job published before the thread starts is its first
            let thread = Thread { [unowned self] in self.workerLoop(w, part: index + 1, seen: seen) }
            thread.name = "daft-compute-\(index + 1)"
            thread.start()
        }
    }

    func run(_ parts: Int, _ body: (Int) -> Void) {
        let acquired = busy.withLock { taken -> Bool in
            if taken { return false }
            taken = true
            return true
        }
        if !acquired || parts - 1 > workers.count {
            for p in 0..<parts { body(p) }
            if acquired { busy.withLock { $0 = false } }
            return
        }
        withoutActuallyEscaping(body) { escaping in
            self.body = escaping
            self.parts = parts
            remaining.store(workers.count, ordering: .releasing)
            generation.wrappingAdd(1, ordering: .sequentiallyConsistent)
            for w in workers where w.asleep.exchange(0, ordering: .sequentiallyConsistent) == 1 { w.wake.signal() }
            escaping(0)
            while remaining.load(ordering: .acquiring) > 0 {}
            self.body = nil
        }
        busy.withLock { $0 = false }
    }

    private func workerLoop(_ w: Worker, part: Int, seen start: Int) {
        var seen = start
        while true {
            var spinStart: UInt64 = 0, spins = 0
            while generation.load(ordering: .sequentiallyConsistent) == seen {
                spins &+= 1
                if spins & 255 != 0 { continue }
                let now = DispatchTime.now().uptimeNanoseconds
                if spinStart == 0 { spinStart = now; continue }
                if now - spinStart < WorkerPool.spinNanoseconds { continue }
                w.asleep.store(1, ordering: .sequentiallyConsistent)
                if generation.load(ordering: .sequentiallyConsistent) == seen {
                    w.wake.wait()
                } else if w.asleep.exchange(0, ordering: .sequentiallyConsistent) == 0 {
                    w.wake.wait()    // the caller took the flag and signalled: consume it
                }
                spinStart = 0
            }
            seen = generation.load(ordering: .acquiring)
            if part < parts, let body { body(part) }
            remaining.wrappingSubtract(1, ordering: .releasing)
        }
    }
}
