import ArgumentParser
import Foundation
import Logging
import XCTest
@testable import DaftCommandLine

/// Lines a `RankLogHandler` wrote, with the stream each went to.
private final class CapturedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [(String, RankLogHandler.Stream)] = []

    var lines: [(String, RankLogHandler.Stream)] { lock.withLock { stored } }

    func logger(rank: Int, level: Logger.Level) -> Logger {
        Logger(label: "test") { _ in
            RankLogHandler(rank: rank, logLevel: level) { line, stream in self.lock.withLock { self.stored.append((line, stream)) } }
        }
    }
}

private struct LevelCommand: ParsableCommand {
    @OptionGroup var logging: LoggingFlags
}

final class RankLogHandlerTests: XCTestCase {
    private func assertLines(_ got: [(String, RankLogHandler.Stream)], _ expected: [(String, RankLogHandler.Stream)],
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.map(\.0), expected.map(\.0), file: file, line: line)
        XCTAssertEqual(got.map(\.1), expected.map(\.1), file: file, line: line)
    }

    /// Rank 0's messages keep their text: what scripts match on stdout is exactly what was logged.
    func testRankZeroWritesMessagesAsTheyAre() {
        let captured = CapturedLines()
        let log = captured.logger(rank: 0, level: .trace)
        log.trace("t")
        log.debug("d")
        log.info("epoch 1 step 10/40  loss 2.3026  acc 0.1000  lr head 0.3 backbone 0.01")
        log.notice("n")
        log.warning("w")
        log.error("Error-free text: two\nlines")
        log.critical("c")
        assertLines(captured.lines, [
            ("t", .standardOutput), ("d", .standardOutput),
            ("epoch 1 step 10/40  loss 2.3026  acc 0.1000  lr head 0.3 backbone 0.01", .standardOutput),
            ("n", .standardOutput),
            ("Warning: w", .standardError),
            ("Error: Error-free text: two", .standardError), ("lines", .standardError),
            ("Critical: c", .standardError),
        ])
    }

    /// Other ranks would repeat rank 0's progress lines, so they print only warnings and errors, prefixed.
    func testOtherRanksWriteOnlyProblemsPrefixedWithTheRank() {
        let captured = CapturedLines()
        let log = captured.logger(rank: 3, level: .trace)
        log.trace("t")
        log.debug("d")
        log.info("summary: method daft")
        log.notice("n")
        log.warning("w")
        log.error("/data/x.npy: no such file\nsecond line")
        assertLines(captured.lines, [
            ("[rank 3] Warning: w", .standardError),
            ("[rank 3] Error: /data/x.npy: no such file", .standardError), ("[rank 3] second line", .standardError),
        ])
    }

    func testLevelFiltersAndMetadataFollowsTheMessage() {
        let captured = CapturedLines()
        var log = captured.logger(rank: 0, level: .warning)
        log.info("hidden")
        log.notice("hidden too")
        log[metadataKey: "rank-set"] = "a"
        log.warning("shown", metadata: ["file": "w.safetensors", "b": "2"])
        assertLines(captured.lines, [("Warning: shown b=2 file=w.safetensors rank-set=a", .standardError)])
        XCTAssertEqual(log.logLevel, .warning)
        XCTAssertEqual(RankLogHandler.logger(level: .debug, rank: 1).logLevel, .debug)
    }

    func testRankComesFromOpenMPIsEnvironment() {
        XCTAssertEqual(RankLogHandler.rankFromEnvironment(["OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4"]), 2)
        XCTAssertEqual(RankLogHandler.rankFromEnvironment([:]), 0)
        XCTAssertEqual(RankLogHandler.rankFromEnvironment(["OMPI_COMM_WORLD_RANK": "x"]), 0)
    }

    func testLogLevelFlag() throws {
        XCTAssertEqual(try LevelCommand.parse([]).logging.logLevel, .info)
        XCTAssertEqual(try LevelCommand.parse([]).logging.logger.logLevel, .info)
        for level in ["trace", "debug", "info", "notice", "warning", "error"] {
            let parsed = try LevelCommand.parse(["--log-level", level])
            XCTAssertEqual(parsed.logging.logger.logLevel.rawValue, level)
        }
        XCTAssertThrowsError(try LevelCommand.parse(["--log-level", "loud"]))
        XCTAssertThrowsError(try LevelCommand.parse(["--log-level", "critical"]))
    }
}
