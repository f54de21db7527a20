@testable import DaftInterop
import Foundation
import XCTest

final class NpyTests: XCTestCase {
    func testRoundTripEveryDType() throws {
        let folder = try makeTemporaryFolder(self)
        let arrays = [
            NpyArray(uint8s: Array(0..<24), shape: [2, 3, 2, 2]),
            NpyArray(int32s: [Int32.min, -1, Int32.max], shape: [3]),
            NpyArray(int64s: [Int64.min, 0, Int64.max, 5], shape: [2, 2]),
            NpyArray(floats: [0.5, -1, .infinity, 1e-30, 0, 7], shape: [3, 2]),
            NpyArray(doubles: [0.1, -1e300], shape: [2]),
            NpyArray(floats: [3], shape: []),
            NpyArray(uint8s: [], shape: [0, 5]),
        ]
        for (index, array) in arrays.enumerated() {
            let url = folder.appendingPathComponent("a\(index).npy")
            try array.write(to: url)
            XCTAssertEqual(try NpyArray.read(url), array)
            let bytes = try array.encode()
            XCTAssertEqual(Array(bytes[0..<8]), [0x93] + Array("NUMPY".utf8) + [1, 0])
            let dataStart = 10 + Int(bytes[8]) + Int(bytes[9]) * 256
            XCTAssertEqual(dataStart % 64, 0)
            XCTAssertEqual(bytes[dataStart - 1], 0x0a)
            XCTAssertEqual(Array(bytes[dataStart...]), array.data)
        }
    }

    func testAccessors() throws {
        let u8 = NpyArray(uint8s: [0, 7, 255], shape: [3])
        XCTAssertEqual(try u8.uint8s(), [0, 7, 255])
        XCTAssertEqual(try u8.floats(), [0, 7, 255])
        XCTAssertEqual(try u8.int64s(), [0, 7, 255])
        XCTAssertEqual(try NpyArray(int32s: [-3], shape: [1]).int64s(), [-3])
        XCTAssertEqual(try NpyArray(doubles: [0.1], shape: [1]).floats(), [Float(0.1)])
        XCTAssertEqual(try NpyArray(doubles: [0.1, 1e300, -.infinity], shape: [3]).doubles(), [0.1, 1e300, -.infinity])
        XCTAssertEqual(try NpyArray(floats: [0.1, .infinity], shape: [2]).doubles(), [Double(Float(0.1)), .infinity])
        XCTAssertEqual(try u8.doubles(), [0, 7, 255])
        assertInteropError(["<i4", "Double"]) { _ = try NpyArray(int32s: [1], shape: [1]).doubles() }
        XCTAssertEqual(NpyArray(floats: [], shape: [2, 0]).elementCount, 0)
        assertInteropError(["<f4", "UInt8"]) { _ = try NpyArray(floats: [1], shape: [1]).uint8s() }
        assertInteropError(["<f8", "Int64"]) { _ = try NpyArray(doubles: [1], shape: [1]).int64s() }
        assertInteropError(["<i8", "Float"]) { _ = try NpyArray(int64s: [1], shape: [1]).floats() }
        assertInteropError(["2 data bytes", "needs 3"]) { _ = try NpyArray(uint8s: [1, 2], shape: [3]).encode() }
    }

    func testReadsNumpyWrittenFiles() throws {
        let images = try NpyArray.read(InteropFixtures.url("images_u8.npy"))
        XCTAssertEqual(images.dtype, .uint8)
        XCTAssertEqual(images.shape, [2, 1, 2, 3])
        XCTAssertEqual(try images.uint8s(), (0..<12).map { UInt8($0 * 20) })

        let labels = try NpyArray.read(InteropFixtures.url("labels_i64.npy"))
        XCTAssertEqual(labels.dtype, .int64)
        XCTAssertEqual(labels.shape, [5])
        XCTAssertEqual(try labels.int64s(), [0, -1, 9, 1 << 40, -(1 << 62)])

        let matrix = try NpyArray.read(InteropFixtures.url("matrix_f32.npy"))
        XCTAssertEqual(matrix.dtype, .float32)
        XCTAssertEqual(matrix.shape, [2, 3])
        XCTAssertEqual(try matrix.floats(), [0.5, -1.25, 3, 0.1, -0.0, 1e10])

        let f64 = try NpyArray.read(InteropFixtures.url("values_f64.npy"))
        XCTAssertEqual(f64.dtype, .float64)
        XCTAssertEqual(try f64.floats(), [Float(0.1), -2.5])
        let i32 = try NpyArray.read(InteropFixtures.url("values_i32.npy"))
        XCTAssertEqual(i32.dtype, .int32)
        XCTAssertEqual(try i32.int64s(), [-7, Int64(Int32.max)])
    }

    /// Pinned writer output, checked by hand to load in `numpy.load` (`make_interop_fixtures.py --check`).
    func testWriterMatchesGoldenFiles() throws {
        let arrays = [
            ("swift_written_u8.npy", NpyArray(uint8s: Array(0..<24), shape: [2, 3, 2, 2])),
            ("swift_written_i64.npy", NpyArray(int64s: [3, -4, 1 << 40], shape: [3])),
            ("swift_written_f32.npy", NpyArray(floats: [0.5, -1, 1e-3, 7], shape: [2, 2])),
        ]
        for (name, array) in arrays {
            let url = InteropFixtures.url(name)
            if InteropFixtures.recordGolden { try array.write(to: url) }
            XCTAssertEqual(try ByteCoding.readFile(url), try array.encode(), name)
        }
    }

    func testRejectsFortranOrder() {
        let url = InteropFixtures.url("fortran_f32.npy")
        assertInteropError([url.path, "Fortran order", "not supported"]) { _ = try NpyArray.read(url) }
    }

    func testRejectsBigEndian() {
        let url = InteropFixtures.url("bigendian_f4.npy")
        assertInteropError([url.path, "big-endian dtype '>f4'"]) { _ = try NpyArray.read(url) }
    }

    func npy(_ dict: String, version: UInt8 = 1, data: [UInt8]) -> [UInt8] {
        let header = Array((dict + "\n").utf8)
        let length: [UInt8] = version == 1
            ? [UInt8(header.count & 0xff), UInt8(header.count >> 8)]
            : [UInt8(header.count & 0xff), UInt8(header.count >> 8), 0, 0]
        return [0x93] + Array("NUMPY".utf8) + [version, 0] + length + header + data
    }

    func testReadsVersion2And3Headers() throws {
        for version: UInt8 in [2, 3] {
            let bytes = npy("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", version: version,
                            data: ByteCoding.store([Int64(5), -6]))
            let array = try NpyArray.decode(bytes, source: "v\(version).npy")
            XCTAssertEqual(try array.int64s(), [5, -6])
        }
        let oldStyle = npy("{\"shape\": (2L, 1L), \"fortran_order\": False, \"descr\": \"|u1\"}", data: [1, 2])
        XCTAssertEqual(try NpyArray.decode(oldStyle, source: "old.npy").shape, [2, 1])
    }

    func testRejectsTruncatedData() {
        let bytes = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data: Array(repeating: 0, count: 20))
        assertInteropError(["x.npy: ", "truncated", "20 bytes", "needs 24"]) { _ = try NpyArray.decode(bytes, source: "x.npy") }
    }

    func testRejectsTrailingData() {
        let bytes = npy("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", data: [1, 2, 3])
        assertInteropError(["x.npy: ", "1 unexpected trailing bytes"]) { _ = try NpyArray.decode(bytes, source: "x.npy") }
    }

    func testRejectsTruncatedHeader() throws {
        let full = npy("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", data: [1, 2])
        assertInteropError(["x.npy: ", "header length", "truncated"]) { _ = try NpyArray.decode(Array(full[0..<30]), source: "x.npy") }
        assertInteropError(["x.npy: ", "too short"]) { _ = try NpyArray.decode(Array(full[0..<5]), source: "x.npy") }
        let folder = try makeTemporaryFolder(self)
        let url = folder.appendingPathComponent("cut.npy")
        try Data(full[0..<9]).write(to: url)
        assertInteropError([url.path, "truncated"]) { _ = try NpyArray.read(url) }
    }

    func testRejectsBadMagicAndVersion() {
        assertInteropError(["x.npy: ", "bad magic"]) { _ = try NpyArray.decode(Array("PK\u{3}\u{4}xxxxxxxx".utf8), source: "x.npy") }
        let v4 = npy("{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }", version: 4, data: [1])
        assertInteropError(["x.npy: ", "unsupported NPY format version 4.0"]) { _ = try NpyArray.decode(v4, source: "x.npy") }
    }

    func testRejectsUnsupportedDTypesAndBadHeaders() {
        let cases: [(String, String)] = [
            ("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", "unsupported dtype '<c8'"),
            ("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,), }", "structured dtypes"),
            ("{'descr': '<f4', 'fortran_order': False, }", "expected 'descr', 'fortran_order' and 'shape'"),
            ("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", "'fortran_order' is not True or False"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", "non-negative integers"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': 3, }", "'shape' is not a tuple"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,) ", "not a valid dictionary"),
            ("['descr']", "not a valid dictionary"),
        ]
        for (dict, fragment) in cases {
            let bytes = npy(dict, data: [0, 0, 0, 0])
            assertInteropError(["bad.npy: ", fragment]) { _ = try NpyArray.decode(bytes, source: "bad.npy") }
        }
    }

    func testReadMissingFileNamesPath() {
        let url = URL(fileURLWithPath: "/nonexistent-daft/x.npy")
        assertInteropError(["/nonexistent-daft/x.npy: ", "cannot open"]) { _ = try NpyArray.read(url) }
    }
}
