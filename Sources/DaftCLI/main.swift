import ArgumentParser
import Foundation
import DaftCommandLine
import DaftCoordinator
import Logging

/// `daft`: the command line of the Domain-Aware Fine-Tuning trainer (runs alone or under mpirun).
struct Daft: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daft",
        abstract: "Domain-Aware Fine-Tuning of pretrained ResNets, data-parallel over MPI.",
        subcommands: [Pretrain.self, Finetune.self, Adapt.self, Evaluate.self, ConvertBN.self, Inspect.self, Bench.self, BenchConv.self, DataCommand.self, Interpolate.self, Report.self])
}

// --config FILE sets any flag; flags given on the command line win. Errors are logged once per rank (rank 0's
// plain, the others' prefixed with their rank); ArgumentParser's usage errors and help are printed by rank 0.
let log = RankLogHandler.logger(level: .info)
var command: ParsableCommand
do {
    command = try ConfigFile.parseCommand(Daft.self, commandLine: Array(CommandLine.arguments.dropFirst()))
} catch let error as ConfigFileError {
    log.error("\(error)")
    exit(1)
} catch {
    if RankLogHandler.rankFromEnvironment() != 0 { exit(Daft.exitCode(for: error).rawValue) }
    Daft.exit(withError: error)
}
do {
    try command.run()
} catch let preempted as Preempted {
    log.info("\(preempted)")  // every rank exits with the documented code once the checkpoint is on disk
    exit(Preempted.exitCode)
} catch {
    if Daft.exitCode(for: error).isSuccess { Daft.exit(withError: error) }  // `daft` alone: the help text
    log.error("\(Daft.message(for: error))")
    exit(Daft.exitCode(for: error).rawValue)
}
