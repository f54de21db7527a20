// swift-tools-version:6.0
// daft: a data-parallel trainer for Domain-Aware Fine-Tuning of pretrained ResNets.
import PackageDescription
import Foundation

// DaftKernels' own loops (SIMD8 im2col, direct 3×3 convolutions, batch norm, elementwise) are compiled for
// the x86-64-v3 feature level (AVX2 + FMA) on x86_64, so SIMD8<Float> is one ymm register and a·b+c can
// fuse. The Swift 6.3 frontend does not accept the name "x86-64-v3" for -target-cpu, so the flag names
// "haswell", the first CPU with exactly that feature set (AVX, AVX2, BMI1/2, F16C, FMA, LZCNT, MOVBE).
// Every other target stays baseline x86-64. Build with DAFT_PORTABLE=1 in the environment
// (`DAFT_PORTABLE=1 swift build ...`) for a baseline-x86-64 DaftKernels that runs on CPUs without
// AVX2/FMA; results then differ only by float rounding (separate instead of fused multiply-add).
//
// Debug builds (the test suite's) compile DaftKernels and DaftInterop with -O as well: at -Onone a SIMD8
// multiply-add is a chain of generic calls and a safetensors decode a generic call per element, 50-100x slower,
// and the model-level tests (PyTorch parity, gradient checks, BN conversion, state_dict loading) spent most of
// the suite's time there. -O keeps bounds and overflow checks (only `assert`, which neither module uses, goes)
// and SwiftPM's -enable-testing stays, so @testable import still works. DAFT_DEBUG_ONONE=1 in the environment
// of a build gives the plain -Onone modules back, for stepping through them in a debugger.
let optimizeInDebug: [SwiftSetting] = ProcessInfo.processInfo.environment["DAFT_DEBUG_ONONE"] == "1"
    ? [] : [.unsafeFlags(["-O"], .when(configuration: .debug))]
#if arch(x86_64)
let kernelSwiftSettings: [SwiftSetting] = optimizeInDebug + (ProcessInfo.processInfo.environment["DAFT_PORTABLE"] == "1"
    ? [] : [.unsafeFlags(["-target-cpu", "haswell"])])
#else
let kernelSwiftSettings: [SwiftSetting] = optimizeInDebug
#endif

// DaftKernelsAVX512 holds 16-lane (zmm) versions of the direct 3×3 kernels, compiled for the x86-64-v4
// feature level (AVX-512 F/CD/BW/DQ/VL; the frontend takes the CPU name "skylake-avx512" for it) whatever
// DAFT_PORTABLE says: DaftKernels calls into it only after CCPUID's cpuid/xgetbv probe reported those
// features and the OS's zmm state support, so CPUs without AVX-512 never execute it. DAFT_NO_AVX512=1 in the
// environment of a run keeps the 8-lane kernels (see `DirectKernelISA`).
#if arch(x86_64)
let avx512SwiftSettings: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "skylake-avx512"])]
#else
let avx512SwiftSettings: [SwiftSetting] = []
#endif

// DAFT_FUZZ=1 in the environment (launch/fuzz.sh sets it, with its own --scratch-path .build-fuzz) adds the
// libFuzzer targets of Fuzz/Sources/fuzz-* (each an executable whose entry point is LLVMFuzzerTestOneInput,
// hence -parse-as-library) and instruments the image shim's C for coverage and AddressSanitizer; the Swift
// modules get `-sanitize=fuzzer,address` from fuzz.sh's -Xswiftc. Ordinary builds never see any of it.
let fuzzing = ProcessInfo.processInfo.environment["DAFT_FUZZ"] == "1"
let fuzzCSettings: [CSetting] = fuzzing ? [.unsafeFlags(["-fsanitize=fuzzer-no-link,address"])] : []
let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
    ("fuzz-safetensors", ["DaftInterop"]),
    ("fuzz-npy", ["DaftInterop"]),
    ("fuzz-idx", ["DaftData"]),
    ("fuzz-idxgz", ["DaftData"]),
    ("fuzz-image", ["DaftData"]),
    ("fuzz-config", ["DaftCommandLine"]),
    ("fuzz-manifest", ["DaftCoordinator"]),
    ("fuzz-trainer-state", ["DaftCoordinator", "DaftEngine"]),
]

let package = Package(
    name: "daft",
    products: [
        .executable(name: "daft", targets: ["DaftCLI"]),
        .executable(name: "daft-transport", targets: ["DaftTransportTool"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", .upToNextMajor(from: "3.12.3")),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // C libraries from Debian -dev packages.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"])]),
        // OpenMPI handles (MPI_COMM_WORLD, MPI_FLOAT, ...) are macros: this shim exposes them as functions.
        .target(name: "CMPIShim", dependencies: ["CMPI"], path: "Sources/CMPIShim"),
        // libpng and libjpeg report errors by longjmp, which Swift cannot catch: this shim decodes and encodes
        // PNG/JPEG in C and returns an error string instead.
        .target(name: "CImageShim", dependencies: ["CPNG", "CJPEG"], path: "Sources/CImageShim", cSettings: fuzzCSettings),

        // kernels: float32 tensors and forward/backward kernels on OpenBLAS.
        .target(name: "DaftKernels", dependencies: ["CBLAS", "CCPUID", "DaftKernelsAVX512"], swiftSettings: kernelSwiftSettings),
        // AVX-512 direct 3×3 kernels (run-time dispatched from DaftKernels) and the cpuid probe that guards them.
        .target(name: "DaftKernelsAVX512", swiftSettings: avx512SwiftSettings),
        .target(name: "CCPUID", path: "Sources/CCPUID"),
        // interop: safetensors read/write (torchvision state_dict names).
        .target(name: "DaftInterop", swiftSettings: optimizeInDebug),
        // distributed transport: communicator (MPI or single process), gradient buckets, watchdog, consistency check.
        .target(name: "DaftDistributed", dependencies: ["CMPIShim"]),
        // layers/models: BN (incl. synchronized), ResNet family, SGD, schedules.
        .target(name: "DaftModels", dependencies: ["DaftKernels", "DaftDistributed", "DaftInterop"]),
        // data: IDX / NPY readers, PNG/JPEG codecs, torchvision-style transforms, ImageFolder listing,
        // domain shifts, the fashion-shift benchmark.
        .target(name: "DaftData", dependencies: ["DaftInterop", "CZlib", "CImageShim"]),
        // DAFT engine: BN conversion, methods, priors, ridge head, evaluation, the training step.
        .target(name: "DaftEngine", dependencies: ["DaftModels", "DaftData", "DaftDistributed", "DaftKernels", "DaftInterop", "CBLAS"]),
        // coordinator: phases, checkpoints (SHA-256 through swift-crypto), resume.
        .target(name: "DaftCoordinator", dependencies: [
            "DaftEngine", "DaftModels", "DaftData", "DaftDistributed", "DaftInterop",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // command line support: --config files (TOMLKit, Yams) checked against the command's flags and merged into
        // them, --log-level and the rank-aware swift-log handler. A library so its tests need no `daft` binary.
        .target(name: "DaftCommandLine", dependencies: [
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "Yams", package: "Yams"),
        ]),
        // report: `daft report`'s HTML page with inline SVG charts from run directories (Foundation only; a library
        // so its tests render pages in-process in milliseconds).
        .target(name: "DaftReport"),
        // CLI: the `daft` executable.
        .executableTarget(name: "DaftCLI", dependencies: [
            "DaftCoordinator", "DaftEngine", "DaftModels", "DaftData", "DaftDistributed", "DaftInterop", "DaftKernels",
            "DaftCommandLine", "DaftReport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // transport tool: all-reduce micro-benchmark, the MPI scenarios the transport tests run under mpirun, and
        // the checkpoint writer the checkpoint crash test kills (a subprocess, not a test case).
        .executableTarget(name: "DaftTransportTool", dependencies: ["DaftDistributed", "DaftCoordinator"]),

        // fixtures and closeness checks shared by the test targets (no XCTest, no product uses it)
        .target(name: "DaftTestSupport", dependencies: ["DaftInterop", "DaftModels"], path: "Tests/Support"),

        .testTarget(name: "DaftKernelsTests", dependencies: ["DaftKernels"]),
        .testTarget(name: "DaftInteropTests", dependencies: ["DaftInterop"]),
        // transport scenarios under mpirun, and the few heavy end-to-end runs of `daft` under mpirun (EndToEnd*).
        .testTarget(name: "DaftDistributedTests", dependencies: ["DaftDistributed", "DaftInterop", "DaftTestSupport"]),
        .testTarget(name: "DaftModelsTests", dependencies: ["DaftModels", "DaftInterop", "DaftKernels", "DaftTestSupport"]),
        .testTarget(name: "DaftDataTests", dependencies: ["DaftData", "DaftInterop", "DaftTestSupport"]),
        .testTarget(name: "DaftEngineTests", dependencies: ["DaftEngine", "DaftTestSupport"]),
        .testTarget(name: "DaftCoordinatorTests", dependencies: ["DaftCoordinator", "DaftTestSupport"]),
        .testTarget(name: "DaftReportTests", dependencies: ["DaftReport"]),
        .testTarget(name: "DaftCommandLineTests", dependencies: [
            "DaftCommandLine",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
    ],
    swiftLanguageModes: [.v5]
)

if fuzzing {
    // <module>_main for each target: SwiftPM's `--defsym main=<module>_main` lands there, and it starts libFuzzer.
    package.targets.append(.target(name: "CFuzzMain", path: "Fuzz/Sources/CFuzzMain"))
    for target in fuzzTargets {
        package.targets.append(.executableTarget(name: target.name, dependencies: target.dependencies + ["CFuzzMain"],
                                                 path: "Fuzz/Sources/\(target.name)",
                                                 swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    }
}
