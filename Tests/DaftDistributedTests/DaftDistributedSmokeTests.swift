import XCTest
@testable import DaftDistributed
final class DaftDistributedSmokeTests: XCTestCase { func testModuleName() { XCTAssertEqual(DaftDistributedModule.name, "DaftDistributed") } }
