import Foundation
import DaftKernels

/// Stochastic gradient descent exactly as `torch.optim.SGD` (dampening, Nesterov, L2 weight decay),
/// with parameter groups that each have their own learning rate and settings.
///
/// Per parameter p with gradient g: g ← g + wd·p; buf ← g on the first step, else buf ← μ·buf + (1−d)·g;
/// g ← g + μ·buf (Nesterov) or buf; p ← p − lr·g. Momentum buffers live in one arena laid out like the
/// parameters, so the checkpoint holds them as one tensor.
public final class SGD {
    /// One parameter group (e.g. backbone at η_b, head at η_h).
    public struct Group: Codable, Equatable {
        public var name: String
        public var parameterIndices: [Int]
        public var lr: Double
        public var momentum: Double
        public var dampening: Double
        public var weightDecay: Double
        public var nesterov: Bool
        public init(name: String, parameterIndices: [Int], lr: Double, momentum: Double = 0.9, dampening: Double = 0,
                    weightDecay: Double = 0, nesterov: Bool = false) {
            self.name = name; self.parameterIndices = parameterIndices; self.lr = lr; self.momentum = momentum
            self.dampening = dampening; self.weightDecay = weightDecay; self.nesterov = nesterov
        }
    }

    public var groups: [Group]
    let store: ParameterStore
    /// Momentum buffers, laid out like the parameter arena.
    public let momentumBuffers: FloatBuffer
    /// Whether each parameter's momentum buffer has been initialised (PyTorch's "first step" rule).
    public var hasMomentum: [Bool]

    public init(store: ParameterStore, groups: [Group]) {
        self.store = store
        self.groups = groups
        momentumBuffers = FloatBuffer(capacity: store.parameterCount)
        hasMomentum = Array(repeating: false, count: store.parameterEntries.count)
        var seen = Set<Int>()
        for g in groups { for i in g.parameterIndices { precondition(seen.insert(i).inserted, "parameter \(i) in two groups") } }
    }

    /// Groups "backbone" (every parameter of `store` not in the head) and "head" (fc.*), minus frozen ones.
    public static func backboneAndHead(store: ParameterStore, lrBackbone: Double, lrHead: Double, momentum: Double = 0.9,
                                       weightDecay: Double = 0, nesterov: Bool = false, trainable: (ParameterStore.Entry) -> Bool = { _ in true }) -> [Group] {
        let bb = store.parameterEntries.filter { $0.group == .backbone && trainable($0) }.map(\.parameterIndex)
        let hd = store.parameterEntries.filter { $0.group == .head && trainable($0) }.map(\.parameterIndex)
        var r: [Group] = []
        if !bb.isEmpty { r.append(Group(name: "backbone", parameterIndices: bb, lr: lrBackbone, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)) }
        if !hd.isEmpty { r.append(Group(name: "head", parameterIndices: hd, lr: lrHead, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)) }
        return r
    }

    /// One update of every parameter in every group from the gradient arena (each large parameter's elements
    /// split over `ComputeThreads` in parts of at least `Elementwise.floatsPerPart`: every element's update is
    /// the same arithmetic on any thread count).
    public func step() {
        let P = store.parameterPointer, G = store.gradientPointer, B = momentumBuffers.pointer
        for g in groups {
            let lr = Float(g.lr), mu = Float(g.momentum), damp = Float(1 - g.dampening), wd = Float(g.weightDecay)
            let nesterov = g.nesterov
            for pi in g.parameterIndices {
                let e = store.parameterEntries[pi]
                let p = P + e.offset, gr = G + e.offset, b = B + e.offset
                let first = !hasMomentum[pi]
                if mu != 0 { hasMomentum[pi] = true }
                ComputeThreads.forEachRange(e.count, minimumPerPart: Elementwise.floatsPerPart) { range in
                    Elementwise.sgdUpdate(p + range.lowerBound, gradient: gr + range.lowerBound, momentum: b + range.lowerBound,
                                          count: range.count, lr: lr, mu: mu, damp: damp, wd: wd, first: first, nesterov: nesterov)
                }
            }
        }
    }
}

/// Cosine annealing (`torch.optim.lr_scheduler.CosineAnnealingLR`, closed form):
/// lr(t) = η_min + (η_base − η_min)·(1 + cos(π·t/T))/2, shared by every parameter group.
public struct CosineSchedule: Codable, Equatable {
    public var totalSteps: Int
    public var minFactor: Double
    public init(totalSteps: Int, minFactor: Double = 0) { self.totalSteps = max(1, totalSteps); self.minFactor = minFactor }

    /// Learning rate at position t (epochs or steps, same unit as totalSteps) for a base lr.
    public func lr(base: Double, at t: Int, etaMin: Double? = nil) -> Double {
        let lo = etaMin ?? base * minFactor
        return lo + (base - lo) * (1 + cos(Double.pi * Double(t) / Double(totalSteps))) / 2
    }
}
