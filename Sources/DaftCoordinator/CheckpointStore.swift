import Foundation
import DaftInterop
#if canImport(Glibc)
import Glibc
#endif

/// One file recorded in a checkpoint manifest: its exact size in bytes and its SHA-256 (lowercase hex).
public struct CheckpointFile: Equatable, Hashable, Sendable {
    /// Size in bytes.
    public let size: Int
    /// SHA-256 of the contents, 64 lowercase hex digits.
    public let sha256: String

    /// A manifest entry.
    public init(size: Int, sha256: String) {
        self.size = size
        self.sha256 = sha256
    }
}

/// A checkpoint directory together with what its manifest says.
///
/// Values come from `CheckpointStore.validate(_:)`, `latestValid(report:)`, `validCheckpoints()` and `best()`,
/// which have already checked every file's size and SHA-256; `read(_:)` checks the file again as it reads it.
public struct CheckpointInfo: Equatable, Sendable {
    /// The checkpoint directory (`ROOT/ckpt-<step, zero-padded to 9 digits>`).
    public let url: URL
    /// The training step the checkpoint was taken at.
    public let step: Int
    /// When the checkpoint was written (from the manifest; second precision, UTC).
    public let created: Date
    /// Free-form string metadata the trainer stored (e.g. `arch`, `method`, `epoch`).
    public let info: [String: String]
    /// Whether the writer marked this checkpoint as a best-so-far candidate.
    public let isBest: Bool
    /// The validation metric the writer recorded (higher is better), if any.
    public let metric: Double?
    /// Every file of the checkpoint by name, with its size and SHA-256.
    public let files: [String: CheckpointFile]

    /// Creates a value; normally obtained from a `CheckpointStore` instead.
    public init(url: URL, step: Int, created: Date, info: [String: String], isBest: Bool, metric: Double?,
                files: [String: CheckpointFile]) {
        self.url = url
        self.step = step
        self.created = created
        self.info = info
        self.isBest = isBest
        self.metric = metric
        self.files = files
    }

    /// The location of the checkpoint file `name` (whether or not it is listed in the manifest).
    public func fileURL(_ name: String) -> URL {
        url.appendingPathComponent(name, isDirectory: false)
    }

    /// The contents of the checkpoint file `file`, after checking them against the manifest's size and SHA-256.
    /// Throws a `CheckpointError` (one line naming the directory) if the file is not in the manifest,
    /// missing, of the wrong size or fails the checksum.
    public func read(_ file: String) throws -> [UInt8] {
        let dir = url.path
        guard let entry = files[file] else { throw CheckpointError.notInManifest(dir: dir, file: file) }
        let path = fileURL(file).path
        let bytes: [UInt8]
        do {
            bytes = try DurableIO.readAll(path: path)
        } catch let error as DurableIO.Failure where error.code == ENOENT {
            throw CheckpointError.missingFile(dir: dir, file: file)
        } catch let error as DurableIO.Failure {
            throw CheckpointError.io(path: path, message: error.message)
        }
        if bytes.count != entry.size {
            throw CheckpointError.sizeMismatch(dir: dir, file: file, expected: entry.size, actual: bytes.count)
        }
        let actual = Checksum.sha256Hex(of: bytes)
        if actual != entry.sha256 {
            throw CheckpointError.checksumMismatch(dir: dir, file: file, expected: entry.sha256, actual: actual)
        }
        return bytes
    }
}

/// Why a checkpoint directory was rejected or could not be written. `description` is a single line naming
/// the directory (or path) and the problem.
public enum CheckpointError: Error, Equatable, Sendable, CustomStringConvertible, LocalizedError {
    /// The directory does not exist or is not a directory.
    case notADirectory(dir: String)
    /// `manifest.json` is absent: the checkpoint was never committed (e.g. the writer was killed).
    case missingManifest(dir: String)
    /// `manifest.json` exists but cannot be read, is not valid JSON, or does not describe a checkpoint.
    case unreadableManifest(dir: String, reason: String)
    /// A file listed in the manifest is absent.
    case missingFile(dir: String, file: String)
    /// A file's size differs from the manifest (smaller means truncated).
    case sizeMismatch(dir: String, file: String, expected: Int, actual: Int)
    /// A file's SHA-256 differs from the manifest.
    case checksumMismatch(dir: String, file: String, expected: String, actual: String)
    /// `CheckpointInfo.read(_:)` was asked for a file the manifest does not list.
    case notInManifest(dir: String, file: String)
    /// `write` was given a file name that is empty, hidden, reserved or contains `/`.
    case invalidFileName(String)
    /// `write` was given a negative step.
    case invalidStep(Int)
    /// A system call failed.
    case io(path: String, message: String)

    /// One line: `checkpoint DIR: problem`.
    public var description: String {
        switch self {
        case .notADirectory(let dir):
            return "checkpoint \(dir): not a directory"
        case .missingManifest(let dir):
            return "checkpoint \(dir): missing \(CheckpointStore.manifestName) (incomplete checkpoint)"
        case .unreadableManifest(let dir, let reason):
            return "checkpoint \(dir): unreadable \(CheckpointStore.manifestName): \(oneLine(reason))"
        case .missingFile(let dir, let file):
            return "checkpoint \(dir): missing file \(file)"
        case .sizeMismatch(let dir, let file, let expected, let actual):
            if actual < expected {
                return "checkpoint \(dir): file \(file) is truncated (\(actual) of \(expected) bytes)"
            }
            return "checkpoint \(dir): size mismatch for \(file) (\(actual) bytes, manifest says \(expected))"
        case .checksumMismatch(let dir, let file, let expected, let actual):
            return "checkpoint \(dir): checksum mismatch for \(file) (sha256 \(actual), manifest says \(expected))"
        case .notInManifest(let dir, let file):
            return "checkpoint \(dir): no file named \(file) in the manifest"
        case .invalidFileName(let name):
            return "invalid checkpoint file name '\(oneLine(name))' (must be non-empty, not start with '.', "
                + "contain no '/', and not be \(CheckpointStore.manifestName))"
        case .invalidStep(let step):
            return "invalid checkpoint step \(step) (must be >= 0)"
        case .io(let path, let message):
            return "\(path): \(oneLine(message))"
        }
    }

    /// Same as `description`.
    public var errorDescription: String? { description }
}

private func oneLine(_ text: String) -> String {
    text.split(whereSeparator: { $0.isNewline }).joined(separator: " ")
}

/// Crash-safe checkpoint directories under one root directory (`--out DIR`), written by one process (rank 0).
///
/// Layout: `ROOT/ckpt-<step zero-padded to 9 digits>/` holds the checkpoint's files and `manifest.json`,
/// which is written last and lists every file's size and SHA-256. A directory is a checkpoint only if its
/// manifest parses and every listed file is present with the recorded size and checksum.
///
/// `manifest.json` (format version 1, keys sorted):
/// ```json
/// {
///   "created" : "2025-01-31T12:00:00Z",
///   "files" : { "weights.safetensors" : { "sha256" : "<64 hex digits>", "size" : 123456 } },
///   "format" : "daft-checkpoint",
///   "format_version" : 1,
///   "info" : { "arch" : "resnet18" },
///   "is_best" : true,
///   "metric" : 0.875,
///   "step" : 1200
/// }
/// ```
/// `metric` is `null` when none was given (or it was not finite).
///
/// Crash safety: every file is written under a hidden temporary name, fsynced and renamed into place; the
/// directory is fsynced before the manifest is written the same way and fsynced again. Replacing a
/// committed checkpoint of the same step builds the new one in a hidden staging directory and swaps the two
/// atomically (`renameat2(RENAME_EXCHANGE)`; plain renames where unsupported). Directories are deleted by
/// first renaming them to a hidden name, so a kill at any moment leaves either a committed checkpoint with
/// correct files or a directory without a manifest, never a manifest naming wrong files. Hidden leftovers
/// (`.ckpt-*`) are removed by the next `write`.
public struct CheckpointStore: Sendable {
    /// The directory holding the checkpoint directories.
    public let root: URL
    /// How many of the newest committed checkpoints retention keeps (at least 1), besides the best one.
    public let keep: Int

    /// Name of the manifest inside a checkpoint directory.
    public static let manifestName = "manifest.json"
    /// The manifest `format` string.
    public static let formatName = "daft-checkpoint"
    /// The manifest format version this code writes and reads.
    public static let formatVersion = 1
    /// Prefix of checkpoint directory names.
    public static let directoryPrefix = "ckpt-"

    /// A store under `root` keeping the newest `keep` checkpoints (values below 1 count as 1) plus the best.
    /// Nothing is created until the first `write`.
    public init(root: URL, keep: Int) {
        self.root = root.standardizedFileURL
        self.keep = max(1, keep)
    }

    /// `ckpt-<step zero-padded to 9 digits>`, e.g. `ckpt-000001200`.
    public static func directoryName(step: Int) -> String {
        let digits = String(step)
        return directoryPrefix + String(repeating: "0", count: max(0, 9 - digits.count)) + digits
    }

    /// The step encoded in a checkpoint directory name, or nil if `name` is not one.
    public static func step(fromDirectoryName name: String) -> Int? {
        guard name.hasPrefix(directoryPrefix) else { return nil }
        let digits = name.dropFirst(directoryPrefix.count)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    /// The directory a checkpoint of `step` lives in.
    public func directory(step: Int) -> URL {
        root.appendingPathComponent(CheckpointStore.directoryName(step: step), isDirectory: true)
    }

    // MARK: - Writing

    /// Writes and commits the checkpoint of `step` and returns its directory, then applies retention.
    ///
    /// - Parameters:
    ///   - files: file name → contents. Names must be non-empty, must not start with `.`, contain `/`, or be
    ///     `manifest.json`.
    ///   - info: free-form metadata stored in the manifest.
    ///   - isBest: marks the checkpoint as a best candidate; retention keeps the one with the highest `metric`
    ///     among those marked (ties: the newest), besides the newest `keep`.
    ///   - metric: the validation metric (higher is better); a non-finite value is stored as `null`.
    ///
    /// An existing directory for `step` without a manifest (a partial write) is removed first; one with a
    /// manifest is replaced atomically once the new checkpoint is complete. After the commit, committed
    /// checkpoints outside the newest `keep` and the best are deleted (never the one just written), as are
    /// uncommitted or broken directories older than the newest committed checkpoint.
    @discardableResult
    public func write(step: Int, files: [String: [UInt8]], info: [String: String], isBest: Bool,
                      metric: Double?) throws -> URL {
        guard step >= 0 else { throw CheckpointError.invalidStep(step) }
        for name in files.keys where !CheckpointStore.isValidFileName(name) {
            throw CheckpointError.invalidFileName(name)
        }
        try ensureRoot()
        removeHiddenLeftovers()

        var entries: [String: CheckpointFile] = [:]
        for (name, bytes) in files {
            entries[name] = CheckpointFile(size: bytes.count, sha256: Checksum.sha256Hex(of: bytes))
        }
        let manifest = Manifest(
            format: CheckpointStore.formatName, formatVersion: CheckpointStore.formatVersion, step: step,
            created: CheckpointStore.timestampFormatter().string(from: Date()),
            isBest: isBest, metric: metric.flatMap { $0.isFinite ? $0 : nil }, info: info,
            files: entries.mapValues { ManifestFile(size: $0.size, sha256: $0.sha256) })
        let manifestBytes = try manifest.encoded()

        let final = directory(step: step)
        let fm = FileManager.default
        var isDir: ObjCBool = false
        let exists = fm.fileExists(atPath: final.path, isDirectory: &isDir)
        let hasManifest = exists && isDir.boolValue
            && fm.fileExists(atPath: final.appendingPathComponent(CheckpointStore.manifestName).path)

        if exists && hasManifest {
            // Build the replacement next to it, then swap the two directories in one step.
            let staging = root.appendingPathComponent(
                ".\(CheckpointStore.directoryName(step: step)).staging-\(getpid())", isDirectory: true)
            if fm.fileExists(atPath: staging.path) { try? fm.removeItem(at: staging) }
            try DurableIO.makeDirectory(staging.path)
            try DurableIO.syncDirectory(root.path)
            try writeContents(into: staging, files: files, manifestBytes: manifestBytes)
            try DurableIO.exchangeOrReplace(staging: staging.path, final: final.path, root: root.path)
            discard(staging)
        } else {
            if exists { discard(final) }
            try DurableIO.makeDirectory(final.path)
            try DurableIO.syncDirectory(root.path)
            try writeContents(into: final, files: files, manifestBytes: manifestBytes)
        }
        applyRetention(justWritten: step)
        return final
    }

    private func writeContents(into dir: URL, files: [String: [UInt8]], manifestBytes: [UInt8]) throws {
        for name in files.keys.sorted() {
            try DurableIO.writeFileAtomically(dir: dir.path, name: name, bytes: files[name]!)
        }
        try DurableIO.syncDirectory(dir.path)
        try DurableIO.writeFileAtomically(dir: dir.path, name: CheckpointStore.manifestName, bytes: manifestBytes)
        try DurableIO.syncDirectory(dir.path)
    }

    private func ensureRoot() throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: root.path, isDirectory: &isDir) {
            if !isDir.boolValue { throw CheckpointError.io(path: root.path, message: "not a directory") }
            return
        }
        try DurableFile.createDirectory(root)  // one line naming the folder that could not be made
        try DurableIO.syncDirectory(root.deletingLastPathComponent().path)
    }

    /// Removes a directory crash-safely: rename to a hidden name (atomic), sync the root, then delete.
    private func discard(_ dir: URL) {
        let trash = root.appendingPathComponent(
            ".\(CheckpointStore.directoryPrefix)trash-\(dir.lastPathComponent)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
            isDirectory: true)
        if rename(dir.path, trash.path) == 0 {
            try? DurableIO.syncDirectory(root.path)
            try? FileManager.default.removeItem(at: trash)
        } else {
            try? FileManager.default.removeItem(at: dir)
        }
    }

    /// Deletes hidden staging/trash directories left by a writer that was killed.
    private func removeHiddenLeftovers() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root.path) else { return }
        for name in names where name.hasPrefix("." + CheckpointStore.directoryPrefix) {
            try? FileManager.default.removeItem(at: root.appendingPathComponent(name))
        }
    }

    private func applyRetention(justWritten: Int) {
        var committed: [(step: Int, info: CheckpointInfo)] = []
        var broken: [(step: Int, url: URL)] = []
        for (step, url) in listDirectories() {
            if let info = try? CheckpointStore.check(url, verifyChecksums: false) {
                committed.append((step, info))
            } else {
                broken.append((step, url))
            }
        }
        guard let newest = committed.map(\.step).max() else { return }
        var kept: Set<Int> = [justWritten]
        for entry in committed.sorted(by: { $0.step > $1.step }).prefix(keep) { kept.insert(entry.step) }
        if let best = CheckpointStore.pickBest(committed.map(\.info)) { kept.insert(best.step) }
        for entry in committed where !kept.contains(entry.step) { discard(entry.info.url) }
        for entry in broken where entry.step < newest { discard(entry.url) }
    }

    // MARK: - Reading and validation

    /// Every committed checkpoint whose files all verify (size and SHA-256), sorted by step.
    /// Reads and hashes every file; rejected directories are skipped silently.
    public func validCheckpoints() -> [CheckpointInfo] {
        listDirectories().compactMap { try? CheckpointStore.check($0.url, verifyChecksums: true) }
    }

    /// The newest checkpoint that verifies completely, or nil if none does. Each newer directory that fails
    /// is reported as one line (`checkpoint DIR: problem`) and skipped. Nothing is modified.
    public func latestValid(report: (String) -> Void = { _ in }) -> CheckpointInfo? {
        for (_, url) in listDirectories().reversed() {
            do {
                return try CheckpointStore.check(url, verifyChecksums: true)
            } catch {
                report(String(describing: error))
            }
        }
        return nil
    }

    /// Checks one checkpoint directory completely (manifest, presence, sizes and SHA-256 of all files) and
    /// returns what it holds; throws a `CheckpointError` whose description is one line naming the directory.
    public func validate(_ dir: URL) throws -> CheckpointInfo {
        try CheckpointStore.check(dir, verifyChecksums: true)
    }

    /// The best checkpoint: the highest metric among valid checkpoints marked best (ties: newest; a missing
    /// metric ranks lowest), or nil if none is marked.
    public func best() -> CheckpointInfo? {
        CheckpointStore.pickBest(validCheckpoints())
    }

    /// A human-readable summary of a checkpoint directory for `daft inspect`: step, creation time, best flag
    /// and metric, verification status, each file with its size and SHA-256, and the info entries.
    /// Throws if the manifest is missing or unreadable; other problems are shown as the status.
    public static func describe(_ dir: URL) throws -> String {
        let info = try check(dir, checkFiles: false, verifyChecksums: false)
        let status: String
        do {
            _ = try check(dir, verifyChecksums: true)
            status = "valid (all files match their size and sha256)"
        } catch {
            status = "INVALID: \(error)"
        }
        var lines: [String] = []
        lines.append("checkpoint \(info.url.path)")
        lines.append("  step:    \(info.step)")
        lines.append("  created: \(timestampFormatter().string(from: info.created))")
        lines.append("  best:    \(info.isBest ? "yes" : "no")")
        lines.append("  metric:  \(info.metric.map { String($0) } ?? "none")")
        lines.append("  status:  \(status)")
        let total = info.files.values.reduce(0) { $0 + $1.size }
        lines.append("  files (\(info.files.count), \(total) bytes = \(humanSize(total))):")
        let width = info.files.keys.map(\.count).max() ?? 0
        for name in info.files.keys.sorted() {
            let file = info.files[name]!
            let padded = name.padding(toLength: width, withPad: " ", startingAt: 0)
            lines.append("    \(padded)  \(file.size) bytes (\(humanSize(file.size)))  sha256 \(file.sha256)")
        }
        if info.info.isEmpty {
            lines.append("  info: (none)")
        } else {
            lines.append("  info:")
            for key in info.info.keys.sorted() {
                lines.append("    \(key) = \(info.info[key]!)")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Checkpoint directories (`ckpt-<digits>`) under the root, sorted by step.
    private func listDirectories() -> [(step: Int, url: URL)] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root.path) else { return [] }
        var result: [(step: Int, url: URL)] = []
        for name in names {
            guard let step = CheckpointStore.step(fromDirectoryName: name) else { continue }
            let url = root.appendingPathComponent(name, isDirectory: true)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
                continue
            }
            result.append((step, url))
        }
        return result.sorted { $0.step != $1.step ? $0.step < $1.step : $0.url.path < $1.url.path }
    }

    private static func pickBest(_ candidates: [CheckpointInfo]) -> CheckpointInfo? {
        candidates.filter(\.isBest).max { a, b in
            let ma = a.metric ?? -Double.infinity, mb = b.metric ?? -Double.infinity
            return ma != mb ? ma < mb : a.step < b.step
        }
    }

    static func isValidFileName(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix(".") && !name.contains("/") && !name.contains("\0")
            && name != manifestName
    }

    /// Parses the manifest of `dir`; with `checkFiles` checks every file's presence and size, and with
    /// `verifyChecksums` also its SHA-256.
    static func check(_ dir: URL, checkFiles: Bool = true, verifyChecksums: Bool) throws -> CheckpointInfo {
        let dirURL = dir.standardizedFileURL
        let dirPath = dirURL.path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dirPath, isDirectory: &isDir), isDir.boolValue else {
            throw CheckpointError.notADirectory(dir: dirPath)
        }
        let manifestPath = dirURL.appendingPathComponent(manifestName).path
        let raw: [UInt8]
        do {
            raw = try DurableIO.readAll(path: manifestPath)
        } catch let error as DurableIO.Failure where error.code == ENOENT {
            throw CheckpointError.missingManifest(dir: dirPath)
        } catch let error as DurableIO.Failure {
            throw CheckpointError.unreadableManifest(dir: dirPath, reason: error.message)
        }
        let parsed = try info(manifest: raw, dir: dirURL)
        let files = parsed.files
        for name in files.keys.sorted() where checkFiles {
            let entry = files[name]!
            let path = dirURL.appendingPathComponent(name).path
            var st = stat()
            if stat(path, &st) != 0 {
                if errno == ENOENT { throw CheckpointError.missingFile(dir: dirPath, file: name) }
                throw CheckpointError.io(path: path, message: String(cString: strerror(errno)))
            }
            if (st.st_mode & S_IFMT) != S_IFREG { throw CheckpointError.missingFile(dir: dirPath, file: name) }
            if Int(st.st_size) != entry.size {
                throw CheckpointError.sizeMismatch(dir: dirPath, file: name, expected: entry.size, actual: Int(st.st_size))
            }
            if verifyChecksums {
                let result: (hex: String, size: Int)
                do {
                    result = try Checksum.sha256OfFile(at: URL(fileURLWithPath: path))
                } catch {
                    throw CheckpointError.io(path: path, message: String(describing: error))
                }
                if result.size != entry.size {
                    throw CheckpointError.sizeMismatch(dir: dirPath, file: name, expected: entry.size, actual: result.size)
                }
                let actual = result.hex
                if actual != entry.sha256 {
                    throw CheckpointError.checksumMismatch(dir: dirPath, file: name, expected: entry.sha256, actual: actual)
                }
            }
        }
        return parsed
    }

    /// The checkpoint `manifest.json` bytes `raw` describe, as found in `dir` (standardized): the manifest is
    /// parsed and checked (format and version, field types, the step against the directory name, the `created`
    /// time, file names, sizes and checksums' spelling), but no file is looked at. Errors are
    /// `CheckpointError.unreadableManifest` naming `dir`.
    static func info(manifest raw: [UInt8], dir dirURL: URL) throws -> CheckpointInfo {
        let dirPath = dirURL.path
        let manifest: Manifest
        do {
            manifest = try Manifest.decode(raw)
        } catch let error as ManifestProblem {
            throw CheckpointError.unreadableManifest(dir: dirPath, reason: error.reason)
        }
        guard manifest.step >= 0 else {
            throw CheckpointError.unreadableManifest(dir: dirPath, reason: "manifest step \(manifest.step) is negative")
        }
        if let named = step(fromDirectoryName: dirURL.lastPathComponent), named != manifest.step {
            throw CheckpointError.unreadableManifest(
                dir: dirPath, reason: "manifest step \(manifest.step) does not match the directory name")
        }
        guard let created = timestampFormatter().date(from: manifest.created) else {
            throw CheckpointError.unreadableManifest(dir: dirPath, reason: "invalid 'created' time '\(manifest.created)'")
        }
        var files: [String: CheckpointFile] = [:]
        for name in manifest.files.keys.sorted() {
            let entry = manifest.files[name]!
            guard isValidFileName(name) else {
                throw CheckpointError.unreadableManifest(dir: dirPath, reason: "invalid file name '\(name)'")
            }
            guard entry.size >= 0, entry.sha256.count == 64,
                  entry.sha256.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
                throw CheckpointError.unreadableManifest(dir: dirPath, reason: "invalid size or sha256 for '\(name)'")
            }
            files[name] = CheckpointFile(size: entry.size, sha256: entry.sha256)
        }
        return CheckpointInfo(url: dirURL, step: manifest.step, created: created, info: manifest.info,
                              isBest: manifest.isBest, metric: manifest.metric, files: files)
    }

    static func timestampFormatter() -> ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter
    }

}

// MARK: - Manifest encoding

private struct ManifestFile: Codable {
    var size: Int
    var sha256: String
}

private struct ManifestProblem: Error {
    var reason: String
}

private struct Manifest: Codable {
    var format: String
    var formatVersion: Int
    var step: Int
    var created: String
    var isBest: Bool
    var metric: Double?
    var info: [String: String]
    var files: [String: ManifestFile]

    enum CodingKeys: String, CodingKey {
        case format
        case formatVersion = "format_version"
        case step
        case created
        case isBest = "is_best"
        case metric
        case info
        case files
    }

    init(format: String, formatVersion: Int, step: Int, created: String, isBest: Bool, metric: Double?,
         info: [String: String], files: [String: ManifestFile]) {
        self.format = format
        self.formatVersion = formatVersion
        self.step = step
        self.created = created
        self.isBest = isBest
        self.metric = metric
        self.info = info
        self.files = files
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(format, forKey: .format)
        try container.encode(formatVersion, forKey: .formatVersion)
        try container.encode(step, forKey: .step)
        try container.encode(created, forKey: .created)
        try container.encode(isBest, forKey: .isBest)
        if let metric { try container.encode(metric, forKey: .metric) } else { try container.encodeNil(forKey: .metric) }
        try container.encode(info, forKey: .info)
        try container.encode(files, forKey: .files)
    }

    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(self)) + [0x0a]
        } catch {
            throw CheckpointError.io(path: CheckpointStore.manifestName, message: "cannot encode manifest: \(error)")
        }
    }

    static func decode(_ bytes: [UInt8]) throws -> Manifest {
        // Check the format and version first so that a newer manifest gets a clear message.
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        } catch {
            throw ManifestProblem(reason: "not valid JSON")
        }
        guard let dict = object as? [String: Any] else { throw ManifestProblem(reason: "not a JSON object") }
        guard let format = dict["format"] as? String, format == CheckpointStore.formatName else {
            throw ManifestProblem(reason: "'format' is not \"\(CheckpointStore.formatName)\"")
        }
        guard let version = dict["format_version"] as? Int else {
            throw ManifestProblem(reason: "missing 'format_version'")
        }
        guard version == CheckpointStore.formatVersion else {
            throw ManifestProblem(reason: "unsupported format_version \(version) (this build reads \(CheckpointStore.formatVersion))")
        }
        do {
            return try JSONDecoder().decode(Manifest.self, from: Data(bytes))
        } catch let DecodingError.keyNotFound(key, context) {
            throw ManifestProblem(reason: "missing field '\(path(context.codingPath + [key]))'")
        } catch let DecodingError.typeMismatch(_, context) {
            throw ManifestProblem(reason: "field '\(path(context.codingPath))' has the wrong type")
        } catch let DecodingError.valueNotFound(_, context) {
            throw ManifestProblem(reason: "field '\(path(context.codingPath))' is null")
        } catch {
            throw ManifestProblem(reason: "invalid manifest")
        }
    }

    private static func path(_ keys: [CodingKey]) -> String {
        keys.map(\.stringValue).joined(separator: ".")
    }
}

// MARK: - Durable file operations (Glibc)

/// fsync-based helpers: temp-file + rename writes, directory syncs, atomic directory exchange.
enum DurableIO {
    struct Failure: Error {
        var code: Int32
        var message: String
    }

    private static func failure(_ path: String, _ what: String, _ code: Int32 = errno) -> CheckpointError {
        CheckpointError.io(path: path, message: "\(what): \(String(cString: strerror(code)))")
    }

    /// Reads a whole file; throws `Failure` carrying errno.
    static func readAll(path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            throw Failure(code: code, message: String(cString: strerror(code)))
        }
        defer { close(fd) }
        var st = stat()
        let expected = fstat(fd, &st) == 0 ? max(0, Int(st.st_size)) : 0
        var result = [UInt8](repeating: 0, count: expected)
        var filled = 0
        while true {
            if filled == result.count {
                result.append(contentsOf: repeatElement(0, count: max(65536, result.count / 2)))
            }
            let n = result.withUnsafeMutableBytes { buf in
                read(fd, buf.baseAddress! + filled, buf.count - filled)
            }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                throw Failure(code: code, message: String(cString: strerror(code)))
            }
            if n == 0 { break }
            filled += n
        }
        result.removeSubrange(filled...)
        return result
    }

    static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) != 0 { throw failure(path, "cannot create directory") }
    }

    /// fsync on a directory, so that entries created or renamed in it are durable.
    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw failure(path, "cannot open directory") }
        defer { close(fd) }
        if fsync(fd) != 0 {
            let code = errno
            // Some file systems cannot fsync directories; the data files themselves were synced.
            if code != EINVAL && code != ENOTSUP { throw failure(path, "fsync", code) }
        }
    }

    /// Writes `bytes` to `dir/.name.tmp`, fsyncs and closes it, and renames it to `dir/name`.
    /// The caller syncs `dir` afterwards.
    static func writeFileAtomically(dir: String, name: String, bytes: [UInt8]) throws {
        let tmp = dir + "/." + name + ".tmp"
        let final = dir + "/" + name
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw failure(tmp, "cannot create") }
        var written = 0
        let writeError: CheckpointError? = bytes.withUnsafeBytes { buf -> CheckpointError? in
            while written < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + written, buf.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return failure(tmp, "write")
                }
                written += n
            }
            return nil
        }
        if let writeError {
            close(fd)
            unlink(tmp)
            throw writeError
        }
        if fsync(fd) != 0 {
            let error = failure(tmp, "fsync")
            close(fd)
            unlink(tmp)
            throw error
        }
        if close(fd) != 0 {
            let error = failure(tmp, "close")
            unlink(tmp)
            throw error
        }
        if rename(tmp, final) != 0 {
            let error = failure(final, "rename")
            unlink(tmp)
            throw error
        }
    }

    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32

    /// glibc's `renameat2`, looked up at run time (the Glibc module does not export it).
    private static let renameat2: RenameAt2? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "renameat2") else { return nil }
        return unsafeBitCast(symbol, to: RenameAt2.self)
    }()

    /// Puts the complete directory `staging` at `final`, leaving the previous `final` at `staging`.
    /// Uses an atomic exchange where the kernel and file system support it; otherwise moves the old
    /// directory aside and renames the new one into place. Syncs `root` afterwards.
    static func exchangeOrReplace(staging: String, final: String, root: String) throws {
        let renameExchange: UInt32 = 2
        if let renameat2, renameat2(AT_FDCWD, staging, AT_FDCWD, final, renameExchange) == 0 {
            try syncDirectory(root)
            return
        }
        let aside = staging + ".old"
        if rename(final, aside) != 0 { throw failure(final, "rename") }
        if rename(staging, final) != 0 {
            let error = failure(final, "rename")
            _ = rename(aside, final)
            throw error
        }
        if rename(aside, staging) != 0 { throw failure(staging, "rename") }
        try syncDirectory(root)
    }
}
