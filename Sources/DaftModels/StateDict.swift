import Foundation
import DaftInterop

/// Moves a model's tensors to and from safetensors files with torchvision `state_dict()` names.
public enum StateDict {
    /// Every parameter and buffer as a safetensors file (F32 tensors, I64 `num_batches_tracked`), with the
    /// architecture and preprocessing in `__metadata__`.
    public static func file(_ model: ResNet, extraMetadata: [String: String] = [:]) -> SafeTensorsFile {
        var f = SafeTensorsFile()
        let s = model.store
        for e in s.entries {
            switch e.kind {
            case .parameter, .runningStat: f.tensors[e.name] = SafeTensor(floats: s.values(e.name), shape: e.shape)
            case .counter: f.tensors[e.name] = SafeTensor(int64s: [s.counters[e.offset]], shape: [])
            }
        }
        f.metadata = model.config.metadata.merging(extraMetadata) { _, new in new }
        f.metadata["format"] = "pt"
        return f
    }

    /// Loads tensors into the model, strictly: every name present, no unknown names, identical shapes,
    /// float dtypes for floats and integer dtypes for counters. Errors are one line naming file and tensor.
    /// `skip` lists names to leave untouched (e.g. `fc.*` when the head is replaced).
    /// A missing `num_batches_tracked` counter reads as 0 (PyTorch's BatchNorm loads such state_dicts too).
    /// Names under a uniform `module.` prefix (DistributedDataParallel's wrapper) are read without it.
    public static func load(_ file: SafeTensorsFile, into model: ResNet, source: String, skip: Set<String> = []) throws {
        let file = withoutDataParallelPrefix(file)
        let s = model.store
        let expected = Set(s.entries.map(\.name))
        for name in file.tensors.keys.sorted() where !expected.contains(name) && !skip.contains(name) {
            throw ModelError("\(source): unexpected tensor '\(name)' for \(model.config.arch) (check --arch, --widths and the file)")
        }
        for e in s.entries where !skip.contains(e.name) {
            guard let t = file.tensors[e.name] else {
                if e.kind == .counter { s.counters[e.offset] = 0; continue }
                throw ModelError("\(source): missing tensor '\(e.name)' for \(model.config.arch)")
            }
            guard t.shape == e.shape || (e.kind == .counter && t.elementCount == 1) else {
                throw ModelError("\(source): tensor '\(e.name)' has shape \(t.shape), \(model.config.arch) needs \(e.shape)")
            }
            switch e.kind {
            case .parameter, .runningStat:
                guard [.F32, .F64, .F16, .BF16].contains(t.dtype) else {
                    throw ModelError("\(source): tensor '\(e.name)' has dtype \(t.dtype.rawValue), expected a float type")
                }
                let v = try t.floats()
                guard v.allSatisfy({ $0.isFinite }) else { throw ModelError("\(source): tensor '\(e.name)' holds NaN or infinity") }
                s.setValues(e.name, v)
            case .counter:
                guard [.I64, .I32].contains(t.dtype) else {
                    throw ModelError("\(source): tensor '\(e.name)' has dtype \(t.dtype.rawValue), expected I64")
                }
                s.counters[e.offset] = try t.int64s()[0]
            }
        }
    }

    /// The file with a `module.` prefix removed from every tensor name when every name has it (what
    /// `torch.nn.parallel.DistributedDataParallel(model).state_dict()` writes); otherwise the file unchanged.
    public static func withoutDataParallelPrefix(_ file: SafeTensorsFile) -> SafeTensorsFile {
        let prefix = "module."
        guard !file.tensors.isEmpty, file.tensors.keys.allSatisfy({ $0.hasPrefix(prefix) }) else { return file }
        var out = file
        out.tensors = Dictionary(uniqueKeysWithValues: file.tensors.map { (String($0.key.dropFirst(prefix.count)), $0.value) })
        return out
    }
}
