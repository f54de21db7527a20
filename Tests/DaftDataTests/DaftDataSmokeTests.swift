import XCTest
@testable import DaftData
final class DaftDataSmokeTests: XCTestCase { func testModuleName() { XCTAssertEqual(DaftDataModule.name, "DaftData") } }
