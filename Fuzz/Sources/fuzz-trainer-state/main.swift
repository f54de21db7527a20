// libFuzzer target: a checkpoint's trainer.json (launch/fuzz.sh trainer-state), decoded as `--resume` decodes
// it (Coordinator.decodeSavedTrainer: JSONDecoder with the inf/-inf/nan strings, then the range checks).
// A decode either throws a one-line ModelError naming the source, or returns a state with the ranges resuming
// relies on (RunRecords keeps `metricsLines` lines of metrics.jsonl; the loops count up from the counters),
// which re-encodes with the writer's encoder to JSON that decodes and encodes to the same bytes.
@testable import DaftCoordinator
import CFuzzMain
import DaftModels
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let saved: Coordinator.SavedTrainer
    do {
        saved = try Coordinator.decodeSavedTrainer(bytes, source: "fuzz/trainer.json")
    } catch let error as ModelError {
        precondition(error.message.hasPrefix("fuzz/trainer.json: ") && !error.message.contains("\n"),
                     "not a one-line error naming the source: \(error.message)")
        return 0
    } catch {
        fatalError("decodeSavedTrainer threw a non-ModelError: \(error)")
    }
    let s = saved.state
    precondition(s.epoch >= 0 && s.stepInEpoch >= 0 && s.globalStep >= 0 && s.epochsWithoutImprovement >= 0
                 && s.bestEpoch >= -1 && (s.metricsLines ?? 0) >= 0 && saved.worldSize >= 1, "out-of-range state accepted")
    _ = ["a", "b"].prefix(s.metricsLines ?? 0)   // what RunRecords.open does with it
    do {
        let encoded = try Coordinator.sortedEncoder().encode(saved)
        let again = try Coordinator.decodeSavedTrainer([UInt8](encoded), source: "re-encoded")
        let reencoded = try Coordinator.sortedEncoder().encode(again)
        precondition(reencoded == encoded, "re-encoding changed the state")
    } catch {
        fatalError("a decoded trainer state does not round-trip: \(error)")
    }
    return 0
}
