import DaftInterop
import Foundation
import XCTest

/// One test per kind of malformed safetensors file: each error is one line naming the file, the tensor
/// when there is one, and the problem.
final class SafeTensorsMalformedTests: XCTestCase {
    let source = "model.safetensors"

    /// A valid two-tensor layout: a = F32[2] at [0, 8), b = I64[1] at [8, 16).
    let validHeader = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}"#

    func decode(_ bytes: [UInt8]) throws { _ = try SafeTensorsFile.decode(bytes, source: source) }

    func header(_ a: String, _ b: String = #"{"dtype":"I64","shape":[1],"data_offsets":[8,16]}"#,
                extra: String = "") -> String {
        #"{"a":\#(a),"b":\#(b)\#(extra)}"#
    }

    func testValidBaselineDecodes() throws {
        let file = try SafeTensorsFile.decode(rawSafetensors(validHeader, Array(repeating: 0, count: 16)), source: source)
        XCTAssertEqual(file.tensors.count, 2)
    }

    func testFileShorterThanLengthField() {
        assertInteropError([source, "5 bytes", "too short", "truncated"]) { try decode([1, 2, 3, 4, 5]) }
        assertInteropError([source, "0 bytes"]) { try decode([]) }
    }

    func testHeaderLengthBeyondFileSize() {
        var bytes = rawSafetensors(validHeader, Array(repeating: 0, count: 16))
        bytes.replaceSubrange(0..<8, with: le64(5000))
        assertInteropError([source, "header length 5000 exceeds", "truncated"]) { try decode(bytes) }
    }

    func testAbsurdHeaderLength() {
        let bytes = le64(200_000_000) + Array("{}".utf8)
        assertInteropError([source, "header length 200000000 is absurd"]) { try decode(bytes) }
        let huge = le64(UInt64.max) + Array("{}".utf8)
        assertInteropError([source, "header length \(UInt64.max) is absurd"]) { try decode(huge) }
    }

    func testTruncatedDataBuffer() {
        let bytes = rawSafetensors(validHeader, Array(repeating: 0, count: 12))
        assertInteropError([source, "tensor 'b'", "[8, 16]", "past the end of the 12-byte data buffer", "truncated"]) {
            try decode(bytes)
        }
    }

    func testInvalidJSON() {
        let bytes = rawSafetensors(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, Array(repeating: 0, count: 8))
        assertInteropError([source, "header is not valid JSON", "end of text"]) { try decode(bytes) }
        let trailingComma = rawSafetensors(#"{"a":1,}"#, [])
        assertInteropError([source, "header is not valid JSON"]) { try decode(trailingComma) }
        let garbageAfter = rawSafetensors(#"{} x"#, [])
        assertInteropError([source, "header is not valid JSON", "after the top-level value"]) { try decode(garbageAfter) }
        let duplicate = rawSafetensors(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#, [])
        assertInteropError([source, "duplicate key 'a'"]) { try decode(duplicate) }
        let deep = rawSafetensors("{\"a\":" + String(repeating: "[", count: 10_000) + "}", [])
        assertInteropError([source, "nesting deeper"]) { try decode(deep) }
    }

    func testHeaderNotUTF8() {
        let bytes = le64(4) + [0x7b, 0xff, 0xfe, 0x7d]
        assertInteropError([source, "not valid UTF-8"]) { try decode(bytes) }
    }

    func testHeaderNotAnObject() {
        assertInteropError([source, "not a JSON object"]) { try decode(rawSafetensors("[1, 2, 3]", [])) }
        assertInteropError([source, "not a JSON object"]) { try decode(rawSafetensors(#""text""#, [])) }
        assertInteropError([source, "tensor 'a'", "not an object"]) { try decode(rawSafetensors(#"{"a": 5}"#, [])) }
    }

    func testUnknownDType() {
        let bytes = rawSafetensors(header(#"{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,8]}"#), Array(repeating: 0, count: 16))
        assertInteropError([source, "tensor 'a'", "unknown dtype 'F8_E4M3'"]) { try decode(bytes) }
        let notString = rawSafetensors(header(#"{"dtype":4,"shape":[2],"data_offsets":[0,8]}"#), Array(repeating: 0, count: 16))
        assertInteropError([source, "tensor 'a'", "dtype is the number 4"]) { try decode(notString) }
    }

    func testMissingFields() throws {
        let missing = rawSafetensors(header(#"{"dtype":"F32","data_offsets":[0,8]}"#), Array(repeating: 0, count: 16))
        assertInteropError([source, "tensor 'a'", "no 'shape'"]) { try decode(missing) }
        // Extra fields and leading whitespace are accepted, as by the reference implementation.
        let extra = rawSafetensors(" " + header(#"{"dtype":"F32","shape":[2],"data_offsets":[0,8],"note":[1]}"#), Array(repeating: 0, count: 16))
        XCTAssertEqual(try SafeTensorsFile.decode(extra, source: source).tensors["a"]?.shape, [2])
    }

    func testNegativeOrInvalidShape() {
        let negative = rawSafetensors(header(#"{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}"#), Array(repeating: 0, count: 16))
        assertInteropError([source, "tensor 'a'", "shape [2, -1] has a negative dimension -1"]) { try decode(negative) }
        let fractional = rawSafetensors(header(#"{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}"#), Array(repeating: 0, count: 16))
        assertInteropError([source, "tensor 'a'", "shape has the number 2.5"]) { try decode(fractional) }
        let notArray = rawSafetensors(header(#"{"dtype":"F32","shape":"2","data_offsets":[0,8]}"#), Array(repeating: 0, count: 16))
        assertInteropError([source, "tensor 'a'", "shape is a string"]) { try decode(notArray) }
        let overflow = rawSafetensors(header(#"{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}"#), Array(repeating: 0, count: 16))
        assertInteropError([source, "tensor 'a'", "too many elements"]) { try decode(overflow) }
    }

    func testOffsetsNotTwoNonNegativeInts() {
        for offsets in ["[0,8,9]", "[0]", "[-1,8]", "[0,8.0]", #"["0",8]"#, "null", "[0,99999999999999999999999]"] {
            let bytes = rawSafetensors(header(#"{"dtype":"F32","shape":[2],"data_offsets":\#(offsets)}"#), Array(repeating: 0, count: 16))
            assertInteropError([source, "tensor 'a'", "data_offsets", "not two non-negative integers"]) { try decode(bytes) }
        }
    }

    func testOffsetsOutOfOrder() {
        let bytes = rawSafetensors(header(#"{"dtype":"F32","shape":[0],"data_offsets":[10,9]}"#), Array(repeating: 0, count: 16))
        assertInteropError(["model.safetensors: tensor 'a' data offsets [10, 9] are out of order"]) { try decode(bytes) }
    }

    func testOffsetsBeyondBuffer() {
        let bytes = rawSafetensors(header(#"{"dtype":"F32","shape":[2],"data_offsets":[16,24]}"#), Array(repeating: 0, count: 16))
        assertInteropError([source, "tensor 'a'", "[16, 24]", "past the end of the 16-byte data buffer"]) { try decode(bytes) }
    }

    func testByteLengthDoesNotMatchShape() {
        let bytes = rawSafetensors(header(#"{"dtype":"F32","shape":[3],"data_offsets":[0,8]}"#), Array(repeating: 0, count: 16))
        assertInteropError([source, "tensor 'a'", "hold 8 bytes but shape [3] of F32 needs 12"]) { try decode(bytes) }
    }

    func testOverlappingTensors() {
        let bytes = rawSafetensors(header(#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#,
                                          #"{"dtype":"F32","shape":[2],"data_offsets":[4,12]}"#), Array(repeating: 0, count: 12))
        assertInteropError([source, "tensor 'b' data offsets [4, 12] overlap tensor 'a' [0, 8]"]) { try decode(bytes) }
        let same = rawSafetensors(header(#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#,
                                         #"{"dtype":"I64","shape":[1],"data_offsets":[0,8]}"#), Array(repeating: 0, count: 8))
        assertInteropError([source, "overlap"]) { try decode(same) }
    }

    func testHoleBetweenTensors() {
        let bytes = rawSafetensors(header(#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#,
                                          #"{"dtype":"I64","shape":[1],"data_offsets":[12,20]}"#), Array(repeating: 0, count: 20))
        assertInteropError([source, "hole", "bytes [8, 12)", "tensor 'b'"]) { try decode(bytes) }
        let leading = rawSafetensors(#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#, [0, 0, 0, 0])
        assertInteropError([source, "hole", "bytes [0, 2)", "tensor 'a'"]) { try decode(leading) }
    }

    func testUnusedTrailingBytes() {
        let bytes = rawSafetensors(validHeader, Array(repeating: 0, count: 20))
        assertInteropError([source, "4 unused bytes after the last tensor"]) { try decode(bytes) }
    }

    func testMetadataValuesNotStrings() {
        let number = rawSafetensors(#"{"__metadata__":{"arch":"resnet20","num_classes":10}}"#, [])
        assertInteropError([source, "metadata value for key 'num_classes' is the number 10, not a string"]) { try decode(number) }
        let nested = rawSafetensors(#"{"__metadata__":{"mean":[0.5]}}"#, [])
        assertInteropError([source, "metadata value for key 'mean' is an array"]) { try decode(nested) }
        let notObject = rawSafetensors(#"{"__metadata__":"x"}"#, [])
        assertInteropError([source, "__metadata__ is a string"]) { try decode(notObject) }
    }

    func testReadErrorsNameThePath() throws {
        let folder = try makeTemporaryFolder(self)
        let missing = folder.appendingPathComponent("absent.safetensors")
        assertInteropError([missing.path, "cannot open", "No such file"]) { _ = try SafeTensorsFile.read(missing) }
        let truncated = folder.appendingPathComponent("cut.safetensors")
        let bytes = try SafeTensorsFile(tensors: ["fc.weight": SafeTensor(floats: [1, 2, 3], shape: [3])]).encode()
        try Data(bytes.dropLast(4)).write(to: truncated)
        assertInteropError([truncated.path + ": tensor 'fc.weight'", "past the end", "truncated"]) {
            _ = try SafeTensorsFile.read(truncated)
        }
        assertInteropError([folder.path, "not a regular file"]) { _ = try SafeTensorsFile.read(folder) }
    }

    func testHostileNamesStayOnOneLine() {
        let name = "evil\\nname" + String(repeating: "x", count: 500)
        let bytes = rawSafetensors(#"{"\#(name)":{"dtype":"F32","shape":[1],"data_offsets":[0,9]}}"#, Array(repeating: 0, count: 9))
        assertInteropError([source, "tensor 'evil\\nname", "...", "needs 4"]) { try decode(bytes) }
    }
}
