import Foundation

// Pillow's bilinear resize and torchvision's standard transforms on PIL images, reproduced bit for bit
// (measured against Pillow 13 / torchvision 0.29 in Tests/DaftDataTests/ImageTransformTests.swift).

extension DecodedImage {
    /// The image resized to `width × height` exactly as Pillow's `Image.resize((width, height), BILINEAR)`
    /// does it for mode L or RGB: an antialiased triangle filter whose support grows with the downscale
    /// factor, applied separably with an 8-bit intermediate, Pillow's coefficients (computed in double,
    /// normalised per output pixel, rounded to 22-bit fixed point) and its rounding
    /// (`(2^21 + Σ pixel·k) >> 22`, clipped to 0…255). The horizontal pass runs first, except — as in Pillow
    /// ≥ 13 (`ImagingResampleInner`) — when the height shrinks by more than twice as many pixels as the width
    /// does, then the vertical pass runs first (older Pillow always went horizontal first; the order changes
    /// results by at most 1). A pass whose size does not change is skipped; the same size returns the image
    /// unchanged. 1- or 3-channel images only (Pillow premultiplies alpha for LA/RGBA; convert first).
    public func resized(width outWidth: Int, height outHeight: Int) -> DecodedImage {
        precondition(channels == 1 || channels == 3, "resized(width:height:) takes 1- or 3-channel images, not \(channels)")
        precondition(outWidth > 0 && outHeight > 0, "resize to \(outWidth)×\(outHeight)")
        if outWidth == width && outHeight == height { return self }
        let verticalFirst = height - outHeight > 0 && height - outHeight > (width - outWidth) * 2
        if verticalFirst {
            let vertical = PillowBilinear(inSize: height, outSize: outHeight)
            let rows = vertical.resampleColumns(pixels, rowSamples: width * channels, rowOffset: 0)
            if outWidth == width {
                return DecodedImage(unchecked: width, height: outHeight, channels: channels, pixels: rows)
            }
            let horizontal = PillowBilinear(inSize: width, outSize: outWidth)
            let out = horizontal.resampleRows(rows, rowLength: width, channels: channels, rows: 0 ..< outHeight)
            return DecodedImage(unchecked: outWidth, height: outHeight, channels: channels, pixels: out)
        }
        let vertical = PillowBilinear(inSize: height, outSize: outHeight)
        // Rows of the source the vertical pass reads (Pillow's ybox_first ..< ybox_last).
        let firstRow = vertical.start[0]
        let endRow = vertical.start[outHeight - 1] + vertical.count[outHeight - 1]
        let rows: [UInt8]  // endRow - firstRow rows of `rowWidth` pixels
        let rowWidth: Int
        if outWidth != width {
            let horizontal = PillowBilinear(inSize: width, outSize: outWidth)
            rows = horizontal.resampleRows(pixels, rowLength: width, channels: channels, rows: firstRow ..< endRow)
            rowWidth = outWidth
        } else {
            rows = Array(pixels[firstRow * width * channels ..< endRow * width * channels])
            rowWidth = width
        }
        if outHeight == height {
            return DecodedImage(unchecked: rowWidth, height: height, channels: channels, pixels: rows)
        }
        let out = vertical.resampleColumns(rows, rowSamples: rowWidth * channels, rowOffset: firstRow)
        return DecodedImage(unchecked: rowWidth, height: outHeight, channels: channels, pixels: out)
    }

    /// The `width × height` region whose top-left pixel is (`left`, `top`), like Pillow's
    /// `crop((left, top, left + width, top + height))`: parts outside the image are 0.
    public func cropped(top: Int, left: Int, height cropHeight: Int, width cropWidth: Int) -> DecodedImage {
        precondition(cropWidth > 0 && cropHeight > 0, "crop of \(cropWidth)×\(cropHeight)")
        if top == 0 && left == 0 && cropWidth == width && cropHeight == height { return self }
        var out = [UInt8](repeating: 0, count: cropWidth * cropHeight * channels)
        let x0 = max(0, left), x1 = min(width, left + cropWidth)
        if x0 < x1 {
            pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for y in max(0, top) ..< min(height, top + cropHeight) {
                        let from = (y * width + x0) * channels, to = ((y - top) * cropWidth + x0 - left) * channels
                        dst.baseAddress!.advanced(by: to).update(from: src.baseAddress!.advanced(by: from), count: (x1 - x0) * channels)
                    }
                }
            }
        }
        return DecodedImage(unchecked: cropWidth, height: cropHeight, channels: channels, pixels: out)
    }

    /// The image mirrored left to right (Pillow's `transpose(FLIP_LEFT_RIGHT)`, torchvision's `hflip`).
    public func flippedHorizontally() -> DecodedImage {
        var out = [UInt8](repeating: 0, count: pixels.count)
        let c = channels
        for y in 0..<height {
            let row = y * width * c
            for x in 0..<width {
                let from = row + x * c, to = row + (width - 1 - x) * c
                for k in 0..<c { out[to + k] = pixels[from + k] }
            }
        }
        return DecodedImage(unchecked: width, height: height, channels: channels, pixels: out)
    }
}

/// Pillow's bilinear resampling coefficients for one axis (`precompute_coeffs` with the triangle filter,
/// `normalize_coeffs_8bpc`) and the two 8-bit passes that use them.
struct PillowBilinear {
    /// Output pixel i reads input pixels start[i] ..< start[i] + count[i] with weights[i·taps ..< i·taps + count[i]].
    let start: [Int]
    let count: [Int]
    let weights: [Int32]
    let taps: Int

    static let precisionBits = 22  // Pillow's PRECISION_BITS = 32 − 8 − 2

    init(inSize: Int, outSize: Int) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale  // the triangle filter's support is 1
        let taps = Int(support.rounded(.up)) * 2 + 1
        var start = [Int](repeating: 0, count: outSize), count = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * taps)
        var k = [Double](repeating: 0, count: taps)
        let inverseScale = 1.0 / filterScale
        let one = Double(1 << PillowBilinear.precisionBits)
        for i in 0..<outSize {
            let center = (Double(i) + 0.5) * scale
            let lo = max(0, Int(center - support + 0.5))  // C's (int) truncates toward zero, as Int(_:) does
            let n = min(inSize, Int(center + support + 0.5)) - lo
            var total = 0.0
            for x in 0..<n {
                let t = abs((Double(x + lo) - center + 0.5) * inverseScale)
                let w = t < 1.0 ? 1.0 - t : 0.0
                k[x] = w
                total += w
            }
            for x in 0..<n {
                let w = total != 0.0 ? k[x] / total : k[x]
                weights[i * taps + x] = w < 0 ? Int32(-0.5 + w * one) : Int32(0.5 + w * one)
            }
            start[i] = lo
            count[i] = n
        }
        self.start = start
        self.count = count
        self.weights = weights
        self.taps = taps
    }

    @inline(__always)
    static func clip8(_ sum: Int32) -> UInt8 {
        let v = sum >> Int32(precisionBits)
        return v <= 0 ? 0 : (v >= 255 ? 255 : UInt8(v))
    }

    /// Horizontal pass (`ImagingResampleHorizontal_8bpc`) over `rows` of an HWC image whose rows are
    /// `rowLength` pixels: returns rows.count rows of start.count pixels.
    func resampleRows(_ pixels: [UInt8], rowLength: Int, channels: Int, rows: Range<Int>) -> [UInt8] {
        let outLength = start.count
        var out = [UInt8](repeating: 0, count: rows.count * outLength * channels)
        let half = Int32(1 << (PillowBilinear.precisionBits - 1))
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                weights.withUnsafeBufferPointer { kk in
                    for (r, y) in rows.enumerated() {
                        let inRow = src.baseAddress! + y * rowLength * channels
                        let outRow = dst.baseAddress! + r * outLength * channels
                        for i in 0..<outLength {
                            let k = kk.baseAddress! + i * taps, n = count[i]
                            let p = inRow + start[i] * channels
                            if channels == 3 {  // the common case, all three sums in one sweep
                                var r = half, g = half, b = half
                                for x in 0..<n {
                                    let w = k[x], q = p + 3 * x
                                    r &+= Int32(q[0]) &* w; g &+= Int32(q[1]) &* w; b &+= Int32(q[2]) &* w
                                }
                                outRow[3 * i] = PillowBilinear.clip8(r)
                                outRow[3 * i + 1] = PillowBilinear.clip8(g)
                                outRow[3 * i + 2] = PillowBilinear.clip8(b)
                                continue
                            }
                            for c in 0..<channels {
                                var sum = half
                                for x in 0..<n { sum &+= Int32(p[x * channels + c]) &* k[x] }
                                outRow[i * channels + c] = PillowBilinear.clip8(sum)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Vertical pass (`ImagingResampleVertical_8bpc`): `rows` holds consecutive rows of `rowSamples` samples,
    /// the first being input row `rowOffset`; returns start.count rows.
    func resampleColumns(_ rows: [UInt8], rowSamples: Int, rowOffset: Int) -> [UInt8] {
        let outHeight = start.count
        var out = [UInt8](repeating: 0, count: outHeight * rowSamples)
        var sums = [Int32](repeating: 0, count: rowSamples)
        let half = Int32(1 << (PillowBilinear.precisionBits - 1))
        rows.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                sums.withUnsafeMutableBufferPointer { acc in
                    for i in 0..<outHeight {
                        for s in 0..<rowSamples { acc[s] = half }
                        for y in 0..<count[i] {
                            let k = weights[i * taps + y]
                            let row = src.baseAddress! + (start[i] - rowOffset + y) * rowSamples
                            for s in 0..<rowSamples { acc[s] &+= Int32(row[s]) &* k }
                        }
                        let outRow = dst.baseAddress! + i * rowSamples
                        for s in 0..<rowSamples { outRow[s] = PillowBilinear.clip8(acc[s]) }
                    }
                }
            }
        }
        return out
    }
}

/// torchvision's standard ImageNet-style transforms on PIL images (`transforms.Resize`, `CenterCrop`,
/// `RandomResizedCrop`, `RandomHorizontalFlip`), reproduced on `DecodedImage` with Pillow's bilinear resize.
/// Random draws come from daft's counter-based `SplitMix64`, a pure function of (seed, epoch, sample index).
public enum ImageTransforms {
    /// A crop rectangle (torchvision's (i, j, h, w) = (top, left, height, width)) and whether to flip the
    /// result horizontally.
    public struct CropParameters: Sendable, Equatable {
        /// First row of the crop.
        public var top: Int
        /// First column of the crop.
        public var left: Int
        /// Rows in the crop.
        public var height: Int
        /// Columns in the crop.
        public var width: Int
        /// Mirror the resized crop left to right.
        public var flip: Bool

        /// Parameters from their parts.
        public init(top: Int, left: Int, height: Int, width: Int, flip: Bool) {
            self.top = top; self.left = left; self.height = height; self.width = width; self.flip = flip
        }
    }

    /// torchvision `Resize(size)` with an int: the shorter side becomes `size`, the longer
    /// `Int(size · long / short)` (truncated, as torchvision does), Pillow bilinear; unchanged when the image
    /// already has that size.
    public static func resize(_ image: DecodedImage, shorterSide size: Int) -> DecodedImage {
        precondition(size > 0, "Resize(\(size))")
        let w = image.width, h = image.height
        let short = min(w, h), long = max(w, h)
        let newLong = Int(Double(size * long) / Double(short))
        let (newW, newH) = w <= h ? (size, newLong) : (newLong, size)
        return image.resized(width: newW, height: newH)
    }

    /// torchvision `CenterCrop(size)`: top = `round((h − size) / 2)`, left = `round((w − size) / 2)` with
    /// Python's round-half-to-even; an image smaller than `size` is first padded with 0 as torchvision pads it
    /// (left/top `(size − w) // 2`, the rest right/bottom).
    public static func centerCrop(_ image: DecodedImage, size: Int) -> DecodedImage {
        precondition(size > 0, "CenterCrop(\(size))")
        var h = image.height, w = image.width, padTop = 0, padLeft = 0
        if size > w || size > h {
            if size > w { padLeft = (size - w) / 2; w = size }
            if size > h { padTop = (size - h) / 2; h = size }
        }
        let top = Int((Double(h - size) / 2.0).rounded(.toNearestOrEven))
        let left = Int((Double(w - size) / 2.0).rounded(.toNearestOrEven))
        return image.cropped(top: top - padTop, left: left - padLeft, height: size, width: size)
    }

    /// torchvision `F.resized_crop(img, top, left, height, width, [size, size], BILINEAR)` followed by
    /// `F.hflip` when `crop.flip`: Pillow's crop (0 outside the image), then Pillow's bilinear resize to
    /// `size × size`.
    public static func resizedCrop(_ image: DecodedImage, _ crop: CropParameters, size: Int) -> DecodedImage {
        precondition(size > 0, "resized crop to \(size)")
        let resized = image.cropped(top: crop.top, left: crop.left, height: crop.height, width: crop.width)
            .resized(width: size, height: size)
        return crop.flip ? resized.flippedHorizontally() : resized
    }

    /// `RandomResizedCrop.get_params` (torchvision): up to 10 attempts of an area fraction uniform in `scale`
    /// and an aspect ratio log-uniform in `ratio`, w = round(√(area·ratio)), h = round(√(area/ratio)) (Python's
    /// round-half-to-even), accepted when 0 < w ≤ width and 0 < h ≤ height, then top and left uniform over the
    /// valid positions; otherwise the central crop clamped to `ratio`. Plus `RandomHorizontalFlip(0.5)`. The
    /// draws are a pure function of (seed, epoch, sampleIndex) — not of torch's generator, so the values differ
    /// from torchvision's, their distribution does not.
    public static func randomResizedCropParameters(imageWidth width: Int, imageHeight height: Int, seed: UInt64,
                                                   epoch: Int, sampleIndex: Int,
                                                   scale: ClosedRange<Double> = 0.08...1.0,
                                                   ratio: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0)) -> CropParameters {
        precondition(width > 0 && height > 0, "random resized crop of a \(width)×\(height) image")
        let epochKey = UInt64(bitPattern: Int64(epoch)), indexKey = UInt64(bitPattern: Int64(sampleIndex))
        var rng = SplitMix64(keys: 0x5252_4352_4F50, seed, epochKey, indexKey)  // "RRCROP"
        var flipRNG = SplitMix64(keys: 0x4846_4C49_50, seed, epochKey, indexKey)  // "HFLIP"
        let flip = flipRNG.nextBool(probability: 0.5)
        let area = Double(width * height)
        let logRatio = (log(ratio.lowerBound), log(ratio.upperBound))
        for _ in 0..<10 {
            let targetArea = area * uniform(&rng, scale.lowerBound, scale.upperBound)
            let aspect = exp(uniform(&rng, logRatio.0, logRatio.1))
            let w = Int((targetArea * aspect).squareRoot().rounded(.toNearestOrEven))
            let h = Int((targetArea / aspect).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= width && h > 0 && h <= height {
                let top = rng.nextInt(in: 0...(height - h))
                let left = rng.nextInt(in: 0...(width - w))
                return CropParameters(top: top, left: left, height: h, width: w, flip: flip)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lowerBound {
            h = Int((Double(w) / ratio.lowerBound).rounded(.toNearestOrEven))
        } else if inRatio > ratio.upperBound {
            w = Int((Double(h) * ratio.upperBound).rounded(.toNearestOrEven))
        }
        return CropParameters(top: (height - h) / 2, left: (width - w) / 2, height: h, width: w, flip: flip)
    }

    /// The `Resize` size of the evaluation transform for crop `size`: round(size · 256 / 224) (256 for 224).
    public static func evalResizeSize(for size: Int) -> Int {
        Int((Double(size * 256) / 224.0).rounded(.toNearestOrEven))
    }

    /// The evaluation transform: `Resize(evalResizeSize(for: size))` then `CenterCrop(size)`; a
    /// `size × size` image.
    public static func evalTransform(_ image: DecodedImage, size: Int) -> DecodedImage {
        centerCrop(resize(image, shorterSide: evalResizeSize(for: size)), size: size)
    }

    /// The training transform: `RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3))` then
    /// `RandomHorizontalFlip(0.5)`, with the draws of `randomResizedCropParameters` for (seed, epoch,
    /// sampleIndex); a `size × size` image.
    public static func trainTransform(_ image: DecodedImage, size: Int, seed: UInt64, epoch: Int,
                                      sampleIndex: Int) -> DecodedImage {
        let crop = randomResizedCropParameters(imageWidth: image.width, imageHeight: image.height, seed: seed,
                                               epoch: epoch, sampleIndex: sampleIndex)
        return resizedCrop(image, crop, size: size)
    }

    /// A uniform Double in [lo, hi) from 53 random bits.
    private static func uniform(_ rng: inout SplitMix64, _ lo: Double, _ hi: Double) -> Double {
        lo + (hi - lo) * (Double(rng.next() >> 11) * 0x1p-53)
    }
}
