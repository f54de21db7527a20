import XCTest
@testable import DaftKernels

/// How `ConvWorkspace` cuts a batch into im2col chunks: L2-sized, but never narrower than `minimumColumns` GEMM
/// columns (small planes), within `maxColumnFloats` and the batch.
final class ConvChunkingTests: XCTestCase {
    func testSamplesPerChunk() {
        let ws = ConvWorkspace()              // 192 Ki floats in cache, at least 196 columns, at most 8 Mi floats
        // (patch = cin·kh·kw, output plane, batch) → samples per chunk
        let cases: [(what: String, patch: Int, plane: Int, batch: Int, chunk: Int)] = [
            ("ResNet-18 layer4 3×3, 512 ch at 7×7: 4 samples make 196 columns", 512 * 9, 49, 16, 4),
            ("ResNet-50 layer4 1×1 from 2048 ch at 7×7", 2048, 49, 16, 4),
            ("ResNet-50 layer4 1×1 from 512 ch: the L2 bound gives more (7)", 512, 49, 16, 7),
            ("14×14 planes are 196 columns by themselves", 256 * 9, 196, 16, 1),
            ("56×56, 64 ch: one sample (the L2 bound is below one)", 64 * 9, 3136, 16, 1),
            ("ResNet-20 stride-2 3×3 into 7×7 from 32 ch: L2 bound 13", 32 * 9, 49, 128, 13),
            ("never more than the batch", 512 * 9, 49, 2, 2),
        ]
        for c in cases {
            XCTAssertEqual(ws.samplesPerChunk(patch: c.patch, outSpatial: c.plane, batch: c.batch), c.chunk, c.what)
        }
        let narrow = ConvWorkspace(minimumColumns: 0)
        XCTAssertEqual(narrow.samplesPerChunk(patch: 512 * 9, outSpatial: 49, batch: 16), 1, "without the floor: the L2 bound alone")
        let capped = ConvWorkspace(maxColumnFloats: 2 * 512 * 9 * 49)
        XCTAssertEqual(capped.samplesPerChunk(patch: 512 * 9, outSpatial: 49, batch: 16), 2, "maxColumnFloats caps the floor")
        let tiny = ConvWorkspace(maxColumnFloats: 1)
        XCTAssertEqual(tiny.samplesPerChunk(patch: 512 * 9, outSpatial: 49, batch: 16), 1, "at least one sample")
    }

    /// One sample's im2col matrix is cut into tiles of output rows by the same bounds (strided geometries only).
    func testOutputRowsPerTile() {
        let ws = ConvWorkspace()
        let stem = ConvGeometry(cin: 3, cout: 64, kernel: 7, stride: 2, padding: 3)
        XCTAssertEqual(ws.outputRowsPerTile(stem, patch: 147, outH: 112, outW: 112), 11, "224-px stem: 11 rows of 147×112 fit 192 Ki floats")
        let r18Down = ConvGeometry(cin: 64, cout: 128, kernel: 3, stride: 2, padding: 1)
        XCTAssertEqual(ws.outputRowsPerTile(r18Down, patch: 576, outH: 28, outW: 28), 12, "ResNet-18 layer2.0.conv1")
        let r50Down = ConvGeometry(cin: 128, cout: 128, kernel: 3, stride: 2, padding: 1)
        XCTAssertEqual(ws.outputRowsPerTile(r50Down, patch: 1152, outH: 28, outW: 28), 7, "ResNet-50 layer2.0.conv2: the 196-column floor (L2 gives 6)")
        let r50Layer3 = ConvGeometry(cin: 256, cout: 256, kernel: 3, stride: 2, padding: 1)
        XCTAssertEqual(ws.outputRowsPerTile(r50Layer3, patch: 2304, outH: 14, outW: 14), 14, "14×14 planes: the floor is the whole sample")
        let same = ConvGeometry(cin: 128, cout: 128, kernel: 3, stride: 1, padding: 1)
        XCTAssertEqual(ws.outputRowsPerTile(same, patch: 1152, outH: 28, outW: 28), 28, "stride-1 same: whole samples")
        let pointwise = ConvGeometry(cin: 256, cout: 64, kernel: 1)
        XCTAssertEqual(ws.outputRowsPerTile(pointwise, patch: 256, outH: 56, outW: 56), 56, "1×1 stride 1: the sample itself")
        let tiny = ConvWorkspace(maxColumnFloats: 1)
        XCTAssertEqual(tiny.outputRowsPerTile(stem, patch: 147, outH: 112, outW: 112), 1, "at least one row")
    }
}
