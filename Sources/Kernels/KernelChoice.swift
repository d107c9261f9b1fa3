import Foundation

/// What the CPU can execute: its /proc/cpuinfo flags and model name.
public struct CPUFeatures: Sendable, Equatable {
    public var flags: Set<String>
    public var modelName: String
    /// cpuinfo's "cpu family" and "model" numbers ("" when absent): a VM may name its CPU
    /// "AMD EPYC" alone, and these say which generation it is.
    public var family = "", model = ""

    public init(flags: Set<String>, modelName: String = "") {
        self.flags = flags
        self.modelName = modelName
    }

    /// The first processor's flags, model name, family and model in /proc/cpuinfo text.
    public init(cpuinfo: String) {
        let lines = cpuinfo.split(separator: "\n")
        // The key exactly ("model" is not "model name"), then blanks and a colon.
        func value(_ key: String) -> String? {
            lines.first {
                $0.hasPrefix(key) && $0.dropFirst(key.count).trimmingCharacters(in: .whitespaces).hasPrefix(":")
            }.flatMap { $0.split(separator: ":", maxSplits: 1).last }.map {
                $0.trimmingCharacters(in: .whitespaces)
            }
        }
        flags = Set((value("flags") ?? "").split(separator: " ").map(String.init))
        modelName = value("model name") ?? ""
        family = value("cpu family") ?? ""
        model = value("model") ?? ""
    }

    /// "AMD EPYC family 26 model 2": the name with the numbers that tell its generation apart.
    public var summary: String { family.isEmpty ? modelName : "\(modelName) family \(family) model \(model)" }

    /// This machine's.
    public static var current: CPUFeatures {
        CPUFeatures(cpuinfo: (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "")
    }
}

/// Which OpenBLAS kernels to run, decided from what the CPU can execute, never from its name.
/// OpenBLAS 0.3.21 picks by CPU model and falls back to older kernels on models it does not know
/// (Haswell on Zen 4/5, generic Prescott on Emerald Rapids: 2–5× slower sgemm; docs/platform.md §2).
public enum KernelChoice {
    /// The cores of this OpenBLAS build by the extensions their kernels use, best first. Zen's
    /// and Cooperlake's sgemm kernels are Haswell's and SkylakeX's (fp32; measured equal on Zen 5).
    static let cores: [(name: String, needs: [String])] = [
        ("SkylakeX", ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"]),
        ("Haswell", ["avx2", "fma"]),
        ("Sandybridge", ["avx"]),
        ("Prescott", []),
    ]
    static let aliases = ["Cooperlake": "SkylakeX", "Zen": "Haswell"]

    /// Rank of a core name (0 best); nil for names this build does not have.
    static func rank(_ core: String) -> Int? { cores.firstIndex { $0.name == (aliases[core] ?? core) } }

    /// The best core whose kernels this CPU can execute.
    public static func best(for cpu: CPUFeatures) -> String {
        cores.first { $0.needs.allSatisfy(cpu.flags.contains) }!.name
    }

    public struct Decision: Equatable, Sendable {
        /// The core to re-execute with; nil: keep the one running.
        public var reexecWith: String?
        /// Why, for the logs and `rlhf bench kernels`.
        public var reason: String
    }

    /// `detected`: OpenBLAS's own choice; `userSetting`: OPENBLAS_CORETYPE from the environment,
    /// which is always respected (with a note when it is slower than the CPU allows).
    public static func decide(detected: String, userSetting: String?, cpu: CPUFeatures) -> Decision {
        let best = best(for: cpu)
        let needs = cores.first { $0.name == best }!.needs
        let why = needs.isEmpty ? "no AVX" : needs.joined(separator: ", ")
        if let user = userSetting {
            if let r = rank(user), r > rank(best)! {
                return Decision(
                    reexecWith: nil,
                    reason:
                        "OPENBLAS_CORETYPE=\(user) is set in the environment; this CPU runs \(best) kernels (it has "
                        + "\(why)), about 2× faster for sgemm"
                )
            }
            return Decision(reexecWith: nil, reason: "OPENBLAS_CORETYPE=\(user) from the environment")
        }
        guard let r = rank(detected) else {
            return Decision(
                reexecWith: nil, reason: "OpenBLAS chose \(detected), a core this decision does not rank; kept")
        }
        if r > rank(best)! {
            return Decision(
                reexecWith: best, reason: "OpenBLAS chose \(detected); this CPU has \(why), so \(best) kernels")
        }
        return Decision(reexecWith: nil, reason: "OpenBLAS chose \(detected), the best this CPU runs (\(why))")
    }
}
