import CMPI
import Foundation

/// A serial executor that runs every job on one dedicated OS thread.
///
/// This OpenMPI build provides only MPI_THREAD_FUNNELED, and collectives issued concurrently
/// corrupt each other (docs/platform.md §5), so all MPI calls go through an actor whose
/// executor is this thread. Blocking waits happen here, never on Swift's cooperative pool
/// (which has a single thread when mpirun binds a rank to one core).
final class DedicatedThreadExecutor: SerialExecutor, @unchecked Sendable {
    /// A Swift job of the actor, or a plain closure (`submit`) from a thread outside Swift
    /// concurrency — a backward pass starting a gradient all-reduce. One FIFO keeps their order.
    private enum Work { case job(UnownedJob), closure(() -> Void) }
    private let condition = NSCondition()
    private var jobs: [Work] = []
    private var thread: Thread!

    init(name: String) {
        thread = Thread { [unowned self] in self.loop() }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let work = jobs.removeFirst()
            condition.unlock()
            switch work {
            case .job(let job): job.runSynchronously(on: asUnownedSerialExecutor())
            case .closure(let body): body()
            }
        }
    }

    /// Runs `body` on this thread after the work already queued, without waiting for it.
    func submit(_ body: @escaping () -> Void) {
        condition.lock()
        jobs.append(.closure(body))
        condition.signal()
        condition.unlock()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        jobs.append(.job(unowned))
        condition.signal()
        condition.unlock()
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }
}

/// MPI handles are pointers into the library; they are only used on the MPI thread.
public struct MPIHandle<T>: @unchecked Sendable { let raw: T }
