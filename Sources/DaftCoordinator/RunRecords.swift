import Foundation
import DaftInterop

/// A training run's records in its `--out` directory (cli.md "Run records"), written by rank 0 as they happen:
///
/// - `metrics.jsonl`: one JSON object per line — `kind` `step` (every `--log-every` steps), `epoch`, `phase`
///   (BN conversion, probe) and `final` — each written with one `write(2)` when it happens and `fsync`ed at every
///   epoch record;
/// - `tb/events.out.tfevents.*`: the same numbers as TensorBoard scalars (`TensorBoardEvents`).
///
/// A resumed run continues the same records with nothing duplicated or missing: the checkpoint stores how many
/// lines existed when it was written (`TrainerState.metricsLines`); on resume the file is cut back to those lines
/// (atomically), the TensorBoard file is regenerated from them, and the resumed steps append from there.
public final class RunRecords {
    public let metricsURL: URL
    public let tensorBoardDirectory: URL
    private var handle: FileHandle?
    private var events: FileHandle?
    /// Number of lines in metrics.jsonl.
    public private(set) var lineCount = 0

    public init(directory: URL) {
        metricsURL = directory.appendingPathComponent("metrics.jsonl")
        tensorBoardDirectory = directory.appendingPathComponent("tb")
    }

    deinit { try? handle?.close(); try? events?.close() }

    /// Starts the records: a fresh run empties them; a resumed one keeps the first `keepLines` lines (nil: the
    /// lines whose `step` is at most `step`, for checkpoints written before lines were counted).
    public func open(resuming: Bool, keepLines: Int?, step: Int) throws {
        let fm = FileManager.default
        try DurableFile.createDirectory(metricsURL.deletingLastPathComponent())
        var kept: [String] = []
        if resuming, let data = fm.contents(atPath: metricsURL.path) {
            let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
            if let keepLines {
                kept = Array(lines.prefix(keepLines))
            } else {
                kept = lines.filter { ((Self.parse($0)?["step"] as? Int) ?? 0) <= step }
            }
        }
        try DurableFile.write(Array(kept.map { $0 + "\n" }.joined().utf8), to: metricsURL)
        lineCount = kept.count
        handle = try FileHandle(forWritingTo: metricsURL)
        try handle!.seekToEnd()
        // TensorBoard: one events file, regenerated from the kept records, then appended to
        try? fm.removeItem(at: tensorBoardDirectory)
        try DurableFile.createDirectory(tensorBoardDirectory)
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        let now = Date().timeIntervalSince1970
        let tb = tensorBoardDirectory.appendingPathComponent("events.out.tfevents.\(Int(now)).\(host).\(getpid())")
        let scalars = kept.compactMap(Self.parse).flatMap(Self.scalars)
        guard fm.createFile(atPath: tb.path, contents: Data(TensorBoardEvents.file(scalars, createdAt: now))) else {
            throw InteropError("\(tb.path): cannot create the TensorBoard event file")
        }
        events = try FileHandle(forWritingTo: tb)
        try events!.seekToEnd()
    }

    /// Appends one record (a JSON object; non-finite numbers are written as null) and its TensorBoard scalars.
    public func append(_ record: [String: Any], sync: Bool = false) throws {
        guard let handle, let events else { return }
        var r = record
        r["wall_time"] = r["wall_time"] ?? Date().timeIntervalSince1970
        let data = try JSONSerialization.data(withJSONObject: Self.finite(r), options: [.sortedKeys])
        try handle.write(contentsOf: data + Data("\n".utf8))
        lineCount += 1
        try events.write(contentsOf: Data(TensorBoardEvents.events(Self.scalars(r))))
        if sync { try handle.synchronize(); try events.synchronize() }
    }

    static func parse(_ line: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }

    static func number(_ v: Any) -> Double? {
        switch v {
        case let d as Double: return d
        case let i as Int: return Double(i)
        case let f as Float: return Double(f)
        case let n as NSNumber: return n.doubleValue
        default: return nil
        }
    }

    static func finite(_ v: Any) -> Any {
        switch v {
        case let d as Double: return d.isFinite ? d : NSNull()
        case let o as [String: Any]: return o.mapValues(finite)
        case let a as [Any]: return a.map(finite)
        default: return v
        }
    }

    /// The TensorBoard scalars of a record: every number under its `kind`'s prefix (`train/loss`, `epoch/val_accuracy`,
    /// `epoch/ood/rotate`, …), at the record's global step.
    static func scalars(_ r: [String: Any]) -> [TensorBoardEvents.Scalar] {
        guard let kind = r["kind"] as? String, let step = r["step"] as? Int else { return [] }
        let wall = r["wall_time"] as? Double ?? 0
        let prefix = kind == "step" ? "train" : kind
        var out: [TensorBoardEvents.Scalar] = []
        func add(_ tag: String, _ v: Any) {
            if let o = v as? [String: Any] {
                for k in o.keys.sorted() { add(tag + "/" + k, o[k]!) }
            } else if let x = number(v) {
                out.append(.init(tag: tag, step: step, value: Float(x), wallTime: wall))
            }
        }
        for k in r.keys.sorted() where !["kind", "step", "wall_time", "epoch", "step_in_epoch"].contains(k) { add(prefix + "/" + k, r[k]!) }
        return out
    }
}
