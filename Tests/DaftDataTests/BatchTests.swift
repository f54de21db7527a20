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

    /// `--augment robust`: corruptions drawn from (seed, epoch, sample) only, so a sample is corrupted the same way in
    /// any batch (on any number of ranks); each of the seven families fires with probability 0.25, so ≈13% of
    /// images stay clean; with no draws the result is the standard recipe's, bit for bit.
    func testRobustRecipeIsDeterministicPerSampleAndMixesCorruptionsAtTheStatedRate() {
        let data = syntheticDataset(count: 400)
        let robust = Augmentation.robust
        XCTAssertEqual(robust.corruptions.count, 7)
        XCTAssertEqual(Augmentation.named("robust"), robust)
        XCTAssertEqual(Augmentation.named("standard"), .standard)
        XCTAssertNil(Augmentation.named("heavy"))
        let a = makeBatch(dataset: data, indices: [3, 5, 7], normalization: .fashionMNIST, augmentation: robust, seed: 1, epoch: 2)
        XCTAssertEqual(a.x, makeBatch(dataset: data, indices: [3, 5, 7], normalization: .fashionMNIST, augmentation: robust, seed: 1, epoch: 2).x)
        let alone = makeBatch(dataset: data, indices: [5], normalization: .fashionMNIST, augmentation: robust, seed: 1, epoch: 2)
        XCTAssertEqual(alone.x, Array(a.x[256..<512]))
        // per image: the robust batch equals the standard one exactly when no corruption was drawn
        let all = Array(0..<data.count)
        let r = makeBatch(dataset: data, indices: all, normalization: .fashionMNIST, augmentation: robust, seed: 9, epoch: 0).x
        let s = makeBatch(dataset: data, indices: all, normalization: .fashionMNIST, augmentation: .standard, seed: 9, epoch: 0).x
        var clean = 0
        for i in all {
            let img = data.pixels[i * 256 ..< (i + 1) * 256]
            let corrupted = img.withUnsafeBufferPointer { robust.corrupt($0, channels: 1, height: 16, width: 16, seed: 9, epoch: 0, sampleIndex: i) }
            let same = corrupted == Array(img)
            if same { clean += 1 }
            XCTAssertEqual(Array(r[i * 256 ..< (i + 1) * 256]) == Array(s[i * 256 ..< (i + 1) * 256]), same, "image \(i)")
        }
        // P(no corruption) = 0.75⁷ ≈ 0.133: 53 of 400 expected, σ ≈ 6.8
        XCTAssertGreaterThan(clean, 30); XCTAssertLessThan(clean, 80)
        // another epoch corrupts differently
        XCTAssertNotEqual(makeBatch(dataset: data, indices: all, normalization: .fashionMNIST, augmentation: robust, seed: 9, epoch: 1).x, r)
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
        // Edge padding: a uniform grey image (a gain/bias-shifted background) stays uniform under every draw — zero
        // padding framed it with black strips, which a model with frozen (eval-mode) BN reads as a new domain
        let grey = try! ImageDataset(name: "g", channels: 1, height: 6, width: 6, numClasses: 1, pixels: [UInt8](repeating: 100, count: 36), labels: [0])
        for seed in UInt64(0)..<20 {
            let x = makeBatch(dataset: grey, indices: [0], normalization: .unit(channels: 1), augmentation: .standard, seed: seed, epoch: 0).x
            XCTAssertEqual(Set(x).count, 1, "seed \(seed) \(Augmentation.standard.parameters(seed: seed, epoch: 0, sampleIndex: 0))")
            XCTAssertEqual(x[0], 100 / 255, accuracy: 1e-6)
        }
        // Geometry: a single bright pixel (inside the border) moves by (dx, dy) after the optional flip.
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
