import Foundation
import XCTest
import DaftInterop
@testable import DaftModels

/// Locates files under Tests/Fixtures (written by Tests/Fixtures/make_fixtures.py with PyTorch).
enum Fixtures {
    static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    }
    static func load(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile.read(directory.appendingPathComponent(name))
    }
}

/// max|a−b| ≤ rtol·max|b| + atol, reported with the worst element.
func assertClose(_ a: [Float], _ b: [Float], rtol: Float = 1e-4, atol: Float = 1e-6, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(what): count", file: file, line: line)
    guard a.count == b.count else { return }
    var worst: Float = 0, wi = 0, scale: Float = 0
    for i in 0..<a.count {
        let d = abs(a[i] - b[i])
        if d > worst || d.isNaN { worst = d; wi = i }
        scale = max(scale, abs(b[i]))
    }
    let tol = rtol * scale + atol
    XCTAssert(worst <= tol, "\(what): max |diff| \(worst) at \(wi) (ours \(a[wi]), torch \(b[wi])) > \(tol) (scale \(scale))", file: file, line: line)
}

extension SafeTensorsFile {
    func f(_ name: String) throws -> [Float] { try tensor(name, source: "fixture").floats() }
}

/// Builds the fixture's model and loads its `param.*` tensors.
func fixtureModel(_ file: SafeTensorsFile, prefix: String = "param.") throws -> ResNet {
    let config = try ResNetConfig.from(metadata: file.metadata, source: "fixture")
    let model = ResNet(config)
    var sub = SafeTensorsFile()
    for (k, v) in file.tensors where k.hasPrefix(prefix) { sub.tensors[String(k.dropFirst(prefix.count))] = v }
    try StateDict.load(sub, into: model, source: "fixture")
    return model
}
