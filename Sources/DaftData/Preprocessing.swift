import Foundation

/// Per-channel pixel normalisation: `x = (pixel/255 − mean[c]) / std[c]`.
public struct Normalization: Sendable, Equatable {
    /// Per-channel mean of pixel/255.
    public let mean: [Float]
    /// Per-channel standard deviation of pixel/255.
    public let std: [Float]

    /// A normalisation with one mean and one standard deviation per channel.
    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == std.count && !mean.isEmpty, "mean and std need one value per channel")
        precondition(std.allSatisfy { $0 > 0 }, "std must be positive")
        self.mean = mean
        self.std = std
    }

    /// Fashion-MNIST training-set statistics: mean 0.2860, std 0.3530.
    public static let fashionMNIST = Normalization(mean: [0.2860], std: [0.3530])

    /// No normalisation beyond pixel/255 (mean 0, std 1) for `channels` channels.
    public static func unit(channels: Int) -> Normalization {
        Normalization(mean: [Float](repeating: 0, count: channels), std: [Float](repeating: 1, count: channels))
    }

    /// Number of channels.
    public var channels: Int { mean.count }

    /// The per-channel mean and std of pixel/255 over a whole dataset (float64 accumulation).
    public static func estimate(from dataset: ImageDataset) -> Normalization {
        let plane = dataset.height * dataset.width
        var sum = [Double](repeating: 0, count: dataset.channels)
        var sq = [Double](repeating: 0, count: dataset.channels)
        for i in 0..<dataset.count {
            for c in 0..<dataset.channels {
                let o = (i * dataset.channels + c) * plane
                var s = 0.0, q = 0.0
                for p in dataset.pixels[o ..< o + plane] { let v = Double(p) / 255; s += v; q += v * v }
                sum[c] += s; sq[c] += q
            }
        }
        let n = Double(max(1, dataset.count * plane))
        let mean = sum.map { $0 / n }
        let std = zip(sq, mean).map { max(($0 / n - $1 * $1), 1e-12).squareRoot() }
        return Normalization(mean: mean.map(Float.init), std: std.map(Float.init))
    }
}

/// Training augmentation: a random translation by up to `maxTranslation` pixels on each axis (edge
/// padding: the nearest border pixel, as torchvision's `padding_mode="edge"`) and a horizontal flip with probability `flipProbability`, after (for the robust recipe) a random mix
/// of image corruptions. The random draws for a sample are a function of (seed, epoch, sample index) only, so they
/// do not depend on the number of ranks, the batch a sample lands in, or the order samples are processed.
public struct Augmentation: Sendable, Equatable {
    /// Largest translation in pixels on each axis (uniform integer in ±maxTranslation).
    public let maxTranslation: Int
    /// Probability of a horizontal flip.
    public let flipProbability: Float
    /// Corruptions each applied, in this order, with probability `corruptionProbability` (independently per image
    /// and corruption) before the translation and flip; empty for the standard recipe.
    public let corruptions: [ImageShift]
    /// The probability of each corruption.
    public let corruptionProbability: Float

    /// An augmentation with the given translation range, flip probability and corruptions.
    public init(maxTranslation: Int = 2, flipProbability: Float = 0.5, corruptions: [ImageShift] = [], corruptionProbability: Float = 0) {
        precondition(maxTranslation >= 0 && flipProbability >= 0 && flipProbability <= 1)
        precondition(corruptionProbability >= 0 && corruptionProbability <= 1)
        self.maxTranslation = maxTranslation
        self.flipProbability = flipProbability
        self.corruptions = corruptions
        self.corruptionProbability = corruptionProbability
    }

    /// The standard training augmentation: translation ±2 px, horizontal flip p = 0.5.
    public static let standard = Augmentation()

    /// The broad "robust" pretraining recipe (`daft pretrain --augment robust`): each of seven corruption families —
    /// rotation ±0–45°, shrink ×0.55–1, gaussian blur σ 1 px, gain 0.35–1.1 with bias −0.1–0.35, gaussian noise
    /// σ 0.06, salt-and-pepper on 5% of pixels, inversion — with probability 0.25 per image, in that order
    /// (geometry and optics first, then photometry, as the fashion-shift domains), then the standard translation
    /// and flip. About 13% of images stay clean. Elastic deformation and pixelation are left out, so two OOD
    /// families of fashion-shift stay unseen in pretraining.
    public static let robust = Augmentation(corruptions: [
        .rotation(degrees: 0...45), .scale(factor: 0.55...1.0), .gaussianBlur(sigma: 1.0),
        .intensity(gain: 0.35...1.1, bias: -0.1...0.35), .gaussianNoise(sigma: 0.06), .impulseNoise(fraction: 0.05), .invert,
    ], corruptionProbability: 0.25)

    /// The named recipes of `--augment`.
    public static let recipes: [(name: String, augmentation: Augmentation)] = [("standard", .standard), ("robust", .robust)]

    /// The recipe called `name`, or nil.
    public static func named(_ name: String) -> Augmentation? { recipes.first { $0.name == name }?.augmentation }

    /// The draws for one sample: (dx, dy, flip).
    public func parameters(seed: UInt64, epoch: Int, sampleIndex: Int) -> (dx: Int, dy: Int, flip: Bool) {
        var rng = SplitMix64(keys: 0x4155_4755_4D45_4E54, seed, UInt64(bitPattern: Int64(epoch)),
                             UInt64(bitPattern: Int64(sampleIndex)))
        let dx = rng.nextInt(in: -maxTranslation...maxTranslation)
        let dy = rng.nextInt(in: -maxTranslation...maxTranslation)
        let flip = rng.nextBool(probability: flipProbability)
        return (dx, dy, flip)
    }

    /// The corrupted copy of one CHW uint8 image (the image itself when no corruption is drawn). The choice of
    /// corruptions and their parameters come from (seed, epoch, sample index) only, on a stream separate from the
    /// translation and flip.
    public func corrupt(_ image: UnsafeBufferPointer<UInt8>, channels c: Int, height h: Int, width w: Int,
                        seed: UInt64, epoch: Int, sampleIndex: Int) -> [UInt8] {
        var rng = SplitMix64(keys: 0x524F_4255_5354_0000, seed, UInt64(bitPattern: Int64(epoch)),
                             UInt64(bitPattern: Int64(sampleIndex)))
        var x: [Float]? = nil
        for shift in corruptions where rng.nextBool(probability: corruptionProbability) {
            if x == nil { x = image.map { Float($0) / 255 } }
            shift.apply(&x!, channels: c, height: h, width: w, rng: &rng)
        }
        guard let x else { return Array(image) }
        return x.map(ImageShift.pixel)
    }
}

/// A float32 NCHW batch of `indices.count` images of `dataset`, normalised with `normalization`,
/// augmented when `augmentation` is given (draws from (seed, epoch, sample key) only; the key is the dataset
/// index unless `sampleKeys` gives one per batch entry), and their labels. `x[n][c][y][x]` is output pixel (x, y) of channel c; with augmentation it reads input
/// pixel (x' − dx, y − dy) where x' = W − 1 − x if flipped else x, clamped to the image (edge padding).
public func makeBatch(dataset: ImageDataset, indices: [Int], normalization: Normalization,
                      augmentation: Augmentation?, seed: UInt64, epoch: Int, sampleKeys: [Int]? = nil) -> (x: [Float], y: [Int32]) {
    let c = dataset.channels, h = dataset.height, w = dataset.width
    precondition(normalization.channels == c,
                 "normalization has \(normalization.channels) channels, dataset \(dataset.name) has \(c)")
    let plane = h * w, size = c * plane
    var x = [Float](repeating: 0, count: indices.count * size)
    var y = [Int32](repeating: 0, count: indices.count)
    let scale = (0..<c).map { 1 / (255 * normalization.std[$0]) }
    let shift = (0..<c).map { -normalization.mean[$0] / normalization.std[$0] }
    dataset.pixels.withUnsafeBufferPointer { px in
        x.withUnsafeMutableBufferPointer { out in
            for (n, idx) in indices.enumerated() {
                precondition(idx >= 0 && idx < dataset.count, "batch index \(idx) out of range 0..<\(dataset.count)")
                y[n] = dataset.labels[idx]
                let key = sampleKeys?[n] ?? idx
                let (dx, dy, flip) = augmentation?.parameters(seed: seed, epoch: epoch, sampleIndex: key) ?? (0, 0, false)
                // the robust recipe corrupts a copy of the image first; the standard one reads the dataset's pixels
                let corrupted = augmentation.flatMap { a in a.corruptions.isEmpty ? nil
                    : a.corrupt(UnsafeBufferPointer(rebasing: px[idx * size ..< (idx + 1) * size]), channels: c, height: h, width: w,
                                seed: seed, epoch: epoch, sampleIndex: key) }
                func write(_ image: UnsafeBufferPointer<UInt8>, offset: Int) {
                    for ch in 0..<c {
                        let src = offset + ch * plane, dst = n * size + ch * plane
                        let a = scale[ch], b = shift[ch]
                        for yy in 0..<h {
                            let sy = yy - dy
                            for xx in 0..<w {
                                let fx = flip ? w - 1 - xx : xx
                                let sx = fx - dx
                                // outside the image: its nearest edge pixel (torchvision's padding_mode "edge"), so a
                                // shifted domain's background (gain/bias) is not framed by black strips
                                let p = image[src + min(max(sy, 0), h - 1) * w + min(max(sx, 0), w - 1)]
                                out[dst + yy * w + xx] = Float(p) * a + b
                            }
                        }
                    }
                }
                if let corrupted { corrupted.withUnsafeBufferPointer { write($0, offset: 0) } } else { write(px, offset: idx * size) }
            }
        }
    }
    return (x, y)
}
