import Foundation

/// One deterministic image shift (a corruption or change of appearance). Shifts work on images with
/// values in [0, 1] (pixel / 255); geometric shifts move all channels together, sample bilinearly and
/// fill outside the image with 0 (the black Fashion-MNIST background). Every random choice is drawn
/// from the generator handed to `apply`, which `Domain` seeds from (step stream, sample index) only.
public enum ImageShift: Sendable, Equatable, CustomStringConvertible {
    /// Contrast and brightness: `x' = g·x + b` with `g` and `b` drawn uniformly per image.
    case intensity(gain: ClosedRange<Float>, bias: ClosedRange<Float>)
    /// Additive gaussian noise with standard deviation `sigma` (in [0, 1] units), per pixel.
    case gaussianNoise(sigma: Float)
    /// Salt-and-pepper noise: each pixel independently becomes 0 or 1 (equally likely) with
    /// probability `fraction`.
    case impulseNoise(fraction: Float)
    /// Gaussian blur with standard deviation `sigma` pixels (separable, radius ⌈3σ⌉, edge replicated).
    case gaussianBlur(sigma: Float)
    /// Rotation about the image centre by an angle whose magnitude (degrees) is uniform in `degrees`
    /// and whose sign is random.
    case rotation(degrees: ClosedRange<Float>)
    /// Zoom about the image centre by a factor uniform in `factor` (< 1 shrinks, > 1 enlarges).
    case scale(factor: ClosedRange<Float>)
    /// Translation by whole pixels, uniform in `-maxPixels ... maxPixels` on each axis.
    case translation(maxPixels: Int)
    /// Pixelation: each `block × block` tile (partial at the edges) is replaced by its mean.
    case pixelate(block: Int)
    /// Elastic deformation (Simard et al. 2003): a displacement field of uniform [-1, 1] values per
    /// pixel and axis, gaussian-smoothed with `sigma` pixels, then rescaled so that its root mean
    /// square displacement per axis is `alpha` pixels.
    case elastic(alpha: Float, sigma: Float)
    /// Photometric inversion `x' = 1 − x`.
    case invert

    public var description: String {
        func r(_ x: ClosedRange<Float>) -> String { x.lowerBound == x.upperBound ? "\(x.lowerBound)" : "\(x.lowerBound)…\(x.upperBound)" }
        switch self {
        case let .intensity(g, b): return "intensity(gain \(r(g)), bias \(r(b)))"
        case let .gaussianNoise(s): return "gaussian-noise(sigma \(s))"
        case let .impulseNoise(f): return "impulse-noise(fraction \(f))"
        case let .gaussianBlur(s): return "gaussian-blur(sigma \(s) px)"
        case let .rotation(d): return "rotation(±\(r(d))°)"
        case let .scale(f): return "scale(×\(r(f)))"
        case let .translation(m): return "translation(±\(m) px)"
        case let .pixelate(b): return "pixelate(block \(b) px)"
        case let .elastic(a, s): return "elastic(alpha \(a) px, sigma \(s) px)"
        case .invert: return "invert"
        }
    }

    /// Applies the shift in place to one CHW image with values in [0, 1] (results may leave [0, 1];
    /// `Domain` clamps and rounds once at the end).
    /// A shifted value in [0, 1] back to a uint8 pixel: rounded, clamped, NaN → 0.
    static func pixel(_ v: Float) -> UInt8 {
        let r = (v * 255).rounded()
        return r.isNaN ? 0 : UInt8(min(255, max(0, r)))
    }

    public func apply(_ x: inout [Float], channels c: Int, height h: Int, width w: Int, rng: inout SplitMix64) {
        switch self {
        case let .intensity(gainRange, biasRange):
            let g = rng.nextFloat(in: gainRange), b = rng.nextFloat(in: biasRange)
            for i in x.indices { x[i] = g * x[i] + b }
        case let .gaussianNoise(sigma):
            for i in x.indices { x[i] += sigma * rng.nextGaussian() }
        case let .impulseNoise(fraction):
            for i in x.indices {
                let u = rng.nextUnit()
                if u < fraction { x[i] = u < fraction / 2 ? 0 : 1 }
            }
        case let .gaussianBlur(sigma):
            for ch in 0..<c { Self.blur(&x, offset: ch * h * w, height: h, width: w, sigma: sigma) }
        case let .rotation(degrees):
            let mag = rng.nextFloat(in: degrees) * Float.pi / 180
            let angle = rng.next() & 1 == 0 ? mag : -mag
            let cs = cos(angle), sn = sin(angle)
            let cx = Float(w - 1) / 2, cy = Float(h - 1) / 2
            Self.resample(&x, channels: c, height: h, width: w) { px, py in
                let dx = px - cx, dy = py - cy
                return (cx + cs * dx + sn * dy, cy - sn * dx + cs * dy)
            }
        case let .scale(factor):
            let s = rng.nextFloat(in: factor)
            let cx = Float(w - 1) / 2, cy = Float(h - 1) / 2
            Self.resample(&x, channels: c, height: h, width: w) { px, py in
                (cx + (px - cx) / s, cy + (py - cy) / s)
            }
        case let .translation(m):
            let tx = rng.nextInt(in: -m...m), ty = rng.nextInt(in: -m...m)
            Self.translate(&x, channels: c, height: h, width: w, dx: tx, dy: ty)
        case let .pixelate(block):
            let b = max(1, block)
            for ch in 0..<c {
                let o = ch * h * w
                for by in stride(from: 0, to: h, by: b) {
                    for bx in stride(from: 0, to: w, by: b) {
                        let y1 = min(h, by + b), x1 = min(w, bx + b)
                        var sum: Float = 0
                        for yy in by..<y1 { for xx in bx..<x1 { sum += x[o + yy * w + xx] } }
                        let mean = sum / Float((y1 - by) * (x1 - bx))
                        for yy in by..<y1 { for xx in bx..<x1 { x[o + yy * w + xx] = mean } }
                    }
                }
            }
        case let .elastic(alpha, sigma):
            var fx = (0..<(h * w)).map { _ in rng.nextFloat(in: -1...1) }
            var fy = (0..<(h * w)).map { _ in rng.nextFloat(in: -1...1) }
            Self.blur(&fx, offset: 0, height: h, width: w, sigma: sigma)
            Self.blur(&fy, offset: 0, height: h, width: w, sigma: sigma)
            // Smoothing shrinks the field; rescale so that `alpha` is the RMS displacement per axis.
            let rms = (zip(fx, fy).reduce(Float(0)) { $0 + $1.0 * $1.0 + $1.1 * $1.1 } / Float(2 * h * w)).squareRoot()
            let k = rms > 0 ? alpha / rms : 0
            Self.resample(&x, channels: c, height: h, width: w) { px, py in
                let i = Int(py) * w + Int(px)
                return (px + k * fx[i], py + k * fy[i])
            }
        case .invert:
            for i in x.indices { x[i] = 1 - x[i] }
        }
    }

    /// Separable gaussian blur of one `h × w` plane starting at `offset`, edges replicated.
    static func blur(_ x: inout [Float], offset o: Int, height h: Int, width w: Int, sigma: Float) {
        guard sigma > 0 else { return }
        let r = max(1, Int((3 * sigma).rounded(.up)))
        var k = (-r...r).map { exp(-Float($0 * $0) / (2 * sigma * sigma)) }
        let s = k.reduce(0, +)
        for i in k.indices { k[i] /= s }
        var tmp = [Float](repeating: 0, count: h * w)
        for y in 0..<h {
            for xx in 0..<w {
                var acc: Float = 0
                for t in -r...r { acc += k[t + r] * x[o + y * w + min(w - 1, max(0, xx + t))] }
                tmp[y * w + xx] = acc
            }
        }
        for y in 0..<h {
            for xx in 0..<w {
                var acc: Float = 0
                for t in -r...r { acc += k[t + r] * tmp[min(h - 1, max(0, y + t)) * w + xx] }
                x[o + y * w + xx] = acc
            }
        }
    }

    /// Backward-mapped bilinear resampling of every channel: output pixel (px, py) reads the input at
    /// `source(px, py)`; outside the image reads 0.
    static func resample(_ x: inout [Float], channels c: Int, height h: Int, width w: Int,
                         source: (Float, Float) -> (Float, Float)) {
        let input = x
        for py in 0..<h {
            for px in 0..<w {
                let (sx, sy) = source(Float(px), Float(py))
                let x0f = sx.rounded(.down), y0f = sy.rounded(.down)
                let ax = sx - x0f, ay = sy - y0f
                let x0 = Int(x0f), y0 = Int(y0f)
                for ch in 0..<c {
                    let o = ch * h * w
                    func at(_ yy: Int, _ xx: Int) -> Float {
                        (yy >= 0 && yy < h && xx >= 0 && xx < w) ? input[o + yy * w + xx] : 0
                    }
                    let top = at(y0, x0) * (1 - ax) + at(y0, x0 + 1) * ax
                    let bottom = at(y0 + 1, x0) * (1 - ax) + at(y0 + 1, x0 + 1) * ax
                    x[o + py * w + px] = top * (1 - ay) + bottom * ay
                }
            }
        }
    }

    /// Integer translation of every channel by (dx, dy), zero fill.
    static func translate(_ x: inout [Float], channels c: Int, height h: Int, width w: Int, dx: Int, dy: Int) {
        let input = x
        for ch in 0..<c {
            let o = ch * h * w
            for y in 0..<h {
                let sy = y - dy
                for xx in 0..<w {
                    let sx = xx - dx
                    x[o + y * w + xx] = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? input[o + sy * w + sx] : 0
                }
            }
        }
    }
}

/// A named domain: an ordered composition of image shifts. Step `k` draws its randomness from a
/// SplitMix64 generator seeded with hash(`steps[k].stream`, sample index) and nothing else, so an
/// image's shifted pixels depend only on the domain, the image and its sample index — not on load
/// order, subsets, threads or the number of ranks.
public struct Domain: Sendable, CustomStringConvertible {
    /// One step of a domain: a shift and the seed of its random stream.
    public struct Step: Sendable, Equatable {
        /// The shift.
        public let shift: ImageShift
        /// The stream seed; the step's generator for sample `i` is `SplitMix64(keys: stream, i)`.
        public let stream: UInt64
        /// A step with an explicit stream seed.
        public init(_ shift: ImageShift, stream: UInt64) {
            self.shift = shift
            self.stream = stream
        }
    }

    /// The domain's name (as used after `@` in a data specification).
    public let name: String
    /// One sentence saying what the domain is.
    public let summary: String
    /// The shifts, applied in order.
    public let steps: [Step]

    /// A domain from explicit steps.
    public init(name: String, summary: String = "", steps: [Step]) {
        self.name = name
        self.summary = summary
        self.steps = steps
    }

    /// A domain whose step `k` uses the stream seed `fnv1a("<seed>/<name>/<k>")`.
    public init(name: String, summary: String = "", shifts: [ImageShift], seed: UInt64 = 0) {
        self.init(name: name, summary: summary, steps: shifts.enumerated().map { k, s in
            Step(s, stream: DataHash.fnv1a("\(seed)/\(name)/\(k)"))
        })
    }

    /// The identity domain (no shift).
    public static let clean = Domain(name: "clean", summary: "the images as they are", steps: [])

    public var description: String {
        steps.isEmpty ? "\(name): identity" : "\(name): " + steps.map(\.shift.description).joined(separator: " → ")
    }

    /// The shifted copy of one CHW uint8 image with sample index `sampleIndex`.
    public func apply(_ image: [UInt8], channels: Int, height: Int, width: Int, sampleIndex: Int) -> [UInt8] {
        precondition(image.count == channels * height * width, "image size does not match \(channels)×\(height)×\(width)")
        var out = [UInt8](repeating: 0, count: image.count)
        image.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                apply(src, into: dst, channels: channels, height: height, width: width, sampleIndex: sampleIndex)
            }
        }
        return out
    }

    /// Shifts one CHW uint8 image from `input` into `output` (same size).
    func apply(_ input: UnsafeBufferPointer<UInt8>, into output: UnsafeMutableBufferPointer<UInt8>,
               channels: Int, height: Int, width: Int, sampleIndex: Int) {
        if steps.isEmpty {
            for i in 0..<input.count { output[i] = input[i] }
            return
        }
        var x = input.map { Float($0) / 255 }
        let key = UInt64(bitPattern: Int64(sampleIndex))
        for step in steps {
            var rng = SplitMix64(keys: step.stream, key)
            step.shift.apply(&x, channels: channels, height: height, width: width, rng: &rng)
        }
        for i in 0..<x.count { output[i] = ImageShift.pixel(x[i]) }
    }
}
