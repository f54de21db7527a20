import ArgumentParser
import Foundation
import Logging

/// The swift-log handler of `daft`, aware of the MPI rank so a job's output reads like one program's.
///
/// Rank 0 writes messages below `warning` (trace … notice) to stdout as they are, one line each, flushed, so
/// scripts and tests that read its lines see exactly the text logged; `warning` and above go to stderr as
/// `Warning: …`, `Error: …` (the label on a message's first line only). Other ranks write only `warning` and above, each line prefixed `[rank N] `: every
/// rank runs the same code, so their informational lines would repeat rank 0's. Metadata, if any, follows the
/// message as ` key=value` pairs.
public struct RankLogHandler: LogHandler {
    /// Where a line goes.
    public enum Stream: Equatable, Sendable {
        /// stdout (through C stdio, the buffer `print` uses, so the two keep their order).
        case standardOutput
        /// stderr.
        case standardError
    }

    /// This process's rank (0 when not under mpirun).
    public let rank: Int
    /// Messages below this level are not logged.
    public var logLevel: Logger.Level
    /// Metadata attached to every message.
    public var metadata: Logger.Metadata = [:]
    /// Contextual metadata added to every message.
    public var metadataProvider: Logger.MetadataProvider?
    private let write: @Sendable (String, Stream) -> Void

    /// A handler for `rank` at `logLevel`, writing finished lines (without the newline) with `write`.
    public init(rank: Int, logLevel: Logger.Level,
                write: @escaping @Sendable (String, Stream) -> Void = RankLogHandler.writeToStandardStreams) {
        self.rank = rank
        self.logLevel = logLevel
        self.write = write
    }

    /// The logger every `daft` message goes through: the one place it is built.
    public static func logger(level: Logger.Level, rank: Int = rankFromEnvironment()) -> Logger {
        Logger(label: "daft") { _ in RankLogHandler(rank: rank, logLevel: level) }
    }

    /// The rank OpenMPI gives this process (`OMPI_COMM_WORLD_RANK`), known before MPI is initialised; 0 otherwise.
    public static func rankFromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        environment["OMPI_COMM_WORLD_RANK"].flatMap { Int($0) } ?? 0
    }

    /// Writes `line` and a newline to stdout (flushed, so `mpirun` forwards it at once) or stderr.
    @Sendable public static func writeToStandardStreams(_ line: String, to stream: Stream) {
        switch stream {
        case .standardOutput:
            fputs(line + "\n", stdout)
            fflush(stdout)
        case .standardError:
            fputs(line + "\n", stderr)
        }
    }

    public func log(event: LogEvent) {
        let isProblem = event.level >= .warning
        if rank != 0 && !isProblem { return }
        var text = event.message.description
        if let error = event.error { text += ": \(error)" }
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        if !all.isEmpty { text += all.keys.sorted().map { " \($0)=\(all[$0]!)" }.joined() }
        guard isProblem else {
            write(text, .standardOutput)
            return
        }
        let label = event.level.rawValue.prefix(1).uppercased() + event.level.rawValue.dropFirst() + ": "
        let prefix = rank == 0 ? "" : "[rank \(rank)] "
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            write(prefix + (index == 0 ? label : "") + line, .standardError)
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
}

/// The levels `--log-level` accepts.
public enum LogLevel: String, CaseIterable, ExpressibleByArgument, Sendable {
    case trace, debug, info, notice, warning, error

    /// The swift-log level of the same name.
    public var level: Logger.Level { Logger.Level(rawValue: rawValue)! }
}

/// `--log-level`, on every `daft` command.
public struct LoggingFlags: ParsableArguments {
    @Option(name: .customLong("log-level"), help: "The least severe messages shown")
    public var logLevel: LogLevel = .info

    public init() {}

    /// The command's logger (`RankLogHandler.logger`) at the chosen level.
    public var logger: Logger { RankLogHandler.logger(level: logLevel.level) }
}
