// daft-transport: all-reduce micro-benchmark, the MPI scenarios the transport tests run under mpirun, and the
// checkpoint writer the checkpoint crash test kills.
import DaftDistributed
import Foundation

setvbuf(stdout, nil, _IOLBF, 0)

let usage = """
usage: daft-transport bench-allreduce [--min-bytes N] [--max-bytes N] [--seconds S] [--arena-mb M] [--trials T]
       daft-transport scenario NAME      (NAME: \(Scenarios.names.joined(separator: ", ")), all)
       daft-transport list
       daft-transport checkpoint-writer ROOT   (writes checkpoints into ROOT until killed; for the crash test)
Run under mpirun for more than one rank, e.g.
  mpirun -np 2 --oversubscribe -x OPENBLAS_NUM_THREADS=1 daft-transport bench-allreduce
"""

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else {
    FileHandle.standardError.write(usage.data(using: .utf8)!)
    exit(2)
}

switch command {
case "bench-allreduce":
    var options: [String: String] = [:]
    var i = 1
    while i + 1 < arguments.count {
        options[arguments[i]] = arguments[i + 1]
        i += 2
    }
    Benchmark(
        minBytes: Int(options["--min-bytes"] ?? "") ?? 4 << 10,
        maxBytes: Int(options["--max-bytes"] ?? "") ?? 64 << 20,
        secondsPerPoint: Double(options["--seconds"] ?? "") ?? 0.15,
        arenaMB: Double(options["--arena-mb"] ?? "") ?? 44.7,
        trials: Int(options["--trials"] ?? "") ?? 3
    ).run()
case "scenario":
    guard arguments.count >= 2 else {
        FileHandle.standardError.write(usage.data(using: .utf8)!)
        exit(2)
    }
    Scenarios.run(arguments[1])
case "checkpoint-writer":
    guard arguments.count == 2 else {
        FileHandle.standardError.write(usage.data(using: .utf8)!)
        exit(2)
    }
    CheckpointWriter.run(root: arguments[1])
case "list":
    print(Scenarios.names.joined(separator: "\n"))
default:
    FileHandle.standardError.write(usage.data(using: .utf8)!)
    exit(2)
}
exit(0)
