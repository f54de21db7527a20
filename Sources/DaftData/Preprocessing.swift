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

/// Training augmentation: a random translation by up to `maxTranslation` pixels on each axis (zero
/// padding) and a horizontal flip with probability `flipProbability`. The random draws for a sample
/// are a function of (seed, epoch, sample index) only, so they do not depend on the number of ranks,
/// the batch a sample lands in, or the order samples are processed.
public struct Augmentation: Sendable, Equatable {
    /// Largest translation in pixels on each axis (uniform integer in ±maxTranslation).
    public let maxTranslation: Int
    /// Probability of a horizontal flip.
    public let flipProbability: Float

    /// An augmentation with the given translation range and flip probability.
    public init(maxTranslation: Int = 2, flipProbability: Float = 0.5) {
        precondition(maxTranslation >= 0 && flipProbability >= 0 && flipProbability <= 1)
        self.maxTranslation = maxTranslation
        self.flipProbability = flipProbability
    }

    /// The standard training augmentation: translation ±2 px, horizontal flip p = 0.5.
    public static let standard = Augmentation()

    /// The draws for one sample: (dx, dy, flip).
    public func parameters(seed: UInt64, epoch: Int, sampleIndex: Int) -> (dx: Int, dy: Int, flip: Bool) {
        var rng = SplitMix64(keys: 0x4155_4755_4D45_4E54, seed, UInt64(bitPattern: Int64(epoch)),
                             UInt64(bitPattern: Int64(sampleIndex)))
        let dx = rng.nextInt(in: -maxTranslation...maxTranslation)
        let dy = rng.nextInt(in: -maxTranslation...maxTranslation)
        let flip = rng.nextBool(probability: flipProbability)
        return (dx, dy, flip)
    }
}

/// A float32 NCHW batch of `indices.count` images of `dataset`, normalised with `normalization`,
/// augmented when `augmentation` is given (draws from (seed, epoch, sample key) only; the key is the dataset
/// index unless `sampleKeys` gives one per batch entry), and their labels. `x[n][c][y][x]` is output pixel (x, y) of channel c; with augmentation it reads input
/// pixel (x' − dx, y − dy) where x' = W − 1 − x if flipped else x, and zero padding (pixel 0) outside.
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
                let (dx, dy, flip) = augmentation?.parameters(seed: seed, epoch: epoch, sampleIndex: sampleKeys?[n] ?? idx) ?? (0, 0, false)
                for ch in 0..<c {
                    let src = idx * size + ch * plane, dst = n * size + ch * plane
                    let a = scale[ch], b = shift[ch]
                    for yy in 0..<h {
                        let sy = yy - dy
                        for xx in 0..<w {
                            let fx = flip ? w - 1 - xx : xx
                            let sx = fx - dx
                            let p: UInt8 = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? px[src + sy * w + sx] : 0
                            out[dst + yy * w + xx] = Float(p) * a + b
                        }
                    }
                }
            }
        }
    }
    return (x, y)
}
