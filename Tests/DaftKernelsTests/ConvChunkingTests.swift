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
}
