import XCTest
@testable import DaftEngine
final class DaftEngineSmokeTests: XCTestCase { func testModuleName() { XCTAssertEqual(DaftEngineModule.name, "DaftEngine") } }
