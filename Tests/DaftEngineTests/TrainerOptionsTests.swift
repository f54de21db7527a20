import XCTest
import DaftModels
import DaftDistributed
import DaftData
@testable import DaftEngine

/// `--unfreeze-from` and the feature-prior layers name parts of the model: a wrong name is a one-line error
/// before any phase runs (an unknown `--unfreeze-from` stage used to mean "train everything", silently).
final class TrainerOptionsTests: XCTestCase {
    /// A narrow 3-stage ResNet-20 on three blank 8×8 images.
    func trainer(_ configure: (inout TrainingOptions) -> Void) throws -> Trainer {
        let config = try ResNetConfig.named("resnet20", inChannels: 1, numClasses: 3, widths: [4, 8, 16])
        var options = TrainingOptions()
        configure(&options)
        let data = try ImageDataset(name: "blank", channels: 1, height: 8, width: 8, numClasses: 3,
                                    pixels: [UInt8](repeating: 0, count: 3 * 64), labels: [0, 1, 2])
        return Trainer(model: ResNet(config), communicator: SingleProcessCommunicator(), options: options, train: data,
                       normalization: .fashionMNIST, log: { _ in })
    }

    func assertOneLine(_ body: @autoclosure () throws -> Any, contains fragments: [String], line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            let text = "\(error)"
            XCTAssertFalse(text.contains("\n"), text, line: line)
            for f in fragments { XCTAssertTrue(text.contains(f), "'\(text)' lacks '\(f)'", line: line) }
        }
    }

    func testStageIndexKnowsEachStageAndRejectsEveryOtherName() throws {
        let t = try trainer { $0.method = .freeze }
        XCTAssertEqual(try t.stageIndex("layer1"), 1)
        XCTAssertEqual(try t.stageIndex("layer3"), 3)
        XCTAssertEqual(try t.stageIndex("fc"), t.model.headStage)
        for bad in ["layer0", "layer4", "layer9", "Layer2", "layer", "fc1", "conv1", ""] {
            assertOneLine(try t.stageIndex(bad), contains: ["--unfreeze-from '\(bad)'", "layer1…layer3, fc"])
        }
    }

    func testUnknownNamesStopTheRunBeforeAnyPhase() throws {
        let freeze9 = try trainer { $0.method = .freeze; $0.unfreezeFrom = "layer9" }
        assertOneLine(try freeze9.checkModelNames(), contains: ["--unfreeze-from 'layer9'"])
        // the path that used to fall back to stage 0 (everything trainable)
        assertOneLine(try freeze9.prepareFineTune(), contains: ["--unfreeze-from 'layer9'"])
        XCTAssertEqual(freeze9.model.trainableFromStage, 0, "nothing was set up")

        let freeze2 = try trainer { $0.method = .freeze; $0.unfreezeFrom = "layer2" }
        try freeze2.checkModelNames()
        try freeze2.prepareFineTune()
        XCTAssertEqual(freeze2.model.trainableFromStage, 2)
        // only `freeze` reads --unfreeze-from
        try trainer { $0.method = .ft; $0.unfreezeFrom = "layer9" }.checkModelNames()

        let prior = try trainer { $0.method = .daft; $0.featurePriorLambda = 0.1; $0.featurePriorLayers = ["layer2", "layer5"] }
        assertOneLine(try prior.checkModelNames(), contains: ["'layer5'", "layer1…layer3, penultimate"])
    }
}
