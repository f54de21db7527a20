import ArgumentParser
import Foundation
import DaftInterop
import DaftEngine
import DaftCommandLine

/// `daft interpolate`: WiSE-FT (method.md §10), θ_α = (1 − α)·θ_0 + α·θ_1 of two weights files.
struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "WiSE-FT: interpolate two weights files of the same architecture, θ = (1 − α)·FROM + α·TO.",
        discussion: "Every float tensor is interpolated, BN running statistics included; num_batches_tracked and the metadata come from TO (from FROM at α = 0). α = 0 and α = 1 reproduce FROM and TO bit for bit.")
    @Option(help: "θ_0: the starting model (safetensors)") var from: String
    @Option(help: "θ_1: the fine-tuned model (safetensors)") var to: String
    @Option(help: "α in [0, 1]") var alpha: Double
    @Option(help: "Output safetensors") var out: String
    @OptionGroup var logging: LoggingFlags

    func run() throws {
        let start = try SafeTensorsFile.read(URL(fileURLWithPath: from)), end = try SafeTensorsFile.read(URL(fileURLWithPath: to))
        let mixed = try WeightInterpolation.interpolate(start: start, end: end, alpha: alpha, startSource: from, endSource: to)
        try mixed.write(to: URL(fileURLWithPath: out))
        logging.logger.info("interpolate: α \(alpha) of \(from) → \(to): \(mixed.tensors.count) tensors written to \(out)")
    }
}
