import XCTest
import DaftKernels
import DaftModels
import DaftData
import DaftDistributed
import DaftEngine

/// The per-sample feature-distance histogram of `Evaluation.distortion`: fixed logarithmic bins, counts equal to
/// binning the directly computed distances, and N ranks give exactly the 1-rank histogram.
final class DistortionHistogramTests: XCTestCase {
    func testBinsAreFixedLogarithmicWithUnboundedEnds() {
        let h = Evaluation.Histogram()
        XCTAssertEqual(h.lowerEdges.count, 122)
        XCTAssertEqual(h.counts, [Int](repeating: 0, count: 122))
        XCTAssertEqual(h.lowerEdges.first, 0)
        XCTAssertEqual(zip(h.lowerEdges, h.lowerEdges.dropFirst()).filter { $0 >= $1 }.count, 0, "edges ascend")
        XCTAssertEqual(h.lowerEdges[1], 1e-3, accuracy: 1e-15)
        XCTAssertEqual(h.lowerEdges[61], 1)
        XCTAssertEqual(h.lowerEdges[121], 1e3, accuracy: 1e-9)
        XCTAssertEqual(h.lowerEdges[62] / h.lowerEdges[61], pow(10, 0.05), accuracy: 1e-12, "20 bins per decade")
        XCTAssertEqual(h.bin(of: 0), 0)
        XCTAssertEqual(h.bin(of: 0.0009), 0)
        XCTAssertEqual(h.bin(of: h.lowerEdges[1]), 1, "a lower edge belongs to its bin")
        XCTAssertEqual(h.bin(of: 0.999), 60)
        XCTAssertEqual(h.bin(of: 1), 61)
        XCTAssertEqual(h.bin(of: 7.5), 61 + Int((log10(7.5) * 20).rounded(.down)))
        XCTAssertEqual(h.bin(of: 5e6), 121)
        XCTAssertEqual(h.bin(of: .infinity), 121)
        XCTAssertEqual(h.bin(of: .nan), 121, "a diverged feature is counted, in the unbounded bin")
        XCTAssertEqual(h.bin(of: -1), 0)
    }

    /// 36 random 16×16 images and two differently initialised narrow ResNet-20s; batch 6, so 1, 2 and 3 ranks
    /// (contiguous shards of 36, 18, 12 samples) forward the very same batches and the distances are bit-identical.
    func testHistogramCountsTheDistancesAndRanksCombineToTheOneRankHistogram() throws {
        let config = try ResNetConfig.named("resnet20", inChannels: 1, numClasses: 10, widths: [4, 8, 16])
        func model(seed: UInt64) -> ResNet {
            let m = ResNet(config)
            var rng = DaftKernels.SplitMix64(seed: seed)
            m.resetParameters(rng: &rng)
            return m
        }
        var rng = DaftKernels.SplitMix64(seed: 7)
        let n = 36, side = 16
        let pixels = (0..<(n * side * side)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let labels = (0..<n).map { _ in Int32(rng.next() % 10) }
        let data = try ImageDataset(name: "random", channels: 1, height: side, width: side, numClasses: 10, pixels: pixels, labels: labels)
        let norm = Normalization.fashionMNIST

        // the distances computed directly, batch by batch as the evaluation does
        let a = model(seed: 1), b = model(seed: 2), F = config.featureDimension
        var expected = Evaluation.Histogram(), distances: [Double] = []
        for start in stride(from: 0, to: n, by: 6) {
            let idx = Array(start..<(start + 6))
            let x = try data.batch(indices: idx, normalization: norm, augmentation: nil, seed: 0, epoch: 0).x
            try x.withUnsafeBufferPointer { try a.forward($0.baseAddress!, Shape4(6, 1, side, side), training: false) }
            let fa = a.features.array(6 * F)
            try x.withUnsafeBufferPointer { try b.forward($0.baseAddress!, Shape4(6, 1, side, side), training: false) }
            let fb = b.features.array(6 * F)
            for s in 0..<6 {
                let d = (0..<F).map { j in Double(fa[s * F + j]) - Double(fb[s * F + j]) }.map { $0 * $0 }.reduce(0, +).squareRoot()
                distances.append(d); expected.add(d)
            }
        }
        let one = try Evaluation.distortion(model: model(seed: 1), reference: model(seed: 2), dataset: data, normalization: norm,
                                            batchSize: 6, communicator: SingleProcessCommunicator())
        XCTAssertEqual(one.count, n)
        XCTAssertEqual(one.l2Histogram.counts, expected.counts)
        XCTAssertEqual(one.l2Histogram.counts.reduce(0, +), n)
        XCTAssertGreaterThan(one.l2Histogram.counts.filter { $0 > 0 }.count, 2, "the distances spread over several bins: \(distances)")
        XCTAssertEqual(one.l2Mean, distances.reduce(0, +) / Double(n), accuracy: 1e-9 * one.l2Mean)

        for size in [2, 3] {
            let results = try ThreadGroup(size: size).run { _, comm in
                try Evaluation.distortion(model: model(seed: 1), reference: model(seed: 2), dataset: data, normalization: norm,
                                          batchSize: 6, communicator: comm)
            }
            for (rank, r) in results.enumerated() {
                XCTAssertEqual(r.l2Histogram.counts, one.l2Histogram.counts, "\(size) ranks, rank \(rank): histogram counts")
                XCTAssertEqual(r.l2Histogram.lowerEdges, one.l2Histogram.lowerEdges)
                XCTAssertEqual(r.count, n)
                XCTAssertEqual(r.l2Mean, one.l2Mean, accuracy: 1e-12 * one.l2Mean, "\(size) ranks: L2 mean")
                XCTAssertEqual(r.cosineMean, one.cosineMean, accuracy: 1e-12, "\(size) ranks: cosine mean")
            }
        }
    }
}
