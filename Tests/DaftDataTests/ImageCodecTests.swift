import Foundation
import XCTest
import DaftTestSupport
@testable import DaftData
#if canImport(Glibc)
import Glibc
#endif

/// PNG/JPEG decoding and encoding against Pillow (DAFT_PYTHON), conversions to L/RGB, and the one-line errors.
final class ImageCodecTests: XCTestCase {
    /// Worst differences between our decode and Pillow's arrays over every file a generator script wrote:
    /// `native` = the decoded image vs Pillow's convert() to the same channel layout, `luma` = our
    /// converted(toChannels: 1) vs convert('L'), `rgb` = converted(toChannels: 3) vs convert('RGB').
    private struct PillowComparison {
        var files = 0, native = 0, luma = 0, rgb = 0
        var worstFile = ""
    }

    private func compareWithPillow(script: String, fileExtension: String) throws -> PillowComparison {
        let dir = try makeTempDir(self)
        try TestPython.run(script, [dir.path])
        let manifest = try String(contentsOf: dir.appendingPathComponent("manifest.txt"), encoding: .utf8)
        var result = PillowComparison()
        for line in manifest.split(separator: "\n") {
            let f = line.split(separator: " ").map(String.init)
            let name = f[0], width = Int(f[1])!, height = Int(f[2])!, channels = Int(f[3])!
            let image = try ImageCodec.decode(contentsOf: dir.appendingPathComponent("\(name).\(fileExtension)"))
            XCTAssertEqual([image.width, image.height, image.channels], [width, height, channels], name)
            let native = maxAbsDifference(image.pixels, try fileBytes(dir.appendingPathComponent("\(name).native")))
            let luma = maxAbsDifference(image.converted(toChannels: 1).pixels, try fileBytes(dir.appendingPathComponent("\(name).L")))
            let rgb = maxAbsDifference(image.converted(toChannels: 3).pixels, try fileBytes(dir.appendingPathComponent("\(name).RGB")))
            if max(native, luma, rgb) > max(result.native, result.luma, result.rgb) { result.worstFile = name }
            result.native = max(result.native, native)
            result.luma = max(result.luma, luma)
            result.rgb = max(result.rgb, rgb)
            result.files += 1
        }
        return result
    }

    /// Every PNG colour type and bit depth (grey 1/2/4/8/16, grey+alpha 8/16, RGB 8/16, RGBA 8/16, palette
    /// 1/2/4/8), with and without tRNS, plain and Adam7-interlaced, at 13×7, 1×1, 9×17 and 64×40, plus files
    /// written by Pillow's encoder (adaptive filters): bit-exact with Pillow. The expected alpha of tRNS in
    /// 2/4-bit grey and 16-bit grey/RGB files is the PNG specification's (the generator says why Pillow's is not).
    func testPNGDecodingMatchesPillowExactly() throws {
        let r = try compareWithPillow(script: pngScript, fileExtension: "png")
        print("PNG vs Pillow: \(r.files) files, max |diff| native \(r.native), L \(r.luma), RGB \(r.rgb)")
        XCTAssertGreaterThan(r.files, 200)
        XCTAssertEqual([r.native, r.luma, r.rgb], [0, 0, 0], "worst file \(r.worstFile)")
    }

    /// Greyscale and RGB JPEGs written by Pillow at qualities 50/75/95, baseline and progressive, chroma
    /// 4:4:4, 4:2:2, 4:2:0, odd sizes, and CMYK JPEGs (converted to RGB as Pillow's convert('RGB')).
    /// Pillow's wheel bundles libjpeg-turbo 3.x, Debian's libjpeg62-turbo is 2.1; both decode with the
    /// same ISLOW IDCT and fancy upsampling, and the measured difference is 0, so the assertion is exact.
    func testJPEGDecodingMatchesPillow() throws {
        let r = try compareWithPillow(script: jpegScript, fileExtension: "jpg")
        print("JPEG vs Pillow: \(r.files) files, max |diff| native \(r.native), L \(r.luma), RGB \(r.rgb)")
        XCTAssertEqual(r.files, 100)
        XCTAssertEqual([r.native, r.luma, r.rgb], [0, 0, 0], "worst file \(r.worstFile)")
    }

    /// Our PNG encoder round-trips every channel layout; Pillow reads our PNGs and JPEGs as we do.
    func testEncodersRoundTripAndPillowReadsThem() throws {
        let dir = try makeTempDir(self)
        var names: [String] = []
        for channels in 1...4 {
            let image = randomImage(width: 23, height: 11, channels: channels, seed: UInt64(channels))
            let png = try ImageCodec.encodePNG(image)
            XCTAssertEqual(try ImageCodec.decode(png, source: "png\(channels)"), image)
            XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
            XCTAssertEqual(Array(png[16..<24]), [0, 0, 0, 23, 0, 0, 0, 11])  // IHDR width, height
            XCTAssertEqual(png[24], 8)  // bit depth
            XCTAssertEqual(png[25], [0, 4, 2, 6][channels - 1])  // colour type
            try Data(png).write(to: dir.appendingPathComponent("c\(channels).png"))
            names.append("c\(channels).png")
        }
        for (channels, quality) in [(1, 60), (3, 60), (3, 95)] {
            // A smooth picture, so JPEG keeps it close to the original.
            var px = [UInt8](repeating: 0, count: 40 * 30 * channels)
            for y in 0..<30 {
                for x in 0..<40 {
                    for c in 0..<channels {
                        let value: Int = x * 3 + y * 2 + c * 20
                        px[(y * 40 + x) * channels + c] = UInt8(value)
                    }
                }
            }
            let image = try DecodedImage(width: 40, height: 30, channels: channels, pixels: px)
            let jpeg = try ImageCodec.encodeJPEG(image, quality: quality)
            let back = try ImageCodec.decode(jpeg, source: "jpeg")
            XCTAssertEqual([back.width, back.height, back.channels], [40, 30, channels])
            var squares = 0.0
            for (a, b) in zip(back.pixels, px) { let d = Double(Int(a) - Int(b)); squares += d * d }
            let mse = squares / Double(px.count)
            XCTAssertGreaterThan(10 * log10(255 * 255 / max(mse, 1e-9)), 30, "PSNR of quality \(quality)")
            try Data(jpeg).write(to: dir.appendingPathComponent("j\(channels)_\(quality).jpg"))
            names.append("j\(channels)_\(quality).jpg")
        }
        let script = """
            import sys, numpy as np
            from PIL import Image
            for name in sys.argv[2:]:
                np.asarray(Image.open(sys.argv[1] + '/' + name)).tofile(sys.argv[1] + '/' + name + '.pil')
            """
        try TestPython.run(script, [dir.path] + names)
        for name in names {
            let ours = try ImageCodec.decode(contentsOf: dir.appendingPathComponent(name))
            XCTAssertEqual(maxAbsDifference(ours.pixels, try fileBytes(dir.appendingPathComponent(name + ".pil"))), 0, name)
        }
        assertOneLineError(try ImageCodec.encodeJPEG(randomImage(width: 4, height: 4, channels: 4, seed: 1), quality: 90),
                           contains: ["JPEG", "4 channels"])
        assertOneLineError(try ImageCodec.encodeJPEG(randomImage(width: 4, height: 4, channels: 3, seed: 1), quality: 0),
                           contains: ["JPEG", "quality 0"])
        assertOneLineError(try DecodedImage(width: 2, height: 2, channels: 1, pixels: [0]), contains: ["1 samples", "2×2×1"])
    }

    /// PIL convert('L') / convert('RGB') semantics on hand-checked pixels (the Pillow comparison above covers
    /// every mode on random data).
    func testChannelConversionFormulas() throws {
        let rgb = try DecodedImage(width: 3, height: 1, channels: 3, pixels: [255, 0, 0, 0, 255, 0, 10, 20, 30])
        // (19595·R + 38470·G + 7471·B + 32768) >> 16
        XCTAssertEqual(rgb.converted(toChannels: 1).pixels, [76, 150, 18])
        let rgba = try DecodedImage(width: 1, height: 1, channels: 4, pixels: [200, 100, 50, 0])
        XCTAssertEqual(rgba.converted(toChannels: 3).pixels, [200, 100, 50])  // alpha dropped, no compositing
        let la = try DecodedImage(width: 1, height: 1, channels: 2, pixels: [77, 3])
        XCTAssertEqual(la.converted(toChannels: 3).pixels, [77, 77, 77])
        XCTAssertEqual(la.converted(toChannels: 1).pixels, [77])
        let planar: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  // C=3, H=2, W=2
        let image = try DecodedImage(planar: planar, channels: 3, height: 2, width: 2)
        XCTAssertEqual(image.pixels, [1, 5, 9, 2, 6, 10, 3, 7, 11, 4, 8, 12])
        XCTAssertEqual(image.planarPixels, planar)
    }

    /// Corrupt, truncated, unknown and oversized files: a one-line DataError naming the source and the
    /// format, and nothing written to stderr by libpng or libjpeg.
    func testBadFilesGiveOneLineErrorsAndPrintNothing() throws {
        let png = try ImageCodec.encodePNG(randomImage(width: 40, height: 30, channels: 3, seed: 5))
        var smooth = [UInt8](repeating: 0, count: 64 * 48 * 3)
        for i in 0..<smooth.count { smooth[i] = UInt8((i / 3) % 64 * 4) }
        let jpeg = try ImageCodec.encodeJPEG(try DecodedImage(width: 64, height: 48, channels: 3, pixels: smooth), quality: 90)

        var badCRC = png; badCRC[20] ^= 0x01  // inside IHDR: its CRC no longer matches
        var badIDAT = png
        let idat = try XCTUnwrap(findChunk("IDAT", in: png))
        for i in idat + 8 ..< idat + 40 { badIDAT[i] ^= 0x5A }  // zlib data and header
        fixCRC(&badIDAT, chunkAt: idat)
        var badJPEGHeader = jpeg
        let sof = try XCTUnwrap(findMarker(0xC0, in: jpeg))
        badJPEGHeader[sof + 4] = 12  // 12-bit sample precision: not something libjpeg62 8-bit decodes
        var noQuantization = jpeg
        let dqt = try XCTUnwrap(findMarker(0xDB, in: jpeg))
        noQuantization[dqt + 1] = 0xEE  // DQT → an APP14 marker: the quantization tables are gone

        // A 100000 × 100000 PNG header (with a tiny IDAT): refused before allocating 30 GB.
        var bomb = Array(png.prefix(33))
        bomb.replaceSubrange(16..<24, with: [0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0])
        fixCRC(&bomb, chunkAt: 8)
        bomb += Array(png[idat...])

        let cases: [(String, [UInt8], [String])] = [
            ("crc.png", badCRC, ["crc.png", "PNG", "CRC"]),
            ("idat.png", badIDAT, ["idat.png", "PNG"]),
            ("half.png", Array(png.prefix(png.count / 2)), ["half.png", "PNG", "truncated"]),
            ("header.png", Array(png.prefix(20)), ["header.png", "PNG", "truncated"]),
            ("bomb.png", bomb, ["bomb.png", "PNG", "100000 x 100000", "limit"]),
            ("half.jpg", Array(jpeg.prefix(jpeg.count / 2)), ["half.jpg", "JPEG", "truncated"]),
            ("noeoi.jpg", Array(jpeg.dropLast(2)), ["noeoi.jpg", "JPEG", "truncated"]),
            ("precision.jpg", badJPEGHeader, ["precision.jpg", "JPEG", "precision"]),
            ("tables.jpg", noQuantization, ["tables.jpg", "JPEG", "Quantization table"]),
            ("soi.jpg", Array(jpeg.prefix(3)), ["soi.jpg", "JPEG"]),
            ("empty.png", [], ["empty.png", "not a PNG or JPEG", "empty"]),
            ("text.jpg", Array("hello, world".utf8), ["text.jpg", "not a PNG or JPEG", "68 65 6c"]),
        ]
        let stderrText = try capturingStandardError {
            for (name, bytes, fragments) in cases {
                assertOneLineError(try ImageCodec.decode(bytes, source: "/data/\(name)"), contains: fragments)
            }
            assertOneLineError(try ImageCodec.decode(png, source: "small-limit.png", maxPixels: 1000),
                               contains: ["small-limit.png", "40 x 30 = 1200 pixels", "limit of 1000"])
            assertOneLineError(try ImageCodec.decode(jpeg, source: "small-limit.jpg", maxPixels: 1000),
                               contains: ["small-limit.jpg", "64 x 48 = 3072 pixels", "limit of 1000"])
            assertOneLineError(try ImageCodec.decode(contentsOf: URL(fileURLWithPath: "/nonexistent/x.png")),
                               contains: ["/nonexistent/x.png", "cannot read"])
        }
        XCTAssertEqual(stderrText, "", "libpng/libjpeg printed to stderr")
    }

    /// A 65000 × 65000 JPEG header is refused by the pixel limit before decoding.
    func testJPEGBombHeaderIsRefused() throws {
        var jpeg = try ImageCodec.encodeJPEG(randomImage(width: 8, height: 8, channels: 1, seed: 3), quality: 80)
        let sof = try XCTUnwrap(findMarker(0xC0, in: jpeg))
        jpeg.replaceSubrange(sof + 5 ..< sof + 9, with: [0xFD, 0xE8, 0xFD, 0xE8])  // height, width = 65000
        assertOneLineError(try ImageCodec.decode(jpeg, source: "bomb.jpg"), contains: ["bomb.jpg", "JPEG", "65000 x 65000", "limit"])
    }

    /// A JPEG whose header declares far more 8×8 blocks than its data has bits (every block costs at least one)
    /// is refused before decoding: these two files (Fuzz/regressions/image: the seed corpus's progressive and
    /// CMYK JPEGs with SOF dimensions set to 16384 × 16384, exactly maxPixels) took 372 s / 2.0 GB and 134 s /
    /// 1.9 GB each, libjpeg padding the missing blocks. A tiny baseline file written by our encoder, too.
    func testJPEGHeaderLargerThanItsDataIsRefusedQuickly() throws {
        let regressions = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/regressions/image")
        var baseline = try ImageCodec.encodeJPEG(randomImage(width: 8, height: 8, channels: 3, seed: 4), quality: 80)
        let sof = try XCTUnwrap(findMarker(0xC0, in: baseline))
        baseline.replaceSubrange(sof + 5 ..< sof + 9, with: [0x40, 0x00, 0x40, 0x00])  // 16384 × 16384
        let cases: [(String, [UInt8], String)] = [
            ("progressive.jpg", try fileBytes(regressions.appendingPathComponent("progressive-16384x16384-header-542-bytes.jpg")),
             "progressive.jpg: JPEG: truncated or corrupt: a 16384 x 16384 image of 3 components needs at least 786432 bytes of coded data, the file has 542"),
            ("cmyk.jpg", try fileBytes(regressions.appendingPathComponent("cmyk-16384x16384-header-384-bytes.jpg")),
             "cmyk.jpg: JPEG: truncated or corrupt: a 16384 x 16384 image of 4 components needs at least 2097152 bytes of coded data, the file has 384"),
            ("baseline.jpg", baseline,
             "baseline.jpg: JPEG: truncated or corrupt: a 16384 x 16384 image of 3 components needs at least 786432 bytes of coded data, the file has \(baseline.count)"),
        ]
        for (name, bytes, expected) in cases {
            let start = Date()
            XCTAssertThrowsError(try ImageCodec.decode(bytes, source: name), name) {
                XCTAssertEqual(String(describing: $0), expected)
            }
            XCTAssertLessThan(Date().timeIntervalSince(start), 1, "\(name) was decoded instead of refused")
        }
    }

    // MARK: helpers

    private func findChunk(_ type: String, in png: [UInt8]) -> Int? {
        var at = 8
        while at + 8 <= png.count {
            let length = Int(png[at]) << 24 | Int(png[at + 1]) << 16 | Int(png[at + 2]) << 8 | Int(png[at + 3])
            if String(decoding: png[at + 4 ..< at + 8], as: UTF8.self) == type { return at }
            at += 12 + length
        }
        return nil
    }

    /// Recomputes the CRC of the chunk starting at `at` (length, type, data, CRC).
    private func fixCRC(_ png: inout [UInt8], chunkAt at: Int) {
        let length = Int(png[at]) << 24 | Int(png[at + 1]) << 16 | Int(png[at + 2]) << 8 | Int(png[at + 3])
        var c: UInt32 = 0xFFFF_FFFF
        for b in png[at + 4 ..< at + 8 + length] {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        }
        c ^= 0xFFFF_FFFF
        png.replaceSubrange(at + 8 + length ..< at + 12 + length, with: [UInt8(c >> 24), UInt8(c >> 16 & 0xFF), UInt8(c >> 8 & 0xFF), UInt8(c & 0xFF)])
    }

    /// The offset of the first FF `marker` in a JPEG (the offset of the FF byte).
    private func findMarker(_ marker: UInt8, in jpeg: [UInt8]) -> Int? {
        (2 ..< jpeg.count - 1).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == marker }
    }

    /// Runs `body` with file descriptor 2 redirected to a temporary file; returns what was written to it.
    private func capturingStandardError(_ body: () throws -> Void) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("daft-stderr-\(UUID().uuidString)").path
        fflush(stderr)
        let saved = dup(2)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        dup2(fd, 2)
        close(fd)
        defer {
            fflush(stderr)
            dup2(saved, 2)
            close(saved)
            try? FileManager.default.removeItem(atPath: path)
        }
        try body()
        fflush(stderr)
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }
}

/// Writes PNGs of every colour type / bit depth / tRNS / interlacing (a hand-written encoder, filter 0) and
/// some of Pillow's own, each with Pillow's arrays: NAME.native (convert to the channel layout daft decodes),
/// NAME.L, NAME.RGB; manifest.txt lists "name width height channels pillow-mode".
private let pngScript = #"""
import io, os, struct, sys, warnings, zlib
warnings.filterwarnings("ignore")
import numpy as np
from PIL import Image
out = sys.argv[1]
rng = np.random.RandomState(7)
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
def pack(samples, depth):
    if depth == 8: return bytes(int(v) for v in samples)
    if depth == 16: return b''.join(struct.pack('>H', int(v)) for v in samples)
    per = 8 // depth; b = bytearray()
    for i in range(0, len(samples), per):
        v = 0
        for k in range(per):
            v = (v << depth) | (int(samples[i + k]) if i + k < len(samples) else 0)
        b.append(v)
    return bytes(b)
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
def png(a, colortype, depth, plte=None, trns=None, interlace=0):
    # a: H x W x S array of samples
    h, w, s = a.shape
    raw = b''
    if not interlace:
        raw = b''.join(b'\x00' + pack(a[y].reshape(-1), depth) for y in range(h))
    else:
        for xs, ys, dx, dy in ADAM7:
            sub = a[ys::dy, xs::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0: continue
            raw += b''.join(b'\x00' + pack(r.reshape(-1), depth) for r in sub)
    d = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, depth, colortype, 0, 0, interlace))
    if plte is not None: d += chunk(b'PLTE', plte)
    if trns is not None: d += chunk(b'tRNS', trns)
    return d + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
manifest = []
def emit(name, data, channels, native=None):
    open(os.path.join(out, name + '.png'), 'wb').write(data)
    im = Image.open(io.BytesIO(data)); im.load()
    if native is None:
        native = np.asarray(im.convert({1: 'L', 2: 'LA', 3: 'RGB', 4: 'RGBA'}[channels]))
    open(os.path.join(out, name + '.native'), 'wb').write(native.tobytes())
    open(os.path.join(out, name + '.L'), 'wb').write(np.asarray(Image.open(io.BytesIO(data)).convert('L')).tobytes())
    open(os.path.join(out, name + '.RGB'), 'wb').write(np.asarray(Image.open(io.BytesIO(data)).convert('RGB')).tobytes())
    manifest.append(f'{name} {im.size[0]} {im.size[1]} {channels} {im.mode}')
sizes = [(13, 7), (1, 1), (9, 17), (64, 40)]
for (w, h) in sizes:
    tag = f'{w}x{h}'
    for il in (0, 1):
        t = f'{tag}_i{il}'
        for depth in (1, 2, 4, 8, 16):
            a = rng.randint(0, 2 ** depth, size=(h, w, 1))
            emit(f'grey{depth}_{t}', png(a, 0, depth, interlace=il), 1)
            tv = int(a[0, 0, 0])
            # Pillow keeps a 2/4-bit tRNS value unscaled and compares it with the scaled pixels, and ignores tRNS
            # when converting I;16 to LA, so its alpha is wrong there; the expected alpha is then the PNG
            # specification's (0 where the sample equals the tRNS value), grey as Pillow's convert('L').
            spec = None
            if depth in (2, 4, 16):
                grey = np.minimum(a[:, :, 0], 255) if depth == 16 else a[:, :, 0] * (255 // (2 ** depth - 1))
                spec = np.stack([grey, np.where(a[:, :, 0] == tv, 0, 255)], -1).astype(np.uint8)
            emit(f'grey{depth}trns_{t}', png(a, 0, depth, trns=struct.pack('>H', tv), interlace=il), 2, spec)
            if depth >= 8:
                emit(f'ga{depth}_{t}', png(rng.randint(0, 2 ** depth, size=(h, w, 2)), 4, depth, interlace=il), 2)
                a3 = rng.randint(0, 2 ** depth, size=(h, w, 3))
                emit(f'rgb{depth}_{t}', png(a3, 2, depth, interlace=il), 3)
                trns = b''.join(struct.pack('>H', int(v)) for v in a3[h // 2, w // 2])
                spec = None
                if depth == 16:  # Pillow compares the 16-bit tRNS colour with 8-bit pixels: no pixel matches
                    hit = np.all(a3 == a3[h // 2, w // 2], axis=-1)
                    spec = np.concatenate([a3 >> 8, np.where(hit, 0, 255)[:, :, None]], -1).astype(np.uint8)
                emit(f'rgb{depth}trns_{t}', png(a3, 2, depth, trns=trns, interlace=il), 4, spec)
                emit(f'rgba{depth}_{t}', png(rng.randint(0, 2 ** depth, size=(h, w, 4)), 6, depth, interlace=il), 4)
            if depth <= 8:
                n = 2 ** depth
                plte = bytes(rng.randint(0, 256, size=3 * n).astype(np.uint8))
                a = rng.randint(0, n, size=(h, w, 1))
                emit(f'pal{depth}_{t}', png(a, 3, depth, plte=plte, interlace=il), 3)
                alpha = bytes(rng.randint(0, 256, size=max(1, n // 2)).astype(np.uint8))
                emit(f'pal{depth}trns_{t}', png(a, 3, depth, plte=plte, trns=alpha, interlace=il), 4)
# Pillow's own encoder (adaptive filters, its zlib settings) for the common modes.
for mode, ch in [('L', 1), ('LA', 2), ('RGB', 3), ('RGBA', 4)]:
    a = rng.randint(0, 256, size=(37, 51, ch)).astype(np.uint8)
    a[:, :20] = np.linspace(0, 255, 20).astype(np.uint8)[None, :, None]  # a smooth part, so filters other than 0 get used
    b = io.BytesIO(); Image.fromarray(a[:, :, 0] if ch == 1 else a, mode).save(b, format='PNG'); emit(f'pil_{mode}', b.getvalue(), ch)
b = io.BytesIO(); Image.fromarray(rng.randint(0, 256, size=(29, 31, 3)).astype(np.uint8)).convert('P').save(b, format='PNG'); emit('pil_P', b.getvalue(), 3)
b = io.BytesIO(); Image.fromarray(rng.randint(0, 2000, size=(21, 23)).astype(np.uint16)).save(b, format='PNG'); emit('pil_I16', b.getvalue(), 1)
# every RGB triple class for the L conversion: a 256 x 256 random RGB image
b = io.BytesIO(); Image.fromarray(rng.randint(0, 256, size=(256, 256, 3)).astype(np.uint8)).save(b, format='PNG'); emit('pil_RGB_large', b.getvalue(), 3)
open(os.path.join(out, 'manifest.txt'), 'w').write('\n'.join(manifest) + '\n')
print(len(manifest))
"""#

/// Writes JPEGs with Pillow (grey, RGB at 3 qualities × baseline/progressive × 3 subsamplings, CMYK) and
/// Pillow's arrays for them, like pngScript.
private let jpegScript = #"""
import io, os, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np
from PIL import Image
out = sys.argv[1]
rng = np.random.RandomState(11)
def picture(w, h, ch):
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 127 // max(w + h - 2, 1))], -1)[:, :, :ch]
    return np.clip(base + rng.randint(-40, 41, size=base.shape), 0, 255).astype(np.uint8)
manifest = []
def emit(name, data, ch):
    open(os.path.join(out, name + '.jpg'), 'wb').write(data)
    im = Image.open(io.BytesIO(data)); im.load()
    native = {1: 'L', 3: 'RGB'}[ch]
    open(os.path.join(out, name + '.native'), 'wb').write(np.asarray(im.convert(native)).tobytes())
    open(os.path.join(out, name + '.L'), 'wb').write(np.asarray(Image.open(io.BytesIO(data)).convert('L')).tobytes())
    open(os.path.join(out, name + '.RGB'), 'wb').write(np.asarray(Image.open(io.BytesIO(data)).convert('RGB')).tobytes())
    manifest.append(f'{name} {im.size[0]} {im.size[1]} {ch} {im.mode}')
for (w, h) in [(37, 23), (64, 48), (1, 1), (17, 130)]:
    for q in (50, 75, 95):
        for prog in (False, True):
            b = io.BytesIO(); Image.fromarray(picture(w, h, 1)[:, :, 0], 'L').save(b, format='JPEG', quality=q, progressive=prog)
            emit(f'L_q{q}_p{int(prog)}_{w}x{h}', b.getvalue(), 1)
            for sub in (0, 1, 2):  # 4:4:4, 4:2:2, 4:2:0
                b = io.BytesIO(); Image.fromarray(picture(w, h, 3), 'RGB').save(b, format='JPEG', quality=q, progressive=prog, subsampling=sub)
                emit(f'RGB_q{q}_p{int(prog)}_s{sub}_{w}x{h}', b.getvalue(), 3)
    c = np.concatenate([picture(w, h, 3), rng.randint(0, 256, size=(h, w, 1)).astype(np.uint8)], -1)
    b = io.BytesIO(); Image.fromarray(c, 'CMYK').save(b, format='JPEG', quality=90); emit(f'CMYK_{w}x{h}', b.getvalue(), 3)
open(os.path.join(out, 'manifest.txt'), 'w').write('\n'.join(manifest) + '\n')
print(len(manifest))
"""#
