import XCTest
@testable import DaftModels

/// The named architectures have torchvision's exact tensor layout: parameter counts of
/// torchvision.models.resnet18/34/50(num_classes=1000) and He et al.'s CIFAR ResNet-20/56, and the
/// state_dict names/order of a torchvision BasicBlock and Bottleneck model.
final class ArchitectureTests: XCTestCase {
    func count(_ arch: String, classes: Int, inChannels: Int = 3) throws -> Int {
        ResNet(try ResNetConfig.named(arch, inChannels: inChannels, numClasses: classes)).store.parameterCount
    }

    func testParameterCountsMatchTorchvision() throws {
        XCTAssertEqual(try count("resnet18", classes: 1000), 11_689_512)
        XCTAssertEqual(try count("resnet34", classes: 1000), 21_797_672)
        XCTAssertEqual(try count("resnet50", classes: 1000), 25_557_032)
        XCTAssertEqual(try count("resnet20", classes: 10), 272_474)     // 3×3 stem, 16/32/64, 1×1-conv shortcuts
        XCTAssertEqual(try count("resnet56", classes: 10), 855_770)
    }

    func testStateDictNamesFollowTorchvision() throws {
        let m = ResNet(try ResNetConfig.named("resnet50", inChannels: 3, numClasses: 10))
        let names = m.store.entries.map(\.name)
        XCTAssertEqual(Array(names.prefix(6)), ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"])
        XCTAssertTrue(names.contains("layer1.0.downsample.0.weight"))
        XCTAssertTrue(names.contains("layer4.2.bn3.num_batches_tracked"))
        XCTAssertEqual(Array(names.suffix(2)), ["fc.weight", "fc.bias"])
        XCTAssertEqual(names.count, 320)   // torchvision resnet50 state_dict entries
        XCTAssertThrowsError(try ResNetConfig.named("resnet99", inChannels: 3, numClasses: 10))
        XCTAssertThrowsError(try ResNetConfig.named("resnet20", inChannels: 1, numClasses: 10, widths: [8, 16]))
    }
}
