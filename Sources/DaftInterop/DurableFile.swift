#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Crash-safe file writes: readers see either the old file or the complete new one, never a torn write.
///
/// `write` puts the bytes in a temporary file in the destination's folder, fsyncs it, renames it over the
/// destination and fsyncs the folder so the rename itself survives a power loss.
public enum DurableFile {
    /// Writes `bytes` to `url` durably (see the type's documentation). Errors name the path and the failing
    /// step; the temporary file is removed on failure.
    public static func write(_ bytes: [UInt8], to url: URL) throws {
        let path = url.path
        let folder = url.deletingLastPathComponent()
        let temporary = folder.appendingPathComponent(
            ".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path

        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw InteropError(path, "cannot create temporary file \(temporary): \(ByteCoding.errnoText())")
        }
        var closed = false
        var renamed = false
        defer {
            if !closed { close(fd) }
            if !renamed { unlink(temporary) }
        }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                posixWrite(fd, raw.baseAddress! + written, min(raw.count - written, 1 << 30))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw InteropError(path, "cannot write temporary file \(temporary): \(ByteCoding.errnoText())")
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            throw InteropError(path, "cannot fsync temporary file \(temporary): \(ByteCoding.errnoText())")
        }
        closed = true
        guard close(fd) == 0 else {
            throw InteropError(path, "cannot close temporary file \(temporary): \(ByteCoding.errnoText())")
        }
        guard rename(temporary, path) == 0 else {
            throw InteropError(path, "cannot rename temporary file \(temporary) into place: \(ByteCoding.errnoText())")
        }
        renamed = true
        try fsyncDirectory(folder)
    }

    /// `mkdir -p`: creates `url` and any missing parents (0755). Errors are one line naming the folder that could
    /// not be made and why (`…/out: cannot create directory: Permission denied`), not Foundation's error dump.
    public static func createDirectory(_ url: URL) throws {
        let path = url.standardizedFileURL.path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw InteropError(path, "cannot create directory: a file of that name exists") }
            return
        }
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent()
        if parent.path != path { try createDirectory(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw InteropError(path, "cannot create directory: \(ByteCoding.errnoText())")
        }
    }

    /// Fsyncs a folder so that entries created, renamed or removed in it are durable. Filesystems that do
    /// not support fsync on folders (`EINVAL`) are accepted silently.
    public static func fsyncDirectory(_ url: URL) throws {
        let path = url.path
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw InteropError(path, "cannot open folder to fsync it: \(ByteCoding.errnoText())") }
        defer { close(fd) }
        if fsync(fd) != 0 && errno != EINVAL {
            throw InteropError(path, "cannot fsync folder: \(ByteCoding.errnoText())")
        }
    }
}

/// `write(2)`, named apart from `DurableFile.write`.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, buffer, count)
    #else
    return Darwin.write(fd, buffer, count)
    #endif
}
