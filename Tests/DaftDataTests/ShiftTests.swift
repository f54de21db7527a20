import Foundation
import XCTest
@testable import DaftData

final class ShiftTests: XCTestCase {
    let allShifts: [ImageShift] = [
        .intensity(gain: 0.4...0.6, bias: 0.2...0.3), .gaussianNoise(sigma: 0.1), .impulseNoise(fraction: 0.1),
        .gaussianBlur(sigma: 1), .rotation(degrees: 20...40), .scale(factor: 0.6...0.8), .translation(maxPixels: 3),
        .pixelate(block: 3), .elastic(alpha: 1.5, sigma: 3), .invert,
    ]

    func testEveryShiftIsDeterministicAndChangesTheImage() {
        let data = syntheticDataset(count: 4, size: 20)
        for shift in allShifts {
            let domain = Domain(name: "t", shifts: [shift], seed: 7)
            let img = Array(data.image(at: 1))
            let a = domain.apply(img, channels: 1, height: 20, width: 20, sampleIndex: 5)
            let b = domain.apply(img, channels: 1, height: 20, width: 20, sampleIndex: 5)
            XCTAssertEqual(a, b, "\(shift) not deterministic")
            XCTAssertNotEqual(a, img, "\(shift) left the image unchanged")
        }
    }

    func testRandomShiftsDependOnTheSampleIndexAndSeed() {
        let img = Array(syntheticDataset(count: 1, size: 20).image(at: 0))
        for shift in allShifts where shift != .invert && shift != .gaussianBlur(sigma: 1) && shift != .pixelate(block: 3) {
            let d = Domain(name: "t", shifts: [shift])
            // Some shifts have few outcomes (translation, rotation sign); look at several indices.
            let outs = Set((0..<8).map { d.apply(img, channels: 1, height: 20, width: 20, sampleIndex: $0) })
            XCTAssertGreaterThan(outs.count, 1, "\(shift) ignores the sample index")
            let other = Domain(name: "t", shifts: [shift], seed: 99)
            let same = (0..<8).filter {
                d.apply(img, channels: 1, height: 20, width: 20, sampleIndex: $0)
                    == other.apply(img, channels: 1, height: 20, width: 20, sampleIndex: $0)
            }
            XCTAssertLessThan(same.count, 8, "\(shift) ignores the domain seed")
        }
    }

    func testInvertBlurPixelateValues() {
        let img: [UInt8] = [0, 255, 10, 20, 30, 40, 50, 60, 70]
        XCTAssertEqual(Domain(name: "i", shifts: [.invert]).apply(img, channels: 1, height: 3, width: 3, sampleIndex: 0),
                       img.map { 255 - $0 })
        let p = Domain(name: "p", shifts: [.pixelate(block: 2)]).apply(img, channels: 1, height: 3, width: 3, sampleIndex: 0)
        // Blocks: {0,255,20,30} mean 76.25; {10,40} 25; {50,60} 55; {70}.
        XCTAssertEqual(p, [76, 76, 25, 76, 76, 25, 55, 55, 70])
        let flat = [UInt8](repeating: 90, count: 25)
        XCTAssertEqual(Domain(name: "b", shifts: [.gaussianBlur(sigma: 1.5)]).apply(flat, channels: 1, height: 5, width: 5, sampleIndex: 3), flat)
    }

    func testShiftsAreIndependentOfLoadOrderAndSubsets() {
        let data = syntheticDataset(count: 12)
        let domain = FashionShift.domain(named: "elastic")!
        let whole = data.applying(domain)
        let order = [7, 2, 11, 2, 0]
        let subsetThenShift = data.subset(order).applying(domain, sampleKeys: order)
        XCTAssertEqual(subsetThenShift.pixels, whole.subset(order).pixels)
        // Same index, same pixels; another index, other pixels (images 2 and 7 share no draws).
        XCTAssertEqual(Array(subsetThenShift.image(at: 1)), Array(subsetThenShift.image(at: 3)))
        let again = data.applying(domain)
        XCTAssertEqual(again.pixels, whole.pixels)
        let img = Array(data.image(at: 0))
        XCTAssertNotEqual(domain.apply(img, channels: 1, height: 16, width: 16, sampleIndex: 0),
                          domain.apply(img, channels: 1, height: 16, width: 16, sampleIndex: 1))
    }

    func testMultiChannelGeometryMovesChannelsTogether() {
        // Three identical channels stay identical under every shift except the per-element noises.
        let plane = Array(syntheticDataset(count: 1, size: 16).image(at: 0))
        let rgb = plane + plane + plane
        for shift in allShifts where ![ImageShift.gaussianNoise(sigma: 0.1), .impulseNoise(fraction: 0.1)].contains(shift) {
            let out = Domain(name: "m", shifts: [shift]).apply(rgb, channels: 3, height: 16, width: 16, sampleIndex: 2)
            XCTAssertEqual(Array(out[0..<256]), Array(out[256..<512]), "\(shift)")
            XCTAssertEqual(Array(out[0..<256]), Array(out[512..<768]), "\(shift)")
        }
    }

    func testFashionShiftDomainsShareTheIDStepsAndAreNamedUniquely() {
        let names = FashionShift.domains.map(\.name)
        XCTAssertEqual(Set(names).count, names.count)
        XCTAssertEqual(Array(names.prefix(2)), ["clean", "id"])
        XCTAssertEqual(FashionShift.oodDomainNames.first, "clean")
        XCTAssertGreaterThanOrEqual(FashionShift.oodShifted.count, 6)
        for d in FashionShift.oodShifted {
            XCTAssertEqual(d.steps.count, FashionShift.id.steps.count + 1, d.name)
            let idSteps = d.steps.filter { FashionShift.id.steps.contains($0) }
            XCTAssertEqual(idSteps, FashionShift.id.steps, "\(d.name) must contain the id steps in order")
        }
        // An image under `blur` equals `id` applied to the blurred clean image (same id noise).
        let img = Array(syntheticDataset(count: 1, size: 16).image(at: 0))
        let blur = FashionShift.domain(named: "blur")!
        let blurOnly = Domain(name: "b", steps: [blur.steps[0]])
        let viaSteps = FashionShift.id.apply(blurOnly.apply(img, channels: 1, height: 16, width: 16, sampleIndex: 4),
                                             channels: 1, height: 16, width: 16, sampleIndex: 4)
        let direct = blur.apply(img, channels: 1, height: 16, width: 16, sampleIndex: 4)
        // Equal up to the rounding to uint8 between the two stages.
        XCTAssertLessThanOrEqual(zip(viaSteps, direct).map { abs(Int($0) - Int($1)) }.max()!, 1)
    }

    func testRNGKnownValuesAndHashStability() {
        var r = SplitMix64(seed: 0)
        // Reference SplitMix64 outputs for seed 0.
        XCTAssertEqual(r.next(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(r.next(), 0x6E78_9E6A_A1B9_65F4)
        XCTAssertEqual(DataHash.fnv1a(""), 0xCBF2_9CE4_8422_2325)
        XCTAssertEqual(DataHash.fnv1a("a"), 0xAF63_DC4C_8601_EC8C)
        XCTAssertNotEqual(DataHash.combine(1, 2), DataHash.combine(2, 1))
        var g = SplitMix64(seed: 42)
        let xs = (0..<20_000).map { _ in g.nextGaussian() }
        let mean = xs.reduce(0, +) / Float(xs.count)
        let variance = xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(xs.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
    }

    func testRealTestSetUnderEveryDomainStaysRecognisable() throws {
        try XCTSkipUnless(fashionMNISTAvailable, "Fashion-MNIST not installed")
        let test = try DataCatalog.fashionMNIST(test: true).subset(0..<200)
        let clean = test.pixels.map(Float.init)
        for d in FashionShift.domains {
            let shifted = test.applying(d, sampleKeys: Array(0..<200)).pixels.map(Float.init)
            // The shifted images stay correlated with the clean ones (inversion: anti-correlated).
            let r = correlation(clean, shifted)
            if d.name == "invert" { XCTAssertLessThan(r, -0.3, d.name) } else { XCTAssertGreaterThan(r, 0.3, d.name) }
        }
    }

    private func correlation(_ a: [Float], _ b: [Float]) -> Float {
        let ma = a.reduce(0, +) / Float(a.count), mb = b.reduce(0, +) / Float(b.count)
        var sab: Float = 0, saa: Float = 0, sbb: Float = 0
        for i in a.indices { let x = a[i] - ma, y = b[i] - mb; sab += x * y; saa += x * x; sbb += y * y }
        return sab / (saa * sbb).squareRoot()
    }
}
