import Foundation

/// The package's executables (`daft`, `daft-transport`) as the tests run them: from `DAFT_BIN_DIR` when it is
/// set (the test command points it at the release build, so the heavy end-to-end runs use the optimised
/// binaries), else from the build directory the test bundle runs in (`swift build --build-tests` builds them).
public enum BuiltProducts {
    /// Why a product could not be found; a thrown `Missing` fails the test with this one line.
    public struct Missing: Error, CustomStringConvertible {
        public let description: String
    }

    public static func url(_ name: String) throws -> URL {
        if let dir = ProcessInfo.processInfo.environment["DAFT_BIN_DIR"], !dir.isEmpty {
            let url = URL(fileURLWithPath: dir).appendingPathComponent(name)
            guard FileManager.default.isExecutableFile(atPath: url.path) else {
                throw Missing(description: "DAFT_BIN_DIR=\(dir) has no executable \(name); build it (swift build -c release) or unset DAFT_BIN_DIR")
            }
            return url
        }
        var dirs: [URL] = [Bundle.main.bundleURL]
        if let exe = Bundle.main.executableURL { dirs.append(exe.deletingLastPathComponent()) }
        if let self_ = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            dirs.append(URL(fileURLWithPath: self_).deletingLastPathComponent())
        }
        dirs.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
        for d in dirs {
            for candidate in [d, d.deletingLastPathComponent()] {
                let url = candidate.appendingPathComponent(name)
                if FileManager.default.isExecutableFile(atPath: url.path) { return url }
            }
        }
        throw Missing(description: "\(name) not found next to the test bundle (searched \(dirs.map(\.path))); build the whole package first")
    }
}
