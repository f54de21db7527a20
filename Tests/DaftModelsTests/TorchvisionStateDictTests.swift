import XCTest
import Foundation
import DaftTestSupport
import DaftInterop
import DaftKernels
@testable import DaftModels

/// Files PyTorch users have: torchvision's own ResNet definitions saved with
/// `safetensors.torch.save_file(model.state_dict(), path)` and no metadata (Tests/Fixtures/torchvision/
/// make_torchvision_files.py writes them into a temporary folder). The architecture is inferred from names and
/// shapes alone, the file loads strictly, and the eval-mode logits equal PyTorch's (1e-4 of the largest logit,
/// the TorchParityTests tolerance).
final class TorchvisionStateDictTests: XCTestCase {
    static var folder: URL!

    override class func setUp() {
        super.setUp()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("daft-torchvision-\(UUID().uuidString)")
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: folder)
        super.tearDown()
    }

    /// The generated files (written once per test class run).
    func files() throws -> URL {
        let dir = Self.folder!
        if !FileManager.default.fileExists(atPath: dir.appendingPathComponent("shapes.json").path) {
            let script = TestFixtures.directory.appendingPathComponent("torchvision/make_torchvision_files.py").path
            try TestPython.run("import runpy, sys; sys.argv = [\(String(reflecting: script))] + sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')", [dir.path])
        }
        return dir
    }

    func load(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile.read(try files().appendingPathComponent(name + ".safetensors"))
    }

    /// Infers, loads strictly, runs eval-mode forward on PyTorch's input, compares the logits.
    func checkLogits(_ name: String, expected: ResNetConfig) throws {
        let file = try load(name)
        XCTAssertTrue(file.metadata.isEmpty, "the file must carry no metadata, as save_file(model.state_dict()) writes it")
        let config = try ResNetConfig.infer(from: file, source: name)
        XCTAssertEqual(config, expected)
        let model = ResNet(config)
        try StateDict.load(file, into: model, source: name)
        let io = try load(name + ".io")
        let x = try io.fixtureFloats("x"), shape = try io.tensor("x", source: name).shape
        let xs = Shape4(shape[0], shape[1], shape[2], shape[3])
        try x.withUnsafeBufferPointer { try model.forward($0.baseAddress!, xs, training: false) }
        let got = model.logits.array(xs.n * config.numClasses), want = try io.fixtureFloats("y")
        if let failure = closenessFailure(got, want, rtol: 1e-4, atol: 0, "\(name) logits") { XCTFail(failure) }
        // written back, the file has the same names, shapes and values (what load_state_dict(strict=True) needs)
        let back = StateDict.file(model)
        XCTAssertEqual(Set(back.tensors.keys), Set(file.tensors.keys), name)
        for (k, t) in file.tensors { XCTAssertEqual(back.tensors[k]?.shape, t.shape, "\(name) \(k)") }
        XCTAssertEqual(try back.tensors["layer1.0.bn1.running_var"]!.floats(), try file.tensors["layer1.0.bn1.running_var"]!.floats())
        XCTAssertEqual(try back.tensors["bn1.num_batches_tracked"]!.int64s(), try file.tensors["bn1.num_batches_tracked"]!.int64s())
        XCTAssertEqual(try ResNetConfig.infer(from: back, source: "written back"), config, "daft's own metadata agrees with the tensors")
    }

    func testResNet18FromTorchvisionMatchesPyTorchLogits() throws {
        try checkLogits("resnet18", expected: try .named("resnet18", inChannels: 3, numClasses: 1000))
    }

    func testResNet34FromTorchvisionMatchesPyTorchLogits() throws {
        try checkLogits("resnet34", expected: try .named("resnet34", inChannels: 3, numClasses: 1000))
    }

    func testResNet50FromTorchvisionMatchesPyTorchLogits() throws {
        try checkLogits("resnet50", expected: try .named("resnet50", inChannels: 3, numClasses: 1000))
    }

    func testOneChannelHundredClassResNet18MatchesPyTorchLogits() throws {
        try checkLogits("resnet18_1ch_100", expected: try .named("resnet18", inChannels: 1, numClasses: 100))
    }

    func testWideBottleneckWidthsAreInferred() throws {
        try checkLogits("wide_bottleneck_1111", expected: ResNetConfig(
            arch: "resnet", stem: .imagenet, block: .bottleneck, widths: [64, 128, 256, 512], blocks: [1, 1, 1, 1],
            inChannels: 3, numClasses: 10, bottleneckWidths: [128, 256, 512, 1024]))
    }

    /// Every torchvision ResNet constructor's state_dict (names and shapes, built on the meta device) is inferred
    /// as the architecture of that name and daft's model has exactly those entries with those shapes.
    func testEveryTorchvisionResNetShapeListIsInferredExactly() throws {
        let data = try Data(contentsOf: try files().appendingPathComponent("shapes.json"))
        let all = try JSONSerialization.jsonObject(with: data) as! [String: [[Any]]]
        XCTAssertEqual(Set(all.keys), ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2"])
        for (arch, entries) in all {
            var file = SafeTensorsFile()
            var order: [(String, [Int])] = []
            for e in entries {
                let name = e[0] as! String, shape = e[1] as! [Int]
                order.append((name, shape))
                file.tensors[name] = SafeTensor(dtype: name.hasSuffix("num_batches_tracked") ? .I64 : .F32, shape: shape, data: [])
            }
            let config = try ResNetConfig.infer(from: file, source: arch)
            XCTAssertEqual(config, try ResNetConfig.named(arch, inChannels: 3, numClasses: 1000), arch)
            XCTAssertEqual(config.arch, arch)
            let ours = ResNet(config).store.entries.map { ($0.name, $0.kind == .counter ? [] : $0.shape) }
            XCTAssertEqual(ours.map(\.0), order.map(\.0), "\(arch): state_dict names in torchvision's order")
            XCTAssertEqual(ours.map(\.1), order.map(\.1), "\(arch): shapes")
        }
    }

    func testNonResNetStateDictIsAOneLineError() throws {
        let file = try load("mobilenet_v2")
        XCTAssertThrowsError(try ResNetConfig.infer(from: file, source: "mobilenet_v2.safetensors")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("mobilenet_v2.safetensors: not a torchvision ResNet state_dict"), text)
            XCTAssertFalse(text.contains("\n"))
        }
    }

    func testGroupedConvolutionsAreRefusedByName() throws {
        XCTAssertThrowsError(try ResNetConfig.infer(from: try load("resnext_tiny"), source: "resnext.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("grouped 3×3 convolutions"), "\(error)")
            XCTAssertTrue("\(error)".contains("layer1.0.conv2.weight"), "\(error)")
        }
    }

    func testMetadataThatDisagreesWithTheTensorsNamesTheKey() throws {
        var file = try load("resnet18_1ch_100")
        file.metadata = ["arch": "resnet18", "num_classes": "100", "in_channels": "1", "mean": "0.5", "std": "0.25"]
        XCTAssertEqual(try ResNetConfig.infer(from: file, source: "r18").numClasses, 100, "agreeing documented metadata (cli.md) is accepted")
        for (key, value) in [("num_classes", "10"), ("in_channels", "3"), ("arch", "resnet34"), ("blocks", "2,2,2"), ("stem", "small")] {
            var bad = file
            bad.metadata[key] = value
            XCTAssertThrowsError(try ResNetConfig.infer(from: bad, source: "r18.safetensors")) { error in
                XCTAssertTrue("\(error)".hasPrefix("r18.safetensors: metadata '\(key)' = '\(value)' disagrees"), "\(error)")
            }
        }
    }

    func testDataParallelPrefixAndMissingBatchCountersLoad() throws {
        let file = try load("resnet18")
        var wrapped = SafeTensorsFile()
        for (k, v) in file.tensors where !k.hasSuffix("num_batches_tracked") { wrapped.tensors["module." + k] = v }
        let config = try ResNetConfig.infer(from: wrapped, source: "ddp")
        XCTAssertEqual(config.arch, "resnet18")
        let model = ResNet(config)
        try StateDict.load(wrapped, into: model, source: "ddp")
        XCTAssertEqual(model.store.values("fc.bias"), try file.tensors["fc.bias"]!.floats())
        XCTAssertTrue(model.store.counters.allSatisfy { $0 == 0 }, "missing num_batches_tracked reads as 0")
    }
}
