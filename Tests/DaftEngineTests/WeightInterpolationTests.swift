import XCTest
import DaftInterop
import DaftKernels
import DaftModels
import DaftEngine

/// WiSE-FT (method.md §10): endpoints reproduced bit for bit, the midpoint is the mean, mismatches are one-line errors.
final class WeightInterpolationTests: XCTestCase {
    /// Two resnet20 state_dicts with different random weights and BN statistics.
    func twoModels() -> (SafeTensorsFile, SafeTensorsFile) {
        let config = try! ResNetConfig.named("resnet20", inChannels: 1, numClasses: 10, widths: [4, 8, 16])
        let a = ResNet(config), b = ResNet(config)
        var r1 = SplitMix64(seed: 1), r2 = SplitMix64(seed: 2)
        a.resetParameters(rng: &r1); b.resetParameters(rng: &r2)
        var fa = StateDict.file(a), fb = StateDict.file(b)
        // distinct running statistics and counters so that BN buffers are really interpolated
        for (name, t) in fb.tensors where name.hasSuffix("running_mean") {
            fb.tensors[name] = SafeTensor(floats: (try! t.floats()).enumerated().map { Float($0.offset) * 0.01 + 0.5 }, shape: t.shape)
        }
        for (name, t) in fb.tensors where name.hasSuffix("num_batches_tracked") { fb.tensors[name] = SafeTensor(int64s: [7], shape: t.shape) }
        fa.metadata["which"] = "a"; fb.metadata["which"] = "b"
        return (fa, fb)
    }

    func testEndpointsAreBitIdenticalAndMidpointIsTheMean() throws {
        let (a, b) = twoModels()
        let at0 = try WeightInterpolation.interpolate(start: a, end: b, alpha: 0, startSource: "a", endSource: "b")
        let at1 = try WeightInterpolation.interpolate(start: a, end: b, alpha: 1, startSource: "a", endSource: "b")
        let half = try WeightInterpolation.interpolate(start: a, end: b, alpha: 0.5, startSource: "a", endSource: "b")
        XCTAssertEqual(Set(at0.tensors.keys), Set(a.tensors.keys))
        for (name, t) in a.tensors {
            XCTAssertEqual(at0.tensors[name], t, "α = 0: \(name) is not θ_0's bytes")
            XCTAssertEqual(at1.tensors[name], b.tensors[name], "α = 1: \(name) is not θ_1's bytes")
            guard t.dtype == .F32 else { XCTAssertEqual(half.tensors[name], b.tensors[name], "\(name): counters come from θ_1"); continue }
            let x = try t.floats(), y = try b.tensors[name]!.floats(), m = try half.tensors[name]!.floats()
            for i in 0..<x.count { XCTAssertEqual(m[i], Float((Double(x[i]) + Double(y[i])) / 2), "\(name)[\(i)]") }
        }
        XCTAssertNotEqual(try a.tensors["bn1.running_mean"]!.floats(), try half.tensors["bn1.running_mean"]!.floats(), "BN statistics interpolated")
        XCTAssertEqual(at0.metadata["which"], "a"); XCTAssertEqual(half.metadata["which"], "b"); XCTAssertEqual(half.metadata["wise_alpha"], "0.5")
    }

    func testMismatchesAreOneLineErrorsNamingTheTensor() throws {
        let (a, b) = twoModels()
        var wrongShape = b
        wrongShape.tensors["fc.weight"] = SafeTensor(floats: [Float](repeating: 0, count: 5 * 16), shape: [5, 16])
        XCTAssertThrowsError(try WeightInterpolation.interpolate(start: a, end: wrongShape, alpha: 0.5, startSource: "a.st", endSource: "b.st")) {
            XCTAssertEqual("\($0)", "b.st: tensor 'fc.weight' has shape [5, 16], a.st has [10, 16]")
        }
        var missing = b
        missing.tensors["layer1.0.conv1.weight"] = nil
        XCTAssertThrowsError(try WeightInterpolation.interpolate(start: a, end: missing, alpha: 0.5, startSource: "a.st", endSource: "b.st")) {
            XCTAssertTrue("\($0)".contains("'layer1.0.conv1.weight'"), "\($0)")
        }
        XCTAssertThrowsError(try WeightInterpolation.interpolate(start: a, end: b, alpha: 1.5, startSource: "a", endSource: "b"))
    }
}
