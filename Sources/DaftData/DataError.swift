import Foundation

/// An error from the data module. Its description is always one line and names the file (or the
/// data specification) and the problem, so a CLI can print it as is.
public struct DataError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    /// The one-line message.
    public let message: String

    /// An error with `message`; any line breaks are folded into spaces.
    public init(_ message: String) {
        self.message = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    /// An error about `file`: "`path`: `problem`".
    public init(file: URL, _ problem: String) {
        self.init("\(file.path): \(problem)")
    }

    public var description: String { message }
    public var errorDescription: String? { message }
}
