import ArgumentParser
import Foundation

/// The long flags one (sub)command accepts, read from ArgumentParser's own description of the command tree
/// (`_dumpHelp()`, the JSON behind `--experimental-dump-help`), so the config-file check can never disagree
/// with what the parser accepts.
public struct CommandFlags: Equatable, Sendable {
    /// How a long flag takes its value.
    public enum Kind: Equatable, Sendable {
        /// A bare flag (`--json`): set by `true`, left out by `false`.
        case flag
        /// A flag that counts its repetitions (`-v -v`): a list of `true`s repeats it.
        case repeatingFlag
        /// An option with one value (`--epochs 3`).
        case option
        /// An option that may be given many times (`--ood NAME=DATA`): arrays and tables repeat it.
        case repeatingOption
    }

    /// The command's name as typed (`daft finetune`, `daft data export`).
    public let commandName: String
    /// Long names without the leading `--` → how they take values.
    public let flags: [String: Kind]

    /// Creates a table by hand.
    public init(commandName: String, flags: [String: Kind]) {
        self.commandName = commandName
        self.flags = flags
    }

    /// The flags of the subcommand of `root` that `commandLine` selects (its leading words that name
    /// subcommands, e.g. `["data", "export", "--out", "d"]` → `daft data export`).
    public static func of(_ root: ParsableCommand.Type, commandLine: [String]) throws -> CommandFlags {
        let json = Data(root._dumpHelp().utf8)
        var command = try JSONDecoder().decode(DumpedTool.self, from: json).command
        var path = [command.commandName]
        for word in commandLine {
            if word == "--" || word.hasPrefix("-") { break }
            guard let sub = command.subcommands?.first(where: { $0.commandName == word || ($0.aliases ?? []).contains(word) }) else { break }
            command = sub
            path.append(sub.commandName)
        }
        var flags: [String: Kind] = [:]
        for argument in command.arguments ?? [] where argument.kind != "positional" {
            let kind: Kind
            if argument.kind == "flag" { kind = argument.isRepeating ? .repeatingFlag : .flag }
            else { kind = argument.isRepeating ? .repeatingOption : .option }
            for name in argument.names ?? [] where name.kind == "long" {
                flags[name.name] = kind
            }
        }
        return CommandFlags(commandName: path.joined(separator: " "), flags: flags)
    }
}

/// The few fields of ArgumentParser's `ToolInfoV0` JSON that the flag table needs.
private struct DumpedTool: Decodable {
    struct Command: Decodable {
        var commandName: String
        var aliases: [String]?
        var subcommands: [Command]?
        var arguments: [Argument]?
    }

    struct Argument: Decodable {
        struct Name: Decodable {
            var kind: String
            var name: String
        }

        var kind: String
        var isRepeating: Bool
        var names: [Name]?
    }

    var command: Command
}
