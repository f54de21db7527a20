import Foundation

/// An error reading or writing an interop file (safetensors, NPY, durable writes).
///
/// `message` is always a single line that names the file (or the source given to a decoder) and what is
/// wrong with it, e.g. `model.safetensors: tensor 'fc.weight' data offsets [10, 9] are out of order`.
public struct InteropError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The one-line message: file name, then what is wrong.
    public let message: String

    /// Creates an error; line breaks in `message` are escaped so it stays on one line.
    public init(_ message: String) {
        self.message = message
            .replacingOccurrences(of: "\r", with: "\\r")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Creates an error whose message is `"<source>: <problem>"`.
    init(_ source: String, _ problem: String) {
        self.init("\(source): \(problem)")
    }

    /// The one-line message.
    public var description: String { message }
}

/// Quotes a name from a file for an error message: single quotes, control characters escaped, and
/// names longer than 120 characters cut short (a hostile file may hold huge names).
func quoted(_ name: String) -> String {
    var out = ""
    var count = 0
    for scalar in name.unicodeScalars {
        if count >= 120 {
            out += "..."
            break
        }
        switch scalar {
        case "'": out += "\\'"
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7f {
                out += String(format: "\\u{%02x}", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        count += 1
    }
    return "'\(out)'"
}

/// Formats a shape as `[2, 3]`.
func formatShape(_ shape: [Int]) -> String {
    "[" + shape.map(String.init).joined(separator: ", ") + "]"
}

/// The number of elements of `shape` (1 for a scalar), or nil when the product overflows `Int`.
func checkedElementCount(_ shape: [Int]) -> Int? {
    var product = 1
    for dim in shape {
        guard dim >= 0 else { return nil }
        let (next, overflow) = product.multipliedReportingOverflow(by: dim)
        if overflow { return nil }
        product = next
    }
    return product
}
