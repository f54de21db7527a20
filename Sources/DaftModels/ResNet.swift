import DaftKernels
import DaftDistributed

/// Architecture of a torchvision-style ResNet: stem, block type, widths and blocks per stage.
///
/// `widths` are torchvision's `planes` per stage (a stage outputs `widths[s] × expansion` channels);
/// `bottleneckWidths` are the inner 3×3 widths of Bottleneck blocks when they differ from `widths`
/// (wide_resnet50_2 / wide_resnet101_2: twice `planes`), `nil` otherwise.
public struct ResNetConfig: Equatable, Codable {
    public enum Stem: String, Codable { case imagenet, small }
    public enum Block: String, Codable { case basic, bottleneck }
    public var arch: String
    public var stem: Stem
    public var block: Block
    public var widths: [Int]
    public var blocks: [Int]
    public var inChannels: Int
    public var numClasses: Int
    public var bottleneckWidths: [Int]?

    public init(arch: String, stem: Stem, block: Block, widths: [Int], blocks: [Int], inChannels: Int, numClasses: Int,
                bottleneckWidths: [Int]? = nil) {
        self.arch = arch; self.stem = stem; self.block = block; self.widths = widths; self.blocks = blocks
        self.inChannels = inChannels; self.numClasses = numClasses; self.bottleneckWidths = bottleneckWidths
    }

    public var expansion: Int { block == .basic ? 1 : 4 }
    public var featureDimension: Int { widths.last! * expansion }
    /// The inner width of stage `s`'s blocks (the 3×3 convolution's channels).
    public func innerWidth(stage s: Int) -> Int { bottleneckWidths?[s] ?? widths[s] }

    /// The names `--arch` accepts.
    public static let knownArchitectures = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                            "wide_resnet50_2", "wide_resnet101_2", "resnet20", "resnet32", "resnet44", "resnet56"]

    /// A literature architecture by name; `widths` overrides the per-stage widths.
    public static func named(_ arch: String, inChannels: Int, numClasses: Int, widths: [Int]? = nil) throws -> ResNetConfig {
        var c: ResNetConfig
        let imagenetWidths = [64, 128, 256, 512]
        switch arch {
        case "resnet18": c = .init(arch: arch, stem: .imagenet, block: .basic, widths: imagenetWidths, blocks: [2, 2, 2, 2], inChannels: inChannels, numClasses: numClasses)
        case "resnet34": c = .init(arch: arch, stem: .imagenet, block: .basic, widths: imagenetWidths, blocks: [3, 4, 6, 3], inChannels: inChannels, numClasses: numClasses)
        case "resnet50": c = .init(arch: arch, stem: .imagenet, block: .bottleneck, widths: imagenetWidths, blocks: [3, 4, 6, 3], inChannels: inChannels, numClasses: numClasses)
        case "resnet101": c = .init(arch: arch, stem: .imagenet, block: .bottleneck, widths: imagenetWidths, blocks: [3, 4, 23, 3], inChannels: inChannels, numClasses: numClasses)
        case "resnet152": c = .init(arch: arch, stem: .imagenet, block: .bottleneck, widths: imagenetWidths, blocks: [3, 8, 36, 3], inChannels: inChannels, numClasses: numClasses)
        case "wide_resnet50_2", "wide_resnet101_2":
            c = .init(arch: arch, stem: .imagenet, block: .bottleneck, widths: imagenetWidths, blocks: arch == "wide_resnet50_2" ? [3, 4, 6, 3] : [3, 4, 23, 3],
                      inChannels: inChannels, numClasses: numClasses, bottleneckWidths: imagenetWidths.map { $0 * 2 })
        case "resnet20", "resnet32", "resnet44", "resnet56":
            let n = (Int(arch.dropFirst(6))! - 2) / 6
            c = .init(arch: arch, stem: .small, block: .basic, widths: [16, 32, 64], blocks: [n, n, n], inChannels: inChannels, numClasses: numClasses)
        default:
            throw ModelError("unknown --arch '\(arch)'; known: \(knownArchitectures.joined(separator: ", "))")
        }
        if let widths {
            guard widths.count == c.widths.count, widths.allSatisfy({ $0 > 0 }) else {
                throw ModelError("--widths for \(arch) needs \(c.widths.count) positive values, got \(widths)")
            }
            // wide variants keep their inner/outer width ratio
            if let inner = c.bottleneckWidths { c.bottleneckWidths = (0..<widths.count).map { widths[$0] * inner[$0] / c.widths[$0] } }
            c.widths = widths
        }
        guard inChannels > 0, numClasses > 0 else { throw ModelError("--in-channels and --num-classes must be positive") }
        return c
    }

    /// The literature name of a stem / block / blocks-per-stage combination (`resnet18`, `wide_resnet50_2`,
    /// `resnet20` …), or `resnet` for a combination with no name. Widths other than the literature's keep the
    /// name (as `--arch resnet18 --widths …` does).
    public static func literatureName(stem: Stem, block: Block, blocks: [Int], wide: Bool) -> String {
        switch (stem, block, blocks, wide) {
        case (.imagenet, .basic, [2, 2, 2, 2], false): return "resnet18"
        case (.imagenet, .basic, [3, 4, 6, 3], false): return "resnet34"
        case (.imagenet, .bottleneck, [3, 4, 6, 3], false): return "resnet50"
        case (.imagenet, .bottleneck, [3, 4, 23, 3], false): return "resnet101"
        case (.imagenet, .bottleneck, [3, 8, 36, 3], false): return "resnet152"
        case (.imagenet, .bottleneck, [3, 4, 6, 3], true): return "wide_resnet50_2"
        case (.imagenet, .bottleneck, [3, 4, 23, 3], true): return "wide_resnet101_2"
        case (.small, .basic, let b, false) where b.count == 3 && Set(b).count == 1 && [3, 5, 7, 9].contains(b[0]):
            return "resnet\(6 * b[0] + 2)"
        default: return "resnet"
        }
    }

    /// safetensors `__metadata__` describing the architecture (so a PyTorch user can rebuild it).
    public var metadata: [String: String] {
        var m = ["arch": arch, "stem": stem.rawValue, "block": block.rawValue,
                 "widths": widths.map(String.init).joined(separator: ","), "blocks": blocks.map(String.init).joined(separator: ","),
                 "in_channels": String(inChannels), "num_classes": String(numClasses)]
        if let b = bottleneckWidths { m["bottleneck_widths"] = b.map(String.init).joined(separator: ",") }
        return m
    }

    /// One line for people: `resnet18: 7×7 stem + max-pool, BasicBlock, blocks 2,2,2,2, widths 64,128,256,512, 3 → 1000`.
    public var summary: String {
        let stemText = stem == .imagenet ? "7×7 stride-2 stem + 3×3 max-pool" : "3×3 stem"
        var s = "\(arch): \(stemText), \(block == .basic ? "BasicBlock" : "Bottleneck"), blocks \(blocks.map(String.init).joined(separator: ",")), widths \(widths.map(String.init).joined(separator: ","))"
        if let b = bottleneckWidths { s += " (inner \(b.map(String.init).joined(separator: ",")))" }
        return s + ", \(inChannels) input channel(s), \(numClasses) classes, \(featureDimension) features"
    }
}

import Foundation

/// A torchvision ResNet with explicit forward and backward (llm.c style): stem, residual stages, global
/// average pool and a linear head, all tensors in one `ParameterStore` under torchvision names.
///
/// Stages are numbered 0 (stem), 1…S (layer1…layerS), S+1 (fc). `trainableFromStage` freezes every stage
/// below it: no gradients, backward stops there, and its batch norms run in evaluation behaviour.
public final class ResNet {
    public let config: ResNetConfig
    public let store = ParameterStore()
    public let stem: ConvBN
    public let stages: [[ResidualBlock]]
    let fcWeightOffset: Int, fcBiasOffset: Int
    public let fcWeightIndex: Int, fcBiasIndex: Int
    public let context = StepContext()
    let shared: SharedActivations

    // activations
    public private(set) var inputShape = Shape4(0, 0, 0, 0)
    let poolOut = FloatBuffer()
    /// The gradient of the max-pool's output (a `SharedActivations` block gradient).
    let dPoolOut: FloatBuffer
    var poolArgmax: UnsafeMutablePointer<Int32> = .allocate(capacity: 1)
    var poolArgmaxCapacity = 1
    var poolShape = Shape4(0, 0, 0, 0)
    public let features = FloatBuffer(), dFeatures = FloatBuffer()
    public let logits = FloatBuffer(), dLogits = FloatBuffer()
    /// The model's own copy of the last forward's input (the stem's weight gradient needs it in backward,
    /// after the caller's array may be gone).
    let input = FloatBuffer()
    public private(set) var batch = 0

    /// BN behaviour for trainable stages during training.
    public var trainBatchNormMode: BatchNormMode = .train
    /// Stages below this are frozen (0 = everything trains; stageCount+1 = only the head).
    public var trainableFromStage = 0

    public init(_ config: ResNetConfig) {
        self.config = config
        let s = store
        let sh = SharedActivations()
        shared = sh
        // block j's output gradient is blockGradients[j % 2]; the stem's (or, with the max-pool, the pool's) is the
        // one before block 0, and with the max-pool the stem's is the other one again
        let stemGradient = config.stem == .imagenet ? sh.blockGradients[0] : sh.blockGradients[1]
        switch config.stem {
        case .imagenet:
            stem = ConvBN(conv: "conv1", bn: "bn1", geometry: ConvGeometry(cin: config.inChannels, cout: config.widths[0], kernel: 7, stride: 2, padding: 3), relu: true, store: s,
                          dOut: stemGradient, dConvOut: sh.convGradient)
        case .small:
            stem = ConvBN(conv: "conv1", bn: "bn1", geometry: ConvGeometry(cin: config.inChannels, cout: config.widths[0], kernel: 3, stride: 1, padding: 1), relu: true, store: s,
                          dOut: stemGradient, dConvOut: sh.convGradient)
        }
        dPoolOut = sh.blockGradients[1]
        var blockIndex = 0
        var inPlanes = config.widths[0]
        var stages: [[ResidualBlock]] = []
        for (si, width) in config.widths.enumerated() {
            let inner = config.innerWidth(stage: si)
            var blocks: [ResidualBlock] = []
            for bi in 0..<config.blocks[si] {
                let stride = (bi == 0 && si > 0) ? 2 : 1
                let p = "layer\(si + 1).\(bi)"
                let outPlanes = width * config.expansion
                var units: [ConvBN] = []
                // inner units (ReLU) keep their outputs and alternate the shared gradients; the last unit's output
                // becomes the block's (the join adds the shortcut in place), its gradient is the block's
                func innerUnit(_ k: Int, _ name: String, _ bn: String, _ g: ConvGeometry) -> ConvBN {
                    ConvBN(conv: name, bn: bn, geometry: g, relu: true, store: s, dOut: sh.unitGradients[k % 2], dConvOut: sh.convGradient)
                }
                func lastUnit(_ name: String, _ bn: String, _ g: ConvGeometry) -> ConvBN {
                    ConvBN(conv: name, bn: bn, geometry: g, relu: false, store: s, dOut: nil, dConvOut: sh.convGradient)
                }
                switch config.block {
                case .basic:
                    units.append(innerUnit(0, "\(p).conv1", "\(p).bn1", ConvGeometry(cin: inPlanes, cout: width, kernel: 3, stride: stride, padding: 1)))
                    units.append(lastUnit("\(p).conv2", "\(p).bn2", ConvGeometry(cin: width, cout: width, kernel: 3, stride: 1, padding: 1)))
                case .bottleneck:
                    units.append(innerUnit(0, "\(p).conv1", "\(p).bn1", ConvGeometry(cin: inPlanes, cout: inner, kernel: 1)))
                    units.append(innerUnit(1, "\(p).conv2", "\(p).bn2", ConvGeometry(cin: inner, cout: inner, kernel: 3, stride: stride, padding: 1)))
                    units.append(lastUnit("\(p).conv3", "\(p).bn3", ConvGeometry(cin: inner, cout: outPlanes, kernel: 1)))
                }
                var ds: ConvBN? = nil
                if stride != 1 || inPlanes != outPlanes {
                    ds = ConvBN(conv: "\(p).downsample.0", bn: "\(p).downsample.1", geometry: ConvGeometry(cin: inPlanes, cout: outPlanes, kernel: 1, stride: stride), relu: false, store: s,
                                out: sh.shortcutOutput, dOut: nil, dConvOut: sh.convGradient)
                }
                blocks.append(ResidualBlock(name: p, units: units, downsample: ds, dOut: sh.blockGradients[blockIndex % 2]))
                blockIndex += 1
                inPlanes = outPlanes
            }
            stages.append(blocks)
        }
        self.stages = stages
        fcWeightOffset = s.addParameter("fc.weight", shape: [config.numClasses, config.featureDimension], group: .head)
        fcWeightIndex = s.parameterEntries.count - 1
        fcBiasOffset = s.addParameter("fc.bias", shape: [config.numClasses], group: .head)
        fcBiasIndex = s.parameterEntries.count - 1
        s.seal()
        var rng = SplitMix64(seed: 0)
        resetParameters(rng: &rng)
    }

    deinit { poolArgmax.deallocate() }

    public var stageCount: Int { stages.count }
    public var headStage: Int { stages.count + 1 }

    /// Every ConvBN unit in forward order with the stage it belongs to.
    public var units: [(stage: Int, unit: ConvBN)] {
        var r: [(Int, ConvBN)] = [(0, stem)]
        for (si, blocks) in stages.enumerated() {
            for b in blocks { for u in b.units { r.append((si + 1, u)) }; if let d = b.downsample { r.append((si + 1, d)) } }
        }
        return r
    }

    /// Every batch-norm layer in forward order.
    public var batchNorms: [BatchNorm2d] { units.map { $0.unit.bn } }

    /// The stage (0…S+1) a tensor name belongs to.
    public func stage(of name: String) -> Int {
        if name.hasPrefix("fc.") { return headStage }
        if name.hasPrefix("layer"), let dot = name.firstIndex(of: "."), let k = Int(name[name.index(name.startIndex, offsetBy: 5)..<dot]) { return k }
        return 0
    }

    public var fcWeight: UnsafeMutablePointer<Float> { store.parameterPointer + fcWeightOffset }
    public var fcBias: UnsafeMutablePointer<Float> { store.parameterPointer + fcBiasOffset }

    /// torchvision's initialisation: Kaiming-normal convs, BN γ=1 β=0, fc uniform(±1/√in).
    public func resetParameters(rng: inout SplitMix64) {
        for (_, u) in units { u.resetParameters(rng: &rng) }
        let bound = 1 / Double(config.featureDimension).squareRoot()
        for i in 0..<(config.numClasses * config.featureDimension) { fcWeight[i] = Float((rng.nextUnit() * 2 - 1) * bound) }
        for i in 0..<config.numClasses { fcBias[i] = Float((rng.nextUnit() * 2 - 1) * bound) }
    }

    /// Sets the head to zero (DAFT's zero-initialised linear head).
    public func zeroHead() {
        fcWeight.update(repeating: 0, count: config.numClasses * config.featureDimension)
        fcBias.update(repeating: 0, count: config.numClasses)
    }

    /// Forward pass to logits (`logits.pointer`, batch × classes). `training` selects batch statistics for
    /// trainable stages (frozen stages always use running statistics).
    public func forward(_ x: UnsafePointer<Float>, _ xs: Shape4, training: Bool) throws {
        precondition(xs.c == config.inChannels, "input has \(xs.c) channels, model expects \(config.inChannels)")
        inputShape = xs
        input.reserve(xs.count)
        input.pointer.update(from: x, count: xs.count)
        let x = UnsafePointer(input.pointer)
        batch = xs.n
        func mode(_ stage: Int) -> BatchNormMode { (training && stage >= trainableFromStage) ? trainBatchNormMode : .eval }
        try stem.forward(x, xs, mode: mode(0), context: context)
        var cur = UnsafePointer(stem.out.pointer), cs = stem.outShape
        if config.stem == .imagenet {
            poolShape = Elementwise.maxPoolShape(cs, kernel: 3, stride: 2, padding: 1)
            poolOut.reserve(poolShape.count); dPoolOut.reserve(poolShape.count)
            if poolArgmaxCapacity < poolShape.count {
                poolArgmax.deallocate()
                poolArgmax = .allocate(capacity: poolShape.count)
                poolArgmaxCapacity = poolShape.count
            }
            context.timed(.pooling) { Elementwise.maxPool(cur, cs, kernel: 3, stride: 2, padding: 1, poolOut.pointer, argmax: poolArgmax) }
            cur = UnsafePointer(poolOut.pointer); cs = poolShape
        }
        for (si, blocks) in stages.enumerated() {
            for b in blocks {
                try b.forward(cur, cs, mode: mode(si + 1), context: context)
                cur = UnsafePointer(b.out.pointer); cs = b.outShape
            }
        }
        let F = config.featureDimension, K = config.numClasses
        features.reserve(xs.n * F); dFeatures.reserve(xs.n * F)
        context.timed(.pooling) { Elementwise.globalAvgPool(cur, cs, features.pointer) }
        logits.reserve(xs.n * K); dLogits.reserve(xs.n * K)
        context.timed(.head, flops: 2 * Double(xs.n * F * K)) {
            LinearKernels.forward(features.pointer, batch: xs.n, inFeatures: F, weight: fcWeight, bias: fcBias, outFeatures: K, logits.pointer)
        }
    }

    /// The output of stage `s` (1…S) from the last forward, with its shape.
    public func stageOutput(_ s: Int) -> (pointer: UnsafeMutablePointer<Float>, shape: Shape4) {
        let b = stages[s - 1].last!
        return (b.out.pointer, b.outShape)
    }

    /// Gradient hooks into the backward: extra gradient added to a stage's output (1…S) or to the pooled
    /// features (stage S+1) before backpropagating through it (used by the feature-space prior).
    public var extraFeatureGradients: [Int: UnsafePointer<Float>] = [:]

    /// Backward from `dLogits` (filled by the loss). Accumulates parameter gradients of trainable stages.
    public func backward() {
        let F = config.featureDimension, K = config.numClasses, n = batch
        let ctx = context
        ctx.timed(.head, flops: 2 * Double(n * F * K) * (trainableFromStage <= stageCount ? 2 : 1)) {
            LinearKernels.backward(features.pointer, batch: n, inFeatures: F, weight: fcWeight, outFeatures: K, dy: dLogits.pointer,
                                   dWeight: store.gradientPointer + fcWeightOffset, dBias: store.gradientPointer + fcBiasOffset,
                                   dx: trainableFromStage <= stageCount ? dFeatures.pointer : nil)
        }
        ctx.ready(fcWeightIndex); ctx.ready(fcBiasIndex)
        if trainableFromStage > stageCount { return }
        if let extra = extraFeatureGradients[headStage] { Elementwise.accumulate(extra, into: dFeatures.pointer, count: n * F) }
        let last = stages.last!.last!
        ctx.timed(.pooling) { Elementwise.globalAvgPoolBackward(dFeatures.pointer, last.outShape, last.dOut.pointer) }
        for si in stride(from: stages.count - 1, through: 0, by: -1) {
            let stageIndex = si + 1
            if stageIndex < trainableFromStage { return }
            if let extra = extraFeatureGradients[stageIndex] {
                let o = stages[si].last!
                Elementwise.accumulate(extra, into: o.dOut.pointer, count: o.outShape.count)
            }
            let blocks = stages[si]
            for bi in stride(from: blocks.count - 1, through: 0, by: -1) {
                let b = blocks[bi]
                let (input, dInput) = previousActivation(stage: si, block: bi)
                let needInputGrad = !(bi == 0 && stageIndex == trainableFromStage) // nothing below is trained
                b.backward(input, dx: needInputGrad ? dInput?.pointer : nil, context: ctx)      // written, not added
            }
        }
        if trainableFromStage > 0 { return }
        if config.stem == .imagenet {
            ctx.timed(.pooling) {
                stem.dOut!.zero(stem.outShape.count)
                Elementwise.maxPoolBackwardAdd(dPoolOut.pointer, poolShape, argmax: poolArgmax, stem.dOut!.pointer)
            }
        }
        stem.backward(UnsafePointer(input.pointer), dx: nil, context: ctx)
    }

    /// The input of block (stage, block) and the buffer receiving its gradient.
    func previousActivation(stage si: Int, block bi: Int) -> (UnsafePointer<Float>, FloatBuffer?) {
        if bi > 0 { let p = stages[si][bi - 1]; return (UnsafePointer(p.out.pointer), p.dOut) }
        if si > 0 { let p = stages[si - 1].last!; return (UnsafePointer(p.out.pointer), p.dOut) }
        if config.stem == .imagenet { return (UnsafePointer(poolOut.pointer), dPoolOut) }
        return (UnsafePointer(stem.out.pointer), stem.dOut!)
    }

    /// Multiply-accumulates of one forward pass of one sample of shape c×h×w.
    public func forwardMACs(channels: Int, height: Int, width: Int) -> Int {
        var total = 0
        var s = Shape4(1, channels, height, width)
        total += stem.geometry.forwardMACs(s); s = stem.geometry.outputShape(s)
        if config.stem == .imagenet { s = Elementwise.maxPoolShape(s, kernel: 3, stride: 2, padding: 1) }
        for blocks in stages {
            for b in blocks {
                let input = s
                for u in b.units { total += u.geometry.forwardMACs(s); s = u.geometry.outputShape(s) }
                if let d = b.downsample { total += d.geometry.forwardMACs(input) }
            }
        }
        return total + config.featureDimension * config.numClasses
    }
}
