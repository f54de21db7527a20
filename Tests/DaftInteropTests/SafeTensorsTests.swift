@testable import DaftInterop
import Foundation
import XCTest

final class SafeTensorsTests: XCTestCase {
    func testDTypeByteSizes() {
        let sizes: [SafeTensorsDType: Int] = [.F64: 8, .F32: 4, .F16: 2, .BF16: 2, .I64: 8, .I32: 4,
                                              .I16: 2, .I8: 1, .U8: 1, .BOOL: 1]
        for dtype in SafeTensorsDType.allCases { XCTAssertEqual(dtype.byteSize, sizes[dtype], "\(dtype)") }
    }

    /// The file format is little-endian whatever the host: known values have known bytes both ways, and a
    /// trailing partial value is not decoded.
    func testByteCodingIsLittleEndian() {
        XCTAssertEqual(ByteCoding.store([UInt32(0x0102_0304), 0xA0B0_C0D0]), [4, 3, 2, 1, 0xD0, 0xC0, 0xB0, 0xA0])
        XCTAssertEqual(ByteCoding.store([Int16(-2)]), [0xFE, 0xFF])
        XCTAssertEqual(ByteCoding.store([Int64(1) << 40]), [0, 0, 0, 0, 0, 1, 0, 0])
        XCTAssertEqual(ByteCoding.load([4, 3, 2, 1, 0xD0, 0xC0, 0xB0, 0xA0, 9], as: UInt32.self), [0x0102_0304, 0xA0B0_C0D0])
        XCTAssertEqual(ByteCoding.load([0xFE, 0xFF, 0x01], as: Int16.self), [-2])
        XCTAssertEqual(ByteCoding.load([0, 0, 0, 0, 0, 1, 0, 0], as: Int64.self), [Int64(1) << 40])
        XCTAssertEqual(ByteCoding.load([1, 2, 3], as: UInt32.self), [])
        XCTAssertEqual(ByteCoding.store([UInt16]()), [])
    }

    func testRoundTripEveryDType() throws {
        var tensors: [String: SafeTensor] = [:]
        for (index, dtype) in SafeTensorsDType.allCases.enumerated() {
            let shape = [2, index % 3 + 1]
            let count = shape.reduce(1, *) * dtype.byteSize
            tensors["t.\(dtype.rawValue)"] = SafeTensor(dtype: dtype, shape: shape,
                                                         data: (0..<count).map { UInt8(truncatingIfNeeded: $0 * 37 + index) })
        }
        tensors["scalar"] = SafeTensor(int64s: [42], shape: [])
        tensors["empty"] = SafeTensor(floats: [], shape: [0, 4])
        let file = SafeTensorsFile(tensors: tensors, metadata: ["arch": "resnet20", "mean": "0.5,0.25", "odd \"key\"\n": "ü\\"])
        let bytes = try file.encode()
        let headerLength = Int(ByteCoding.readInteger(bytes, at: 0, as: UInt64.self))
        XCTAssertEqual(headerLength % 8, 0, "header padded to a multiple of 8")
        XCTAssertEqual(try SafeTensorsFile.decode(bytes, source: "x.safetensors"), file)

        let folder = try makeTemporaryFolder(self)
        let url = folder.appendingPathComponent("model.safetensors")
        try file.write(to: url)
        XCTAssertEqual(try SafeTensorsFile.read(url), file)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["model.safetensors"])
    }

    func testTypedConstructorsAndAccessors() throws {
        let f = SafeTensor(floats: [1.5, -0.0, .infinity], shape: [3])
        XCTAssertEqual(f.dtype, .F32)
        XCTAssertEqual(f.data, [0, 0, 0xc0, 0x3f, 0, 0, 0, 0x80, 0, 0, 0x80, 0x7f])
        XCTAssertEqual(try f.floats(), [1.5, -0.0, .infinity])
        XCTAssertEqual(try f.doubles(), [1.5, -0.0, .infinity])
        let nan = SafeTensor(floats: [.nan], shape: [1])
        XCTAssertTrue(try nan.floats()[0].isNaN)

        let d = SafeTensor(doubles: [0.1, -2], shape: [2, 1])
        XCTAssertEqual(d.dtype, .F64)
        XCTAssertEqual(try d.doubles(), [0.1, -2])
        XCTAssertEqual(try d.floats(), [Float(0.1), -2])

        let i = SafeTensor(int64s: [Int64.min, -1, Int64.max], shape: [3])
        XCTAssertEqual(i.dtype, .I64)
        XCTAssertEqual(i.elementCount, 3)
        XCTAssertEqual(try i.int64s(), [Int64.min, -1, Int64.max])
        XCTAssertEqual(try SafeTensor(int32s: [-7, 8], shape: [2]).int64s(), [-7, 8])
        XCTAssertEqual(try SafeTensor(uint8s: [0, 255], shape: [2]).int64s(), [0, 255])
        XCTAssertEqual(SafeTensor(floats: [], shape: []).elementCount, 1)

        assertInteropError(["I64", "Float"]) { _ = try i.floats() }
        assertInteropError(["F32", "Int64"]) { _ = try f.int64s() }
        assertInteropError(["BOOL", "Double"]) { _ = try SafeTensor(dtype: .BOOL, shape: [1], data: [1]).doubles() }
        assertInteropError(["3 data bytes", "needs 4"]) { _ = try SafeTensor(dtype: .F32, shape: [1], data: [0, 0, 0]).floats() }
    }

    func testHalfPrecisionConversions() throws {
        // 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal), -0, inf, nan
        let half = SafeTensor(dtype: .F16, shape: [7], data: ByteCoding.store([UInt16]([0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x7e00])))
        let values = try half.floats()
        XCTAssertEqual(Array(values[0..<6]), [1, -2, 65504, Float(sign: .plus, exponent: -24, significand: 1), -0.0, .infinity])
        XCTAssertTrue(values[6].isNaN)
        let bf = SafeTensor(dtype: .BF16, shape: [3], data: ByteCoding.store([UInt16]([0x3f80, 0xc040, 0x3e20])))
        XCTAssertEqual(try bf.floats(), [1, -3, 0.15625])
        XCTAssertEqual(try bf.doubles(), [1, -3, 0.15625])
    }

    func testReadsTorchWrittenFile() throws {
        let url = InteropFixtures.url("torch_basic.safetensors")
        let file = try SafeTensorsFile.read(url)
        XCTAssertEqual(file.metadata, ["arch": "resnet20", "num_classes": "10", "mean": "0.2860", "std": "0.3530"])
        XCTAssertEqual(Set(file.tensors.keys), ["fc.weight", "fc.bias", "bn1.running_var", "bn1.num_batches_tracked", "ids"])
        let weight = try file.tensor("fc.weight", source: url.path)
        XCTAssertEqual(weight.dtype, .F32)
        XCTAssertEqual(weight.shape, [2, 3])
        let w = try weight.floats()
        XCTAssertEqual(w, [0.5, -1.25, 3.0, 0.1, -0.0, 1e10])
        XCTAssertEqual(w[4].sign, .minus)
        XCTAssertEqual(try file.tensor("fc.bias", source: url.path).floats(), [1, -2])
        let runningVar = try file.tensor("bn1.running_var", source: url.path)
        XCTAssertEqual(runningVar.dtype, .F64)
        XCTAssertEqual(try runningVar.doubles(), [0.1, 2.5, -1e-300])
        let tracked = try file.tensor("bn1.num_batches_tracked", source: url.path)
        XCTAssertEqual(tracked.shape, [])
        XCTAssertEqual(try tracked.int64s(), [42])
        XCTAssertEqual(try file.tensor("ids", source: url.path).int64s(), [-1, 0, 1 << 40, -(1 << 62)])
    }

    func testReadsTorchWrittenFileWithEveryDType() throws {
        let file = try SafeTensorsFile.read(InteropFixtures.url("torch_all_dtypes.safetensors"))
        XCTAssertEqual(file.metadata, [:])
        func t(_ name: String) throws -> SafeTensor { try file.tensor(name, source: "torch_all_dtypes.safetensors") }
        XCTAssertEqual(try t("f16").dtype, .F16)
        XCTAssertEqual(try t("f16").floats(), [1, -2.5, 65504, Float(sign: .plus, exponent: -24, significand: 1), .infinity])
        XCTAssertEqual(try t("bf16").dtype, .BF16)
        XCTAssertEqual(try t("bf16").floats(), [1, -3, 0.15625])
        XCTAssertEqual(try t("i32").dtype, .I32)
        XCTAssertEqual(try t("i32").shape, [2, 2])
        XCTAssertEqual(try t("i32").int64s(), [-7, Int64(Int32.max), Int64(Int32.min), 0])
        XCTAssertEqual(try t("i16").int64s(), [-300, 0, 32767])
        XCTAssertEqual(try t("i8").int64s(), [-128, 127])
        XCTAssertEqual(try t("u8").dtype, .U8)
        XCTAssertEqual(try t("u8").data, [0, 128, 255])
        XCTAssertEqual(try t("flags").dtype, .BOOL)
        XCTAssertEqual(try t("flags").data, [1, 0, 0, 1])
        XCTAssertEqual(try t("empty").shape, [0, 3])
        XCTAssertEqual(try t("empty").floats(), [])
        // Re-encoding and decoding keeps every tensor.
        XCTAssertEqual(try SafeTensorsFile.decode(file.encode(), source: "re-encoded"), file)
    }

    /// Our writer's bytes are pinned by committed golden files, which were checked by hand to load in
    /// `safetensors.torch.load_file` (`make_interop_fixtures.py --check`).
    func testWriterMatchesGoldenFiles() throws {
        let file = SafeTensorsFile(
            tensors: [
                "conv1.weight": SafeTensor(floats: [0.5, -1.5, 2.0, 0.25], shape: [2, 1, 1, 2]),
                "bn1.running_mean": SafeTensor(doubles: [0.1, -0.2], shape: [2]),
                "bn1.num_batches_tracked": SafeTensor(int64s: [7], shape: []),
                "layer1.0.bn1.weight": SafeTensor(floats: [1, 2, 3], shape: [3]),
                "mask": SafeTensor(uint8s: [1, 0, 255], shape: [3]),
                "counts": SafeTensor(int32s: [-5, 6], shape: [2]),
            ],
            metadata: ["arch": "resnet20", "num_classes": "10", "note": "quote \" and \\ ü"])
        let fc = SafeTensorsFile(tensors: [
            "fc.weight": SafeTensor(floats: [1, 2, 3, 4, 5, 6], shape: [2, 3]),
            "fc.bias": SafeTensor(floats: [-1, 1], shape: [2]),
        ])
        for (name, value) in [("swift_written.safetensors", file), ("swift_written_fc.safetensors", fc)] {
            let url = InteropFixtures.url(name)
            if InteropFixtures.recordGolden {
                try value.write(to: url)
            }
            XCTAssertEqual(try ByteCoding.readFile(url), try value.encode(), name)
            XCTAssertEqual(try SafeTensorsFile.read(url), value, name)
        }
    }

    func testMissingTensorErrorNamesTensorAndFile() {
        let file = SafeTensorsFile(tensors: ["fc.bias": SafeTensor(floats: [1], shape: [1])])
        assertInteropError(["init.safetensors: ", "'fc.weight'", "'fc.bias'"]) {
            _ = try file.tensor("fc.weight", source: "init.safetensors")
        }
    }

    func testEncoderRejectsInconsistentTensors() {
        let bad = SafeTensorsFile(tensors: ["fc.weight": SafeTensor(dtype: .F32, shape: [2, 2], data: [0, 0, 0, 0])])
        assertInteropError(["'fc.weight'", "4 data bytes", "needs 16"]) { _ = try bad.encode() }
        let negative = SafeTensorsFile(tensors: ["x": SafeTensor(dtype: .F32, shape: [-1], data: [])])
        assertInteropError(["'x'", "negative dimension"]) { _ = try negative.encode() }
        let reserved = SafeTensorsFile(tensors: ["__metadata__": SafeTensor(floats: [1], shape: [1])])
        assertInteropError(["__metadata__"]) { _ = try reserved.encode() }
    }

    func testWriteToMissingFolderNamesPath() throws {
        let folder = try makeTemporaryFolder(self)
        let url = folder.appendingPathComponent("missing").appendingPathComponent("w.safetensors")
        assertInteropError([url.path, "temporary file"]) { try SafeTensorsFile().write(to: url) }
    }

    func testEmptyFileRoundTrips() throws {
        let bytes = try SafeTensorsFile().encode()
        XCTAssertEqual(bytes.count, 16)
        XCTAssertEqual(try SafeTensorsFile.decode(bytes, source: "e"), SafeTensorsFile())
    }
}
