import XCTest
@testable import DaftKernels

/// `Conv2D.gatherStrided`, the row gather of every strided im2col: against the scalar definition for every width,
/// offset and output count of the stride-2 and stride-3 convolutions (its 16-float load path and the edges; the
/// adjoint test of im2col/col2im uses planes too narrow for that path).
final class GatherStridedTests: XCTestCase {
    func testGatherMatchesTheDefinitionAndTakesNothingFromOutsideTheRow() {
        for stride in [2, 3] {
            for width in 1...40 {
                // the row sits between NaN guards: a value taken from past either end shows as NaN in dst
                var buffer = [Float](repeating: .nan, count: width + 64)
                for i in 0..<width { buffer[32 + i] = Float(i + 1) }
                for offset in -3...3 {
                    for count in 0...(width / stride + 3) {
                        var dst = [Float](repeating: -7, count: count + 1)
                        buffer.withUnsafeBufferPointer { b in dst.withUnsafeMutableBufferPointer { d in
                            Conv2D.gatherStrided(b.baseAddress! + 32, width: width, offset: offset, stride: stride, d.baseAddress!, count,
                                                 inside: Conv2D.rowBounds(width: width, offset: offset, stride: stride, count: count))
                        } }
                        for ow in 0..<count {
                            let i = ow * stride + offset
                            let want: Float = i >= 0 && i < width ? Float(i + 1) : 0
                            XCTAssertEqual(dst[ow], want, "stride \(stride) width \(width) offset \(offset) count \(count) ow \(ow)")
                        }
                        XCTAssertEqual(dst[count], -7, "nothing written past count (stride \(stride) width \(width) offset \(offset) count \(count))")
                    }
                }
            }
        }
    }
}
