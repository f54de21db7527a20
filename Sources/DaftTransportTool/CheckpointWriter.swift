import DaftCoordinator
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `daft-transport checkpoint-writer ROOT`: the process `CheckpointCrashTests` kills with SIGKILL at random
/// moments. It writes checkpoints into ROOT forever (keep 2 plus the best, every 4th write rewriting the last
/// step in place) and never returns.
///
/// Every file of a checkpoint is one 8-byte word repeated (a different word per file and write), and the
/// manifest's info records each file's word in hex under the file's name, so the test can check that the
/// files a manifest names are the ones written with it without knowing how the words were chosen.
enum CheckpointWriter {
    static let fileNames = ["weights.safetensors", "optimizer.bin", "trainer.json"]

    static func run(root: String) -> Never {
        let store = CheckpointStore(root: URL(fileURLWithPath: root), keep: 2)
        var step = (store.latestValid()?.step ?? 0) + 1
        var generation = UInt64(getpid()) << 20   // distinct across the test's successive writer processes
        while true {
            generation += 1
            let seed = mix(generation)
            var files: [String: [UInt8]] = [:]
            var info: [String: String] = [:]
            for (k, name) in fileNames.enumerated() {
                let word = mix(seed &+ UInt64(k))
                // 1 KB … 300 KB, weights 200 KB more: sizes vary so a kill lands anywhere in a write
                let words = 125 + Int(word % 37_500) + (name == "weights.safetensors" ? 25_000 : 0)
                files[name] = repeatedWord(word, count: words)
                info[name] = String(word, radix: 16)
            }
            do {
                try store.write(step: step, files: files, info: info, isBest: seed % 3 == 0, metric: Double(seed % 1000) / 1000)
            } catch {
                fputs("checkpoint-writer: \(error)\n", stderr)
                exit(1)
            }
            if generation % 4 != 0 { step += 1 }
        }
    }

    /// SplitMix64's finaliser: a well-spread word from a counter.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` little-endian copies of `word`.
    static func repeatedWord(_ word: UInt64, count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count * 8) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            for i in 0..<count { raw.storeBytes(of: word.littleEndian, toByteOffset: i * 8, as: UInt64.self) }
            initialized = count * 8
        }
    }
}
