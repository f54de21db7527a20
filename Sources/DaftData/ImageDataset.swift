import Foundation

/// A labelled image classification dataset held in memory: `count` images of
/// `channels × height × width` unsigned bytes, stored NCHW in `pixels`, and one class label per image.
public struct ImageDataset: Sendable {
    /// A human-readable name (usually the data specification it was loaded from).
    public var name: String
    /// Number of channels (1 for the MNIST family).
    public let channels: Int
    /// Image height in pixels.
    public let height: Int
    /// Image width in pixels.
    public let width: Int
    /// Number of classes; every label is in `0 ..< numClasses`.
    public let numClasses: Int
    /// All pixels, `count × channels × height × width`, NCHW, 0 = black, 255 = white.
    public let pixels: [UInt8]
    /// One label per image.
    public let labels: [Int32]

    /// Number of images.
    public var count: Int { labels.count }
    /// Bytes per image (`channels × height × width`).
    public var imageSize: Int { channels * height * width }

    /// A dataset from its parts. Throws a one-line `DataError` if the sizes disagree, a dimension is
    /// not positive, or a label is outside `0 ..< numClasses`.
    public init(name: String, channels: Int, height: Int, width: Int, numClasses: Int,
                pixels: [UInt8], labels: [Int32]) throws {
        guard channels > 0, height > 0, width > 0 else {
            throw DataError("\(name): image dimensions must be positive, got \(channels)×\(height)×\(width)")
        }
        guard numClasses > 0 else { throw DataError("\(name): number of classes must be positive, got \(numClasses)") }
        guard pixels.count == labels.count * channels * height * width else {
            throw DataError("\(name): \(pixels.count) pixel bytes do not match \(labels.count) images of \(channels)×\(height)×\(width)")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= numClasses }) {
            throw DataError("\(name): label \(labels[bad]) at index \(bad) is out of range for \(numClasses) classes (0...\(numClasses - 1))")
        }
        self.init(unchecked: name, channels: channels, height: height, width: width, numClasses: numClasses,
                  pixels: pixels, labels: labels)
    }

    /// Unchecked initialiser for internal transformations that preserve the invariants.
    init(unchecked name: String, channels: Int, height: Int, width: Int, numClasses: Int,
         pixels: [UInt8], labels: [Int32]) {
        self.name = name
        self.channels = channels
        self.height = height
        self.width = width
        self.numClasses = numClasses
        self.pixels = pixels
        self.labels = labels
    }

    /// The pixels of image `i` (`channels × height × width`, CHW).
    public func image(at i: Int) -> ArraySlice<UInt8> {
        pixels[i * imageSize ..< (i + 1) * imageSize]
    }

    /// The images at `indices`, in that order (indices may repeat). Traps on an out-of-range index.
    public func subset(_ indices: [Int], name: String? = nil) -> ImageDataset {
        let size = imageSize
        var px = [UInt8](repeating: 0, count: indices.count * size)
        var lb = [Int32](repeating: 0, count: indices.count)
        px.withUnsafeMutableBufferPointer { dst in
            pixels.withUnsafeBufferPointer { src in
                for (k, i) in indices.enumerated() {
                    precondition(i >= 0 && i < count, "subset index \(i) out of range 0..<\(count)")
                    dst.baseAddress!.advanced(by: k * size).update(from: src.baseAddress!.advanced(by: i * size), count: size)
                    lb[k] = labels[i]
                }
            }
        }
        return ImageDataset(unchecked: name ?? self.name, channels: channels, height: height, width: width,
                            numClasses: numClasses, pixels: px, labels: lb)
    }

    /// The images in `range` (a contiguous subset).
    public func subset(_ range: Range<Int>, name: String? = nil) -> ImageDataset {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "subset range \(range) out of 0..<\(count)")
        return ImageDataset(unchecked: name ?? self.name, channels: channels, height: height, width: width,
                            numClasses: numClasses,
                            pixels: Array(pixels[range.lowerBound * imageSize ..< range.upperBound * imageSize]),
                            labels: Array(labels[range]))
    }

    /// How many images each class has (`numClasses` entries).
    public func classCounts() -> [Int] {
        var c = [Int](repeating: 0, count: numClasses)
        for l in labels { c[Int(l)] += 1 }
        return c
    }

    /// This dataset with `domain` applied to every image. Image `i` is shifted with the random streams
    /// of sample key `sampleKeys[i]` (default: `i`), so a shifted subset equals the subset of the
    /// shifted whole when it is given the original indices as keys.
    public func applying(_ domain: Domain, sampleKeys: [Int]? = nil, name: String? = nil) -> ImageDataset {
        if let keys = sampleKeys { precondition(keys.count == count, "need one sample key per image") }
        if domain.steps.isEmpty {
            var d = self
            d.name = name ?? self.name
            return d
        }
        let size = imageSize
        let c = channels, h = height, w = width
        var out = [UInt8](repeating: 0, count: pixels.count)
        let n = count
        let chunks = max(1, min(n, 64))
        out.withUnsafeMutableBufferPointer { dst in
            let dstBase = dst.baseAddress!
            nonisolated(unsafe) let dstPtr = dstBase
            pixels.withUnsafeBufferPointer { src in
                nonisolated(unsafe) let srcPtr = src.baseAddress!
                DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                    let lo = n * chunk / chunks, hi = n * (chunk + 1) / chunks
                    for i in lo..<hi {
                        let input = UnsafeBufferPointer(start: srcPtr + i * size, count: size)
                        let output = UnsafeMutableBufferPointer(start: dstPtr + i * size, count: size)
                        domain.apply(input, into: output, channels: c, height: h, width: w,
                                     sampleIndex: sampleKeys?[i] ?? i)
                    }
                }
            }
        }
        return ImageDataset(unchecked: name ?? self.name, channels: c, height: h, width: w,
                            numClasses: numClasses, pixels: out, labels: labels)
    }

    /// This dataset with `target` channels (1 or 3), each image converted by `DecodedImage.converted` — PIL's
    /// `convert('L')` / `convert('RGB')`, as torchvision's loader does (grey replicated, alpha dropped).
    public func converted(toChannels target: Int) throws -> ImageDataset {
        if target == channels { return self }
        guard (target == 1 || target == 3) && (1...4).contains(channels) else {
            throw DataError("\(name): cannot convert \(channels)-channel images to \(target) channels (models take grey or RGB; images may be grey, grey+alpha, RGB or RGBA)")
        }
        var out = [UInt8]()
        out.reserveCapacity(count * target * height * width)
        for i in 0..<count {
            out += try DecodedImage(planar: image(at: i), channels: channels, height: height, width: width).converted(toChannels: target).planarPixels
        }
        return ImageDataset(unchecked: name, channels: target, height: height, width: width, numClasses: numClasses,
                            pixels: out, labels: labels)
    }
}
