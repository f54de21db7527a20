import DaftInterop

extension ResNetConfig {
    /// The architecture a torchvision ResNet `state_dict` holds, read from tensor names and shapes alone (cli.md
    /// "Weights"): stem from `conv1.weight` (7×7 → ImageNet stem with max-pool, 3×3 → small-image stem), input
    /// channels from its second dimension, BasicBlock vs Bottleneck from `layer1.0.conv3`, stages and blocks from
    /// the `layerS.B.` names, widths from the convolution shapes, classes from `fc.weight`. Strides and the
    /// downsample rule are torchvision's (the first block of every stage after the first has stride 2).
    ///
    /// Metadata is optional; every architecture key a file carries (`arch`, `stem`, `block`, `widths`, `blocks`,
    /// `bottleneck_widths`, `in_channels`, `num_classes`) must agree with the tensors, or a one-line error names
    /// the key. Names under a uniform `module.` prefix (a DistributedDataParallel wrapper's state_dict) are read
    /// without it.
    public static func infer(from file: SafeTensorsFile, source: String) throws -> ResNetConfig {
        let tensors = StateDict.withoutDataParallelPrefix(file).tensors
        func shape(_ name: String) -> [Int]? { tensors[name]?.shape }
        func fail(_ what: String) -> ModelError { ModelError("\(source): \(what)") }

        guard let stemShape = shape("conv1.weight") else {
            let examples = tensors.keys.sorted().prefix(3).joined(separator: ", ")
            throw fail("not a torchvision ResNet state_dict: no 'conv1.weight' tensor (it holds \(tensors.count) tensors, e.g. \(examples.isEmpty ? "none" : examples))")
        }
        guard stemShape.count == 4, stemShape[2] == stemShape[3], [3, 7].contains(stemShape[2]) else {
            throw fail("'conv1.weight' has shape \(stemShape); a ResNet stem is [width, in_channels, 7, 7] (ImageNet) or [width, in_channels, 3, 3] (small-image)")
        }
        let stem: Stem = stemShape[2] == 7 ? .imagenet : .small
        guard let fc = shape("fc.weight"), fc.count == 2 else {
            throw fail("not a torchvision ResNet state_dict: no 2-D 'fc.weight' (the linear head) — a replaced head (e.g. nn.Sequential) cannot be loaded")
        }
        var stageCount = 0
        while tensors["layer\(stageCount + 1).0.conv1.weight"] != nil { stageCount += 1 }
        guard stageCount > 0 else { throw fail("not a torchvision ResNet state_dict: no residual stage ('layer1.0.conv1.weight' is missing)") }
        let block: Block = tensors["layer1.0.conv3.weight"] != nil ? .bottleneck : .basic

        var widths: [Int] = [], inner: [Int] = [], blocks: [Int] = []
        for s in 1...stageCount {
            var n = 0
            while tensors["layer\(s).\(n).conv1.weight"] != nil { n += 1 }
            blocks.append(n)
            let p = "layer\(s).0"
            guard let c1 = shape("\(p).conv1.weight"), c1.count == 4, let c2 = shape("\(p).conv2.weight"), c2.count == 4 else {
                throw fail("'\(p).conv1.weight' / '\(p).conv2.weight' are missing or not 4-D convolution weights")
            }
            switch block {
            case .basic:
                widths.append(c1[0]); inner.append(c1[0])
            case .bottleneck:
                guard let c3 = shape("\(p).conv3.weight"), c3.count == 4 else { throw fail("'\(p).conv3.weight' is missing or not 4-D (a Bottleneck block has conv1/conv2/conv3)") }
                guard c3[0] % 4 == 0 else { throw fail("'\(p).conv3.weight' has \(c3[0]) output channels, not a multiple of the Bottleneck expansion 4") }
                widths.append(c3[0] / 4); inner.append(c1[0])
            }
            if c2[1] != c2[0] {
                throw fail("'\(p).conv2.weight' has shape \(c2): grouped 3×3 convolutions (ResNeXt, groups = \(c2[1] > 0 ? c2[0] / c2[1] : 0)) are not supported")
            }
        }
        let wide = block == .bottleneck && zip(inner, widths).allSatisfy { $0 == 2 * $1 }
        let config = ResNetConfig(arch: literatureName(stem: stem, block: block, blocks: blocks, wide: wide), stem: stem, block: block,
                                  widths: widths, blocks: blocks, inChannels: stemShape[1], numClasses: fc[0],
                                  bottleneckWidths: inner == widths ? nil : inner)
        guard fc[1] == config.featureDimension else {
            throw fail("'fc.weight' has shape \(fc) but layer\(stageCount) outputs \(config.featureDimension) features")
        }
        try config.check(metadata: file.metadata, source: source)
        return config
    }

    /// Throws a one-line error naming the first architecture key of `metadata` that disagrees with this config.
    func check(metadata m: [String: String], source: String) throws {
        func list(_ v: [Int]) -> String { v.map(String.init).joined(separator: ",") }
        func normalized(_ text: String) -> String {
            text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ",")
        }
        var expected: [(key: String, value: String, from: String)] = [
            ("in_channels", String(inChannels), "conv1.weight"), ("num_classes", String(numClasses), "fc.weight"),
            ("stem", stem.rawValue, "conv1.weight"), ("block", block.rawValue, "layer1.0"),
            ("blocks", list(blocks), "the layerS.B names"), ("widths", list(widths), "the convolution shapes"),
        ]
        if let b = bottleneckWidths { expected.append(("bottleneck_widths", list(b), "the convolution shapes")) }
        if arch != "resnet" { expected.append(("arch", arch, "the tensors")) }
        for e in expected {
            guard let v = m[e.key] else { continue }
            let given = normalized(v)
            guard given == e.value else {
                throw ModelError("\(source): metadata '\(e.key)' = '\(v)' disagrees with \(e.from) (\(e.key) \(e.value))")
            }
        }
    }
}
