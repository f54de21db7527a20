import Foundation
import DaftInterop
import DaftModels

/// The PyTorch/NumPy fixtures under Tests/Fixtures (written by Tests/Fixtures/make_fixtures.py), shared by
/// the test targets.
public enum TestFixtures {
    public static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    }

    public static func load(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile.read(directory.appendingPathComponent(name))
    }

    /// Builds the architecture of the tensors named `<prefix><state_dict name>` (inferred from them, checked
    /// against the file's metadata) and loads them.
    public static func model(_ file: SafeTensorsFile, prefix: String = "param.") throws -> ResNet {
        var sub = SafeTensorsFile()
        sub.metadata = file.metadata
        for (k, v) in file.tensors where k.hasPrefix(prefix) { sub.tensors[String(k.dropFirst(prefix.count))] = v }
        let model = ResNet(try ResNetConfig.infer(from: sub, source: "fixture"))
        try StateDict.load(sub, into: model, source: "fixture")
        return model
    }
}

/// nil when max|a−b| ≤ rtol·max|b| + atol; otherwise a message naming the worst element.
public func closenessFailure<T: BinaryFloatingPoint>(_ a: [T], _ b: [T], rtol: T, atol: T, _ what: String) -> String? {
    guard a.count == b.count else { return "\(what): \(a.count) values, reference has \(b.count)" }
    var worst: T = 0, wi = 0, scale: T = 0
    for i in 0..<a.count {
        let d = abs(a[i] - b[i])
        if d > worst || d.isNaN { worst = d; wi = i }
        scale = max(scale, abs(b[i]))
    }
    let tol = rtol * scale + atol
    if worst <= tol { return nil }
    return "\(what): max |diff| \(worst) at \(wi) (ours \(a[wi]), reference \(b[wi])) > \(tol) (scale \(scale))"
}

extension SafeTensorsFile {
    /// A fixture tensor as Floats / Doubles.
    public func fixtureFloats(_ name: String) throws -> [Float] { try tensor(name, source: "fixture").floats() }
    public func fixtureDoubles(_ name: String) throws -> [Double] { try tensor(name, source: "fixture").doubles() }
}

/// The Python interpreter of the PyTorch/scikit-learn comparisons: `DAFT_PYTHON` (the test command sets it to
/// the venv `launch/python-env.sh` builds under .build/).
public enum TestPython {
    public struct Missing: Error, CustomStringConvertible {
        public var description: String {
            "DAFT_PYTHON is not set: run the comparison tests as DAFT_PYTHON=$(bash launch/python-env.sh) swift test ..."
        }
    }

    public static func interpreter() throws -> String {
        guard let p = ProcessInfo.processInfo.environment["DAFT_PYTHON"], !p.isEmpty else { throw Missing() }
        return p
    }

    /// Runs `script` (Python source) with `arguments`; returns stdout, throws with stderr on a non-zero exit.
    @discardableResult
    public static func run(_ script: String, _ arguments: [String] = []) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try interpreter())
        process.arguments = ["-c", script] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out; process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile(), stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NSError(domain: "python", code: Int(process.terminationStatus),
                          userInfo: [NSLocalizedDescriptionKey: "python failed: " + String(decoding: stderr.suffix(2000), as: UTF8.self)])
        }
        return String(decoding: stdout, as: UTF8.self)
    }
}
