/// A labelled image set the engine batches: held in memory (`ImageDataset`: IDX, NPY, Fashion-MNIST) or
/// streamed from image files (`ImageFolderDataset`: `folder:DIR`). Every image of a set comes out as
/// `channels × height × width`; `batch` is a pure function of (indices, seed, epoch), so any rank count and any
/// batch order give the same samples.
public protocol LabelledImages: Sendable {
    /// A human-readable name (usually the data specification it was loaded from).
    var name: String { get }
    /// Number of samples.
    var count: Int { get }
    /// Channels, height and width of every batch image.
    var channels: Int { get }
    var height: Int { get }
    var width: Int { get }
    /// Number of classes; every label is in `0 ..< numClasses`.
    var numClasses: Int { get }
    /// One label per sample (known without reading any image).
    var labels: [Int32] { get }
    /// The first `n` samples.
    func prefix(_ n: Int) -> any LabelledImages
    /// A float32 NCHW batch of the samples at `indices`, normalised with `normalization`; with `augmentation`
    /// the set's training augmentation (draws from (seed, epoch, sample index) only), else its evaluation view.
    /// Throws a one-line error naming the file of a sample that cannot be read.
    func batch(indices: [Int], normalization: Normalization, augmentation: Augmentation?, seed: UInt64,
               epoch: Int) throws -> (x: [Float], y: [Int32])
}

extension LabelledImages {
    /// Throws a one-line `DataError` naming this data set and the first sample whose label is not in
    /// `0 ..< classes`, the class count of the model head that will read the labels (`head` names it, e.g.
    /// "the head of the model"). Call it before any step: a loss on such a label indexes past the logits.
    public func checkLabels(fitHeadOf classes: Int, head: String) throws {
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classes }) {
            throw DataError("\(name): label \(labels[bad]) at index \(bad) is outside \(head), which has \(classes) classes (0...\(classes - 1))")
        }
    }
}

extension ImageDataset: LabelledImages {
    public func prefix(_ n: Int) -> any LabelledImages { n >= count ? self : subset(0..<max(n, 0)) }

    public func batch(indices: [Int], normalization: Normalization, augmentation: Augmentation?, seed: UInt64,
                      epoch: Int) throws -> (x: [Float], y: [Int32]) {
        makeBatch(dataset: self, indices: indices, normalization: normalization, augmentation: augmentation, seed: seed, epoch: epoch)
    }
}
