import CStopSignal
import Foundation

/// Where every rank is, in a small file per rank that the others can read (issue 15: a timeout
/// names the rank that did not arrive and what it was last doing). A heartbeat thread in each
/// process rewrites `<run folder>/status/rank-R.json` every `interval` seconds, and at once when
/// the stage or step changes: stage, step, the collective it waits in (if any), a beat counter.
/// The run folder is on the filesystem every rank shares (rank 0 writes checkpoints there and all
/// read them), so this works across machines without MPI traffic, which a rank blocked in a
/// collective could not send anyway.
///
/// Whether another rank is alive is judged by its beat counter moving while this rank watches,
/// not by comparing clocks of different machines. The same thread notices when its own process
/// was suspended (SIGSTOP, a paused VM): a sleep of `interval` that took far longer is reported
/// on this rank's stderr when it wakes.
public final class RankStatus: @unchecked Sendable {
    public static let shared = RankStatus()
    /// Seconds between heartbeats.
    public static let interval = 0.25
    /// How long a reader watches for beats: four missed beats, which even an oversubscribed
    /// machine does not delay a thread by.
    public static let watch = 1.0
    /// A heartbeat sleep this much longer than asked means this process itself was suspended.
    public static let suspendedAfter = 2.0

    private let condition = NSCondition()
    private var directory: String?
    private var worldSize = 0
    private var waiting: String?
    private var beats = 0
    private var changed = false
    private var thread: Thread?
    /// The job the records belong to (Open MPI's job id): files of an earlier run in the same
    /// folder are not mistaken for this one's.
    private let job = ProcessInfo.processInfo.environment["OMPI_MCA_ess_base_jobid"] ?? ""
    private let host = ProcessInfo.processInfo.hostName

    /// Starts publishing this rank's status under `runFolder`/status for a world of `size` ranks
    /// (stages call this once the run folder is known; before that a timeout reports what it
    /// can without it). Only processes mpirun started publish: in-process worlds share one
    /// process, and a world of one has nobody to wait for.
    public func publish(runFolder: String, size: Int) {
        guard MPIRuntime.launchedByMPI, size > 1 else { return }
        let folder = (runFolder as NSString).appendingPathComponent("status")
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        condition.withLock {
            directory = folder
            worldSize = size
            changed = true
            if thread == nil {
                let t = Thread { [unowned self] in self.beat() }
                t.name = "rank-status"
                t.start()
                thread = t
            }
            condition.signal()
        }
    }

    /// The collective this rank has entered (nil when it has left it). Cheap: the heartbeat
    /// publishes it within `interval`, and only waits longer than that matter.
    func setWaiting(_ what: String?) { condition.withLock { waiting = what } }

    /// The stage or step changed: the heartbeat thread publishes it now rather than at its next
    /// beat, so a rank that stops right after a new step is reported at that step.
    func contextChanged() {
        condition.withLock {
            guard directory != nil else { return }
            changed = true
            condition.signal()
        }
    }

    /// What this rank publishes.
    struct Record: Codable, Equatable {
        var rank: Int, role: String, step: Int
        var waiting: String?
        var beats: Int
        var time: Double
        var host: String
        var pid: Int32
        var job: String
    }

    /// Waits for the next beat or a change; returns what to publish and whether the wait ran out.
    private func nextRecord(until expected: Date) -> (folder: String?, record: Record, timedOut: Bool) {
        condition.lock()
        defer { condition.unlock() }
        var timedOut = true
        while !changed {
            if !condition.wait(until: expected) { break }
        }
        if changed {
            timedOut = false
            changed = false
        }
        beats += 1
        let context = FailureReport.current
        let record = Record(
            rank: context.rank, role: context.role, step: context.step, waiting: waiting, beats: beats,
            time: Date().timeIntervalSince1970, host: host, pid: getpid(), job: job)
        return (directory, record, timedOut)
    }

    private func beat() {
        // SIGCONT is counted so that a stop during a write (outside the wait) is noticed too.
        _ = rlhf_install_continue_counter()
        var expected = Date().addingTimeInterval(Self.interval)
        var checks = SuspensionCheck(time: Date(), continued: rlhf_continued_count())
        while !Thread.current.isCancelled { expected = beatOnce(expected: expected, checks: &checks) }
    }

    /// One beat: wait for it (or a change), report a suspension, publish; returns when the next
    /// is due.
    @inline(never)
    private func beatOnce(expected: Date, checks: inout SuspensionCheck) -> Date {
        let began = Date()
        let next = nextRecord(until: expected)
        // However it woke, a beat due long ago means this thread did not run: the process was
        // suspended (with steps changing every few ms it may wake by a change, not a timeout).
        // Counted from when this wait began, so a slow write before it is not a suspension.
        let late = Date().timeIntervalSince(max(expected, began))
        let stopped = checks.stoppedFor(now: Date(), continued: rlhf_continued_count())
        if late > Self.suspendedAfter || stopped > 0 {
            let seconds = Int((stopped > 0 ? stopped : late + Self.interval).rounded())
            checks.reported()
            FailureReport.print(
                "this process was suspended for \(seconds) s (SIGSTOP, or its machine paused); the other ranks may "
                    + "have timed out waiting for it"
            )
        }
        if let folder = next.folder, let data = try? JSONEncoder().encode(next.record) {
            let path = (folder as NSString).appendingPathComponent("rank-\(next.record.rank).json")
            try? data.write(to: URL(fileURLWithPath: path), options: .atomic)
        }
        // The next beat is timed from after the write: a slow shared filesystem is not a suspension.
        return next.timedOut || late >= 0 ? Date().addingTimeInterval(Self.interval) : expected
    }

    /// The records of `ranks` now, by rank (nil: none from this job).
    func records(_ ranks: [Int], in folder: String) -> [Int: Record] {
        var out: [Int: Record] = [:]
        for rank in ranks {
            let file = (folder as NSString).appendingPathComponent("rank-\(rank).json")
            guard let data = FileManager.default.contents(atPath: file),
                let r = try? JSONDecoder().decode(Record.self, from: data), r.job == job
            else { continue }
            out[rank] = r
        }
        return out
    }

    /// What a timeout adds: which ranks (all, or `ranks`) did not arrive in `what` and what each
    /// was last doing ("" without a status folder). Watches the others' beats for
    /// `watch` seconds to tell a running rank from a stopped one.
    public func absentees(waitingFor what: String, among ranks: [Int]? = nil) -> String {
        condition.lock()
        let folder = directory, size = worldSize
        condition.unlock()
        guard let folder else { return "" }
        let me = FailureReport.current
        let others = (ranks ?? Array(0..<size)).filter { $0 != me.rank }
        let before = records(others, in: folder)
        usleep(useconds_t(Self.watch * 1_000_000))
        let after = records(others, in: folder), now = Date().timeIntervalSince1970
        var missing: [String] = []
        for rank in others {
            guard let r = after[rank] else {
                missing.append("rank \(rank) (no status from this job in \(folder): still starting?)")
                continue
            }
            let alive = before[rank].map { r.beats > $0.beats } ?? true
            if alive && r.waiting == what && r.step == me.step { continue }  // it arrived and waits too
            missing.append(Self.describe(r, alive: alive, now: now))
        }
        guard !missing.isEmpty else { return "every rank reached it (a slow network, or a deadlock inside MPI)" }
        return "did not arrive: " + missing.joined(separator: "; ")
    }

    /// `absentees` appended to a one-line error.
    static func joined(_ absent: String) -> String { absent.isEmpty ? "" : "; " + absent }

    static func describe(_ r: Record, alive: Bool, now: Double) -> String {
        var state = "still computing"
        if !alive {
            let silent = Int(max(now - r.time, watch).rounded())
            state = "not heard from for \(silent) s: stopped, hung or its machine unreachable"
        } else if let waiting = r.waiting {
            state = "waiting in \(waiting) instead"
        }
        return "rank \(r.rank) on \(r.host) (pid \(r.pid)), last at (\(r.role), step \(r.step)), \(state)"
    }
}

/// A stop outside the heartbeat's wait (during a write) shows as a long gap between two checks and
/// a SIGCONT counted. The handler runs on whichever thread the kernel picks, maybe only after this
/// one has read the count, so a long gap without a SIGCONT yet is kept for `keep` seconds: a count
/// that moves within them still explains it (a slow write alone never moves the count).
struct SuspensionCheck {
    var time: Date
    var continued: Int32
    private var unexplained: (gap: Double, at: Date)?
    static let keep = 1.0

    init(time: Date, continued: Int32) {
        self.time = time
        self.continued = continued
    }

    /// Seconds this process was stopped since the last check (0: it was not); the check moves on.
    mutating func stoppedFor(now: Date, continued count: Int32) -> Double {
        let gap = now.timeIntervalSince(time)
        let resumed = count != continued
        if let u = unexplained, now.timeIntervalSince(u.at) > Self.keep { unexplained = nil }
        let stopped = resumed ? max(gap, unexplained?.gap ?? 0) : 0
        if resumed {
            unexplained = nil
        } else if gap > RankStatus.suspendedAfter {
            unexplained = (gap, now)
        }
        (time, continued) = (now, count)
        return stopped > RankStatus.suspendedAfter ? stopped : 0
    }

    /// A suspension was reported: a SIGCONT counted later does not report it again.
    mutating func reported() { unexplained = nil }
}
