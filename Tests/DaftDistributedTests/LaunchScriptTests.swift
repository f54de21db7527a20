import Foundation
import XCTest

/// `launch/local.sh -t T`: ranks × threads placement (each rank bound to its own T cores, or unbound when
/// ranks × threads oversubscribe the machine), and a real 1-rank × 2-thread `daft bench` through it whose
/// JSON reports the 2 threads (OPENBLAS_NUM_THREADS=T is daft's `--threads` default).
final class LaunchScriptTests: XCTestCase {
    func localScript(_ args: [String]) throws -> Harness.Result {
        let script = Harness.packageRoot.appendingPathComponent("launch/local.sh").path
        return try Harness.run("/bin/bash", [script] + args, environment: [:], timeout: 120)
    }

    func testThreadsPerRankBindEachRankToItsOwnCores() throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let one = try localScript(["-n", "1", "--dry-run", "--", "true"])
        XCTAssertTrue(one.stderr.contains("OPENBLAS_NUM_THREADS=1 mpirun -np 1 --bind-to core"), one.stderr)
        let all = try localScript(["-n", "1", "-t", "\(cores)", "--dry-run", "--", "true"])
        if cores > 1 {
            XCTAssertTrue(all.stderr.contains("OPENBLAS_NUM_THREADS=\(cores) mpirun -np 1 --map-by slot:PE=\(cores) --bind-to core"), all.stderr)
        }
        let over = try localScript(["-n", "2", "-t", "\(cores)", "--dry-run", "--", "true"])
        XCTAssertTrue(over.stderr.contains("mpirun -np 2 --oversubscribe --bind-to none"), over.stderr)
        let bad = try localScript(["-n", "1", "-t", "0", "--", "true"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("-t must be a positive integer"), bad.stderr)
    }

    func testOneRankTwoThreadsBenchThroughLocalScript() throws {
        let daft = try Harness.binary("daft").path
        let r = try localScript(["-n", "1", "-t", "2", "--", daft, "bench", "--arch", "resnet20", "--widths", "4,8,16", "--batch", "8",
                                 "--steps", "1", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let line = r.stdout.split(separator: "\n").last { $0.hasPrefix("{") }.map(String.init) ?? ""
        let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        XCTAssertEqual(json?["threads"] as? Int, 2, r.stdout)
    }
}
