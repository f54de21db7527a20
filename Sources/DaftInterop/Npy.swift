import Foundation

/// An n-dimensional array in NumPy's `.npy` format (little-endian, C order).
///
/// The reader accepts format versions 1.0, 2.0 and 3.0 with `descr` `|u1`, `<i4`, `<i8`, `<f4` or `<f8`,
/// `fortran_order` False and a `shape` tuple; big-endian data, Fortran order, other dtypes, truncated
/// headers or data and trailing bytes are rejected with one-line errors naming the file. The writer
/// writes version 1.0 (2.0 only if the header would not fit) with the header padded by spaces so the data
/// starts at a multiple of 64 bytes, as `numpy.save` does.
public struct NpyArray: Equatable, Sendable {
    /// Supported element types.
    public enum DType: Equatable, Sendable, CaseIterable {
        case uint8, int32, int64, float32, float64

        /// The NumPy type string written in the header.
        public var descr: String {
            switch self {
            case .uint8: return "|u1"
            case .int32: return "<i4"
            case .int64: return "<i8"
            case .float32: return "<f4"
            case .float64: return "<f8"
            }
        }

        /// Bytes per element.
        public var byteSize: Int {
            switch self {
            case .uint8: return 1
            case .int32, .float32: return 4
            case .int64, .float64: return 8
            }
        }

        /// The dtype for a header `descr` (`<u1` is accepted as a synonym of `|u1`), or nil.
        public init?(descr: String) {
            switch descr {
            case "|u1", "<u1", ">u1", "=u1": self = .uint8
            case "<i4": self = .int32
            case "<i8": self = .int64
            case "<f4": self = .float32
            case "<f8": self = .float64
            default: return nil
            }
        }
    }

    /// Element type.
    public var dtype: DType
    /// Dimensions, outermost first; `[]` is a scalar.
    public var shape: [Int]
    /// Raw little-endian element bytes in C order.
    public var data: [UInt8]

    /// Wraps raw bytes; the byte count is checked against the shape when writing.
    public init(dtype: DType, shape: [Int], data: [UInt8]) {
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }

    /// A uint8 array (e.g. images N×C×H×W).
    public init(uint8s: [UInt8], shape: [Int]) {
        self.init(dtype: .uint8, shape: shape, data: uint8s)
    }

    /// An int32 array.
    public init(int32s: [Int32], shape: [Int]) {
        self.init(dtype: .int32, shape: shape, data: ByteCoding.store(int32s))
    }

    /// An int64 array (e.g. labels).
    public init(int64s: [Int64], shape: [Int]) {
        self.init(dtype: .int64, shape: shape, data: ByteCoding.store(int64s))
    }

    /// A float32 array.
    public init(floats: [Float], shape: [Int]) {
        self.init(dtype: .float32, shape: shape, data: ByteCoding.store(floats.map(\.bitPattern)))
    }

    /// A float64 array.
    public init(doubles: [Double], shape: [Int]) {
        self.init(dtype: .float64, shape: shape, data: ByteCoding.store(doubles.map(\.bitPattern)))
    }

    /// The product of the shape (1 for a scalar; 0 if any dimension is 0 or negative).
    public var elementCount: Int {
        shape.contains { $0 < 0 } ? 0 : shape.reduce(1, *)
    }

    /// The elements of a uint8 array; other dtypes throw.
    public func uint8s() throws -> [UInt8] {
        try checkByteCount()
        guard dtype == .uint8 else { throw conversionError("UInt8", accepted: "|u1") }
        return data
    }

    /// The elements as Floats, from float32 (as is), float64 (rounded) or uint8 (exact); int arrays throw.
    public func floats() throws -> [Float] {
        try checkByteCount()
        switch dtype {
        case .float32: return ByteCoding.load(data, as: UInt32.self).map(Float.init(bitPattern:))
        case .float64: return ByteCoding.load(data, as: UInt64.self).map { Float(Double(bitPattern: $0)) }
        case .uint8: return data.map(Float.init)
        default: throw conversionError("Float", accepted: "<f4, <f8 or |u1")
        }
    }

    /// The elements as Doubles, from float64 (as is), float32 or uint8 (exact); int arrays throw.
    public func doubles() throws -> [Double] {
        try checkByteCount()
        switch dtype {
        case .float64: return ByteCoding.load(data, as: UInt64.self).map(Double.init(bitPattern:))
        case .float32: return ByteCoding.load(data, as: UInt32.self).map { Double(Float(bitPattern: $0)) }
        case .uint8: return data.map(Double.init)
        default: throw conversionError("Double", accepted: "<f8, <f4 or |u1")
        }
    }

    /// The elements as Int64s, from int64, int32 or uint8 (all exact); float arrays throw.
    public func int64s() throws -> [Int64] {
        try checkByteCount()
        switch dtype {
        case .int64: return ByteCoding.load(data, as: Int64.self)
        case .int32: return ByteCoding.load(data, as: Int32.self).map(Int64.init)
        case .uint8: return data.map(Int64.init)
        default: throw conversionError("Int64", accepted: "<i8, <i4 or |u1")
        }
    }

    /// Reads and validates a `.npy` file; errors name `url.path`.
    public static func read(_ url: URL) throws -> NpyArray {
        try decode(ByteCoding.readFile(url), source: url.path)
    }

    /// Encodes and writes durably (see `DurableFile.write`).
    public func write(to url: URL) throws {
        try DurableFile.write(encode(source: url.path), to: url)
    }

    /// The `.npy` bytes of the array. Throws when the byte count does not match the shape.
    public func encode() throws -> [UInt8] {
        try encode(source: "npy encoder")
    }

    func encode(source: String) throws -> [UInt8] {
        if let problem = inconsistency { throw InteropError(source, problem) }
        let shapeText: String
        switch shape.count {
        case 0: shapeText = "()"
        case 1: shapeText = "(\(shape[0]),)"
        default: shapeText = "(" + shape.map(String.init).joined(separator: ", ") + ")"
        }
        let dict = "{'descr': '\(dtype.descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        var version: UInt8 = 1
        var prefix = 10
        var padding = (64 - (prefix + dict.utf8.count + 1) % 64) % 64
        if dict.utf8.count + 1 + padding > Int(UInt16.max) {
            version = 2
            prefix = 12
            padding = (64 - (prefix + dict.utf8.count + 1) % 64) % 64
        }
        let header = Array(dict.utf8) + Array(repeating: UInt8(ascii: " "), count: padding) + [0x0a]
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [version, 0]
        if version == 1 {
            out += ByteCoding.store([UInt16(header.count)])
        } else {
            out += ByteCoding.store([UInt32(header.count)])
        }
        out += header
        out += data
        return out
    }

    /// Decodes and validates `.npy` bytes; `source` (a file name) starts every error message.
    public static func decode(_ bytes: [UInt8], source: String) throws -> NpyArray {
        func fail(_ problem: String) -> InteropError { InteropError(source, problem) }
        let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
        guard bytes.count >= 8 else {
            throw fail("file is \(bytes.count) bytes, too short for an NPY header (truncated file?)")
        }
        guard Array(bytes[0..<6]) == magic else { throw fail("not an NPY file (bad magic bytes)") }
        let major = bytes[6], minor = bytes[7]
        guard (1...3).contains(major), minor == 0 else {
            throw fail("unsupported NPY format version \(major).\(minor) (supported: 1.0, 2.0, 3.0)")
        }
        let lengthSize = major == 1 ? 2 : 4
        guard bytes.count >= 8 + lengthSize else { throw fail("NPY header length is truncated") }
        let headerLength = major == 1
            ? Int(ByteCoding.readInteger(bytes, at: 8, as: UInt16.self))
            : Int(ByteCoding.readInteger(bytes, at: 8, as: UInt32.self))
        let headerStart = 8 + lengthSize
        guard headerLength <= bytes.count - headerStart else {
            throw fail("NPY header length \(headerLength) exceeds the \(bytes.count - headerStart) bytes after it (truncated file?)")
        }
        let headerBytes = Array(bytes[headerStart..<(headerStart + headerLength)])
        let headerText: String
        if major == 3 {
            guard let text = String(strictUTF8: headerBytes) else { throw fail("NPY header is not valid UTF-8") }
            headerText = text
        } else {
            headerText = String(headerBytes.map { Character(Unicode.Scalar($0)) })
        }

        let dict: [String: PyLiteral]
        do {
            dict = try PyLiteralParser.parseDict(headerText)
        } catch let error as PyLiteralError {
            throw fail("NPY header is not a valid dictionary: \(error.text)")
        }
        let keys = Set(dict.keys)
        guard keys == ["descr", "fortran_order", "shape"] else {
            throw fail("NPY header has keys \(keys.sorted().map(quoted).joined(separator: ", ")), expected 'descr', 'fortran_order' and 'shape'")
        }
        guard case let .string(descr)? = dict["descr"] else {
            throw fail("NPY 'descr' is not a simple type string (structured dtypes are not supported)")
        }
        guard let dtype = DType(descr: descr) else {
            if descr.hasPrefix(">") {
                throw fail("big-endian dtype \(quoted(descr)) is not supported (save the array as little-endian)")
            }
            throw fail("unsupported dtype \(quoted(descr)) (supported: |u1, <i4, <i8, <f4, <f8)")
        }
        guard case let .bool(fortranOrder)? = dict["fortran_order"] else {
            throw fail("NPY 'fortran_order' is not True or False")
        }
        if fortranOrder {
            throw fail("array is stored in Fortran order (fortran_order: True), which is not supported; save it in C order")
        }
        guard case let .tuple(items)? = dict["shape"] else { throw fail("NPY 'shape' is not a tuple") }
        var shape: [Int] = []
        for item in items {
            guard case let .int(dim) = item, dim >= 0 else {
                throw fail("NPY 'shape' must hold non-negative integers")
            }
            shape.append(dim)
        }
        guard let elements = checkedElementCount(shape),
              case let (needed, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize), !overflow
        else {
            throw fail("NPY shape \(formatShape(shape)) has too many elements")
        }
        let dataStart = headerStart + headerLength
        let available = bytes.count - dataStart
        if available < needed {
            throw fail("array data is truncated: \(available) bytes but shape \(formatShape(shape)) of \(descr) needs \(needed)")
        }
        if available > needed {
            throw fail("\(available - needed) unexpected trailing bytes after the array data (shape \(formatShape(shape)) of \(descr) needs \(needed))")
        }
        return NpyArray(dtype: dtype, shape: shape, data: Array(bytes[dataStart...]))
    }

    private var inconsistency: String? {
        if let dim = shape.first(where: { $0 < 0 }) {
            return "shape \(formatShape(shape)) has a negative dimension \(dim)"
        }
        guard let elements = checkedElementCount(shape),
              case let (needed, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize), !overflow
        else { return "shape \(formatShape(shape)) has too many elements" }
        if needed != data.count {
            return "array has \(data.count) data bytes but shape \(formatShape(shape)) of \(dtype.descr) needs \(needed)"
        }
        return nil
    }

    private func checkByteCount() throws {
        if let problem = inconsistency { throw InteropError("npy \(problem)") }
    }

    private func conversionError(_ target: String, accepted: String) -> InteropError {
        InteropError("npy array of dtype \(dtype.descr) cannot be read as \(target) (needs \(accepted))")
    }
}

/// A Python literal in an NPY header.
enum PyLiteral: Equatable {
    case string(String)
    case int(Int)
    case bool(Bool)
    case none
    case tuple([PyLiteral])
    case list([PyLiteral])
    case dict([String: PyLiteral])
}

/// Why an NPY header could not be parsed.
struct PyLiteralError: Error {
    let text: String
}

/// Parses the Python literal subset NumPy writes in headers: dicts with string keys, strings, integers
/// (an old `L` suffix allowed), True/False/None, tuples and lists.
struct PyLiteralParser {
    private let chars: [Character]
    private var index = 0

    private init(_ text: String) { chars = Array(text) }

    static func parseDict(_ text: String) throws -> [String: PyLiteral] {
        var parser = PyLiteralParser(text)
        parser.skipSpace()
        guard case let .dict(dict) = try parser.parseValue(depth: 0) else {
            throw PyLiteralError(text: "the header is not a dictionary")
        }
        parser.skipSpace()
        guard parser.index == parser.chars.count else {
            throw PyLiteralError(text: "unexpected text after the dictionary at character \(parser.index)")
        }
        return dict
    }

    private mutating func skipSpace() {
        while index < chars.count, chars[index].isWhitespace { index += 1 }
    }

    private func error(_ text: String) -> PyLiteralError {
        PyLiteralError(text: "\(text) at character \(index)")
    }

    private mutating func parseValue(depth: Int) throws -> PyLiteral {
        guard depth < 16 else { throw error("nesting too deep") }
        guard index < chars.count else { throw error("unexpected end of header") }
        let c = chars[index]
        switch c {
        case "{": return try parseDictBody(depth: depth + 1)
        case "(": return .tuple(try parseSequence(close: ")", depth: depth + 1))
        case "[": return .list(try parseSequence(close: "]", depth: depth + 1))
        case "'", "\"": return .string(try parseString())
        case "-", "+", "0"..."9": return .int(try parseInt())
        default:
            if c.isLetter {
                var word = ""
                while index < chars.count, chars[index].isLetter || chars[index] == "_" {
                    word.append(chars[index])
                    index += 1
                }
                switch word {
                case "True": return .bool(true)
                case "False": return .bool(false)
                case "None": return .none
                default: throw error("unexpected name \(quoted(word))")
                }
            }
            throw error("unexpected character \(quoted(String(c)))")
        }
    }

    private mutating func parseDictBody(depth: Int) throws -> PyLiteral {
        index += 1
        var dict: [String: PyLiteral] = [:]
        while true {
            skipSpace()
            guard index < chars.count else { throw error("unterminated dictionary") }
            if chars[index] == "}" { index += 1; return .dict(dict) }
            guard case let .string(key) = try parseValue(depth: depth) else {
                throw error("dictionary key is not a string")
            }
            skipSpace()
            guard index < chars.count, chars[index] == ":" else { throw error("expected ':'") }
            index += 1
            skipSpace()
            let value = try parseValue(depth: depth)
            if dict.updateValue(value, forKey: key) != nil { throw error("duplicate key \(quoted(key))") }
            skipSpace()
            guard index < chars.count else { throw error("unterminated dictionary") }
            if chars[index] == "," { index += 1; continue }
            if chars[index] == "}" { index += 1; return .dict(dict) }
            throw error("expected ',' or '}'")
        }
    }

    private mutating func parseSequence(close: Character, depth: Int) throws -> [PyLiteral] {
        index += 1
        var items: [PyLiteral] = []
        while true {
            skipSpace()
            guard index < chars.count else { throw error("unterminated tuple or list") }
            if chars[index] == close { index += 1; return items }
            items.append(try parseValue(depth: depth))
            skipSpace()
            guard index < chars.count else { throw error("unterminated tuple or list") }
            if chars[index] == "," { index += 1; continue }
            if chars[index] == close { index += 1; return items }
            throw error("expected ',' or '\(close)'")
        }
    }

    private mutating func parseString() throws -> String {
        let quote = chars[index]
        index += 1
        var text = ""
        while index < chars.count {
            let c = chars[index]
            index += 1
            if c == quote { return text }
            if c == "\\" {
                guard index < chars.count else { break }
                text.append(chars[index])
                index += 1
            } else {
                text.append(c)
            }
        }
        throw error("unterminated string")
    }

    private mutating func parseInt() throws -> Int {
        var text = ""
        if chars[index] == "-" || chars[index] == "+" {
            text.append(chars[index])
            index += 1
        }
        while index < chars.count, chars[index].isASCII, chars[index].isNumber {
            text.append(chars[index])
            index += 1
        }
        if index < chars.count, chars[index] == "L" || chars[index] == "l" { index += 1 }
        guard let value = Int(text) else { throw error("invalid integer \(quoted(text))") }
        return value
    }
}
