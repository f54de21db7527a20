import Foundation
import Synchronization
import DaftDistributed

/// The preemption request a cluster sends before it kills a job: SIGTERM (Slurm's `--signal=TERM`, `scancel
/// --signal=TERM`, Kubernetes) or SIGUSR1 (what OpenMPI's `mpirun` forwards to every rank; `cluster/slurm.sbatch`
/// turns the batch shell's SIGTERM into it). The handler only sets a flag; the coordinator reads it at step and
/// phase boundaries, all ranks agree on it in one 16-byte all-reduce, every rank joins a final checkpoint and the
/// job exits with `Preempted.exitCode`.
public enum PreemptionSignal {
    /// The last preemption signal received (0: none). Lock-free, so the signal handler may store to it.
    private static let received = Atomic<Int32>(0)

    /// The signals that request a checkpoint-and-exit.
    public static let signals: [Int32] = [SIGTERM, SIGUSR1]

    /// Installs the handlers (idempotent). `signal` on glibc restarts interrupted system calls, so a checkpoint
    /// being written when the signal arrives is not cut short.
    public static func install() {
        _ = received.load(ordering: .relaxed)  // initialise the global before a handler can touch it
        for s in signals {
            signal(s) { number in PreemptionSignal.received.store(number, ordering: .relaxed) }
        }
    }

    /// The signal this process received, if any (0: none).
    public static var pending: Int32 { received.load(ordering: .relaxed) }

    /// Whether any rank has received a preemption signal, agreed in one 16-byte all-reduce of per-signal counts so
    /// every rank takes the same decision at the same point: the first signal any rank got and how many ranks got it,
    /// described for `Preempted.signal` ("SIGUSR1", or "SIGTERM on 1 of 2 ranks").
    public static func agreedRequest(_ comm: Communicator) -> (signal: Int32, ranks: Int, description: String)? {
        let pending = PreemptionSignal.pending
        var counts = signals.map { Int64($0 == pending ? 1 : 0) }
        comm.allReduceSum(&counts)
        guard let i = counts.firstIndex(where: { $0 > 0 }) else { return nil }
        let ranks = Int(counts[i])
        return (signals[i], ranks, name(signals[i]) + (ranks == comm.size ? "" : " on \(ranks) of \(comm.size) ranks"))
    }

    /// The signal's name for messages.
    public static func name(_ number: Int32) -> String {
        switch number {
        case SIGTERM: return "SIGTERM"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(number)"
        }
    }
}

/// Thrown on every rank once a preemption checkpoint is written; the CLI prints `description` (rank 0) and exits
/// with `exitCode` so a batch script can tell "preempted, resumable" from a failure and requeue the job.
public struct Preempted: Error, CustomStringConvertible {
    /// The documented exit status of a preempted run (distinct from 1, errors, and 75, the stall watchdog).
    public static let exitCode: Int32 = 76
    /// The global step the checkpoint holds.
    public let step: Int
    /// The checkpoint directory's name (`ckpt-` and the step in 9 digits).
    public let checkpoint: String
    /// The signal that asked for it, e.g. `SIGUSR1`, or `SIGTERM on 1 of 2 ranks` when not every rank received it.
    public let signal: String
    public var description: String {
        "preempted: checkpoint \(checkpoint) written at step \(step) (\(signal)); resume with --resume auto"
    }
}
