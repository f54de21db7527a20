import DaftDistributed
import Foundation

/// `daft-transport bench-allreduce`: bus bandwidth of the transport's all-reduce against a raw
/// `MPI_Allreduce` loop in the same run, and the cost/overlap of `GradientBucketer` on a ResNet-18-shaped arena.
struct Benchmark {
    var minBytes: Int
    var maxBytes: Int
    var secondsPerPoint: Double
    var arenaMB: Double
    var trials = 3

    func run() {
        let comm = Communicators.fromEnvironment()
        let mpi = comm as? MPICommunicator
        let n = comm.size
        let busFactor = n > 1 ? 2 * Double(n - 1) / Double(n) : 1
        if comm.rank == 0 {
            print("# daft-transport bench-allreduce: \(n) ranks, float32 sum in place, time = slowest rank")
            print("# busbw = algbw * 2(n-1)/n, algbw = bytes / time; GB/s = 1e9 B/s")
            if let mpi {
                print("# watchdog timeout: \(mpi.stallTimeout.map { "\($0) s" } ?? "off"), gate threshold: \(mpi.gateThresholdBytes) B")
            }
            print("# busbw GB/s: raw = MPI_Allreduce loop; daft = allReduceSum (default path); poll = MPI_Iallreduce + watched")
            print("# MPI_Test loop for all sizes; gate = watched MPI_Ibarrier then MPI_Allreduce for all sizes; best of \(trials) interleaved trials")
            print(["bytes".leftPad(10), "iters".leftPad(7), "raw".leftPad(9), "daft".leftPad(9), "poll".leftPad(9),
                   "gate".leftPad(9), "daft/raw".leftPad(8), "raw us".leftPad(10), "daft us".leftPad(10)].joined(separator: " "))
        }
        var bytes = minBytes
        while bytes <= maxBytes {
            let count = bytes / 4
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
            buffer.initialize(repeating: 1)
            // Calibrate iterations on the raw loop (agreed across ranks).
            let one = time(comm, iterations: 2) { mpi?.rawAllReduceSum(buffer) ?? comm.allReduceSum(buffer) } / 2
            let iterations = max(3, min(5000, Int(secondsPerPoint / max(one, 1e-7))))
            // Variants interleaved, best of `trials` each (the machine may be shared and noisy).
            var best = [Double](repeating: .infinity, count: 4)
            for _ in 0..<trials {
                best[0] = min(best[0], time(comm, iterations: iterations) { mpi?.rawAllReduceSum(buffer) ?? comm.allReduceSum(buffer) })
                best[1] = min(best[1], time(comm, iterations: iterations) { comm.allReduceSum(buffer) })
                if let mpi {
                    let saved = mpi.gateThresholdBytes
                    mpi.gateThresholdBytes = Int.max
                    best[2] = min(best[2], time(comm, iterations: iterations) { comm.allReduceSum(buffer) })
                    mpi.gateThresholdBytes = 0
                    best[3] = min(best[3], time(comm, iterations: iterations) { comm.allReduceSum(buffer) })
                    mpi.gateThresholdBytes = saved
                } else {
                    best[2] = best[1]; best[3] = best[1]
                }
            }
            buffer.deallocate()
            if comm.rank == 0 {
                func bw(_ t: Double) -> Double { Double(bytes) * Double(iterations) / t * busFactor / 1e9 }
                func us(_ t: Double) -> Double { t / Double(iterations) * 1e6 }
                print(String(format: "%10d %7d %9.3f %9.3f %9.3f %9.3f %8.2f %10.1f %10.1f", bytes, iterations, bw(best[0]), bw(best[1]),
                             bw(best[2]), bw(best[3]), best[0] / best[1], us(best[0]), us(best[1])))
            }
            bytes *= 4
        }
        bucketerBenchmark(comm)
    }

    /// Slowest rank's wall time for `iterations` runs of `body` (ranks synchronised first).
    func time(_ comm: Communicator, iterations: Int, _ body: () -> Void) -> Double {
        body()
        comm.barrier()
        let t0 = Date().timeIntervalSinceReferenceDate
        for _ in 0..<iterations { body() }
        let t = Date().timeIntervalSinceReferenceDate - t0
        return comm.allGather([t]).map { $0[0] }.max()!
    }

    /// ResNet-18's parameter sizes (forward order), scaled to about `arenaMB` megabytes.
    func resnet18Sizes() -> [Int] {
        var s = [9408, 64, 64]
        for _ in 0..<2 { s += [36864, 64, 64, 36864, 64, 64] }
        for (c, prev) in [(128, 64), (256, 128), (512, 256)] {
            s += [c * prev * 9, c, c, c * c * 9, c, c, c * prev, c, c]
            s += [c * c * 9, c, c, c * c * 9, c, c]
        }
        s += [512_000, 1000]
        let total = Double(s.reduce(0, +) * 4) / 1e6
        let scale = arenaMB / total
        return s.map { max(1, Int((Double($0) * scale).rounded())) }
    }

    func bucketerBenchmark(_ comm: Communicator) {
        let sizes = resnet18Sizes()
        var ranges: [Range<Int>] = []
        var offset = 0
        for s in sizes { ranges.append(offset..<(offset + s)); offset += s }
        let total = offset
        let arena = UnsafeMutablePointer<Float>.allocate(capacity: total)
        defer { arena.deallocate() }
        arena.initialize(repeating: 1, count: total)
        let steps = 5
        if comm.rank == 0 {
            print("")
            print(String(format: "# GradientBucketer on a ResNet-18-shaped arena: %d parameters, %.1f MB, %d steps each", sizes.count,
                         Double(total * 4) / 1e6, steps))
        }
        // Plain: one all-reduce of the whole arena + scale.
        let plain = time(comm, iterations: steps) {
            comm.allReduceSum(UnsafeMutableBufferPointer(start: arena, count: total))
            let s = 1 / Float(comm.size)
            for i in 0..<total { arena[i] *= s }
        } / Double(steps)
        if comm.rank == 0 { print(String(format: "plain allReduceSum(arena) + scale: %.2f ms/step", plain * 1e3)) }
        for bucketBytes in [1 << 20, 4 << 20, 25 << 20] {
            let bucketer = GradientBucketer(communicator: comm, arena: arena, parameterRanges: ranges, bucketBytes: bucketBytes)
            // No compute: pure overhead of bucketing against the single all-reduce.
            let bare = time(comm, iterations: steps) {
                for p in ranges.indices.reversed() { bucketer.gradientReady(p) }
                bucketer.finish()
            } / Double(steps)
            // Simulated backward: busy compute proportional to parameter size (about 2x the plain
            // all-reduce time in total), poll() after every parameter.
            let perElement = 2 * plain / Double(total)
            let computeOnly = time(comm, iterations: steps) {
                for p in ranges.indices.reversed() { spin(perElement * Double(ranges[p].count)) }
            } / Double(steps)
            var hidden = 0.0, blocked = 0.0, communication = 0.0
            let overlapped = time(comm, iterations: steps) {
                for p in ranges.indices.reversed() {
                    spin(perElement * Double(ranges[p].count))
                    bucketer.gradientReady(p)
                    bucketer.poll()
                }
                bucketer.finish()
                hidden += bucketer.stats.hiddenSeconds
                blocked += bucketer.stats.blockedSeconds
                communication += bucketer.stats.communicationSeconds
            } / Double(steps)
            let k = Double(steps + 1)  // time() runs the body once more as warm-up
            if comm.rank == 0 {
                print(String(format: "bucketBytes %5.1f MB: %2d buckets | no compute %.2f ms/step (overhead %+.2f ms vs plain) | "
                             + "backward sim: compute %.2f ms, compute+reduce %.2f ms (sequential would be %.2f ms), "
                             + "finish() blocked %.2f ms, comm %.2f ms, hidden %.0f%%",
                             Double(bucketBytes) / 1048576, bucketer.bucketRanges.count, bare * 1e3, (bare - plain) * 1e3,
                             computeOnly * 1e3, overlapped * 1e3, (computeOnly + plain) * 1e3, blocked / k * 1e3,
                             communication / k * 1e3, communication > 0 ? hidden / communication * 100 : 0))
            }
        }
    }

    func spin(_ seconds: Double) {
        let end = Date().timeIntervalSinceReferenceDate + seconds
        var x: Float = 1
        while Date().timeIntervalSinceReferenceDate < end { for _ in 0..<64 { x = x * 1.0000001 + 1e-7 } }
        if x.isNaN { print(x) }
    }
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
