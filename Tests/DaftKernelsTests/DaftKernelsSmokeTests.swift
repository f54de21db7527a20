import XCTest
@testable import DaftKernels
final class DaftKernelsSmokeTests: XCTestCase { func testModuleName() { XCTAssertEqual(DaftKernelsModule.name, "DaftKernels") } }
