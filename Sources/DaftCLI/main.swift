import ArgumentParser
import Foundation
import DaftCoordinator

/// `daft`: the command line of the Domain-Aware Fine-Tuning trainer (runs alone or under mpirun).
struct Daft: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daft",
        abstract: "Domain-Aware Fine-Tuning of pretrained ResNets, data-parallel over MPI.",
        subcommands: [Pretrain.self, Finetune.self, Evaluate.self, ConvertBN.self, Inspect.self, Bench.self, DataCommand.self, Interpolate.self, Report.self])
}

// --config FILE sets any flag; flags given on the command line win.
var arguments = Array(CommandLine.arguments.dropFirst())
if let path = ConfigFile.configPath(in: arguments) {
    do {
        arguments = ConfigFile.mergedArguments(commandLine: arguments, config: try ConfigFile.load(URL(fileURLWithPath: path)))
    } catch {
        FileHandle.standardError.write(Data("daft: error: \(error)\n".utf8))
        exit(1)
    }
}
Daft.main(arguments)
