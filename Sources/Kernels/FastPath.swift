import CPUCheck
import Foundation

/// Makes sure the process runs with the best OpenBLAS kernels the CPU can execute.
///
/// OpenBLAS 0.3.21 (Debian 12) picks its kernels by CPU model and falls back to older ones on
/// models it does not know: Haswell (AVX2) on Zen 4/5, generic Prescott on Emerald Rapids — 2–5×
/// slower sgemm (docs/platform.md §2, fact 5). `KernelChoice` decides from the CPU's flags
/// instead. The core is chosen when the library loads, so setting the variable from inside the
/// process is too late; the program re-executes itself once with OPENBLAS_CORETYPE set. A user's
/// own OPENBLAS_CORETYPE is always respected, and RLHF_NO_REEXEC=1 disables the mechanism.
public enum FastPath {
    /// Said with the BLAS summary: why these kernels, or that the user's setting is slower.
    nonisolated(unsafe) public private(set) static var note: String?
    /// The kernel decision of this process.
    nonisolated(unsafe) public private(set) static var decision: KernelChoice.Decision?

    /// What the build's -target-cpu needs that this CPU lacks ("" when nothing): checked before
    /// main by the CPUCheck module, which stops the process with a clear message.
    public static var missingBuildFeatures: String { String(cString: rlhf_cpu_missing_features()) }
    public static var buildTargetCPU: String { String(cString: rlhf_build_target_cpu()) }
    /// The commit the binary was built from (RLHF_COMMIT at build time), or "unknown".
    public static var buildCommit: String { String(cString: rlhf_build_commit()) }

    /// Call first thing in main. Returns only if no re-exec is needed (or it failed, which is
    /// reported and leaves the slower path running rather than stopping the user).
    public static func reexecIfNeeded() {
        let env = ProcessInfo.processInfo.environment
        let d = KernelChoice.decide(detected: BLAS.coreName, userSetting: env["OPENBLAS_CORETYPE"], cpu: .current)
        decision = d
        if env["OPENBLAS_CORETYPE"] != nil, d.reason.contains("faster") { note = d.reason }
        guard let core = d.reexecWith, env["RLHF_NO_REEXEC"] == nil else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv("RLHF_NO_REEXEC", "1", 1)  // never loop
        let args = CommandLine.arguments
        var cArgs = args.map { strdup($0) } + [nil]
        execv("/proc/self/exe", &cArgs)
        let reason = String(cString: strerror(errno))
        FileHandle.standardError.write(
            Data(
                ("warning: could not re-execute with OPENBLAS_CORETYPE=\(core) (\(reason)); using \(BLAS.coreName) "
                    + "kernels, slower\n").utf8))
    }
}
