import XCTest
import DaftTestSupport

/// max|a−b| ≤ rtol·max|b| + atol (see `closenessFailure`).
func assertClose(_ a: [Float], _ b: [Float], rtol: Float = 1e-4, atol: Float = 1e-6, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    if let m = closenessFailure(a, b, rtol: rtol, atol: atol, what) { XCTFail(m, file: file, line: line) }
}
