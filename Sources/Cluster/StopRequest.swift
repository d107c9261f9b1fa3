import CStopSignal
import Foundation

/// A graceful stop (issue 15): SIGINT (Ctrl-C), SIGTERM (Slurm's time limit, `scancel`, `kill`)
/// or SIGUSR1 (Slurm's `--signal`) asks the run to finish its current step, write a checkpoint
/// and exit non-zero; a second signal exits at once. The handler only records the signal; the
/// training loops ask `agreed` at the end of every step, so a signal that reached any one rank
/// stops every rank after the same step.
public enum StopRequest {
    /// Installs the handlers (training commands do this once, after MPI is initialised, so ours
    /// are the ones in place).
    public static func installHandlers() throws {
        guard rlhf_install_stop_handlers() == 0 else {
            throw TransportError(
                "cannot install the SIGINT/SIGTERM/SIGUSR1 handlers: \(String(cString: strerror(errno)))")
        }
    }

    /// This process serves placed roles: it cannot stop the run itself, so a signal here only
    /// says that rank 0 decides (rank 0 gets the same signal from mpirun or Slurm and stops all).
    public static func markServingRank() { rlhf_mark_serving_rank() }

    /// The signal this process received, if any.
    public static var local: Int32? {
        let s = rlhf_stop_signal()
        return s == 0 ? nil : s
    }

    /// Records `signal` as if it had been delivered, or clears the request with nil (tests).
    public static func simulate(_ signal: Int32?) { rlhf_set_stop_signal(signal ?? 0) }

    /// Whether any rank was asked to stop. A collective: every rank calls it at the same point of
    /// the same step and all get the same answer (the signal seen here, or the first other rank's).
    /// `local`: this rank's own signal (the process's, unless a test gives each rank its own).
    public static func agreed(_ transport: any Transport, local: Int32? = StopRequest.local) async throws -> StopSignal?
    {
        let mine = Double(local ?? 0)
        guard transport.size > 1 else { return local.map { StopSignal(number: $0, ranks: [transport.rank]) } }
        // Each rank writes its signal into its own slot: the sum is every rank's signal.
        var slots = [Double](repeating: 0, count: transport.size)
        slots[transport.rank] = mine
        let all = try await transport.allReduce(slots, op: .sum)
        let ranks = all.indices.filter { all[$0] != 0 }
        guard let first = ranks.first else { return nil }
        return StopSignal(number: Int32(all[first]), ranks: ranks)
    }
}

/// A stop that every rank agreed on: the signal and the ranks it reached.
public struct StopSignal: Sendable, Equatable {
    public let number: Int32
    public let ranks: [Int]
    public init(number: Int32, ranks: [Int]) {
        self.number = number
        self.ranks = ranks
    }

    public var name: String {
        switch number {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(number)"
        }
    }

    /// The conventional status of a process ended by this signal (128 + its number).
    public var exitStatus: Int32 { 128 + number }
}
