import Cluster
import Kernels

/// What `rlhf --version` prints: the version, the commit it was built from, the CPU level it was
/// built for, and the versions of the libraries it runs on (OpenBLAS and its kernels, MPI, oneDNN).
enum Version {
    /// 0.x while the interfaces still move; the minor is the last issue resolved.
    static let number = "0.29.0"

    static var text: String {
        [
            "rlhf \(number) (commit \(FastPath.buildCommit))",
            "built for -target-cpu \(FastPath.buildTargetCPU) (RLHF_TARGET_CPU; native: the build machine's CPU)",
            BLAS.configuration,
            MPIRuntime.libraryVersion,
            "oneDNN \(BFloat16GEMM.libraryVersion)",
        ].joined(separator: "\n")
    }
}
