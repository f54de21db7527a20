import Foundation

/// TensorBoard scalar event files in the real format, written by hand in a few explicit lines:
/// TFRecord framing (`uint64 length`, masked CRC32C of the length, the bytes, masked CRC32C of the bytes) around
/// `tensorflow.Event` protobufs (`wall_time` = 1, `step` = 2, `file_version` = 3, `summary` = 5) whose
/// `Summary.Value`s carry `tag` = 1 and `simple_value` = 2. TensorBoard's own `EventAccumulator` reads them
/// (TensorBoardEventTests).
public enum TensorBoardEvents {
    /// One scalar: a tag (e.g. `train/loss`) at a step.
    public struct Scalar: Equatable {
        public var tag: String
        public var step: Int
        public var value: Float
        public var wallTime: Double
        public init(tag: String, step: Int, value: Float, wallTime: Double) {
            self.tag = tag; self.step = step; self.value = value; self.wallTime = wallTime
        }
    }

    /// The bytes of an event file holding `scalars`: the `brain.Event:2` header event, then one Event per scalar.
    public static func file(_ scalars: [Scalar], createdAt wallTime: Double) -> [UInt8] {
        header(createdAt: wallTime) + events(scalars)
    }

    /// The file's first record: an Event with `file_version = "brain.Event:2"`.
    public static func header(createdAt wallTime: Double) -> [UInt8] {
        var header = Protobuf()
        header.double(1, wallTime)
        header.string(3, "brain.Event:2")
        return record(header.bytes)
    }

    /// One Event record per scalar (`Summary { value { tag, simple_value } }` at its step).
    public static func events(_ scalars: [Scalar]) -> [UInt8] {
        var out: [UInt8] = []
        for s in scalars {
            var value = Protobuf()
            value.string(1, s.tag)
            value.float(2, s.value)
            var summary = Protobuf()
            summary.message(1, value.bytes)
            var event = Protobuf()
            event.double(1, s.wallTime)
            event.varint(2, UInt64(bitPattern: Int64(s.step)))
            event.message(5, summary.bytes)
            out += record(event.bytes)
        }
        return out
    }

    /// One TFRecord: length, masked CRC32C of the length, data, masked CRC32C of the data (all little-endian).
    public static func record(_ data: [UInt8]) -> [UInt8] {
        var length: [UInt8] = []
        var n = UInt64(data.count)
        for _ in 0..<8 { length.append(UInt8(n & 0xFF)); n >>= 8 }
        return length + littleEndian(maskedCRC32C(length)) + data + littleEndian(maskedCRC32C(data))
    }

    /// TFRecord's masked CRC32C: `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
    public static func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
        let crc = crc32c(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    /// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table driven.
    public static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = crcTable[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    static let crcTable: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func littleEndian(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xFF) } }

    /// The protobuf wire format, only the four field kinds the Event/Summary messages need.
    struct Protobuf {
        var bytes: [UInt8] = []
        mutating func key(_ field: Int, _ wireType: Int) { varintRaw(UInt64(field << 3 | wireType)) }
        mutating func varintRaw(_ v: UInt64) {
            var v = v
            while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            bytes.append(UInt8(v))
        }
        mutating func varint(_ field: Int, _ v: UInt64) { key(field, 0); varintRaw(v) }
        mutating func double(_ field: Int, _ v: Double) {
            key(field, 1)
            var b = v.bitPattern
            for _ in 0..<8 { bytes.append(UInt8(b & 0xFF)); b >>= 8 }
        }
        mutating func float(_ field: Int, _ v: Float) { key(field, 5); bytes += littleEndian(v.bitPattern) }
        mutating func message(_ field: Int, _ m: [UInt8]) { key(field, 2); varintRaw(UInt64(m.count)); bytes += m }
        mutating func string(_ field: Int, _ s: String) { message(field, Array(s.utf8)) }
    }
}
