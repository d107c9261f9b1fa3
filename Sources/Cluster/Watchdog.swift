import CStopSignal
import Foundation

/// Where this process is, for the one-line failure report (`rank r (role, step s): reason`).
/// Stages update it as they go; the watchdog and error handlers read it.
public enum FailureReport {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var context = FailureContext(rank: 0, role: "main", step: 0)

    public static var current: FailureContext {
        get { lock.withLock { context } }
        set {
            lock.withLock { context = newValue }
            // Published at once, so a rank that stops right after a new step is reported at it.
            RankStatus.shared.contextChanged()
            rlhf_set_report_prefix(newValue.describe(""))
        }
    }

    /// Prints the report on stderr (and the run's log.txt) and flushes (under mpirun stdout/stderr are pipes).
    public static func print(_ reason: String) {
        Console.urgent(current.describe(reason))
    }
}

/// Times blocking MPI collectives. They are much faster than their non-blocking forms in this
/// Open MPI (about 2× at 1–4 MB: libnbc against the tuned blocking algorithms), but a blocking
/// call cannot time out, so this thread watches the one in flight: past its deadline it prints
/// the failure report and ends the process, and mpirun then takes the whole job down.
final class CollectiveWatchdog: @unchecked Sendable {
    static let shared = CollectiveWatchdog()
    private let lock = NSLock()
    private var inFlight: (what: String, started: Date, timeout: Double)?
    private var thread: Thread?

    func begin(_ what: String, timeout: Double) {
        RankStatus.shared.setWaiting(what)
        lock.withLock {
            inFlight = (what, Date(), timeout)
            if thread == nil {
                let t = Thread { [unowned self] in self.watch() }
                t.name = "mpi-watchdog"
                t.start()
                thread = t
            }
        }
    }

    func end() {
        lock.withLock { inFlight = nil }
        RankStatus.shared.setWaiting(nil)
    }

    private func watch() {
        while true {
            usleep(100_000)
            let expired: (String, Double)? = lock.withLock {
                guard let op = inFlight, Date().timeIntervalSince(op.started) > op.timeout else { return nil }
                return (op.what, op.timeout)
            }
            if let (what, timeout) = expired {
                // The timeout first: the ranks' status takes a second to read, and mpirun may end
                // this process meanwhile if another rank's watchdog fired first.
                FailureReport.print("timed out after \(Int(timeout)) s waiting for \(what)")
                let absent = RankStatus.shared.absentees(waitingFor: what)
                if !absent.isEmpty { FailureReport.print(absent) }
                _exit(1)
            }
        }
    }
}

/// Seconds this process has spent inside collectives, for the per-phase "communicate" figure.
public enum CommunicationClock {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var total = 0.0
    public static var seconds: Double { lock.withLock { total } }
    static func add(_ s: Double) { lock.withLock { total += s } }
}
