import CZlib
import Foundation

/// One IDX array (the MNIST file format): big-endian header `0 0 type ndims`, `ndims` big-endian
/// UInt32 dimensions, then the elements row-major. Only unsigned-byte data (type 0x08), which is what
/// the MNIST family (MNIST, Fashion-MNIST, KMNIST, EMNIST) uses, is supported.
public struct IDXArray: Sendable {
    /// The dimensions, outermost first (e.g. `[60000, 28, 28]`).
    public let dims: [Int]
    /// The elements, row-major; `bytes.count == dims.reduce(1, *)`.
    public let bytes: [UInt8]

    /// An IDX array from its dimensions and row-major bytes (`bytes.count` must equal their product).
    public init(dims: [Int], bytes: [UInt8]) {
        precondition(!dims.isEmpty && dims.count < 256 && dims.allSatisfy { $0 >= 0 && $0 <= Int(UInt32.max) })
        precondition(bytes.count == dims.reduce(1, *), "IDX bytes do not match the dimensions")
        self.dims = dims
        self.bytes = bytes
    }

    /// The uncompressed IDX file bytes (header + data).
    public func encode() -> [UInt8] {
        var b: [UInt8] = [0, 0, 0x08, UInt8(dims.count)]
        for d in dims { b += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
        return b + bytes
    }

    /// Writes the IDX file, gzip-compressed when `gzip` is true (the MNIST distribution format).
    public func write(to url: URL, gzip: Bool) throws {
        try Self.writeFile(encode(), to: url, gzip: gzip)
    }

    /// Writes raw bytes to `url`, optionally gzip-compressed.
    static func writeFile(_ bytes: [UInt8], to url: URL, gzip: Bool) throws {
        guard gzip else {
            do { try Data(bytes).write(to: url, options: .atomic) } catch {
                throw DataError(file: url, "cannot write: \(error.localizedDescription)")
            }
            return
        }
        guard let gz = gzopen(url.path, "wb") else { throw DataError(file: url, "cannot open for writing") }
        let written = bytes.withUnsafeBytes { gzwrite(gz, $0.baseAddress, UInt32($0.count)) }
        let closed = gzclose(gz)
        guard written == Int32(bytes.count) || bytes.isEmpty, closed == Z_OK else {
            throw DataError(file: url, "gzip write failed")
        }
    }

    /// Reads and validates an IDX file, gzip-compressed (`.gz`) or plain (zlib detects which).
    /// Throws a `DataError` naming the file for: a missing/unreadable file, a corrupt or truncated
    /// gzip stream, a wrong magic number, an unsupported element type, and element data shorter or
    /// longer than the dimensions imply.
    public static func read(_ url: URL) throws -> IDXArray {
        let raw = try readMaybeGzip(url)
        return try parse(raw, file: url)
    }

    /// Parses the bytes of an (uncompressed) IDX file; `file` is only used in error messages.
    public static func parse(_ raw: [UInt8], file: URL) throws -> IDXArray {
        guard raw.count >= 4 else {
            throw DataError(file: file, "not an IDX file: \(raw.count) bytes, shorter than the 4-byte magic number")
        }
        guard raw[0] == 0, raw[1] == 0 else {
            let magic = raw[0..<4].map { String(format: "%02x", $0) }.joined()
            throw DataError(file: file, "not an IDX file: bad magic number 0x\(magic) (expected 0x0000TTNN)")
        }
        guard raw[2] == 0x08 else {
            throw DataError(file: file, String(format: "unsupported IDX element type 0x%02x (only unsigned byte, 0x08, is supported)", raw[2]))
        }
        let ndims = Int(raw[3])
        guard ndims >= 1 else { throw DataError(file: file, "IDX header declares 0 dimensions") }
        let headerSize = 4 + 4 * ndims
        guard raw.count >= headerSize else {
            throw DataError(file: file, "truncated IDX header: \(ndims) dimensions need \(headerSize) bytes, file has \(raw.count)")
        }
        var dims: [Int] = []
        var total = 1
        for d in 0..<ndims {
            let o = 4 + 4 * d
            let v = Int(raw[o]) << 24 | Int(raw[o + 1]) << 16 | Int(raw[o + 2]) << 8 | Int(raw[o + 3])
            dims.append(v)
            let (t, overflow) = total.multipliedReportingOverflow(by: v)
            guard !overflow else { throw DataError(file: file, "IDX dimensions \(dims) overflow") }
            total = t
        }
        let have = raw.count - headerSize
        let shape = dims.map(String.init).joined(separator: "×")
        if have < total {
            throw DataError(file: file, "truncated: dimensions \(shape) need \(total) data bytes, file has \(have)")
        }
        if have > total {
            throw DataError(file: file, "dimensions \(shape) need \(total) data bytes, but file has \(have) (\(have - total) trailing bytes)")
        }
        return IDXArray(dims: dims, bytes: Array(raw[headerSize...]))
    }

    /// The whole file, inflated if it is gzip-compressed.
    static func readMaybeGzip(_ url: URL) throws -> [UInt8] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw DataError(file: url, "no such file")
        }
        guard !isDir.boolValue else { throw DataError(file: url, "is a directory, expected an IDX file") }
        guard let gz = gzopen(url.path, "rb") else { throw DataError(file: url, "cannot open for reading") }
        defer { gzclose(gz) }
        _ = gzbuffer(gz, 1 << 17)
        var out: [UInt8] = []
        // 64 KiB: a small labels file needs no more, and a 47 MB image file takes ~700 reads (zlib buffers 128 KiB).
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(gz, $0.baseAddress, UInt32($0.count)) }
            if n < 0 {
                var errnum: Int32 = 0
                let msg = gzerror(gz, &errnum).map { String(cString: $0) } ?? "unknown error"
                throw DataError(file: url, "corrupt or truncated gzip data (\(msg))")
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<Int(n)])
        }
        // gzread returns 0 both at a clean end and when a gzip member ends early; check the status.
        var errnum: Int32 = 0
        let msg = gzerror(gz, &errnum).map { String(cString: $0) } ?? ""
        if errnum != Z_OK && errnum != Z_STREAM_END {
            throw DataError(file: url, "corrupt or truncated gzip data (\(msg))")
        }
        return out
    }
}

extension ImageDataset {
    /// Loads an MNIST-family image/label pair of IDX files (`*-images-idx3-ubyte[.gz]`, N×H×W, and
    /// `*-labels-idx1-ubyte[.gz]`, N) as a one-channel dataset. Throws a one-line `DataError` naming
    /// the file when either file is malformed, when the image file is not 3-dimensional or the label
    /// file not 1-dimensional, when the counts differ, or when a label is `>= numClasses`.
    /// `numClasses == nil` means "largest label + 1".
    public static func loadIDX(images: URL, labels: URL, numClasses: Int? = nil, name: String) throws -> ImageDataset {
        let x = try IDXArray.read(images)
        let y = try IDXArray.read(labels)
        guard x.dims.count == 3 else {
            throw DataError(file: images, "expected a 3-dimensional IDX image array (N×H×W), got dimensions \(x.dims)")
        }
        guard y.dims.count == 1 else {
            throw DataError(file: labels, "expected a 1-dimensional IDX label array (N), got dimensions \(y.dims)")
        }
        guard x.dims[0] == y.dims[0] else {
            throw DataError(file: labels, "has \(y.dims[0]) labels but \(images.lastPathComponent) has \(x.dims[0]) images")
        }
        let classes = numClasses ?? (Int(y.bytes.max() ?? 0) + 1)
        if let bad = y.bytes.firstIndex(where: { Int($0) >= classes }) {
            throw DataError(file: labels, "label \(y.bytes[bad]) at index \(bad) is out of range for \(classes) classes (0...\(classes - 1))")
        }
        return try ImageDataset(name: name, channels: 1, height: x.dims[1], width: x.dims[2], numClasses: classes,
                                pixels: x.bytes, labels: y.bytes.map { Int32($0) })
    }
}
