import Foundation
import XCTest
@testable import DaftData

final class BatchTests: XCTestCase {
    func testNormalizationWithoutAugmentation() {
        let d = try! ImageDataset(name: "d", channels: 1, height: 1, width: 3, numClasses: 2,
                                  pixels: [0, 255, 51, 102, 0, 255], labels: [1, 0])
        let b = makeBatch(dataset: d, indices: [1, 0], normalization: .fashionMNIST, augmentation: nil, seed: 0, epoch: 0)
        XCTAssertEqual(b.y, [0, 1])
        let expect: [Float] = [102, 0, 255, 0, 255, 51].map { (Float($0) / 255 - 0.2860) / 0.3530 }
        for (a, e) in zip(b.x, expect) { XCTAssertEqual(a, e, accuracy: 1e-5) }
        let rgb = try! ImageDataset(name: "c", channels: 3, height: 1, width: 1, numClasses: 1, pixels: [255, 0, 51], labels: [0])
        let n = Normalization(mean: [0.5, 0.1, 0.2], std: [0.5, 0.2, 0.4])
        let x = makeBatch(dataset: rgb, indices: [0], normalization: n, augmentation: nil, seed: 0, epoch: 0).x
        XCTAssertEqual(x[0], 1, accuracy: 1e-6); XCTAssertEqual(x[1], -0.5, accuracy: 1e-6); XCTAssertEqual(x[2], 0, accuracy: 1e-6)
    }

    func testAugmentationIsDeterministicPerSeedEpochAndSample() {
        let data = syntheticDataset(count: 12)
        let aug = Augmentation.standard
        let a = makeBatch(dataset: data, indices: [3, 5, 7], normalization: .fashionMNIST, augmentation: aug, seed: 1, epoch: 2)
        let b = makeBatch(dataset: data, indices: [3, 5, 7], normalization: .fashionMNIST, augmentation: aug, seed: 1, epoch: 2)
        XCTAssertEqual(a.x, b.x)
        // Independent of batch composition: sample 5 alone equals its slot in the bigger batch
        // (so the split over ranks does not matter).
        let alone = makeBatch(dataset: data, indices: [5], normalization: .fashionMNIST, augmentation: aug, seed: 1, epoch: 2)
        XCTAssertEqual(alone.x, Array(a.x[256..<512]))
        // Epoch and seed change the draws for at least some samples.
        let all = Array(0..<12)
        let base = makeBatch(dataset: data, indices: all, normalization: .fashionMNIST, augmentation: aug, seed: 1, epoch: 2).x
        XCTAssertNotEqual(makeBatch(dataset: data, indices: all, normalization: .fashionMNIST, augmentation: aug, seed: 1, epoch: 3).x, base)
        XCTAssertNotEqual(makeBatch(dataset: data, indices: all, normalization: .fashionMNIST, augmentation: aug, seed: 2, epoch: 2).x, base)
    }

    func testAugmentationParametersAndGeometry() {
        var flips = 0, seen = Set<Int>()
        for i in 0..<2000 {
            let p = Augmentation.standard.parameters(seed: 5, epoch: 0, sampleIndex: i)
            XCTAssertTrue((-2...2).contains(p.dx) && (-2...2).contains(p.dy))
            seen.insert(p.dx); seen.insert(p.dy + 10)
            if p.flip { flips += 1 }
        }
        XCTAssertEqual(seen.count, 10)
        XCTAssertEqual(Double(flips) / 2000, 0.5, accuracy: 0.05)
        // Geometry: a single bright pixel moves by (dx, dy) after the optional flip; zero padding.
        var px = [UInt8](repeating: 0, count: 25)
        px[1 * 5 + 1] = 255
        let d = try! ImageDataset(name: "p", channels: 1, height: 5, width: 5, numClasses: 1, pixels: px, labels: [0])
        for seed in UInt64(0)..<20 {
            let p = Augmentation.standard.parameters(seed: seed, epoch: 1, sampleIndex: 0)
            let x = makeBatch(dataset: d, indices: [0], normalization: .unit(channels: 1), augmentation: .standard, seed: seed, epoch: 1).x
            let bx = p.flip ? 5 - 1 - (1 + p.dx) : 1 + p.dx
            let by = 1 + p.dy
            for y in 0..<5 { for xx in 0..<5 {
                let want: Float = (y == by && xx == bx) ? 1 : 0
                XCTAssertEqual(x[y * 5 + xx], want, "seed \(seed) \(p)")
            } }
        }
        let none = Augmentation(maxTranslation: 0, flipProbability: 0)
        XCTAssertEqual(makeBatch(dataset: d, indices: [0], normalization: .unit(channels: 1), augmentation: none, seed: 3, epoch: 0).x,
                       px.map { Float($0) / 255 })
    }
}
