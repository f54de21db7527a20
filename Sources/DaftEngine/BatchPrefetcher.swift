import Foundation

/// Makes the training step's batches ahead of time on a background thread, so decoding and augmentation
/// (an image folder's JPEG decode, resize and crop) overlap the forward/backward of the step before.
///
/// A bounded queue: at most `depth` batches are made ahead of the one asked for. `batch(epoch:step:)` returns
/// the batch `make(epoch, step)` gives — computed in the background when it was foreseen, else right away — and
/// then schedules the following steps of the same epoch (`stepsPerEpoch` of them). Results never depend on the
/// timing: `make` is a pure function of (epoch, step). An error making a batch is rethrown by the call that
/// asks for that batch.
final class BatchPrefetcher<Batch>: @unchecked Sendable {
    private let make: (Int, Int) throws -> Batch
    private let depth: Int
    private let stepsPerEpoch: Int
    private let queue = DispatchQueue(label: "daft.batch-prefetch")
    private let lock = NSCondition()
    private var ready: [Key: Result<Batch, Error>] = [:]
    private var pending: Set<Key> = []

    private struct Key: Hashable { var epoch: Int, step: Int }

    init(depth: Int, stepsPerEpoch: Int, make: @escaping (Int, Int) throws -> Batch) {
        self.depth = depth; self.stepsPerEpoch = stepsPerEpoch; self.make = make
    }

    /// The batch of (epoch, step); schedules the next `depth` steps of the epoch.
    func batch(epoch: Int, step: Int) throws -> Batch {
        let key = Key(epoch: epoch, step: step)
        lock.lock()
        // a batch nobody will ask for any more (a resume, an early stop) is dropped
        for k in ready.keys where k.epoch != epoch || k.step < step { ready[k] = nil }
        let foreseen = pending.contains(key) || ready[key] != nil
        while pending.contains(key) { lock.wait() }
        let result = ready.removeValue(forKey: key)
        lock.unlock()
        let batch = try foreseen ? result!.get() : make(epoch, step)
        schedule(after: key)
        return batch
    }

    private func schedule(after key: Key) {
        guard depth > 0 else { return }
        lock.lock(); defer { lock.unlock() }
        for s in (key.step + 1)..<min(stepsPerEpoch, key.step + 1 + depth) {
            let k = Key(epoch: key.epoch, step: s)
            guard !pending.contains(k), ready[k] == nil else { continue }
            pending.insert(k)
            queue.async { [self] in
                let r = Result { try make(k.epoch, k.step) }
                lock.lock()
                pending.remove(k); ready[k] = r
                lock.broadcast()
                lock.unlock()
            }
        }
    }
}
