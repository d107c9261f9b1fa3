import Foundation

/// Makes sure the process runs with OpenBLAS's AVX-512 kernels on CPUs that have them.
///
/// OpenBLAS 0.3.21 (Debian 12) does not recognise Zen 4/5 and falls back to its Haswell (AVX2)
/// kernels: half the sgemm speed (shared/platform.md §2, fact 5). The core is chosen when the
/// library loads, so setting the variable from inside the process is too late; instead the
/// program re-executes itself once with OPENBLAS_CORETYPE=SkylakeX. A user's own
/// OPENBLAS_CORETYPE is always respected, and RLHF_NO_REEXEC=1 disables the mechanism.
public enum FastPath {
    /// Said with the BLAS summary when the user's environment holds the process on slow kernels.
    nonisolated(unsafe) public private(set) static var note: String?

    /// AVX-512 F/BW/DQ/VL, read from /proc/cpuinfo (what the SkylakeX kernels need).
    public static var cpuHasAVX512: Bool {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flagsLine = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return false }
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        return ["avx512f", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains)
    }

    /// Call first thing in main. Returns only if no re-exec is needed (or it failed, which is
    /// reported and leaves the slower path running rather than stopping the user).
    public static func reexecIfNeeded() {
        let env = ProcessInfo.processInfo.environment
        if let chosen = env["OPENBLAS_CORETYPE"] {
            if ["Haswell", "Zen", "Sandybridge", "Prescott"].contains(chosen), cpuHasAVX512 {
                note = "OPENBLAS_CORETYPE=\(chosen) is set in the environment; this CPU has AVX-512, and OPENBLAS_CORETYPE=SkylakeX (or unsetting it) runs sgemm about 2× faster"
            }
            return
        }
        guard env["RLHF_NO_REEXEC"] == nil, cpuHasAVX512 else { return }
        let core = BLAS.coreName
        guard core == "Haswell" || core == "Zen" else { return }
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1)
        setenv("RLHF_NO_REEXEC", "1", 1)   // never loop
        let args = CommandLine.arguments
        var cArgs = args.map { strdup($0) } + [nil]
        execv("/proc/self/exe", &cArgs)
        let reason = String(cString: strerror(errno))
        FileHandle.standardError.write(Data("warning: could not re-execute with OPENBLAS_CORETYPE=SkylakeX (\(reason)); using \(core) kernels at about half speed\n".utf8))
    }
}
