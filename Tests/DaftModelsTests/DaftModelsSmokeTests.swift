import XCTest
@testable import DaftModels
final class DaftModelsSmokeTests: XCTestCase { func testModuleName() { XCTAssertEqual(DaftModelsModule.name, "DaftModels") } }
