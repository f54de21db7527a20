import XCTest
import DaftTestSupport
import DaftKernels
import DaftModels
import DaftDistributed
@testable import DaftEngine

/// `daft evaluate --bn-stats own|source|mix:α`: the source policy restores the pretrained statistics with γ/β
/// re-folded through the conversion, so a just-converted model evaluates like the pretrained one; mix:0 is the
/// model itself bit for bit and mix:1 computes what source computes.
final class EvaluationStatisticsTests: XCTestCase {
    let fixture = try! TestFixtures.load("bn_conversion.safetensors")
    /// The fixture's first 8 images (the debug-build forward is slow; 8 are enough to compare functions).
    lazy var data: [Float] = Array(try! fixture.fixtureFloats("data").prefix(count * 28 * 28))
    let count = 8

    func logits(_ model: ResNet) throws -> [Float] {
        let x = data, n = count
        try x.withUnsafeBufferPointer { try model.forward($0.baseAddress!, Shape4(n, 1, 28, 28), training: false) }
        return model.logits.array(n * model.config.numClasses)
    }

    func copy(_ m: ResNet) -> ResNet { let c = ResNet(m.config); c.store.copyValues(from: m.store); return c }

    /// (pretrained source, the converted start model, a "fine-tuned" model: the start with every BN tensor moved).
    func models() throws -> (source: ResNet, start: ResNet, tuned: ResNet) {
        let source = try TestFixtures.model(fixture, prefix: "param.")
        let start = copy(source)
        // target statistics of the conversion: the source's, moved per channel (no forward pass needed)
        let bns = source.batchNorms
        let stats = BNConversion.Statistics(
            means: bns.enumerated().map { l, bn in (0..<bn.channels).map { c in Double(bn.runningMean[c]) + 0.2 * sin(Double(7 * l + c)) } },
            variances: bns.enumerated().map { l, bn in (0..<bn.channels).map { c in Double(bn.runningVar[c]) * (0.5 + abs(cos(Double(5 * l + c)))) } },
            batches: 1)
        BNConversion.apply(stats, to: start)
        let tuned = copy(start)
        for (l, bn) in tuned.batchNorms.enumerated() {
            for c in 0..<bn.channels {
                let t = Float(l * 31 + c)
                bn.gamma[c] *= 1 + 0.2 * sin(t); bn.beta[c] += 0.1 * cos(t)
                bn.runningMean[c] += 0.3 * sin(1.7 * t); bn.runningVar[c] *= 1 + 0.4 * abs(cos(0.9 * t))
            }
        }
        return (source, start, tuned)
    }

    func testSourceStatisticsOnAJustConvertedModelGiveBackThePretrainedBatchNorms() throws {
        let (source, start, _) = try models()
        let restored = copy(start)
        try EvaluationStatistics.source.apply(to: restored, start: start, source: source)
        for (r, s) in zip(restored.batchNorms, source.batchNorms) {
            XCTAssertEqual(Array(UnsafeBufferPointer(start: r.runningMean, count: r.channels)), Array(UnsafeBufferPointer(start: s.runningMean, count: s.channels)), r.name)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: r.runningVar, count: r.channels)), Array(UnsafeBufferPointer(start: s.runningVar, count: s.channels)), r.name)
            engineAssertClose(Array(UnsafeBufferPointer(start: r.gamma, count: r.channels)), Array(UnsafeBufferPointer(start: s.gamma, count: s.channels)), rtol: 1e-5, atol: 1e-7, "γ \(r.name)")
            engineAssertClose(Array(UnsafeBufferPointer(start: r.beta, count: r.channels)), Array(UnsafeBufferPointer(start: s.beta, count: s.channels)), rtol: 1e-5, atol: 1e-6, "β \(r.name)")
        }
        engineAssertClose(try logits(restored), try logits(source), rtol: 1e-4, atol: 1e-5, "restored vs pretrained logits")
    }

    func testMixZeroIsOwnBitForBitAndMixOneComputesWhatSourceComputes() throws {
        let (source, start, tuned) = try models()
        let own = try logits(tuned)
        let zero = copy(tuned)
        try EvaluationStatistics.mix(0).apply(to: zero, start: start, source: nil)
        XCTAssertEqual(zero.store.values(zero.batchNorms[0].name + ".running_mean"), tuned.store.values(tuned.batchNorms[0].name + ".running_mean"))
        XCTAssertEqual(try logits(zero), own)
        let one = copy(tuned), restored = copy(tuned), half = copy(tuned)
        try EvaluationStatistics.mix(1).apply(to: one, start: start, source: nil)
        try EvaluationStatistics.source.apply(to: restored, start: start, source: source)
        try EvaluationStatistics.mix(0.5).apply(to: half, start: start, source: nil)
        let a = try logits(one), b = try logits(restored)
        engineAssertClose(a, b, rtol: 1e-4, atol: 1e-5, "mix:1 vs source")
        XCTAssertGreaterThan(zip(a, own).map { abs($0 - $1) }.max()!, 1e-2, "the policies differ from own on a model whose statistics moved")
        let m = half.batchNorms[3], t = tuned.batchNorms[3], s0 = start.batchNorms[3]
        XCTAssertEqual(Double(m.runningMean[1]), 0.5 * Double(t.runningMean[1]) + 0.5 * Double(s0.runningMean[1]), accuracy: 1e-6)
        XCTAssertEqual(Double(m.runningVar[2]), 0.5 * Double(t.runningVar[2]) + 0.5 * Double(s0.runningVar[2]), accuracy: 1e-6)
    }

    func testWithoutConversionSourceIsThePlainRestorationOfTheSourceStatistics() throws {
        // FT: the start model has the source's statistics, so γ and β stay exactly as fine-tuned
        let (source, _, tuned) = try models()
        let restored = copy(tuned)
        try EvaluationStatistics.source.apply(to: restored, start: source, source: source)
        for ((r, t), s) in zip(zip(restored.batchNorms, tuned.batchNorms), source.batchNorms) {
            for c in 0..<r.channels {
                XCTAssertEqual(r.gamma[c], t.gamma[c]); XCTAssertEqual(r.beta[c], t.beta[c])
                XCTAssertEqual(r.runningMean[c], s.runningMean[c]); XCTAssertEqual(r.runningVar[c], s.runningVar[c])
            }
        }
    }

    func testParsingAndMismatchesAreOneLineErrors() throws {
        XCTAssertEqual(try EvaluationStatistics(parsing: "own"), .own)
        XCTAssertEqual(try EvaluationStatistics(parsing: "source"), .source)
        XCTAssertEqual(try EvaluationStatistics(parsing: "mix:0.25"), .mix(0.25))
        for bad in ["mix:1.5", "mix:", "mix:nan", "target", ""] {
            XCTAssertThrowsError(try EvaluationStatistics(parsing: bad)) { XCTAssertTrue("\($0)".contains("--bn-stats must be own, source or mix:α"), "\($0)") }
        }
        let (source, _, tuned) = try models()
        let other = ResNet(try ResNetConfig.named("resnet20", inChannels: 1, numClasses: 10, widths: [8, 16, 32]))
        XCTAssertThrowsError(try EvaluationStatistics.mix(0.5).apply(to: tuned, start: other, source: source, startName: "s.safetensors")) {
            XCTAssertTrue("\($0)".hasPrefix("s.safetensors: BN layer"), "\($0)")
        }
        XCTAssertThrowsError(try EvaluationStatistics.source.apply(to: tuned, start: tuned, source: nil)) {
            XCTAssertTrue("\($0)".contains("needs the pretrained source"), "\($0)")
        }
    }
}
