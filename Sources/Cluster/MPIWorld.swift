import CMPI

/// The MPI world of this process. A process started without mpirun is a world of size 1
/// (MPI singleton initialisation). Issue 4 builds the transport and the dedicated MPI thread on
/// top of this; until then it is only called from one thread.
public enum MPIWorld {
    /// Initialises MPI once (FUNNELED: every MPI call will come from one thread, platform.md §5)
    /// and returns this process's rank and the world size. MPI cannot be initialised twice in a
    /// process, so later calls return the same answer.
    public static func initialize() -> (rank: Int, size: Int) {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            var provided: Int32 = 0
            MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
        }
        var rank: Int32 = 0, size: Int32 = 0
        MPI_Comm_rank(cmpi_comm_world(), &rank)
        MPI_Comm_size(cmpi_comm_world(), &size)
        return (Int(rank), Int(size))
    }

    /// The MPI library's own version string (e.g. "Open MPI v4.1.4, …").
    public static var libraryVersion: String {
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING))
        var length: Int32 = 0
        MPI_Get_library_version(&buffer, &length)
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Σ over ranks of `values`, in place (a world of one returns them unchanged).
    public static func allReduceSum(_ values: inout [Float]) {
        let count = Int32(values.count)
        values.withUnsafeMutableBufferPointer { p in
            _ = MPI_Allreduce(cmpi_in_place(), p.baseAddress, count, cmpi_float(), cmpi_sum(), cmpi_comm_world())
        }
    }
}
