import Foundation
import XCTest
import DaftKernels
import DaftDistributed
import DaftModels

/// `daft bench --profile` under SyncBN: the statistics all-reduces of every BN layer, forward and backward, count
/// as `syncBatchNorm` (including the wait for the slower rank), and not as batch-norm arithmetic.
final class SyncBatchNormProfileTests: XCTestCase {
    func testSyncBatchNormWaitsAreTheirOwnKindNotBatchNorm() throws {
        let delay = 0.3                      // rank 1 reaches the forward and the backward this much later
        let profiles = try ThreadGroup(size: 2).run { rank, comm -> [LayerProfile.Kind: Double] in
            let model = ResNet(try ResNetConfig.named("resnet20", inChannels: 1, numClasses: 4, widths: [4, 8, 8]))
            var rng = SplitMix64(seed: 3)
            model.resetParameters(rng: &rng)
            model.context.sync = comm
            let profile = LayerProfile()
            model.context.profile = profile
            let xs = Shape4(4, 1, 12, 12)
            let x = (0..<xs.count).map { _ in Float(rng.nextNormal()) }
            let labels: [Int32] = [0, 1, 2, 3]
            if rank == 1 { Thread.sleep(forTimeInterval: delay) }
            try x.withUnsafeBufferPointer { try model.forward($0.baseAddress!, xs, training: true) }
            _ = labels.withUnsafeBufferPointer {
                CrossEntropy.forwardBackward(logits: model.logits.pointer, labels: $0.baseAddress!, batch: xs.n, classes: 4,
                                             gradScale: 1 / Float(xs.n), dLogits: model.dLogits.pointer)
            }
            if rank == 1 { Thread.sleep(forTimeInterval: delay) }
            model.backward()
            return profile.seconds
        }
        let waited = profiles[0][.syncBatchNorm, default: 0], arithmetic = profiles[0][.batchNorm, default: 0]
        XCTAssertGreaterThanOrEqual(waited, 2 * delay * 0.9, "rank 0 waits for rank 1 in a forward and a backward all-reduce")
        XCTAssertGreaterThan(arithmetic, 0, "the batch-norm arithmetic is still timed")
        XCTAssertLessThan(arithmetic, delay / 2, "the waits are not counted again as batch norm")
    }
}
