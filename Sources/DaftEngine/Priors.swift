import Foundation
import DaftKernels
import DaftModels
import DaftDistributed
import DaftInterop

// method.md §5: the pretrained model stays a reference during fine-tuning, in weight space (L2-SP) and in
// feature space (FT-LP's MAP form).

/// The L2-SP weight-space prior (Li et al. 2018):
/// `penalty = α/2 · Σ_backbone ‖θ − θ₀‖² + β/2 · Σ_head ‖θ‖²`.
///
/// θ₀ is a copy of the parameter arena taken at construction (the pretrained weights after BN conversion);
/// "backbone" are the entries of group `.backbone` (every conv weight, BN γ and β), "head" the entries of
/// group `.head` (`fc.weight`, `fc.bias`, which are pulled towards zero: the new head has no pretrained
/// value). Parameters for which `trainable` is false are left out of the penalty and get no gradient (a
/// frozen parameter equals θ₀ anyway; leaving it out keeps `penalty` the exact antiderivative of what
/// `addGradient` adds).
///
/// Distributed use: θ and θ₀ are identical on every rank, so every rank adds the same full prior
/// gradient; averaging gradients over ranks leaves it unchanged (mean of gᵣ + p = mean gᵣ + p). It can be
/// added right after `zeroGradients()` (the backward kernels accumulate, so gradient buckets that start
/// their all-reduce during the backward already carry it), or after the gradient all-reduce completes and
/// before the optimizer step. A zero coefficient adds nothing at all (not even `+0.0`), so `α = β = 0`
/// leaves the gradient arena bitwise identical to training without the prior.
public final class L2SPPrior {
    /// Weight of the backbone term (pull towards θ₀).
    public let alpha: Double
    /// Weight of the head term (pull towards zero).
    public let beta: Double
    /// θ₀: the parameter arena at construction, in arena layout.
    public let reference: [Float]

    struct Span { let offset: Int; let count: Int; let head: Bool }
    let spans: [Span]
    let parameterCount: Int

    /// Snapshots `reference`'s parameter arena as θ₀. The stores later passed to `penalty` / `addGradient`
    /// must have the same layout (same architecture).
    public init(reference store: ParameterStore, alpha: Double, beta: Double,
                trainable: (ParameterStore.Entry) -> Bool = { _ in true }) {
        precondition(alpha >= 0 && beta >= 0 && alpha.isFinite && beta.isFinite, "L2-SP coefficients must be finite and ≥ 0")
        self.alpha = alpha
        self.beta = beta
        reference = store.parameterArray()
        parameterCount = store.parameterCount
        spans = store.parameterEntries.filter(trainable).map { Span(offset: $0.offset, count: $0.count, head: $0.group == .head) }
    }

    /// The penalty at `store`'s current parameters, summed in float64.
    public func penalty(_ store: ParameterStore) -> Double {
        precondition(store.parameterCount == parameterCount, "L2-SP: store layout differs from the reference")
        let p = store.parameterPointer
        var backbone = 0.0, head = 0.0
        reference.withUnsafeBufferPointer { r in
            for s in spans {
                var acc = 0.0
                if s.head {
                    for i in s.offset..<(s.offset + s.count) { let v = Double(p[i]); acc += v * v }
                    head += acc
                } else {
                    for i in s.offset..<(s.offset + s.count) { let d = Double(p[i]) - Double(r[i]); acc += d * d }
                    backbone += acc
                }
            }
        }
        return alpha / 2 * backbone + beta / 2 * head
    }

    /// Adds the penalty's gradient into `store.gradientPointer`: α(θ − θ₀) for backbone entries, βθ for
    /// head entries (computed in float64, rounded once). Entries whose coefficient is zero are not touched.
    public func addGradient(to store: ParameterStore) {
        precondition(store.parameterCount == parameterCount, "L2-SP: store layout differs from the reference")
        let p = store.parameterPointer, g = store.gradientPointer
        reference.withUnsafeBufferPointer { r in
            for s in spans {
                if s.head {
                    guard beta != 0 else { continue }
                    for i in s.offset..<(s.offset + s.count) { g[i] += Float(beta * Double(p[i])) }
                } else {
                    guard alpha != 0 else { continue }
                    for i in s.offset..<(s.offset + s.count) { g[i] += Float(alpha * (Double(p[i]) - Double(r[i]))) }
                }
            }
        }
    }
}

/// The feature-space prior of FT-LP (Wang et al. 2024) in its MAP form (method.md §5):
/// `prior = λ · mean_layers mean_c [ m_c/σ²_c + log σ²_c ] / 2`, where m_c is the mean over samples (and
/// spatial positions) of (z − z₀)² in channel c, z the trained model's features, z₀ those of a frozen copy
/// of the pretrained extractor, and σ²_c = softplus(b_c) + 1e-5 a learned per-channel variance.
///
/// Layers are given by stage index: 1…S are the stage outputs `layerK` (after the block's residual add and
/// ReLU, `ResNet.stageOutput(k)`), S+1 is the penultimate pooled feature vector (`ResNet.features`).
///
/// Gradients. With L layers, C channels in a layer and n_c = samples·H·W values per channel,
/// ∂prior/∂z = λ/(L·C) · (z − z₀) / (σ²_c · n_c) per element, and
/// ∂prior/∂b_c = λ/(L·C) · ½ · (1/σ²_c − m_c/σ⁴_c) · sigmoid(b_c).
/// `forwardBackward` writes the former (times the rank-averaging factor below) into per-layer buffers and
/// installs them in `model.extraFeatureGradients`, which `ResNet.backward()` adds to the incoming gradient
/// of those activations. The b gradient is kept here; `step(lr:)` applies SGD with momentum to b (b is not
/// in the model's parameter arena; the engine should pass the head's learning rate, since b plays the
/// role of head-like scale parameters that must adapt fast).
///
/// Frozen copy. A separate `ResNet` with the same config, values copied from the reference store; its
/// forward runs with the trained model's BN behaviour (`trainableFromStage`, `trainBatchNormMode`, the
/// `training` flag) and its synchronized-BN communicator, so z₀ is computed exactly like z. It is never
/// backpropagated. A training-mode forward of the frozen copy updates *its own* BN running statistics and
/// counters; they never feed back (in training mode its outputs depend on batch statistics only; in
/// evaluation mode the running statistics are not updated), and the trained model is unaffected.
///
/// Distributed (method.md §7). m_c must be the global mean over the global batch: each rank computes its
/// per-channel Σ(z−z₀)² and its count (float64), and one all-reduce over all layers' sums and counts
/// (one collective per step; every rank joins, even with zero local samples) gives the global m_c. The
/// prior value and the b gradient are then identical on every rank (b is replicated and updated
/// identically, no further collective). The feature gradient of rank r's samples is the true gradient of
/// the global prior; since the engine later *averages* parameter gradients over W ranks (as with the
/// cross-entropy, whose per-rank gradient is scaled by W/B_global), the installed feature gradient is
/// multiplied by W, so the averaged parameter gradient is exactly the single-process gradient.
public final class FeaturePrior {
    /// One prior layer: which activation, its learned log-variance parameters and their state.
    public struct Layer {
        /// Stage index: 1…S (stage output) or S+1 (penultimate pooled features).
        public let stage: Int
        /// `layerK` or `penultimate`.
        public let name: String
        /// Channels of the activation.
        public let channels: Int
        /// Learned pre-softplus variance parameters b (σ² = softplus(b) + 1e-5).
        public var b: [Double]
        /// ∂prior/∂b from the last `forwardBackward`.
        public var bGradient: [Double]
        /// SGD momentum buffer of b.
        public var bMomentum: [Double]
        /// The last m_c (global mean of (z − z₀)² per channel).
        public var meanSquaredDistance: [Double]
        let extraGradient = FloatBuffer()
    }

    /// Weight λ of the prior in the loss.
    public let lambda: Double
    /// Momentum of the SGD update of b.
    public var momentum: Double
    /// The frozen pretrained extractor (never updated by the optimizer).
    public let frozen: ResNet
    /// The prior layers, in the order given at construction.
    public private(set) var layers: [Layer]
    /// The prior value from the last `forwardBackward` (identical on every rank).
    public private(set) var lastValue = 0.0
    var hasMomentum = false
    var sums: [Double] = []

    /// Floor added to softplus(b).
    public static let varianceFloor = 1e-5

    /// The activation name of a stage index for `config` (`layerK` or `penultimate`).
    public static func layerName(stage: Int, config: ResNetConfig) -> String {
        stage == config.widths.count + 1 ? "penultimate" : "layer\(stage)"
    }

    /// Parses `layerK` / `penultimate` into a stage index.
    public static func stage(named name: String, config: ResNetConfig) throws -> Int {
        if name == "penultimate" { return config.widths.count + 1 }
        if name.hasPrefix("layer"), let k = Int(name.dropFirst(5)), k >= 1, k <= config.widths.count { return k }
        throw ModelError("feature prior layer '\(name)' is not one of layer1…layer\(config.widths.count), penultimate")
    }

    /// Builds the frozen copy from `reference` (the pretrained store after BN conversion; parameters,
    /// running statistics and counters are copied) and initialises b = log(expm1(initialVariance)), so
    /// σ² = initialVariance + 1e-5.
    public init(reference: ParameterStore, config: ResNetConfig, stages: [Int], lambda: Double,
                initialVariance: Double = 0.1, momentum: Double = 0.9) throws {
        guard !stages.isEmpty, Set(stages).count == stages.count else { throw ModelError("feature prior: give distinct layers") }
        guard lambda >= 0, lambda.isFinite, initialVariance > 0, initialVariance.isFinite else {
            throw ModelError("feature prior: λ must be ≥ 0 and the initial variance > 0")
        }
        self.lambda = lambda
        self.momentum = momentum
        frozen = ResNet(config)
        guard frozen.store.parameterCount == reference.parameterCount, frozen.store.bufferCount == reference.bufferCount,
              frozen.store.counters.count == reference.counters.count else {
            throw ModelError("feature prior: reference store does not match architecture \(config.arch)")
        }
        frozen.store.copyValues(from: reference)
        let b0 = Foundation.log(Foundation.expm1(initialVariance))
        layers = try stages.map { s in
            guard s >= 1, s <= config.widths.count + 1 else {
                throw ModelError("feature prior: stage \(s) out of range 1…\(config.widths.count + 1)")
            }
            let c = s == config.widths.count + 1 ? config.featureDimension : config.widths[s - 1] * config.expansion
            return Layer(stage: s, name: FeaturePrior.layerName(stage: s, config: config), channels: c,
                         b: Array(repeating: b0, count: c), bGradient: Array(repeating: 0, count: c),
                         bMomentum: Array(repeating: 0, count: c), meanSquaredDistance: Array(repeating: 0, count: c))
        }
    }

    /// softplus as torch computes it (linear above 20).
    @inline(__always) static func softplus(_ x: Double) -> Double { x > 20 ? x : Foundation.log1p(Foundation.exp(x)) }
    @inline(__always) static func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

    /// σ²_c of layer `i`.
    public func variance(layer i: Int) -> [Double] { layers[i].b.map { FeaturePrior.softplus($0) + FeaturePrior.varianceFloor } }

    /// Overwrites b of layer `i` (checkpoint restore, tests).
    public func setLogVariance(layer i: Int, _ values: [Double]) {
        precondition(values.count == layers[i].channels, "feature prior: \(layers[i].name) has \(layers[i].channels) channels")
        layers[i].b = values
    }

    /// Runs the frozen copy on the same input, computes the prior (returned, also `lastValue`), the b
    /// gradients, and installs the feature gradients in `model.extraFeatureGradients`.
    ///
    /// Call after `model.forward(input, shape, training:)` and before `model.backward()`, with the same
    /// input, shape and `training` flag; the installed pointers stay valid until the next call. `communicator`
    /// (size > 1) makes the statistics global and scales the feature gradient by its size, see the type's
    /// documentation; pass the same communicator the gradients are averaged over (nil = one process).
    @discardableResult
    public func forwardBackward(model: ResNet, input: UnsafePointer<Float>, shape: Shape4, training: Bool,
                                communicator: Communicator?) throws -> Double {
        precondition(model.config == frozen.config, "feature prior: model architecture differs from the frozen copy")
        precondition(model.batch == shape.n, "feature prior: call after the trained model's forward on the same batch")
        frozen.trainableFromStage = model.trainableFromStage
        frozen.trainBatchNormMode = model.trainBatchNormMode
        frozen.context.sync = model.context.sync
        try frozen.forward(input, shape, training: training)

        // Σ (z − z₀)² per channel for every layer, then the counts, in one float64 buffer.
        let L = layers.count
        let total = layers.reduce(0) { $0 + $1.channels } + L
        if sums.count != total { sums = Array(repeating: 0, count: total) }
        var o = 0
        for (li, layer) in layers.enumerated() {
            let (z, z0, s) = activations(layer, model: model)
            let C = layer.channels, sp = s.spatial
            precondition(s.c == C, "feature prior: \(layer.name) has \(s.c) channels, expected \(C)")
            for c in 0..<C { sums[o + c] = 0 }
            for n in 0..<s.n {
                for c in 0..<C {
                    let base = (n * C + c) * sp
                    var acc = 0.0
                    for i in base..<(base + sp) { let d = Double(z[i] - z0[i]); acc += d * d }
                    sums[o + c] += acc
                }
            }
            sums[total - L + li] = Double(s.n * sp)
            o += C
        }
        var ranks = 1
        if let communicator, communicator.size > 1 {
            communicator.allReduceSum(&sums)
            ranks = communicator.size
        }

        var value = 0.0
        o = 0
        for li in 0..<L {
            let C = layers[li].channels
            let count = sums[total - L + li]
            let w = lambda / Double(L * C)
            let (z, z0, s) = activations(layers[li], model: model)
            let extra = layers[li].extraGradient.reserve(max(s.count, 1))
            var term = 0.0
            for c in 0..<C {
                let b = layers[li].b[c]
                let s2 = FeaturePrior.softplus(b) + FeaturePrior.varianceFloor
                let m = count > 0 ? sums[o + c] / count : 0
                layers[li].meanSquaredDistance[c] = m
                term += m / s2 + Foundation.log(s2)
                layers[li].bGradient[c] = w * 0.5 * (1 / s2 - m / (s2 * s2)) * FeaturePrior.sigmoid(b)
                let k = count > 0 ? Float(Double(ranks) * w / (s2 * count)) : 0
                let sp = s.spatial
                for n in 0..<s.n {
                    let base = (n * C + c) * sp
                    for i in base..<(base + sp) { extra[i] = k * (z[i] - z0[i]) }
                }
            }
            value += lambda * term / Double(2 * C * L)
            model.extraFeatureGradients[layers[li].stage] = UnsafePointer(extra)
            o += C
        }
        lastValue = value
        return value
    }

    func activations(_ layer: Layer, model: ResNet) -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, Shape4) {
        if layer.stage == model.stageCount + 1 {
            return (model.features.pointer, frozen.features.pointer, Shape4(model.batch, layer.channels, 1, 1))
        }
        let a = model.stageOutput(layer.stage), b = frozen.stageOutput(layer.stage)
        precondition(a.shape == b.shape)
        return (a.pointer, b.pointer, a.shape)
    }

    /// Removes this prior's gradient hooks from `model` (e.g. for evaluation or when the prior is switched off).
    public func uninstall(from model: ResNet) {
        for l in layers { model.extraFeatureGradients[l.stage] = nil }
    }

    /// One SGD-with-momentum update of every b from the last `forwardBackward` (torch.optim.SGD rule, no
    /// dampening or weight decay: buf = g on the first step, else μ·buf + g; b −= lr·buf).
    public func step(lr: Double) {
        for li in layers.indices {
            for c in 0..<layers[li].channels {
                let g = layers[li].bGradient[c]
                let buf = (hasMomentum || momentum == 0) ? momentum * layers[li].bMomentum[c] + g : g
                layers[li].bMomentum[c] = buf
                layers[li].b[c] -= lr * buf
            }
        }
        if momentum != 0 { hasMomentum = true }
    }

    /// b and its momentum buffers as F64 tensors `<prefix><layer>.b`, `<prefix><layer>.momentum` (plus
    /// `<prefix>has_momentum`), for checkpoints.
    public func stateTensors(prefix: String = "feature_prior.") -> [String: SafeTensor] {
        var t: [String: SafeTensor] = [:]
        for l in layers {
            t["\(prefix)\(l.name).b"] = SafeTensor(doubles: l.b, shape: [l.channels])
            t["\(prefix)\(l.name).momentum"] = SafeTensor(doubles: l.bMomentum, shape: [l.channels])
        }
        t["\(prefix)has_momentum"] = SafeTensor(int64s: [hasMomentum ? 1 : 0], shape: [1])
        return t
    }

    /// Restores what `stateTensors` wrote (same layers).
    public func loadState(_ file: SafeTensorsFile, prefix: String = "feature_prior.", source: String) throws {
        for li in layers.indices {
            let b = try file.tensor("\(prefix)\(layers[li].name).b", source: source).doubles()
            let m = try file.tensor("\(prefix)\(layers[li].name).momentum", source: source).doubles()
            guard b.count == layers[li].channels, m.count == layers[li].channels else {
                throw ModelError("\(source): feature prior \(layers[li].name) has \(b.count) values, expected \(layers[li].channels)")
            }
            layers[li].b = b
            layers[li].bMomentum = m
        }
        hasMomentum = try file.tensor("\(prefix)has_momentum", source: source).int64s().first == 1
    }
}
