import CImageShim
import Foundation

/// A decoded 8-bit image: `height` rows of `width` pixels, top to bottom, each pixel `channels`
/// interleaved samples (HWC). Channels: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
public struct DecodedImage: Sendable, Equatable {
    /// Width in pixels.
    public let width: Int
    /// Height in pixels.
    public let height: Int
    /// Samples per pixel: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    public let channels: Int
    /// `height × width × channels` samples, HWC, rows top to bottom.
    public let pixels: [UInt8]

    /// An image from its HWC samples. Throws a one-line `DataError` if a size is not positive, channels is not
    /// 1...4, or `pixels.count` is not `width × height × channels`.
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0, (1...4).contains(channels) else {
            throw DataError("image: need positive width and height and 1...4 channels, got \(width)×\(height)×\(channels)")
        }
        guard pixels.count == width * height * channels else {
            throw DataError("image: \(pixels.count) samples do not make a \(width)×\(height)×\(channels) image")
        }
        self.init(unchecked: width, height: height, channels: channels, pixels: pixels)
    }

    /// For code in this module that built `pixels` with the right size.
    init(unchecked width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// An image from planar (CHW, `ImageDataset`'s per-image layout) samples.
    public init(planar: some Collection<UInt8>, channels: Int, height: Int, width: Int) throws {
        guard width > 0, height > 0, (1...4).contains(channels), planar.count == channels * height * width else {
            throw DataError("image: \(planar.count) planar samples do not make a \(channels)×\(height)×\(width) image")
        }
        let source = Array(planar), plane = height * width
        var hwc = [UInt8](repeating: 0, count: source.count)
        for c in 0..<channels {
            for p in 0..<plane { hwc[p * channels + c] = source[c * plane + p] }
        }
        self.init(unchecked: width, height: height, channels: channels, pixels: hwc)
    }

    /// The samples in planar CHW order (`channels × height × width`), as `ImageDataset` stores an image.
    public var planarPixels: [UInt8] {
        if channels == 1 { return pixels }
        let plane = height * width
        var chw = [UInt8](repeating: 0, count: pixels.count)
        for p in 0..<plane {
            for c in 0..<channels { chw[c * plane + p] = pixels[p * channels + c] }
        }
        return chw
    }

    /// The image with `channels` channels as Pillow's `Image.convert` makes it: 3 = `convert('RGB')` (grey
    /// replicated, alpha dropped without compositing, exactly what torchvision's ImageFolder loader does), 1 =
    /// `convert('L')` (ITU-R 601-2 luma in Pillow's integers: `(19595·R + 38470·G + 7471·B + 0x8000) >> 16`,
    /// alpha dropped). Returns `self` when it already has that many channels.
    public func converted(toChannels target: Int) -> DecodedImage {
        precondition(target == 1 || target == 3, "images convert to 1 (L) or 3 (RGB) channels, not \(target)")
        if channels == target { return self }
        let count = width * height
        var out = [UInt8](repeating: 0, count: count * target)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                switch (channels, target) {
                case (1, 3), (2, 3):
                    for i in 0..<count {
                        let v = src[i * channels]
                        dst[3 * i] = v; dst[3 * i + 1] = v; dst[3 * i + 2] = v
                    }
                case (4, 3):
                    for i in 0..<count {
                        dst[3 * i] = src[4 * i]; dst[3 * i + 1] = src[4 * i + 1]; dst[3 * i + 2] = src[4 * i + 2]
                    }
                case (2, 1):
                    for i in 0..<count { dst[i] = src[2 * i] }
                default:  // (3, 1), (4, 1)
                    for i in 0..<count {
                        let o = i * channels
                        let luma = UInt32(src[o]) * 19595 + UInt32(src[o + 1]) * 38470 + UInt32(src[o + 2]) * 7471 + 0x8000
                        dst[i] = UInt8(luma >> 16)
                    }
                }
            }
        }
        return DecodedImage(unchecked: width, height: height, channels: target, pixels: out)
    }
}

/// PNG and JPEG decoding and encoding (libpng, libjpeg-turbo), with Pillow's conventions for what a decoded
/// image is (see `decode`).
public enum ImageCodec {
    /// The largest image `decode` accepts, in pixels (2^28 ≈ 268 M, e.g. 16384 × 16384): larger header
    /// dimensions are refused before any pixel memory is allocated (decompression bombs).
    public static let maxPixels = 1 << 28

    /// The container formats `decode` recognises by their first bytes.
    public enum Format: String, Sendable {
        case png = "PNG", jpeg = "JPEG"
    }

    /// The format of a file from its magic bytes (`89 50 4E 47 0D 0A 1A 0A` PNG, `FF D8 FF` JPEG), or nil.
    public static func sniff(_ bytes: [UInt8]) -> Format? {
        if bytes.count >= 8 && Array(bytes[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF { return .jpeg }
        return nil
    }

    /// Decodes a PNG or JPEG (recognised by its magic bytes, not by a file extension) to 8-bit samples, as
    /// Pillow opens it:
    /// - PNG of any colour type, bit depth and interlacing: palette → RGB, 1/2/4-bit grey scaled to 8 bits,
    ///   a tRNS chunk → an alpha channel, 16-bit RGB/RGBA/grey+alpha → the high byte; 16-bit greyscale → the
    ///   value clipped at 255 (Pillow opens it as mode I;16 and `convert('L'/'RGB')` clips, so a 16-bit grey
    ///   PNG with values above 255 comes out white where Pillow's does).
    /// - JPEG greyscale → 1 channel, YCbCr/RGB → 3; CMYK/YCCK → 3 channels converted as Pillow's
    ///   `convert('RGB')` converts its CMYK (Adobe-inverted) image.
    /// A JPEG smaller than one bit per 8×8 block of the image its header declares is refused as truncated or
    /// corrupt before decoding (a few hundred bytes claiming 16384 × 16384 pixels would otherwise cost minutes and
    /// gigabytes while libjpeg pads the missing blocks).
    /// Every failure (unknown format, corrupt or truncated data, an image over `maxPixels`) is a one-line
    /// `DataError` "`source`: PNG|JPEG: problem". Nothing is printed.
    public static func decode(_ bytes: [UInt8], source: String, maxPixels: Int = ImageCodec.maxPixels) throws -> DecodedImage {
        guard let format = sniff(bytes) else {
            let head = bytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw DataError("\(source): not a PNG or JPEG file (first bytes: \(bytes.isEmpty ? "none, the file is empty" : head))")
        }
        var result = daft_image_result()
        let status = bytes.withUnsafeBufferPointer { buffer in
            switch format {
            case .png: return daft_png_decode(buffer.baseAddress, buffer.count, UInt64(maxPixels), &result)
            case .jpeg: return daft_jpeg_decode(buffer.baseAddress, buffer.count, UInt64(maxPixels), &result)
            }
        }
        defer { daft_image_free(&result) }
        guard status == 0, let data = result.data else {
            throw DataError("\(source): \(format.rawValue): \(errorText(&result))")
        }
        let pixels = Array(UnsafeBufferPointer(start: data, count: result.size))
        return DecodedImage(unchecked: Int(result.width), height: Int(result.height), channels: Int(result.channels),
                            pixels: pixels)
    }

    /// Reads and decodes the image file at `url` (errors name its path).
    public static func decode(contentsOf url: URL, maxPixels: Int = ImageCodec.maxPixels) throws -> DecodedImage {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw DataError(file: url, "cannot read image file: \(error.localizedDescription)")
        }
        return try decode([UInt8](data), source: url.path, maxPixels: maxPixels)
    }

    /// The PNG file of `image` (8-bit, non-interlaced, any of the 4 channel layouts) at zlib level
    /// `compression` (0-9).
    public static func encodePNG(_ image: DecodedImage, compression: Int = 6) throws -> [UInt8] {
        try encode(image, format: .png) { px, result in
            daft_png_encode(px, Int32(image.width), Int32(image.height), Int32(image.channels), Int32(compression), result)
        }
    }

    /// The baseline JPEG file of a 1- (grey) or 3-channel (RGB) `image` at `quality` 1-100 (libjpeg's quality
    /// tables, 4:2:0 chroma subsampling like Pillow's default).
    public static func encodeJPEG(_ image: DecodedImage, quality: Int) throws -> [UInt8] {
        try encode(image, format: .jpeg) { px, result in
            daft_jpeg_encode(px, Int32(image.width), Int32(image.height), Int32(image.channels), Int32(quality), result)
        }
    }

    private static func encode(_ image: DecodedImage, format: Format,
                               _ body: (UnsafePointer<UInt8>?, UnsafeMutablePointer<daft_image_result>) -> Int32) throws -> [UInt8] {
        var result = daft_image_result()
        let status = image.pixels.withUnsafeBufferPointer { body($0.baseAddress, &result) }
        defer { daft_image_free(&result) }
        guard status == 0, let data = result.data else {
            throw DataError("\(format.rawValue) encoder: \(errorText(&result))")
        }
        return Array(UnsafeBufferPointer(start: data, count: result.size))
    }

    private static func errorText(_ result: inout daft_image_result) -> String {
        withUnsafeBytes(of: &result.error) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }
}
