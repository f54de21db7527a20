import Foundation
import XCTest
@testable import DaftData

final class SamplerTests: XCTestCase {
    func testUnionOfRanksIsTheGlobalBatchForAnyWorldSize() {
        for tail in GlobalBatchPlan.TailPolicy.allCases {
            for w in 1...4 {
                let plan = GlobalBatchPlan(count: 103, globalBatch: 16, worldSize: w, seed: 3, shuffle: true, tail: tail)
                for batch in plan.globalBatches(epoch: 1) {
                    let locals = (0..<w).map { plan.localIndices(globalBatch: batch, rank: $0) }
                    XCTAssertEqual(locals.flatMap { $0 }.sorted(), batch.sorted(), "\(tail) W=\(w)")
                    for r in 0..<w {
                        XCTAssertEqual(locals[r].count, GlobalBatchPlan.localCount(globalBatchSize: batch.count, rank: r, worldSize: w))
                        // Strided: rank r holds positions r, r+W, ...
                        XCTAssertEqual(locals[r], stride(from: r, to: batch.count, by: w).map { batch[$0] })
                    }
                }
            }
        }
    }

    func testPermutationIsIdenticalAcrossRanksAndDiffersAcrossEpochs() {
        let plans = (1...4).map { GlobalBatchPlan(count: 1000, globalBatch: 64, worldSize: $0, seed: 11, shuffle: true, tail: .drop) }
        let p0 = plans[0].permutation(epoch: 0)
        XCTAssertEqual(p0.sorted(), Array(0..<1000))
        for p in plans { XCTAssertEqual(p.permutation(epoch: 0), p0); XCTAssertEqual(p.globalBatches(epoch: 0), plans[0].globalBatches(epoch: 0)) }
        XCTAssertNotEqual(plans[0].permutation(epoch: 1), p0)
        XCTAssertNotEqual(GlobalBatchPlan(count: 1000, globalBatch: 64, worldSize: 1, seed: 12, shuffle: true, tail: .drop).permutation(epoch: 0), p0)
        XCTAssertNotEqual(p0, Array(0..<1000))
        let ordered = GlobalBatchPlan(count: 10, globalBatch: 4, worldSize: 2, seed: 1, shuffle: false, tail: .short)
        XCTAssertEqual(ordered.globalBatches(epoch: 5), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
    }

    func testTailPolicies() {
        let drop = GlobalBatchPlan(count: 10, globalBatch: 4, worldSize: 3, seed: 0, shuffle: true, tail: .drop)
        XCTAssertEqual(drop.batchesPerEpoch, 2)
        XCTAssertEqual(drop.globalBatches(epoch: 0).map(\.count), [4, 4])
        XCTAssertEqual(Set(drop.globalBatches(epoch: 0).flatMap { $0 }).count, 8)

        let short = GlobalBatchPlan(count: 10, globalBatch: 4, worldSize: 3, seed: 0, shuffle: true, tail: .short)
        XCTAssertEqual(short.batchesPerEpoch, 3)
        let sb = short.globalBatches(epoch: 0)
        XCTAssertEqual(sb.map(\.count), [4, 4, 2])
        XCTAssertEqual(sb.flatMap { $0 }.sorted(), Array(0..<10))
        // Unequal per-rank counts in the last batch, including an empty rank.
        XCTAssertEqual((0..<3).map { short.localIndices(globalBatch: sb[2], rank: $0).count }, [1, 1, 0])
        XCTAssertEqual((0..<3).map { short.localIndices(globalBatch: sb[0], rank: $0).count }, [2, 1, 1])

        let pad = GlobalBatchPlan(count: 10, globalBatch: 4, worldSize: 3, seed: 0, shuffle: true, tail: .pad)
        XCTAssertEqual(pad.batchesPerEpoch, 3)
        let pb = pad.globalBatches(epoch: 0)
        let perm = pad.permutation(epoch: 0)
        XCTAssertEqual(pb.map(\.count), [4, 4, 4])
        XCTAssertEqual(pb[2], [perm[8], perm[9], perm[0], perm[1]])
        XCTAssertEqual(Set(pb.flatMap { $0 }), Set(0..<10))

        // Fewer samples than one global batch.
        XCTAssertEqual(GlobalBatchPlan(count: 3, globalBatch: 8, worldSize: 2, seed: 0, shuffle: false, tail: .drop).globalBatches(epoch: 0), [])
        XCTAssertEqual(GlobalBatchPlan(count: 3, globalBatch: 8, worldSize: 2, seed: 0, shuffle: false, tail: .pad).globalBatches(epoch: 0),
                       [[0, 1, 2, 0, 1, 2, 0, 1]])
        XCTAssertEqual(GlobalBatchPlan(count: 0, globalBatch: 8, worldSize: 2, seed: 0, shuffle: true, tail: .pad).globalBatches(epoch: 0), [])
        // Exact multiple: all policies agree.
        let batches = GlobalBatchPlan.TailPolicy.allCases.map {
            GlobalBatchPlan(count: 12, globalBatch: 4, worldSize: 2, seed: 9, shuffle: true, tail: $0).globalBatches(epoch: 2)
        }
        XCTAssertEqual(batches[0], batches[1]); XCTAssertEqual(batches[1], batches[2])
    }

    func testEvaluationShardsCountEverySampleOnce() {
        for count in [0, 1, 7, 10, 1001] {
            for w in 1...5 {
                let shards = (0..<w).map { EvaluationShard(count: count, rank: $0, worldSize: w) }
                XCTAssertEqual(shards.flatMap { Array($0.range) }, Array(0..<count))
                let sizes = shards.map(\.range.count)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
                for s in shards {
                    XCTAssertEqual(s.batches(batchSize: 3).flatMap { $0 }, Array(s.range))
                    XCTAssertLessThanOrEqual(s.batches(batchSize: 3).count, s.maxBatchCount(batchSize: 3))
                }
                XCTAssertEqual(shards.map { $0.batches(batchSize: 3).count }.max() ?? 0, shards[0].maxBatchCount(batchSize: 3))
            }
        }
    }

    /// Whole-batch shards cover every sample once, in order, and cut the data only at multiples of the batch size, so
    /// the batches the ranks form are the batches one rank forms.
    func testWholeBatchShardsAreTheOneRankBatches() {
        for count in [0, 1, 7, 10, 100, 1001] {
            for batch in [1, 3, 32] {
                let oneRank = EvaluationShard(count: count, rank: 0, worldSize: 1).batches(batchSize: batch)
                for w in 1...5 {
                    let ranges = (0..<w).map { EvaluationShard(count: count, rank: $0, worldSize: w).wholeBatchRange(batchSize: batch) }
                    XCTAssertEqual(ranges.flatMap { Array($0) }, Array(0..<count), "count \(count) batch \(batch) ranks \(w)")
                    let formed = ranges.flatMap { r in stride(from: r.lowerBound, to: r.upperBound, by: batch).map { Array($0 ..< min($0 + batch, r.upperBound)) } }
                    XCTAssertEqual(formed, oneRank, "count \(count) batch \(batch) ranks \(w)")
                }
            }
        }
        XCTAssertEqual(EvaluationShard(count: 100, rank: 1, worldSize: 2).wholeBatchRange(batchSize: 32), 64 ..< 100)
    }
}
