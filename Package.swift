import Foundation
// swift-tools-version:6.0
// swift-rlhf: distributed RLHF on CPUs. Dependencies point one way (docs/architecture.md §2):
// rlhf → Training (stages and experiments) → {Rewards (reward sources), Runs (run folders, checkpoints, metrics,
//   evaluation)} → {Config, Datasets, Roles → {Models, Cluster}, Tokenizers, Alignment}; all → Kernels → {CBLAS,
//   CDNNL, CPUCheck}, and Cluster → {CMPI, CStopSignal}; Models and Tokenizers → GGUF (the file format, no dependencies).
// C shims stay private to their module. Every module a target imports is declared here (ArchitectureTests checks).
import PackageDescription

// Hot loops must be built for the host's vector units: without -target-cpu Swift emits SSE2 only
// and elementwise kernels run ~4× slower (docs/platform.md fact 8). Default is the build
// machine's CPU; set RLHF_TARGET_CPU (e.g. `haswell`, `znver4`) when building for other nodes.
let targetCPU = ProcessInfo.processInfo.environment["RLHF_TARGET_CPU"] ?? "native"
// swiftc's -target-cpu takes LLVM CPU names: an x86-64 psABI level is given as the oldest CPU with its
// extensions (every AVX2 CPU has Haswell's, every AVX-512 one Skylake-X's).
let llvmCPU = ["x86-64-v3": "haswell", "x86-64-v4": "skylake-avx512"][targetCPU] ?? targetCPU
let fastMath: [SwiftSetting] = [.unsafeFlags(["-target-cpu", llvmCPU])]

/// The x86 extensions code built for `cpu` may use (for "native": the build machine's, from
/// /proc/cpuinfo). CPUCheck refuses to run such a binary, before main, on a CPU without them.
func extensions(of cpu: String) -> [String] {
    let v3 = ["avx", "avx2", "fma", "bmi2"], v4 = v3 + ["avx512f", "avx512bw", "avx512dq", "avx512vl"]
    switch cpu {
    case "native":
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return [] }
        let flags = Set(line.split(separator: " ").map(String.init))
        return (v4 + ["avx512_vnni", "avx512_bf16", "avx512vbmi"]).filter(flags.contains).map {
            $0.replacingOccurrences(of: "_", with: "")
        }
    case "x86-64-v3", "haswell", "broadwell", "skylake", "znver1", "znver2", "znver3": return v3
    case "x86-64-v4", "skylake-avx512", "cascadelake", "icelake-server", "sapphirerapids", "emeraldrapids", "znver4",
        "znver5":
        return v4
    default: return []
    }
}
// The commit `rlhf --version` names: the scripts set RLHF_COMMIT (`git describe --always --dirty`);
// an environment variable, so that a new value makes SwiftPM evaluate this manifest again.
let commit = ProcessInfo.processInfo.environment["RLHF_COMMIT"] ?? "unknown"
let cpuCheck: [CSetting] =
    extensions(of: targetCPU).map { .define("RLHF_NEED_" + $0.uppercased()) } + [
        .define("RLHF_TARGET_CPU_NAME", to: targetCPU), .define("RLHF_BUILD_COMMIT", to: commit),
    ]

let package = Package(
    name: "swift-rlhf",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "rlhf", targets: ["rlhf"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .target(name: "CPUCheck", cSettings: cpuCheck),
        .target(name: "CStopSignal"),
        // oneDNN (Debian's libdnnl-dev) for bf16 matmuls; its OpenMP runtime is libgomp.
        .target(name: "CDNNL", linkerSettings: [.linkedLibrary("dnnl"), .linkedLibrary("gomp")]),
        .target(name: "Kernels", dependencies: ["CBLAS", "CPUCheck", "CDNNL"], swiftSettings: fastMath),
        .target(name: "GGUF"),
        .target(name: "Models", dependencies: ["Kernels", "GGUF"], swiftSettings: fastMath),
        .target(name: "Tokenizers", dependencies: ["GGUF"]),
        .target(name: "Cluster", dependencies: ["CMPI", "CStopSignal", "Kernels"]),
        .target(name: "Alignment"),
        .target(name: "Roles", dependencies: ["Alignment", "Models", "Kernels", "Cluster"], swiftSettings: fastMath),
        .target(name: "Config", dependencies: [.product(name: "Yams", package: "Yams")]),
        .target(name: "Datasets", dependencies: ["Kernels", "Tokenizers", "Alignment"]),
        .target(
            name: "Runs",
            dependencies: ["Config", "Datasets", "Models", "Kernels", "Tokenizers", "Cluster", "Alignment"]),
        .target(
            name: "Rewards",
            dependencies: ["Config", "Datasets", "Alignment", "Roles", "Models", "Kernels", "Tokenizers", "Cluster"]),
        .target(
            name: "Training",
            dependencies: [
                "Rewards", "Runs", "Config", "Datasets", "Alignment", "Roles", "Models", "Kernels", "Tokenizers",
                "Cluster",
            ]),
        .executableTarget(
            name: "rlhf",
            dependencies: [
                "Training", "Rewards", "Runs", "Config", "Datasets", "Alignment", "Roles", "Models", "Kernels",
                "Cluster", "Tokenizers", "GGUF",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: fastMath),
        // libFuzzer targets for the parsers (scripts/fuzz.sh); the plain build replays saved inputs.
        .target(name: "CFuzzer"),
        .executableTarget(
            name: "rlhf-fuzz",
            dependencies: ["CFuzzer", "Training", "Roles", "Models", "Tokenizers", "GGUF", "Datasets", "Config"]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels"], swiftSettings: fastMath),
        .testTarget(
            name: "ModelsTests", dependencies: ["Models", "Kernels", "GGUF"],
            resources: [.copy("Fixtures")], swiftSettings: fastMath),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers", "GGUF"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Kernels"]),
        .testTarget(name: "AlignmentTests", dependencies: ["Alignment"]),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF", "Kernels"]),
        .testTarget(name: "ConfigTests", dependencies: ["Config"]),
        .testTarget(name: "RunsTests", dependencies: ["Runs", "Cluster", "Kernels", "Datasets"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Tokenizers", "Alignment"]),
        .testTarget(name: "RewardsTests", dependencies: ["Rewards", "Alignment", "Datasets"]),
        .testTarget(name: "RolesTests", dependencies: ["Roles", "Alignment", "Models", "Kernels", "Cluster"]),
        .testTarget(
            name: "TrainingTests",
            dependencies: [
                "Training", "Rewards", "Runs", "Config", "Datasets", "Alignment", "Roles", "Models", "Kernels",
                "Tokenizers", "Cluster",
            ]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "rlhf", "rlhf-fuzz", "Models", "Training", "Datasets", "Cluster", "Runs", "Kernels", "Alignment",
            ], exclude: ["Fixtures"]),
    ]
)
