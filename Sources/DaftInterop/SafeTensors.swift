import Foundation

/// The element types of the safetensors format (the names used in the header's `dtype` field).
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .F64, .I64: return 8
        case .F32, .I32: return 4
        case .F16, .BF16, .I16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }
}

/// One tensor of a safetensors file: element type, shape and raw little-endian element bytes (row-major).
public struct SafeTensor: Equatable, Sendable {
    /// Element type.
    public var dtype: SafeTensorsDType
    /// Dimensions, outermost first; `[]` is a scalar (one element).
    public var shape: [Int]
    /// Raw little-endian element bytes, `elementCount * dtype.byteSize` of them.
    public var data: [UInt8]

    /// Wraps raw bytes. The byte count is checked against the shape when the tensor is encoded.
    public init(dtype: SafeTensorsDType, shape: [Int], data: [UInt8]) {
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }

    /// An F32 tensor. `floats.count` must equal the shape's element count (checked on encode).
    public init(floats: [Float], shape: [Int]) {
        self.init(dtype: .F32, shape: shape, data: ByteCoding.store(floats.map(\.bitPattern)))
    }

    /// An F64 tensor.
    public init(doubles: [Double], shape: [Int]) {
        self.init(dtype: .F64, shape: shape, data: ByteCoding.store(doubles.map(\.bitPattern)))
    }

    /// An I64 tensor (e.g. BatchNorm's `num_batches_tracked`).
    public init(int64s: [Int64], shape: [Int]) {
        self.init(dtype: .I64, shape: shape, data: ByteCoding.store(int64s))
    }

    /// An I32 tensor.
    public init(int32s: [Int32], shape: [Int]) {
        self.init(dtype: .I32, shape: shape, data: ByteCoding.store(int32s))
    }

    /// A U8 tensor.
    public init(uint8s: [UInt8], shape: [Int]) {
        self.init(dtype: .U8, shape: shape, data: uint8s)
    }

    /// The product of the shape (1 for a scalar; 0 if any dimension is 0 or negative).
    public var elementCount: Int {
        shape.contains { $0 < 0 } ? 0 : shape.reduce(1, *)
    }

    /// The elements as Floats. F32 is returned as is; F16 and BF16 are widened exactly; F64 is rounded to
    /// the nearest Float. Integer and BOOL tensors throw an `InteropError`.
    public func floats() throws -> [Float] {
        try checkByteCount()
        switch dtype {
        case .F32: return ByteCoding.load(data, as: UInt32.self).map(Float.init(bitPattern:))
        case .F64: return ByteCoding.load(data, as: UInt64.self).map { Float(Double(bitPattern: $0)) }
        case .F16: return ByteCoding.load(data, as: UInt16.self).map(ByteCoding.halfToFloat)
        case .BF16: return ByteCoding.load(data, as: UInt16.self).map(ByteCoding.bfloat16ToFloat)
        default: throw conversionError("Float", accepted: "F32, F64, F16 or BF16")
        }
    }

    /// The elements as Doubles, from F64, F32, F16 or BF16 (all exact). Other dtypes throw.
    public func doubles() throws -> [Double] {
        try checkByteCount()
        switch dtype {
        case .F64: return ByteCoding.load(data, as: UInt64.self).map(Double.init(bitPattern:))
        case .F32, .F16, .BF16: return try floats().map(Double.init)
        default: throw conversionError("Double", accepted: "F64, F32, F16 or BF16")
        }
    }

    /// The elements as Int64s, from I64, I32, I16, I8 or U8 (all exact). Float and BOOL tensors throw.
    public func int64s() throws -> [Int64] {
        try checkByteCount()
        switch dtype {
        case .I64: return ByteCoding.load(data, as: Int64.self)
        case .I32: return ByteCoding.load(data, as: Int32.self).map(Int64.init)
        case .I16: return ByteCoding.load(data, as: Int16.self).map(Int64.init)
        case .I8: return data.map { Int64(Int8(bitPattern: $0)) }
        case .U8: return data.map(Int64.init)
        default: throw conversionError("Int64", accepted: "I64, I32, I16, I8 or U8")
        }
    }

    /// Bytes the shape and dtype need, or nil when the shape is invalid or overflows.
    var expectedByteCount: Int? {
        guard let count = checkedElementCount(shape) else { return nil }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
        return overflow ? nil : bytes
    }

    /// Why the tensor is inconsistent (as the tail of an error message), or nil when it is fine.
    var inconsistency: String? {
        if let dim = shape.first(where: { $0 < 0 }) {
            return "shape \(formatShape(shape)) has a negative dimension \(dim)"
        }
        guard let expected = expectedByteCount else {
            return "shape \(formatShape(shape)) has too many elements"
        }
        if expected != data.count {
            return "has \(data.count) data bytes but shape \(formatShape(shape)) of \(dtype.rawValue) needs \(expected)"
        }
        return nil
    }

    private func checkByteCount() throws {
        if let problem = inconsistency { throw InteropError("tensor \(problem)") }
    }

    private func conversionError(_ target: String, accepted: String) -> InteropError {
        InteropError("tensor of dtype \(dtype.rawValue) cannot be read as \(target) (needs \(accepted))")
    }
}

/// A safetensors file in memory: named tensors plus the string-to-string `__metadata__` map.
///
/// Format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON describing each tensor
/// (`dtype`, `shape`, `data_offsets` relative to the data buffer), then the data buffer. The reader is
/// strict and never trusts the file; the writer pads the header with spaces to a multiple of 8 and lays
/// the tensors out contiguously in name order, so `safetensors.torch.load_file` reads it.
public struct SafeTensorsFile: Equatable, Sendable {
    /// Tensors by name (torchvision `state_dict()` names for model weights).
    public var tensors: [String: SafeTensor]
    /// The `__metadata__` map (written only when non-empty).
    public var metadata: [String: String]

    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderLength = 100_000_000

    /// Creates a file from tensors and metadata.
    public init(tensors: [String: SafeTensor] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// Reads and validates a file; errors name `url.path`.
    public static func read(_ url: URL) throws -> SafeTensorsFile {
        try decode(ByteCoding.readFile(url), source: url.path)
    }

    /// The tensor named `name`; the error names the missing tensor, `source` and some names the file has.
    public func tensor(_ name: String, source: String) throws -> SafeTensor {
        if let tensor = tensors[name] { return tensor }
        let names = tensors.keys.sorted()
        var known = names.prefix(8).map(quoted).joined(separator: ", ")
        if names.count > 8 { known += ", ..." }
        let holds = names.isEmpty ? "the file holds no tensors" : "the file holds \(names.count) tensors: \(known)"
        throw InteropError(source, "no tensor named \(quoted(name)) (\(holds))")
    }

    /// Encodes to safetensors bytes. Throws when a tensor's byte count does not match its shape or a
    /// tensor is named `__metadata__`.
    public func encode() throws -> [UInt8] {
        try encode(source: "safetensors encoder")
    }

    /// Encodes and writes durably (temporary file in the same folder, fsync, rename, fsync folder).
    public func write(to url: URL) throws {
        try DurableFile.write(encode(source: url.path), to: url)
    }

    func encode(source: String) throws -> [UInt8] {
        var entries: [(key: String, value: JSONValue)] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { (key: $0, value: JSONValue.string(metadata[$0]!)) }
            entries.append((key: "__metadata__", value: .object(pairs)))
        }
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let tensor = tensors[name]!
            if name == "__metadata__" {
                throw InteropError(source, "a tensor cannot be named '__metadata__'")
            }
            if let problem = tensor.inconsistency {
                throw InteropError(source, "tensor \(quoted(name)) \(problem)")
            }
            let end = offset + tensor.data.count
            entries.append((key: name, value: .object([
                (key: "dtype", value: .string(tensor.dtype.rawValue)),
                (key: "shape", value: .array(tensor.shape.map { .number(String($0)) })),
                (key: "data_offsets", value: .array([.number(String(offset)), .number(String(end))])),
            ])))
            offset = end
        }
        var header = Array(JSONValue.object(entries).serialized.utf8)
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8))
        if header.count > SafeTensorsFile.maxHeaderLength {
            throw InteropError(source, "header would be \(header.count) bytes, over the \(SafeTensorsFile.maxHeaderLength)-byte limit")
        }
        var out = [UInt8]()
        out.reserveCapacity(8 + header.count + offset)
        out.append(contentsOf: ByteCoding.store([UInt64(header.count)]))
        out.append(contentsOf: header)
        for name in names { out.append(contentsOf: tensors[name]!.data) }
        return out
    }

    /// Decodes and validates safetensors bytes; `source` (a file name) starts every error message.
    ///
    /// Rejected: files shorter than 8 bytes, header lengths over 100 MB or past the end of the file,
    /// headers that are not UTF-8 or not a JSON object, duplicate keys (the reference implementation
    /// silently keeps one), entries that are not objects, missing fields (extra fields are ignored, as
    /// the reference implementation does), unknown dtypes, shapes that are not arrays of non-negative integers,
    /// `data_offsets` that are not two non-negative integers, begin > end, ends past the data buffer,
    /// byte lengths that differ from product(shape) × dtype size, overlapping tensors, gaps between
    /// tensors or unused bytes at the end of the buffer (like the reference implementation, the tensors
    /// must cover the buffer exactly), and `__metadata__` that is not an object of strings.
    public static func decode(_ bytes: [UInt8], source: String) throws -> SafeTensorsFile {
        func fail(_ problem: String) -> InteropError { InteropError(source, problem) }

        guard bytes.count >= 8 else {
            throw fail("file is \(bytes.count) bytes, too short for the 8-byte header length (truncated file?)")
        }
        let headerLength = ByteCoding.readInteger(bytes, at: 0, as: UInt64.self)
        if headerLength > UInt64(maxHeaderLength) {
            throw fail("header length \(headerLength) is absurd (over the \(maxHeaderLength)-byte limit)")
        }
        let available = bytes.count - 8
        if headerLength > UInt64(available) {
            throw fail("header length \(headerLength) exceeds the \(available) bytes after the length field (truncated file?)")
        }
        let headerEnd = 8 + Int(headerLength)
        let headerBytes = Array(bytes[8..<headerEnd])
        guard String(strictUTF8: headerBytes) != nil else { throw fail("header is not valid UTF-8") }
        guard headerBytes.first(where: { ![0x20, 0x09, 0x0a, 0x0d].contains($0) }) == UInt8(ascii: "{") else {
            throw fail("header is not a JSON object (it must start with '{')")
        }
        let root: JSONValue
        do {
            root = try JSONValue.parse(headerBytes)
        } catch let error as JSONParseError {
            throw fail("header is not valid JSON: \(error.text)")
        }
        guard case let .object(entries) = root else { throw fail("header is not a JSON object") }

        let bufferSize = bytes.count - headerEnd
        var metadata: [String: String] = [:]
        var layout: [(name: String, begin: Int, end: Int)] = []
        var tensors: [String: SafeTensor] = [:]

        for (name, value) in entries {
            if name == "__metadata__" {
                guard case let .object(pairs) = value else {
                    throw fail("__metadata__ is \(value.kindDescription), not an object of strings")
                }
                for (key, item) in pairs {
                    guard case let .string(text) = item else {
                        throw fail("metadata value for key \(quoted(key)) is \(item.kindDescription), not a string")
                    }
                    metadata[key] = text
                }
                continue
            }
            let what = "tensor \(quoted(name))"
            guard case let .object(fields) = value else {
                throw fail("\(what) entry is \(value.kindDescription), not an object")
            }
            var dtypeValue: JSONValue?
            var shapeValue: JSONValue?
            var offsetsValue: JSONValue?
            for (key, item) in fields {
                switch key {
                case "dtype": dtypeValue = item
                case "shape": shapeValue = item
                case "data_offsets": offsetsValue = item
                default: continue  // like the reference implementation, extra fields are ignored
                }
            }
            guard let dtypeValue else { throw fail("\(what) has no 'dtype'") }
            guard let shapeValue else { throw fail("\(what) has no 'shape'") }
            guard let offsetsValue else { throw fail("\(what) has no 'data_offsets'") }

            guard case let .string(dtypeName) = dtypeValue else {
                throw fail("\(what) dtype is \(dtypeValue.kindDescription), not a string")
            }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                let known = SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")
                throw fail("\(what) has unknown dtype \(quoted(dtypeName)) (supported: \(known))")
            }

            guard case let .array(dims) = shapeValue else {
                throw fail("\(what) shape is \(shapeValue.kindDescription), not an array of integers")
            }
            var shape: [Int] = []
            for dim in dims {
                guard let size = dim.intValue else {
                    throw fail("\(what) shape has \(dim.kindDescription), not an integer dimension")
                }
                shape.append(size)
            }
            if let negative = shape.first(where: { $0 < 0 }) {
                throw fail("\(what) shape \(formatShape(shape)) has a negative dimension \(negative)")
            }

            guard case let .array(offsetItems) = offsetsValue, offsetItems.count == 2,
                  let begin = offsetItems[0].intValue, let end = offsetItems[1].intValue,
                  begin >= 0, end >= 0 else {
                throw fail("\(what) data_offsets \(offsetsValue.serialized.prefix(80)) are not two non-negative integers")
            }
            if begin > end {
                throw fail("\(what) data offsets [\(begin), \(end)] are out of order")
            }
            if end > bufferSize {
                throw fail("\(what) data offsets [\(begin), \(end)] extend past the end of the \(bufferSize)-byte data buffer (truncated file?)")
            }
            guard let elements = checkedElementCount(shape),
                  case let (needed, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize), !overflow
            else {
                throw fail("\(what) shape \(formatShape(shape)) has too many elements")
            }
            if end - begin != needed {
                throw fail("\(what) data offsets [\(begin), \(end)] hold \(end - begin) bytes but shape \(formatShape(shape)) of \(dtype.rawValue) needs \(needed)")
            }
            layout.append((name: name, begin: begin, end: end))
            tensors[name] = SafeTensor(dtype: dtype, shape: shape, data: Array(bytes[(headerEnd + begin)..<(headerEnd + end)]))
        }

        layout.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var covered = 0
        var previous: (name: String, begin: Int, end: Int)?
        for entry in layout {
            if entry.begin < covered, let previous {
                throw fail("tensor \(quoted(entry.name)) data offsets [\(entry.begin), \(entry.end)] overlap tensor \(quoted(previous.name)) [\(previous.begin), \(previous.end)]")
            }
            if entry.begin > covered {
                throw fail("data buffer has a hole: bytes [\(covered), \(entry.begin)) before tensor \(quoted(entry.name)) belong to no tensor")
            }
            covered = entry.end
            previous = entry
        }
        if covered != bufferSize {
            throw fail("data buffer has \(bufferSize - covered) unused bytes after the last tensor (tensors cover [0, \(covered)), the buffer is \(bufferSize) bytes)")
        }
        return SafeTensorsFile(tensors: tensors, metadata: metadata)
    }
}
