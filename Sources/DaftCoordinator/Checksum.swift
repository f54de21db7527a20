import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// SHA-256 checksums as checkpoint manifests store them, 64 lowercase hex digits (what `sha256sum` prints),
/// computed by swift-crypto's `SHA256`. Files are hashed in chunks, never read whole.
public enum Checksum {
    /// The SHA-256 of `bytes` as 64 lowercase hex digits.
    public static func sha256Hex(of bytes: [UInt8]) -> String {
        hex(SHA256.hash(data: bytes))
    }

    /// The SHA-256 of the file at `url` as 64 lowercase hex digits, and the number of bytes hashed; the file is
    /// read `chunkSize` bytes at a time. Throws `ChecksumFileError` (path and errno text) when it cannot be
    /// opened or read.
    public static func sha256OfFile(at url: URL, chunkSize: Int = 1 << 20) throws -> (hex: String, size: Int) {
        let path = url.path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            throw ChecksumFileError(path: path, message: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        let capacity = max(1, chunkSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        var total = 0
        while true {
            let n = read(fd, buffer.baseAddress, capacity)
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                throw ChecksumFileError(path: path, message: String(cString: strerror(code)))
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            total += n
        }
        return (hex(hasher.finalize()), total)
    }

    /// Lowercase hex of a digest's bytes.
    static func hex(_ digest: SHA256.Digest) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}

/// The error `Checksum.sha256OfFile(at:)` throws when a file cannot be opened or read.
public struct ChecksumFileError: Error, CustomStringConvertible, LocalizedError, Sendable {
    /// The file's path.
    public let path: String
    /// What went wrong (the `strerror` text).
    public let message: String

    /// "cannot read PATH: MESSAGE".
    public var description: String { "cannot read \(path): \(message)" }
    /// Same as `description`.
    public var errorDescription: String? { description }
}
