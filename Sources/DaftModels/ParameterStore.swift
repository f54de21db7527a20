import DaftKernels

/// Which optimizer group a parameter belongs to: the new head or everything before it.
public enum ParameterGroup: String, Codable { case backbone, head }

/// All tensors of a model in one place, under torchvision `state_dict()` names.
///
/// Parameters live in one flat float arena (forward order) with a gradient arena of the same layout, so
/// gradient buckets are contiguous slices and the optimizer is one loop. Batch-norm running statistics
/// live in a float buffer arena; `num_batches_tracked` counters are Int64.
public final class ParameterStore {
    /// One named tensor.
    public struct Entry {
        public enum Kind { case parameter, runningStat, counter }
        public let name: String
        public let shape: [Int]
        public let kind: Kind
        /// Offset into the parameter arena (parameters), buffer arena (running stats) or counter array.
        public let offset: Int
        public let count: Int
        public let group: ParameterGroup
        /// Index among parameters (for gradient readiness), -1 for buffers.
        public let parameterIndex: Int
    }

    public private(set) var entries: [Entry] = []
    private var index: [String: Int] = [:]
    public private(set) var parameterCount = 0
    public private(set) var bufferCount = 0
    /// Entries of kind `.parameter`, in forward order.
    public private(set) var parameterEntries: [Entry] = []

    public private(set) var parameters = FloatBuffer()
    public private(set) var gradients = FloatBuffer()
    public private(set) var buffers = FloatBuffer()
    public var counters: [Int64] = []
    private var sealed = false

    public init() {}

    /// Registers a trainable tensor; returns its arena offset.
    public func addParameter(_ name: String, shape: [Int], group: ParameterGroup = .backbone) -> Int {
        precondition(!sealed && index[name] == nil, "duplicate or late parameter \(name)")
        let count = shape.reduce(1, *)
        let e = Entry(name: name, shape: shape, kind: .parameter, offset: parameterCount, count: count, group: group,
                      parameterIndex: parameterEntries.count)
        index[name] = entries.count
        entries.append(e)
        parameterEntries.append(e)
        parameterCount += count
        return e.offset
    }

    /// Registers a running statistic (float buffer); returns its offset.
    public func addRunningStat(_ name: String, shape: [Int]) -> Int {
        precondition(!sealed && index[name] == nil)
        let count = shape.reduce(1, *)
        let e = Entry(name: name, shape: shape, kind: .runningStat, offset: bufferCount, count: count, group: .backbone, parameterIndex: -1)
        index[name] = entries.count
        entries.append(e)
        bufferCount += count
        return e.offset
    }

    /// Registers an Int64 scalar counter (`num_batches_tracked`); returns its index.
    public func addCounter(_ name: String) -> Int {
        precondition(!sealed && index[name] == nil)
        let e = Entry(name: name, shape: [], kind: .counter, offset: counters.count, count: 1, group: .backbone, parameterIndex: -1)
        index[name] = entries.count
        entries.append(e)
        counters.append(0)
        return e.offset
    }

    /// Allocates the arenas once every tensor is registered.
    public func seal() {
        precondition(!sealed)
        sealed = true
        parameters.reserve(parameterCount); parameters.zero(parameterCount)
        gradients.reserve(parameterCount); gradients.zero(parameterCount)
        buffers.reserve(bufferCount); buffers.zero(bufferCount)
    }

    public func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

    public var parameterPointer: UnsafeMutablePointer<Float> { parameters.pointer }
    public var gradientPointer: UnsafeMutablePointer<Float> { gradients.pointer }
    public var bufferPointer: UnsafeMutablePointer<Float> { buffers.pointer }

    /// Sets every gradient to zero (start of a step).
    public func zeroGradients() { gradients.zero(parameterCount) }

    /// The float values of a parameter or running statistic.
    public func values(_ name: String) -> [Float] {
        guard let e = entry(name) else { preconditionFailure("no tensor \(name)") }
        switch e.kind {
        case .parameter: return Array(UnsafeBufferPointer(start: parameters.pointer + e.offset, count: e.count))
        case .runningStat: return Array(UnsafeBufferPointer(start: buffers.pointer + e.offset, count: e.count))
        case .counter: return [Float(counters[e.offset])]
        }
    }

    /// The gradient of a parameter.
    public func gradient(_ name: String) -> [Float] {
        guard let e = entry(name), e.kind == .parameter else { preconditionFailure("no parameter \(name)") }
        return Array(UnsafeBufferPointer(start: gradients.pointer + e.offset, count: e.count))
    }

    /// Overwrites a float tensor (parameter or running statistic).
    public func setValues(_ name: String, _ values: [Float]) {
        guard let e = entry(name), e.kind != .counter, values.count == e.count else { preconditionFailure("bad set \(name)") }
        let base = e.kind == .parameter ? parameters.pointer : buffers.pointer
        values.withUnsafeBufferPointer { (base + e.offset).update(from: $0.baseAddress!, count: e.count) }
    }

    /// All parameters as one array (for checksums and comparisons).
    public func parameterArray() -> [Float] { parameters.array(parameterCount) }
    public func bufferArray() -> [Float] { buffers.array(bufferCount) }

    /// Copies every tensor value from another store with the same layout.
    public func copyValues(from other: ParameterStore) {
        precondition(other.parameterCount == parameterCount && other.bufferCount == bufferCount && other.counters.count == counters.count)
        parameters.pointer.update(from: other.parameters.pointer, count: parameterCount)
        buffers.pointer.update(from: other.buffers.pointer, count: bufferCount)
        counters = other.counters
    }
}
