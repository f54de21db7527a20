import XCTest
@testable import DaftInterop
final class DaftInteropSmokeTests: XCTestCase { func testModuleName() { XCTAssertEqual(DaftInteropModule.name, "DaftInterop") } }
