import XCTest
@testable import DaftCoordinator
final class DaftCoordinatorSmokeTests: XCTestCase { func testModuleName() { XCTAssertEqual(DaftCoordinatorModule.name, "DaftCoordinator") } }
