import Foundation
import XCTest
import DaftTestSupport
@testable import DaftData

/// Pillow's bilinear resize and torchvision's Resize / CenterCrop / resized_crop / RandomResizedCrop against
/// Pillow 13 and torchvision 0.29 (DAFT_PYTHON), and the determinism of the training transform's draws.
final class ImageTransformTests: XCTestCase {
    /// 600 random L/RGB images and target sizes (1–259 px, up- and downscaling, 1-pixel sides, one pass only,
    /// identity, ×50 reductions and enlargements, noise and smooth content): bit-exact with Pillow's
    /// `Image.resize(size, BILINEAR)`.
    func testResizeIsBitExactWithPillow() throws {
        let dir = try makeTempDir(self)
        try TestPython.run(resizeScript, [dir.path])
        var worst = 0, cases = 0, differing = 0
        for line in try String(contentsOf: dir.appendingPathComponent("manifest.txt"), encoding: .utf8).split(separator: "\n") {
            let f = line.split(separator: " ").map { Int($0)! }
            let (k, channels, w, h, ow, oh) = (f[0], f[1], f[2], f[3], f[4], f[5])
            let input = try DecodedImage(width: w, height: h, channels: channels, pixels: try fileBytes(dir.appendingPathComponent("\(k).in")))
            let ours = input.resized(width: ow, height: oh)
            XCTAssertEqual([ours.width, ours.height, ours.channels], [ow, oh, channels])
            let d = maxAbsDifference(ours.pixels, try fileBytes(dir.appendingPathComponent("\(k).out")))
            if d != 0 { differing += 1; print("resize case \(k): \(channels)ch \(w)×\(h) → \(ow)×\(oh): max |diff| \(d)") }
            worst = max(worst, d)
            cases += 1
        }
        print("resize vs Pillow: \(cases) cases, \(differing) differ, max |diff| \(worst)")
        XCTAssertEqual(cases, 600)
        XCTAssertEqual(worst, 0)
    }

    /// Eval transform vs `Compose([Resize(round(S·256/224)), CenterCrop(S)])`, CenterCrop alone (with
    /// torchvision's zero padding of small images), explicit-parameter crops vs `F.resized_crop` + `F.hflip`
    /// (some partly outside the image), and RandomResizedCrop's fallback vs `get_params`: all exact.
    func testTransformsMatchTorchvision() throws {
        let dir = try makeTempDir(self)
        try TestPython.run(torchvisionScript, [dir.path])
        var counts: [String: Int] = [:]
        for line in try String(contentsOf: dir.appendingPathComponent("manifest.txt"), encoding: .utf8).split(separator: "\n") {
            let f = line.split(separator: " ").map(String.init)
            let kind = f[0]
            counts[kind, default: 0] += 1
            if kind == "fallback" {
                let v = f[1...].map { Int($0)! }
                let p = ImageTransforms.randomResizedCropParameters(imageWidth: v[0], imageHeight: v[1], seed: 1, epoch: 0, sampleIndex: 0)
                XCTAssertEqual([p.top, p.left, p.height, p.width], Array(v[2...5]), "fallback \(v[0])×\(v[1])")
                continue
            }
            let name = f[1]
            let v = f[2...].map { Int($0)! }
            let (channels, w, h, s) = (v[0], v[1], v[2], v[3])
            let input = try DecodedImage(width: w, height: h, channels: channels, pixels: try fileBytes(dir.appendingPathComponent("\(name).in")))
            let ours: DecodedImage
            switch kind {
            case "eval": ours = ImageTransforms.evalTransform(input, size: s)
            case "center": ours = ImageTransforms.centerCrop(input, size: s)
            default:
                let crop = ImageTransforms.CropParameters(top: v[4], left: v[5], height: v[6], width: v[7], flip: v[8] == 1)
                ours = ImageTransforms.resizedCrop(input, crop, size: s)
            }
            XCTAssertEqual([ours.width, ours.height, ours.channels], [s, s, channels], name)
            XCTAssertEqual(maxAbsDifference(ours.pixels, try fileBytes(dir.appendingPathComponent("\(name).out"))), 0, line.description)
        }
        XCTAssertEqual(counts, ["eval": 10, "center": 6, "crop": 120, "fallback": 6])
    }

    func testEvalResizeSize() {
        XCTAssertEqual(ImageTransforms.evalResizeSize(for: 224), 256)
        XCTAssertEqual(ImageTransforms.evalResizeSize(for: 32), 37)   // 36.57
        XCTAssertEqual(ImageTransforms.evalResizeSize(for: 28), 32)
        XCTAssertEqual(ImageTransforms.evalResizeSize(for: 64), 73)   // 73.14
    }

    /// The draws are a pure function of (seed, epoch, index), stay inside the image, follow torchvision's
    /// scale/ratio ranges, flip about half the time, and the training transform is the resized crop they name.
    func testTrainTransformDrawsAreDeterministicAndInRange() throws {
        var flips = 0, draws = 0, distinct = Set<[Int]>()
        for (w, h) in [(500, 375), (32, 32), (28, 28), (640, 200), (17, 90)] {
            for index in 0..<400 {
                let p = ImageTransforms.randomResizedCropParameters(imageWidth: w, imageHeight: h, seed: 42, epoch: 3, sampleIndex: index)
                XCTAssertEqual(p, ImageTransforms.randomResizedCropParameters(imageWidth: w, imageHeight: h, seed: 42, epoch: 3, sampleIndex: index))
                XCTAssertTrue(p.top >= 0 && p.left >= 0 && p.height > 0 && p.width > 0 && p.top + p.height <= h && p.left + p.width <= w, "\(p) in \(w)×\(h)")
                let area = Double(p.width * p.height) / Double(w * h), aspect = Double(p.width) / Double(p.height)
                // Rounding w and h to integers moves the area and the ratio a little outside the drawn ranges
                // on small images (at most ±0.5 px per side).
                let slack = 1.0 / Double(min(p.width, p.height))
                XCTAssertTrue(area >= 0.08 * (1 - 2 * slack) && area <= 1, "area fraction \(area) of \(p) in \(w)×\(h)")
                XCTAssertTrue(aspect >= 0.75 * (1 - 2 * slack) && aspect <= 4.0 / 3.0 * (1 + 2 * slack), "aspect \(aspect) of \(p)")
                if p.flip { flips += 1 }
                draws += 1
                distinct.insert([p.top, p.left, p.height, p.width])
            }
        }
        XCTAssertEqual(Double(flips) / Double(draws), 0.5, accuracy: 0.04)
        XCTAssertGreaterThan(distinct.count, 1500)
        // Other epochs and seeds give other draws.
        let a = (0..<50).map { ImageTransforms.randomResizedCropParameters(imageWidth: 500, imageHeight: 375, seed: 42, epoch: 3, sampleIndex: $0) }
        let b = (0..<50).map { ImageTransforms.randomResizedCropParameters(imageWidth: 500, imageHeight: 375, seed: 42, epoch: 4, sampleIndex: $0) }
        let c = (0..<50).map { ImageTransforms.randomResizedCropParameters(imageWidth: 500, imageHeight: 375, seed: 43, epoch: 3, sampleIndex: $0) }
        XCTAssertLessThan(zip(a, b).filter { $0 == $1 }.count, 3)
        XCTAssertLessThan(zip(a, c).filter { $0 == $1 }.count, 3)

        let image = randomImage(width: 61, height: 47, channels: 3, seed: 9)
        let out = ImageTransforms.trainTransform(image, size: 24, seed: 7, epoch: 1, sampleIndex: 5)
        XCTAssertEqual([out.width, out.height, out.channels], [24, 24, 3])
        XCTAssertEqual(out, ImageTransforms.trainTransform(image, size: 24, seed: 7, epoch: 1, sampleIndex: 5))
        let p = ImageTransforms.randomResizedCropParameters(imageWidth: 61, imageHeight: 47, seed: 7, epoch: 1, sampleIndex: 5)
        XCTAssertEqual(out, ImageTransforms.resizedCrop(image, p, size: 24))
    }

    /// Crop outside the image is 0 (Pillow's crop); flip mirrors columns.
    func testCropAndFlip() throws {
        let image = try DecodedImage(width: 3, height: 2, channels: 1, pixels: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(image.cropped(top: -1, left: 1, height: 2, width: 3).pixels, [0, 0, 0, 2, 3, 0])
        XCTAssertEqual(image.cropped(top: 5, left: 5, height: 1, width: 1).pixels, [0])
        XCTAssertEqual(image.flippedHorizontally().pixels, [3, 2, 1, 6, 5, 4])
        let rgb = try DecodedImage(width: 2, height: 1, channels: 3, pixels: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(rgb.flippedHorizontally().pixels, [4, 5, 6, 1, 2, 3])
    }
}

/// Random images and sizes with Pillow's resize of each: K.in, K.out, manifest "K channels w h ow oh".
private let resizeScript = #"""
import os, sys
import numpy as np
from PIL import Image
out = sys.argv[1]
rng = np.random.RandomState(5)
def size():
    r = rng.rand()
    return int(rng.randint(1, 5)) if r < 0.15 else int(rng.randint(1, 48)) if r < 0.75 else int(rng.randint(48, 260))
lines = []
for k in range(600):
    mode = 'L' if k % 2 == 0 else 'RGB'
    w, h, ow, oh = size(), size(), size(), size()
    kind = k % 10
    if kind == 0: ow = 1
    elif kind == 1: oh = 1
    elif kind == 2: ow = w  # vertical pass only
    elif kind == 3: oh = h  # horizontal pass only
    elif kind == 4: w, ow = int(rng.randint(150, 400)), int(rng.randint(1, 8))  # strong downscale
    elif kind == 5: w, ow = int(rng.randint(1, 6)), int(rng.randint(100, 300))  # strong upscale
    elif kind == 6: ow, oh = w, h  # identity
    if w * h * 3 > 200000: h = max(1, 200000 // (3 * w))
    ch = 1 if mode == 'L' else 3
    a = rng.randint(0, 256, size=(h, w, ch)).astype(np.uint8)
    if k % 3 == 0:  # smooth content too, where rounding matters most
        a = np.clip(np.linspace(0, 255, w)[None, :, None] * np.linspace(0.2, 1, h)[:, None, None] + rng.randint(-3, 4, size=(h, w, ch)), 0, 255).astype(np.uint8)
    im = Image.fromarray(a[:, :, 0] if ch == 1 else a, mode)
    r = np.asarray(im.resize((ow, oh), Image.BILINEAR))
    a.tofile(f'{out}/{k}.in'); r.tofile(f'{out}/{k}.out')
    lines.append(f'{k} {ch} {w} {h} {ow} {oh}')
open(f'{out}/manifest.txt', 'w').write('\n'.join(lines) + '\n')
"""#

/// torchvision results for the eval transform, CenterCrop, F.resized_crop (+ hflip) and get_params's fallback.
private let torchvisionScript = #"""
import os, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np
from PIL import Image
import torchvision.transforms as T
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode
out = sys.argv[1]
rng = np.random.RandomState(9)
lines = []
def picture(name, w, h, ch):
    a = rng.randint(0, 256, size=(h, w, ch)).astype(np.uint8)
    if rng.rand() < 0.5:
        a = np.clip(np.linspace(0, 255, w)[None, :, None] * np.linspace(0.3, 1, h)[:, None, None] + rng.randint(-9, 10, size=(h, w, ch)), 0, 255).astype(np.uint8)
    a.tofile(f'{out}/{name}.in')
    return Image.fromarray(a[:, :, 0] if ch == 1 else a, 'L' if ch == 1 else 'RGB')
def save(name, im):
    np.asarray(im).tofile(f'{out}/{name}.out')
for k, (w, h, ch, s) in enumerate([(500, 375, 3, 224), (375, 500, 3, 224), (40, 50, 3, 32), (28, 28, 1, 28), (31, 17, 1, 16),
                                   (7, 300, 3, 8), (224, 224, 3, 224), (1, 1, 3, 4), (256, 256, 1, 224), (97, 61, 3, 64)]):
    name = f'eval{k}'
    im = picture(name, w, h, ch)
    save(name, T.Compose([T.Resize(round(s * 256 / 224)), T.CenterCrop(s)])(im))
    lines.append(f'eval {name} {ch} {w} {h} {s}')
for k, (w, h, ch, s) in enumerate([(10, 6, 1, 9), (5, 5, 3, 8), (9, 4, 3, 4), (6, 11, 1, 3), (7, 7, 1, 7), (8, 3, 3, 5)]):
    name = f'center{k}'
    im = picture(name, w, h, ch)
    save(name, T.CenterCrop(s)(im))
    lines.append(f'center {name} {ch} {w} {h} {s}')
for k in range(120):
    name = f'crop{k}'
    w, h = int(rng.randint(1, 120)), int(rng.randint(1, 120))
    ch = 1 + 2 * (k % 2)
    im = picture(name, w, h, ch)
    top, left = int(rng.randint(0, h)), int(rng.randint(0, w))
    ch_, cw = int(rng.randint(1, h - top + 1)), int(rng.randint(1, w - left + 1))
    if k % 8 == 0:  # partly outside the image: Pillow's crop fills with 0
        top, left, ch_, cw = top - 3, left - 2, ch_ + 5, cw + 4
    s = int(rng.randint(1, 80))
    flip = (k // 2) % 2
    o = F.resized_crop(im, top, left, ch_, cw, [s, s], InterpolationMode.BILINEAR)
    if flip:
        o = F.hflip(o)
    save(name, o)
    lines.append(f'crop {name} {ch} {w} {h} {s} {top} {left} {ch_} {cw} {flip}')
# Shapes on which every RandomResizedCrop attempt fails, so torchvision's get_params is its deterministic fallback.
for w, h in [(2, 200), (200, 2), (1, 50), (50, 1), (1, 1), (3, 400)]:
    i, j, ph, pw = T.RandomResizedCrop.get_params(Image.new('L', (w, h)), [0.08, 1.0], [3.0 / 4.0, 4.0 / 3.0])
    lines.append(f'fallback {w} {h} {i} {j} {ph} {pw}')
open(f'{out}/manifest.txt', 'w').write('\n'.join(lines) + '\n')
"""#
