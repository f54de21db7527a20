// libFuzzer target: a checkpoint's manifest.json (launch/fuzz.sh manifest), parsed as CheckpointStore.validate
// and --resume parse it (CheckpointStore.info(manifest:dir:): JSONSerialization for format and version, then
// JSONDecoder, then the step, time, file-name and checksum checks), without touching any file.
// A parse either throws a one-line CheckpointError.unreadableManifest naming the directory, or returns a
// checkpoint whose step matches the directory name and whose files have valid names, sizes and checksums.
@testable import DaftCoordinator
import CFuzzMain
import Foundation

let directory = URL(fileURLWithPath: "/fuzz/checkpoints/ckpt-000000120")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        let info = try CheckpointStore.info(manifest: bytes, dir: directory)
        precondition(info.step == 120, "step \(info.step) accepted in \(directory.lastPathComponent)")
        for (name, file) in info.files {
            precondition(CheckpointStore.isValidFileName(name), "invalid file name '\(name)' accepted")
            precondition(file.size >= 0 && file.sha256.count == 64, "invalid size or checksum accepted for '\(name)'")
        }
    } catch let error as CheckpointError {
        guard case let .unreadableManifest(dir, _) = error, dir == directory.path else {
            fatalError("unexpected error for a manifest: \(error)")
        }
        precondition(error.description.hasPrefix("checkpoint \(directory.path): ") && !error.description.contains("\n"),
                     "not a one-line error naming the directory: \(error.description)")
    } catch {
        fatalError("the manifest parser threw a non-CheckpointError: \(error)")
    }
    return 0
}
