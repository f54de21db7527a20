import XCTest
import DaftTestSupport
import DaftInterop
import DaftKernels
import DaftModels
import DaftDistributed
import DaftData
@testable import DaftEngine

/// DAFT BN conversion (method.md §2) against an independent PyTorch computation of the same formula
/// (Tests/Fixtures/bn_conversion.safetensors), the function-preservation property, and 2 ranks ≡ 1 rank.
final class BNConversionTests: XCTestCase {
    let fixture = try! TestFixtures.load("bn_conversion.safetensors")
    var data: [Float] { try! fixture.fixtureFloats("data") }
    var batchSize: Int { Int(fixture.metadata["batch_size"]!)! }

    func logits(_ model: ResNet, _ x: [Float], _ n: Int) throws -> [Float] {
        try x.withUnsafeBufferPointer { try model.forward($0.baseAddress!, Shape4(n, 1, 28, 28), training: false) }
        return model.logits.array(n * model.config.numClasses)
    }

    /// The global batch b split over `size` ranks, strided like the sampler: rank r takes positions r, r+W, …
    func share(_ b: Int, rank: Int, size: Int) -> ([Float], Shape4) {
        let per = 28 * 28
        let positions = Array(stride(from: rank, to: batchSize, by: size))
        var x = [Float](); x.reserveCapacity(positions.count * per)
        let d = data
        for p in positions { let i = b * batchSize + p; x.append(contentsOf: d[(i * per)..<((i + 1) * per)]) }
        return (x, Shape4(positions.count, 1, 28, 28))
    }

    func testConversionMatchesPyTorchAndPreservesTheFunction() throws {
        let model = try TestFixtures.model(fixture, prefix: "param.")
        let n = data.count / (28 * 28)
        let before = try logits(model, data, n)
        engineAssertClose(before, try fixture.fixtureFloats("logits_eval_pretrained"), rtol: 1e-5, "pretrained eval logits")
        let stats = try BNConversion.measure(model: model, batchCount: n / batchSize, communicator: SingleProcessCommunicator()) {
            self.share($0, rank: 0, size: 1)
        }
        XCTAssertEqual(stats.batches, 4)
        for (l, bn) in model.batchNorms.enumerated() {
            engineAssertClose(stats.means[l], try fixture.fixtureDoubles("target_mean.\(bn.name)"), rtol: 1e-5, atol: 1e-7, "target mean \(bn.name)")
            engineAssertClose(stats.variances[l], try fixture.fixtureDoubles("target_var.\(bn.name)"), rtol: 1e-5, atol: 1e-7, "target var \(bn.name)")
        }
        BNConversion.apply(stats, to: model)
        for e in model.store.entries where e.kind != .counter {
            engineAssertClose(model.store.values(e.name), try fixture.fixtureFloats("converted.\(e.name)"), rtol: 1e-5, atol: 1e-7, "converted \(e.name)")
        }
        // the converted network computes the same function in evaluation mode (≤ 1e-5)
        let after = try logits(model, data, n)
        engineAssertClose(after, before, rtol: 1e-5, "converted vs pretrained eval logits")
        engineAssertClose(after, try fixture.fixtureFloats("logits_eval_converted"), rtol: 1e-5, "converted eval logits vs torch")
    }

    func testTwoAndThreeRanksEqualOneRank() throws {
        let single = try TestFixtures.model(fixture, prefix: "param.")
        let one = try BNConversion.measure(model: single, batchCount: 4, communicator: SingleProcessCommunicator()) { self.share($0, rank: 0, size: 1) }
        for size in [2, 3] {
            let group = ThreadGroup(size: size)
            let results = try group.run { rank, comm -> BNConversion.Statistics in
                let m = try TestFixtures.model(self.fixture, prefix: "param.")
                return try BNConversion.measure(model: m, batchCount: 4, communicator: comm) { self.share($0, rank: rank, size: size) }
            }
            for r in results {
                for l in 0..<one.means.count {
                    // statistics combine exactly (float64 sums); what differs is the float32 forward of the
                    // activations themselves, whose GEMMs block differently for other batch compositions (~1e-7)
                    engineAssertClose(r.means[l], one.means[l], rtol: 1e-6, atol: 1e-9, "\(size) ranks mean layer \(l)")
                    engineAssertClose(r.variances[l], one.variances[l], rtol: 1e-6, atol: 1e-9, "\(size) ranks var layer \(l)")
                }
            }
        }
    }

    func testBatchOfOneValuePerChannelIsRejected() throws {
        let model = try TestFixtures.model(fixture, prefix: "param.")
        // a 1×1 spatial input would leave layer3 with one value per channel per sample: use batch 1 at 1×1
        let x = [Float](repeating: 0.5, count: 1)
        XCTAssertThrowsError(try BNConversion.measure(model: model, batchCount: 1, communicator: SingleProcessCommunicator()) { _ in
            (x, Shape4(1, 1, 1, 1))
        }) { XCTAssertTrue("\($0)".contains("values per channel"), "\($0)") }
    }
}

/// The conversion pass of a fine-tuning run measures shuffled training batches (method.md §2): on class-sorted
/// data the statistics are those of the training loader's epoch-0 batches, not of the file's first rows.
final class BNConversionOrderTests: XCTestCase {
    func testTrainerMeasuresShuffledTrainingBatchesByDefault() throws {
        let fixture = try TestFixtures.load("bn_conversion.safetensors")
        // 40 images sorted by "class": 20 dark then 20 bright
        var pixels = [UInt8](), labels = [Int32]()
        var rng = DaftKernels.SplitMix64(seed: 3)
        for n in 0..<40 {
            for _ in 0..<(28 * 28) { pixels.append(UInt8((n < 20 ? 0 : 150) + Int(rng.nextUnit() * 100))) }
            labels.append(n < 20 ? 0 : 1)
        }
        let data = try ImageDataset(name: "sorted", channels: 1, height: 28, width: 28, numClasses: 2, pixels: pixels, labels: labels)
        func stats(shuffled: Bool) throws -> BNConversion.Statistics {
            var o = TrainingOptions()
            o.batchSize = 10; o.conversionBatches = 1; o.conversionShuffled = shuffled; o.augment = false
            let trainer = Trainer(model: try TestFixtures.model(fixture, prefix: "param."), communicator: SingleProcessCommunicator(),
                                  options: o, train: data, normalization: .fashionMNIST, log: { _ in })
            return try trainer.convertBatchNorm()
        }
        XCTAssertTrue(TrainingOptions().conversionShuffled, "shuffled is the default")
        // the first global batch of the training loader's epoch 0, measured directly
        let plan = GlobalBatchPlan(count: 40, globalBatch: 10, worldSize: 1, seed: 0, shuffle: true, tail: .drop)
        let first = plan.globalBatches(epoch: 0)[0]
        XCTAssertNotEqual(first.sorted(), Array(0..<10), "the permutation mixes the classes")
        let direct = try BNConversion.measure(model: try TestFixtures.model(fixture, prefix: "param."), batchCount: 1,
                                              communicator: SingleProcessCommunicator()) { _ in
            (makeBatch(dataset: data, indices: first, normalization: .fashionMNIST, augmentation: nil, seed: 0, epoch: 0).x, Shape4(10, 1, 28, 28))
        }
        let shuffled = try stats(shuffled: true), sequential = try stats(shuffled: false)
        XCTAssertEqual(shuffled.means[0], direct.means[0])
        XCTAssertEqual(shuffled.variances[0], direct.variances[0])
        XCTAssertNotEqual(sequential.means[0], shuffled.means[0], "file order (all dark) differs from the shuffled batch")
    }
}
