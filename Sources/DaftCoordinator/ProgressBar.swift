import Foundation

/// Rank 0's live progress on a terminal: one bar per phase (BN-conversion pass, probe, each epoch, each
/// evaluation set) with step/total, img/s, ETA and loss, redrawn in place with `\r`. Off a terminal (CI, Slurm
/// logs, mpirun's pipes) it draws nothing and the run prints its plain lines instead.
public final class ProgressBar {
    /// Whether bars are drawn (stdout is a terminal, rank 0, not `--quiet`).
    public let enabled: Bool
    private var title = "", started = Date(), lastDraw = Date.distantPast

    public init(enabled: Bool) { self.enabled = enabled }

    /// Bars only where a person watches: stdout is a terminal. Under mpirun every rank's stdout is a pty
    /// whatever mpirun's own stdout is, so there the launcher's (the parent process's) stdout decides:
    /// `mpirun … | tee log` or a Slurm log gets plain lines, `mpirun …` in a terminal gets bars.
    public static func terminalAttached() -> Bool {
        guard isatty(STDOUT_FILENO) == 1 else { return false }
        let env = ProcessInfo.processInfo.environment
        guard env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil else { return true }
        let link = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(getppid())/fd/1")) ?? ""
        return link.hasPrefix("/dev/pts/") || link.hasPrefix("/dev/tty")
    }

    /// Redraws the bar of phase `title`: `done` of `total` steps, `images` processed in the phase so far (for
    /// img/s and the ETA), the latest loss. A new title starts a new bar (and its clock).
    public func update(_ title: String, done: Int, total: Int, images: Int, loss: Double? = nil) {
        guard enabled else { return }
        let now = Date()
        if title != self.title {
            if !self.title.isEmpty { end() }
            self.title = title; started = now; lastDraw = .distantPast
        }
        guard done >= total || now.timeIntervalSince(lastDraw) >= 0.1 else { return }
        lastDraw = now
        let elapsed = max(now.timeIntervalSince(started), 1e-9)
        let rate = Double(images) / elapsed
        let eta = done > 0 ? elapsed / Double(done) * Double(max(total - done, 0)) : 0
        let width = 24, filled = total > 0 ? min(width, width * done / total) : 0
        var line = "\r\u{1B}[2K\(title) [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
        line += " \(done)/\(total)  " + String(format: "%.0f img/s  ETA %@", rate, Self.clock(eta))
        if let loss { line += String(format: "  loss %.4f", loss) }
        FileHandle.standardOutput.write(Data(line.utf8))
    }

    /// Ends the phase's bar (the line stays, the next output starts below it).
    public func end() {
        guard enabled, !title.isEmpty else { return }
        FileHandle.standardOutput.write(Data("\n".utf8))
        title = ""
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
