import CZlib
import Foundation

/// A minimal PNG encoder: 8-bit greyscale or RGB, no interlacing, filter type 0 on every row,
/// zlib-compressed IDAT, CRC-32 per chunk (all from system zlib).
public enum PNGWriter {
    /// The PNG bytes of a `width × height` image with `channels` (1 = grey, 3 = RGB) interleaved
    /// 8-bit samples per pixel, rows top to bottom.
    public static func encode(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws -> [UInt8] {
        guard channels == 1 || channels == 3 else { throw DataError("PNG: channels must be 1 (grey) or 3 (RGB), got \(channels)") }
        guard width > 0, height > 0, pixels.count == width * height * channels else {
            throw DataError("PNG: \(pixels.count) bytes do not make a \(width)×\(height)×\(channels) image")
        }
        var raw = [UInt8]()
        raw.reserveCapacity(height * (width * channels + 1))
        let stride = width * channels
        for y in 0..<height {
            raw.append(0)
            raw.append(contentsOf: pixels[y * stride ..< (y + 1) * stride])
        }
        var destLen = compressBound(uLong(raw.count))
        var compressed = [UInt8](repeating: 0, count: Int(destLen))
        let status = compress2(&compressed, &destLen, raw, uLong(raw.count), 9)
        guard status == Z_OK else { throw DataError("PNG: zlib compress2 failed with status \(status)") }
        compressed.removeSubrange(Int(destLen)...)

        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var ihdr = [UInt8]()
        be32(&ihdr, UInt32(width)); be32(&ihdr, UInt32(height))
        ihdr += [8, channels == 1 ? 0 : 2, 0, 0, 0]
        chunk(&out, "IHDR", ihdr)
        chunk(&out, "IDAT", compressed)
        chunk(&out, "IEND", [])
        return out
    }

    /// Encodes and writes a PNG file.
    public static func write(to url: URL, width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        let bytes = try encode(width: width, height: height, channels: channels, pixels: pixels)
        do { try Data(bytes).write(to: url, options: .atomic) } catch {
            throw DataError(file: url, "cannot write PNG: \(error.localizedDescription)")
        }
    }

    static func be32(_ a: inout [UInt8], _ v: UInt32) {
        a += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    static func chunk(_ out: inout [UInt8], _ type: String, _ data: [UInt8]) {
        be32(&out, UInt32(data.count))
        let body = Array(type.utf8) + data
        out += body
        let crc = body.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
        be32(&out, UInt32(crc))
    }
}

/// A picture of what domains do: a grid with one row per example image and one column per domain.
public enum DomainGallery {
    /// A greyscale grid image: rows = `sampleIndices` of `dataset` (a one-channel dataset), columns =
    /// `domains` in order (each image shifted with its own index as the sample key), every image
    /// scaled up `scale` times (nearest neighbour), cells separated by `gap` pixels of mid grey.
    /// Returns (width, height, pixels).
    public static func render(dataset: ImageDataset, sampleIndices: [Int], domains: [Domain],
                              scale: Int = 2, gap: Int = 2) -> (width: Int, height: Int, pixels: [UInt8]) {
        precondition(dataset.channels == 1, "the gallery draws one-channel images")
        let h = dataset.height, w = dataset.width
        let cellW = w * scale, cellH = h * scale
        let width = domains.count * cellW + (domains.count + 1) * gap
        let height = sampleIndices.count * cellH + (sampleIndices.count + 1) * gap
        var img = [UInt8](repeating: 128, count: width * height)
        for (row, idx) in sampleIndices.enumerated() {
            let clean = Array(dataset.image(at: idx))
            for (col, domain) in domains.enumerated() {
                let shifted = domain.apply(clean, channels: 1, height: h, width: w, sampleIndex: idx)
                let ox = gap + col * (cellW + gap), oy = gap + row * (cellH + gap)
                for y in 0..<cellH {
                    for x in 0..<cellW {
                        img[(oy + y) * width + ox + x] = shifted[(y / scale) * w + x / scale]
                    }
                }
            }
        }
        return (width, height, img)
    }

    /// Renders the fashion-shift gallery (the first test image of each of the first `rows` classes,
    /// under every named domain) and writes it as a PNG to `url`.
    public static func writeFashionShift(to url: URL, rows: Int = 8, scale: Int = 2,
                                         fashionMNISTDirectory: URL? = nil) throws {
        let test = try DataCatalog.fashionMNIST(test: true, directory: fashionMNISTDirectory)
        var picks: [Int] = []
        for cls in 0..<min(rows, test.numClasses) {
            if let i = test.labels.firstIndex(of: Int32(cls)) { picks.append(i) }
        }
        let g = render(dataset: test, sampleIndices: picks, domains: FashionShift.domains, scale: scale)
        try PNGWriter.write(to: url, width: g.width, height: g.height, channels: 1, pixels: g.pixels)
    }
}
