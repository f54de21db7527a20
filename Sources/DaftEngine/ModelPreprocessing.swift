import DaftData
import DaftModels

/// The input normalisation that belongs to a model (cli.md "Data"), the same in every command: the weights'
/// `mean`/`std` metadata, else `--mean/--std`, else ImageNet's for a 3-channel ResNet with the 7×7 stem;
/// anything else with neither is a one-line error asking for `--mean/--std`.
public enum ModelPreprocessing {
    /// torchvision's ImageNet statistics (the `transforms.Normalize` every torchvision classifier is trained with).
    public static let imagenet = Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    /// The normalisation of a model with architecture `config`, weights metadata `metadata` (empty for a model
    /// trained from scratch) and the user's `--mean`/`--std` values (`nil` when not given). One value in a flag
    /// applies to every channel. `source` names the weights file in errors.
    public static func normalization(config: ResNetConfig, metadata: [String: String], mean: [Float]?, std: [Float]?,
                                     source: String) throws -> Normalization {
        let channels = config.inChannels
        guard (mean == nil) == (std == nil) else { throw ModelError("--mean and --std go together: give both or neither") }
        var flags: Normalization? = nil
        if let mean, let std {
            flags = try make(mean: mean, std: std, channels: channels, what: "--mean/--std", source: "the command line")
        }
        switch (metadata["mean"], metadata["std"]) {
        case let (m?, s?):
            let stored = try make(mean: try parse(m, key: "mean", source: source), std: try parse(s, key: "std", source: source),
                                  channels: channels, what: "metadata mean/std", source: source)
            if let flags, !zip(flags.mean + flags.std, stored.mean + stored.std).allSatisfy({ abs($0 - $1) <= 1e-6 }) {
                throw ModelError("\(source): the weights carry mean \(text(stored.mean)) std \(text(stored.std)) (their preprocessing); --mean/--std \(text(flags.mean)) / \(text(flags.std)) disagree — drop the flags")
            }
            return stored
        case (nil, nil):
            if let flags { return flags }
            if config.stem == .imagenet && channels == 3 { return imagenet }
            throw ModelError("\(source): no mean/std in the weights' metadata and none given: pass --mean and --std (the per-channel statistics of pixel/255 the model was trained with, e.g. --mean 0.2860 --std 0.3530 for Fashion-MNIST)")
        case (nil, _?): throw ModelError("\(source): metadata has 'std' but no 'mean'")
        case (_?, nil): throw ModelError("\(source): metadata has 'mean' but no 'std'")
        }
    }

    /// Comma-separated floats (a flag's or a metadata value's text).
    public static func parse(_ text: String, key: String, source: String) throws -> [Float] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0!.isFinite }) else {
            throw ModelError("\(source): '\(key)' = '\(text)' is not a comma-separated list of numbers")
        }
        return parts.map { $0! }
    }

    /// The metadata entries daft writes for a normalisation (`mean`, `std`: comma-separated per channel).
    public static func metadata(_ n: Normalization) -> [String: String] {
        ["mean": text(n.mean), "std": text(n.std)]
    }

    static func make(mean: [Float], std: [Float], channels: Int, what: String, source: String) throws -> Normalization {
        func expand(_ v: [Float]) -> [Float]? { v.count == channels ? v : (v.count == 1 ? Array(repeating: v[0], count: channels) : nil) }
        guard let m = expand(mean), let s = expand(std) else {
            throw ModelError("\(source): \(what) have \(mean.count)/\(std.count) values; the model takes \(channels) channel(s) (give \(channels) values, or one for all)")
        }
        guard s.allSatisfy({ $0 > 0 }) else { throw ModelError("\(source): \(what): std must be positive, got \(text(s))") }
        return Normalization(mean: m, std: s)
    }

    /// Comma-separated values (messages and `daft inspect`).
    public static func text(_ v: [Float]) -> String { v.map { String($0) }.joined(separator: ",") }
}
