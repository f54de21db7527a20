import Foundation

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
        let png = try ImageCodec.encodePNG(try DecodedImage(width: g.width, height: g.height, channels: 1, pixels: g.pixels),
                                           compression: 9)
        do { try Data(png).write(to: url, options: .atomic) } catch {
            throw DataError(file: url, "cannot write PNG: \(error.localizedDescription)")
        }
    }
}
